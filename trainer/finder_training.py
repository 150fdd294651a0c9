"""Training the chromosome finder on annotated metaphases (boxes; masks are not needed).

    python -m trainer train-finder --data ../shared/data/cil24 --out runs/finder
        [--train-cells LIST] [--val-cells LIST] [--epochs 20] [--resume] [--generated N]

Each step takes random crops of scaled, background-flattened metaphases (random 90-degree
turns, mirrors, scale jitter, contrast, blur and noise: boxes stay exact under all of them)
and learns, at stride 4: a Gaussian peak at every chromosome's box centre (penalty-reduced
focal loss), the box size (log scale) and the centre's sub-cell offset at the peak (L1),
and the chromosome pixels (dark pixels inside the boxes; nuclei and debris outside every
box are background) with binary cross-entropy. ``--box-loss W`` adds, with weight W, the
GIoU of the box that every cell near a centre predicts (its offset to the centre and the
size there; TTFNet's idea): a peak found a cell off still gives the whole chromosome, and
boxes are trained on the measure that judges them. Each epoch the finder is judged on the
validation metaphases (one-to-one box matches at IoU 0.5) and the best F1 is kept;
``state.pt`` lets ``--resume`` continue after Ctrl+C or a kill.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from karyo_gui.core.annotations import AnnotatedMetaphase, AnnotationError, load_annotated_folder
from karyo_gui.core.metaphase import (
    MetaphaseReadError,
    estimate_chromosome_width,
    foreground_mask,
    match_boxes,
    read_metaphase,
)
from trainer.devices import pick_device
from trainer.finder import (
    STRIDE,
    FinderError,
    FinderHeader,
    FinderNet,
    decode,
    finder_input,
    in_tiles,
    load_finder,
    numpy_outputs,
    save_finder,
)
from trainer.finder_cli import check_finder_args

BOX_NEAR = 0.3  # cells whose centre Gaussian reaches this learn the chromosome's box (GIoU)


@dataclass
class Sample:
    name: str
    grey: np.ndarray
    width: float
    boxes: np.ndarray  # (n, 4) image pixels
    foreground: np.ndarray  # bool, image-sized: dark pixels inside some box


def load_samples(metaphases: list[AnnotatedMetaphase], problems: list[str]) -> list[Sample]:
    samples = []
    for metaphase in metaphases:
        try:
            image = read_metaphase(metaphase.image_path)
        except MetaphaseReadError as error:
            problems.append(str(error))
            continue
        grey = image.pixels
        boxes = np.array([c.box for c in metaphase.chromosomes], np.float32).reshape(-1, 4)
        boxes *= image.scale
        width = estimate_chromosome_width(grey)
        dark = foreground_mask(grey, width)
        inside = np.zeros_like(dark)
        for x0, y0, x1, y1 in boxes.astype(int):
            inside[y0 : y1 + 1, x0 : x1 + 1] = True
        samples.append(Sample(metaphase.name, grey, width, boxes, dark & inside))
    return samples


def generated_samples(count: int, seed: int = 0) -> list[Sample]:
    """Generated metaphases (``core.synthetic``) with their true boxes and masks: another
    stain, contrast and placement than the annotated lab's, and the app's test images."""
    from karyo_gui.core.synthetic import EXAMPLE_KARYOTYPES, generate_metaphase

    samples = []
    for index in range(count):
        generated = generate_metaphase(
            EXAMPLE_KARYOTYPES[index % len(EXAMPLE_KARYOTYPES)], seed=100_000 + seed + index
        )
        foreground = np.zeros(generated.pixels.shape, bool)
        for _, region in generated.chromosomes:
            x0, y0, x1, y1 = region.box
            foreground[y0:y1, x0:x1] |= region.mask
        samples.append(Sample(
            f"generated{index}", generated.pixels, estimate_chromosome_width(generated.pixels),
            generated.boxes().astype(np.float32), foreground,
        ))  # fmt: skip
    return samples


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: how far a centre may move and its box still overlap this much."""
    a1, b1 = 1, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return max(0.0, min(r1, r2, r3))


