"""Evaluation reports cells whose hand labels look shifted or swapped by one type, and
judges the abnormal cells apart from the normal ones."""

import numpy as np

from trainer import evaluation
from trainer.data import CropSet
from trainer.evaluation import cell_metrics, evaluate_crops, suspect_labels
from trainer.preprocessing import Preprocessing

NORMAL_XY = np.concatenate([np.repeat(np.arange(22), 2), [22, 23]])  # 46,XY as type indices


def confident(types, p=0.95):
    """Probabilities of a model that reads each crop as ``types`` with probability p."""
    probabilities = np.full((len(types), 24), (1 - p) / 23)
    probabilities[np.arange(len(types)), types] = p
    return probabilities


def cells():
    """Three 46,XY cells as the model reads them, and their hand labels."""
    read = np.concatenate([NORMAL_XY] * 3)
    labels = read.copy()
    cell_of = np.repeat([0, 1, 2], 46)
    probabilities = confident(read)
    # cell 0: a hard cell, three chromosomes confidently taken for their neighbour
    labels[[8, 30, 45]] = [5, 16, 22]  # a 5 read as 4, a 16 as 15, a Y as X
    # cell 1: the folders of types 15-18 numbered one off, so each is labelled one higher
    shifted = 46 + np.flatnonzero((NORMAL_XY >= 14) & (NORMAL_XY <= 17))
    labels[shifted] += 1
    # cell 2: five neighbour mistakes, but the model is unsure of every one
    unsure = 92 + np.array([2, 10, 20, 30, 40])
    labels[unsure] += 1
    probabilities[unsure] = confident(read[unsure], p=0.55)
    return labels, cell_of, ["hard", "shifted", "unsure"], probabilities


def test_only_the_cell_with_a_run_of_confident_neighbour_readings_is_suspect():
    labels, cell_of, names, probabilities = cells()
    suspect = suspect_labels(labels, cell_of, names, probabilities)
    assert [c["cell"] for c in suspect] == ["shifted"]
    assert suspect[0]["crops"] == 46
    readings = suspect[0]["read_as_neighbour"]
    assert readings[:3] == ["16 read as 15", "16 read as 15", "17 read as 16"]
    assert len(readings) == 8


def test_evaluation_reports_suspect_cells_beside_the_plain_accuracy(monkeypatch):
    labels, cell_of, names, probabilities = cells()
    prep = Preprocessing(height=32, width=16)
    crops = CropSet(np.zeros((len(labels), 32, 16), np.uint8), labels, cell_of, names)
    given = evaluation.Predictions(probabilities, np.zeros((len(labels), 4)), 1.0)
    monkeypatch.setattr(evaluation, "predict", lambda *args, **kwargs: given)

    metrics, _ = evaluate_crops(None, crops, prep, device=None)

    assert [c["cell"] for c in metrics["cells_labels_suspect"]] == ["shifted"]
    right = probabilities.argmax(axis=1) == labels
    assert metrics["crop_accuracy"] == right.mean()  # the headline figure counts every cell
    assert metrics["crop_accuracy_without_suspect_cells"] == right[cell_of != 1].mean()


def test_the_abnormal_cells_are_judged_apart_from_the_normal_ones():
    """A 46,XY read right, a 47,XY,+21 read right, and a 47,XY,+21 whose third 21 is read
    as a 22: ISCN exact 2 of 3, the normal cells 1 of 1, the others 1 of 2."""
    trisomy = np.sort(np.concatenate([NORMAL_XY, [20]]))  # a third 21 (class index 20)
    misread = trisomy.copy()
    misread[np.flatnonzero(trisomy == 20)[2]] = 21  # read as a 22
    labels = np.concatenate([NORMAL_XY, trisomy, trisomy])
    probabilities = confident(np.concatenate([NORMAL_XY, trisomy, misread]))
    cell_of = np.repeat([0, 1, 2], [46, 47, 47])
    metrics = cell_metrics(labels, cell_of, ["normal", "trisomy", "misread"], probabilities)
    assert metrics["iscn_exact"] == 2 / 3
    assert (metrics["iscn_exact_normal"], metrics["n_cells_normal"]) == (1.0, 1)
    assert (metrics["iscn_exact_other"], metrics["n_cells_other"]) == (0.5, 2)
