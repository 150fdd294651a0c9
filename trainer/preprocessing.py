"""From a cell's crops to the fixed-size input the model sees.

The size of a chromosome is one of its strongest cues (chromosome 1 is about five times
longer than 21), so crops are not stretched to fill the input. All crops of one cell are
scaled by one common factor, chosen so that the cell's median chromosome length becomes a
fixed fraction of the input height: relative lengths within the cell survive, and cells
photographed at another pixel scale (another lab's camera, another condensation) land at
the same size. Background polarity is detected per crop, so G-banded crops (dark bands on a
light background) and Q-banded ones (bright bands on a dark background) both reach the
model as bright chromosomes on a black background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    height: int = 128
    width: int = 64
    median_length: float = 0.42  # the cell's median chromosome length, as a fraction of height
    mean: float = 0.12  # normalisation of the [0, 1] intensities the model sees
    std: float = 0.22

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


def is_dark_background(image: np.ndarray) -> bool:
    """True for crops whose background is dark (Q-banding, or already inverted)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float(np.median(border)) < 128


def upright(image: np.ndarray) -> np.ndarray:
    """The crop with its long axis vertical: lying chromosomes are turned by 90 degrees."""
    height, width = image.shape
    return np.ascontiguousarray(np.rot90(image)) if width > 1.3 * height else image


def cell_scale(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> float:
    """The one scale factor for all crops of a cell (from the median chromosome length)."""
    lengths = [max(image.shape[:2]) for image in images if image is not None and image.size]
    if not lengths:
        return 1.0
    return preprocessing.median_length * preprocessing.height / float(np.median(lengths))


def place_crop(image: np.ndarray, scale: float, preprocessing: Preprocessing) -> np.ndarray:
    """One crop as a uint8 canvas: chromosome bright on black, scaled and centred."""
    canvas = np.zeros((preprocessing.height, preprocessing.width), np.uint8)
    if image is None or image.size == 0:
        return canvas
    if not is_dark_background(image):
        image = 255 - image
    image = upright(image)
    height, width = image.shape
    # a crop longer than the canvas (debris, an overlap) is shrunk to fit rather than cut
    scale = min(scale, preprocessing.height / height, preprocessing.width / width)
    new_height = max(1, round(height * scale))
    new_width = max(1, round(width * scale))
    if (new_height, new_width) != (height, width):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_width, new_height), interpolation=interpolation)
    top = (preprocessing.height - new_height) // 2
    left = (preprocessing.width - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = image
    return canvas


def prepare_cell(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> np.ndarray:
    """All crops of one cell as a (n, height, width) uint8 array at the cell's common scale."""
    scale = cell_scale(images, preprocessing)
    out = np.zeros((len(images), preprocessing.height, preprocessing.width), np.uint8)
    for index, image in enumerate(images):
        out[index] = place_crop(image, scale, preprocessing)
    return out
