"""The chromosome finder: a centre-point detector (CenterNet-style) on any timm encoder.

    metaphase (grey, scaled so a chromosome is ``INPUT_WIDTH`` px wide, background flattened)
      -> timm encoder (features at strides 4..32) -> top-down feature pyramid (stride 4)
      -> heads: centre heatmap, box size (log w, log h), centre offset, foreground

Every chromosome is a peak of the heatmap: two crossing chromosomes have two centres, so
both are found even where they share pixels. The input is resolution independent: the
image is scaled by the chromosome width measured on it (``core.metaphase``), so a camera
with twice the pixels gives the net the same picture.

The model file is one ``.safetensors`` file like the classifier's, with a JSON header under
``karyo`` (format ``karyo-finder``): architecture, input width, decoding thresholds, the
data it was trained on and its metrics. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from karyo_gui import __version__
from karyo_gui.core.metaphase import downscaled, estimate_chromosome_width, flatten_background
from karyo_gui.core.privacy import without_private_paths
from trainer.checkpoint import header_fields, header_text, weights_id, write_model_file
from trainer.finder_cli import FinderError
from trainer.model import known_architecture

FORMAT = "karyo-finder"
FORMAT_VERSION = 1
HEADER_KEY = "karyo"
STRIDE = 4
INPUT_WIDTH = 10.0  # chromosome width in the net's input, pixels
MAX_INPUT_SIDE = 1600  # the net's input is never larger than this (memory on a big image)
MAX_PARAMETERS = 60_000_000

SHIPPED_FINDER = Path(__file__).resolve().parents[1] / "resources" / "karyo-finder.safetensors"
FINDER_ENV = "KARYO_FINDER"


@dataclass
class FinderHeader:
    arch: str = "resnet18"
    channels: int = 96
    input_width: float = INPUT_WIDTH
    score_threshold: float = 0.3  # a peak above this is a chromosome
    review_threshold: float = 0.5  # a chromosome found below this is flagged for review
    flip_test: bool = False  # look at the image mirrored too and average (twice the time)
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
            (isinstance(header.arch, str) and known_architecture(header.arch), "architecture"),
            (isinstance(header.channels, int) and 8 <= header.channels <= 512, "channels"),
            (_number_in(header.input_width, 2.0, 64.0), "input_width"),
            (_number_in(header.score_threshold, 0.0, 1.0), "score_threshold"),
            (_number_in(header.review_threshold, 0.0, 1.0), "review_threshold"),
            (isinstance(header.flip_test, bool), "flip_test"),
        )
        for ok, what in checks:
            if not ok:
                raise FinderError(f"{shown}: finder header has an unusable {what}")
        return header


def _number_in(value: object, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


class FinderNet(nn.Module):
    def __init__(self, arch: str = "resnet18", channels: int = 96) -> None:
        import timm  # here, not at the top: classifying crops needs no timm (quick start)

        super().__init__()
        self.encoder = timm.create_model(
            arch, pretrained=False, features_only=True, in_chans=1, out_indices=(1, 2, 3, 4)
        )
        widths = self.encoder.feature_info.channels()
        reductions = self.encoder.feature_info.reduction()
        if reductions[0] != STRIDE:
            raise ValueError(f"{arch}: first feature map at stride {reductions[0]}, not {STRIDE}")
        self.lateral = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths)
        self.smooth = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

        def head(out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, out, 1),
            )

        self.heatmap = head(1)
        self.size = head(2)
        self.offset = head(2)
        self.foreground = head(1)
        nn.init.constant_(self.heatmap[-1].bias, -2.19)  # CenterNet: start at p = 0.1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.encoder(x)
        top = self.lateral[-1](features[-1])
        for level in range(len(features) - 2, -1, -1):
            lateral = self.lateral[level](features[level])
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
        shared = self.smooth(top)
        return {
            "heatmap": self.heatmap(shared),
            "size": self.size(shared),
            "offset": self.offset(shared),
            "foreground": self.foreground(shared),
        }


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
    scale = float(np.clip(scale, 64 / longest, MAX_INPUT_SIDE / longest))
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
    output: dict[str, torch.Tensor], threshold: float, max_objects: int = 300
) -> list[list[tuple[float, float, float, float, float]]]:
    """Boxes (x0, y0, x1, y1 in input pixels, score) per image of a batch: the heatmap's
    local maxima (3 x 3) above ``threshold``."""
    heat = torch.sigmoid(output["heatmap"])
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    batch, _, height, width = heat.shape
    results = []
    for b in range(batch):
        scores, index = peaks[b, 0].flatten().topk(min(max_objects, height * width))
        keep = scores >= threshold
        scores, index = scores[keep], index[keep]
        ys, xs = (index // width).float(), (index % width).float()
        offset = output["offset"][b, :, (index // width), (index % width)]
        size = output["size"][b, :, (index // width), (index % width)].clamp(-2, 7).exp()
        cx, cy = (xs + offset[0]) * STRIDE, (ys + offset[1]) * STRIDE
        w, h = size[0] * STRIDE, size[1] * STRIDE
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, scores], 1)
        results.append([tuple(float(v) for v in row) for row in boxes.tolist()])
    return results


def foreground_probability(output: dict[str, torch.Tensor], index: int = 0) -> np.ndarray:
    return torch.sigmoid(output["foreground"][index, 0]).float().cpu().numpy()


@torch.no_grad()
def detect(
    net: FinderNet,
    grey: np.ndarray,
    header: FinderHeader,
    device: torch.device | str = "cpu",
    threshold: float | None = None,
) -> tuple[list[Detection], np.ndarray, FinderInput]:
    """The chromosomes of one metaphase: boxes in image pixels with their scores, the
    foreground probability at the input's stride-4 grid, and the input used."""
    prepared = finder_input(grey, header.input_width)
    tensor = torch.from_numpy(prepared.tensor)[None, None].to(device)
    output = net(tensor)
    if header.flip_test:
        # and once mirrored: the two heatmaps (and sizes, which a mirror keeps) averaged
        mirrored = net(torch.flip(tensor, dims=[3]))
        for key in ("heatmap", "size", "foreground"):
            output[key] = (output[key] + torch.flip(mirrored[key], dims=[3])) / 2
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
    return found, foreground_probability(output), prepared


