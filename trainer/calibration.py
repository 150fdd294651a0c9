"""Temperature scaling: make the classifier's probabilities mean what they say.

A network's softmax is rarely calibrated: among the crops it calls "92 % sure", more or
fewer than 92 % are right. One number fixes most of it (Guo et al., 2017): the logits
divided by a temperature T fitted on held-out crops by minimising their negative log
likelihood. T changes no type's rank, so accuracy stays as it was; it is stored in the
model header (``calibration``) and applied by the app to every probability it shows and
to the karyotype assignment (karyo_gui.core.assignment.calibrated).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from karyo_gui.core.assignment import calibrated


def expected_calibration_error(confidence: np.ndarray, right: np.ndarray, bins: int = 15) -> float:
    """The mean gap between confidence and accuracy over equal-width confidence bins,
    weighted by the share of predictions in each (0: perfectly calibrated)."""
    confidence = np.asarray(confidence, float)
    right = np.asarray(right, float)
    if not len(confidence):
        return 0.0
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
    return float(error)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log likelihood of ``labels`` (class
    indices) under ``probabilities`` (n, classes) scaled by it; searched within 0.08..12."""
    logs = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-30, None))
    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        scaled = logs / np.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))

    return float(np.exp(minimize_scalar(nll, bounds=(-2.5, 2.5), method="bounded").x))


def calibration_report(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """The fitted temperature with the calibration error of the top probability before and
    after, for the model header."""
    temperature = fit_temperature(probabilities, labels)
    after = calibrated(probabilities, temperature)
    return {
        "temperature": round(temperature, 4),
        "crops": len(labels),
        "ece_before": round(expected_calibration_error(
            probabilities.max(axis=1), probabilities.argmax(axis=1) == labels), 4),
        "ece_after": round(expected_calibration_error(
            after.max(axis=1), after.argmax(axis=1) == labels), 4),
    }  # fmt: skip
