"""The training loop: data, model, optimiser, schedule, losses, validation, checkpoints.

Single process on one device, or one process per device under ``torchrun`` (PyTorch
DistributedDataParallel; ``nccl`` on GPUs, ``gloo`` on CPUs). Each rank draws its own
pairwise batches; gradients are averaged, so all ranks hold the same weights. Rank 0
validates, writes checkpoints and reports.

Outputs in the run folder:
    config.yaml        the resolved configuration
    events.jsonl       every event of the run
    best.safetensors   the model with the best validation accuracy (or the last one
                       when there is no validation data)
    last.safetensors   the model after the last finished epoch
    state.pt           what ``--resume`` needs (tensors only; loaded with weights_only)
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from trainer.batches import Augmentation, PairwiseClassBalancedSampler, augment
from trainer.checkpoint import ModelHeader, load_checkpoint, save_checkpoint
from trainer.config import ConfigError, TrainConfig
from trainer.data import (
    CropSet,
    DataError,
    describe,
    generated_crops,
    load_case_crops,
    load_dataset_crops,
)
from trainer.devices import autocast, pick_device
from trainer.evaluation import evaluate_crops
from trainer.events import EventLog
from trainer.losses import SCLObjective
from trainer.model import ChromosomeNet, known_architecture
from trainer.preprocessing import Preprocessing


class TrainingInterrupted(Exception):
    pass


def load_training_data(
    config: TrainConfig, preprocessing: Preprocessing
) -> tuple[CropSet, CropSet]:
    """(training crops, validation crops) from every source the config names."""
    parts, validation = [], CropSet.empty(preprocessing)
    if config.data:
        parts.append(load_dataset_crops(config.data, config.train_cells, preprocessing))
        if config.val_cells:
            validation = load_dataset_crops(config.data, config.val_cells, preprocessing)
    if config.case_files:
        parts.append(load_case_crops(config.case_files, preprocessing))
    if config.generated_cells:
        parts.append(generated_crops(config.generated_cells, config.seed, preprocessing))
    if not parts:
        raise DataError("no training data: give --data, --case-files or --generated-cells")
    training = CropSet.concatenate(parts)
    if not len(validation) and config.val_fraction > 0:
        training, validation = split_cells(training, config.val_fraction, config.seed)
    if not len(training):
        raise DataError("the training data holds no labelled crops")
    return training, validation


def split_cells(crops: CropSet, fraction: float, seed: int) -> tuple[CropSet, CropSet]:
    """Hold out whole cells (never crops of one cell on both sides)."""
    n_cells = len(crops.cell_names)
    n_held = min(n_cells - 1, max(1, round(n_cells * fraction))) if n_cells > 1 else 0
    held = set(np.random.default_rng(seed).choice(n_cells, n_held, replace=False).tolist())

    def subset(keep: np.ndarray, names: list[int]) -> CropSet:
        remap = {old: new for new, old in enumerate(names)}
        return CropSet(
            images=crops.images[keep],
            labels=crops.labels[keep],
            cell_of=np.asarray([remap[c] for c in crops.cell_of[keep]], np.int64),
            cell_names=[crops.cell_names[c] for c in names],
            sources=crops.sources,
        )

    in_held = np.isin(crops.cell_of, list(held))
    training = subset(~in_held, [c for c in range(n_cells) if c not in held])
    training.problems = crops.problems
    return training, subset(in_held, sorted(held))


class LearningRate:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio``."""

    def __init__(self, config: TrainConfig, total_steps: int, steps_per_epoch: int) -> None:
        self.warmup = max(0, round(config.warmup_epochs * steps_per_epoch))
        self.total = max(1, total_steps)
        self.floor = config.min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _new_model(config: TrainConfig) -> ChromosomeNet:
    if not known_architecture(config.arch):
        raise ConfigError(
            f"--arch {config.arch!r} is not a timm model name (see timm.list_models())"
        )
    try:
        return ChromosomeNet(
            config.arch,
            config.embedding_dim,
            temperature=config.temperature,
            max_logit_scale=config.max_logit_scale,
            **config.model_kwargs,
        )
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(
            f"cannot build {config.arch} with {config.model_kwargs}: {error}"
        ) from None


