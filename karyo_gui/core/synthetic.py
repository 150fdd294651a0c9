"""Generated G-banded chromosome crops, whole cells and whole metaphase images.

Tests run on these instead of real data, and the app shows one as its example cell.
A crop is drawn from its type's ideogram (textbook length and centromere index, a fixed
band pattern): dark bands on a white background, a centromere constriction, rounded
ends, then random bending, blur, noise and contrast. A cell draws all its crops at one
condensation (length of chromosome 1 in pixels) and imaging style, like one metaphase.
A whole metaphase image lays such crops, turned at random, on a light background in a
round spread (some touching, some crossing) among nuclei and debris, and knows the true
pixels of every chromosome: the finder's training data and its tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from karyo_gui.core.case import Case, Cell, Chromosome, Flag
from karyo_gui.core.ideogram import ideogram
from karyo_gui.core.images import content_hash
from karyo_gui.core.iscn import karyotype_string, parse_karyotype
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.metaphase import MetaphaseImage, Region, cut_crop

EXAMPLE_KARYOTYPES = ("46,XY", "46,XX", "47,XY,+21", "47,XX,+18", "45,X", "47,XXY", "45,XX,-20")


@dataclass(frozen=True)
class ImagingStyle:
    """What one metaphase spread and its microscope look like."""

    chromosome1_length: float = 120.0  # pixels; condensation differs from cell to cell
    chromatid_width: float = 15.0  # pixels across one chromosome
    band_contrast: float = 0.75  # how dark a darkest band is, 0..1
    gamma: float = 1.0
    blur_sigma: float = 0.9
    noise_sigma: float = 4.0
    bend: float = 0.08  # largest sideways bend, as a fraction of the length

    @classmethod
    def random(cls, rng: np.random.Generator) -> ImagingStyle:
        return cls(
            chromosome1_length=float(rng.uniform(85, 150)),
            chromatid_width=float(rng.uniform(12, 18)),
            band_contrast=float(rng.uniform(0.65, 0.9)),
            gamma=float(rng.uniform(0.8, 1.25)),
            blur_sigma=float(rng.uniform(0.7, 1.6)),
            noise_sigma=float(rng.uniform(1.5, 7.0)),
            bend=float(rng.uniform(0.0, 0.12)),
        )


def generate_crop(
    chromosome_type: ChromosomeType,
    rng: np.random.Generator,
    style: ImagingStyle | None = None,
) -> np.ndarray:
    """One crop (2-D uint8, dark bands on white) of the given type."""
    style = style or ImagingStyle()
    if chromosome_type is ChromosomeType.UNCLASSIFIED:
        return _render_fragment(rng, style)
    shape = ideogram(chromosome_type)
    length = style.chromosome1_length * shape.relative_length * rng.uniform(0.93, 1.07)
    width = style.chromatid_width * rng.uniform(0.92, 1.08)
    positions = np.linspace(0.0, 1.0, 512)
    darkness = shape.darkness_profile(positions)
    if chromosome_type is ChromosomeType.Y:
        darkness = darkness * rng.uniform(0.6, 1.1)  # Yq heterochromatin varies between men
    return _render(
        positions, darkness, shape.centromere_index, length, width, rng, style
    )


def _render_fragment(rng: np.random.Generator, style: ImagingStyle) -> np.ndarray:
    """A small object of no type: debris or a marker chromosome without known bands."""
    positions = np.linspace(0.0, 1.0, 512)
    darkness = np.clip(rng.normal(0.5, 0.25, 512).cumsum() * 0.02 + 0.4, 0.0, 1.0)
    length = style.chromosome1_length * rng.uniform(0.08, 0.25)
    return _render(positions, darkness, rng.uniform(0.2, 0.5), length, style.chromatid_width, rng,
                   style)


def _render(
    positions: np.ndarray,
    darkness: np.ndarray,
    centromere: float,
    length: float,
    width: float,
    rng: np.random.Generator,
    style: ImagingStyle,
) -> np.ndarray:
    margin = 4
    bend = style.bend * length * rng.uniform(-1.0, 1.0)
    height_px = round(length) + 2 * margin
    width_px = round(width * 1.3 + 2 * abs(bend)) + 2 * margin
    y, x = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    t = np.clip((y - margin) / max(length, 1.0), 0.0, 1.0)
    inside = (y >= margin) & (y <= margin + length)

    # axis: a smooth sideways bend
    phase = rng.uniform(0, np.pi)
    axis = width_px / 2 + bend * (np.sin(np.pi * t + phase) - np.sin(phase + np.pi / 2))
    # two sister chromatids, held together at the centromere, apart towards the ends
    pinch = np.exp(-(((t - centromere) / 0.03) ** 2))
    spread = rng.uniform(0.0, 0.6) * np.abs(t - centromere) / max(centromere, 1 - centromere)
    offset = width / 4 * (1 + spread) * (1 - 0.55 * pinch)
    half = width / 4 * 1.15 * (1 - 0.25 * pinch)
    end = np.clip(np.minimum(t, 1 - t) * length / half.clip(1e-3), 0.0, 1.0)
    half = half * np.sqrt(end * (2 - end))  # rounded telomeres
    coverage = np.zeros_like(x)
    for side in (-1.0, 1.0):
        distance = np.abs(x - (axis + side * offset))
        coverage = np.maximum(coverage, np.clip(half - distance + 0.5, 0.0, 1.0))
    coverage *= inside

    # intensity: light bands grey, G-bands darker, a blotchy chromatin texture
    band = np.interp(t, positions, darkness)
    light = rng.uniform(115.0, 190.0)
    inner = light * (1 - style.band_contrast * band)
    texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, x.shape).astype(np.float32), (0, 0), 1.2)
    inner += texture * style.noise_sigma * 5.0
    image = 255.0 * (1 - coverage) + inner * coverage

    image = cv2.GaussianBlur(image, (0, 0), style.blur_sigma * rng.uniform(0.85, 1.15))
    image += rng.normal(0.0, style.noise_sigma * 0.3, image.shape) * (image < 250)
    image = 255.0 * (np.clip(image, 0, 255) / 255.0) ** style.gamma
    return _trim(np.clip(np.rint(image), 0, 255).astype(np.uint8))


def _trim(image: np.ndarray, pad: int = 2) -> np.ndarray:
    """Crop to the chromosome with a small white border, like a segmented crop."""
    rows = np.flatnonzero((image < 245).any(axis=1))
    cols = np.flatnonzero((image < 245).any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return image
    top, bottom = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, image.shape[0])
    left, right = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, image.shape[1])
    return np.ascontiguousarray(image[top:bottom, left:right])


def generate_cell(
    karyotype: str = "46,XY",
    seed: int | None = 0,
    name: str | None = None,
    style: ImagingStyle | None = None,
) -> Cell:
    """A whole metaphase of the given numerical karyotype (e.g. ``47,XY,+21``, ``45,X``).

    The crops come in random order, like a metaphase as loaded; ``given`` holds the
    true type of each (the unclassified bucket for ``+mar``).
    """
    counts = parse_karyotype(karyotype)
    rng = np.random.default_rng(seed)
    style = style or ImagingStyle.random(rng)
    types = [t for t in ChromosomeType for _ in range(counts.get(t, 0))]
    order = rng.permutation(len(types))
    chromosomes = [
        Chromosome(id=f"c{index:03d}", image=generate_crop(types[k], rng, style), given=types[k])
        for index, k in enumerate(order)
    ]
    return Cell(name=name or f"example {karyotype}", chromosomes=chromosomes)


# ------------------------------------------------------------------ whole metaphases

_MASK_LEVEL = 225  # a crop pixel darker than this is the chromosome's (its true mask)


@dataclass
class GeneratedMetaphase:
    """A generated whole metaphase and its truth: where each chromosome, nucleus and speck
    of debris lies. Masks of a crossing pair share the pixels where they cross."""

    pixels: np.ndarray  # 2-D uint8, dark chromosomes on a light background
    chromosomes: list[tuple[ChromosomeType, Region]]  # in reading order
    nuclei: list[Region]
    debris: list[Region]
    karyotype: str
    # each chromosome's centre line from one end to the other, (k, 2) image x, y
    centre_lines: list[np.ndarray] = field(default_factory=list)
    crossings: list[tuple[int, int]] = field(default_factory=list)  # indices of crossing pairs
    touching: list[tuple[int, int]] = field(default_factory=list)  # placed touching (0-2 px)
    style: ImagingStyle | None = None

    def boxes(self) -> np.ndarray:
        """The chromosomes' boxes, (n, 4) x0, y0, x1, y1 (x1, y1 exclusive)."""
        boxes = [region.box for _, region in self.chromosomes]
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)

    def types(self) -> list[ChromosomeType]:
        return [chromosome_type for chromosome_type, _ in self.chromosomes]

    def png_bytes(self) -> bytes:
        ok, data = cv2.imencode(".png", self.pixels)
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
            raise ValueError("could not encode the generated metaphase as PNG")
        return data.tobytes()

    def image(self) -> MetaphaseImage:
        """The metaphase as if read from a file (no path; hashed as its PNG)."""
        return MetaphaseImage(
            pixels=self.pixels.copy(), path=None, content_hash=content_hash(self.png_bytes())
        )


