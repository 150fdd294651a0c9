"""Grad-CAM speed: seconds per crop for the shipped model on the CPU.

Times :func:`karyo_gui.inference.attention.attention_map` on the crops of a generated
46,XY cell, after one warm-up, and prints the median and the slowest. The target is
<= 0.1 s per crop on a 2-core CPU, so that the map follows the pointer in the karyogram.

    .venv/bin/python bench/gradcam_speed.py [--crops 20] [--threads N] [--model PATH]

Run it on an otherwise idle machine: other processes on the CPU distort the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from karyo_gui.core.synthetic import generate_cell
from karyo_gui.inference.attention import attention_map
from trainer.checkpoint import load_checkpoint
from trainer.preprocessing import cell_scale, place_crop, placement

SHIPPED = Path(__file__).resolve().parents[1] / "resources" / "karyo-default.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--model", type=Path, default=SHIPPED)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    net, header = load_checkpoint(args.model, "cpu")
    preprocessing = header.input_preprocessing
    images = [c.image for c in generate_cell("46,XY", seed=0).chromosomes][: args.crops]
    scale = cell_scale(images, preprocessing)
    crops = [
        (place_crop(image, scale, preprocessing), placement(image, scale, preprocessing))
        for image in images
    ]

    attention_map(net, crops[0][0], preprocessing, crops[0][1])  # warm-up
    seconds = []
    for canvas, where in crops:
        started = time.perf_counter()
        attention_map(net, canvas, preprocessing, where)
        seconds.append(time.perf_counter() - started)
    print(
        f"{header.arch} {preprocessing.height}x{preprocessing.width}, {args.threads} threads, "
        f"{len(seconds)} crops: median {statistics.median(seconds):.3f} s, "
        f"max {max(seconds):.3f} s per crop"
    )


if __name__ == "__main__":
    main()
