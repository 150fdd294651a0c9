"""Test-time adaptation of the normalisation statistics (AdaBN) on a lab's cells: does it
lift a model's accuracy on a lab whose stain it never saw, and what does it cost on its own?

    python bench/test_time_norm.py --lab cil24=../shared/data/cil24 \
        --lab gband612=../shared/data/gband612 --split val \
        --model gband612-only=runs/gband612-only.safetensors [--model shipped=...] \
        [--groups none cell lab] [--blend 1.0 0.5] [--json OUT]

For each model and lab the split's crops are classified (two looks where unsure, as the app
does) with the batch-norm statistics of the model as trained (``none``), re-estimated on
each cell's own crops (``cell``: what the app could do per cell without any label), or on
all the split's crops (``lab``: per laboratory, a case or a batch of cases), each blended
with the trained statistics by ``--blend`` (1: the new statistics only). Crop accuracy,
assigned accuracy (the karyotype-aware assignment) and ISCN exact per setting.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from new_lab_curve import split_names  # the bench's own: a split's names
from torch import nn

from trainer.batches import normalise
from trainer.checkpoint import load_checkpoint
from trainer.data import load_dataset_crops
from trainer.evaluation import cell_metrics, crop_metrics, predict


def adapted(net: nn.Module, canvases: np.ndarray, preprocessing, blend: float,
            batch_size: int = 256) -> nn.Module:
    """A copy of ``net`` whose batch-norm statistics are those of ``canvases`` (a cumulative
    average over them), blended with the trained ones."""
    copy_ = copy.deepcopy(net).eval()
    norms = [m for m in copy_.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    trained = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # the cumulative average over all batches
        m.train()
    with torch.no_grad():
        for start in range(0, len(canvases), batch_size):
            batch = torch.from_numpy(canvases[start : start + batch_size])
            copy_(normalise(batch, preprocessing))
    for m, (mean, var) in zip(norms, trained):
        m.running_mean.mul_(blend).add_(mean, alpha=1 - blend)
        m.running_var.mul_(blend).add_(var, alpha=1 - blend)
        m.eval()
    return copy_


def run(net, crops, preprocessing, group: str, blend: float) -> dict:
    device = torch.device("cpu")
    if group in ("none", "lab"):
        used = net if group == "none" else adapted(net, crops.images, preprocessing, blend)
        probabilities = predict(used, crops.images, preprocessing, device).probabilities
    else:
        probabilities = np.zeros((len(crops.labels), 24), np.float32)
        for index in range(len(crops.cell_names)):
            rows = np.flatnonzero(crops.cell_of == index)
            cell_net = adapted(net, crops.images[rows], preprocessing, blend)
            probabilities[rows] = predict(cell_net, crops.images[rows], preprocessing,
                                          device).probabilities  # fmt: skip
    metrics = crop_metrics(crops.labels, probabilities)
    metrics.update(cell_metrics(crops.labels, crops.cell_of, crops.cell_names, probabilities))
    return {k: metrics[k] for k in ("crop_accuracy", "assigned_accuracy", "iscn_exact")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--model", action="append", required=True, help="NAME=FILE")
    parser.add_argument("--split", default="val")
    parser.add_argument("--groups", nargs="+", default=["none", "cell", "lab"])
    parser.add_argument("--blend", nargs="+", type=float, default=[1.0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N cells per lab")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for model in args.model:
        model_name, path = model.split("=", 1)
        net, header = load_checkpoint(path)
        preprocessing = header.input_preprocessing
        for lab in args.lab:
            lab_name, root = lab.split("=", 1)
            cells = split_names(Path(root), args.split, args.limit or None)
            started = time.time()
            crops = load_dataset_crops(root, cells, preprocessing)
            print(f"{model_name} on {lab_name} {args.split}: {len(crops.labels)} crops of "
                  f"{len(crops.cell_names)} cells ({time.time() - started:.0f} s)",
                  flush=True)  # fmt: skip
            for group in args.groups:
                for blend in [1.0] if group == "none" else args.blend:
                    started = time.time()
                    figures = run(net, crops, preprocessing, group, blend)
                    row = {"model": model_name, "model_id": header.model_id, "lab": lab_name,
                           "split": args.split, "group": group, "blend": blend, **figures,
                           "seconds": round(time.time() - started, 1)}  # fmt: skip
                    results.append(row)
                    print(f"  {group:>5} blend {blend:.2f}: crop {figures['crop_accuracy']:.4f} "
                          f"assigned {figures['assigned_accuracy']:.4f} ISCN exact "
                          f"{figures['iscn_exact']:.3f} ({row['seconds']} s)",
                          flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