@dataclass
class _Sprite:
    """One object ready to place: how much light it lets through, its mask, its centre line
    (all in the sprite's own pixel coordinates)."""

    transmittance: np.ndarray  # float32, 1 = clear
    mask: np.ndarray  # bool, same shape
    line: np.ndarray  # (k, 2) x, y; empty for a nucleus or debris

    @property
    def middle(self) -> np.ndarray:
        """The point half-way along the centre line (the mask's centroid without one)."""
        if len(self.line) < 2:
            ys, xs = np.nonzero(self.mask)
            return np.array([xs.mean(), ys.mean()])
        steps = np.linalg.norm(np.diff(self.line, axis=0), axis=1)
        along = np.concatenate([[0.0], np.cumsum(steps)])
        half = along[-1] / 2
        return np.array([np.interp(half, along, self.line[:, k]) for k in (0, 1)])


@dataclass
class _Unit:
    """What is placed in one go: a chromosome, or a crossing pair built beforehand."""

    members: list[tuple[int, _Sprite, int, int]]  # chromosome index, sprite, dx, dy
    mask: np.ndarray  # union of the members' masks, unit coordinates

    @classmethod
    def single(cls, index: int, sprite: _Sprite) -> _Unit:
        return cls([(index, sprite, 0, 0)], sprite.mask)


def _crop_mask(crop: np.ndarray) -> np.ndarray:
    """The chromosome's pixels of a generated crop: darker than the white around it, holes
    filled, specks dropped."""
    from scipy import ndimage

    mask = ndimage.binary_fill_holes(crop < _MASK_LEVEL)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    if count <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero((areas >= 0.15 * areas.max()) & (areas >= 5))
    return np.isin(labels, keep)


