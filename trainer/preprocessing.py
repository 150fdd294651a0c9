"""From a cell's crops to the fixed-size input the model sees.

The size of a chromosome is one of its strongest cues (chromosome 1 is about five times
longer than 21), so crops are not stretched to fill the input. All crops of one cell are
scaled by one common factor, chosen so that the cell's median chromosome length becomes a
fixed fraction of the input height: relative lengths within the cell survive, and cells
photographed at another pixel scale (another lab's camera, another condensation) land at
the same size. Background polarity is detected per crop, so G-banded crops (dark bands on a
light background) and Q-banded ones (bright bands on a dark background) both reach the
model as bright chromosomes on a black background. Bent chromosomes can be straightened
along their centre line first (``straighten_bend``; off in models trained before it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from karyo_gui.core.images import is_dark_background
from karyo_gui.core.orientation import is_lying
from karyo_gui.core.straightening import Straightened, back_to_crop, straighten_all


@dataclass(frozen=True)
class Preprocessing:
    height: int = 128
    width: int = 64
    median_length: float = 0.42  # the cell's median chromosome length, as a fraction of height
    mean: float = 0.12  # normalisation of the [0, 1] intensities the model sees
    std: float = 0.22
    # chromosomes whose centre line strays at least this many chromosome widths from the
    # straight line between its ends are straightened first; 0 leaves every crop as it is
    straighten_bend: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


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
    ``turned``, straightened when ``straightened`` is set, scaled to ``height`` x ``width``
    and pasted at (``top``, ``left``).
    """

    crop_height: int
    crop_width: int
    turned: bool
    top: int
    left: int
    height: int
    width: int
    scale: float
    straightened: Straightened | None = field(default=None, compare=False, repr=False)

    def to_crop(self, canvas_map: np.ndarray) -> np.ndarray:
        """A float map over the canvas as a map over the crop's own pixels (as stored)."""
        if self.crop_height == 0 or self.crop_width == 0:
            return np.zeros((self.crop_height, self.crop_width), np.float32)
        region = np.asarray(canvas_map, np.float32)[
            self.top : self.top + self.height, self.left : self.left + self.width
        ]
        turned_size = (self.crop_width, self.crop_height) if self.turned else None
        rows, cols = turned_size or (self.crop_height, self.crop_width)
        if self.straightened is None:
            region = cv2.resize(region, (cols, rows), interpolation=cv2.INTER_LINEAR)
        else:
            laid_out = self.straightened.image.shape
            region = cv2.resize(region, laid_out[::-1], interpolation=cv2.INTER_LINEAR)
            region = back_to_crop(region, self.straightened, (rows, cols))
        # np.rot90 turned the crop counter-clockwise; turn the map back clockwise
        return np.ascontiguousarray(np.rot90(region, -1)) if self.turned else region


def chromosome_pictures(
    images: Sequence[np.ndarray | None], preprocessing: Preprocessing
) -> list[tuple[np.ndarray | None, Straightened | None]]:
    """Each crop as the model sees it before scaling: bright on black, upright and, when
    bent enough, straightened (with what the straightening did, or None)."""
    pictures = [_bright_upright(image) if _pictured(image) else None for image in images]
    if preprocessing.straighten_bend <= 0:
        return [(picture, None) for picture in pictures]
    present = [k for k, picture in enumerate(pictures) if picture is not None]
    laid_out = straighten_all([pictures[k] for k in present], preprocessing.straighten_bend)
    out: list[tuple[np.ndarray | None, Straightened | None]] = [(p, None) for p in pictures]
    for k, straightened in zip(present, laid_out):
        if straightened is not None:
            out[k] = (straightened.image, straightened)
    return out


def _pictured(image: np.ndarray | None) -> bool:
    return image is not None and image.size > 0


def _bright_upright(image: np.ndarray) -> np.ndarray:
    return upright(image if is_dark_background(image) else 255 - image)


def _placed(
    image: np.ndarray | None,
    picture: np.ndarray | None,
    straightened: Straightened | None,
    scale: float,
    preprocessing: Preprocessing,
) -> tuple[np.ndarray, Placement]:
    """The canvas of one crop (``image`` as stored, ``picture`` as the model sees it)."""
    canvas = np.zeros((preprocessing.height, preprocessing.width), np.uint8)
    if not _pictured(image) or picture is None:
        return canvas, Placement(0, 0, False, 0, 0, 0, 0, 0.0)
    crop_height, crop_width = image.shape[:2]
    height, width = picture.shape[:2]
    # a crop longer than the canvas (debris, an overlap) is shrunk to fit rather than cut
    scale = min(scale, preprocessing.height / height, preprocessing.width / width)
    new_height = min(preprocessing.height, max(1, round(height * scale)))
    new_width = min(preprocessing.width, max(1, round(width * scale)))
    where = Placement(
        crop_height,
        crop_width,
        is_lying(crop_height, crop_width),
        (preprocessing.height - new_height) // 2,
        (preprocessing.width - new_width) // 2,
        new_height,
        new_width,
        scale,
        straightened,
    )
    if (new_height, new_width) != picture.shape:
        picture = cv2.resize(
            picture,
            (new_width, new_height),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
    canvas[where.top : where.top + new_height, where.left : where.left + new_width] = picture
    return canvas, where


def placed_crop(
    image: np.ndarray | None, scale: float, preprocessing: Preprocessing
) -> tuple[np.ndarray, Placement]:
    """One crop as a uint8 canvas (chromosome bright on black, upright, straightened when
    bent, scaled and centred) and where it landed there."""
    [(picture, straightened)] = chromosome_pictures([image], preprocessing)
    return _placed(image, picture, straightened, scale, preprocessing)


def placement(image: np.ndarray | None, scale: float, preprocessing: Preprocessing) -> Placement:
    """Where :func:`place_crop` puts this crop at this cell scale."""
    return placed_crop(image, scale, preprocessing)[1]


def place_crop(image: np.ndarray, scale: float, preprocessing: Preprocessing) -> np.ndarray:
    """One crop as a uint8 canvas: chromosome bright on black, scaled and centred."""
    return placed_crop(image, scale, preprocessing)[0]


def prepare_cell(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> np.ndarray:
    """All crops of one cell as a (n, height, width) uint8 array at the cell's common scale
    (from the crops as stored, so that straightening a few leaves the others unchanged)."""
    return prepare_crops(images, preprocessing, cell_scale(images, preprocessing))


def prepare_other_cuts(
    cuts: Sequence[Sequence[np.ndarray]], preprocessing: Preprocessing, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The other cuts of some crops (one list per crop: ``Chromosome.other_cuts``) as
    canvases at the cell's scale, and (m,) the index of the crop each belongs to."""
    images = [cut for many in cuts for cut in many]
    of = np.asarray([k for k, many in enumerate(cuts) for _ in many], np.int64)
    return prepare_crops(images, preprocessing, scale), of


def prepare_crops(
    images: Sequence[np.ndarray], preprocessing: Preprocessing, scale: float
) -> np.ndarray:
    """Some crops of a cell at a scale given from outside (the cell's, from all its crops):
    what re-classifying only the chromosomes an edit changed needs."""
    out = np.zeros((len(images), preprocessing.height, preprocessing.width), np.uint8)
    pictures = chromosome_pictures(images, preprocessing)
    for index, (image, (picture, straightened)) in enumerate(zip(images, pictures)):
        out[index] = _placed(image, picture, straightened, scale, preprocessing)[0]
    return out
