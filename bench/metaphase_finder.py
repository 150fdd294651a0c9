"""Whole metaphases, image in, assigned karyogram out: finder, classifier and assignment.

    python bench/metaphase_finder.py --data ../shared/data/cil24 --split test \
        [--finder F] [--checkpoint M] [--device cpu|cuda] [--threads 2] [--quick-start]
        [--skip N] [--limit N] [--crossings-whole] [--no-candidates | --candidates-from S]
        [--case-pattern REGEX] [--assignment-temperature T] [--json OUT]

Runs exactly what ``karyo evaluate --data DIR`` runs (the app's own pipeline) on one split
of an annotated data set, prints the table of the metaphase keys (detection recall and
precision, count exact, typed accuracy, karyotype exact, seconds per metaphase) for all
metaphases and per difficulty (``difficult.txt``), and the classifier alone on crops cut
from the annotated boxes. ``--threads 2`` times it as a 2-core CPU would. ``--quick-start``
runs both networks as the app does on a CPU, from their ONNX copies in the user's cache
(``karyo_gui.inference.quick_start``; written first when there are none).
``--crossings-whole`` and ``--no-candidates`` switch off a part of the pipeline to measure
what it brings: separating two chromosomes that cross at their middles, and the faint
candidates the assignment keeps where they fill a free place of the karyotype.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import torch

from karyo_gui.cli import format_metaphase_metrics
from karyo_gui.inference.classifier import Classifier
from karyo_gui.inference.finder import CANDIDATE_THRESHOLD, ChromosomeFinder
from karyo_gui.inference.metaphase_evaluation import evaluate_metaphases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cil24")
    parser.add_argument("--split", default="test", help="train, val or test (splits/NAME.txt)")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first N metaphases")
    parser.add_argument("--limit", type=int, default=0, help="only the first N metaphases")
    parser.add_argument("--finder", help="finder model file (default: the shipped one)")
    parser.add_argument("--checkpoint", help="classifier model file (default: the shipped one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--quick-start", action="store_true",
                        help="run the networks' ONNX copies with OpenCV, as the app on a CPU")
    parser.add_argument("--crossings-whole", action="store_true",
                        help="leave an X the finder gave one box as one object (to measure what "
                        "separating it brings)")
    parser.add_argument("--no-candidates", action="store_true",
                        help="give the assignment no faint candidates (to measure what keeping "
                        "those that fill a free place brings)")
    parser.add_argument("--candidates-from", type=float, default=CANDIDATE_THRESHOLD,
                        help="the lowest score of a candidate (default: as the app)")
    parser.add_argument("--case-pattern", metavar="REGEX",
                        help="read the metaphases of one case together, as the app reads a "
                        "case: the pattern's first group is a name's case (cil24: '(.*).')")
    parser.add_argument("--assignment-temperature", type=float, metavar="T",
                        help="the temperature of the network's logits at which the assignment "
                        "weighs the crops (default: the model's calibrated one, as the app)")
    parser.add_argument("--json", help="also write the metrics here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    names_file = Path(args.data) / "splits" / f"{args.split}.txt"
    if not names_file.is_file():
        print(f"{names_file}: no such split list", file=sys.stderr)
        return 2
    names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    names = names[args.skip:]
    if args.limit:
        names = names[: args.limit]
    quick = args.quick_start
    options = dict(separate_crossings=not args.crossings_whole,
                   candidate_threshold=None if args.no_candidates else args.candidates_from)
    finder = ChromosomeFinder(args.finder, args.device, quick_start=quick, **options)
    classifier = Classifier(args.checkpoint, args.device, quick_start=quick)
    if quick and not (finder.quick_started and classifier.quick_started):
        finder.save_quick_start()
        classifier.save_quick_start()
        finder = ChromosomeFinder(args.finder, args.device, quick_start=True, **options)
        classifier = Classifier(args.checkpoint, args.device, quick_start=True)
        if not (finder.quick_started and classifier.quick_started):
            print("--quick-start: the ONNX copies could not be written or run here "
                  "(is the onnx package installed?)", file=sys.stderr)
            return 2
    classifier.assignment_temperature = args.assignment_temperature
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            print(f"  {done}/{total} metaphases, {time.perf_counter() - started:.0f} s", flush=True)

    metrics = evaluate_metaphases(args.data, names, finder, classifier, progress,
                                  case_pattern=args.case_pattern)
    print(f"{args.split} split of {args.data}, finder {finder.description}, "
          f"classifier {classifier.description}, on {metrics['device']} "
          f"({torch.get_num_threads()} threads"
          f"{', ONNX copies run by OpenCV' if quick else ''})")  # fmt: skip
    print(format_metaphase_metrics(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1), encoding="utf-8")
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
