"""The orientation head: whether a crop stands p-arm up or upside down.

Cytogeneticists read chromosomes p-arm up, and crops cut from a karyogram come that way up.
The network is trained on both orientations (vertical flips are part of the augmentation),
yet its embedding E still tells a crop from its upside-down copy. The head is a logistic
regression on E, fitted after training with everything else frozen: each training crop as
it is stored (label 0) and flipped top to bottom (label 1). Fitted this way it can never
change a classification, and any trained model can get one.

Training crops that do not agree on which way is up (a lab whose segmentation leaves them
either way up) give a head no better than chance: such a head is not kept, and the model
then makes no orientation guesses rather than wrong ones.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trainer.evaluation import predict
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing

MIN_ACCURACY = 0.75  # held-out accuracy below which a fitted head is not kept
# all of gband612's training crops: the longer a model trains with vertical flips, the less its
# E tells up from down, and the head needs every crop (stage 6: val 0.940 right from 6,000
# crops, 0.950 from 15,585)
MAX_CROPS = 20000
HELD_OUT = 0.2  # share of the crops kept back to measure the head


def fit_orientation(
    net: ChromosomeNet,
    canvases: np.ndarray,
    preprocessing: Preprocessing,
    device: torch.device,
    seed: int = 0,
) -> dict:
    """Fit ``net.orientation`` on prepared training canvases (n, h, w) as they stand.

    Returns what was measured: ``held_out_accuracy`` (crops kept back, both ways up),
    ``crops`` and ``kept``. When the head is not kept, ``net.orientation`` is None.
    """
    net.orientation = None
    chosen = np.random.default_rng(seed).permutation(len(canvases))[:MAX_CROPS]
    n_held = round(HELD_OUT * len(chosen))
    if len(chosen) - n_held < 10 or n_held < 2:
        return {"kept": False, "crops": len(chosen), "reason": "too few training crops"}
    upright = canvases[chosen]
    embeddings = np.concatenate(
        [
            predict(net, upright, preprocessing, device, second_look=0).embeddings,
            predict(net, np.ascontiguousarray(upright[:, ::-1]), preprocessing, device,
                    second_look=0).embeddings,
        ]
    )  # fmt: skip
    upside_down = np.repeat([0, 1], len(chosen))
    held = np.zeros(len(chosen), bool)
    held[:n_held] = True
    held = np.tile(held, 2)  # a crop and its flipped copy fall on the same side
    accuracy = _regression(embeddings[~held], upside_down[~held]).score(
        embeddings[held], upside_down[held]
    )
    report = {
        "held_out_accuracy": float(accuracy),
        "crops": len(chosen),
        "held_out_crops": int(n_held),
        "kept": bool(accuracy >= MIN_ACCURACY),
    }
    if not report["kept"]:
        report["reason"] = "the training crops do not agree on which way is up"
        return report
    head = _regression(embeddings, upside_down)
    scaler, regression = head[0], head[1]
    # the scaler folded into the linear layer: w.(e - mu)/sigma + b = (w/sigma).e + b'
    weight = regression.coef_[0] / scaler.scale_
    bias = regression.intercept_[0] - float(np.dot(weight, scaler.mean_))
    layer = torch.nn.Linear(len(weight), 1)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32)[None])
        layer.bias.fill_(float(bias))
    net.orientation = layer.to(next(net.parameters()).device)
    return report


def _regression(embeddings: np.ndarray, upside_down: np.ndarray):
    head = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return head.fit(embeddings, upside_down)
