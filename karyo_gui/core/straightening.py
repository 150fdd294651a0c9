"""Straightening bent chromosomes along their centre line.

Chromosomes lie bent in a spread, and a crop of a bent chromosome is shorter than the
chromosome and shows its bands at an angle; the model then takes a bent 9 for an X or a
bowed 2 for a 3. Straightening lays the chromosome out along its own axis, as a
cytogeneticist does by eye: the centre line is traced, then the picture is sampled across
it, point by point, so the bands come out level and the length is the length along the
chromosome.

The centre line is the cheapest path between the chromosome's two ends (the two points
farthest apart inside it) that keeps to the middle (the ridge of the distance to the
edge), smoothed by a Gaussian of 0.6 half-widths. Its last half-width at each end is
replaced by a straight continuation, because the path ends in the tip of one chromatid.

Works on one upright crop with a bright chromosome on a dark background (as the model
sees it); numpy, OpenCV and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

SMOOTHING = 0.6  # the centre line is smoothed over this many half-widths (at least 2 px)
MARGIN = 1.6  # the picture is sampled this many half-widths either side of the centre line
OFF_RIDGE_COST = 4.0  # how much more a step costs at the chromosome's edge than on its ridge
MIN_AREA = 20  # pixels: smaller objects are left alone
# crops larger than this (debris, a whole spread saved as one crop) are left alone: a
# chromosome crop has a few thousand pixels, and the graph grows with the crop
MAX_PIXELS = 250_000

_STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))  # 8-connectivity, each pair once


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class CentreLine:
    """The chromosome's centre line (x, y points, one pixel apart), half its width, and the
    chromosome's mask it was traced in."""

    points: np.ndarray
    half_width: float
    mask: np.ndarray

    @property
    def bend(self) -> float:
        """How far the line strays from the straight line between its ends, in chromosome
        widths (0 for a straight chromosome, about 1 for a clear bow, 2 and more for a V)."""
        start, end = self.points[0], self.points[-1]
        chord = end - start
        length = float(np.hypot(*chord))
        if length < 1.0:
            return 0.0
        offsets = self.points - start
        distances = np.abs(offsets[:, 0] * chord[1] - offsets[:, 1] * chord[0]) / length
        return float(distances.max() / (2.0 * self.half_width))


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Straightened:
    """A straightened chromosome and, for each of its pixels, where it came from in the
    crop (``source_x``, ``source_y``: float pixel coordinates, for mapping pictures back)."""

    image: np.ndarray
    source_x: np.ndarray
    source_y: np.ndarray
    bend: float


def chromosome_mask(image: np.ndarray) -> np.ndarray | None:
    """The crop's largest bright object with its holes filled (pale bands leave gaps in a
    plain threshold), or None when there is nothing bright."""
    blur = cv2.GaussianBlur(image, (3, 3), 0)
    otsu, _ = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (blur > 0.5 * otsu).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disc)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    padded = np.pad((labels == largest).astype(np.uint8), 1)
    outside = padded.copy()
    cv2.floodFill(outside, None, (0, 0), 1)
    padded[outside == 0] = 1  # what the background cannot reach is a hole
    return padded[1:-1, 1:-1].astype(bool)


def pixel_edges(mask: np.ndarray, cost: np.ndarray):
    """The mask's pixels (x, y) and the edges joining 8-neighbours, each weighted by its
    length and by its length times the mean ``cost`` of its two pixels."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    index = np.full(mask.shape, -1, np.int64)
    index[ys, xs] = np.arange(len(ys))
    starts, ends, lengths, costs = [], [], [], []
    for dy, dx in _STEPS:
        y2, x2 = ys + dy, xs + dx
        inside = (y2 < height) & (x2 >= 0) & (x2 < width)
        inside[inside] &= mask[y2[inside], x2[inside]]
        a, b = (ys[inside], xs[inside]), (y2[inside], x2[inside])
        starts.append(index[a])
        ends.append(index[b])
        lengths.append(np.full(len(a[0]), np.hypot(dy, dx)))
        costs.append(lengths[-1] * 0.5 * (cost[a] + cost[b]))
    pixels = np.stack([xs, ys], 1).astype(np.float64)
    return pixels, [np.concatenate(part) for part in (starts, ends, lengths, costs)]


# scipy's graph and filter modules are imported where they are used: a third of a second that
# the window's first paint (which draws cut-out chromosomes, never traced ones) need not wait

def pixel_graph(starts, ends, weights, size: int):
    from scipy import sparse

    return sparse.csr_matrix((weights, (starts, ends)), shape=(size, size))


def _farthest(distances: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Per chromosome (pixels ``first[k]`` up to ``first[k + 1]``), its pixel farthest away."""
    distances = np.where(np.isfinite(distances), distances, -1.0)
    return np.array(
        [lo + int(np.argmax(distances[lo:hi])) for lo, hi in pairwise(first)],
        np.int64,
    )


