"""Generated G-banded chromosome crops and whole cells.

Tests run on these instead of real data, and the app shows one as its example cell.
A crop is drawn from its type's ideogram (textbook length and centromere index, a fixed
band pattern): dark bands on a white background, a centromere constriction, rounded
ends, then random bending, blur, noise and contrast. A cell draws all its crops at one
condensation (length of chromosome 1 in pixels) and imaging style, like one metaphase.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from karyo_gui.core.case import Cell, Chromosome
from karyo_gui.core.ideogram import ideogram
from karyo_gui.core.iscn import parse_karyotype
from karyo_gui.core.labels import ChromosomeType

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
