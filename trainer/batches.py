"""Pairwise class-balanced batches and their augmentation.

Each step draws two batches B1 and B2 holding the same types in the same order: ``k``
crops of every type present, and B1[i] and B2[i] are different crops of type y[i] whenever
the data has enough of that type (rare types such as Y are drawn again with replacement).
Augmentation runs on whole batches with one ``grid_sample`` so it costs little next to
the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from karyo_gui.core.labels import N_TYPES
from trainer.preprocessing import Preprocessing


class Pictures:
    """The pictures of drawn crops: each its own canvas or, at ``rate`` for a crop cut
    other ways too (``CropSet.other_of``), one of its other cuts picked at random."""

    def __init__(self, images: np.ndarray, other_images: np.ndarray, other_of: np.ndarray,
                 rate: float, seed: int) -> None:
        self.images, self.rate = images, rate
        order = np.argsort(other_of, kind="stable")
        self.other_images = other_images[order]
        self.counts = np.bincount(other_of, minlength=len(images))
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.rng = np.random.default_rng(seed)

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        pictures = self.images[indices]
        if self.rate <= 0 or not len(self.other_images):
            return pictures
        counts = self.counts[indices]
        swap = (counts > 0) & (self.rng.random(len(indices)) < self.rate)
        if swap.any():
            picked = self.starts[indices[swap]] + self.rng.integers(0, counts[swap])
            pictures[swap] = self.other_images[picked]
        return pictures


class PairwiseClassBalancedSampler:
    """Indices of two aligned batches: ``crops_per_class`` crops of each type per batch.

    With ``groups`` (one group per crop: the lab or source it came from) and ``weights``
    (one per group), each crop of a type is drawn from a group picked with those weights
    among the groups that hold that type, so a small lab counts as much as the mix says
    however few crops it has; without them every crop of a type is equally likely.
    """

    def __init__(
        self,
        labels: np.ndarray,
        crops_per_class: int = 1,
        seed: int = 0,
        groups: np.ndarray | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        if crops_per_class < 1:
            raise ValueError("crops_per_class must be at least 1")
        self.crops_per_class = crops_per_class
        self.rng = np.random.default_rng(seed)
        self.by_type = [np.flatnonzero(labels == t) for t in range(N_TYPES)]
        self.types = [t for t, members in enumerate(self.by_type) if len(members)]
        if len(self.types) < 2:
            raise ValueError("contrastive training needs crops of at least two types")
        # per type: the members of each group that holds it, and the groups' chances
        self.by_group: list[tuple[list[np.ndarray], np.ndarray]] | None = None
        if groups is not None and weights is not None:
            weights = np.asarray(weights, np.float64)
            if len(groups) != len(labels) or groups.min(initial=0) < 0 or groups.max(
                initial=0
            ) >= len(weights) or not (np.isfinite(weights).all() and (weights >= 0).all()):
                raise ValueError("one group per crop and a weight >= 0 per group are needed")
            self.by_group = []
            for t in range(N_TYPES):
                members = [self.by_type[t][groups[self.by_type[t]] == g]
                           for g in range(len(weights))]
                chances = np.asarray([w if len(m) else 0.0 for w, m in zip(weights, members)])
                if len(self.by_type[t]) and chances.sum() == 0:  # only weight-0 groups hold it
                    chances = np.asarray([float(len(m)) for m in members])
                self.by_group.append((members, chances / max(chances.sum(), 1e-12)))

    @property
    def labels(self) -> np.ndarray:
        return np.repeat(np.asarray(self.types, np.int64), self.crops_per_class)

    @property
    def batch_size(self) -> int:
        return len(self.types) * self.crops_per_class

    def draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices of B1, indices of B2, labels shared by both)."""
        k = self.crops_per_class
        first, second = [], []
        for t in self.types:
            members = self.by_type[t]
            if self.by_group is not None:
                group_members, chances = self.by_group[t]
                picked = self._draw_mixed(group_members, chances, 2 * k)
                first.append(picked[:k])
                second.append(picked[k:])
                continue
            replace = len(members) < 2 * k
            picked = self.rng.choice(members, size=2 * k, replace=replace)
            if replace and len(members) > 1:
                # keep the two views of a pair distinct even when drawing with replacement
                for i in range(k):
                    while picked[k + i] == picked[i]:
                        picked[k + i] = self.rng.choice(members)
            first.append(picked[:k])
            second.append(picked[k:])
        return np.concatenate(first), np.concatenate(second), self.labels

    def _draw_mixed(
        self, group_members: list[np.ndarray], chances: np.ndarray, n: int
    ) -> np.ndarray:
        """n crops of one type, each from a group drawn with ``chances``; the two views of a
        pair are distinct crops whenever the type has more than one."""
        drawn = self.rng.choice(len(chances), size=n, p=chances)
        picked = np.asarray([self.rng.choice(group_members[g]) for g in drawn])
        k = n // 2
        if sum(len(m) for m, c in zip(group_members, chances) if c > 0) > 1:
            for i in range(k):
                while picked[k + i] == picked[i]:
                    g = self.rng.choice(len(chances), p=chances)
                    picked[k + i] = self.rng.choice(group_members[g])
        return picked

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state


