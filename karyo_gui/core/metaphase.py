"""Whole metaphase images: reading them, their scale, and chromosomes as pixel regions.

A metaphase image is read as a 2-D uint8 array with dark chromosomes on a light background
(a bright-on-dark picture, Q-banded or fluorescent, is inverted and says so). Each
chromosome found in it is a :class:`Region`: an axis-aligned box and a pixel mask inside
it. Regions of two crossing chromosomes may share pixels. A chromosome's crop is cut from
its region: the box, with every pixel outside the mask whited out, so the classifier sees
one chromosome and not its neighbours.

Everything here is numpy/OpenCV: the finder (a model) lives in ``karyo_gui.inference``,
its training in ``trainer``; what they share about images is here.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from karyo_gui.core.images import (
    IMAGE_SUFFIXES,
    CropReadError,
    _read_bytes,
    _to_grey8,
    content_hash,
    jpeg_header_problem,
)

MAX_METAPHASE_PIXELS = 120_000_000  # refused above (a 10,000 x 12,000 scan); ~360 MB as RGB
MAX_METAPHASE_SIDE = 4096  # larger images are downsampled to this, with a note
MIN_METAPHASE_SIDE = 64
MAX_METAPHASE_BYTES = 512 * 1024 * 1024
# the metaphase images of one case opened from a folder: 500 camera frames of a megapixel
# (cil24's are 0.45), or 30 of 4096 x 4096; all of them are held while the case is open
MAX_CASE_METAPHASE_PIXELS = 500_000_000

TYPICAL_WIDTH = 15.0  # chromosome width in pixels of a typical karyotyping camera (cil24)
CLUSTER_AREA = 2.6  # a region this many times the median area holds several chromosomes


class MetaphaseReadError(CropReadError):
    """A metaphase image that cannot be used; ``str()`` names the file and the reason."""


@dataclass
class MetaphaseImage:
    """A metaphase as read: grey pixels, dark chromosomes on light, and how it was read."""

    pixels: np.ndarray  # 2-D uint8
    path: str | None = None
    content_hash: str | None = None
    scale: float = 1.0  # pixels of ``pixels`` per pixel of the file (< 1: downsampled)
    inverted: bool = False  # the file was bright-on-dark and was inverted
    notes: list[str] = field(default_factory=list)
    # the file could not be read when a case was opened: ``pixels`` are a white stand-in of
    # the saved size, kept so that saving the case again keeps the file's path and hash
    missing: bool = False

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def is_metaphase_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_metaphase(path: str | os.PathLike) -> MetaphaseImage:
    """The metaphase image at ``path`` (PNG, JPEG, TIFF 8/16-bit grey or RGB, BMP)."""
    size = _regular_file_size(path)
    if size > MAX_METAPHASE_BYTES:
        raise MetaphaseReadError(path, f"file is {size:,} bytes, too large for a metaphase image")
    try:
        data = _read_bytes(path)
    except CropReadError as error:  # empty, permission denied: said as a metaphase's
        raise MetaphaseReadError(path, error.reason) from None
    image = decode_metaphase(data, path)
    image.path = os.fspath(path)
    image.content_hash = content_hash(data)
    return image


def _regular_file_size(path: str | os.PathLike) -> int:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise MetaphaseReadError(path, "file not found (moved or deleted?)") from None
    except OSError as error:
        raise MetaphaseReadError(path, f"cannot read file ({error.strerror or error})") from None
    import stat

    if stat.S_ISDIR(info.st_mode):
        raise MetaphaseReadError(path, "is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise MetaphaseReadError(path, "not a regular file (a device or a pipe?)")
    return info.st_size


def decode_metaphase(data: bytes, path: str | os.PathLike = "<memory>") -> MetaphaseImage:
    notes: list[str] = []
    header_problem = jpeg_header_problem(data)  # Pillow's header walk is slow on crafted JPEGs
    if header_problem:
        raise MetaphaseReadError(path, header_problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Pillow's own bomb limit (2 x MAX_IMAGE_PIXELS) lies above ours; it is not
            # switched off here: that global would stay off when threads read at once
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_METAPHASE_PIXELS:
                raise MetaphaseReadError(
                    path,
                    f"image is {width} x {height} px ({width * height / 1e6:.0f} megapixels), "
                    f"more than karyo reads as one metaphase "
                    f"({MAX_METAPHASE_PIXELS / 1e6:.0f} megapixels)",
                )
            if min(width, height) < MIN_METAPHASE_SIDE:
                raise MetaphaseReadError(
                    path, f"image is {width} x {height} px, too small to be a metaphase"
                )
            factor = 1
            while max(width, height) / factor > MAX_METAPHASE_SIDE:
                factor *= 2
            if factor > 1 and image.format == "JPEG":
                image.draft(image.mode, (width // factor, height // factor))
            image.load()
    except MetaphaseReadError:
        raise
    except Image.DecompressionBombError as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f" ({int(pixels.group(1)) / 1e6:,.0f} megapixels)" if pixels else ""
        raise MetaphaseReadError(
            path,
            f"image is far too large{size}, more than karyo reads as one metaphase "
            f"({MAX_METAPHASE_PIXELS / 1e6:.0f} megapixels)",
        ) from None
    except UnidentifiedImageError:
        raise MetaphaseReadError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, OverflowError) as error:
        raise MetaphaseReadError(path, f"corrupt or truncated image ({error})") from None
    except MemoryError:
        raise MetaphaseReadError(path, "not enough memory to decode this image") from None
    try:
        grey = _to_grey8(image, path)
    except CropReadError as error:
        raise MetaphaseReadError(path, error.reason) from None
    except MemoryError:
        raise MetaphaseReadError(path, "not enough memory to decode this image") from None
    if max(grey.shape) > MAX_METAPHASE_SIDE:
        shrink = MAX_METAPHASE_SIDE / max(grey.shape)
        size = (max(1, round(grey.shape[1] * shrink)), max(1, round(grey.shape[0] * shrink)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    # against the file's own size: a JPEG is decoded already reduced (draft)
    scale = grey.shape[1] / width
    if grey.shape[1] != width or grey.shape[0] != height:
        notes.append(
            f"image is {width} x {height} px; downsampled to {grey.shape[1]} x {grey.shape[0]}"
        )
    inverted = is_bright_on_dark(grey)
    if inverted:
        grey = 255 - grey
        notes.append("bright chromosomes on a dark background (fluorescent?): inverted")
    return MetaphaseImage(np.ascontiguousarray(grey), scale=scale, inverted=inverted, notes=notes)


def decoded_pixels(width: int, height: int) -> int:
    """Pixels karyo holds for a metaphase image of this size (larger ones are downsampled
    to MAX_METAPHASE_SIDE on their longer side)."""
    shrink = min(1.0, MAX_METAPHASE_SIDE / max(width, height, 1))
    return max(1, round(width * shrink)) * max(1, round(height * shrink))


GLANCE_SIDE = 512  # has_dark_objects looks at the image this small
GLANCE_CONTRAST = 50  # grey levels below the background that count as stained
GLANCE_PIXELS = 20  # stained pixels (at GLANCE_SIDE) below which nothing is there


def has_dark_objects(grey: np.ndarray) -> bool:
    """Whether the image holds anything stained at all: at most GLANCE_SIDE px on its longer
    side, at least GLANCE_PIXELS pixels GLANCE_CONTRAST grey levels darker than the median
    (the background). A blank or overexposed frame has none, and is told in milliseconds
    instead of being searched (every real metaphase of cil24 has thousands)."""
    shrink = min(1.0, GLANCE_SIDE / max(grey.shape))
    small = downscaled(grey, shrink)
    background = float(np.median(small))
    return int(np.count_nonzero(small < background - GLANCE_CONTRAST)) >= GLANCE_PIXELS


def stained_box(grey: np.ndarray, margin: int = 0) -> Box | None:
    """The box around everything stained in the image (chromosomes, nuclei, debris: pixels
    GLANCE_CONTRAST grey levels darker than the background), grown by ``margin`` pixels and
    kept inside the image; None when nothing is stained. Looked at about 1024 px large, each
    pixel the darkest of those it stands for, so a thin chromosome is not averaged away."""
    step = max(1, round(max(grey.shape) / (2 * GLANCE_SIDE)))
    small = cv2.erode(grey, np.ones((step, step), np.uint8))[::step, ::step] if step > 1 else grey
    stained = small < float(np.median(small)) - GLANCE_CONTRAST
    _, _, stats, _ = cv2.connectedComponentsWithStats(stained.astype(np.uint8), 8)
    parts = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= 4]  # not a speck of dust
    if not len(parts):
        return None
    x0 = int(parts[:, cv2.CC_STAT_LEFT].min()) * step - margin
    y0 = int(parts[:, cv2.CC_STAT_TOP].min()) * step - margin
    x1 = int((parts[:, cv2.CC_STAT_LEFT] + parts[:, cv2.CC_STAT_WIDTH]).max()) * step + margin
    y1 = int((parts[:, cv2.CC_STAT_TOP] + parts[:, cv2.CC_STAT_HEIGHT]).max()) * step + margin
    height, width = grey.shape
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def is_bright_on_dark(grey: np.ndarray) -> bool:
    """Whether the background (the most common brightness, the edges) is dark."""
    border = np.concatenate([grey[:4].ravel(), grey[-4:].ravel(), grey[:, :4].ravel(),
                             grey[:, -4:].ravel()])
    return float(np.median(grey)) < 100 and float(np.median(border)) < 110


# ---------------------------------------------------------------- background and foreground

def flatten_background(grey: np.ndarray, width: float = TYPICAL_WIDTH) -> np.ndarray:
    """The image divided by its background (uneven illumination removed), as float32 in
    0..1 with the background at 1. The background is what a closing with a disc wider
    than a chromosome leaves: dark objects narrower than the disc are lifted out."""
    radius = int(max(3, round(2.5 * width)))
    small = max(1, radius // 8)
    shrunk = cv2.resize(grey, None, fx=1 / small, fy=1 / small, interpolation=cv2.INTER_AREA) \
        if small > 1 else grey
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * (radius // small) + 1,) * 2)
    background = cv2.morphologyEx(shrunk, cv2.MORPH_CLOSE, kernel)
    background = cv2.GaussianBlur(background, (0, 0), max(1.0, radius / small / 2))
    if small > 1:
        background = cv2.resize(background, (grey.shape[1], grey.shape[0]),
                                interpolation=cv2.INTER_LINEAR)
    flat = grey.astype(np.float32) / np.maximum(background.astype(np.float32), 1.0)
    return np.clip(flat, 0.0, 1.0)


def foreground_mask(grey: np.ndarray, width: float = TYPICAL_WIDTH) -> np.ndarray:
    """Dark pixels (chromosomes, nuclei, debris) of a metaphase as a bool mask: Otsu's
    threshold on the flattened image, opened to drop specks."""
    flat = flatten_background(grey, width)
    darkness = np.clip((1.0 - flat) * 255.0 * 2.0, 0, 255).astype(np.uint8)
    darkness = cv2.GaussianBlur(darkness, (0, 0), 0.8)
    threshold, _ = cv2.threshold(darkness, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = darkness > max(threshold, 20)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return mask.astype(bool)


def estimate_chromosome_width(grey: np.ndarray) -> float:
    """The typical chromosome width in pixels: twice the median distance to the edge along
    the ridges of the dark objects. Nuclei are few and debris small, so the median is the
    chromosomes'. Falls back to the typical camera's width when nothing dark is found."""
    mask = foreground_mask(grey).astype(np.uint8)
    if mask.sum() < 50:
        return TYPICAL_WIDTH
    distance = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    ridge = (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8))) & (distance > 1.5)
    values = distance[ridge]
    if values.size < 20:
        return TYPICAL_WIDTH
    return float(np.clip(2.0 * np.median(values), 3.0, 200.0))


# ---------------------------------------------------------------- regions

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive), image pixels


@dataclass(eq=False)
class Region:
    """Where one chromosome lies in its metaphase: a box and a bool mask of the box's size."""

    box: Box
    mask: np.ndarray  # bool, shape (y1 - y0, x1 - x0)

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = (int(v) for v in self.box)
        self.box = (x0, y0, x1, y1)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"mask of shape {self.mask.shape} does not fit box {self.box}")

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @classmethod
    def from_mask(cls, full: np.ndarray) -> Region | None:
        """The region of the True pixels of an image-sized mask (None when there are none)."""
        rows = np.flatnonzero(full.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(full.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls((int(x0), int(y0), int(x1), int(y1)), full[y0:y1, x0:x1].copy())

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        full = np.zeros(shape, dtype=bool)
        x0, y0, x1, y1 = self.box
        full[y0:y1, x0:x1] = self.mask
        return full

    def shifted(self, dx: int, dy: int) -> Region:
        """The same pixels, the box moved by (dx, dy) (from a part of the image to all of it)."""
        x0, y0, x1, y1 = self.box
        return Region((x0 + dx, y0 + dy, x1 + dx, y1 + dy), self.mask)

    def tight(self) -> Region | None:
        """The same pixels in the smallest box that holds them."""
        x0, y0, _, _ = self.box
        inner = Region.from_mask(self.mask)
        if inner is None:
            return None
        a, b, c, d = inner.box
        return Region((x0 + a, y0 + b, x0 + c, y0 + d), inner.mask)

    def to_runs(self) -> list[int]:
        """The mask as run lengths over its box, row by row: alternately off and on
        counts, starting with off (the compact form stored in case files)."""
        flat = self.mask.ravel().astype(np.int8)
        changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [0]])))
        bounds = np.concatenate([[0], changes, [flat.size]])
        runs = np.diff(bounds)
        if runs.size and runs[-1] == 0:
            runs = runs[:-1]
        return [int(v) for v in runs]

    @classmethod
    def from_runs(cls, box: Box, runs: list[int]) -> Region:
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty box {box}")
        size = (x1 - x0) * (y1 - y0)
        values = np.asarray(runs, dtype=np.int64)
        if values.ndim != 1 or (values < 0).any() or int(values.sum()) != size:
            raise ValueError(f"run lengths do not cover the {x1 - x0} x {y1 - y0} box")
        on = np.zeros(values.size, dtype=bool)
        on[1::2] = True
        flat = np.repeat(on, values)
        return cls((x0, y0, x1, y1), flat.reshape(y1 - y0, x1 - x0))

    def polygon(self) -> np.ndarray:
        """The outline of the largest part, as an (n, 2) array of image x, y points."""
        contours, _ = cv2.findContours(
            self.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        if not contours:
            return np.zeros((0, 2), dtype=np.float32)
        largest = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
        return largest + np.array(self.box[:2], dtype=np.float32)

    def contours(self) -> list[np.ndarray]:
        """Every outline of the mask (one per part), as (n, 2) image x, y arrays."""
        found, _ = cv2.findContours(
            self.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        offset = np.array(self.box[:2], dtype=np.float32)
        return [c.reshape(-1, 2).astype(np.float32) + offset for c in found if len(c) >= 2]


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of every box of ``first`` (n, 4) with every box of ``second`` (m, 4)."""
    first = np.asarray(first, dtype=np.float64).reshape(-1, 4)
    second = np.asarray(second, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(first[:, None, 2], second[None, :, 2])
                 - np.maximum(first[:, None, 0], second[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(first[:, None, 3], second[None, :, 3])
                 - np.maximum(first[:, None, 1], second[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (first[:, 2] - first[:, 0]) * (first[:, 3] - first[:, 1])
    area_b = (second[:, 2] - second[:, 0]) * (second[:, 3] - second[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def match_boxes(found: np.ndarray, truth: np.ndarray, threshold: float = 0.5
                ) -> list[tuple[int, int]]:
    """One-to-one matches (found index, truth index) with box IoU >= threshold, chosen to
    maximise the total IoU (Hungarian assignment over the pairs above the threshold)."""
    from scipy.optimize import linear_sum_assignment

    iou = box_iou_matrix(found, truth)
    if iou.size == 0:
        return []
    cost = np.where(iou >= threshold, -iou, 0.0)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= threshold]


def region_in_box(foreground: np.ndarray, box: tuple[float, float, float, float],
                  claimed: np.ndarray | None = None) -> Region | None:
    """The chromosome inside a box: the dark pixels of the box, keeping the largest
    connected part and the parts nearly as large (a chromosome broken at its centromere),
    and dropping the corners of neighbours that reach in. ``claimed`` (image-sized, bool)
    marks pixels better explained by other boxes; they are dropped where that leaves the
    box's own part whole."""
    height, width = foreground.shape
    x0 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y0 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x1 = int(np.clip(np.ceil(box[2]), x0 + 1, width))
    y1 = int(np.clip(np.ceil(box[3]), y0 + 1, height))
    inside = foreground[y0:y1, x0:x1].copy()
    if claimed is not None:
        own = inside & ~claimed[y0:y1, x0:x1]
        if own.sum() >= 0.5 * inside.sum():
            inside = own
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inside.astype(np.uint8), 8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= 0.35 * areas.max())
    mask = np.isin(labels, keep)
    return Region((x0, y0, x1, y1), mask).tight()


def _int_box(box: tuple[float, ...], shape: tuple[int, int]) -> Box:
    height, width = shape
    x0 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y0 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x1 = int(np.clip(np.ceil(box[2]), x0 + 1, width))
    y1 = int(np.clip(np.ceil(box[3]), y0 + 1, height))
    return x0, y0, x1, y1


def _geodesic_steps(inside: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Steps (8-connected) from the seeds to every pixel of ``inside`` without leaving it;
    inf where it cannot be reached."""
    steps = np.full(inside.shape, np.inf, dtype=np.float32)
    reached = (seeds & inside).astype(np.uint8)
    allowed = inside.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    step = 0
    steps[reached.astype(bool)] = 0
    while True:
        grown = cv2.dilate(reached, kernel) & allowed
        new = grown.astype(bool) & ~reached.astype(bool)
        if not new.any():
            return steps
        step += 1
        steps[new] = step
        reached = grown


def regions_for_boxes(foreground: np.ndarray, boxes: list[tuple[float, ...]] | np.ndarray,
                      width: float = TYPICAL_WIDTH, share: float = 0.25
                      ) -> list[Region | None]:
    """The chromosome of each box: its dark pixels, each pixel given to the box whose own
    part reaches it by the shortest path through dark pixels of the box (so a neighbour
    reaching into the box stays the neighbour's). A box's own part starts from the pixels no
    other box covers (or from its centre, for a box lying inside another). Pixels reached
    about as soon from two boxes (within ``share`` chromosome widths) belong to both, and a
    part left in pieces (it passes under another chromosome) is bridged through the dark
    pixels between, which both then share. None for a box that holds no dark pixels."""
    shape = foreground.shape
    boxes = [_int_box(tuple(b), shape) for b in boxes]
    cover = np.zeros(shape, dtype=np.uint16)
    for x0, y0, x1, y1 in boxes:
        cover[y0:y1, x0:x1] += 1
    best = np.full(shape, np.inf, dtype=np.float32)
    patches: list[np.ndarray | None] = []
    for x0, y0, x1, y1 in boxes:
        inside = foreground[y0:y1, x0:x1]
        if not inside.any():
            patches.append(None)
            continue
        own = inside & (cover[y0:y1, x0:x1] == 1)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(own.astype(np.uint8), 8)
        large = 1 + np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= 0.3 * width * width)
        if count > 1 and large.size:
            # every sizeable part only this box covers: both ends of a chromosome that lies
            # across another one's box start its own part
            seeds = np.isin(labels, large)
        else:
            ys, xs = np.nonzero(inside)
            cy, cx = (y1 - y0) / 2.0, (x1 - x0) / 2.0
            near = np.hypot(ys - cy, xs - cx)
            seeds = np.zeros_like(inside)
            close = near <= near.min() + width / 2
            seeds[ys[close], xs[close]] = True
        steps = _geodesic_steps(inside, seeds)
        patches.append(steps)
        view = best[y0:y1, x0:x1]
        np.minimum(view, steps, out=view)
    tolerance = share * width
    regions: list[Region | None] = []
    for (x0, y0, x1, y1), steps in zip(boxes, patches):
        if steps is None:
            regions.append(None)
            continue
        mine = np.isfinite(steps) & (steps <= best[y0:y1, x0:x1] + tolerance)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mine.astype(np.uint8), 8)
        if count <= 1:
            regions.append(None)
            continue
        areas = stats[1:, cv2.CC_STAT_AREA]
        parts = 1 + np.flatnonzero(areas >= 0.35 * areas.max())
        mask = np.isin(labels, parts)
        if len(parts) > 1:
            # a chromosome in pieces lies under another where they cross: the dark pixels
            # of the hull of its pieces bridge the gap, and both then share the crossing
            points = cv2.findNonZero(mask.astype(np.uint8))
            hull = np.zeros(mask.shape, np.uint8)
            cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
            mask |= hull.astype(bool) & foreground[y0:y1, x0:x1]
        regions.append(Region((x0, y0, x1, y1), mask).tight())
    return regions


# the other cuts of a chromosome read with its own (see other_cuts): the shared margin of a
# tighter cut, in chromosome widths
TIGHT_SHARE = 0.1


def other_cuts(foreground: np.ndarray, boxes: list[tuple[float, ...]] | np.ndarray,
               regions: list[Region | None], width: float = TYPICAL_WIDTH
               ) -> list[list[Region]]:
    """Other ways to cut each box's chromosome than its region (``regions_for_boxes``), for
    a chromosome that touches or crosses another, where no one cut is surely right: a
    tighter cut (pixels reached about as soon from a neighbour's box go to the neighbour)
    and the whole box (all its dark pixels, a neighbour's reaching in too). The classifier
    reads a chromosome from its own crop and these together, and is right more often than
    from any one of them (cil24 val: the model card). Only cuts unlike the region are
    listed, so a chromosome lying alone has none."""
    tight = regions_for_boxes(foreground, boxes, width, share=TIGHT_SHARE)
    result: list[list[Region]] = []
    for box, region, narrow in zip(boxes, regions, tight):
        if region is None:
            result.append([])
            continue
        cuts: list[Region] = []
        for cut in (narrow, region_in_box(foreground, tuple(box))):
            if cut is not None and not any(_same_pixels(cut, seen) for seen in [region, *cuts]):
                cuts.append(cut)
        result.append(cuts)
    return result


def _same_pixels(a: Region, b: Region) -> bool:
    return a.box == b.box and bool(np.array_equal(a.mask, b.mask))


def cut_crop(grey: np.ndarray, region: Region, pad: int = 3, upright: bool = True) -> np.ndarray:
    """The chromosome's crop as the classifier takes it: its box (a few pixels wider), every
    pixel outside its mask (grown by one pixel, to keep the soft edge) white, and, with
    ``upright``, turned so that its long axis stands vertical, as crops cut by hand come."""
    height, width = grey.shape
    x0, y0, x1, y1 = region.box
    a, b = max(0, x0 - pad), max(0, y0 - pad)
    c, d = min(width, x1 + pad), min(height, y1 + pad)
    keep = np.zeros((d - b, c - a), dtype=np.uint8)
    keep[y0 - b:y1 - b, x0 - a:x1 - a] = region.mask
    keep = cv2.dilate(keep, np.ones((3, 3), np.uint8)).astype(bool)
    crop = np.full((d - b, c - a), 255, dtype=np.uint8)
    crop[keep] = grey[b:d, a:c][keep]
    if not upright:
        return crop
    return stand_upright(crop, keep)


def long_axis_angle(mask: np.ndarray) -> float:
    """Angle in degrees (counter-clockwise from the x axis, -90..90) of the long axis of the
    True pixels: the principal axis of their coordinates."""
    ys, xs = np.nonzero(mask)
    if xs.size < 3:
        return 90.0
    coords = np.stack([xs - xs.mean(), ys - ys.mean()]).astype(np.float64)
    values, vectors = np.linalg.eigh(coords @ coords.T)
    vx, vy = vectors[:, int(np.argmax(values))]
    angle = float(np.degrees(np.arctan2(-vy, vx)))  # y grows downwards in an image
    return (angle + 90.0) % 180.0 - 90.0


def stand_upright(crop: np.ndarray, mask: np.ndarray, pad: int = 2) -> np.ndarray:
    """The crop turned so its long axis is vertical (white where nothing was), trimmed."""
    angle = long_axis_angle(mask)
    turn = 90.0 - angle  # counter-clockwise turn that brings the axis to vertical
    turn = (turn + 90.0) % 180.0 - 90.0  # the smaller of the two turns that do
    if abs(turn) < 1.0:
        return crop
    height, width = crop.shape
    centre = (width / 2.0, height / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, turn, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w = int(np.ceil(height * sin + width * cos))
    new_h = int(np.ceil(height * cos + width * sin))
    matrix[0, 2] += new_w / 2.0 - centre[0]
    matrix[1, 2] += new_h / 2.0 - centre[1]
    turned = cv2.warpAffine(crop, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=255)
    inside = cv2.warpAffine(mask.astype(np.uint8), matrix, (new_w, new_h),
                            flags=cv2.INTER_NEAREST, borderValue=0).astype(bool)
    turned[~cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)] = 255
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return crop
    top, bottom = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, new_h)
    left, right = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, new_w)
    return np.ascontiguousarray(turned[top:bottom, left:right])


def downscaled(grey: np.ndarray, factor: float) -> np.ndarray:
    if abs(factor - 1.0) < 1e-3:
        return grey
    size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(grey, size, interpolation=interpolation)
