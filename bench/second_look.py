"""What the second look (unsure crops classified again upside down) gives, per margin.

    python bench/second_look.py [--checkpoint CKPT] [--data ../shared/data/gband612]
                                [--split val] [--margins 0 0.3 0.5 0.7 1]

For each margin: the share of crops looked at twice, crop accuracy, accuracy after the
karyotype-aware assignment, the rate of exact ISCN strings and the model time per crop.
Margin 0 is one look; 1 looks twice at every crop but those the model is certain of.
Choose the margin on ``val`` (``trainer.config.SECOND_LOOK_MARGIN``); run ``test`` only to
report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from trainer.checkpoint import default_checkpoint, load_checkpoint
from trainer.data import load_dataset_crops
from trainer.evaluation import evaluate_crops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--data", default=str(Path("../shared/data/gband612")))
    parser.add_argument("--split", default="val")
    parser.add_argument("--margins", type=float, nargs="+", default=[0, 0.3, 0.5, 0.7, 1])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    net, header = load_checkpoint(args.checkpoint or default_checkpoint(), device)
    preprocessing = header.input_preprocessing
    crops = load_dataset_crops(args.data, Path(args.data) / "splits" / f"{args.split}.txt",
                               preprocessing)  # fmt: skip
    print(f"{header.name} ({header.model_id}) on {args.split}: {len(crops)} crops of "
          f"{len(crops.cell_names)} cells, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'margin':>7} {'looked twice':>13} {'crop acc':>9} {'assigned':>9} "
          f"{'ISCN exact':>11} {'ms/crop':>8}")  # fmt: skip
    # the margins of the first look decide which crops are looked at twice
    one_look = evaluate_crops(net, crops, preprocessing, device, second_look=0)
    ranked = np.sort(one_look[1].probabilities, axis=1)
    first_margins = ranked[:, -1] - ranked[:, -2]
    for margin in args.margins:
        metrics, predictions = one_look if margin == 0 else evaluate_crops(
            net, crops, preprocessing, device, second_look=margin)  # fmt: skip
        twice = float(np.mean(first_margins < margin))
        print(f"{margin:7.2f} {twice:13.3f} {metrics['crop_accuracy']:9.4f} "
              f"{metrics['assigned_accuracy']:9.4f} {metrics['iscn_exact']:11.3f} "
              f"{1000 * predictions.seconds / len(crops):8.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