def _even_steps(points: np.ndarray, sigma: float) -> np.ndarray:
    """The path resampled one pixel apart along its length, then smoothed."""
    along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    samples = np.linspace(0.0, along[-1], max(2, round(along[-1]) + 1))
    line = np.stack([np.interp(samples, along, points[:, k]) for k in range(2)], 1)
    if len(line) > 4:
        from scipy.ndimage import gaussian_filter1d

        line = np.stack([gaussian_filter1d(line[:, k], sigma, mode="nearest") for k in range(2)], 1)
    return line


def centre_lines(images: list[np.ndarray]) -> list[CentreLine | None]:
    """The centre line of each crop's chromosome from one end to the other (None where a
    crop holds no object big enough to trace). All crops are traced together, as one graph
    whose parts do not touch, so a cell costs three shortest-path searches."""
    traced, parts, half_widths, masks = [], [], [], []
    for k, image in enumerate(images):
        traceable = image is not None and 0 < image.size <= MAX_PIXELS
        mask = chromosome_mask(image) if traceable else None
        if mask is None or mask.sum() < MIN_AREA:
            continue
        # padded, so that a chromosome touching the crop's edge still has an edge there
        to_edge = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)
        to_edge = to_edge[1:-1, 1:-1]
        half_width = float(to_edge.max())
        ridge_cost = 1.0 + OFF_RIDGE_COST * (1.0 - to_edge / half_width) ** 2
        pixels, edges = pixel_edges(mask, ridge_cost)
        traced.append(k)
        parts.append((pixels, edges, int(np.argmax(to_edge[mask]))))
        half_widths.append(half_width)
        masks.append(mask)
    lines: list[CentreLine | None] = [None] * len(images)
    if not traced:
        return lines
    from scipy.sparse.csgraph import dijkstra

    first = np.cumsum([0] + [len(pixels) for pixels, _, _ in parts])
    # pixel numbers of each chromosome's edges move up by the pixels of those before it
    starts, ends = (
        np.concatenate([edges[i] + first[k] for k, (_, edges, _) in enumerate(parts)])
        for i in (0, 1)
    )
    lengths, costs = (np.concatenate([edges[i] for _, edges, _ in parts]) for i in (2, 3))
    plain = pixel_graph(starts, ends, lengths, first[-1])
    middles = first[:-1] + np.array([middle for _, _, middle in parts])
    one_end = _farthest(dijkstra(plain, False, middles, min_only=True), first)
    other_end = _farthest(dijkstra(plain, False, one_end, min_only=True), first)
    ridge = pixel_graph(starts, ends, costs, first[-1])
    _, previous, _ = dijkstra(ridge, False, one_end, True, min_only=True)
    pixels = np.concatenate([pixels for pixels, _, _ in parts])
    for k, start, end, half_width, mask in zip(traced, one_end, other_end, half_widths, masks):
        path = [int(end)]
        while path[-1] != start and previous[path[-1]] >= 0:
            path.append(int(previous[path[-1]]))
        if len(path) >= 8:
            points = _even_steps(pixels[path[::-1]], max(2.0, SMOOTHING * half_width))
            lines[k] = CentreLine(points, half_width, mask)
    return lines


