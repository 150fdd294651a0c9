"""The network: any timm encoder, a projection to the embedding E, a classification head.

    crop -> encoder f_e (timm, 1 input channel) -> projection -> E (dimension D) -> head -> P

E, l2-normalised, is what the contrastive loss compares; P are the 24 type scores. The
learnable temperature of the similarity matrices lives here as a log scale, clamped.
A model may also carry an orientation head on E: one logit that the crop stands upside down
(p-arm at the bottom), fitted after training (``trainer.orientation``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from karyo_gui.core.labels import N_TYPES


class ModelOutput(NamedTuple):
    embedding: torch.Tensor  # (n, D), not normalised
    logits: torch.Tensor  # (n, 24)
    upside_down: torch.Tensor | None = None  # (n,) logits; None without an orientation head


class ChromosomeNet(nn.Module):
    def __init__(
        self,
        arch: str,
        embedding_dim: int = 1024,
        num_classes: int = N_TYPES,
        temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        orientation_head: bool = False,
        **model_kwargs,
    ) -> None:
        super().__init__()
        import timm  # here, not at the top: the app's quick start runs without it

        self.arch = arch
        self.encoder = timm.create_model(
            arch, pretrained=False, in_chans=1, num_classes=0, **model_kwargs
        )
        # what forward_features + pooling yields: some encoders (MobileNetV3) end in a head
        # layer that widens num_features to head_hidden_size
        width = getattr(self.encoder, "head_hidden_size", None) or self.encoder.num_features
        self.projection = nn.Linear(width, embedding_dim)
        self.head = nn.Linear(embedding_dim, num_classes)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.max_log_scale = math.log(max_logit_scale)
        self.orientation = nn.Linear(embedding_dim, 1) if orientation_head else None

    @property
    def similarity_scale(self) -> torch.Tensor:
        """t in S = t * E_norm E_norm^T (clamped so the softmax cannot collapse)."""
        return self.logit_scale.clamp(0.0, self.max_log_scale).exp()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        embedding = self.projection(self.encoder(x))
        upside_down = None if self.orientation is None else self.orientation(embedding)[:, 0]
        return ModelOutput(embedding, self.head(embedding), upside_down)


class LogitsOnly(nn.Module):
    """The network as a plain classifier (what Grad-CAM and exporters expect)."""

    def __init__(self, net: ChromosomeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).logits


def known_architecture(arch: str) -> bool:
    import timm

    return timm.is_model(arch)
