"""How many of the finder's misses does one double-click of the Add tool bring back?

    python bench/metaphase_add.py [--data ../shared/data/cil24] [--split val] [--limit 40]
        [--finder F] [--threads 2]

For each annotated metaphase the shipped finder finds the chromosomes as the app does; every
annotated chromosome it misses (no found box at IoU >= 0.5, one-to-one) gets one double-click
of the Add tool (``core.metaphase_edits.add_chromosome_at``) where a reviewer would aim: the
point of its box farthest inside the dark pixels no found chromosome holds. Printed: how
many misses come back with a box at IoU >= 0.5 against the annotation, come back as a
fragment (IoU < 0.5; the new chromosome's tight box widened by 3 px, as annotators draw
their boxes), are refused (and why), or lie wholly under found chromosomes' pixels
(a merged object: the Split tool's case, not Add's).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch

from karyo_gui.core.annotations import load_annotated_folder
from karyo_gui.core.case import Cell
from karyo_gui.core.metaphase import box_iou_matrix, foreground_mask, match_boxes, read_metaphase
from karyo_gui.core.metaphase_edits import EditError, add_chromosome_at
from karyo_gui.inference.finder import ChromosomeFinder, chromosomes_from

PAD = 3  # pixels: annotated boxes against a region's tight box (median IoU 0.68 -> 0.87)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cil24")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=40, help="first N metaphases (0: all)")
    parser.add_argument("--finder")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names_file = Path(args.data) / "splits" / f"{args.split}.txt"
    names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()]
    metaphases, _ = load_annotated_folder(args.data, names[: args.limit or None])
    finder = ChromosomeFinder(args.finder, "cpu")
    outcomes: Counter[str] = Counter()
    ious: list[float] = []
    annotated = 0
    for metaphase in metaphases:
        image = read_metaphase(metaphase.image_path)
        found = finder.find(image)
        cell = Cell(name=metaphase.name, metaphase=image,
                    chromosomes=chromosomes_from(image, found.found))  # fmt: skip
        truth = np.array([c.box for c in metaphase.chromosomes], float).reshape(-1, 4)
        truth *= image.scale
        boxes = np.array([item.box for item in found.found], float).reshape(-1, 4)
        matched = {t for _, t in match_boxes(boxes, truth)}
        annotated += len(truth)
        claimed = np.zeros(image.pixels.shape, bool)
        for chromosome in cell.chromosomes:
            claimed |= chromosome.region.full_mask(image.pixels.shape)
        free = foreground_mask(image.pixels, found.width) & ~claimed
        for index, box in enumerate(truth):
            if index in matched:
                continue
            x0, y0, x1, y1 = (int(v) for v in box)
            inside = free[y0:y1, x0:x1]
            if not inside.any():
                outcomes["under found chromosomes' pixels (split instead)"] += 1
                continue
            depth = cv2.distanceTransform(np.pad(inside, 1).astype(np.uint8), cv2.DIST_L2,
                                          5)[1:-1, 1:-1]  # fmt: skip
            y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
            try:
                edit = add_chromosome_at(cell, (x0 + x + 0.5, y0 + y + 0.5), by="bench")
            except EditError as error:
                outcomes[f"refused: {str(error).split(':')[0]}"] += 1
                continue
            # the annotators' boxes run a few pixels wider than the chromosome: the new
            # one's tight box is widened by PAD on each side before it is compared
            x0, y0, x1, y1 = edit.added[-1].region.box
            widened = np.array([[x0 - PAD, y0 - PAD, x1 + PAD, y1 + PAD]], float)
            iou = box_iou_matrix(widened, box[None])[0, 0]
            outcomes["back, box IoU >= 0.5" if iou >= 0.5 else "back as a fragment"] += 1
            ious.append(iou)
    missed = sum(outcomes.values())
    print(f"{len(metaphases)} metaphases of {args.split}, {annotated} annotated chromosomes, "
          f"{missed} missed by the finder ({finder.description})")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome}: {count} ({count / max(missed, 1):.1%})")
    if ious:
        print("  box IoU of those added, quartiles: "
              + " / ".join(f"{q:.2f}" for q in np.percentile(ious, [25, 50, 75])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
