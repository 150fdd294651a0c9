"""Karyogram layout: where each chromosome of a cell goes, as pure geometry.

The standard four rows (Denver groups A-G): 1-5 / 6-12 + X / 13-18 / 19-22 + Y, or with
``sex_last=True`` 1-5 / 6-12 / 13-18 / 19-22 + X, Y. Each type has a slot with its
homologs side by side above the slot's label, standing on a common baseline or, given
where each one's centromere lies, hung on one centromere line per row as cytogeneticists
align them; extra copies (trisomy) widen their slot. All crops of a cell share ONE scale,
so chromosome 1 stays about five times as long as chromosome 21. Objects of no type go to
an unclassified bucket under the four rows, wrapped to the karyogram's width (no bucket
while nothing is unclassified). Crops are placed as displayed (their Orientation
applied, or the sizes of the pictures drawn), so a crop turned p-arm up stands p-arm up.

Units are scene units; a view maps them to pixels. Nothing here knows about Qt.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from karyo_gui.core.case import Chromosome
from karyo_gui.core.ideogram import ideogram
from karyo_gui.core.labels import ChromosomeType

_T = ChromosomeType
_AUTOSOME_ROWS = (range(1, 6), range(6, 13), range(13, 19), range(19, 23))


def karyogram_rows(sex_last: bool = False) -> list[list[ChromosomeType]]:
    rows = [[_T.autosome(n) for n in numbers] for numbers in _AUTOSOME_ROWS]
    if sex_last:
        rows[3] += [_T.X, _T.Y]
    else:
        rows[1].append(_T.X)
        rows[3].append(_T.Y)
    return rows


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x <= self.right and self.y <= y <= self.bottom


@dataclass(frozen=True)
class LayoutStyle:
    tallest: float = 160.0  # scene height of the tallest crop of the cell
    homolog_gap: float = 4.0
    slot_gap: float = 28.0
    row_gap: float = 18.0
    label_height: float = 22.0
    margin: float = 16.0
    sex_last: bool = False
    # room for the type's ideogram to the right of its homologs (0: none drawn)
    ideogram_width: float = 0.0


@dataclass
class Slot:
    """The place of one type: its members side by side above a label."""

    chromosome_type: ChromosomeType
    rect: Rect  # the whole slot: chromosomes and label
    label_rect: Rect
    members: list[str] = field(default_factory=list)  # chromosome ids, left to right


@dataclass
class KaryogramLayout:
    scale: float  # scene units per crop pixel, the same for every crop of the cell
    width: float
    height: float
    slots: dict[ChromosomeType, Slot]
    placements: dict[str, Rect]  # chromosome id -> where its displayed crop goes
    # type -> where its ideogram goes, pter at the top (only with style.ideogram_width)
    ideograms: dict[ChromosomeType, Rect] = field(default_factory=dict)

    def slot_at(self, x: float, y: float) -> ChromosomeType | None:
        for chromosome_type, slot in self.slots.items():
            if slot.rect.contains(x, y):
                return chromosome_type
        return None


def karyogram_layout(
    chromosomes: Sequence[Chromosome],
    style: LayoutStyle | None = None,
    scale: float | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    centromeres: Mapping[str, float] | None = None,
    derivatives: Collection[str] = (),
) -> KaryogramLayout:
    """Lay out a cell's chromosomes by their current label (``Chromosome.label``).

    ``derivatives``: ids of chromosomes marked structurally abnormal; each stands to the
    right of its normal homolog(s) in its slot, as karyograms show a der(9) beside the 9.

    ``sizes``: chromosome id -> (width, height) in pixels of the picture drawn (default:
    the crop as displayed); ``centromeres``: id -> the centromere's height in its picture
    as a fraction from the top; given, each row hangs on one centromere line (a chromosome
    missing from it takes its type's textbook centromere index).
    """
    style = style or LayoutStyle()
    sizes, scale, widths = _common_scale(chromosomes, style, scale, sizes)
    typical_width = (float(np.median(widths)) if widths else 20.0) * scale
    empty_height = style.tallest * 0.25

    by_type: dict[ChromosomeType, list[Chromosome]] = {t: [] for t in ChromosomeType}
    for chromosome in chromosomes:
        by_type[chromosome.label].append(chromosome)
    if derivatives:
        for members in by_type.values():
            members.sort(key=lambda c: c.id in derivatives)  # stable: normal ones first

    def member_width(chromosome: Chromosome) -> float:
        width = sizes[chromosome.id][0] * scale
        return width if width > 0 else typical_width

    def slot_width(members: list[Chromosome]) -> float:
        widths = [member_width(c) for c in members]
        widths += [typical_width] * max(0, 2 - len(members))  # room for two homologs
        return sum(widths) + style.homolog_gap * (len(widths) - 1) + beside

    beside = style.ideogram_width + style.homolog_gap * 2 if style.ideogram_width > 0 else 0.0

    rows = karyogram_rows(style.sex_last)
    row_widths = [
        sum(slot_width(by_type[t]) for t in row) + style.slot_gap * (len(row) - 1)
        for row in rows
    ]
    content_width = max(row_widths)

    def p_arm(chromosome: Chromosome) -> float:
        """Height above the centromere line, in scene units."""
        fraction = centromeres.get(chromosome.id) if centromeres else None
        if fraction is None:
            known = chromosome.label is not _T.UNCLASSIFIED
            fraction = ideogram(chromosome.label).centromere_index if known else 0.5
        return sizes[chromosome.id][1] * scale * fraction

    slots: dict[ChromosomeType, Slot] = {}
    placements: dict[str, Rect] = {}
    ideograms: dict[ChromosomeType, Rect] = {}
    y = style.margin
    for row, row_width in zip(rows, row_widths):
        members_of_row = [c for t in row for c in by_type[t]]
        if centromeres is not None and members_of_row:
            above = max(p_arm(c) for c in members_of_row)
            below = max(sizes[c.id][1] * scale - p_arm(c) for c in members_of_row)
            row_height = above + below
        else:
            # an empty row keeps the height its longest type would have, so the form reads
            row_height = max(
                (sizes[c.id][1] * scale for c in members_of_row), default=0.0
            ) or style.tallest * ideogram(row[0]).relative_length
            above = None
        x = style.margin + (content_width - row_width) / 2
        for chromosome_type in row:
            members = by_type[chromosome_type]
            width = slot_width(members)
            slots[chromosome_type] = _slot(chromosome_type, x, y, width, row_height, style)
            bottoms = (
                {c.id: y + above - p_arm(c) + sizes[c.id][1] * scale for c in members}
                if above is not None else {}
            )  # fmt: skip
            _place_members(members, slots[chromosome_type], x, y + row_height, width - beside,
                           member_width, sizes, scale, style, placements, bottoms)
            if beside:
                ideograms[chromosome_type] = _ideogram_rect(
                    chromosome_type, members, sizes, scale, style, x + width - beside, y,
                    row_height, above)
            x += width + style.slot_gap
        y += row_height + style.label_height + style.row_gap

    # the unclassified bucket: one slot under the rows, members wrapped into lines; none
    # while nothing is unclassified (typing U, or the inspector, sends a chromosome there)
    bucket = by_type[_T.UNCLASSIFIED]
    if not bucket:
        return KaryogramLayout(
            scale=scale,
            width=content_width + 2 * style.margin,
            height=y - style.row_gap + style.margin,
            slots=slots,
            placements=placements,
            ideograms=ideograms,
        )
    lines = _wrap(bucket, content_width, member_width, style.homolog_gap)
    top = y
    for line in lines:
        line_height = max((sizes[c.id][1] * scale for c in line), default=0.0) or empty_height
        x = style.margin
        for chromosome in line:
            width = member_width(chromosome)
            height = sizes[chromosome.id][1] * scale
            placements[chromosome.id] = Rect(x, y + line_height - height, width, height)
            x += width + style.homolog_gap
        y += line_height + style.homolog_gap
    bucket_height = y - top - style.homolog_gap
    slots[_T.UNCLASSIFIED] = _slot(
        _T.UNCLASSIFIED, style.margin, top, content_width, bucket_height, style
    )
    slots[_T.UNCLASSIFIED].members = [c.id for c in bucket]
    height = top + bucket_height + style.label_height + style.margin
    return KaryogramLayout(
        scale=scale,
        width=content_width + 2 * style.margin,
        height=height,
        slots=slots,
        placements=placements,
        ideograms=ideograms,
    )


def _ideogram_rect(chromosome_type: ChromosomeType, members: list[Chromosome],
                   sizes: Mapping[str, tuple[int, int]], scale: float, style: LayoutStyle,
                   x: float, top: float, row_height: float, above: float | None) -> Rect:
    """Beside the homologs: as tall as they are (the median of them; the type's textbook share
    of the tallest when the slot is empty), its centromere on the row's centromere line when
    the row hangs on one, else standing on the baseline."""
    heights = sorted(sizes[c.id][1] * scale for c in members)
    shape = ideogram(chromosome_type)
    height = (heights[len(heights) // 2] if heights
              else style.tallest * shape.relative_length)
    height = min(height, row_height)
    left = x + style.homolog_gap
    if above is not None:
        y = top + above - height * shape.centromere_index
        y = min(max(y, top), top + row_height - height)
    else:
        y = top + row_height - height
    return Rect(left, y, style.ideogram_width, height)


def _common_scale(
    chromosomes: Sequence[Chromosome], style: LayoutStyle, scale: float | None,
    drawn: Mapping[str, tuple[int, int]] | None = None,
) -> tuple[dict[str, tuple[int, int]], float, list[int]]:
    """Displayed sizes (``drawn``'s where given), the one scale of the cell (its tallest
    crop is ``style.tallest`` high unless ``scale`` is given) and the widths of the
    pictured crops."""
    sizes = {c.id: (drawn or {}).get(c.id) or c.size for c in chromosomes}
    if scale is None:
        tallest_px = max((height for _, height in sizes.values()), default=0) or 1
        scale = style.tallest / tallest_px
    return sizes, scale, [w for w, _ in sizes.values() if w > 0]


def _slot(
    chromosome_type: ChromosomeType, x: float, y: float, width: float, height: float,
    style: LayoutStyle,
) -> Slot:
    label = Rect(x, y + height, width, style.label_height)
    return Slot(chromosome_type, Rect(x, y, width, height + style.label_height), label)


def _place_members(members, slot, x, baseline, width, member_width, sizes, scale, style,
                   placements, bottoms=None) -> None:
    """Homologs side by side, centred in the slot, standing on the baseline (or with their
    bottoms where ``bottoms`` puts them)."""
    used = sum(member_width(c) for c in members) + style.homolog_gap * max(0, len(members) - 1)
    left = x + (width - used) / 2
    for chromosome in members:
        member = member_width(chromosome)
        height = sizes[chromosome.id][1] * scale
        bottom = (bottoms or {}).get(chromosome.id, baseline)
        placements[chromosome.id] = Rect(left, bottom - height, member, height)
        slot.members.append(chromosome.id)
        left += member + style.homolog_gap


def _wrap(chromosomes, max_width, member_width, gap) -> list[list[Chromosome]]:
    lines: list[list[Chromosome]] = []
    line: list[Chromosome] = []
    used = 0.0
    for chromosome in chromosomes:
        width = member_width(chromosome)
        if line and used + gap + width > max_width:
            lines.append(line)
            line, used = [], 0.0
        used += (gap if line else 0.0) + width
        line.append(chromosome)
    if line:
        lines.append(line)
    return lines


def gallery_layout(
    chromosomes: Sequence[Chromosome],
    style: LayoutStyle | None = None,
    scale: float | None = None,
    columns: int = 12,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> KaryogramLayout:
    """The crops as loaded, in their order, in a grid at the cell's common scale: the
    metaphase gallery. Each crop stands on its line above a label strip of its own; there are
    no type slots (``slots`` is empty)."""
    style = style or LayoutStyle()
    sizes, scale, widths = _common_scale(chromosomes, style, scale, sizes)
    cell_width = (max(widths) if widths else 20.0) * scale + style.homolog_gap
    placements: dict[str, Rect] = {}
    y = style.margin
    for start in range(0, len(chromosomes), max(1, columns)):
        line = chromosomes[start : start + columns]
        line_height = max((sizes[c.id][1] * scale for c in line), default=0.0)
        line_height = line_height or style.tallest * 0.25
        for k, chromosome in enumerate(line):
            width, height = (v * scale for v in sizes[chromosome.id])
            if width <= 0:
                width, height = cell_width * 0.5, style.tallest * 0.25
            x = style.margin + k * cell_width + (cell_width - width) / 2
            placements[chromosome.id] = Rect(x, y + line_height - height, width, height)
        y += line_height + style.label_height + style.row_gap
    count = min(len(chromosomes), max(1, columns))
    return KaryogramLayout(
        scale=scale,
        width=2 * style.margin + max(1, count) * cell_width,
        height=y + style.margin,
        slots={},
        placements=placements,
    )
