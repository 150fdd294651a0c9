"""A reviewer's corrections of the chromosome finder on a metaphase image, without Qt.

The finder may cut one chromosome in two, take two touching ones for one, mistake debris
for a chromosome, miss one, or take two crossing chromosomes for one object. Each
correction here is drawn by the user in image pixel coordinates (x = column, y = row) and
becomes a :class:`RegionEdit`: the chromosomes it takes out of the cell and the new ones it
puts in, with ``apply()`` and ``revert()`` so that the app's undo stack only wraps it, and
an entry in the cell's audit trail each way. A new chromosome has a fresh id, its region
and its crop cut from the metaphase; it has no type yet (``changed`` lists what needs
classifying). The functions build the edit; the caller applies it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from karyo_gui.core.case import Cell, CellStatus, Chromosome, Correction, current_user, now_utc
from karyo_gui.core.metaphase import (
    CLUSTER_AREA,
    MetaphaseImage,
    Region,
    cut_crop,
    estimate_chromosome_width,
    flatten_background,
    foreground_mask,
)

MIN_PIECE_PIXELS = 15  # a smaller piece of a cut is a crumb, not a chromosome
ACTIONS = ("split", "join", "delete", "add", "separate")

Point = tuple[float, float]


class EditError(ValueError):
    """An edit that cannot be done; the message says why in the user's words."""


@dataclass
class RegionEdit:
    """Chromosomes of a metaphase taken out (``removed``) and put in (``added``) in one
    step: a split, join, delete, add or the separation of a crossing."""

    cell: Cell
    removed: list[Chromosome]
    added: list[Chromosome]
    action: str
    by: str
    text: str = ""
    _before: list[Chromosome] | None = field(default=None, init=False, repr=False)
    _after: list[Chromosome] | None = field(default=None, init=False, repr=False)
    _position: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown metaphase edit {self.action!r}; one of {ACTIONS}")

    @property
    def changed(self) -> list[str]:
        """Ids of the new chromosomes: the ones that need classifying."""
        return [chromosome.id for chromosome in self.added]

    @property
    def chromosome_ids(self) -> str:
        return _joined([*self.removed, *self.added])

    def apply(self) -> None:
        """Take ``removed`` out of the cell and put ``added`` where the first of them was
        (at the end for an added chromosome)."""
        self.cell._require_editable()
        current = self.cell.chromosomes
        missing = [c.id for c in self.removed if _index(current, c) is None]
        if missing:
            raise EditError(f"{', '.join(missing)} no longer in cell {self.cell.name}")
        if any(_index(current, c) is not None for c in self.added):
            raise EditError(f"{self.text or self.action}: already done")
        positions = [_index(current, c) for c in self.removed]
        at = min(positions) if positions else len(current)  # type: ignore[type-var]
        kept = [c for c in current if not any(c is r for r in self.removed)]
        self._before = list(current)
        self._position = at
        current[:] = [*kept[:at], *self.added, *kept[at:]]
        self._after = list(current)
        self.cell.audit.append(Correction(
            self.chromosome_ids, self.action, _joined(self.removed), _joined(self.added),
            self.by, now_utc(),
        ))

    def revert(self) -> None:
        """Put back exactly the chromosomes there were before (the same ones, in order)."""
        self.cell._require_editable()
        current = self.cell.chromosomes
        if any(_index(current, c) is None for c in self.added) or any(
            _index(current, c) is not None for c in self.removed
        ):
            raise EditError(f"{self.text or self.action}: not done, nothing to undo")
        if self._before is not None and _same(current, self._after):
            current[:] = self._before
        else:  # other changes came in between: undo only this one, where it was
            positions = [_index(current, c) for c in self.added]
            at = min(positions) if positions else min(self._position, len(current))  # type: ignore[type-var]
            kept = [c for c in current if not any(c is a for a in self.added)]
            current[:] = [*kept[:at], *self.removed, *kept[at:]]
        self.cell.audit.append(Correction(
            self.chromosome_ids, self.action, _joined(self.added),
            f"{_joined(self.removed)} (undo)".lstrip(), self.by, now_utc(),
        ))