def _centre_line(mask: np.ndarray) -> np.ndarray:
    """The centre line of an upright chromosome's mask: the middle of each row, smoothed,
    from its top tip to its bottom tip."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros((0, 2))
    middles = np.array([np.flatnonzero(mask[row]).mean() for row in rows])
    if middles.size >= 5:
        padded = np.pad(middles, 2, mode="edge")
        middles = np.convolve(padded, np.ones(5) / 5, mode="valid")
    keep = np.unique(np.concatenate([np.arange(0, rows.size, 3), [rows.size - 1]]))
    return np.stack([middles[keep], rows[keep].astype(np.float64)], axis=1)


def _rotated(transmittance: np.ndarray, mask: np.ndarray, line: np.ndarray,
             angle: float) -> _Sprite:
    """A sprite turned by ``angle`` degrees (counter-clockwise), on a canvas that holds it."""
    height, width = mask.shape
    radians = np.deg2rad(angle)
    cos, sin = abs(np.cos(radians)), abs(np.sin(radians))
    new_width = int(np.ceil(width * cos + height * sin)) + 2
    new_height = int(np.ceil(width * sin + height * cos)) + 2
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    matrix[0, 2] += (new_width - 1) / 2 - (width - 1) / 2
    matrix[1, 2] += (new_height - 1) / 2 - (height - 1) / 2
    size = (new_width, new_height)
    turned = cv2.warpAffine(transmittance, matrix, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
    turned_mask = cv2.warpAffine(mask.astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) > 0.5
    turned_line = line @ matrix[:, :2].T + matrix[:, 2] if len(line) else line
    return _Sprite(turned, turned_mask, turned_line)


def _chromosome_sprite(crop: np.ndarray, angle: float) -> _Sprite:
    mask = _crop_mask(crop)
    return _rotated(crop.astype(np.float32) / 255.0, mask, _centre_line(mask), angle)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _clipped(shape: tuple[int, int], x: int, y: int, height: int, width: int):
    """Slices of an image and of an array placed at x, y that overlap (None: no overlap)."""
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + height, shape[0]), min(x + width, shape[1])
    if y1 <= y0 or x1 <= x0:
        return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))


class _Spread:
    """Where objects lie so far: a count of grown masks (each object's mask widened by a
    margin) over the image, so that a new object can be kept apart from all, or from all
    but the one it should touch."""

    def __init__(self, shape: tuple[int, int], margin: int) -> None:
        self.shape = shape
        self.margin = margin
        self.occupied = np.zeros(shape, dtype=np.uint8)
        self.grown: list[tuple[int, int, np.ndarray]] = []  # x, y, grown mask
        self.placed: list[tuple[int, int, np.ndarray]] = []  # x, y, true mask

    def inside(self, mask: np.ndarray, x: int, y: int) -> bool:
        return x >= 0 and y >= 0 and x + mask.shape[1] <= self.shape[1] \
            and y + mask.shape[0] <= self.shape[0]

    def free(self, mask: np.ndarray, x: int, y: int, ignore: int | None = None,
             clip: bool = False) -> bool:
        """Whether ``mask`` at x, y keeps its margin from every object (but ``ignore``)."""
        if not clip and not self.inside(mask, x, y):
            return False
        where = _clipped(self.shape, x, y, *mask.shape)
        if where is None:
            return False
        image_part, mask_part = where
        window = self.occupied[image_part].astype(np.int16)
        if ignore is not None:
            gx, gy, grown = self.grown[ignore]
            mine = np.zeros(self.shape, dtype=np.int16)
            at = _clipped(self.shape, gx, gy, *grown.shape)
            if at is not None:
                mine[at[0]] = grown[at[1]]
            window = window - mine[image_part]
        return not (window[mask[mask_part]] > 0).any()

    def add(self, mask: np.ndarray, x: int, y: int, margin: int | None = None) -> int:
        margin = self.margin if margin is None else margin
        grown = cv2.dilate(np.pad(mask, margin).astype(np.uint8), _disc(margin)) \
            if margin > 0 else mask.astype(np.uint8)
        gx, gy = x - margin, y - margin
        at = _clipped(self.shape, gx, gy, *grown.shape)
        if at is not None:
            self.occupied[at[0]] += grown[at[1]]
        self.grown.append((gx, gy, grown))
        self.placed.append((x, y, mask))
        return len(self.grown) - 1


def _crossing_pair(first: tuple[int, np.ndarray], second: tuple[int, np.ndarray],
                   rng: np.random.Generator) -> _Unit | None:
    """Two chromosomes crossing near their middles at a large angle, as one unit; None when
    no such crossing came out (the pair is then placed apart)."""
    for _ in range(20):
        angle = float(rng.uniform(0, 360))
        turn = float(rng.uniform(55, 90)) * (1 if rng.random() < 0.5 else -1)
        a = _chromosome_sprite(first[1], angle)
        b = _chromosome_sprite(second[1], angle + turn)
        if len(a.line) < 2 or len(b.line) < 2:
            return None
        axis_a = a.line[-1] - a.line[0]
        axis_b = b.line[-1] - b.line[0]
        shift = (rng.uniform(-0.12, 0.12) * axis_a + rng.uniform(-0.12, 0.12) * axis_b)
        # place a at the origin of a canvas large enough for both
        offset = a.middle + shift - b.middle  # b's position relative to a
        dx, dy = round(offset[0]), round(offset[1])
        x0, y0 = min(0, dx), min(0, dy)
        x1 = max(a.mask.shape[1], dx + b.mask.shape[1])
        y1 = max(a.mask.shape[0], dy + b.mask.shape[0])
        canvas_a = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        canvas_b = canvas_a.copy()
        canvas_a[-y0:-y0 + a.mask.shape[0], -x0:-x0 + a.mask.shape[1]] = a.mask
        canvas_b[dy - y0:dy - y0 + b.mask.shape[0], dx - x0:dx - x0 + b.mask.shape[1]] = b.mask
        shared = int((canvas_a & canvas_b).sum())
        if 0 < shared <= 0.45 * min(a.mask.sum(), b.mask.sum()):
            members = [(first[0], a, -x0, -y0), (second[0], b, dx - x0, dy - y0)]
            return _Unit(members, canvas_a | canvas_b)
    return None


def _place(spread: _Spread, mask: np.ndarray, centre: np.ndarray, radius: float,
           rng: np.random.Generator, aspect: float) -> tuple[int, int]:
    """Top-left corner for ``mask`` in the round spread, apart from what lies there: random
    positions in the disc, rejected while they come too close; the disc grows when it is
    full, and the whole image is tried last."""
    middle = np.array([mask.shape[1] / 2, mask.shape[0] / 2])
    for attempt in range(480):
        if attempt and attempt % 80 == 0:
            radius *= 1.12
        r = radius * np.sqrt(rng.random())
        phi = rng.uniform(0, 2 * np.pi)
        point = centre + r * np.array([np.cos(phi) * aspect, np.sin(phi) / aspect]) - middle
        x, y = round(point[0]), round(point[1])
        if spread.free(mask, x, y):
            return x, y
    height, width = spread.shape
    for _ in range(2000):
        x = int(rng.integers(0, max(1, width - mask.shape[1] + 1)))
        y = int(rng.integers(0, max(1, height - mask.shape[0] + 1)))
        if spread.free(mask, x, y):
            return x, y
    raise ValueError(
        f"a {width} x {height} px image is too small for this metaphase; leave size unset"
    )


def _place_touching(spread: _Spread, mask: np.ndarray, neighbour: int,
                    rng: np.random.Generator) -> tuple[int, int] | None:
    """Top-left corner for ``mask`` so that it touches object ``neighbour`` (0-2 px of
    background between them, no shared pixel) and keeps its margin from everything else."""
    nx, ny, near = spread.placed[neighbour]
    pad = max(mask.shape) + 4
    window = np.pad(near, pad)
    distance = cv2.distanceTransform((~window).astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero(mask)
    own_middle = np.array([xs.mean(), ys.mean()])
    near_ys, near_xs = np.nonzero(near)
    near_middle = np.array([near_xs.mean(), near_ys.mean()]) + pad
    limit = distance.shape

    def gap(d: float, direction: np.ndarray) -> tuple[float, int, int]:
        corner = near_middle + d * direction - own_middle
        cx, cy = round(corner[0]), round(corner[1])
        yy, xx = ys + cy, xs + cx
        if yy.min() < 0 or xx.min() < 0 or yy.max() >= limit[0] or xx.max() >= limit[1]:
            return np.inf, cx, cy
        return float(distance[yy, xx].min()), cx, cy

    for _ in range(12):
        phi = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(phi), np.sin(phi)])
        d = 0.0
        while gap(d, direction)[0] < 1 and d < 2 * pad:
            d += 3.0
        candidates = []
        for step in np.arange(d - 4.0, d + 4.0, 1.0):
            value, cx, cy = gap(step, direction)
            if 1.0 <= value <= 3.0:
                candidates.append((cx, cy))
        rng.shuffle(candidates)
        for cx, cy in candidates[:3]:
            x, y = nx - pad + cx, ny - pad + cy
            if spread.free(mask, x, y, ignore=neighbour):
                return x, y
    return None


def _nucleus_sprite(diameter: float, rng: np.random.Generator) -> _Sprite:
    """An interphase nucleus: a large oval, evenly grey with a mottled chromatin texture
    and a few darker spots, its edge soft."""
    a = diameter / 2
    b = a * rng.uniform(0.75, 1.0)
    size = int(np.ceil(2 * a)) + 12
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    phi = rng.uniform(0, np.pi)
    u = x * np.cos(phi) + y * np.sin(phi)
    v = -x * np.sin(phi) + y * np.cos(phi)
    wobble = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), a / 3)
    wobble *= 0.12 / max(float(np.abs(wobble).max()), 1e-6)
    inside = np.clip(((1 - np.sqrt((u / a) ** 2 + (v / b) ** 2)) * a + wobble * a) / 1.5, 0, 1)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 2.0)
    texture *= 0.06 / max(float(texture.std()), 1e-6)
    level = rng.uniform(0.45, 0.7)
    darkness = (1 - level) + texture
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(-0.6, 0.6, 2) * [a, b]
        spot = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rng.uniform(2, 5) ** 2))
        darkness = darkness + 0.15 * spot
    transmittance = 1 - np.clip(darkness, 0, 0.95) * inside
    transmittance = cv2.GaussianBlur(transmittance.astype(np.float32), (0, 0), 1.0)
    return _Sprite(transmittance, transmittance < _MASK_LEVEL / 255, np.zeros((0, 2)))


def _debris_sprite(width: float, rng: np.random.Generator) -> _Sprite:
    """A speck or a small irregular blob of debris (a few overlapping discs)."""
    size = int(np.ceil(width)) + 10
    darkness = np.zeros((size, size), dtype=np.float32)
    centre = (size - 1) / 2
    for _ in range(int(rng.integers(1, 5))):
        radius = rng.uniform(2.5, max(3.0, width / 4))
        cx, cy = centre + rng.uniform(-width / 5, width / 5, 2)
        cv2.circle(darkness, (round(cx * 4), round(cy * 4)), round(radius * 4),
                   float(rng.uniform(0.35, 0.75)), -1, lineType=cv2.LINE_AA, shift=2)
    darkness = cv2.GaussianBlur(darkness, (0, 0), 0.8)
    transmittance = 1 - np.clip(darkness, 0, 0.9)
    return _Sprite(transmittance, transmittance < _MASK_LEVEL / 255, np.zeros((0, 2)))


def _background(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A light, unevenly lit field: a level, a gradient across it, a faint smooth blotch."""
    height, width = shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phi = rng.uniform(0, 2 * np.pi)
    ramp = (x * np.cos(phi) + y * np.sin(phi)) / max(height, width)
    field_ = rng.uniform(233, 247) + rng.uniform(4, 12) * (ramp - ramp.mean())
    blotch = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    return np.clip(field_ + rng.uniform(1, 3) * blotch, 200, 253)


