"""Training throughput: the trainer's images/s against the bare model's forward+backward.

The trainer's step = draw the pairwise batches, augment them, forward both, the SCL losses,
backward, optimiser step. The bare step = forward + cross-entropy + backward + optimiser
step on a ready tensor of the same shape. The ratio says how much the data pipeline and
the losses cost; the target is >= 0.90.

    .venv/bin/python bench/train_throughput.py [--arch resnet18] [--crops-per-class 2]
        [--steps 20] [--threads 2] [--device auto]

Run it on an otherwise idle machine: other processes on the CPU distort both numbers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from trainer.batches import Augmentation, PairwiseClassBalancedSampler, augment
from trainer.devices import pick_device
from trainer.engine import training_step
from trainer.losses import SCLObjective
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing


def timed(step, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--crops-per-class", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    preprocessing = Preprocessing(height=args.height, width=args.width)
    rng = np.random.default_rng(0)
    # a training set of random canvases: what the pipeline does does not depend on content
    canvases = rng.integers(0, 255, (4000, args.height, args.width), dtype=np.uint8)
    labels = np.arange(4000) % 24
    sampler = PairwiseClassBalancedSampler(labels, args.crops_per_class)
    batch = 2 * sampler.batch_size
    generator = torch.Generator().manual_seed(0)

    net = ChromosomeNet(args.arch).to(device).train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)
    objective = SCLObjective()

    def trainer_step() -> None:
        first, second, y = sampler.draw()
        x = augment(
            torch.from_numpy(canvases[np.concatenate([first, second])]),
            preprocessing, Augmentation(), generator,
        )  # fmt: skip
        training_step(net, objective, optimiser, x, y, device, grad_clip=5.0)

    x_bare = torch.randn(batch, 1, args.height, args.width, device=device)
    y_bare = torch.from_numpy(np.tile(sampler.labels, 2)).to(device)

    def bare_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(net(x_bare).logits, y_bare).backward()
        optimiser.step()

    def synchronised(step):
        def run() -> None:
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return run

    bare = batch * args.steps / timed(synchronised(bare_step), args.steps)
    ours = batch * args.steps / timed(synchronised(trainer_step), args.steps)
    print(
        f"{args.arch} {args.height}x{args.width}, batch 2 x {sampler.batch_size}, {device}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"bare model forward+backward: {bare:8.1f} images/s")
    print(f"trainer step (sample, augment, SCL): {ours:8.1f} images/s")
    print(f"ratio: {ours / bare:.3f} (target >= 0.90)")


if __name__ == "__main__":
    main()