def _index(chromosomes: list[Chromosome], chromosome: Chromosome) -> int | None:
    for index, candidate in enumerate(chromosomes):
        if candidate is chromosome:
            return index
    return None


def _same(first: list[Chromosome], second: list[Chromosome] | None) -> bool:
    return second is not None and len(first) == len(second) and all(
        a is b for a, b in zip(first, second)
    )


def _joined(chromosomes: Sequence[Chromosome]) -> str:
    return ", ".join(chromosome.id for chromosome in chromosomes)


def _listed(ids: Sequence[str]) -> str:
    """``m1``, ``m1 and m2``, ``m1, m2 and m3``."""
    ids = list(ids)
    return ids[0] if len(ids) == 1 else f"{', '.join(ids[:-1])} and {ids[-1]}"


# ------------------------------------------------------------------ checks and new chromosomes

_FOUND_ID = re.compile(r"m(\d+)")


def fresh_ids(cell: Cell, count: int) -> list[str]:
    """``count`` new ids ``m`` + number, after every ``m`` id the cell has or its audit trail
    names (an id once used, then undone, is never given to another chromosome)."""
    used = {chromosome.id for chromosome in cell.chromosomes}
    for entry in cell.audit:
        for text in (entry.chromosome_id, entry.before, entry.after):
            used.update(part.strip() for part in text.replace("(undo)", "").split(","))
    numbers = [int(m.group(1)) for id_ in used if (m := _FOUND_ID.fullmatch(id_))]
    start = max(numbers, default=0) + 1
    return [f"m{number:03d}" for number in range(start, start + count)]


def _editable(cell: Cell) -> MetaphaseImage:
    if cell.status is CellStatus.SIGNED_OFF:
        raise EditError(f"cell {cell.name} is signed off; reopen it for editing before changing it")
    if cell.metaphase is None:
        raise EditError(
            f"cell {cell.name} has no metaphase image: its chromosomes came as separate crops"
        )
    return cell.metaphase


def _found(cell: Cell, chromosome_id: str) -> Chromosome:
    try:
        chromosome = cell.chromosome(chromosome_id)
    except KeyError:
        raise EditError(f"cell {cell.name} has no chromosome {chromosome_id}") from None
    if chromosome.region is None:
        raise EditError(f"{chromosome_id} has no outline in the metaphase image")
    return chromosome


def _points(points: Sequence[Point], least: int, what: str) -> np.ndarray:
    try:
        array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise EditError(f"{what} must be a list of x, y points") from None
    if len(array) < least:
        raise EditError(f"{what} needs at least {least} points, not {len(array)}")
    if not np.isfinite(array).all():
        raise EditError(f"{what} has a point that is not a number")
    return array


def _new_chromosome(metaphase: MetaphaseImage, chromosome_id: str, region: Region) -> Chromosome:
    tight = region.tight()
    if tight is None:  # pragma: no cover - callers pass non-empty masks
        raise EditError(f"{chromosome_id} would have no pixels")
    return Chromosome(
        id=chromosome_id, image=cut_crop(metaphase.pixels, tight), region=tight,
        found_score=None,
    )


def _new_chromosomes(cell: Cell, metaphase: MetaphaseImage, regions: list[Region]
                     ) -> list[Chromosome]:
    ids = fresh_ids(cell, len(regions))
    return [_new_chromosome(metaphase, id_, region) for id_, region in zip(ids, regions)]


def _in_cell_order(cell: Cell, ids: Sequence[str], what: str) -> list[Chromosome]:
    ids = list(ids)
    if not ids:
        raise EditError(f"pick the chromosomes to {what}")
    repeated = sorted({id_ for id_ in ids if ids.count(id_) > 1})
    if repeated:
        raise EditError(f"cannot {what} {repeated[0]} with itself")
    chosen = [_found(cell, id_) for id_ in ids]
    return sorted(chosen, key=lambda c: _index(cell.chromosomes, c))  # type: ignore[arg-type, return-value]


