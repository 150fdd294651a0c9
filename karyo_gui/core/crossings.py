"""Two chromosomes crossing in an X that the finder found as one: separating them.

The finder marks each chromosome by its centre, so two chromosomes that cross near their
middles share one centre and come out as one object, its region an X of both (cil24 val:
over half of the chromosomes the finder missed had a touching or crossing neighbour that
took the only box there). The X is read from the region's shape, as a cytogeneticist reads
it: four arms, and two fairly straight paths through the middle, each from one arm's tip
to the opposite one, that together cover the region while no one path does. Each path,
grown to the chromosome's width along it, is one chromosome; the crossing belongs to both.

Where the region's chromosome reaches past its box (the partner's arms usually do), it is
followed into the dark pixels around the box that no other found chromosome holds. A
partner that runs into another found chromosome is not added: it is that neighbour's piece,
not a chromosome of its own.

numpy, OpenCV and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import cv2
import numpy as np

from karyo_gui.core.metaphase import Region, box_iou_matrix
from karyo_gui.core.straightening import OFF_RIDGE_COST, pixel_edges, pixel_graph

# chosen on the first 120 cil24 val metaphases with the finder 3dc3c489c806
# (bench/metaphase_finder.py measures what it brings)
MIN_COVER = 0.9  # the two paths cover this share of the region...
MAX_SINGLE = 0.8  # ...while the best single path covers at most this share
MIN_STRAIGHT = 0.75  # each path's end-to-end distance over its length
MIN_ANGLE = 35.0  # degrees between the two paths (splayed sister chromatids meet at less)
MIN_LENGTH = 2.0  # chromosome widths, each path
SEARCH = 0.5  # the partner is followed this share of the box's longer side past the box
RUNS_INTO = 1.0  # a partner touching another chromosome's pixels over this many widths is its piece
FOUND_IOU = 0.5  # a partner whose box meets another found box this well was found already
_DIRECTIONS = np.array(
    [(np.cos(a), np.sin(a)) for a in np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)]
)


@dataclass
class Separated:
    """A found chromosome that was two crossing: its own pixels now, and its partner's."""

    index: int  # which found chromosome
    own: Region
    partner: Region
    partner_box: tuple[float, float, float, float]  # drawn with the finder's box margin


def _largest_part(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def arm_tips(mask: np.ndarray, width: float) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The tips of the region's arms (x, y): its farthest pixels in 16 directions, at least
    1.2 widths from its thickest point and 1.5 widths from each other; and the distance of
    every pixel to the region's edge."""
    to_edge = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)
    to_edge = to_edge[1:-1, 1:-1]
    ys, xs = np.nonzero(mask)
    thickest = int(np.argmax(to_edge[ys, xs]))
    middle = np.array([xs[thickest], ys[thickest]], np.float64)
    points = np.stack([xs, ys], 1).astype(np.float64)
    tips: list[tuple[int, int]] = []
    for direction in _DIRECTIONS:
        tip = points[int(np.argmax(points @ direction))]
        if np.hypot(*(tip - middle)) < 1.2 * width:
            continue
        if all(np.hypot(tip[0] - x, tip[1] - y) >= 1.5 * width for x, y in tips):
            tips.append((int(tip[0]), int(tip[1])))
    return tips, to_edge