def targets(boxes: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Heatmap, size, offset and their mask at stride 4 for boxes in input pixels; and for
    the box term, each cell near a centre (Gaussian >= ``BOX_NEAR``) with the box of the
    chromosome whose Gaussian is highest there and that Gaussian as the cell's weight."""
    height, width = shape[0] // STRIDE, shape[1] // STRIDE
    heat = np.zeros((height, width), np.float32)
    size = np.zeros((2, height, width), np.float32)
    offset = np.zeros((2, height, width), np.float32)
    where = np.zeros((height, width), np.float32)
    box = np.zeros((4, height, width), np.float32)
    ys, xs = np.mgrid[0:height, 0:width]
    for x0, y0, x1, y1 in boxes / STRIDE:
        w, h = x1 - x0, y1 - y0
        if w <= 0.5 or h <= 0.5:
            continue
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ix, iy = int(cx), int(cy)
        if not (0 <= ix < width and 0 <= iy < height):
            continue
        sigma = max(0.7, (2 * max(0.0, gaussian_radius(h, w)) + 1) / 6)
        gaussian = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
        owned = (gaussian >= BOX_NEAR) & (gaussian > heat)
        box[:, owned] = np.array([x0, y0, x1, y1], np.float32)[:, None]
        np.maximum(heat, gaussian, out=heat)
        size[:, iy, ix] = (math.log(w), math.log(h))
        offset[:, iy, ix] = (cx - ix, cy - iy)
        where[iy, ix] = 1.0
    near = np.where(box[2] > box[0], heat, 0.0).astype(np.float32)
    return {
        "heatmap": heat, "size": size, "offset": offset, "where": where,
        "box": box, "box_weight": near,
    }  # fmt: skip


def augmented(
    sample: Sample, crop: int, input_width: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training picture: the input crop, its boxes (input pixels) and foreground."""
    jitter = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    prepared = finder_input(sample.grey, input_width, sample.width, jitter)
    picture = prepared.tensor[: prepared.shape[0], : prepared.shape[1]]
    scale = prepared.scale
    boxes = sample.boxes * scale
    fg = cv2.resize(
        sample.foreground.astype(np.uint8),
        (picture.shape[1], picture.shape[0]),
        interpolation=cv2.INTER_NEAREST,
    )
    # random 90-degree turns and mirrors: boxes stay exact
    turns = int(rng.integers(4))
    for _ in range(turns):
        height = picture.shape[0]
        picture, fg = np.rot90(picture), np.rot90(fg)  # counter-clockwise
        x0, y0, x1, y1 = boxes.T.copy()
        boxes = np.stack([y0, picture.shape[0] - x1, y1, picture.shape[0] - x0], 1)
        del height
    if rng.random() < 0.5:
        picture, fg = picture[:, ::-1], fg[:, ::-1]
        x0, y0, x1, y1 = boxes.T.copy()
        boxes = np.stack([picture.shape[1] - x1, y0, picture.shape[1] - x0, y1], 1)
    # a random crop (or padding) of crop x crop
    height, width = picture.shape
    top = int(rng.integers(0, max(1, height - crop + 1)))
    left = int(rng.integers(0, max(1, width - crop + 1)))
    canvas = np.zeros((crop, crop), np.float32)
    mask = np.zeros((crop, crop), np.float32)
    part = picture[top : top + crop, left : left + crop]
    canvas[: part.shape[0], : part.shape[1]] = part
    mask[: part.shape[0], : part.shape[1]] = fg[top : top + crop, left : left + crop]
    boxes = boxes - np.array([left, top, left, top], np.float32)
    # keep boxes whose centre lies in the crop, clipped to it
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = (centres >= 0).all(1) & (centres < crop).all(1)
    boxes = np.clip(boxes[inside], 0, crop)
    # intensity: contrast, gamma, blur, noise
    canvas = np.clip(canvas * rng.uniform(0.7, 1.3), 0, 1) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 1.2))
    canvas = canvas + rng.normal(0, rng.uniform(0, 0.05), canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 1).astype(np.float32), boxes, mask


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, per object."""
    prediction = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    negative = 1 - positive
    pos = torch.log(prediction) * (1 - prediction) ** 2 * positive
    neg = torch.log(1 - prediction) * prediction**2 * (1 - target) ** 4 * negative
    count = positive.sum().clamp(min=1)
    return -(pos.sum() + neg.sum()) / count


def predicted_boxes(output: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 4, H, W): the box each stride-4 cell predicts (x0, y0, x1, y1 in cells), as
    ``trainer.finder.decode`` reads it at a peak."""
    height, width = output["size"].shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(height, device=output["size"].device, dtype=output["size"].dtype),
        torch.arange(width, device=output["size"].device, dtype=output["size"].dtype),
        indexing="ij",
    )
    cx, cy = xs + output["offset"][:, 0], ys + output["offset"][:, 1]
    size = output["size"].clamp(-2, 7).exp()
    w, h = size[:, 0], size[:, 1]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def losses(
    output: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], box_weight: float = 0.0
) -> dict[str, torch.Tensor]:
    where = batch["where"][:, None]
    count = where.sum().clamp(min=1)
    heat = focal_heatmap_loss(output["heatmap"], batch["heatmap"][:, None])
    size = (F.l1_loss(output["size"], batch["size"], reduction="none") * where).sum() / count
    offset = (F.l1_loss(output["offset"], batch["offset"], reduction="none") * where).sum() / count
    foreground = F.binary_cross_entropy_with_logits(
        output["foreground"], batch["foreground"][:, None]
    )
    total = heat + size + offset + foreground
    terms = {"heatmap": heat, "size": size, "offset": offset, "foreground": foreground}
    if box_weight > 0 and "box" in batch:
        # GIoU of the box every cell near a centre predicts (TTFNet): a peak one cell off
        # the centre still gives the whole chromosome, and the box is judged as IoU judges it
        weight = batch["box_weight"]
        chosen = weight > 0
        if bool(chosen.any()):
            predicted = predicted_boxes(output).permute(0, 2, 3, 1)[chosen]
            truth = batch["box"].permute(0, 2, 3, 1)[chosen]
            giou = generalized_box_iou_loss(predicted, truth, reduction="none")
            terms["box"] = (giou * weight[chosen]).sum() / weight[chosen].sum()
        else:
            terms["box"] = total.new_zeros(())
        total = total + box_weight * terms["box"]
    return {"loss": total, **terms}


def make_batch(
    samples: list[Sample], crop: int, input_width: float, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    pictures, fgs, parts = [], [], {}
    for sample in samples:
        picture, boxes, fg = augmented(sample, crop, input_width, rng)
        target = targets(boxes, picture.shape)
        pictures.append(picture)
        for key, value in target.items():
            parts.setdefault(key, []).append(value)
        small = cv2.resize(fg, (crop // STRIDE, crop // STRIDE), interpolation=cv2.INTER_AREA)
        fgs.append(small)
    return {
        "image": torch.from_numpy(np.stack(pictures))[:, None],
        **{key: torch.from_numpy(np.stack(values)) for key, values in parts.items()},
        "foreground": torch.from_numpy(np.stack(fgs)),
    }


@torch.no_grad()
def validate(
    net: FinderNet,
    samples: list[Sample],
    input_width: float,
    device,
    thresholds=(0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5),
) -> dict:
    """Detection recall, precision, F1 and exact counts on whole metaphases, per threshold."""
    net.eval()
    forward = numpy_outputs(net, device)
    found_by_threshold = {t: [] for t in thresholds}
    for sample in samples:
        prepared = finder_input(sample.grey, input_width, sample.width)
        output = in_tiles(forward, prepared.tensor[None, None])  # a large one: in tiles
        boxes = np.array(decode(output, min(thresholds))[0], np.float32).reshape(-1, 5)
        boxes[:, :4] /= prepared.scale
        for t in thresholds:
            kept = boxes[boxes[:, 4] >= t, :4]
            matched = len(match_boxes(kept, sample.boxes))
            found_by_threshold[t].append((len(kept), len(sample.boxes), matched))
    results = {}
    for t, rows in found_by_threshold.items():
        found = sum(r[0] for r in rows)
        truth = sum(r[1] for r in rows)
        matched = sum(r[2] for r in rows)
        recall = matched / max(truth, 1)
        precision = matched / max(found, 1)
        results[t] = {
            "detection_recall": recall,
            "detection_precision": precision,
            "f1": 2 * recall * precision / max(recall + precision, 1e-9),
            "count_exact": float(np.mean([r[0] == r[1] for r in rows])) if rows else 0.0,
        }
    best = max(results, key=lambda t: (results[t]["f1"], results[t]["count_exact"]))
    net.train()
    return {
        "threshold": best,
        **results[best],
        "by_threshold": {str(k): v for k, v in results.items()},
    }


def _cosine_tail(optimiser, tail: list, saved: dict | None):
    """Half a cosine from the learning rate ``tail[2]`` to zero over ``tail[1]`` steps."""
    length = max(1, int(tail[1]))
    for group in optimiser.param_groups:
        group["initial_lr"] = float(tail[2])
        group["lr"] = float(tail[2])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, length) / length))
    )
    if saved is not None:
        scheduler.load_state_dict(saved)
    return scheduler


class _Stop:
    requested = False


def train_finder(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = pick_device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    train_list = args.train_cells or str(Path(args.data) / "splits" / "train.txt")
    val_list = args.val_cells or str(Path(args.data) / "splits" / "val.txt")
    train_set, found = load_annotated_folder(args.data, train_list)
    problems += found
    val_set, found = load_annotated_folder(args.data, val_list)
    problems += found
    if args.limit:
        train_set, val_set = train_set[: args.limit], val_set[: max(2, args.limit // 4)]
    if args.val_limit:
        val_set = val_set[: args.val_limit]
    started = time.time()
    train_samples = load_samples(train_set, problems)
    if args.generated:
        train_samples += generated_samples(args.generated, args.seed)
    val_samples = load_samples(val_set, problems)
    problems += [p for m in train_set + val_set for p in m.problems]
    print(
        f"loaded {len(train_samples)} training and {len(val_samples)} validation metaphases "
        f"in {time.time() - started:.0f} s ({len(problems)} problems)",
        flush=True,
    )
    if not train_samples or not val_samples:
        print("train-finder: no usable metaphases to train or validate on", file=sys.stderr)
        return 2

    if getattr(args, "init", None):
        try:
            net, start = load_finder(args.init, device)
        except FinderError as error:
            print(f"train-finder: --init {error}", file=sys.stderr)
            return 2
        args.arch, args.channels, args.input_width = start.arch, start.channels, start.input_width
        print(f"starting from {Path(args.init).name} ({start.arch}, {start.model_id})", flush=True)
        net.train()
    else:
        start = None
        net = FinderNet(args.arch, args.channels).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = max(1, len(train_samples) // args.batch_size)
    total = steps_per_epoch * args.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=args.lr, total_steps=total, pct_start=0.05
    )
    epoch, best_f1, tail = 0, -1.0, None
    state_path = out / "state.pt"
    if args.resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        net.load_state_dict(state["net"])
        optimiser.load_state_dict(state["optimiser"])
        epoch, best_f1 = int(state["epoch"]), float(state["best_f1"])
        tail = state.get("tail")
        if tail is None and int(state["scheduler"]["total_steps"]) == total:
            scheduler.load_state_dict(state["scheduler"])
        elif tail is not None and int(tail[0]) + int(tail[1]) == total:
            scheduler = _cosine_tail(optimiser, tail, state["scheduler"])
        else:
            # resumed with another --epochs: the learning rate falls from where it stands to
            # zero over the epochs left, along half a cosine
            done = epoch * steps_per_epoch
            tail = [done, max(1, total - done), optimiser.param_groups[0]["lr"]]
            scheduler = _cosine_tail(optimiser, tail, None)
            print(
                f"resumed with {args.epochs} epochs: learning rate {tail[2]:.2e} falls to 0 "
                f"over {tail[1]} steps",
                flush=True,
            )
        rng = np.random.default_rng(args.seed + epoch)
        print(f"resumed after epoch {epoch} (best F1 {best_f1:.4f})", flush=True)
    config = {k: v for k, v in vars(args).items() if k != "func"}
    training_data = {
        "generated_metaphases": args.generated,
        "data": str(args.data),
        "train_cells": str(train_list),
        "val_cells": str(val_list),
        "n_train": len(train_samples),
        "n_val": len(val_samples),
    }
    if start is not None:
        training_data["init"] = {"name": start.name, "model_id": start.model_id}

    def on_signal(*_):
        _Stop.requested = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    events = open(out / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    try:
        net.train()
        while epoch < args.epochs:
            order = rng.permutation(len(train_samples))
            tick, sums = time.time(), {}
            for step in range(steps_per_epoch):
                chosen = [
                    train_samples[k]
                    for k in order[step * args.batch_size : (step + 1) * args.batch_size]
                ]
                batch = {
                    k: v.to(device)
                    for k, v in make_batch(chosen, args.crop, args.input_width, rng).items()
                }
                output = net(batch["image"])
                terms = losses(output, batch, args.box_loss)
                if not torch.isfinite(terms["loss"]):
                    print(
                        f"train-finder: training diverged at epoch {epoch + 1} step {step + 1}",
                        file=sys.stderr,
                    )
                    return 1
                optimiser.zero_grad(set_to_none=True)
                terms["loss"].backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                optimiser.step()
                scheduler.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                if (step + 1) % 20 == 0:
                    rate = (step + 1) * args.batch_size / (time.time() - tick)
                    print(
                        f"epoch {epoch + 1} step {step + 1}/{steps_per_epoch} "
                        f"loss {sums['loss'] / (step + 1):.3f} "
                        f"(heat {sums['heatmap'] / (step + 1):.3f}) {rate:.1f} img/s",
                        flush=True,
                    )
                if _Stop.requested:
                    break
            if _Stop.requested:
                print("stopped; the last finished epoch is kept (--resume continues)", flush=True)
                return 130
            epoch += 1
            metrics = validate(net, val_samples, args.input_width, device)
            means = {k: v / steps_per_epoch for k, v in sums.items()}
            line = {
                "event": "epoch",
                "epoch": epoch,
                "train": means,
                "val": metrics,
                "seconds": time.time() - tick,
            }
            events.write(json.dumps(line) + "\n")
            events.flush()
            print(
                f"epoch {epoch}: val recall {metrics['detection_recall']:.4f} precision "
                f"{metrics['detection_precision']:.4f} count exact {metrics['count_exact']:.3f} "
                f"at {metrics['threshold']} ({time.time() - tick:.0f} s)",
                flush=True,
            )
            header = FinderHeader(
                arch=args.arch,
                channels=args.channels,
                input_width=args.input_width,
                score_threshold=float(metrics["threshold"]),
                name=args.name,
                training_data=training_data,
                metrics={"val": metrics, "epoch": epoch},
                config=config,
            )
            save_finder(out / "last.safetensors", net, header)
            if metrics["f1"] > best_f1:
                best_f1 = metrics["f1"]
                save_finder(out / "best.safetensors", net, header)
            torch.save(
                {
                    "net": net.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "best_f1": best_f1,
                    "tail": tail,
                },
                state_path.with_suffix(".tmp"),
            )
            state_path.with_suffix(".tmp").replace(state_path)
    finally:
        events.close()
        signal.signal(signal.SIGTERM, previous)
    print(f"done: best val F1 {best_f1:.4f} -> {out / 'best.safetensors'}")
    return 0


def export_finder(args: argparse.Namespace, prog: str) -> int:
    from trainer.finder import FinderError, load_finder

    try:
        net, header = load_finder(args.checkpoint)
    except FinderError as error:
        print(f"{prog} export-finder: {error}", file=sys.stderr)
        return 2
    if args.threshold is not None:
        if not 0 < args.threshold < 1:
            print(f"{prog} export-finder: --threshold must lie in (0, 1)", file=sys.stderr)
            return 2
        header.score_threshold = args.threshold
    if args.name:
        header.name = args.name
    if args.flip_test is not None:
        header.flip_test = args.flip_test in ("on", "both")
        header.flip_vertical = args.flip_test == "both"
    for item in args.metrics:
        split, _, path = item.partition("=")
        try:
            header.metrics[split] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            print(f"{prog} export-finder: {path}: {error}", file=sys.stderr)
            return 2
        for bulky in ("metaphases_wrong", "problems"):
            header.metrics[split].pop(bulky, None)
    save_finder(args.out, net, header, torch.float16 if args.half else None)
    print(f"wrote {args.out} ({header.model_id})")
    return 0


def run_finder(args: argparse.Namespace, prog: str) -> int:
    problem = check_finder_args(args)
    if problem:
        print(f"{prog} train-finder: {problem}", file=sys.stderr)
        return 2
    try:
        return train_finder(args)
    except AnnotationError as error:
        print(f"{prog} train-finder: {error}", file=sys.stderr)
        return 2
