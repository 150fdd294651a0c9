"""Evaluation of a model on labelled crops: metrics, per-type table and plots."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from karyo_gui.core.assignment import KaryotypePrior, assign_types, karyotype_of
from karyo_gui.core.iscn import NORMAL_KARYOTYPES
from karyo_gui.core.labels import N_TYPES
from trainer.batches import normalise
from trainer.checkpoint import CLASS_NAMES
from trainer.config import SECOND_LOOK_MARGIN
from trainer.data import CropSet
from trainer.devices import autocast
from trainer.looking import Predictions, read_together, with_second_look
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing


@torch.inference_mode()
def predict(
    net: ChromosomeNet,
    canvases: np.ndarray,
    preprocessing: Preprocessing,
    device: torch.device,
    batch_size: int = 256,
    second_look: float = SECOND_LOOK_MARGIN,
) -> Predictions:
    """Probabilities and embeddings of prepared uint8 canvases (n, h, w).

    A cytogeneticist unsure of a chromosome turns it round; the model does the same: each
    crop whose top-two probability margin is below ``second_look`` is classified again
    flipped top to bottom (the model was trained on both orientations) and its
    probabilities become the mean of the two looks. ``second_look=0`` gives the single look.
    The embeddings are always those of the first look.
    """
    was_training = net.training
    net.eval()
    started = time.perf_counter()
    probabilities, embeddings, upside_down = with_second_look(
        lambda pictures: _look(net, pictures, preprocessing, device, batch_size),
        canvases, second_look,
    )  # fmt: skip
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    net.train(was_training)
    return Predictions(probabilities, embeddings, seconds, upside_down)


def _look(
    net: ChromosomeNet,
    canvases: np.ndarray,
    preprocessing: Preprocessing,
    device: torch.device,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    probabilities, embeddings, upside_down = [], [], []
    for start in range(0, len(canvases), batch_size):
        batch = torch.from_numpy(canvases[start : start + batch_size]).to(device)
        with autocast(device):
            output = net(normalise(batch, preprocessing))
        probabilities.append(torch.softmax(output.logits.float(), dim=1).cpu())
        embeddings.append(output.embedding.float().cpu())
        if output.upside_down is not None:
            upside_down.append(torch.sigmoid(output.upside_down.float()).cpu())
    orientation = torch.cat(upside_down).numpy() if upside_down else None
    if not probabilities:
        return np.zeros((0, N_TYPES), np.float32), np.zeros((0, 0), np.float32), orientation
    return torch.cat(probabilities).numpy(), torch.cat(embeddings).numpy(), orientation


def crop_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Top-1 accuracy, macro recall, macro one-vs-rest AUC and a per-type table."""
    from sklearn.metrics import confusion_matrix, recall_score, roc_auc_score  # a slow import

    predicted = probabilities.argmax(axis=1)
    present = np.unique(labels)
    metrics: dict = {
        "n_crops": len(labels),
        "crop_accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
        "macro_recall": float(
            recall_score(labels, predicted, labels=present, average="macro", zero_division=0)
        )
        if len(labels)
        else float("nan"),
    }
    try:
        # one-vs-rest over the types that occur; a type never seen has no ROC curve
        scores = probabilities[:, present]
        scores = scores / np.clip(scores.sum(axis=1, keepdims=True), 1e-12, None)
        metrics["macro_auc"] = float(
            roc_auc_score(labels, scores, labels=present, multi_class="ovr", average="macro")
            if len(present) > 2
            else float("nan")
        )
    except ValueError:
        metrics["macro_auc"] = float("nan")
    matrix = confusion_matrix(labels, predicted, labels=list(range(N_TYPES)))
    per_type = []
    for t in range(N_TYPES):
        support = int(matrix[t].sum())
        row = matrix[t].copy()
        row[t] = 0
        per_type.append(
            {
                "type": CLASS_NAMES[t],
                "support": support,
                "recall": float(matrix[t, t] / support) if support else None,
                "precision": float(matrix[t, t] / matrix[:, t].sum())
                if matrix[:, t].sum()
                else None,
                "most_confused_with": CLASS_NAMES[int(row.argmax())] if row.any() else None,
            }
        )
    metrics["per_type"] = per_type
    metrics["confusion_matrix"] = matrix.tolist()
    return metrics


