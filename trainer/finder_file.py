"""The chromosome finder's model file header, its input picture and the decoding of its
outputs: everything about the finder that needs no torch (``trainer.finder`` holds the
network; the app's quick start runs an ONNX copy of it without torch).

The model file is one ``.safetensors`` file like the classifier's, with a JSON header under
``karyo`` (format ``karyo-finder``): architecture, input width, decoding thresholds, the
data it was trained on and its metrics. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.special import expit

from karyo_gui import __version__
from karyo_gui.core.metaphase import downscaled, estimate_chromosome_width, flatten_background
from trainer.checkpoint import header_fields, header_text

FORMAT = "karyo-finder"
FORMAT_VERSION = 1
HEADER_KEY = "karyo"
STRIDE = 4
INPUT_WIDTH = 10.0  # chromosome width in the net's input, pixels
MAX_INPUT_SIDE = 1600  # the net looks at tiles no larger than this (memory on a big image)
MAX_SCALED_SIDE = 4096  # the scaled image is never larger (then chromosomes come out thinner)
TILE_CONTEXT = 128  # input pixels each tile sees beyond its own part (a multiple of 32)

SHIPPED_FINDER = Path(__file__).resolve().parents[1] / "resources" / "karyo-finder.safetensors"
FINDER_ENV = "KARYO_FINDER"




class FinderError(Exception):
    """A finder model file that cannot be used; the message names the file and the reason."""


@dataclass
class FinderHeader:
    arch: str = "resnet18"
    channels: int = 96
    input_width: float = INPUT_WIDTH
    score_threshold: float = 0.3  # a peak above this is a chromosome
    review_threshold: float = 0.5  # a chromosome found below this is flagged for review
    flip_test: bool = False  # look at the image mirrored too and average (twice the time)
    flip_vertical: bool = False  # and upside down too (three looks)
    name: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    karyo_version: str = __version__
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    model_id: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, shown: str) -> FinderHeader:
        known = header_fields(
            text, shown, cls, (FORMAT, FORMAT_VERSION), FinderError, "finder",
            "karyo chromosome-finder model file",
        )  # fmt: skip
        header = cls(**known)
        checks = (
            # (whether timm knows it is asked when the net is built: no timm here)
            (isinstance(header.arch, str) and bool(header.arch), "architecture"),
            (isinstance(header.channels, int) and 8 <= header.channels <= 512, "channels"),
            (_number_in(header.input_width, 2.0, 64.0), "input_width"),
            (_number_in(header.score_threshold, 0.0, 1.0), "score_threshold"),
            (_number_in(header.review_threshold, 0.0, 1.0), "review_threshold"),
            (isinstance(header.flip_test, bool), "flip_test"),
            (isinstance(header.flip_vertical, bool), "flip_vertical"),
        )
        for ok, what in checks:
            if not ok:
                raise FinderError(f"{shown}: finder header has an unusable {what}")
        return header


def _number_in(value: object, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


# ---------------------------------------------------------------- input


@dataclass
class FinderInput:
    """A metaphase as the net sees it, and how to map its boxes back to the image."""

    tensor: np.ndarray  # (H, W) float32, padded to a multiple of 32
    scale: float  # input pixels per image pixel
    width: float  # chromosome width measured on the image, pixels
    shape: tuple[int, int]  # (H, W) of the scaled image before padding


def finder_input(
    grey: np.ndarray,
    input_width: float = INPUT_WIDTH,
    width: float | None = None,
    jitter: float = 1.0,
) -> FinderInput:
    """Scale the metaphase so a chromosome is ``input_width`` px wide, flatten its
    background and turn it into darkness (0 background, ~1 chromosome)."""
    measured = width if width is not None else estimate_chromosome_width(grey)
    scale = input_width / measured * jitter
    longest = max(grey.shape)
    scale = float(np.clip(scale, 64 / longest, MAX_SCALED_SIDE / longest))
    scaled = downscaled(grey, scale)
    darkness = 1.0 - flatten_background(scaled, input_width)
    darkness = np.clip(darkness, 0.0, 1.0).astype(np.float32)
    height, width_px = darkness.shape
    padded = np.zeros((-(-height // 32) * 32, -(-width_px // 32) * 32), np.float32)
    padded[:height, :width_px] = darkness
    return FinderInput(padded, scale, measured, (height, width_px))


# ---------------------------------------------------------------- decoding


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # image pixels
    score: float


def decode(
    output: dict[str, np.ndarray], threshold: float, max_objects: int = 300
) -> list[list[tuple[float, float, float, float, float]]]:
    """Boxes (x0, y0, x1, y1 in input pixels, score) per image of a batch of the net's
    outputs (numpy, ``heatmap`` (B, 1, H, W) logits, ``size``, ``offset``): the heatmap's
    local maxima (3 x 3) above ``threshold``, highest first."""
    heat = expit(np.asarray(output["heatmap"], np.float32))
    results = []
    for b in range(heat.shape[0]):
        plane = np.ascontiguousarray(heat[b, 0])
        width = plane.shape[1]
        peaks = np.where(cv2.dilate(plane, np.ones((3, 3), np.uint8)) == plane, plane, 0).ravel()
        count = min(max_objects, peaks.size)
        index = np.argpartition(-peaks, count - 1)[:count]
        index = index[np.argsort(-peaks[index], kind="stable")]
        index = index[peaks[index] >= threshold]
        ys, xs = index // width, index % width
        offset = np.asarray(output["offset"][b], np.float32)[:, ys, xs]
        size = np.exp(np.clip(np.asarray(output["size"][b], np.float32)[:, ys, xs], -2, 7))
        cx, cy = (xs + offset[0]) * STRIDE, (ys + offset[1]) * STRIDE
        w, h = size[0] * STRIDE, size[1] * STRIDE
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, peaks[index]], 1)
        results.append([tuple(float(v) for v in row) for row in boxes.tolist()])
    return results


def detect_with(
    forward: Callable[[np.ndarray], dict[str, np.ndarray]],
    grey: np.ndarray,
    header: FinderHeader,
    threshold: float | None = None,
) -> tuple[list[Detection], np.ndarray, FinderInput]:
    """The chromosomes of one metaphase: boxes in image pixels with their scores, the
    foreground probability at the input's stride-4 grid, and the input used. ``forward``
    runs the net (the torch network or its ONNX copy) on a (1, 1, H, W) float32 input and
    gives its outputs as numpy arrays."""
    prepared = finder_input(grey, header.input_width)
    output = in_tiles(lambda tensor: looks(forward, tensor, header), prepared.tensor[None, None])
    limit = header.score_threshold if threshold is None else threshold
    boxes = decode(output, min(limit, header.review_threshold))[0]
    height, width = grey.shape
    found = []
    for x0, y0, x1, y1, score in boxes:
        box = (
            float(np.clip(x0 / prepared.scale, 0, width)),
            float(np.clip(y0 / prepared.scale, 0, height)),
            float(np.clip(x1 / prepared.scale, 0, width)),
            float(np.clip(y1 / prepared.scale, 0, height)),
        )
        if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            found.append(Detection(box, score))
    return found, expit(np.asarray(output["foreground"][0, 0], np.float32)), prepared


def looks(
    forward: Callable[[np.ndarray], dict[str, np.ndarray]], tensor: np.ndarray, header: FinderHeader
) -> dict[str, np.ndarray]:
    """The net's outputs for one input, as the header asks: once, and once mirrored (and once
    upside down), the heatmaps and the sizes and chromosome pixels, which a flip keeps,
    averaged over the looks; the centre offsets are the first look's."""
    output = forward(tensor)
    flips = [(slice(None), slice(None, None, -1))] if header.flip_test else []
    if header.flip_vertical:
        flips.append((slice(None, None, -1), slice(None)))
    for rows, cols in flips:
        flipped = forward(np.ascontiguousarray(tensor[..., rows, cols]))
        for key in ("heatmap", "size", "foreground"):
            output[key] = output[key] + flipped[key][..., rows, cols]
    for key in ("heatmap", "size", "foreground"):
        output[key] = output[key] / (1 + len(flips))
    return output