def _augmentation(config: TrainConfig) -> Augmentation:
    return Augmentation(
        rotate_degrees=config.rotate_degrees,
        hflip=config.hflip,
        vflip=config.vflip,
        scale=config.scale_jitter,
        shift=config.shift,
        contrast=config.contrast,
        gamma=config.gamma_jitter,
    )


def train(config: TrainConfig, jsonl: bool = False) -> Path:
    """Run the training the config describes; returns the path of the best model."""
    rank, world = _distributed()
    device = pick_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    generator = _seed_everything(config.seed + rank)
    run = Path(config.output)
    lead = rank == 0

    parent, parent_net = None, None
    preprocessing = Preprocessing(height=config.input_height, width=config.input_width)
    if config.init_checkpoint:
        parent_net, parent_header = load_checkpoint(config.init_checkpoint)
        preprocessing = parent_header.input_preprocessing
        parent = {
            "name": parent_header.name,
            "model_id": parent_header.model_id,
            "path": Path(config.init_checkpoint).name,
        }
        if parent_header.arch != config.arch:
            config.arch, config.model_kwargs = parent_header.arch, parent_header.model_kwargs
            config.embedding_dim = parent_header.embedding_dim
    net = parent_net or _new_model(config)
    training, validation = load_training_data(config, preprocessing)

    net.to(device).train()
    model = DistributedDataParallel(net) if world > 1 else net
    sampler = PairwiseClassBalancedSampler(
        training.labels, config.crops_per_class, config.seed + rank
    )
    steps_per_epoch = config.steps_per_epoch or max(1, len(training) // (2 * sampler.batch_size))
    total_steps = steps_per_epoch * config.epochs
    parameters = [p for p in net.parameters() if p.requires_grad]
    optimiser_class = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[config.optimizer]
    optimiser = optimiser_class(parameters, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, LearningRate(config, total_steps, steps_per_epoch)
    )
    objective = SCLObjective(config.lambda_con, config.lambda_cls, config.focal_gamma)
    augmentation = _augmentation(config)

    start_epoch, best_accuracy, history = 0, -1.0, []
    if config.resume and (run / "state.pt").is_file():
        state = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, best_accuracy = int(state["epoch"]), float(state["best_accuracy"])
        sampler.rng = np.random.default_rng(config.seed + rank + 7919 * start_epoch)
        generator.manual_seed(config.seed + rank + 7919 * start_epoch)
        history = list(state.get("history", []))

    if lead and start_epoch == 0:
        (run / "events.jsonl").unlink(missing_ok=True)  # a fresh run starts a fresh log
    events = EventLog(run if lead else None, jsonl, total_steps, enabled=lead)
    if lead:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
        events.emit(
            "start",
            arch=config.arch,
            device=str(device),
            world_size=world,
            train=describe(training),
            val=describe(validation) if len(validation) else "none",
            steps_per_epoch=steps_per_epoch,
            epochs=config.epochs,
            resumed_at_epoch=start_epoch,
            problems=len(training.problems),
        )
        events.bar.n = start_epoch * steps_per_epoch

    def header(metrics: dict) -> ModelHeader:
        return ModelHeader(
            arch=config.arch,
            embedding_dim=config.embedding_dim,
            preprocessing=preprocessing.to_dict(),
            model_kwargs=config.model_kwargs,
            name=config.name or run.name,
            training_data={"train": training.summary(), "val": validation.summary()},
            metrics=metrics,
            config=asdict(config),
            parent=parent,
        )

    stop = {"signal": None}
    previous = signal.getsignal(signal.SIGTERM)
    if threading_is_main():
        signal.signal(signal.SIGTERM, lambda number, frame: stop.update(signal=number))
    started, seen = time.monotonic(), 0
    try:
        for epoch in range(start_epoch, config.epochs):
            objective.set_gamma(0.0 if epoch < config.ce_warmup_epochs else config.focal_gamma)
            sums: dict[str, float] = {}
            epoch_started = time.monotonic()
            for step_in_epoch in range(steps_per_epoch):
                if stop["signal"] is not None:
                    raise TrainingInterrupted
                first, second, labels = sampler.draw()
                batch = torch.from_numpy(training.images[np.concatenate([first, second])])
                x = augment(batch, preprocessing, augmentation, generator)
                terms = training_step(
                    model, objective, optimiser, x, labels, device, config.grad_clip
                )
                schedule.step()
                half = len(labels)
                seen += 2 * half
                values = {k: float(v) for k, v in terms.items()}
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
                step = epoch * steps_per_epoch + step_in_epoch + 1
                if lead and (step % config.log_every == 0 or step_in_epoch == steps_per_epoch - 1):
                    elapsed = time.monotonic() - started
                    done_here = step - start_epoch * steps_per_epoch
                    events.emit(
                        "step",
                        epoch=epoch + 1,
                        step=step,
                        total_steps=total_steps,
                        lr=schedule.get_last_lr()[0],
                        images_per_second=seen * world / elapsed,
                        eta_seconds=elapsed / done_here * (total_steps - step),
                        temperature=1.0 / float(net.similarity_scale.detach()),
                        **{f"loss_{k}": v for k, v in values.items()},
                    )
                    events.advance(step, loss=values["total"])

            if world > 1:
                # DDP averages gradients but each rank keeps its own BatchNorm statistics;
                # rank 0's are the ones saved, so every rank takes them
                for buffer in net.buffers():
                    dist.broadcast(buffer, 0)
            record = {"epoch": epoch + 1, "seconds": time.monotonic() - epoch_started}
            record.update({f"loss_{k}": v / steps_per_epoch for k, v in sums.items()})
            if lead:
                if len(validation):
                    metrics, _ = evaluate_crops(
                        net, validation, preprocessing, device, config.eval_batch_size
                    )
                    record.update(
                        {
                            f"val_{k}": metrics[k]
                            for k in ("crop_accuracy", "macro_recall", "macro_auc")
                        }
                    )
                    accuracy = metrics["crop_accuracy"]
                else:
                    accuracy = float(epoch)  # no validation data: the latest model is the best
                history.append(record)
                save_checkpoint(run / "last.safetensors", net, header({"history": history}))
                if accuracy > best_accuracy:
                    best_accuracy = accuracy
                    save_checkpoint(
                        run / "best.safetensors",
                        net,
                        header(
                            {
                                "val": {
                                    k[4:]: v for k, v in record.items() if k.startswith("val_")
                                },
                                "epoch": epoch + 1,
                                "history": history,
                            }
                        ),
                    )
                record["best_val_crop_accuracy"] = best_accuracy if len(validation) else None
                _save_state(
                    run / "state.pt", net, optimiser, schedule, epoch + 1, best_accuracy, history
                )
                events.emit("epoch", **record)
            if world > 1:
                dist.barrier()
    except (KeyboardInterrupt, TrainingInterrupted):
        if lead:
            events.emit("interrupted", message=f"stopped; continue with --resume --output {run}")
        raise TrainingInterrupted from None
    finally:
        if threading_is_main():
            signal.signal(signal.SIGTERM, previous)
        events.close()

    if config.save_every_rank:
        save_checkpoint(run / f"rank{rank}.safetensors", net, header({}))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if lead:
        events = EventLog(run, jsonl, 0)
        events.emit(
            "done",
            best=str(run / "best.safetensors"),
            best_val_crop_accuracy=best_accuracy,
            seconds=time.monotonic() - started,
        )
        events.close()
    return run / "best.safetensors"


def training_step(
    model: torch.nn.Module,
    objective: SCLObjective,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    labels: np.ndarray,
    device: torch.device,
    grad_clip: float = 0.0,
) -> dict[str, torch.Tensor]:
    """One optimisation step on the two batches stacked in ``x`` (B1 then B2)."""
    net = model.module if isinstance(model, DistributedDataParallel) else model
    x, y = x.to(device, non_blocking=True), torch.from_numpy(labels).to(device)
    with autocast(device):
        output = model(x)  # one pass over both batches: BatchNorm sees all 2N crops
    half = len(labels)
    terms = objective(
        (output.embedding[:half], output.embedding[half:]),
        (output.logits[:half], output.logits[half:]),
        y,
        net.similarity_scale,
    )
    optimiser.zero_grad(set_to_none=True)
    terms["total"].backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimiser.step()
    return {name: value.detach() for name, value in terms.items()}


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _save_state(
    path: Path, net, optimiser, schedule, epoch: int, best: float, history: list
) -> None:
    """Resume state, written atomically (a kill mid-write keeps the previous one)."""
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(
        {
            "model": net.state_dict(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "epoch": epoch,
            "best_accuracy": best,
            "history": history,
        },
        temporary,
    )
    os.replace(temporary, path)