def _reading_order(boxes: list[tuple[int, int, int, int]], width: float) -> list[int]:
    """Rows of about three chromosome widths, top to bottom, each left to right."""
    band = 3.0 * width

    def key(index: int) -> tuple[int, float]:
        x0, y0, x1, y1 = boxes[index]
        return int((y0 + y1) / 2 // band), (x0 + x1) / 2

    return sorted(range(len(boxes)), key=key)


def generate_metaphase(
    karyotype: str = "46,XY",
    seed: int | None = 0,
    size: int | tuple[int, int] | None = None,
    touching: float = 0.15,
    crossings: int = 2,
    nuclei: int = 1,
    debris: int = 6,
    style: ImagingStyle | None = None,
) -> GeneratedMetaphase:
    """A whole metaphase image of the given numerical karyotype, with its truth.

    Every chromosome is a generated crop turned to a random angle and laid on a light,
    unevenly lit background in a roughly round spread: most apart, a fraction ``touching``
    placed against a neighbour (0-2 px between them), ``crossings`` pairs crossing near
    their middles at a large angle. ``nuclei`` interphase nuclei and ``debris`` specks lie
    apart from the chromosomes and are not chromosomes. Objects filter the light: where two
    cross, the image is the product of their transmittances, darker than either. ``size``
    (a side, or width and height) defaults to what the spread needs (~700-1000 px).
    """
    counts = parse_karyotype(karyotype)
    if not 0.0 <= touching <= 1.0:
        raise ValueError(f"touching is a fraction of the chromosomes, 0..1, not {touching}")
    if min(crossings, nuclei, debris) < 0:
        raise ValueError("crossings, nuclei and debris are counts: none may be negative")
    rng = np.random.default_rng(seed)
    style = style or ImagingStyle.random(rng)
    types = [t for t in ChromosomeType for _ in range(counts.get(t, 0))]
    types = [types[k] for k in rng.permutation(len(types))]
    crops = [generate_crop(t, rng, style) for t in types]
    masks = [_crop_mask(crop) for crop in crops]
    areas = np.array([m.sum() for m in masks], dtype=np.float64)
    lengths = np.array([crop.shape[0] for crop in crops], dtype=np.float64)
    width = style.chromatid_width
    n = len(types)

    # the spread: a disc holding the chromosomes at about a quarter of its area
    density = rng.uniform(0.2, 0.27)
    radius = float(np.sqrt(max(areas.sum(), 1.0) / (density * np.pi)))
    nucleus_diameters = [float(rng.uniform(5, 8)) * width for _ in range(nuclei)]
    if size is None:
        extent = radius + 0.4 * (lengths.max() if n else width)
        height = int(2 * extent + 2 * width + 20)
        room = 1.15 * max(nucleus_diameters) if nucleus_diameters else 0.0
        image_width = int(height * rng.uniform(1.0, 1.12) + room)
        shape = (height, image_width)
        side = 1 if rng.random() < 0.5 else -1
        centre = np.array([image_width / 2 - side * room / 2, height / 2])
    else:
        image_width, height = (size, size) if isinstance(size, int) else (int(size[0]),
                                                                          int(size[1]))
        if min(image_width, height) < 64:
            raise ValueError(f"a {image_width} x {height} px image is too small for a metaphase")
        shape = (height, image_width)
        centre = np.array([image_width / 2, height / 2])
        radius = min(radius, 0.5 * min(shape) - 0.4 * (lengths.max() if n else width))
        radius = max(radius, 0.1 * min(shape))
    aspect = float(rng.uniform(0.9, 1.1))
    margin = round(0.4 * width) + 2
    spread = _Spread(shape, margin)

    # crossing pairs from the longest third (more when many crossings are asked for);
    # touching ones from the rest
    pool = max(n // 3, min(n, 4 * crossings))
    long_ones = [int(k) for k in np.argsort(-lengths, kind="stable")[:pool]]
    rng.shuffle(long_ones)
    units: list[_Unit] = []
    crossing_members: set[int] = set()
    while len(units) < crossings and len(long_ones) >= 2:
        first, second = long_ones.pop(), long_ones.pop()
        unit = _crossing_pair((first, crops[first]), (second, crops[second]), rng)
        if unit is not None:
            units.append(unit)
            crossing_members.update((first, second))
    others = [k for k in range(n) if k not in crossing_members]
    touching_count = min(round(touching * n), len(others) // 2)
    touching_set = {int(k) for k in rng.choice(others, touching_count, replace=False)} \
        if touching_count else set()
    # crossings first (they need the most room), then long to short, touching ones last
    singles = sorted((k for k in others if k not in touching_set), key=lambda k: -lengths[k])
    order: list[tuple[_Unit, bool]] = [(unit, False) for unit in units]
    for k in [*singles, *sorted(touching_set, key=lambda k: -lengths[k])]:
        unit = _Unit.single(k, _chromosome_sprite(crops[k], float(rng.uniform(0, 360))))
        order.append((unit, k in touching_set))

    transmittance = np.ones(shape, dtype=np.float32)
    regions: dict[int, Region] = {}
    lines: dict[int, np.ndarray] = {}
    crossing_pairs: list[tuple[int, int]] = []
    touching_pairs: list[tuple[int, int]] = []
    single_of: dict[int, int] = {}  # object index in the spread -> chromosome index
    for unit, wants_touch in order:
        where = None
        if wants_touch and single_of:
            objects = list(single_of)
            for neighbour in rng.permutation(objects)[:6]:
                where = _place_touching(spread, unit.mask, int(neighbour), rng)
                if where is not None:
                    touching_pairs.append((single_of[int(neighbour)], unit.members[0][0]))
                    break
        if where is None:
            where = _place(spread, unit.mask, centre, radius, rng, aspect)
        x, y = where
        object_index = spread.add(unit.mask, x, y)
        if len(unit.members) == 1:
            single_of[object_index] = unit.members[0][0]
        else:
            crossing_pairs.append((unit.members[0][0], unit.members[1][0]))
        for index, sprite, dx, dy in unit.members:
            px, py = x + dx, y + dy
            h, w = sprite.mask.shape
            transmittance[py:py + h, px:px + w] *= sprite.transmittance
            full = np.zeros(shape, dtype=bool)
            full[py:py + h, px:px + w] = sprite.mask
            regions[index] = Region.from_mask(full)
            lines[index] = sprite.line + np.array([px, py])

    nucleus_regions = _scatter(
        [_nucleus_sprite(d, rng) for d in nucleus_diameters], spread, transmittance, rng,
        margin=round(width), clip=True,
    )
    debris_regions = _scatter(
        [_debris_sprite(width, rng) for _ in range(debris)], spread, transmittance, rng,
        margin=3, clip=False,
    )

    light = _background(shape, rng)
    image = light * transmittance + rng.normal(0, rng.uniform(1.0, 2.5), shape)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    boxes = [regions[k].box for k in range(n)]
    order_index = _reading_order(boxes, width)
    position = {k: i for i, k in enumerate(order_index)}
    return GeneratedMetaphase(
        pixels=pixels,
        chromosomes=[(types[k], regions[k]) for k in order_index],
        nuclei=nucleus_regions,
        debris=debris_regions,
        karyotype=karyotype_string(counts),
        centre_lines=[lines[k] for k in order_index],
        crossings=[tuple(sorted((position[a], position[b]))) for a, b in crossing_pairs],
        touching=[tuple(sorted((position[a], position[b]))) for a, b in touching_pairs],
        style=style,
    )


def _scatter(sprites: list[_Sprite], spread: _Spread, transmittance: np.ndarray,
             rng: np.random.Generator, margin: int, clip: bool) -> list[Region]:
    """Nuclei or debris laid anywhere in the image, apart from everything placed; one that
    finds no room is left out. ``clip``: it may reach past the image's edge (a nucleus)."""
    height, width = spread.shape
    regions = []
    for sprite in sprites:
        grown = cv2.dilate(np.pad(sprite.mask, margin).astype(np.uint8), _disc(margin)) > 0
        h, w = grown.shape
        for _ in range(300):
            if clip:
                x = int(rng.integers(-w // 3, width - 2 * w // 3))
                y = int(rng.integers(-h // 3, height - 2 * h // 3))
            else:
                x = int(rng.integers(0, max(1, width - w)))
                y = int(rng.integers(0, max(1, height - h)))
            if spread.free(grown, x, y, clip=clip):
                break
        else:
            continue
        sx, sy = x + margin, y + margin
        spread.add(sprite.mask, sx, sy, margin=2)
        at = _clipped(spread.shape, sx, sy, *sprite.mask.shape)
        if at is None:
            continue
        transmittance[at[0]] *= sprite.transmittance[at[1]]
        full = np.zeros(spread.shape, dtype=bool)
        full[at[0]] = sprite.mask[at[1]]
        region = Region.from_mask(full)
        if region is not None:
            regions.append(region)
    return regions


def metaphase_cell(generated: GeneratedMetaphase, name: str | None = None,
                   with_truth: bool = False) -> Cell:
    """A cell of a generated metaphase image. Without truth it has no chromosomes yet (it
    needs finding); ``with_truth`` fills them from the true regions (ids ``m001``... in
    reading order, ``given`` the true type, crossing ones flagged as overlapping), as if
    a perfect finder had run: for tests and demos that must not depend on a trained one."""
    cell = Cell(name=name or f"metaphase {generated.karyotype}", metaphase=generated.image())
    if with_truth:
        crossing = {index for pair in generated.crossings for index in pair}
        for index, (chromosome_type, region) in enumerate(generated.chromosomes):
            own = Region(region.box, region.mask.copy())
            cell.chromosomes.append(Chromosome(
                id=f"m{index + 1:03d}",
                image=cut_crop(generated.pixels, own),
                given=chromosome_type,
                region=own,
                found_score=1.0,
                flags={Flag.OVERLAP} if index in crossing else set(),
            ))
        cell.finder_id = "truth"
    return cell


def _voc_name(chromosome_type: ChromosomeType) -> str:
    """The Denver form annotations use: ``A1``..``G22``, ``X``, ``Y``."""
    if chromosome_type.is_sex_chromosome:
        return chromosome_type.display_name
    return f"{chromosome_type.group}{chromosome_type.display_name}"


def write_annotated_metaphases(
    folder: str | os.PathLike,
    count: int,
    seed: int = 0,
    karyotypes: Sequence[str] | None = None,
) -> Path:
    """A data set of ``count`` generated metaphases in the cil24 layout: ``images/NAME.png``,
    ``annotations/NAME.xml`` (Pascal VOC: the image size and one object per chromosome, its
    type in Denver form and its true box) and ``splits/{train,val,test}.txt`` (about
    60/20/20, at least one in each; with fewer than three metaphases the splits share).
    Marker chromosomes (``+mar``) are drawn but not annotated: they have no type.
    Karyotypes cycle through ``karyotypes`` (default: the example karyotypes)."""
    import xml.etree.ElementTree as ElementTree

    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    karyotypes = list(karyotypes or EXAMPLE_KARYOTYPES)
    for text in karyotypes:
        parse_karyotype(text)  # a bad one is named before anything is written
    root = Path(folder)
    for sub in ("images", "annotations", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        name = f"synthetic{index + 1:04d}"
        generated = generate_metaphase(karyotypes[index % len(karyotypes)],
                                       seed=seed * 1_000_003 + index)
        (root / "images" / f"{name}.png").write_bytes(generated.png_bytes())
        annotation = ElementTree.Element("annotation")
        ElementTree.SubElement(annotation, "folder").text = "images"
        ElementTree.SubElement(annotation, "filename").text = f"{name}.png"
        source = ElementTree.SubElement(annotation, "source")
        ElementTree.SubElement(source, "database").text = f"karyo generated {generated.karyotype}"
        size_element = ElementTree.SubElement(annotation, "size")
        height, width = generated.pixels.shape
        for tag, value in (("width", width), ("height", height), ("depth", 1)):
            ElementTree.SubElement(size_element, tag).text = str(value)
        ElementTree.SubElement(annotation, "segmented").text = "0"
        for chromosome_type, region in generated.chromosomes:
            if chromosome_type is ChromosomeType.UNCLASSIFIED:
                continue
            element = ElementTree.SubElement(annotation, "object")
            ElementTree.SubElement(element, "name").text = _voc_name(chromosome_type)
            ElementTree.SubElement(element, "pose").text = "Unspecified"
            ElementTree.SubElement(element, "truncated").text = "0"
            ElementTree.SubElement(element, "difficult").text = "0"
            box = ElementTree.SubElement(element, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), region.box):
                ElementTree.SubElement(box, tag).text = str(value)
        ElementTree.indent(annotation)
        ElementTree.ElementTree(annotation).write(
            root / "annotations" / f"{name}.xml", encoding="utf-8", xml_declaration=False
        )
        names.append(name)
    shuffled = [names[k] for k in np.random.default_rng(seed).permutation(count)]
    if count >= 3:
        n_val = max(1, round(0.2 * count))
        n_test = max(1, round(0.2 * count))
        splits = {
            "train": shuffled[: count - n_val - n_test],
            "val": shuffled[count - n_val - n_test: count - n_test],
            "test": shuffled[count - n_test:],
        }
    else:
        splits = {"train": shuffled, "val": shuffled[-1:], "test": shuffled[-1:]}
    for split, members in splits.items():
        (root / "splits" / f"{split}.txt").write_text("".join(f"{m}\n" for m in sorted(members)))
    return root


# ------------------------------------------------------------ structural abnormalities
#
# A rearranged chromosome is drawn from the band patterns of the normal ones, cut at the
# breakpoints and joined: the darkness profile along its length, its centromere and its
# length follow the segments it is made of, and it goes through the same renderer.

ACROCENTRIC = frozenset({"13", "14", "15", "21", "22"})


@dataclass(frozen=True)
class Rearrangement:
    """A structural abnormality to draw: ``kind`` "del" (one break: terminal, two:
    interstitial), "t" (reciprocal translocation, one break on each type, both on the q arms
    or both on the p arms) or "rob" (Robertsonian fusion of two acrocentric types, no
    breaks); ``breaks`` are fractions of each type's length from pter."""

    kind: str
    types: tuple[str, ...]
    breaks: tuple[float, ...] = ()


@dataclass(frozen=True)
class _Segment:
    chromosome_type: ChromosomeType
    start: float  # fractions of the type's length from pter
    end: float  # end < start: the segment runs from qter towards the centromere


@dataclass(frozen=True)
class DerivativeShape:
    """What a derivative chromosome is made of, pter to qter: segments of normal types."""

    segments: tuple[_Segment, ...]
    centromere_of: ChromosomeType  # whose centromere it keeps (its type in the karyogram)

    @property
    def relative_length(self) -> float:
        return sum(ideogram(s.chromosome_type).relative_length * abs(s.end - s.start)
                   for s in self.segments)

    def profile(self, samples: int = 512) -> tuple[np.ndarray, np.ndarray, float]:
        """(positions 0..1, band darkness at them, centromere fraction)."""
        lengths = np.array([ideogram(s.chromosome_type).relative_length * abs(s.end - s.start)
                            for s in self.segments])
        edges = np.concatenate([[0.0], np.cumsum(lengths)]) / lengths.sum()
        positions = np.linspace(0.0, 1.0, samples)
        darkness = np.zeros(samples)
        centromere = None
        for k, segment in enumerate(self.segments):
            inside = (positions >= edges[k]) & (positions <= edges[k + 1])
            local = (positions[inside] - edges[k]) / max(edges[k + 1] - edges[k], 1e-9)
            original = segment.start + local * (segment.end - segment.start)
            darkness[inside] = ideogram(segment.chromosome_type).darkness_profile(original)
            if segment.chromosome_type is self.centromere_of and centromere is None:
                index = ideogram(segment.chromosome_type).centromere_index
                low, high = sorted((segment.start, segment.end))
                if low <= index <= high:
                    share = (index - segment.start) / (segment.end - segment.start)
                    centromere = edges[k] + share * (edges[k + 1] - edges[k])
        return positions, darkness, 0.5 if centromere is None else float(centromere)


def derivative_shapes(rearrangement: Rearrangement) -> list[DerivativeShape]:
    """The abnormal chromosome(s) of a rearrangement; ValueError for one that cannot be."""
    kind, names, breaks = rearrangement.kind, rearrangement.types, rearrangement.breaks
    types = [ChromosomeType.from_name(name) for name in names]
    if kind == "del":
        (chromosome_type,) = types
        centre = ideogram(chromosome_type).centromere_index
        if len(breaks) == 1:
            (a,) = breaks
            kept = _Segment(chromosome_type, a, 1.0) if a < centre else _Segment(
                chromosome_type, 0.0, a)
            return [DerivativeShape((kept,), chromosome_type)]
        a, b = sorted(breaks)
        if a <= centre <= b:
            raise ValueError(f"a deletion of {names[0]} from {a:.2f} to {b:.2f} would take its "
                             "centromere")
        return [DerivativeShape((_Segment(chromosome_type, 0.0, a),
                                 _Segment(chromosome_type, b, 1.0)), chromosome_type)]
    if kind == "t":
        (first, second), (a, b) = types, breaks
        q_arms = [a > ideogram(first).centromere_index, b > ideogram(second).centromere_index]
        if q_arms[0] != q_arms[1]:
            raise ValueError("both breaks of the translocation must lie on q arms or both on "
                             "p arms")
        if q_arms[0]:  # distal q segments exchanged
            return [DerivativeShape((_Segment(first, 0.0, a), _Segment(second, b, 1.0)), first),
                    DerivativeShape((_Segment(second, 0.0, b), _Segment(first, a, 1.0)), second)]
        return [DerivativeShape((_Segment(second, 0.0, b), _Segment(first, a, 1.0)), first),
                DerivativeShape((_Segment(first, 0.0, a), _Segment(second, b, 1.0)), second)]
    if kind == "rob":
        if not set(names) <= ACROCENTRIC or len(names) != 2:
            raise ValueError(f"a Robertsonian fusion joins two acrocentric chromosomes "
                             f"(13, 14, 15, 21, 22), not {' and '.join(names)}")
        first, second = types
        return [DerivativeShape((
            _Segment(first, 1.0, ideogram(first).centromere_index),  # its q arm, upside down
            _Segment(second, ideogram(second).centromere_index, 1.0)), first)]
    raise ValueError(f"the generator draws del, t and rob, not {kind!r}")


def generate_rearranged_crops(rearrangement: Rearrangement, rng: np.random.Generator,
                              style: ImagingStyle | None = None) -> list[np.ndarray]:
    """The crops of a rearrangement's abnormal chromosome(s), drawn like generate_crop."""
    style = style or ImagingStyle()
    crops = []
    for shape in derivative_shapes(rearrangement):
        positions, darkness, centromere = shape.profile()
        length = style.chromosome1_length * shape.relative_length * rng.uniform(0.93, 1.07)
        width = style.chromatid_width * rng.uniform(0.92, 1.08)
        crops.append(_render(positions, darkness, centromere, length, width, rng, style))
    return crops


def generate_structural_cell(karyotype: str, rearrangement: Rearrangement, seed: int | None = 0,
                             name: str | None = None, style: ImagingStyle | None = None
                             ) -> tuple[Cell, list[str]]:
    """A cell of the numerical ``karyotype`` in which one homolog of each type the
    rearrangement names is replaced by its derivative(s) (a Robertsonian fusion: one
    chromosome for a homolog of each type, so 46 becomes 45). Each derivative is given the
    type whose centromere it keeps. Returns the cell and the ids of its abnormal
    chromosomes, in the order of the rearrangement's types."""
    counts = parse_karyotype(karyotype)
    rng = np.random.default_rng(seed)
    style = style or ImagingStyle.random(rng)
    derivatives = derivative_shapes(rearrangement)
    for chromosome_type in {ChromosomeType.from_name(n) for n in rearrangement.types}:
        if counts.get(chromosome_type, 0) < 1:
            raise ValueError(f"{karyotype} has no chromosome {chromosome_type.display_name} "
                             "to rearrange")
        counts[chromosome_type] -= 1
    types: list[ChromosomeType | DerivativeShape] = [
        t for t in ChromosomeType for _ in range(counts.get(t, 0))]
    types += derivatives
    order = rng.permutation(len(types))
    crops = iter(generate_rearranged_crops(rearrangement, rng, style))
    pictures = {id(shape): next(crops) for shape in derivatives}
    chromosomes, abnormal = [], {}
    for index, k in enumerate(order):
        what = types[k]
        chromosome_id = f"c{index:03d}"
        if isinstance(what, DerivativeShape):
            chromosomes.append(Chromosome(id=chromosome_id, image=pictures[id(what)],
                                          given=what.centromere_of))
            abnormal[id(what)] = chromosome_id
        else:
            chromosomes.append(Chromosome(id=chromosome_id, image=generate_crop(what, rng, style),
                                          given=what))
    cell = Cell(name=name or f"example {karyotype} with {rearrangement.kind}",
                chromosomes=chromosomes)
    return cell, [abnormal[id(shape)] for shape in derivatives]


def generate_case(lines: Sequence[tuple[str | tuple[str, Rearrangement], int]], seed: int = 0,
                  case_id: str = "generated case") -> tuple[Case, dict[str, list[str]]]:
    """A case of many generated cells: ``lines`` gives (numerical karyotype, number of
    cells) or ((karyotype, Rearrangement), number of cells); the cells come in a shuffled
    order, named "cell 01", "cell 02"..., each with its own seed and imaging style. Returns
    the case and, per cell name, the ids of its abnormal chromosomes (to mark them)."""
    rng = np.random.default_rng(seed)
    wanted = [line for line, count in lines for _ in range(count)]
    order = rng.permutation(len(wanted))
    cells, abnormal = [], {}
    for index, k in enumerate(order):
        line, name, cell_seed = wanted[k], f"cell {index + 1:02d}", int(rng.integers(1 << 31))
        if isinstance(line, str):
            cells.append(generate_cell(line, seed=cell_seed, name=name))
            abnormal[name] = []
        else:
            cell, ids = generate_structural_cell(*line, seed=cell_seed, name=name)
            cells.append(cell)
            abnormal[name] = ids
    return Case(case_id, cells), abnormal
