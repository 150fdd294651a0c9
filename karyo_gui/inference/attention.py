"""Where the model looked: Grad-CAM maps over a chromosome crop.

A map says, for every pixel of a crop, how much it drove the model towards one type (the
predicted one unless another is asked for), from 0 (not at all) to 1 (most). It is computed
on the canvas the model saw, at the last feature stage of the encoder, and mapped back onto
the crop as stored, so that it can be laid over the crop in the karyogram.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from trainer.batches import normalise
from trainer.model import ChromosomeNet, LogitsOnly
from trainer.preprocessing import Placement, Preprocessing


class AttentionError(Exception):
    """The model's architecture has no layer Grad-CAM can explain; the message names it."""


@dataclass(frozen=True)
class AttentionMap:
    crop_map: np.ndarray  # float32 over the crop as stored, in [0, 1]
    canvas_map: np.ndarray  # float32 over the canvas the model saw, in [0, 1]
    target: int  # the type explained
    probability: float  # the model's probability of that type


def _is_vit(encoder: nn.Module) -> bool:
    """A plain vision transformer: a token sequence with prefix (class) tokens."""
    return hasattr(encoder, "num_prefix_tokens") and hasattr(
        getattr(encoder, "patch_embed", None), "grid_size"
    )


def target_layer(net: ChromosomeNet) -> nn.Module:
    """The layer whose activations and gradients make the map: the last feature stage."""
    encoder = net.encoder
    if _is_vit(encoder):
        return encoder.blocks[-1].norm1
    info = getattr(encoder, "feature_info", None)
    if info and info[-1].get("module"):
        return encoder.get_submodule(info[-1]["module"])
    raise AttentionError(f"no layer to explain in a {net.arch} model (no timm feature_info)")


def reshape_transform(net: ChromosomeNet) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """How to turn the target layer's output into (n, channels, rows, cols), if needed."""
    encoder = net.encoder
    if _is_vit(encoder):
        rows, cols = encoder.patch_embed.grid_size
        prefix = encoder.num_prefix_tokens

        def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
            grid = tokens[:, prefix:].reshape(tokens.shape[0], rows, cols, tokens.shape[-1])
            return grid.permute(0, 3, 1, 2)

        return tokens_to_grid
    if getattr(encoder, "output_fmt", "NCHW") == "NHWC":  # swin and friends
        return lambda x: x.permute(0, 3, 1, 2)
    return None


@contextmanager
def _gradients_untouched(net: nn.Module) -> Iterator[None]:
    """Freeze the parameters; afterwards restore their requires_grad and their gradients."""
    parameters = list(net.parameters())
    saved = [(p.requires_grad, p.grad) for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, (requires_grad, grad) in zip(parameters, saved):
            p.requires_grad_(requires_grad)
            p.grad = grad


def attention_map(
    net: ChromosomeNet,
    canvas: np.ndarray,
    preprocessing: Preprocessing,
    where: Placement,
    target: int | None = None,
    device: str | torch.device | None = None,
    temperature: float = 1.0,
) -> AttentionMap:
    """The Grad-CAM map of one crop: ``canvas`` is the crop as placed (``place_crop``) and
    ``where`` its :func:`~trainer.preprocessing.placement`.

    ``target`` is the type to explain (a class index); ``None`` explains the predicted type.
    ``temperature``: the model's calibration, for the probability reported with the map.
    The net stays where it is (``device``, if given, must be where it is) and is left in
    eval mode, with its parameters' gradients and ``requires_grad`` as they were.
    """
    shape = (preprocessing.height, preprocessing.width)
    if canvas.shape != shape:
        raise ValueError(f"canvas of shape {canvas.shape}, the model takes {shape}")
    classes = net.head.out_features
    if target is not None and not 0 <= target < classes:
        raise ValueError(f"target {target} is not a type index (0..{classes - 1})")
    on = next(net.parameters()).device
    asked = torch.device(device or on)
    if asked.type != on.type or asked.index not in (None, on.index):
        raise ValueError(f"the model is on {on}, not on {asked}")
    x = normalise(torch.from_numpy(np.ascontiguousarray(canvas))[None], preprocessing).to(on)
    # with the parameters frozen, the input carries the gradient to the target layer
    x.requires_grad_(True)
    targets = None if target is None else [ClassifierOutputTarget(target)]
    layers = [target_layer(net)]
    with (
        _gradients_untouched(net),
        torch.enable_grad(),
        GradCAM(LogitsOnly(net), layers, reshape_transform(net)) as cam,
    ):
        try:
            canvas_map = cam(x, targets)[0]
        except ValueError as error:  # the layer's output is not a feature map
            raise AttentionError(f"cannot explain a {net.arch} model: {error}") from None
        logits = cam.outputs[0].detach()
    explained = int(logits.argmax()) if target is None else target
    probability = float(torch.softmax(logits.float() / temperature, dim=0)[explained])
    canvas_map = np.clip(canvas_map, 0.0, 1.0).astype(np.float32)
    crop_map = np.clip(where.to_crop(canvas_map), 0.0, 1.0).astype(np.float32)
    return AttentionMap(crop_map, canvas_map, explained, probability)
