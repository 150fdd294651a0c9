"""How well the model stands chromosomes p-arm up (its orientation head), on labelled cells.

    python bench/orientation.py [--checkpoint CKPT] [--data ../shared/data/gband612]
                                [--split val] [--margins 0.1 0.2 0.3]

The crops of gband612 are stored p-arm up (cut from karyograms), so each crop is shown to the
model as stored and turned by 180 degrees; the guess is right when it says "up" for the first
and "upside down" for the second. For each unsure margin: the share of crops flagged
``orientation_unsure`` and how often the guess is right for the crops not flagged. Choose
the margin (``karyo_gui.core.orientation.UNSURE_MARGIN``) on ``val``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from karyo_gui.core.labels import ChromosomeType
from trainer.checkpoint import default_checkpoint, load_checkpoint
from trainer.data import load_dataset_crops
from trainer.evaluation import predict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--data", default=str(Path("../shared/data/gband612")))
    parser.add_argument("--split", default="val")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    net, header = load_checkpoint(args.checkpoint or default_checkpoint(), device)
    if header.orientation is None:
        print(f"{header.name} ({header.model_id}) has no orientation head")
        return 1
    preprocessing = header.input_preprocessing
    crops = load_dataset_crops(args.data, Path(args.data) / "splits" / f"{args.split}.txt",
                               preprocessing)  # fmt: skip
    standing = predict(net, crops.images, preprocessing, device, second_look=0).upside_down
    turned = np.ascontiguousarray(crops.images[:, ::-1, ::-1])  # turned by 180 degrees
    upside_down = predict(net, turned, preprocessing, device, second_look=0).upside_down
    guesses = np.concatenate([standing, upside_down])
    truth = np.repeat([False, True], len(crops))
    right = (guesses > 0.5) == truth
    print(f"{header.name} ({header.model_id}) on {args.split}: {len(crops)} crops of "
          f"{len(crops.cell_names)} cells, each as stored and turned by 180 degrees")  # fmt: skip
    print(f"right: {right.mean():.4f} (head fitted with held-out accuracy "
          f"{header.orientation.get('held_out_accuracy', float('nan')):.4f})")  # fmt: skip
    print(f"{'margin':>7} {'flagged':>8} {'right when not flagged':>23}")
    for margin in args.margins:
        sure = np.abs(guesses - 0.5) >= margin
        print(f"{margin:7.2f} {1 - sure.mean():8.3f} {right[sure].mean():23.4f}")
    labels = np.tile(crops.labels, 2)
    worst = sorted(
        (right[labels == t].mean(), ChromosomeType(t).display_name) for t in np.unique(labels)
    )[:5]
    print("hardest types: " + ", ".join(f"{name} {share:.3f}" for share, name in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
