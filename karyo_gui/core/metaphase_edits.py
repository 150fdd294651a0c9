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
    under the point. Where it touches found chromosomes whose outlines took some of its
    pixels, the touching pixels are shared out along the narrowest neck between the point
    and each of them (a watershed of the object's thickness), so the missed chromosome
    comes out whole and its neighbours give back what was not theirs (they become new
    chromosomes, classified again, as after a split). Refused, with what to do instead, on
    the background, on a chromosome already found, on a speck, and on an object too large
    for one chromosome (a nucleus, or a cluster: draw around the chromosome)."""
    metaphase = _editable(cell)
    height, width = metaphase.pixels.shape
    x, y = float(point[0]), float(point[1])
    if not (0 <= x < width and 0 <= y < height):
        raise EditError("the point lies outside the metaphase image")
    here = chromosomes_at(cell, x, y)
    if here:
        raise EditError(f"{here[0]} is here already: split it if it holds two chromosomes")
    found = [c for c in cell.chromosomes if c.region is not None]
    longest = max((max(c.region.box[2] - c.region.box[0], c.region.box[3] - c.region.box[1])
                   for c in found), default=0)  # fmt: skip
    reach = int(max(120, 1.5 * longest))
    window = (max(0, int(x) - reach), max(0, int(y) - reach),
              min(width, int(x) + reach + 1), min(height, int(y) + reach + 1))  # fmt: skip
    a, b, c, d = window
    context = metaphase.pixels[b:d, a:c]
    chromosome_width = estimate_chromosome_width(context)
    masks = {chromosome.id: _in_window(chromosome.region, window) for chromosome in found}
    masks = {id_: mask for id_, mask in masks.items() if mask is not None}
    claimed = np.zeros(context.shape, dtype=bool)
    for mask in masks.values():
        claimed |= mask
    dark = foreground_mask(context, chromosome_width)
    column, row = int(x) - a, int(y) - b
    fragment = _component_near(dark & ~claimed, column, row, chromosome_width)
    if fragment is None:
        raise EditError("nothing dark here: double-click on the chromosome, or draw around it")
    component = _component_near(dark, column, row, chromosome_width)
    touching = [id_ for id_, mask in masks.items() if (mask & component).any()]
    mask = _solid(fragment) & ~claimed
    given_back: dict[str, np.ndarray] = {}
    if touching:
        shared = _share_out(component, fragment, [masks[id_] for id_ in touching], claimed,
                            chromosome_width)  # fmt: skip
        mask |= shared
        for id_ in touching:
            left = masks[id_] & ~shared
            if (masks[id_] & shared).any():
                if left.sum() < 0.3 * masks[id_].sum():
                    raise EditError(f"that would take most of {id_}: split {id_} instead")
                given_back[id_] = left
    area = int(mask.sum())
    areas = sorted(chromosome.region.area for chromosome in found)
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
    removed = [cell.chromosome(id_) for id_ in given_back]  # in cell order, as ``found``
    regions = []
    for chromosome in removed:  # the neighbours, less what they gave back
        region = chromosome.region
        own, there = _overlap(region.box, window)  # type: ignore[misc]
        kept = region.mask.copy()
        kept[own] &= given_back[chromosome.id][there]
        regions.append(Region(region.box, kept))
    regions.append(_region_of(mask, a, b))
    added = _new_chromosomes(cell, metaphase, regions)
    text = f"Add {added[-1].id}" + (f" (pixels from {_listed([c.id for c in removed])})"
                                     if removed else "")  # fmt: skip
    return RegionEdit(cell, removed, added, "add", by or current_user(), text)


def _overlap(box, window) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where a box meets a window of the image: the slices of the box's own mask and of the
    window (rows, columns), or None when they do not meet."""
    a, b, c, d = window
    x0, y0, x1, y1 = box
    u0, v0, u1, v1 = max(x0, a), max(y0, b), min(x1, c), min(y1, d)
    if u1 <= u0 or v1 <= v0:
        return None
    return ((slice(v0 - y0, v1 - y0), slice(u0 - x0, u1 - x0)),
            (slice(v0 - b, v1 - b), slice(u0 - a, u1 - a)))  # fmt: skip


def _in_window(region: Region, window: tuple[int, int, int, int]) -> np.ndarray | None:
    """A region's mask on a window of the image (None when they do not meet)."""
    overlap = _overlap(region.box, window)
    if overlap is None:
        return None
    own, there = overlap
    a, b, c, d = window
    mask = np.zeros((d - b, c - a), dtype=bool)
    mask[there] = region.mask[own]
    return mask if mask.any() else None


def _component_near(pixels: np.ndarray, column: int, row: int, chromosome_width: float
                    ) -> np.ndarray | None:
    """The connected part of ``pixels`` at (column, row), or the nearest one within three
    quarters of a chromosome width (a click just beside it); None when there is none."""
    count, labels = cv2.connectedComponents(pixels.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    near = max(2, round(chromosome_width * 0.75))
    top, left = max(0, row - near), max(0, column - near)
    around = labels[top:row + near + 1, left:column + near + 1]
    if not around.any():
        return None
    if labels[row, column]:
        return labels == labels[row, column]
    rows, columns = np.nonzero(around)
    nearest = np.argmin((rows + top - row) ** 2 + (columns + left - column) ** 2)
    return labels == around[rows[nearest], columns[nearest]]


def _share_out(component: np.ndarray, fragment: np.ndarray, neighbours: list[np.ndarray],
               claimed: np.ndarray, chromosome_width: float) -> np.ndarray:
    """The pixels of the neighbours' outlines (``claimed``: every found chromosome's pixels
    on the window) that belong with the fragment: a watershed
    of the object's thickness from the fragment and from each neighbour's own part (its far
    half, reckoned along the object from the fragment), so the line between them runs along
    the narrowest neck."""
    along = _distance_along(component, fragment)
    markers = np.zeros(component.shape, np.int32)
    markers[~component] = 1
    markers[fragment] = 2
    for k, mask in enumerate(neighbours):
        inside = mask & component & (markers == 0)
        if not inside.any():
            continue
        far = max(2 * chromosome_width, 0.5 * float(along[inside].max()))
        markers[inside & (along >= far)] = 3 + k
    thickness = cv2.distanceTransform(component.astype(np.uint8), cv2.DIST_L2, 5)
    relief = np.uint8(255 - np.clip(thickness / max(float(thickness.max()), 1.0) * 255, 0, 255))
    cv2.watershed(cv2.merge([relief, relief, relief]), markers)
    return (markers == 2) & component & claimed


def _distance_along(component: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Steps from ``start`` to every pixel of ``component``, going through the component
    only (8-neighbours); inf where it cannot be reached."""
    distance = np.full(component.shape, np.inf)
    reached = start & component
    distance[reached] = 0
    inside = component.astype(np.uint8)
    square = np.ones((3, 3), np.uint8)
    step = 0
    while True:
        step += 1
        grown = cv2.dilate(reached.astype(np.uint8), square) & inside
        new = grown.astype(bool) & ~reached
        if not new.any():
            return distance
        distance[new] = step
        reached |= new


def _region_of(mask: np.ndarray, a: int, b: int) -> Region:
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return Region((a + x0, b + y0, a + x1, b + y1), mask[y0:y1, x0:x1])


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
