"""Where the classifier's errors on another lab's metaphases come from: chromosomes that lie
alone against those that touch or cross another.

    python bench/touching_crops.py [--data ../shared/data/cil24] [--split val] [--limit 80]
        [--checkpoint M] [--threads 1] [--json OUT]

Each annotated metaphase is cut into crops from its boxes as the trainer and ``karyo
evaluate`` cut them (``core.annotations.annotated_cell``: each box's own dark pixels, its
neighbours whited out) and classified and assigned as the app does. Every chromosome is put in
one group by the largest IoU of its annotated box with another annotated box: *alone* (at most
0.02), *near* (0.02-0.1: boxes that just meet) and *touching or crossing* (above 0.1, as
``bench/finder_errors.py`` counts them). Printed per group: chromosomes, crop accuracy (the
model's first choice) and assigned accuracy (after the karyotype-aware assignment).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from new_lab_curve import split_metaphases  # the bench's own: a split's metaphases

from karyo_gui.core.annotations import annotated_cell
from karyo_gui.core.metaphase import MetaphaseReadError, box_iou_matrix
from karyo_gui.inference.classifier import Classifier

# (name, above, up to) the largest IoU with another annotated box
GROUPS = (("alone", -1.0, 0.02), ("near", 0.02, 0.1), ("touching or crossing", 0.1, 1.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cil24")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=80, help="the first N metaphases (0: all)")
    parser.add_argument("--checkpoint", help="classifier model file (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    metaphases = split_metaphases(args.data, args.split, args.limit or None)
    if metaphases is None:
        return 2
    classifier = Classifier(args.checkpoint, "cpu", quick_start=True)
    rows = []  # (largest IoU with another box, crop right, assigned right)
    for metaphase in metaphases:
        try:
            cell = annotated_cell(metaphase)
        except MetaphaseReadError as error:
            print(error, file=sys.stderr)
            continue
        truth = np.array([c.box for c in metaphase.chromosomes], float).reshape(-1, 4)
        among = box_iou_matrix(truth, truth)
        np.fill_diagonal(among, 0)
        classifier.classify(cell)
        for chromosome in cell.chromosomes:
            index = int(chromosome.id[1:]) - 1  # b001: the first annotated box
            rows.append((among[index].max() if len(truth) > 1 else 0.0,
                         chromosome.predicted == chromosome.given,
                         chromosome.assigned == chromosome.given))  # fmt: skip
    table = np.array(rows, float).reshape(-1, 3)
    figures = {"model_id": classifier.model_id, "split": args.split,
               "n_metaphases": len(metaphases), "groups": {}}  # fmt: skip
    print(f"{classifier.description} on {len(metaphases)} {args.split} metaphases")
    print(f"{'group':<24}{'chromosomes':>12}{'share':>8}{'crop':>8}{'assigned':>10}")
    for name, low, high in (*GROUPS, ("all", -1.0, 1.0)):
        chosen = (table[:, 0] > low) & (table[:, 0] <= high)
        count = int(chosen.sum())
        crop = float(table[chosen, 1].mean()) if count else float("nan")
        assigned = float(table[chosen, 2].mean()) if count else float("nan")
        figures["groups"][name] = {"n": count, "crop_accuracy": crop,
                                   "assigned_accuracy": assigned}  # fmt: skip
        share = count / max(len(table), 1)
        print(f"{name:<24}{count:>12}{share:>8.1%}{crop:>8.4f}{assigned:>10.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
