"""Does retraining from the app help a "new lab"? Fine-tune the shipped model on a lab's
reviewed cells, as the app's Retrain dialog does, and measure both sides.

    python bench/retrain_new_lab.py --data ../shared/data/gband612 [--profile "low contrast"]
        [--lab-cells 40] [--epochs 4] [--steps-per-epoch 100] [--work runs/new-lab]

The "new lab" is gband612 seen through one of bench/lab_shift.py's profiles (the same
change on every crop, as one lab's microscope and stain would make). ``--lab-cells`` cells of
the train split, changed so, are saved as a reviewed case file; the trainer fine-tunes the
shipped model on it with the train split mixed in (replay), exactly the command the app runs
(``RetrainPlan.command()``). Then the old and the new model are measured on the test split
changed the same way (the lab's held-out cells: the gain) and on the unchanged test split
(what is forgotten). Targets: gain >= 2 points, loss <= 0.5 point of crop accuracy.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path

import torch

from karyo_gui.core.case import Case, CellStatus
from karyo_gui.core.case_file import save_case
from karyo_gui.core.loaders import load_dataset
from karyo_gui.qt.retrain import RetrainPlan
from trainer.checkpoint import SHIPPED_MODEL, load_checkpoint
from trainer.data import crops_of_cells
from trainer.evaluation import cell_metrics, crop_metrics, predict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_shift import PROFILES


def changed(cells, profile):
    change = PROFILES[profile]
    for cell in cells:
        for chromosome in cell.chromosomes:
            if chromosome.image is not None:
                chromosome.image = change(chromosome.image)
            chromosome.source_path = chromosome.content_hash = None  # embedded in the case
    return cells


def measure(path, cells) -> dict:
    net, header = load_checkpoint(path, "cpu")
    crops = crops_of_cells(cells, header.input_preprocessing)
    probabilities = predict(
        net, crops.images, header.input_preprocessing, torch.device("cpu")
    ).probabilities
    result = crop_metrics(crops.labels, probabilities)
    result.update(cell_metrics(crops.labels, crops.cell_of, crops.cell_names, probabilities))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--profile", default="low contrast", choices=list(PROFILES))
    parser.add_argument("--lab-cells", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("runs/new-lab"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    splits = args.data / "splits"
    train = load_dataset(args.data, cells=splits / "train.txt").cells
    lab = changed(random.Random(args.seed).sample(train, args.lab_cells), args.profile)
    for cell in lab:
        cell.set_status(CellStatus.REVIEWED, by="bench")
    args.work.mkdir(parents=True, exist_ok=True)
    case_file = args.work / "new-lab.karyo.json"
    save_case(Case(case_id="new-lab", cells=lab), case_file)
    print(f"new lab ({args.profile}): {len(lab)} reviewed cells in {case_file}")

    plan = RetrainPlan(
        parent=SHIPPED_MODEL, case_files=[str(case_file)], name="new-lab",
        base_data=str(args.data), epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        device="auto", val_fraction=0.2, output=args.work / "run",
    )  # fmt: skip
    print("trainer:", " ".join(plan.command()[1:]))
    if subprocess.run(plan.command(), stdout=subprocess.DEVNULL, check=False).returncode:
        print("the training run failed", file=sys.stderr)
        return 1
    new = plan.output / "best.safetensors"

    test_names = splits / "test.txt"
    lab_test = changed(load_dataset(args.data, cells=test_names).cells, args.profile)
    original_test = load_dataset(args.data, cells=test_names).cells
    print(f"{'':<34} {'crop acc':>9} {'assigned':>9} {'ISCN exact':>11}")
    rows = {}
    measured = (("new lab, test split", lab_test), ("original, test split", original_test))
    for where, cells in measured:
        for who, path in (("shipped", SHIPPED_MODEL), ("fine-tuned", new)):
            metrics = measure(path, cells)
            rows[(where, who)] = metrics
            print(f"{where + ' / ' + who:<34} {metrics['crop_accuracy']:>9.4f} "
                  f"{metrics['assigned_accuracy']:>9.4f} {metrics['iscn_exact']:>11.3f}")
    gain = rows[("new lab, test split", "fine-tuned")]["crop_accuracy"] - rows[
        ("new lab, test split", "shipped")]["crop_accuracy"]
    loss = rows[("original, test split", "shipped")]["crop_accuracy"] - rows[
        ("original, test split", "fine-tuned")]["crop_accuracy"]
    print(f"gain on the new lab: {100 * gain:+.2f} points (target >= 2); "
          f"lost on the original: {100 * loss:.2f} points (target <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