def _with_straight_ends(line: CentreLine) -> np.ndarray:
    """The centre line, top end first, its last half-width at each end replaced by a
    straight continuation long enough to cover the chromosome's tips."""
    points = line.points if line.points[0, 1] <= line.points[-1, 1] else line.points[::-1]
    cut = int(min(round(line.half_width), (len(points) - 2) // 3))
    if cut > 0:
        points = points[cut:-cut]
    reach = cut + int(np.ceil(line.half_width)) + 2
    k = min(4, len(points) - 1)
    head = points[0] - points[k]
    tail = points[-1] - points[-1 - k]
    head /= max(float(np.hypot(*head)), 1e-6)
    tail /= max(float(np.hypot(*tail)), 1e-6)
    return np.concatenate(
        [
            points[0] + np.outer(np.arange(reach, 0, -1), head),
            points,
            points[-1] + np.outer(np.arange(1, reach + 1), tail),
        ]
    )


def straighten(image: np.ndarray, min_bend: float) -> Straightened | None:
    """The chromosome of an upright crop laid out straight, its top end still on top, or None
    when it is not bent by at least ``min_bend`` chromosome widths (or cannot be traced)."""
    return straighten_all([image], min_bend)[0]


def straighten_all(images: list[np.ndarray], min_bend: float) -> list[Straightened | None]:
    """:func:`straighten` for all crops of a cell at once (faster than one by one)."""
    return [
        None if line is None or line.bend < min_bend else _laid_out(image, line)
        for image, line in zip(images, centre_lines(images))
    ]


def _laid_out(image: np.ndarray, line: CentreLine) -> Straightened | None:
    points = _with_straight_ends(line)
    along = np.gradient(points, axis=0)
    along /= np.maximum(np.hypot(*along.T), 1e-6)[:, None]
    across = np.stack([-along[:, 1], along[:, 0]], 1)
    half = int(np.ceil(line.half_width * MARGIN)) + 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    source_x = (points[:, None, 0] + offsets[None, :] * across[:, None, 0]).astype(np.float32)
    source_y = (points[:, None, 1] + offsets[None, :] * across[:, None, 1]).astype(np.float32)
    laid_out = cv2.remap(image, source_x, source_y, cv2.INTER_LINEAR, borderValue=0)
    mask = line.mask.astype(np.uint8)
    inside = cv2.remap(mask, source_x, source_y, cv2.INTER_NEAREST, borderValue=0)
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    if len(rows) == 0 or rows[-1] - rows[0] <= cols[-1] - cols[0]:
        return None  # nothing left, or not longer than wide: leave the crop as it is
    keep = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return Straightened(
        np.ascontiguousarray(laid_out[keep]),
        np.ascontiguousarray(source_x[keep]),
        np.ascontiguousarray(source_y[keep]),
        line.bend,
    )


def back_to_crop(values: np.ndarray, straightened: Straightened, shape: tuple[int, int]):
    """A float map over the straightened chromosome as a map over the crop (``shape``):
    each value goes back to where its pixel came from, shared among the four nearest crop
    pixels; crop pixels that nothing came back to take their neighbours' values."""
    height, width = shape
    x, y = straightened.source_x.ravel(), straightened.source_y.ravel()
    values = np.asarray(values, np.float32).ravel()
    total = np.zeros(shape, np.float64)
    weight = np.zeros(shape, np.float64)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    for dx in (0, 1):
        for dy in (0, 1):
            share = (1.0 - np.abs(x - (x0 + dx))) * (1.0 - np.abs(y - (y0 + dy)))
            inside = (x0 + dx >= 0) & (x0 + dx < width) & (y0 + dy >= 0) & (y0 + dy < height)
            where = (y0[inside] + dy, x0[inside] + dx)
            np.add.at(total, where, share[inside] * values[inside])
            np.add.at(weight, where, share[inside])
    blurred_total = cv2.GaussianBlur(total, (0, 0), 1.5)
    blurred_weight = cv2.GaussianBlur(weight, (0, 0), 1.5)
    filled = np.where(weight > 0.05, total / np.maximum(weight, 1e-9), 0.0)
    smooth = blurred_total / np.maximum(blurred_weight, 1e-9)
    return np.where(weight > 0.05, filled, np.where(blurred_weight > 1e-3, smooth, 0.0)).astype(
        np.float32
    )