@dataclass(frozen=True)
class Augmentation:
    """The paper's rotation, flips and contrast jitter, plus scale, shift and bend jitter."""

    rotate_degrees: float = 15.0
    hflip: float = 0.5
    vflip: float = 0.5
    scale: float = 0.1  # relative size jitter, +-
    shift: float = 0.05  # fraction of the canvas, +-
    contrast: float = 0.25  # multiplicative, +-
    gamma: float = 0.3  # log-uniform gamma in exp(+-gamma)
    # largest sideways bow, as a fraction of the canvas width, of the canvas's top and bottom
    # rows against its middle row: straightened crops still come bent, but fewer than straight
    bend: float = 0.0


def normalise(canvases: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 (n, h, w) canvases -> normalised float (n, 1, h, w) model input."""
    x = canvases.float().div_(255.0).unsqueeze(1)
    return (x - preprocessing.mean) / preprocessing.std


def augment(
    canvases: torch.Tensor,
    preprocessing: Preprocessing,
    augmentation: Augmentation,
    generator: torch.Generator,
) -> torch.Tensor:
    """Randomly transformed, normalised model input for a batch of uint8 canvases."""
    n, height, width = canvases.shape
    x = canvases.float().div_(255.0).unsqueeze(1)

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    angle = uniform(-augmentation.rotate_degrees, augmentation.rotate_degrees) * math.pi / 180
    scale = uniform(1 - augmentation.scale, 1 + augmentation.scale)
    flip_x = torch.where(torch.rand(n, generator=generator) < augmentation.hflip, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=generator) < augmentation.vflip, -1.0, 1.0)
    # the output->input map in pixel units, then in affine_grid's [-1, 1] units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    half = torch.tensor([width / 2, height / 2])
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * flip_x
    theta[:, 0, 1] = -sin * flip_y * half[1] / half[0]
    theta[:, 1, 0] = sin * flip_x * half[0] / half[1]
    theta[:, 1, 1] = cos * flip_y
    theta[:, 0, 2] = uniform(-augmentation.shift, augmentation.shift) * 2
    theta[:, 1, 2] = uniform(-augmentation.shift, augmentation.shift) * 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if augmentation.bend > 0:
        # bow the chromosome along its own axis: a sideways shift growing with the square of
        # the distance from the middle row, applied before the rotation (the grid is linear
        # in the output coordinates, so shifting them shifts the input along theta's x column)
        bow = uniform(-augmentation.bend, augmentation.bend) * 2
        rows = torch.linspace(-1 + 1 / height, 1 - 1 / height, height)
        shift_x = bow.view(n, 1) * rows.view(1, height) ** 2  # (n, h), in [-1, 1] units
        grid = grid + shift_x.view(n, height, 1, 1) * theta[:, :, 0].view(n, 1, 1, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    gamma = torch.exp(uniform(-augmentation.gamma, augmentation.gamma)).view(n, 1, 1, 1)
    contrast = uniform(1 - augmentation.contrast, 1 + augmentation.contrast).view(n, 1, 1, 1)
    x = (x.clamp_(0, 1).pow(gamma) * contrast).clamp_(0, 1)
    return (x - preprocessing.mean) / preprocessing.std