def cell_metrics(
    labels: np.ndarray,
    cell_of: np.ndarray,
    cell_names: list[str],
    probabilities: np.ndarray,
    prior: KaryotypePrior | None = None,
) -> dict:
    """Accuracy after the karyotype-aware assignment of each cell, and whole-karyotype hits.

    ``assigned_accuracy``: crops whose assigned type is their label; ``iscn_exact``: cells
    whose ISCN string from the assigned types equals the one from the labels (the argmax
    alone gives ``argmax_iscn_exact``). ``cells`` lists every cell the two disagree on.
    ``iscn_exact_normal`` / ``iscn_exact_other``: the same over the cells labelled 46,XX or
    46,XY and over all others (aneuploid cells, and cells that lost a chromosome), counted in
    ``n_cells_normal`` / ``n_cells_other``: a rule that makes more normal cells exact by
    trusting the karyotype's prior more can cost the abnormal ones.
    """
    assigned = np.empty_like(labels)
    argmax_exact = 0
    exact, normal = np.zeros(len(cell_names), bool), np.zeros(len(cell_names), bool)
    wrong = []
    for index, name in enumerate(cell_names):
        rows = np.flatnonzero(cell_of == index)
        assignment = assign_types(probabilities[rows], prior)
        assigned[rows] = assignment.types
        truth = karyotype_of(labels[rows])
        argmax = karyotype_of(assignment.predicted)
        exact[index], normal[index] = assignment.karyotype == truth, truth in NORMAL_KARYOTYPES
        argmax_exact += argmax == truth
        if assignment.karyotype != truth or (assignment.types != labels[rows]).any():
            wrong.append(
                {
                    "cell": name,
                    "karyotype": truth,
                    "assigned": assignment.karyotype,
                    "argmax": argmax,
                    "wrong_crops": int((assignment.types != labels[rows]).sum()),
                }
            )
    n_cells = len(cell_names)

    def share(cells: np.ndarray) -> float:
        return float(exact[cells].mean()) if cells.any() else float("nan")

    return {
        "assigned_accuracy": float((assigned == labels).mean()) if len(labels) else float("nan"),
        "iscn_exact": share(np.ones(n_cells, bool)),
        "argmax_iscn_exact": argmax_exact / n_cells if n_cells else float("nan"),
        "iscn_exact_normal": share(normal),
        "iscn_exact_other": share(~normal),
        "n_cells_normal": int(normal.sum()),
        "n_cells_other": int((~normal).sum()),
        "cells_not_exact": wrong,
    }


def suspect_labels(
    labels: np.ndarray,
    cell_of: np.ndarray,
    cell_names: list[str],
    probabilities: np.ndarray,
    confident: float = 0.8,
    at_least: int = 4,
) -> list[dict]:
    """Cells whose labels look shifted or swapped by one type in the karyogram order.

    Hand labels go wrong in a typical way: a class folder numbered one off moves a run of
    types by one (18 filed as 19, 19 as 20, ...), or two neighbouring types trade places.
    A model rarely mistakes ``at_least`` chromosomes of one cell for their neighbouring type
    with ``confident`` probability; when it does, the labels are the likelier culprit. Such
    cells are reported (for a person to check), never dropped or relabelled.
    """
    predicted = probabilities.argmax(axis=1)
    neighbour = (np.abs(predicted - labels) == 1) & (probabilities.max(axis=1) >= confident)
    hits = np.bincount(cell_of[neighbour], minlength=len(cell_names))
    crops = np.bincount(cell_of, minlength=len(cell_names))
    return [
        {
            "cell": cell_names[index],
            "crops": int(crops[index]),
            "read_as_neighbour": [
                f"{CLASS_NAMES[labels[r]]} read as {CLASS_NAMES[predicted[r]]}"
                for r in np.flatnonzero((cell_of == index) & neighbour)
            ],
        }
        for index in np.flatnonzero(hits >= at_least)
    ]