def _reading_order(regions: list[Region]) -> list[Region]:
    """Pieces top to bottom (rows of about a chromosome width), each row left to right."""

    def key(region: Region) -> tuple[int, float]:
        ys, xs = np.nonzero(region.mask)
        return int((ys.mean() + region.box[1]) // 15), float(xs.mean() + region.box[0])

    return sorted(regions, key=key)


def _local(region: Region, pad: int) -> tuple[np.ndarray, int, int]:
    """The region's mask with ``pad`` empty pixels around it, and where its corner lies."""
    return np.pad(region.mask, pad), region.box[0] - pad, region.box[1] - pad


def _draw_line(shape: tuple[int, int], points: np.ndarray, ox: int, oy: int,
               thickness: int) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.uint8)
    local = np.round((points - [ox, oy]) * 16).astype(np.int64)
    local = np.clip(local, -(2**20), 2**20).astype(np.int32)  # far-off points still draw
    cv2.polylines(canvas, [local.reshape(-1, 1, 2)], False, 1, thickness=thickness,
                  lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def mask_width(mask: np.ndarray) -> float:
    """The width of the chromosome(s) of a mask: twice the median distance to the edge
    along its ridges (so a crossing's wider middle hardly counts)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)
    ridge = (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8))) & (distance > 1.5)
    values = distance[ridge]
    if values.size < 5:
        return float(max(2.0, 2.0 * distance.max()))
    return float(2.0 * np.median(values))


def _disc(diameter: int) -> np.ndarray:
    diameter = max(3, diameter | 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


# ------------------------------------------------------------------ the edits

def split_chromosome(cell: Cell, chromosome_id: str, line: Sequence[Point],
                     by: str | None = None) -> RegionEdit:
    """Cut a chromosome in two (or more) along a line drawn across it: the line's pixels
    (about 3 px wide) are taken out, the parts that fall apart are the new chromosomes, and
    the cut pixels go back to the nearest part. Crumbs smaller than a few pixels join the
    nearest part too; fewer than two real parts is refused."""
    metaphase = _editable(cell)
    chromosome = _found(cell, chromosome_id)
    points = _points(line, 2, "a split line")
    mask, ox, oy = _local(chromosome.region, 3)  # type: ignore[arg-type]
    cut = _draw_line(mask.shape, points, ox, oy, thickness=3)
    if not (mask & cut).any():
        raise EditError(f"the line misses {chromosome_id}: draw it across the chromosome")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (mask & ~cut).astype(np.uint8), connectivity=8
    )
    pieces = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= MIN_PIECE_PIXELS]
    if len(pieces) < 2:
        raise EditError(
            f"the line does not cut {chromosome_id} in two: draw it right across the chromosome"
        )
    from scipy import ndimage

    seeds = np.isin(labels, pieces)
    _, (rows, cols) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    nearest = labels[rows, cols]
    regions = [Region((ox, oy, ox + mask.shape[1], oy + mask.shape[0]), mask & (nearest == k))
               for k in pieces]
    added = _new_chromosomes(cell, metaphase, _reading_order(regions))
    text = f"Split {chromosome_id} into {_listed([c.id for c in added])}"
    return RegionEdit(cell, [chromosome], added, "split", by or current_user(), text)


def join_chromosomes(cell: Cell, ids: Sequence[str], by: str | None = None) -> RegionEdit:
    """One chromosome of several the finder took apart (a chromosome cut at its centromere):
    the union of their pixels, in the place of the first of them."""
    metaphase = _editable(cell)
    if isinstance(ids, str):
        ids = [ids]
    chosen = _in_cell_order(cell, ids, "join")
    if len(chosen) < 2:
        raise EditError("pick at least two chromosomes to join")
    boxes = np.array([c.region.box for c in chosen])  # type: ignore[union-attr]
    x0, y0 = boxes[:, :2].min(axis=0)
    x1, y1 = boxes[:, 2:].max(axis=0)
    union = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for chromosome in chosen:
        a, b, c, d = chromosome.region.box  # type: ignore[union-attr]
        union[b - y0:d - y0, a - x0:c - x0] |= chromosome.region.mask  # type: ignore[union-attr]
    added = _new_chromosomes(cell, metaphase, [Region((x0, y0, x1, y1), union)])
    text = f"Join {_listed([c.id for c in chosen])} into {added[0].id}"
    return RegionEdit(cell, chosen, added, "join", by or current_user(), text)


def delete_chromosomes(cell: Cell, ids: Sequence[str], by: str | None = None) -> RegionEdit:
    """Take out objects that are no chromosomes (debris, a nucleus' edge)."""
    _editable(cell)
    if isinstance(ids, str):
        ids = [ids]
    chosen = _in_cell_order(cell, ids, "delete")
    text = f"Delete {_listed([c.id for c in chosen])}"
    return RegionEdit(cell, chosen, [], "delete", by or current_user(), text)


def add_chromosome(cell: Cell, outline: Sequence[Point], by: str | None = None) -> RegionEdit:
    """A chromosome the finder missed, drawn around by the user: the dark pixels inside the
    outline (judged against the background around it); a faint one whose pixels are hardly
    dark is the filled outline itself. An outline around nothing dark is refused."""
    metaphase = _editable(cell)
    points = _points(outline, 3, "an outline")
    if abs(cv2.contourArea(points.astype(np.float32))) < 1.0:
        raise EditError("the outline encloses no area: draw around the chromosome")
    height, width = metaphase.pixels.shape
    x0 = int(np.clip(np.floor(points[:, 0].min()), 0, width))
    y0 = int(np.clip(np.floor(points[:, 1].min()), 0, height))
    x1 = int(np.clip(np.ceil(points[:, 0].max()) + 1, 0, width))
    y1 = int(np.clip(np.ceil(points[:, 1].max()) + 1, 0, height))
    if x1 <= x0 or y1 <= y0:
        raise EditError("the outline lies outside the metaphase image")
    inside = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    local = np.round((points - [x0, y0]) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(inside, [local], 1, lineType=cv2.LINE_8, shift=4)
    inside = inside.astype(bool)
    if not inside.any():
        raise EditError("the outline lies outside the metaphase image")
    # the dark pixels, judged in a window around the outline (its own background)
    pad = 48
    a, b = max(0, x0 - pad), max(0, y0 - pad)
    c, d = min(width, x1 + pad), min(height, y1 + pad)
    context = metaphase.pixels[b:d, a:c]
    chromosome_width = estimate_chromosome_width(context)
    dark = foreground_mask(context, chromosome_width)[y0 - b:y1 - b, x0 - a:x1 - a] & inside
    dark = _solid(dark) & inside
    if dark.sum() >= max(MIN_PIECE_PIXELS, 0.05 * inside.sum()):
        mask = dark
    else:
        flat = flatten_background(context, chromosome_width)[y0 - b:y1 - b, x0 - a:x1 - a]
        if ((flat < 0.92) & inside).sum() < MIN_PIECE_PIXELS:
            raise EditError("the outline encloses no dark pixels: there is no chromosome to add")
        mask = inside
    added = _new_chromosomes(cell, metaphase, [Region((x0, y0, x1, y1), mask)])
    return RegionEdit(cell, [], added, "add", by or current_user(), f"Add {added[0].id}")


SPECK_AREA = 0.1  # a dark object under a tenth of the median chromosome is a speck
TYPICAL_AREA = 4.5  # the median chromosome's area in squared widths (3-5.4 on cil24 and generated)


def add_chromosome_at(cell: Cell, point: Point, by: str | None = None) -> RegionEdit:
    """A chromosome the finder missed, picked by a double-click on it: the dark object
    under the point, less the pixels of the chromosomes already found (so one that touches
    a found neighbour comes out alone). Refused, with what to do instead, on the background,
    on a chromosome already found, and on an object too large to be one chromosome (a
    nucleus, or a cluster: draw around the chromosome)."""
    metaphase = _editable(cell)
    height, width = metaphase.pixels.shape
    x, y = float(point[0]), float(point[1])
    if not (0 <= x < width and 0 <= y < height):
        raise EditError("the point lies outside the metaphase image")
    here = chromosomes_at(cell, x, y)
    if here:
        raise EditError(f"{here[0]} is here already: split it if it holds two chromosomes")
    found = [c.region for c in cell.chromosomes if c.region is not None]
    longest = max((max(r.box[2] - r.box[0], r.box[3] - r.box[1]) for r in found), default=0)
    reach = int(max(120, 1.5 * longest))
    a, b = max(0, int(x) - reach), max(0, int(y) - reach)
    c, d = min(width, int(x) + reach + 1), min(height, int(y) + reach + 1)
    context = metaphase.pixels[b:d, a:c]
    chromosome_width = estimate_chromosome_width(context)
    claimed = np.zeros(context.shape, dtype=bool)
    for region in found:
        x0, y0, x1, y1 = region.box
        u0, v0, u1, v1 = max(x0, a), max(y0, b), min(x1, c), min(y1, d)
        if u1 > u0 and v1 > v0:
            claimed[v0 - b:v1 - b, u0 - a:u1 - a] |= region.mask[v0 - y0:v1 - y0, u0 - x0:u1 - x0]
    free = foreground_mask(context, chromosome_width) & ~claimed
    count, labels = cv2.connectedComponents(free.astype(np.uint8), connectivity=8)
    column, row = int(x) - a, int(y) - b
    near = max(2, round(chromosome_width * 0.75))  # a click just beside the chromosome
    window = labels[max(0, row - near):row + near + 1, max(0, column - near):column + near + 1]
    if count <= 1 or not window.any():
        raise EditError("nothing dark here: double-click on the chromosome, or draw around it")
    if labels[row, column]:
        label = labels[row, column]
    else:  # the nearest dark pixel of the window
        rows, columns = np.nonzero(window)
        nearest = np.argmin((rows - min(row, near)) ** 2 + (columns - min(column, near)) ** 2)
        label = window[rows[nearest], columns[nearest]]
    mask = _solid(labels == label) & ~claimed
    area = int(mask.sum())
    areas = sorted(r.area for r in found)
    # the cell's median chromosome; with none found yet, a middling one of this width
    typical = areas[len(areas) // 2] if areas else TYPICAL_AREA * chromosome_width**2
    if area < max(MIN_PIECE_PIXELS, SPECK_AREA * typical):
        raise EditError("the dark object here is a speck, too small for a chromosome: draw "
                        "around it if it is one")
    ys, xs = np.nonzero(mask)
    at_edge = (ys.min() == 0 and b > 0) or (xs.min() == 0 and a > 0) or (
        ys.max() == mask.shape[0] - 1 and d < height) or (xs.max() == mask.shape[1] - 1
                                                          and c < width)  # fmt: skip
    if at_edge or area > CLUSTER_AREA * typical:
        raise EditError("the dark object here is too large for one chromosome (a nucleus or "
                        "a cluster): draw around the chromosome instead")
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    region = Region((a + x0, b + y0, a + x1, b + y1), mask[y0:y1, x0:x1])
    added = _new_chromosomes(cell, metaphase, [region])
    return RegionEdit(cell, [], added, "add", by or current_user(), f"Add {added[0].id}")


def _solid(dark: np.ndarray) -> np.ndarray:
    """Dark pixels as one object: small gaps closed, holes (light bands) filled, specks
    well smaller than the largest part dropped."""
    from scipy import ndimage

    closed = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    filled = ndimage.binary_fill_holes(closed > 0)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(filled.astype(np.uint8), 8)
    if count <= 1:
        return filled
    areas = stats[1:, cv2.CC_STAT_AREA]
    return np.isin(labels, 1 + np.flatnonzero(areas >= max(5, 0.1 * areas.max())))


def separate_crossing(cell: Cell, chromosome_id: str, path: Sequence[Point],
                      by: str | None = None) -> RegionEdit:
    """Two crossing chromosomes found as one object, told apart by the user tracing one of
    them through the crossing. The traced one is the object's pixels within about half a
    chromosome width of the path; the other is the rest, plus the crossing pixels (those of
    the traced band it runs through: where the band bridges its two arms). Both keep the
    crossing pixels, as both chromosomes lie there."""
    metaphase = _editable(cell)
    chromosome = _found(cell, chromosome_id)
    points = _points(path, 2, "a traced path")
    region: Region = chromosome.region  # type: ignore[assignment]
    width = mask_width(region.mask)
    smallest = max(MIN_PIECE_PIXELS, 0.5 * width * width)
    mask, ox, oy = _local(region, int(2 * width) + 4)
    line = _draw_line(mask.shape, points, ox, oy, thickness=1)
    if not line.any():
        raise EditError(f"the path misses {chromosome_id}: trace one chromosome along its length")
    distance = cv2.distanceTransform((~line).astype(np.uint8), cv2.DIST_L2, 5)
    band = distance <= 0.5 * width + 1.0
    if (mask & band).sum() < smallest:
        raise EditError(f"the path misses {chromosome_id}: trace one chromosome along its length")
    # the other chromosome: what lies beside the band, without slivers of the traced one
    rest = (mask & ~band).astype(np.uint8)
    opened = cv2.morphologyEx(rest, cv2.MORPH_OPEN, _disc(round(width / 3)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    arms = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= smallest]
    core = np.isin(labels, arms)
    if core.sum() < smallest:
        raise EditError(
            f"the path leaves too little of {chromosome_id} for a second chromosome: "
            "trace one of the two crossing chromosomes from end to end"
        )
    closed = cv2.morphologyEx(core.astype(np.uint8), cv2.MORPH_CLOSE,
                              _disc(round(2.5 * width) + 3)).astype(bool)
    other = mask & (closed | core)
    traced = mask & ~(other & ~band)
    if traced.sum() < smallest or other.sum() < smallest:
        raise EditError(f"one of the two parts of {chromosome_id} would be tiny: trace again")
    box = (ox, oy, ox + mask.shape[1], oy + mask.shape[0])
    added = _new_chromosomes(cell, metaphase, [Region(box, traced), Region(box, other)])
    text = f"Separate {chromosome_id} into {_listed([c.id for c in added])}"
    return RegionEdit(cell, [chromosome], added, "separate", by or current_user(), text)


# ------------------------------------------------------------------ looking at regions

def overlapping_pairs(cell: Cell) -> list[tuple[str, str]]:
    """Pairs of chromosomes whose masks share pixels (crossings), in the cell's order."""
    placed = [c for c in cell.chromosomes if c.region is not None]
    pairs = []
    for i, first in enumerate(placed):
        a = first.region
        for second in placed[i + 1:]:
            b = second.region
            x0, y0 = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])  # type: ignore[union-attr]
            x1, y1 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])  # type: ignore[union-attr]
            if x1 <= x0 or y1 <= y0:
                continue
            part_a = a.mask[y0 - a.box[1]:y1 - a.box[1], x0 - a.box[0]:x1 - a.box[0]]  # type: ignore[union-attr]
            part_b = b.mask[y0 - b.box[1]:y1 - b.box[1], x0 - b.box[0]:x1 - b.box[0]]  # type: ignore[union-attr]
            if (part_a & part_b).any():
                pairs.append((first.id, second.id))
    return pairs


def chromosomes_at(cell: Cell, x: float, y: float) -> list[str]:
    """Ids of the chromosomes whose pixels include image point x, y (two on a crossing),
    the last drawn first."""
    column, row = int(np.floor(x)), int(np.floor(y))
    hits = []
    for chromosome in reversed(cell.chromosomes):
        region = chromosome.region
        if region is None:
            continue
        x0, y0, x1, y1 = region.box
        if x0 <= column < x1 and y0 <= row < y1 and region.mask[row - y0, column - x0]:
            hits.append(chromosome.id)
    return hits
