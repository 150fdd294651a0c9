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

from karyo_gui.core.orientation import is_lying


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
    return np.ascontiguousarray(np.rot90(image)) if is_lying(*image.shape[:2]) else image


def cell_scale(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> float:
    """The one scale factor for all crops of a cell (from the median chromosome length)."""
    lengths = [max(image.shape[:2]) for image in images if image is not None and image.size]
    if not lengths:
        return 1.0
    return preprocessing.median_length * preprocessing.height / float(np.median(lengths))


@dataclass(frozen=True)
class Placement:
    """Where a crop landed on its canvas, so that a map over the canvas maps back to the crop.

    The crop (``crop_height`` x ``crop_width`` as stored) was turned by 90 degrees when
    ``turned``, scaled to ``height`` x ``width`` and pasted at (``top``, ``left``).
    """

    crop_height: int
    crop_width: int
    turned: bool
    top: int
    left: int
    height: int
    width: int
    scale: float

    def to_crop(self, canvas_map: np.ndarray) -> np.ndarray:
        """A float map over the canvas as a map over the crop's own pixels (as stored)."""
        if self.crop_height == 0 or self.crop_width == 0:
            return np.zeros((self.crop_height, self.crop_width), np.float32)
        region = np.asarray(canvas_map, np.float32)[
            self.top : self.top + self.height, self.left : self.left + self.width
        ]
        turned_size = (self.crop_width, self.crop_height) if self.turned else None
        rows, cols = turned_size or (self.crop_height, self.crop_width)
        region = cv2.resize(region, (cols, rows), interpolation=cv2.INTER_LINEAR)
        # np.rot90 turned the crop counter-clockwise; turn the map back clockwise
        return np.ascontiguousarray(np.rot90(region, -1)) if self.turned else region


def placement(image: np.ndarray | None, scale: float, preprocessing: Preprocessing) -> Placement:
    """Where :func:`place_crop` puts a crop of this shape at this cell scale."""
    if image is None or image.size == 0:
        return Placement(0, 0, False, 0, 0, 0, 0, 0.0)
    crop_height, crop_width = image.shape[:2]
    turned = is_lying(crop_height, crop_width)
    height, width = (crop_width, crop_height) if turned else (crop_height, crop_width)
    # a crop longer than the canvas (debris, an overlap) is shrunk to fit rather than cut
    scale = min(scale, preprocessing.height / height, preprocessing.width / width)
    new_height = min(preprocessing.height, max(1, round(height * scale)))
    new_width = min(preprocessing.width, max(1, round(width * scale)))
    return Placement(
        crop_height,
        crop_width,
        turned,
        (preprocessing.height - new_height) // 2,
        (preprocessing.width - new_width) // 2,
        new_height,
        new_width,
        scale,
    )


def place_crop(image: np.ndarray, scale: float, preprocessing: Preprocessing) -> np.ndarray:
    """One crop as a uint8 canvas: chromosome bright on black, scaled and centred."""
    canvas = np.zeros((preprocessing.height, preprocessing.width), np.uint8)
    if image is None or image.size == 0:
        return canvas
    where = placement(image, scale, preprocessing)
    if not is_dark_background(image):
        image = 255 - image
    image = upright(image)
    if (where.height, where.width) != image.shape:
        image = cv2.resize(
            image,
            (where.width, where.height),
            interpolation=cv2.INTER_AREA if where.scale < 1 else cv2.INTER_LINEAR,
        )
    canvas[where.top : where.top + where.height, where.left : where.left + where.width] = image
    return canvas


def prepare_cell(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> np.ndarray:
    """All crops of one cell as a (n, height, width) uint8 array at the cell's common scale."""
    scale = cell_scale(images, preprocessing)
    out = np.zeros((len(images), preprocessing.height, preprocessing.width), np.uint8)
    for index, image in enumerate(images):
        out[index] = place_crop(image, scale, preprocessing)
    return out
