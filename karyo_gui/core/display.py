"""How a chromosome is drawn in the karyogram: for the eye only, never for the model.

A karyogram shows each chromosome bare on white, whatever the stain or however its crop
was cut: the picture is turned dark-on-light when the crop is bright on a dark ground
(Q-banding, fluorescence), cut out of its background along its mask, and stood along its
long axis; a bent one may be shown straightened. Brightness, contrast, gamma and
sharpening adjust what the reviewer sees. None of it touches the crop, the model's input
or any label: :func:`karyogram_picture` returns a new array.

:func:`centromere_fraction` finds where a standing chromosome's centromere lies (the
narrowest point of its width profile near where the type's textbook centromere index puts
it), so that homologs can be aligned on their centromeres as cytogeneticists align them.
numpy, OpenCV and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from karyo_gui.core.ideogram import ideogram
from karyo_gui.core.images import is_dark_background
from karyo_gui.core.labels import N_TYPES, ChromosomeType
from karyo_gui.core.straightening import chromosome_mask, straighten

PAPER = 255  # the karyogram's white
STAND_FROM_DEGREES = 8.0  # a chromosome leaning less than this from upright is left as it is
STRAIGHTEN_BEND = 0.35  # chromosome widths of bend from which the straightened view applies
CENTROMERE_WINDOW = 0.12  # the centromere is looked for this far either side of the textbook


@dataclass(frozen=True)
class DisplayOptions:
    """What the reviewer chose for the karyogram's look (View > Display)."""

    brightness: float = 0.0  # -0.5..0.5, added to the picture (0..1 scale)
    contrast: float = 1.0  # 0.25..4, around mid-grey
    gamma: float = 1.0  # 0.3..3; above 1 darkens the mid-tones (the bands)
    sharpen: float = 0.0  # 0..2, strength of an unsharp mask
    cut_out: bool = True  # background whited out and the chromosome stood upright
    straighten: bool = False  # bent chromosomes shown laid out straight

    def __post_init__(self) -> None:
        limits = {"brightness": (-0.5, 0.5), "contrast": (0.25, 4.0), "gamma": (0.3, 3.0),
                  "sharpen": (0.0, 2.0)}  # fmt: skip
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)
                    and low <= value <= high):  # fmt: skip
                raise ValueError(f"display {name} {value!r} is not within {low:g}..{high:g}")

    @property
    def tone_is_plain(self) -> bool:
        return (self.brightness, self.contrast, self.gamma, self.sharpen) == (0.0, 1.0, 1.0, 0.0)


def karyogram_picture(image: np.ndarray, options: DisplayOptions | None = None) -> np.ndarray:
    """The chromosome of a displayed crop (its orientation applied) as the karyogram draws
    it: dark on white, cut out and upright (``cut_out``), straightened if asked and bent,
    then toned. A crop with nothing recognisable in it is only toned."""
    options = options or DisplayOptions()
    picture = np.asarray(image, dtype=np.uint8)
    if picture.ndim != 2 or min(picture.shape) < 3:
        return picture.copy()
    if is_dark_background(picture):
        picture = 255 - picture
    if options.cut_out or options.straighten:
        picture = _cut_out(picture, options.straighten)
    return tone(picture, options)


def _cut_out(picture: np.ndarray, straightened: bool) -> np.ndarray:
    ink = 255 - picture  # the chromosome bright on black, as the mask and straightening see it
    mask = chromosome_mask(ink)
    if mask is None or mask.sum() < 20:
        return picture.copy()
    mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ink = np.where(mask, ink, 0).astype(np.uint8)
    if straightened:
        laid_out = straighten(ink, STRAIGHTEN_BEND)
        if laid_out is not None:
            return _trimmed(255 - laid_out.image)
    ink = _stood_up(ink, mask)
    return _trimmed(255 - ink)


