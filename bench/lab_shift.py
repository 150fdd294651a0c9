"""How the model does on crops that look like another lab's: stain polarity, scale, contrast, blur.

    python bench/lab_shift.py --data ../shared/data/gband612 \
        --cells ../shared/data/gband612/splits/test.txt [--checkpoint M] [--profiles all]

Each profile changes every crop of every cell the same way (as one lab's microscope and
stain would), then the cells are classified exactly as the app does (common scale per cell,
polarity detection, karyotype-aware assignment). Prints crop accuracy, assigned accuracy and
ISCN exact per profile beside the unchanged cells.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import cv2
import numpy as np
import torch

from karyo_gui.core.loaders import load_dataset
from trainer.checkpoint import default_checkpoint, load_checkpoint
from trainer.data import crops_of_cells
from trainer.evaluation import cell_metrics, crop_metrics, predict


def _gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    return np.uint8(255 * (image / 255.0) ** gamma)


PROFILES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "unchanged": lambda image: image,
    "Q-banding (inverted)": lambda image: 255 - image,
    "1.6x larger pixels": lambda image: cv2.resize(image, None, fx=1.6, fy=1.6),
    "0.6x smaller pixels": lambda image: cv2.resize(
        image, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA
    ),
    "low contrast": lambda image: np.uint8(128 + (image.astype(np.float32) - 128) * 0.5),
    "darker (gamma 1.8)": lambda image: _gamma(image, 1.8),
    "blurred (sigma 1.2)": lambda image: cv2.GaussianBlur(image, (0, 0), 1.2),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--cells")
    parser.add_argument("--checkpoint")
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES))
    args = parser.parse_args()

    net, header = load_checkpoint(args.checkpoint or default_checkpoint(), "cpu")
    preprocessing = header.input_preprocessing
    cells = load_dataset(args.data, cells=args.cells).cells
    originals = [[c.image for c in cell.chromosomes] for cell in cells]
    print(f"{header.name} ({header.model_id}) on {len(cells)} cells")
    print(f"{'profile':<24} {'crop acc':>9} {'assigned':>9} {'ISCN exact':>11}")
    for name in args.profiles:
        change = PROFILES[name]
        for cell, images in zip(cells, originals):
            for chromosome, image in zip(cell.chromosomes, images):
                chromosome.image = None if image is None else change(image)
        crops = crops_of_cells(cells, preprocessing)
        probabilities = predict(net, crops.images, preprocessing, torch.device("cpu")).probabilities
        crop = crop_metrics(crops.labels, probabilities)
        cell = cell_metrics(crops.labels, crops.cell_of, crops.cell_names, probabilities)
        print(
            f"{name:<24} {crop['crop_accuracy']:>9.4f} {cell['assigned_accuracy']:>9.4f} "
            f"{cell['iscn_exact']:>11.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
