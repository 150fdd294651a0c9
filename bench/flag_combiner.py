"""Would a flag learned from all of a cell's signals catch more errors than the cell's doubt?

    python bench/flag_combiner.py [--checkpoint CKPT] [--split val] [--limit 0]
        [--labs gband612=../shared/data/gband612 cil24=../shared/data/cil24]
        [--scores 0.03 0.05 0.08 0.1 0.15 0.2] [--folds 5] [--json OUT]

Issue 27 asks the flags to use what the cell tells beyond one crop's probability. The shipped
rule already reads the cell (its doubt weighs the runner-up karyotypes); this asks whether a
model fitted on every signal at hand does better. The labelled cells of each lab are
classified and assigned as the app does (the model file's temperature; the cells whose labels
look shifted left out, as ``flag_quality.py --without-suspect``), and each chromosome given a
type 1-22, X or Y becomes a row: the cell's doubt (and its log), the assigned type's
probability, the top probability, the entropy, the homolog gap (cosine to the most alike
chromosome of another type minus that to the most alike homolog), the size against the
assigned type's expected size (the ideogram's relative length), touching another (it has
other cuts) and the sex flag; wrong or right after the assignment is the target. A logistic
regression and gradient-boosted trees (scikit-learn) are fitted on the labs pooled and scored
by cross-validation grouped by cell (no cell is scored by a model that saw it). For each
score threshold, per lab: flag recall (share of wrong chromosomes flagged) and flags per
fully correct cell (median / 90th percentile / maximum), against the doubt alone at the same
thresholds and the shipped rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from flag_quality import _read_lab, add_lab_arguments  # the bench's own: a lab's cells
from size_check import given, log_sizes
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from karyo_gui.core.assignment import homolog_gaps
from karyo_gui.core.case import TYPE_FLAGS, Flag
from karyo_gui.core.ideogram import ideogram
from karyo_gui.core.labels import N_TYPES, ChromosomeType
from karyo_gui.inference.classifier import Classifier

FEATURES = ["doubt", "log doubt", "log p assigned", "top p", "entropy", "homolog gap",
            "size z", "touching", "sex flag"]  # fmt: skip
_LOG_LENGTH = np.log([ideogram(ChromosomeType(t)).relative_length for t in range(N_TYPES)])


def flag_rates(cell_of: np.ndarray, wrong: np.ndarray, flagged: np.ndarray) -> dict:
    """Flag recall and type flags per fully correct cell (median / p90 / max)."""
    correct = [flagged[cell_of == c].sum() for c in np.unique(cell_of)
               if not wrong[cell_of == c].any()]
    per_cell = np.asarray(correct or [0])
    return {"wrong": int(wrong.sum()),
            "flag_recall": float((flagged & wrong).sum() / max(wrong.sum(), 1)),
            "correct_cells": len(correct),
            "flags_per_correct_cell": [float(np.median(per_cell)),
                                       float(np.percentile(per_cell, 90)), int(per_cell.max())]}


def cell_gaps(cell) -> np.ndarray:
    """:func:`homolog_gaps` of each of the cell's chromosomes (0 where it cannot be judged)."""
    embeddings = [c.embedding for c in cell.chromosomes]
    width = next((len(e) for e in embeddings if e is not None), 1)
    stacked = np.stack([np.full(width, np.nan) if e is None or c.assigned is None else e
                        for e, c in zip(embeddings, cell.chromosomes)])  # fmt: skip
    types = [-1 if c.assigned is None else c.assigned.value for c in cell.chromosomes]
    return np.nan_to_num(homolog_gaps(types, stacked), nan=0.0)