def _stood_up(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Turned about its centre so that the mask's long axis is upright (the smaller of the
    two turns that do it, so the top end stays on top)."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return ink
    covariance = np.cov(np.stack([xs, ys]).astype(np.float64))
    values, vectors = np.linalg.eigh(covariance)
    if values[1] < 1.2 * max(values[0], 1e-9):
        return ink  # round: no long axis to stand on
    dx, dy = vectors[:, 1]
    lean = math.degrees(math.atan2(dx, dy))  # from the vertical, in (-180, 180]
    lean = (lean + 90.0) % 180.0 - 90.0  # the axis has no direction: within (-90, 90]
    if abs(lean) < STAND_FROM_DEGREES:
        return ink
    height, width = ink.shape
    centre = (float(xs.mean()), float(ys.mean()))
    side = math.ceil(math.hypot(height, width)) + 2
    turn = cv2.getRotationMatrix2D(centre, -lean, 1.0)
    turn[0, 2] += side / 2 - centre[0]
    turn[1, 2] += side / 2 - centre[1]
    return cv2.warpAffine(ink, turn, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)


def _trimmed(picture: np.ndarray, pad: int = 2) -> np.ndarray:
    dark = picture < PAPER - 8
    rows, cols = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    if not len(rows):
        return picture.copy()
    kept = picture[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return np.pad(kept, pad, constant_values=PAPER)


def tone(picture: np.ndarray, options: DisplayOptions) -> np.ndarray:
    """Brightness, contrast and gamma (one lookup table), then sharpening; white stays white
    where the picture is white, so the karyogram's paper does not turn grey."""
    picture = np.asarray(picture, np.uint8)
    if options.tone_is_plain:
        return picture.copy()
    levels = np.arange(256, dtype=np.float64) / 255.0
    levels = (levels - 0.5) * options.contrast + 0.5 + options.brightness
    levels = np.clip(levels, 0.0, 1.0) ** options.gamma
    table = np.round(levels * 255).astype(np.uint8)
    table[PAPER] = PAPER
    toned = cv2.LUT(picture, table)
    if options.sharpen > 0:
        blurred = cv2.GaussianBlur(toned, (0, 0), 1.2)
        toned = cv2.addWeighted(toned, 1 + options.sharpen, blurred, -options.sharpen, 0)
        toned[picture == PAPER] = PAPER
    return toned


def centromere_fraction(picture: np.ndarray, chromosome_type: ChromosomeType | None) -> float:
    """Where the centromere of an upright chromosome picture lies, as a fraction of its
    height from the top: the narrowest row of its width profile within a window around the
    type's textbook centromere index (the textbook value itself when the profile shows no
    waist there, or when the type is not known: then the middle)."""
    known = chromosome_type is not None and chromosome_type.value < N_TYPES
    expected = ideogram(chromosome_type).centromere_index if known else 0.5
    picture = np.asarray(picture)
    if picture.ndim != 2 or picture.shape[0] < 12:
        return expected
    dark = picture < PAPER - 24
    rows = np.flatnonzero(dark.any(1))
    if len(rows) < 12:
        return expected
    top, bottom = rows[0], rows[-1] + 1
    widths = dark[top:bottom].sum(1).astype(np.float64)
    sigma = max(1.0, len(widths) / 60)
    widths = cv2.GaussianBlur(widths.reshape(-1, 1), (1, 0), sigmaX=0, sigmaY=sigma,
                              borderType=cv2.BORDER_REPLICATE).ravel()
    length = len(widths)
    low = max(1, int((expected - CENTROMERE_WINDOW) * length))
    high = min(length - 1, math.ceil((expected + CENTROMERE_WINDOW) * length))
    if high - low < 3:
        return expected
    waist = low + int(np.argmin(widths[low:high]))
    # a waist only where the profile is narrower there than around it (not an arm's end)
    if widths[waist] > 0.92 * min(widths[:waist].max(initial=0), widths[waist:].max(initial=0)):
        return expected
    return (top + waist + 0.5) / picture.shape[0]