def in_tiles(
    run: Callable[[np.ndarray], dict[str, np.ndarray]],
    tensor: np.ndarray,
    side: int = MAX_INPUT_SIDE,
    context: int = TILE_CONTEXT,
) -> dict[str, np.ndarray]:
    """``run``'s outputs (stride-4 maps) for a (1, 1, H, W) input padded to a multiple of 32,
    in tiles no larger than ``side`` when it is larger: each tile sees ``context`` pixels
    around its own part, and only its own part's outputs are kept (the memory a look takes
    stays that of one tile; an input that fits is run whole, as it is)."""
    height, width = tensor.shape[-2:]
    if max(height, width) <= side:
        return run(tensor)
    step = side - 2 * context
    output: dict[str, np.ndarray] = {}
    for top in range(0, height, step):
        for left in range(0, width, step):
            y0, x0 = max(0, top - context), max(0, left - context)
            y1, x1 = min(height, top + step + context), min(width, left + step + context)
            part = run(np.ascontiguousarray(tensor[..., y0:y1, x0:x1]))
            bottom, right = min(height, top + step), min(width, left + step)
            own = (slice(top // STRIDE, bottom // STRIDE), slice(left // STRIDE, right // STRIDE))
            seen = (
                slice((top - y0) // STRIDE, (bottom - y0) // STRIDE),
                slice((left - x0) // STRIDE, (right - x0) // STRIDE),
            )
            for key, value in part.items():
                if key not in output:
                    shape = (*value.shape[:2], height // STRIDE, width // STRIDE)
                    output[key] = np.zeros(shape, np.float32)
                output[key][..., own[0], own[1]] = value[..., seen[0], seen[1]]
    return output


# ---------------------------------------------------------------- the model file


def default_finder() -> Path:
    chosen = os.environ.get(FINDER_ENV)
    path = Path(chosen) if chosen else SHIPPED_FINDER
    if not path.is_file():
        where = f"${FINDER_ENV} points to {path}" if chosen else f"{path.name} is not installed"
        raise FinderError(
            f"no chromosome finder: {where} (a finder model file can be given with --finder "
            f"or ${FINDER_ENV})"
        )
    return path


def read_finder_header(path: str | os.PathLike) -> FinderHeader:
    path = Path(path)
    text = header_text(path, FinderError, "finder model file")
    return FinderHeader.from_json(text, path.name)


