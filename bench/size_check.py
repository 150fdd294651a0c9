"""Would a chromosome's size against its type's expected size catch the errors the flags miss?

    python bench/size_check.py [--checkpoint CKPT] [--train-limit 150] [--limit 0]
        [--labs gband612=../shared/data/gband612 cil24=../shared/data/cil24] [--z 2 2.5 3 3.5]

Issue 27 asks to use "length against the type's expected length" beside the cell's doubt and
the homolog check. This measures it before building it: a chromosome's size is the area of
its largest dark part (Otsu) relative to its cell's median (so it reads alike whatever the
crop's angle or the cell's condensation); each type's mean and spread of the log of that
are learned from the given types of the lab's training cells; on the val cells, after the
app's own classification and assignment, a chromosome whose size lies more than Z spreads
from its assigned type's mean would also be flagged. Printed per lab and Z: the flag recall
with it (the share of wrongly assigned chromosomes flagged), the errors it adds, the flags it
adds on right chromosomes, and the type flags per fully correct cell (median / 90th
percentile) without and with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from new_lab_curve import lab_cells, split_names  # the bench's own: a lab's labelled cells

from karyo_gui.core.case import TYPE_FLAGS
from karyo_gui.core.labels import N_TYPES
from karyo_gui.inference.classifier import Classifier


def log_sizes(cell) -> list[float | None]:
    """log(area / the cell's median area) per chromosome (None: no image or nothing dark)."""
    areas = []
    for chromosome in cell.chromosomes:
        area = np.nan
        if chromosome.image is not None:
            _, dark = cv2.threshold(chromosome.image, 0, 255,
                                    cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)  # fmt: skip
            count, _, stats, _ = cv2.connectedComponentsWithStats(dark)
            if count > 1:
                area = float(stats[1:, cv2.CC_STAT_AREA].max())
        areas.append(area)
    median = np.nanmedian(areas) if np.isfinite(areas).any() else np.nan
    return [float(np.log(a / median)) if np.isfinite(a) and median > 0 else None for a in areas]


def given(chromosome) -> int:
    value = chromosome.given
    return -1 if value is None or value.value >= N_TYPES else value.value


def type_sizes(cells) -> dict[int, tuple[float, float]]:
    by_type: dict[int, list[float]] = {}
    for cell in cells:
        for chromosome, size in zip(cell.chromosomes, log_sizes(cell)):
            if given(chromosome) >= 0 and size is not None:
                by_type.setdefault(given(chromosome), []).append(size)
    return {t: (float(np.mean(v)), float(np.std(v)) or 1.0) for t, v in by_type.items()
            if len(v) >= 5}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--labs", nargs="+", default=[
        "gband612=../shared/data/gband612", "cil24=../shared/data/cil24"])
    parser.add_argument("--train-limit", type=int, default=150, help="training cells per lab")
    parser.add_argument("--limit", type=int, default=0, help="val cells per lab (0: all)")
    parser.add_argument("--z", type=float, nargs="+", default=[2.0, 2.5, 3.0, 3.5])
    args = parser.parse_args(argv)
    classifier = Classifier(args.checkpoint, device="cpu")
    print(classifier.description)
    for lab in args.labs:
        name, _, root = lab.partition("=")
        root = Path(root)
        sizes = type_sizes(lab_cells(root, split_names(root, "train", args.train_limit)))
        rows = []  # (cell, right, flagged, z of the size under the assigned type)
        for cell in lab_cells(root, split_names(root, "val", args.limit or None)):
            classifier.classify(cell)
            for chromosome, size in zip(cell.chromosomes, log_sizes(cell)):
                if given(chromosome) < 0 or chromosome.assigned is None or size is None:
                    continue
                assigned = chromosome.assigned.value
                if assigned not in sizes:
                    continue
                mean, spread = sizes[assigned]
                rows.append((cell.name, assigned == given(chromosome),
                             bool(chromosome.flags & TYPE_FLAGS), abs(size - mean) / spread))
        cells = np.array([r[0] for r in rows])
        right = np.array([r[1] for r in rows])
        flagged = np.array([r[2] for r in rows])
        z = np.array([r[3] for r in rows])
        wrong = ~right
        correct_cells = [c for c in np.unique(cells) if right[cells == c].all()]

        def per_cell(flags, cells=cells, correct_cells=correct_cells):
            counts = [int(flags[cells == c].sum()) for c in correct_cells]
            return f"{np.median(counts):g}/{np.percentile(counts, 90):.1f}"

        print(f"\n{name}: {len(rows)} chromosomes, {int(wrong.sum())} wrongly assigned, flag "
              f"recall {flagged[wrong].mean():.3f}, {len(correct_cells)} fully correct cells "
              f"with {per_cell(flagged)} type flags (median/p90); unflagged errors' |z| median "
              f"{np.median(z[wrong & ~flagged]):.2f}, right chromosomes' |z| p90 "
              f"{np.percentile(z[right], 90):.2f}")  # fmt: skip
        print(f"{'Z':>5} {'recall':>7} {'errors added':>13} {'right flagged':>14} "
              f"{'per correct cell':>17}")
        for limit in args.z:
            with_size = flagged | (z > limit)
            print(f"{limit:5g} {with_size[wrong].mean():7.3f} "
                  f"{int((with_size & ~flagged & wrong).sum()):13d} "
                  f"{int((with_size & ~flagged & right).sum()):14d} {per_cell(with_size):>17}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
