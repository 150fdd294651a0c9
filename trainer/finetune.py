"""Fine-tuning on a lab's reviewed cells (the app's Retrain dialog): how long, how hard,
how much of the lab in each batch, how long it takes, and how far to trust the comparison.

No torch here: the dialog imports this module to fill its form before any model is loaded.
The recipe comes from the new-lab curve (bench/new_lab_curve.py: the gband612 model
fine-tuned on 3 / 5 / 10 / 20 reviewed cil24 cells, measured on cil24's test cells; the
figures are in the model card).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# the lab's crops are drawn as often as the replay data's, however few cells the lab gave
# (drawn in proportion to their crops, 10 reviewed cells were about 8 % of the draws)
LAB_WEIGHT = 1.0
MIN_STEPS, MAX_STEPS, STEPS_PER_CELL = 150, 900, 45
EPOCHS = 3  # validation (and the choice of the best model) this many times along the run
# seconds per training step of the shipped resnet18 (2 x 48 crops of 128 x 64): measured
# on a 2-core CPU; CUDA (an H200 or a desktop card) takes a small fraction of that
SECONDS_PER_STEP = {"cpu": 1.2, "cuda": 0.06}
SECONDS_PER_CELL_LOADED = 0.3  # reading, straightening and placing one cell's crops


@dataclass(frozen=True)
class FineTuneRecipe:
    steps: int
    epochs: int
    lr: float
    lab_weight: float

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.steps / self.epochs))


# the new-lab curve (bench/new_lab_curve.py, gband612-only model fine-tuned through this
# recipe on n reviewed cil24 cells, 2 CPU cores): n -> (crop accuracy on 80 cil24 test
# metaphases, crop accuracy on 80 gband612 test cells, minutes)
NEW_LAB_CURVE = {0: (0.7668, 0.9741, 0.0), 3: (0.7573, 0.9486, 7.5), 5: (0.7984, 0.9624, 8.2),
                 10: (0.8098, 0.9614, 22.2), 20: (0.8370, 0.9608, 20.5)}
FEW_CELLS = 5  # below it fine-tuning was measured to give nothing on a new lab


def curve_note(n_cells: int) -> str:
    """What the measured new-lab curve says a run on ``n_cells`` reviewed cells can give."""
    start = NEW_LAB_CURVE[0][0]
    gains = ", ".join(f"{n} cells {100 * (NEW_LAB_CURVE[n][0] - start):+.1f}"
                      for n in sorted(NEW_LAB_CURVE) if n >= FEW_CELLS)
    measured = (f"Measured on a lab the model never saw (crop accuracy, points): {gains}.")
    if n_cells >= FEW_CELLS:
        return measured
    three_lab, three_home, _ = NEW_LAB_CURVE[3]
    return (f"Fewer than {FEW_CELLS} reviewed cells: on a new lab 3 cells gave no gain "
            f"({100 * start:.1f} % -> {100 * three_lab:.1f} %) and cost "
            f"{100 * (NEW_LAB_CURVE[0][1] - three_home):.1f} points on the original lab; "
            f"review more cells first. {measured}")


def recipe_for(n_cells: int) -> FineTuneRecipe:
    """The run for a lab that gave ``n_cells`` reviewed cells: more cells, more steps (up to
    a cap); a gentler learning rate once there are enough cells to learn slowly from."""
    steps = int(np.clip(STEPS_PER_CELL * max(n_cells, 1), MIN_STEPS, MAX_STEPS))
    lr = 3e-4 if n_cells <= 10 else 2e-4
    return FineTuneRecipe(steps=steps, epochs=EPOCHS, lr=lr, lab_weight=LAB_WEIGHT)


def estimate_seconds(steps: int, cells_loaded: int, device: str, threads: int = 2) -> float:
    """Rough wall time of a run: loading the cells, the steps, the final comparison."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    per_step = SECONDS_PER_STEP[kind]
    if kind == "cpu":
        per_step *= 2 / max(1, min(threads, 16)) ** 0.8  # threads help less than linearly
    return 20 + SECONDS_PER_CELL_LOADED * cells_loaded + per_step * steps * 1.1


def paired_difference(
    parent_correct: np.ndarray,
    new_correct: np.ndarray,
    cell_of: np.ndarray,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """The new model's crop accuracy minus the parent's on the same held-out crops, with a
    95 % interval from a bootstrap over CELLS (crops of one cell are not independent: one
    odd cell moves all of its crops at once). With one held-out cell there is no interval."""
    parent_correct = np.asarray(parent_correct, bool)
    new_correct = np.asarray(new_correct, bool)
    cells = np.unique(cell_of)
    difference = float(new_correct.mean() - parent_correct.mean()) if len(cell_of) else 0.0
    result = {"difference": difference, "n_cells": len(cells),
              "n_crops": len(cell_of), "ci95": None}
    if len(cells) < 2:
        return result
    index = np.searchsorted(cells, cell_of)
    gain = np.bincount(index, new_correct.astype(float) - parent_correct, len(cells))
    size = np.bincount(index, minlength=len(cells)).astype(float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(cells), size=(resamples, len(cells)))
    samples = gain[picks].sum(axis=1) / size[picks].sum(axis=1)
    low, high = np.percentile(samples, [2.5, 97.5])
    result["ci95"] = [float(low), float(high)]
    return result