def crossing_paths(mask: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The two chromosomes of a region that is two crossing (two masks of the region's
    shape, sharing the crossing), or None when it does not look like an X."""
    mask = np.asarray(mask, bool)
    if mask.sum() < 4 * width * width:
        return None
    mask = _largest_part(mask)
    tips, to_edge = arm_tips(mask, width)
    if not 4 <= len(tips) <= 6:
        return None
    half = width / 2.0
    cost = 1.0 + OFF_RIDGE_COST * (1.0 - np.minimum(to_edge / half, 1.0)) ** 2
    pixels, (starts, ends, _, costs) = pixel_edges(mask, cost)
    index = np.full(mask.shape, -1, np.int64)
    index[pixels[:, 1].astype(int), pixels[:, 0].astype(int)] = np.arange(len(pixels))
    sources = [int(index[y, x]) for x, y in tips]
    from scipy.sparse.csgraph import dijkstra

    _, previous = dijkstra(pixel_graph(starts, ends, costs, len(pixels)), False, sources,
                           return_predecessors=True)  # fmt: skip
    total = float(mask.sum())
    paths = {}  # (tip, tip): (pixels, straightness, length, direction)
    for i, j in combinations(range(len(tips)), 2):
        path = [sources[j]]
        while path[-1] != sources[i] and previous[i, path[-1]] >= 0:
            path.append(int(previous[i, path[-1]]))
        if path[-1] != sources[i]:
            return None
        points = pixels[path]
        length = float(np.hypot(*np.diff(points, axis=0).T).sum())
        direction = points[-1] - points[0]
        grown = np.zeros(mask.shape, np.uint8)
        radii = np.clip(to_edge[points[:, 1].astype(int), points[:, 0].astype(int)],
                        0.6 * half, 1.25 * half)  # fmt: skip
        for (x, y), radius in zip(points.astype(int), radii):
            cv2.circle(grown, (int(x), int(y)), int(radius + 1.5), 1, -1)
        straight = float(np.hypot(*direction)) / max(length, 1.0)
        paths[i, j] = (grown.astype(bool) & mask, straight, length, direction)
    if max(part.sum() for part, *_ in paths.values()) / total > MAX_SINGLE:
        return None  # one chromosome explains it (with a neighbour's stub, or bent)
    best, best_score = None, -1.0
    for first, second in combinations(paths, 2):
        if len({*first, *second}) < 4:
            continue
        part1, straight1, length1, direction1 = paths[first]
        part2, straight2, length2, direction2 = paths[second]
        cosine = abs(direction1 @ direction2) / (
            np.hypot(*direction1) * np.hypot(*direction2) + 1e-9
        )
        if np.degrees(np.arccos(min(cosine, 1.0))) < MIN_ANGLE:
            continue
        if min(straight1, straight2) < MIN_STRAIGHT or min(length1, length2) < MIN_LENGTH * width:
            continue
        cover = (part1 | part2).sum() / total
        if cover < MIN_COVER or not (part1 & part2).any():
            continue
        score = cover + straight1 + straight2
        if score > best_score:
            best, best_score = (part1, part2), score
    return best


def box_margin(boxes: np.ndarray, regions: list[Region | None]) -> float:
    """How far the finder draws a box outside its chromosome's pixels (pixels, the median
    over the chromosomes that meet no other box), so a partner's box is drawn alike."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    meets = box_iou_matrix(boxes, boxes)
    np.fill_diagonal(meets, 0.0)
    gaps = []
    for box, region, meeting in zip(boxes, regions, meets):
        if region is None or (meeting.size and meeting.max() > 0):
            continue
        x0, y0, x1, y1 = region.box
        gaps += [x0 - box[0], y0 - box[1], box[2] - x1, box[3] - y1]
    return float(np.median(gaps)) if gaps else 0.0


def separate_crossings(pixels: np.ndarray, boxes: np.ndarray, regions: list[Region | None],
                       width: float) -> list[Separated]:  # fmt: skip
    """The found chromosomes (``boxes``, their ``regions`` in ``pixels``, the image's
    chromosome pixels) that are two crossing, each with its partner. A partner whose box
    meets another found one (or an earlier partner's) is not given: it was found already."""
    height, image_width = pixels.shape
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    margin = box_margin(boxes, regions)
    held = np.zeros(pixels.shape, np.uint16)  # how many found chromosomes hold each pixel
    for region in regions:
        if region is not None:
            x0, y0, x1, y1 = region.box
            held[y0:y1, x0:x1] += region.mask
    taken = list(boxes)
    separated: list[Separated] = []
    for index, region in enumerate(regions):
        if region is None or crossing_paths(region.mask, width) is None:
            continue
        x0, y0, x1, y1 = region.box
        reach = int(SEARCH * max(x1 - x0, y1 - y0))
        a, b = max(0, x0 - reach), max(0, y0 - reach)
        c, d = min(image_width, x1 + reach), min(height, y1 + reach)
        own = np.zeros((d - b, c - a), bool)
        own[y0 - b:y1 - b, x0 - a:x1 - a] = region.mask
        others = (held[b:d, a:c] > own) & pixels[b:d, a:c]  # other chromosomes' pixels
        around = (pixels[b:d, a:c] & ~others) | own
        _, labels = cv2.connectedComponents(around.astype(np.uint8), connectivity=8)
        linked = np.unique(labels[own])
        around = np.isin(labels, linked[linked > 0])
        parts = crossing_paths(around, width)
        if parts is None:
            continue
        cuts = [Region((a, b, c, d), part).tight() for part in parts]
        if any(cut is None for cut in cuts):
            continue
        drawn = np.array([cut.box for cut in cuts], np.float64) + margin * np.array([-1, -1, 1, 1])
        fits = box_iou_matrix(drawn, boxes[index:index + 1])[:, 0]
        mine = int(np.argmax(fits))
        partner, partner_box = cuts[1 - mine], tuple(float(v) for v in drawn[1 - mine])
        others_boxes = np.array([box for k, box in enumerate(taken) if k != index])
        if len(others_boxes) and (
            box_iou_matrix(np.array([partner_box]), others_boxes).max() >= FOUND_IOU
        ):
            continue  # found already (its own box may well be as large: an X fills both)
        near = cv2.dilate(parts[1 - mine].astype(np.uint8), np.ones((5, 5), np.uint8))
        if int((near.astype(bool) & others).sum()) > RUNS_INTO * width:
            continue  # it runs into another chromosome: that one's piece
        taken.append(np.array(partner_box))
        separated.append(Separated(index, cuts[mine], partner, partner_box))
    return separated
