"""Does a model trained on one lab work on another? Train on lab A, on lab B, on both, with
and without the contrastive term, and measure every model on every lab's held-out cells.

    python bench/lab_transfer.py --lab gband612=../shared/data/gband612 \
        --lab cil24=../shared/data/cil24 --train gband612 cil24 gband612+cil24 \
        --lambda-con 0.25 0 --work runs/transfer --split test --json runs/transfer/table.json \
        [--model shipped=resources/karyo-default.safetensors] [-- TRAINER OPTIONS...]

A lab is a dataset folder with ``splits/{train,val,test}.txt``: crop cells (gband612) or
annotated metaphases (cil24: their crops are cut from the boxes). Each ``--train`` entry
(labs joined by ``+``, drawn equally often) is trained once per ``--lambda-con`` value by
``python -m trainer train`` into ``WORK/NAME-conL`` (selected on the labs' val cells; a run
that was stopped resumes, a finished one is reused), with the options after ``--`` (for
example ``--init-checkpoint``, ``--epochs``, ``--steps-per-epoch``). ``--model NAME=PATH``
adds models trained elsewhere (the shipped one was trained on gband612 alone). Every model
is then evaluated on every lab's ``--split`` cells as the app classifies a cell (crop
accuracy, after the karyotype-aware assignment, ISCN exact); the table is printed and
written as JSON. "Zero-shot transfer" is a model's row on a lab it was not trained on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from trainer.checkpoint import load_checkpoint, read_header
from trainer.data import load_dataset_crops
from trainer.evaluation import evaluate_crops

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("crop_accuracy", "assigned_accuracy", "iscn_exact")


def _named(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise SystemExit(f"{what} {text!r}: write NAME=PATH")
    return name, value


def train_command(labs: dict[str, Path], names: list[str], lambda_con: float, output: Path,
                  extra: list[str]) -> list[str]:
    """The trainer command for one model: the first lab as --data, the others as --datasets,
    every lab drawn equally often, selected on the labs' val cells."""
    first = labs[names[0]]
    command = [
        sys.executable, "-m", "trainer", "train",
        "--data", str(first), "--train-cells", str(first / "splits" / "train.txt"),
        "--val-cells", str(first / "splits" / "val.txt"),
        "--lambda-con", str(lambda_con), "--output", str(output),
    ]  # fmt: skip
    if len(names) > 1:
        command += ["--datasets", *[str(labs[name]) for name in names[1:]]]
        command += ["--mix", "{" + ", ".join(f"{name}: 1" for name in names) + "}"]
    return command + extra


def trained(command: list[str], output: Path) -> Path:
    """Run (or resume, or reuse) one training; the path of its best model."""
    best, state = output / "best.safetensors", output / "state.pt"
    done = output / "transfer-done"
    if done.is_file() and best.is_file():
        return best
    if state.is_file():
        command = [*command, "--resume"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    done.write_text("finished\n", encoding="utf-8")
    return best


def evaluate(models: dict[str, Path], labs: dict[str, Path], split: str,
             batch_size: int) -> dict:
    """{model: {lab: {crop_accuracy, assigned_accuracy, iscn_exact, n_cells, n_crops}}}."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache: dict[tuple, object] = {}  # a lab's crops per input size: cut once
    table: dict[str, dict] = {}
    for model, path in models.items():
        net, header = load_checkpoint(path, device)
        preprocessing = header.input_preprocessing
        seen = header.training_data.get("train", {}).get("labs") or {}
        table[model] = {"model_id": header.model_id, "trained_on": sorted(seen)}
        for lab, root in labs.items():
            key = (lab, tuple(sorted(preprocessing.to_dict().items())))
            if key not in cache:
                cache[key] = load_dataset_crops(root, str(root / "splits" / f"{split}.txt"),
                                                preprocessing)
            crops = cache[key]
            metrics, _ = evaluate_crops(net, crops, preprocessing, device, batch_size)
            table[model][lab] = {m: metrics[m] for m in MEASURES} | {
                "n_cells": len(crops.cell_names), "n_crops": len(crops)}
            print(f"  {model} on {lab}: " + ", ".join(
                f"{m} {metrics[m]:.4f}" for m in MEASURES), flush=True)
    return table


def print_table(table: dict, labs: list[str], split: str) -> None:
    head = f"{'model':<28}{'trained on':<22}" + "".join(
        f"{lab + ' crop/assigned/ISCN':>34}" for lab in labs)
    print(f"\n{split} split\n{head}")
    for model, row in table.items():
        cells = "".join(
            f"{row[lab]['crop_accuracy']:>14.4f}{row[lab]['assigned_accuracy']:>10.4f}"
            f"{row[lab]['iscn_exact']:>10.3f}" for lab in labs)
        print(f"{model:<28}{'+'.join(row['trained_on']) or '?':<22}{cells}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", action="append", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--train", nargs="*", default=[], metavar="LAB[+LAB]")
    parser.add_argument("--lambda-con", nargs="*", type=float, default=[0.25])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--work", default="runs/transfer")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    labs = {name: Path(folder) for name, folder in (_named(t, "--lab") for t in args.lab)}
    for name, folder in labs.items():
        for split in ("train", "val", args.split):
            if not (folder / "splits" / f"{split}.txt").is_file():
                raise SystemExit(f"--lab {name}: {folder}/splits/{split}.txt not found")
    models = {name: Path(path) for name, path in (_named(t, "--model") for t in args.model)}
    for path in models.values():
        read_header(path)  # a bad file is named before hours of training
    started = time.monotonic()
    for entry in args.train:
        names = entry.split("+")
        unknown = [name for name in names if name not in labs]
        if unknown:
            raise SystemExit(f"--train {entry}: no --lab named {', '.join(unknown)}")
        for lambda_con in args.lambda_con:
            output = Path(args.work) / f"{entry.replace('+', '-')}-con{lambda_con:g}"
            command = train_command(labs, names, lambda_con, output, extra)
            models[f"{entry} con={lambda_con:g}"] = trained(command, output)
    if not models:
        raise SystemExit("nothing to measure: give --train or --model")
    table = evaluate(models, labs, args.split, args.batch_size)
    print_table(table, list(labs), args.split)
    result = {"split": args.split, "labs": {k: str(v) for k, v in labs.items()},
              "trainer_options": extra, "seconds": time.monotonic() - started, "models": table}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
