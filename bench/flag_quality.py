"""What the review flags mean: how many wrong types they catch, how often they cry wolf.

    python bench/flag_quality.py [--checkpoint CKPT] [--split val] [--limit 100]
        [--labs gband612=../shared/data/gband612 cil24=../shared/data/cil24]
        [--doubts 0.02 0.05 0.1 0.2 0.3] [--calibrate] [--temperature T]
        [--without-suspect] [--json OUT]

Classifies the labelled cells of each lab once, then for each rule counts
- flag recall: the share of wrongly assigned chromosomes that carry a type flag
  (``low_confidence`` "type unsure", ``homolog_unlike`` or ``sex_uncertain``),
- type flags per fully correct cell (every chromosome assigned its given type): median,
  90th percentile and maximum,
- orientation flags per cell (shown apart, not counted as type flags),
- the assigned accuracy (calibration must not cost any) and the expected calibration error
  (ECE, 15 bins) of the highest probability and of the assigned type's confidence
  (1 - doubt) against being right.
Rules: ``old`` is the rule before issue 27 (top-two margin < 0.2, or moved by the
assignment); ``P/H`` flags a type wrong with a probability above P, the probability read
from the whole cell, and a chromosome H more like one of another type than like its
homologs (karyo_gui.core.assignment TYPE_DOUBT and HOMOLOG_UNLIKE are the shipped ones).
``--calibrate`` fits one temperature on the crops of all the labs (choose on val) and
prints it; ``--temperature T`` measures under a given one (e.g. on test, the one fitted on
val); the model file's own temperature is always measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from new_lab_curve import lab_cells, split_names  # the bench's own: a lab's labelled cells

from karyo_gui.core.assignment import HOMOLOG_UNLIKE, TYPE_DOUBT, calibrated
from karyo_gui.core.case import TYPE_FLAGS, Flag
from karyo_gui.core.labels import N_TYPES
from karyo_gui.inference.classifier import CellPrediction, Classifier
from trainer.calibration import expected_calibration_error, fit_temperature
from trainer.evaluation import suspect_labels


def _given(chromosome) -> int:
    """The given type's class index, -1 when none (or "unclassified") was given."""
    given = chromosome.given
    return -1 if given is None or given.value >= N_TYPES else given.value


def measure(classifier, cells, predictions, rule) -> dict:
    """Run the assignment of every cell under ``rule`` and count what its flags catch."""
    kind, value, homolog = rule
    classifier.homolog_margin = homolog
    wrong = flagged_wrong = chromosomes = right = 0
    flags_per_correct_cell, orientation_per_cell = [], []
    confidence, correct = [], []
    for cell, prediction in zip(cells, predictions):
        result = classifier.assign(cell, prediction)
        if result.assignment is None:
            continue
        doubts = dict(zip((cell.chromosomes[k].id for k in prediction.pictured),
                          result.assignment.doubts))  # fmt: skip
        flags_in_cell, all_right = 0, True
        for chromosome in cell.chromosomes:
            if _given(chromosome) < 0 or chromosome.assigned is None:
                continue
            chromosomes += 1
            is_right = chromosome.assigned == chromosome.given
            right += is_right
            confidence.append(1 - doubts.get(chromosome.id, 0.0))
            correct.append(is_right)
            if kind == "old":
                p = chromosome.probabilities
                at = chromosome.assigned.value
                margin = p[at] - np.max(np.delete(p, at))
                type_flag = margin < 0.2 or Flag.MOVED_BY_ASSIGNMENT in chromosome.flags
                type_flag = type_flag or Flag.SEX_UNCERTAIN in chromosome.flags
            else:
                type_flag = bool(chromosome.flags & TYPE_FLAGS)
            flags_in_cell += type_flag
            if not is_right:
                all_right = False
                wrong += 1
                flagged_wrong += type_flag
        if all_right:
            flags_per_correct_cell.append(flags_in_cell)
        orientation_per_cell.append(
            sum(Flag.ORIENTATION_UNSURE in c.flags for c in cell.chromosomes))
    per_cell = np.asarray(flags_per_correct_cell or [0])
    return {
        "rule": kind if kind == "old" else f"{value:g}/{homolog:g}",
        "chromosomes": chromosomes,
        "assigned_accuracy": right / max(chromosomes, 1),
        "wrong": wrong,
        "flag_recall": flagged_wrong / max(wrong, 1),
        "correct_cells": len(flags_per_correct_cell),
        "flags_per_correct_cell_median": float(np.median(per_cell)),
        "flags_per_correct_cell_p90": float(np.percentile(per_cell, 90)),
        "flags_per_correct_cell_max": int(per_cell.max()),
        "orientation_flags_per_cell_median": float(np.median(orientation_per_cell or [0])),
        "ece_assigned": expected_calibration_error(np.asarray(confidence), np.asarray(correct)),
    }


