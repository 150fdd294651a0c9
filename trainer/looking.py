"""What a network read from prepared crops, and the second look at the unsure ones (numpy
only: shared by the torch network and the app's torch-free quick start)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# one look at uint8 canvases (n, h, w): probabilities (n, 24), embeddings (n, D) and the
# probability that each stands upside down (n,), or None without an orientation head
Look = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray | None]]


@dataclass
class Predictions:
    probabilities: np.ndarray  # (n, 24)
    embeddings: np.ndarray  # (n, D)
    seconds: float  # model time only (no loading)
    # (n,) probability that each crop stands upside down (p-arm at the bottom), from the
    # first look; None when the model has no orientation head
    upside_down: np.ndarray | None = None


def with_second_look(
    look: Look, canvases: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``look`` at every canvas, and again flipped top to bottom at those whose top-two
    probability margin is below ``margin``: their probabilities become the mean of the two
    looks (the embeddings and orientation stay the first look's). ``margin=0``: one look."""
    probabilities, embeddings, upside_down = look(canvases)
    if margin > 0 and len(probabilities):
        ranked = np.sort(probabilities, axis=1)
        unsure = np.flatnonzero(ranked[:, -1] - ranked[:, -2] < margin)
        if len(unsure):
            flipped = np.ascontiguousarray(canvases[unsure, ::-1, :])
            again, _, _ = look(flipped)
            probabilities[unsure] = (probabilities[unsure] + again) / 2
    return probabilities, embeddings, upside_down


def read_together(
    probabilities: np.ndarray, other_probabilities: np.ndarray, other_of: np.ndarray
) -> np.ndarray:
    """Each crop's probabilities read together with those of its other cuts (the same
    chromosome cut other ways where it touches a neighbour; ``other_of``: the crop each
    other cut belongs to): the geometric mean over all its cuts, renormalised, so a type
    wins where it fits every cut. Crops without other cuts keep their own."""
    other_of = np.asarray(other_of, dtype=np.int64)
    if not len(other_of):
        return probabilities
    total = np.log(np.clip(probabilities, 1e-6, None)).astype(np.float64)
    counts = np.ones(len(probabilities))
    np.add.at(total, other_of, np.log(np.clip(other_probabilities, 1e-6, None)))
    np.add.at(counts, other_of, 1.0)
    mean = total / counts[:, None]
    mean -= mean.max(axis=1, keepdims=True)
    together = np.exp(mean)
    return (together / together.sum(axis=1, keepdims=True)).astype(np.float32)