def cell_rows(classifier, cell, prediction) -> list[tuple[list[float], bool, bool, float]]:
    """(features, wrong, flagged by the shipped rule, doubt) per chromosome given a type."""
    result = classifier.assign(cell, prediction)
    if result.assignment is None:
        return []
    doubts = dict(zip((cell.chromosomes[k].id for k in prediction.pictured),
                      result.assignment.doubts))  # fmt: skip
    sizes = log_sizes(cell)
    assigned = [c.assigned.value if c.assigned is not None else -1 for c in cell.chromosomes]
    typed = [t for t in assigned if 0 <= t < N_TYPES]
    expected_median = float(np.median(_LOG_LENGTH[typed])) if typed else 0.0
    gaps = cell_gaps(cell)
    rows = []
    for chromosome, size, at, gap in zip(cell.chromosomes, sizes, assigned, gaps):
        if given(chromosome) < 0 or not 0 <= at < N_TYPES or chromosome.probabilities is None:
            continue
        p = np.clip(chromosome.probabilities.astype(np.float64), 1e-9, 1.0)
        doubt = float(doubts.get(chromosome.id, 0.0))
        size_z = abs(size - (_LOG_LENGTH[at] - expected_median)) if size is not None else 0.0
        features = [doubt, np.log(doubt + 1e-4), np.log(p[at]), p.max(),
                    float(-(p * np.log(p)).sum()), gap, size_z, float(bool(chromosome.other_cuts)),
                    float(Flag.SEX_UNCERTAIN in chromosome.flags)]
        rows.append((features, chromosome.assigned != chromosome.given,
                     bool(chromosome.flags & TYPE_FLAGS), doubt))
    return rows


def cross_validated(model, features, wrong, groups, folds: int) -> np.ndarray:
    """Each row's score from a model fitted on the other cells."""
    scores = np.zeros(len(wrong))
    for fit, held in GroupKFold(folds).split(features, wrong, groups):
        scores[held] = model.fit(features[fit], wrong[fit]).predict_proba(features[held])[:, 1]
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_lab_arguments(parser, limit=0)
    parser.add_argument("--scores", type=float, nargs="+",
                        default=[0.03, 0.05, 0.08, 0.1, 0.15, 0.2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    args.without_suspect = True  # for _read_lab: label errors are not the model's
    classifier = Classifier(args.checkpoint, device="cpu")
    print(f"{classifier.description} on {args.split}")
    rows, lab_of, cell_of, labs = [], [], [], []
    cells_read = 0  # one number per cell, across the labs
    for lab in args.labs:
        name, _, root = lab.partition("=")
        labs.append(name)
        cells, raw, _, _ = _read_lab(classifier, name, Path(root), args)
        for cell, prediction in zip(cells, raw):
            mine = cell_rows(classifier, cell, prediction)
            rows += mine
            lab_of += [len(labs) - 1] * len(mine)
            cell_of += [cells_read] * len(mine)
            cells_read += 1
    features, wrong, shipped, doubt = (np.asarray(column) for column in zip(*rows))
    wrong, shipped, lab_of, cell_of = (wrong.astype(bool), shipped.astype(bool),
                                       np.asarray(lab_of), np.asarray(cell_of))  # fmt: skip
    models = {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "boosted trees": HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05,
                                                        max_leaf_nodes=15),
    }
    scores = {"doubt alone": doubt}
    if 0 < wrong.sum() < len(wrong) and len(np.unique(cell_of)) >= args.folds:
        scores.update({what: cross_validated(model, features, wrong, cell_of, args.folds)
                       for what, model in models.items()})  # fmt: skip
    else:
        print(f"too few cells ({len(np.unique(cell_of))}) or errors ({wrong.sum()}) to fit "
              f"a flag in {args.folds} folds: the doubt alone is measured")
    report = {"model": classifier.description, "split": args.split, "features": FEATURES,
              "labs": {}}
    for k, name in enumerate(labs):
        mine = lab_of == k
        rows = [{"rule": "shipped", **flag_rates(cell_of[mine], wrong[mine], shipped[mine])}]
        for what, score in scores.items():
            rows += [{"rule": f"{what} > {t:g}",
                      **flag_rates(cell_of[mine], wrong[mine], score[mine] > t)}
                     for t in args.scores]  # fmt: skip
        report["labs"][name] = rows
        print(f"\n{name}: {mine.sum()} chromosomes, {wrong[mine].sum()} wrong")
        print(f"{'rule':>22} {'recall':>7} {'ok cells':>8} {'flags med/p90/max':>18}")
        for row in rows:
            median, p90, most = row["flags_per_correct_cell"]
            print(f"{row['rule']:>22} {row['flag_recall']:7.3f} {row['correct_cells']:8d} "
                  f"{f'{median:g}/{p90:g}/{most}':>18}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
