"""Where the chromosome finder's errors come from, to know what to train for next.

    python bench/finder_errors.py [--data ../shared/data/cil24] [--split val] [--limit 60]
        [--finder F] [--threads 2]

For each annotated metaphase the finder finds the chromosomes as the app does, and its boxes
are matched one-to-one to the annotated ones (box IoU >= 0.5, as ``karyo evaluate``). Every
annotated chromosome left unmatched (a miss) is put in one of:
- *box off*: a found box meets it at IoU 0.3-0.5 (found, but its box is too large or small:
  it took in part of a touching neighbour, or covers only part of it),
- *inside a merged object*: at least 70 % of it lies inside one found box (found as part of
  a larger object: the Split tool's case),
- *not found*: neither;
and every found object left unmatched (a false one) in one of: *merge* (it holds 70 % of two
or more annotated chromosomes), *box off* (IoU 0.3-0.5 with one), *part of one* (it meets an
annotated chromosome, less), *nothing annotated* (debris, a nucleus, a speck). Also printed:
the share of misses and of matched chromosomes whose box meets another annotated one at an
IoU above 0.1 (touching or crossing), the types missed most, the count error per metaphase
(found - annotated), and recall and precision of the heatmap peaks alone at a few score
thresholds (before duplicates, specks and masks are removed).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np
import torch
from new_lab_curve import split_metaphases  # the bench's own: a split's metaphases

from karyo_gui.core.metaphase import box_iou_matrix, match_boxes, read_metaphase
from karyo_gui.inference.finder import ChromosomeFinder
from trainer.finder import detect

THRESHOLDS = (0.2, 0.3, 0.35, 0.4, 0.5)
OFF = 0.3  # a box meeting an annotated one at IoU in [OFF, 0.5) is found but off
INSIDE = 0.7  # this share of an annotated box inside a found one: it is part of that object
NEAR = 0.1  # annotated boxes meeting at an IoU above this: touching or crossing chromosomes


def covered(iou: np.ndarray, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """The share of each inner box's area inside each outer box, from their IoU
    (``core.metaphase.box_iou_matrix(inner, outer)``): intersection = IoU (a + b) / (1 + IoU)."""
    area_inner = (inner[:, 2] - inner[:, 0]) * (inner[:, 3] - inner[:, 1])
    area_outer = (outer[:, 2] - outer[:, 0]) * (outer[:, 3] - outer[:, 1])
    shared = iou * (area_inner[:, None] + area_outer[None, :]) / (1 + iou)
    return shared / np.maximum(area_inner, 1e-9)[:, None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cil24")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=60, help="the first N metaphases (0: all)")
    parser.add_argument("--finder", help="finder model file (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    metaphases = split_metaphases(args.data, args.split, args.limit or None)
    if metaphases is None:
        return 2
    finder = ChromosomeFinder(args.finder, "cpu")

    missed, false, missed_types = Counter(), Counter(), Counter()
    touching = Counter()  # (matched or missed, touches another annotated box)
    count_error = Counter()
    peaks = {t: [0, 0] for t in THRESHOLDS}  # matched, found
    annotated = found_total = matched_total = 0
    for metaphase in metaphases:
        image = read_metaphase(metaphase.image_path)
        truth = np.array([c.box for c in metaphase.chromosomes], float).reshape(-1, 4)
        annotated += len(truth)
        raw, _, _ = detect(finder.net, image.pixels, finder.header, "cpu", min(THRESHOLDS))
        for threshold in THRESHOLDS:
            boxes = np.array([d.box for d in raw if d.score >= threshold], float).reshape(-1, 4)
            peaks[threshold][0] += len(match_boxes(boxes / image.scale, truth))
            peaks[threshold][1] += len(boxes)
        found = finder.find(image).found
        boxes = np.array([item.box for item in found], float).reshape(-1, 4) / image.scale
        found_total += len(boxes)
        count_error[len(boxes) - len(truth)] += 1
        matches = match_boxes(boxes, truth)
        matched_total += len(matches)
        hit_truth = {t for _, t in matches}
        hit_found = {f for f, _ in matches}
        iou = box_iou_matrix(boxes, truth)
        among = box_iou_matrix(truth, truth)
        np.fill_diagonal(among, 0)
        inside = covered(iou.T, truth, boxes)  # (annotated, found)
        for t in range(len(truth)):
            touches = bool(len(truth) > 1 and among[t].max() > NEAR)
            touching[(t in hit_truth, touches)] += 1
            if t in hit_truth:
                continue
            missed_types[metaphase.chromosomes[t].type.name] += 1
            best = iou[:, t].max() if len(boxes) else 0.0
            if best >= OFF:
                missed["box off (found, IoU 0.3-0.5)"] += 1
            elif inside.size and inside[t].max() >= INSIDE:
                missed["inside a merged object"] += 1
            else:
                missed["not found"] += 1
        holds = (inside >= INSIDE).sum(0)  # annotated chromosomes each found object holds
        for f in range(len(boxes)):
            if f in hit_found:
                continue
            best = iou[f].max() if len(truth) else 0.0
            if holds[f] >= 2:
                false["merge of two or more"] += 1
            elif best >= OFF:
                false["box off (IoU 0.3-0.5)"] += 1
            elif best > 0:
                false["part of one"] += 1
            else:
                false["nothing annotated (debris, nucleus, speck)"] += 1

    print(f"{len(metaphases)} metaphases of {args.split}, {annotated} annotated chromosomes, "
          f"{found_total} found ({finder.description})")
    print(f"recall {matched_total / max(annotated, 1):.4f}, "
          f"precision {matched_total / max(found_total, 1):.4f}")
    for title, counter in (("missed", missed), ("false", false)):
        total = sum(counter.values())
        print(f"{title}: {total}")
        for kind, count in counter.most_common():
            print(f"  {kind}: {count} ({count / max(total, 1):.1%})")
    for hit, word in ((False, "missed"), (True, "matched")):
        total = touching[(hit, False)] + touching[(hit, True)]
        share = touching[(hit, True)] / max(total, 1)
        print(f"{word} meeting another annotated box at IoU > {NEAR}: {share:.1%}")
    print("types missed most: "
          + ", ".join(f"{name} {count}" for name, count in missed_types.most_common(8)))
    print("found - annotated per metaphase: "
          + ", ".join(f"{k:+d}: {v}" for k, v in sorted(count_error.items())))
    print("heatmap peaks alone (no duplicates, specks or masks removed):")
    for threshold, (hits, total) in peaks.items():
        print(f"  score >= {threshold:.2f}: recall {hits / max(annotated, 1):.4f}, "
              f"precision {hits / max(total, 1):.4f}, {total} peaks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
