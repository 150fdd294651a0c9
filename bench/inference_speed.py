"""How fast a cell is classified: warm, cold (a fresh ``karyo classify``) and Grad-CAM.

    python bench/inference_speed.py [--checkpoint CKPT] [--device cpu] [--repeats 20]
                                    [--reference vit_small_patch8_224] [--data ROOT]

Prints, for the chosen device:
  * classify + assign one 46-crop cell with the model already loaded (median and max);
  * cold start: process start of ``karyo classify CELL --json OUT`` to the JSON written;
  * Grad-CAM of one crop (median and max);
  * the paper's reference backbone (ViT-S/8 at 224 x 224 px, untrained weights: the time
    does not depend on them) classifying the same 46 crops in the same run, and the ratio.
Targets on a 2-core CPU: <= 0.25 s per cell, <= 4 s cold start, <= 0.1 s per Grad-CAM.
With ``--data`` the warm figure is also measured on the real cells of a dataset folder.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from karyo_gui.core.loaders import cells_folder, load_dataset, write_cell
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.inference.classifier import Classifier


def timed(function, repeats: int) -> list[float]:
    function()  # warm-up: first calls allocate and pick kernels
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds


def report(what: str, seconds: list[float], target: float | None = None) -> None:
    median = statistics.median(seconds)
    goal = (
        f"   target <= {target:g} s: {'met' if median <= target else 'NOT met'}" if target else ""
    )
    print(f"{what:<44} median {median:7.3f} s   max {max(seconds):7.3f} s{goal}")


def reference_time(arch: str, n_crops: int, device: torch.device, repeats: int) -> float:
    import timm

    net = timm.create_model(arch, pretrained=False, in_chans=1, num_classes=24).to(device).eval()
    size = net.pretrained_cfg.get("input_size", (1, 224, 224))[-2:]
    crops = torch.rand(n_crops, 1, *size, device=device)

    def run() -> None:
        with torch.inference_mode():
            net(crops)

    return statistics.median(timed(run, repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--reference", default="vit_small_patch8_224")
    parser.add_argument("--reference-repeats", type=int, default=3)
    parser.add_argument("--data", help="a labelled dataset folder, e.g. gband612")
    args = parser.parse_args()

    classifier = Classifier(args.checkpoint, args.device)
    print(f"model {classifier.description} on {classifier.device}, "
          f"{torch.get_num_threads()} torch threads")  # fmt: skip
    cell = generate_cell("46,XY", seed=4242)
    warm = timed(lambda: classifier.classify(cell), args.repeats)
    report("classify + assign a generated 46-crop cell", warm, 0.25)
    if args.data:
        folder = cells_folder(args.data)
        names = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
        cells = load_dataset(args.data, cells=names[: args.repeats]).cells
        for real in cells[:1]:
            classifier.classify(real)
        real_seconds = []
        for real in cells:
            started = time.perf_counter()
            classifier.classify(real)
            real_seconds.append(time.perf_counter() - started)
        report(f"classify + assign {len(cells)} real cells (each)", real_seconds, 0.25)

    chromosome = cell.chromosomes[0]
    cam = timed(lambda: classifier.attention(cell, chromosome.id), args.repeats)
    report("Grad-CAM of one crop", cam, 0.1)

    with tempfile.TemporaryDirectory() as scratch:
        folder = write_cell(cell, Path(scratch) / "cell", labelled=False)
        command = [sys.executable, "-m", "karyo_gui", "classify", str(folder), "--json",
                   str(Path(scratch) / "out.json"), "--device", args.device]  # fmt: skip
        cold = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            cold.append(time.perf_counter() - started)
        report("cold start: karyo classify, start to exit", cold, 4.0)

    ours = statistics.median(warm)
    theirs = reference_time(args.reference, len(cell), classifier.device, args.reference_repeats)
    print(f"{'reference ' + args.reference + ', same 46 crops':<44} median {theirs:7.3f} s")
    print(f"ratio: ours is {theirs / ours:.1f} times faster than the reference backbone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
