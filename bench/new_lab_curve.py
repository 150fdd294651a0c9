"""A new lab in minutes? Fine-tune a model on 3 / 5 / 10 / 20 reviewed cells of a lab it
never saw, exactly as the app's Retrain dialog does, and measure each on the lab's test cells.

    python bench/new_lab_curve.py --lab ../shared/data/cil24 --base ../shared/data/gband612 \
        [--model resources/karyo-default.safetensors] [--cells 3 5 10 20] [--test-limit N] \
        [--work runs/new-lab-curve] [--json runs/new-lab-curve/curve.json] [--threads 2]

The lab is a dataset folder with ``splits/{train,test}.txt`` (crop cells, or annotated
metaphases such as cil24, whose crops are cut from the boxes). For each number of cells,
that many cells of the lab's train split (drawn with ``--seed``, each smaller set inside the
larger) are saved as a case file of reviewed cells; ``RetrainPlan(...).for_cells(n)`` builds
the dialog's trainer command (its recipe, replay of ``--base`` with the lab drawn as often,
a quarter of the cells held out for the dialog's own comparison) and it runs; its wall time
is the "minutes" of the curve. Every model is then measured on the lab's test cells (crop
accuracy, after the assignment, ISCN exact) and on the base lab's (what is forgotten).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from karyo_gui.core.annotations import (
    is_annotated_folder,
    load_annotated_cells,
    load_annotated_folder,
)
from karyo_gui.core.case import Case, CellStatus
from karyo_gui.core.case_file import save_case
from karyo_gui.core.loaders import load_dataset
from karyo_gui.qt.retrain import RetrainPlan
from trainer.checkpoint import SHIPPED_MODEL, load_checkpoint
from trainer.data import load_dataset_crops
from trainer.evaluation import evaluate_crops

MEASURES = ("crop_accuracy", "assigned_accuracy", "iscn_exact")


def lab_cells(root: Path, names: list[str]):
    """The named cells of a lab as Cell objects with their given types."""
    if is_annotated_folder(root):
        cells, _ = load_annotated_cells(root, names)
        return cells
    return load_dataset(root, cells=names).cells


def split_names(root: Path, split: str, limit: int | None = None) -> list[str]:
    names = [line.strip() for line in (root / "splits" / f"{split}.txt").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    return names[:limit] if limit else names


def split_metaphases(data: str, split: str, limit: int | None = None) -> list | None:
    """The annotated metaphases of a split of ``data`` (the first ``limit``), or None after
    saying on stderr that the split list is not there."""
    try:
        names = split_names(Path(data), split, limit)
    except OSError as error:
        print(f"{data}: no split list {split} ({error.strerror})", file=sys.stderr)
        return None
    return load_annotated_folder(data, names)[0]


class Judge:
    """Measures models on fixed test cells; the crops are cut once per input size."""

    def __init__(self, labs: dict[str, tuple[Path, list[str]]]) -> None:
        self.labs = labs
        self.cache: dict[tuple, object] = {}
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def __call__(self, path: Path) -> dict:
        net, header = load_checkpoint(path, self.device)
        preprocessing = header.input_preprocessing
        result = {"model_id": header.model_id}
        for lab, (root, names) in self.labs.items():
            key = (lab, tuple(sorted(preprocessing.to_dict().items())))
            if key not in self.cache:
                self.cache[key] = load_dataset_crops(root, names, preprocessing)
            metrics, _ = evaluate_crops(net, self.cache[key], preprocessing, self.device)
            result[lab] = {m: metrics[m] for m in MEASURES}
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--cells", type=int, nargs="*", default=[3, 5, 10, 20])
    parser.add_argument("--test-limit", type=int, help="the first N test cells only")
    parser.add_argument("--work", type=Path, default=Path("runs/new-lab-curve"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--trainer-options", default="",
                        help="extra trainer options in one string (tests: a tiny model's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    order = split_names(args.lab, "train")
    random.Random(args.seed).shuffle(order)
    judge = Judge({
        "lab": (args.lab, split_names(args.lab, "test", args.test_limit)),
        "base": (args.base, split_names(args.base, "test", args.test_limit)),
    })  # fmt: skip
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [{"cells": 0, "minutes": 0.0, **judge(args.model)}]
    print(f"start model on the lab: {rows[0]['lab']}; on the base: {rows[0]['base']}",
          flush=True)
    for n in args.cells:
        cells = lab_cells(args.lab, order[:n])
        for cell in cells:
            cell.set_status(CellStatus.REVIEWED, by="bench")
        case_file = args.work / f"lab-{n}-cells.karyo.json"
        save_case(Case(case_id=f"lab-{n}", cells=cells), case_file)
        plan = RetrainPlan(
            parent=args.model, case_files=[str(case_file)], name=f"lab-{n}",
            base_data=str(args.base), device=args.device, output=args.work / f"run-{n}",
        ).for_cells(n)  # fmt: skip
        command = plan.command() + (["--threads", str(args.threads)] if args.threads else [])
        command += shlex.split(args.trainer_options)
        print("$", " ".join(command[1:]), flush=True)
        started = time.monotonic()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
        minutes = (time.monotonic() - started) / 60
        if done.returncode:
            print(f"the run on {n} cells failed (exit {done.returncode})", file=sys.stderr)
            return 1
        held_out = plan.output / "comparison.json"  # none when no cell could be held out
        comparison = json.loads(held_out.read_text(encoding="utf-8")) if held_out.is_file() \
            else None
        row = {"cells": n, "crops": sum(len(c) for c in cells), "minutes": minutes,
               "steps": plan.epochs * plan.steps_per_epoch, "lr": plan.lr,
               "dialog_comparison": comparison, **judge(plan.output / "best.safetensors")}
        rows.append(row)
        print(f"{n} cells, {minutes:.1f} min: lab {row['lab']}; base {row['base']}", flush=True)

    print(f"\n{'cells':>5} {'minutes':>8} {'lab crop':>9} {'assigned':>9} {'ISCN':>6} "
          f"{'base crop':>10}")
    for row in rows:
        print(f"{row['cells']:>5} {row['minutes']:>8.1f} {row['lab']['crop_accuracy']:>9.4f} "
              f"{row['lab']['assigned_accuracy']:>9.4f} {row['lab']['iscn_exact']:>6.3f} "
              f"{row['base']['crop_accuracy']:>10.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"lab": str(args.lab), "base": str(args.base),
                                         "model": str(args.model), "rows": rows}, indent=1),
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