def per_type_table(metrics: dict) -> str:
    """The per-type part of a report as aligned text."""
    lines = [f"{'type':>4} {'crops':>6} {'recall':>7} {'precision':>9}  most confused with"]
    for row in metrics["per_type"]:
        if not row["support"] and row["precision"] is None:
            continue
        recall = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        precision = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        lines.append(
            f"{row['type']:>4} {row['support']:>6} {recall:>7} {precision:>9}  "
            f"{row['most_confused_with'] or ''}"
        )
    return "\n".join(lines)


def plot_confusion(matrix: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    matrix = np.asarray(matrix, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    shown = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    figure, axes = plt.subplots(figsize=(9, 8), dpi=110)
    image = axes.imshow(shown, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(N_TYPES), CLASS_NAMES, fontsize=8)
    axes.set_yticks(range(N_TYPES), CLASS_NAMES, fontsize=8)
    axes.set_xlabel("predicted type")
    axes.set_ylabel("true type")
    axes.set_title(title)
    for i, j in zip(*np.nonzero(matrix)):
        if i != j:
            axes.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6, color="red")
    figure.colorbar(image, ax=axes, fraction=0.046, label="fraction of the true type")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_tsne(
    embeddings: np.ndarray, labels: np.ndarray, path: Path, title: str, seed: int = 0
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    if len(labels) > 3000:  # t-SNE is quadratic; a sample shows the structure as well
        keep = rng.choice(len(labels), 3000, replace=False)
        embeddings, labels = embeddings[keep], labels[keep]
    perplexity = float(min(30, max(2, len(labels) - 1) / 3))
    points = TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    )
    figure, axes = plt.subplots(figsize=(9, 8), dpi=110)
    # 24 distinguishable colours: tab20 plus four of Dark2
    palette = list(plt.get_cmap("tab20").colors) + list(plt.get_cmap("Dark2").colors[:4])
    for t in np.unique(labels):
        chosen = labels == t
        axes.scatter(*points[chosen].T, s=4, color=palette[t], label=CLASS_NAMES[t])
        centre = points[chosen].mean(axis=0)
        axes.text(*centre, CLASS_NAMES[t], fontsize=9, weight="bold")
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(markerscale=3, fontsize=7, ncol=2, loc="best")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def evaluate_crops(
    net: ChromosomeNet,
    crops: CropSet,
    preprocessing: Preprocessing,
    device: torch.device,
    batch_size: int = 256,
    second_look: float = SECOND_LOOK_MARGIN,
) -> tuple[dict, Predictions]:
    predictions = predict(net, crops.images, preprocessing, device, batch_size, second_look)
    if len(crops.other_of):  # each crop read together with its other cuts, as the app does
        others = predict(net, crops.other_images, preprocessing, device, batch_size, second_look)
        predictions.probabilities = read_together(
            predictions.probabilities, others.probabilities, crops.other_of
        )
        predictions.seconds += others.seconds
    metrics = crop_metrics(crops.labels, predictions.probabilities)
    metrics.update(
        cell_metrics(crops.labels, crops.cell_of, crops.cell_names, predictions.probabilities)
    )
    metrics["n_cells"] = len(crops.cell_names)
    suspect = suspect_labels(
        crops.labels, crops.cell_of, crops.cell_names, predictions.probabilities
    )
    metrics["cells_labels_suspect"] = suspect
    # the same accuracy over the cells whose labels do not look shifted (one more figure,
    # never instead of crop_accuracy: a suspect cell may be a hard cell, not a wrong label)
    named = {c["cell"] for c in suspect}
    kept = ~np.isin(crops.cell_of, [k for k, name in enumerate(crops.cell_names) if name in named])
    metrics["crop_accuracy_without_suspect_cells"] = (
        float((predictions.probabilities[kept].argmax(axis=1) == crops.labels[kept]).mean())
        if kept.any()
        else float("nan")
    )
    metrics["crops_per_second"] = (
        len(crops) / predictions.seconds if predictions.seconds > 0 else float("nan")
    )
    metrics["device"] = str(device)
    metrics["second_look"] = second_look
    return metrics, predictions