def _read_lab(classifier, name: str, root: Path, args):
    """A lab's labelled cells, the model's first look at each, their crops' probabilities
    and given types (-1: none); cells whose labels look shifted left out if asked."""
    cells = lab_cells(root, split_names(root, args.split, args.limit or None))
    raw = [classifier.predict_cell(cell) for cell in cells]
    probabilities = np.concatenate([p.probabilities for p in raw])
    labels = np.asarray([_given(cell.chromosomes[k]) for cell, p in zip(cells, raw)
                         for k in p.pictured])  # fmt: skip
    cell_of = np.repeat(np.arange(len(cells)), [len(p.pictured) for p in raw])
    suspect = suspect_labels(np.maximum(labels, 0), cell_of, [c.name for c in cells],
                             probabilities)  # fmt: skip
    print(f"{name}: cells whose labels look shifted or swapped (karyo evaluate's "
          f"suspect_labels): {', '.join(s['cell'] for s in suspect) or 'none'}"
          f"{' (left out)' if args.without_suspect and suspect else ''}")
    if args.without_suspect and suspect:
        names = {s["cell"] for s in suspect}
        keep = [k for k, cell in enumerate(cells) if cell.name not in names]
        rows = np.isin(cell_of, keep)
        cells, raw = [cells[k] for k in keep], [raw[k] for k in keep]
        probabilities, labels = probabilities[rows], labels[rows]
    return cells, raw, probabilities, labels


def add_lab_arguments(parser: argparse.ArgumentParser, limit: int) -> None:
    """The options of the benches that classify the labelled cells of labs: model, labs,
    split, cells per lab."""
    parser.add_argument("--checkpoint")
    parser.add_argument("--labs", nargs="+", default=[
        "gband612=../shared/data/gband612", "cil24=../shared/data/cil24"])
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=limit, help="cells per lab (0: all)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_lab_arguments(parser, limit=100)
    parser.add_argument("--doubts", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--homolog", type=float, nargs="+", default=[HOMOLOG_UNLIKE, 9.0],
                        help="homolog-unlike margins to try (9: never flags)")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--without-suspect", action="store_true",
                        help="leave out the cells whose labels look shifted (they are named)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    classifier = Classifier(args.checkpoint, device="cpu")
    shipped_t = classifier.temperature
    classifier.temperature = 1.0  # the network's own probabilities; calibrated below
    report = {"model": classifier.description, "split": args.split, "labs": {}}
    print(f"{classifier.description} on {args.split}; the model file's temperature {shipped_t:g}")
    read = {}
    for lab in args.labs:
        name, _, root = lab.partition("=")
        started = time.perf_counter()
        read[name] = _read_lab(classifier, name, Path(root), args)
        print(f"{name}: {len(read[name][0])} cells, {len(read[name][3])} crops "
              f"({time.perf_counter() - started:.0f} s to read and classify)")
    temperatures = {"uncalibrated": 1.0}
    if shipped_t != 1.0:
        temperatures["model file"] = shipped_t
    if args.calibrate:  # one temperature for the model, fitted on every lab's crops
        pooled = [(probabilities[labels >= 0], labels[labels >= 0])
                  for _, _, probabilities, labels in read.values()]  # fmt: skip
        temperatures["fitted on these"] = fit_temperature(
            np.concatenate([p for p, _ in pooled]), np.concatenate([lab for _, lab in pooled]))
        print(f"temperature fitted on the crops of {', '.join(read)}: "
              f"{temperatures['fitted on these']:.4f}")
    if args.temperature:
        temperatures["given"] = args.temperature
    for name, (cells, raw, probabilities, labels) in read.items():
        typed = labels >= 0  # crops given a type 1-22, X, Y (not "unclassified")
        lab_report = {"cells": len(cells), "crops": len(labels), "rows": []}
        print(f"\n{name}:")
        print(f"{'temperature':>22} {'doubt/homolog':>13} {'assigned':>9} {'wrong':>6} "
              f"{'recall':>7} {'ok cells':>8} {'flags med/p90/max':>18} {'orient med':>10} "
              f"{'ECE top':>8} {'ECE 1-doubt':>11}")  # fmt: skip
        for what, temperature in temperatures.items():
            scaled = calibrated(probabilities, temperature)
            ece_top = expected_calibration_error(scaled[typed].max(axis=1),
                                                 scaled[typed].argmax(axis=1) == labels[typed])
            offsets = np.cumsum([0] + [len(p.pictured) for p in raw])
            predictions = [CellPrediction(p.pictured, scaled[a:b], p.upside_down, p.embeddings)
                           for p, a, b in zip(raw, offsets[:-1], offsets[1:])]  # fmt: skip
            for rule in [("old", None, 9.0)] + [("doubt", d, h) for d in args.doubts
                                                for h in args.homolog]:
                classifier.doubt = TYPE_DOUBT if rule[1] is None else rule[1]
                row = measure(classifier, cells, predictions, rule)
                row.update(temperature=temperature, temperature_from=what, ece_top=ece_top)
                lab_report["rows"].append(row)
                flags = (f"{row['flags_per_correct_cell_median']:g}/"
                         f"{row['flags_per_correct_cell_p90']:g}/{row['flags_per_correct_cell_max']}")
                print(f"{what + f' {temperature:.3f}':>22} {row['rule']:>13} "
                      f"{row['assigned_accuracy']:9.4f} {row['wrong']:6d} "
                      f"{row['flag_recall']:7.3f} "
                      f"{row['correct_cells']:8d} {flags:>18} "
                      f"{row['orientation_flags_per_cell_median']:10g} {ece_top:8.4f} "
                      f"{row['ece_assigned']:11.4f}")  # fmt: skip
        report["labs"][name] = lab_report
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