# ---------------------------------------------------------------- the model file


def save_finder(
    path: str | os.PathLike, net: FinderNet, header: FinderHeader, dtype: torch.dtype | None = None
) -> Path:
    path = Path(path)
    for part in ("training_data", "metrics", "config"):
        setattr(header, part, without_private_paths(getattr(header, part)))
    state = {}
    for name, tensor in net.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous()
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FinderError(f"{path.name}: not written: non-finite weights in {name}")
    header.model_id = weights_id(state)
    return write_model_file(path, state, header.to_json())


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


def load_finder(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> tuple[FinderNet, FinderHeader]:
    """The finder of a model file (default: $KARYO_FINDER, else the shipped one), in eval
    mode on ``device``. The net is first built on the meta device and compared with the
    file's tensors, so a damaged or foreign file is refused before anything is allocated."""
    path = Path(path) if path is not None else default_finder()
    header = read_finder_header(path)
    shown = path.name
    with torch.device("meta"):
        skeleton = FinderNet(header.arch, header.channels)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if sum(int(np.prod(s)) for s in expected.values()) > MAX_PARAMETERS:
        raise FinderError(f"{shown}: {header.arch} is larger than a finder can be")
    try:
        with safe_open(str(path), framework="pt") as opened:
            stored = {k: tuple(opened.get_slice(k).get_shape()) for k in opened.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise FinderError(f"{shown}: damaged weights ({error})") from None
    if stored != expected:
        raise FinderError(f"{shown}: weights do not fit a {header.arch} finder")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise FinderError(f"{shown}: damaged weights ({error})") from None
    if weights_id(state) != header.model_id:
        raise FinderError(f"{shown}: weights changed since the file was written (id mismatch)")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FinderError(f"{shown}: non-finite weights in {name}")
    net = FinderNet(header.arch, header.channels)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.to(device).eval(), header
