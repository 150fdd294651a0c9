"""The chromosome finder: a centre-point detector (CenterNet-style) on any timm encoder.

    metaphase (grey, scaled so a chromosome is ``INPUT_WIDTH`` px wide, background flattened)
      -> timm encoder (features at strides 4..32) -> top-down feature pyramid (stride 4)
      -> heads: centre heatmap, box size (log w, log h), centre offset, foreground

Every chromosome is a peak of the heatmap: two crossing chromosomes have two centres, so
both are found even where they share pixels. The input is resolution independent: the
image is scaled by the chromosome width measured on it (``core.metaphase``), so a camera
with twice the pixels gives the net the same picture.

The model file's header, the input picture and the decoding of the outputs need no torch:
they are in ``trainer.finder_file`` (and named here too).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from karyo_gui.core.privacy import without_private_paths
from trainer.checkpoint import weights_id, write_model_file
from trainer.finder_file import (  # noqa: F401  (named here for the finder's users)
    SHIPPED_FINDER,
    STRIDE,
    Detection,
    FinderError,
    FinderHeader,
    FinderInput,
    decode,
    default_finder,
    detect_with,
    finder_input,
    in_tiles,
    read_finder_header,
)
from trainer.model import known_architecture

MAX_PARAMETERS = 60_000_000


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


# ---------------------------------------------------------------- finding


def numpy_outputs(net: FinderNet, device: torch.device | str = "cpu"):
    """``net`` as ``trainer.finder_file.detect_with`` runs a finder: numpy in, numpy out."""

    @torch.no_grad()
    def forward(x: np.ndarray) -> dict[str, np.ndarray]:
        output = net(torch.from_numpy(np.ascontiguousarray(x)).to(device))
        return {key: value.float().cpu().numpy() for key, value in output.items()}

    return forward


def detect(
    net: FinderNet,
    grey: np.ndarray,
    header: FinderHeader,
    device: torch.device | str = "cpu",
    threshold: float | None = None,
) -> tuple[list[Detection], np.ndarray, FinderInput]:
    """The chromosomes of one metaphase (``trainer.finder_file.detect_with``) by the torch
    network on ``device``."""
    return detect_with(numpy_outputs(net, device), grey, header, threshold)


# ---------------------------------------------------------------- the model file


def finder_id(state: dict[str, torch.Tensor], header: FinderHeader) -> str:
    """The finder's model id: its weights' (``trainer.checkpoint.weights_id``), and, when
    it looks upside down too, that as well: the same weights then find other boxes, so the
    file needs another name (files without it keep the ids they always had)."""
    digest = weights_id(state)
    if header.flip_vertical:
        digest = hashlib.sha256(f"{digest}:flip_vertical".encode()).hexdigest()[:12]
    return digest


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
    header.model_id = finder_id(state, header)
    return write_model_file(path, state, header.to_json())


def load_finder(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> tuple[FinderNet, FinderHeader]:
    """The finder of a model file (default: $KARYO_FINDER, else the shipped one), in eval
    mode on ``device``. The net is first built on the meta device and compared with the
    file's tensors, so a damaged or foreign file is refused before anything is allocated."""
    path = Path(path) if path is not None else default_finder()
    header = read_finder_header(path)
    shown = path.name
    if not known_architecture(header.arch):
        raise FinderError(f"{shown}: finder header has an unusable architecture")
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
    if finder_id(state, header) != header.model_id:
        raise FinderError(f"{shown}: weights changed since the file was written (id mismatch)")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FinderError(f"{shown}: non-finite weights in {name}")
    net = FinderNet(header.arch, header.channels)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.to(device).eval(), header
