"""SCL against no SCL: the same backbone, data, recipe and budget; lambda_con as configured vs 0.

Trains both (unless their run folders already hold a finished run), evaluates the best
checkpoint of each (selected on val) on val and test, and prints a table.

    .venv/bin/python bench/scl_ablation.py [--config trainer/configs/scl.yaml]
        [--data ../shared/data/gband612] [--runs runs/ablation] [--second-look 0]
        [-- extra trainer options]

The from-scratch ablation is the default config; the fine-tuning one (stage 3 of the shipped
model) is ``--config trainer/configs/default-stage3.yaml --runs runs/ablation-stage3``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SIDES = {"scl": [], "no-scl": ["--lambda-con", "0"]}


def finished(run: Path) -> bool:
    events = run / "events.jsonl"
    return events.is_file() and '"event": "done"' in events.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="trainer/configs/scl.yaml")
    parser.add_argument("--data", default="../shared/data/gband612")
    parser.add_argument("--runs", default="runs/ablation")
    parser.add_argument("--second-look", default="0", help="margin for evaluation (0: one look)")
    parser.add_argument("extra", nargs="*", help="more trainer options, after --")
    args = parser.parse_args()
    rows = []
    for side, options in SIDES.items():
        run = Path(args.runs) / side
        if not finished(run):
            command = [
                sys.executable,
                "-m",
                "trainer",
                "train",
                "--config",
                args.config,
                "--output",
                str(run),
                "--name",
                f"ablation-{side}",
                *options,
                *args.extra,
            ]
            print("$", " ".join(command), flush=True)
            subprocess.run(command, check=True)
        row = {"side": side}
        for split in ("val", "test"):
            out = run / f"eval-{split}.json"
            command = [
                sys.executable,
                "-m",
                "trainer",
                "evaluate",
                "--data",
                args.data,
                "--cells",
                f"{args.data}/splits/{split}.txt",
                "--checkpoint",
                str(run / "best.safetensors"),
                "--json",
                str(out),
                "--second-look",
                args.second_look,
            ]
            if split == "test":
                command += ["--plots", str(run / "plots")]
            print("$", " ".join(command), flush=True)
            subprocess.run(command, check=True)
            metrics = json.loads(out.read_text())
            row[split] = metrics
        rows.append(row)
    print()
    print(f"{'':8s} {'val acc':>8s} {'test acc':>9s} {'test assigned':>14s} "
          f"{'test recall':>12s} {'test AUC':>9s}")  # fmt: skip
    for row in rows:
        print(
            f"{row['side']:8s} {row['val']['crop_accuracy']:8.4f} "
            f"{row['test']['crop_accuracy']:9.4f} {row['test']['assigned_accuracy']:14.4f} "
            f"{row['test']['macro_recall']:12.4f} {row['test']['macro_auc']:9.4f}"
        )


if __name__ == "__main__":
    main()
