"""The training loop: data, model, optimiser, schedule, losses, validation, checkpoints.

Single process on one device, or one process per device under ``torchrun`` (PyTorch
DistributedDataParallel; ``nccl`` on GPUs, ``gloo`` on CPUs). Each rank draws its own
pairwise batches; gradients are averaged, so all ranks hold the same weights. Rank 0
validates, writes checkpoints and reports.

Outputs in the run folder:
    config.yaml        the resolved configuration
    events.jsonl       every event of the run
    best.safetensors   the model with the best validation accuracy (or the last one
                       when there is no validation data); with ``ema_decay`` the moving
                       average of the weights competes too (header ``metrics.weights``);
                       when training ends it gets its orientation head, fitted on the
                       training crops
    last.safetensors   the model after the last finished epoch
    state.pt           what ``--resume`` needs (tensors only; loaded with weights_only)
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel

from trainer.batches import Augmentation, PairwiseClassBalancedSampler, Pictures, augment
from trainer.calibration import calibration_report
from trainer.checkpoint import (
    CheckpointError,
    ModelHeader,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
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
from trainer.finetune import paired_difference
from trainer.losses import SCLObjective
from trainer.model import ChromosomeNet, known_architecture
from trainer.orientation import fit_orientation
from trainer.preprocessing import Preprocessing


class TrainingInterrupted(Exception):
    pass


class TrainingDiverged(Exception):
    """The loss (or the weights) became non-finite: the run stops at once, and nothing of
    it is written after that step (models saved at earlier epochs stay as they were)."""

    def __init__(self, step: int, what: str) -> None:
        self.step = step
        super().__init__(
            f"training diverged at step {step} ({what}); nothing was written after it, the "
            "models of earlier epochs are kept; try a lower --lr or a --grad-clip"
        )


def _weights_finite(net: torch.nn.Module) -> bool:
    """True when every float parameter and buffer is finite (one device sync)."""
    tensors = [t for t in net.state_dict().values() if t.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def load_training_data(
    config: TrainConfig, preprocessing: Preprocessing
) -> tuple[CropSet, CropSet]:
    """(training crops, validation crops) from every source the config names."""
    parts, judged = [], []
    if config.data:
        # (the other cuts judge the model; training reads them only when asked to)
        parts.append(load_dataset_crops(config.data, config.train_cells, preprocessing,
                                        other_cuts=config.other_cut_rate > 0))
        if config.val_cells:
            judged.append(load_dataset_crops(config.data, config.val_cells, preprocessing))
    for root in config.datasets:
        splits = Path(root) / "splits"
        train = splits / "train.txt"
        parts.append(load_dataset_crops(root, str(train) if train.is_file() else None,
                                        preprocessing, other_cuts=config.other_cut_rate > 0))
        if (splits / "val.txt").is_file():
            judged.append(load_dataset_crops(root, str(splits / "val.txt"), preprocessing))
    validation = CropSet.concatenate(judged) if judged else CropSet.empty(preprocessing)
    if config.case_files:
        cases = load_case_crops(config.case_files, preprocessing)
        if not len(validation) and config.val_fraction > 0 and len(cases.cell_names) > 1:
            # fine-tuning on a lab's cells: judge it on held-out cells of that lab, not on replay
            cases, validation = split_cells(cases, config.val_fraction, config.seed)
        parts.append(cases)
    if config.generated_cells:
        parts.append(generated_crops(config.generated_cells, config.seed, preprocessing))
    if not parts:
        raise DataError("no training data: give --data, --case-files or --generated-cells")
    training = CropSet.concatenate(parts)
    if not len(validation) and config.val_fraction > 0:
        training, validation = split_cells(training, config.val_fraction, config.seed)
    if not len(training):
        raise DataError("the training data holds no labelled crops")
    unknown = sorted(set(config.mix) - set(training.labs))
    if unknown:
        raise DataError(
            f"--mix names {', '.join(unknown)}, but the training labs are "
            f"{', '.join(training.labs)}"
        )
    return training, validation


def mix_weights(crops: CropSet, mix: dict) -> list[float] | None:
    """Each lab's weight in the draws (labs the mix leaves out: 0), or None (no mix)."""
    if not mix:
        return None
    return [float(mix.get(lab, 0.0)) for lab in crops.labs]


# a temperature is fitted on the val crops of a run only from this many on (fewer: a few
# held-out cells would set it by chance; the model then keeps its probabilities as they are)
MIN_CALIBRATION_CROPS = 500


def lab_accuracies(crops: CropSet, probabilities: np.ndarray) -> dict:
    """Crop accuracy per lab, and the figure a model is selected on: the mean over the labs
    (one lab's many crops must not outvote another's few), or plain crop accuracy."""
    correct = probabilities.argmax(axis=1) == crops.labels
    lab_of = crops.lab_of()
    result = {
        f"{lab}_crop_accuracy": float(correct[lab_of == k].mean())
        for k, lab in enumerate(crops.labs) if (lab_of == k).any()
    }
    result["selection"] = float(np.mean(list(result.values()))) if result else 0.0
    return result


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
            source_of=crops.source_of[keep],
            cell_bright=[crops.cell_bright[c] for c in names],
            **crops.other_cuts_of(keep),
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
        # a run resumed with another --epochs: from this step on, half a cosine from the
        # factor it had reached down to the floor over the steps that are left
        self.tail_from: int | None = None
        self.tail_factor = 1.0

    def __call__(self, step: int) -> float:
        if self.tail_from is not None and step >= self.tail_from:
            progress = min(1.0, (step - self.tail_from) / max(1, self.total - self.tail_from))
            return self.floor + (self.tail_factor - self.floor) * 0.5 * (
                1 + math.cos(math.pi * progress))
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def retarget(self, done: int, total_steps: int) -> None:
        """Resumed after ``done`` steps with a run of ``total_steps`` in all (another
        --epochs): fall from where the learning rate stands to the floor by the new end."""
        if max(1, total_steps) != self.total and done < total_steps:
            self.tail_factor = self(done)
            self.tail_from, self.total = done, max(1, total_steps)


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


def _refit(net: ChromosomeNet, header: ModelHeader, model_kwargs: dict) -> ChromosomeNet:
    """The parent's weights in the same backbone built with other model arguments."""
    try:
        refitted = build_model(replace(header, model_kwargs=model_kwargs))
        refitted.load_state_dict(net.state_dict(), strict=True)
    except (TypeError, ValueError, RuntimeError) as error:
        first = str(error).splitlines()[0]
        raise ConfigError(
            f"model arguments {model_kwargs} do not fit the parent model's weights ({first})"
        ) from None
    return refitted


def _augmentation(config: TrainConfig) -> Augmentation:
    return Augmentation(
        rotate_degrees=config.rotate_degrees,
        hflip=config.hflip,
        vflip=config.vflip,
        scale=config.scale_jitter,
        shift=config.shift,
        contrast=config.contrast,
        gamma=config.gamma_jitter,
        bend=config.bend,
    )


def train(config: TrainConfig, jsonl: bool = False) -> Path:
    """Run the training the config describes; returns the path of the best model."""
    return TrainingRun(config, jsonl).run()


class TrainingRun:
    """One run, read top to bottom: set-up, the epoch loop, validation and checkpoints."""

    def __init__(self, config: TrainConfig, jsonl: bool = False) -> None:
        self.config = config
        self.jsonl = jsonl
        self.rank, self.world = _distributed()
        self.lead = self.rank == 0
        self.folder = Path(config.output)
        self.device = pick_device(config.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.generator = _seed_everything(config.seed + self.rank)
        self.net, self.preprocessing, self.parent = self._model()
        self.training, self.validation = load_training_data(config, self.preprocessing)
        # without the contrastive term the temperature is unused (DDP refuses unused parameters)
        self.net.logit_scale.requires_grad_(config.lambda_con > 0)
        self.net.to(self.device).train()
        self.model = DistributedDataParallel(self.net) if self.world > 1 else self.net
        # the same gradients reach every rank, so the averages differ only in BatchNorm
        # statistics, like the weights themselves; rank 0's is the one judged and saved
        self.ema = ModelEmaV3(self.net, decay=config.ema_decay) if config.ema_decay else None
        self.sampler = PairwiseClassBalancedSampler(
            self.training.labels, config.crops_per_class, config.seed + self.rank,
            groups=self.training.lab_of(), weights=mix_weights(self.training, config.mix),
        )
        self.pictures = Pictures(
            self.training.images, self.training.other_images, self.training.other_of,
            config.other_cut_rate, config.seed + self.rank,
        )
        self.steps_per_epoch = config.steps_per_epoch or max(
            1, len(self.training) // (2 * self.sampler.batch_size)
        )
        self.total_steps = self.steps_per_epoch * config.epochs
        optimiser_class = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[config.optimizer]
        self.optimiser = optimiser_class(
            [p for p in self.net.parameters() if p.requires_grad],
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser, LearningRate(config, self.total_steps, self.steps_per_epoch)
        )
        self.objective = SCLObjective(config.lambda_con, config.lambda_cls, config.focal_gamma)
        self.augmentation = _augmentation(config)
        self.start_epoch, self.best_accuracy, self.history = 0, -1.0, []
        self.stop_signal: int | None = None

    def _model(self) -> tuple[ChromosomeNet, Preprocessing, dict | None]:
        config = self.config
        if not config.init_checkpoint:
            preprocessing = Preprocessing(
                height=config.input_height,
                width=config.input_width,
                straighten_bend=config.straighten_bend or 0.0,
            )
            config.straighten_bend = preprocessing.straighten_bend
            return _new_model(config), preprocessing, None
        # fine-tuning keeps the parent's backbone and input; model arguments that keep the
        # weights' shapes (a dilated last stage: output_stride) may be added or changed
        net, header = load_checkpoint(config.init_checkpoint)
        model_kwargs = {**header.model_kwargs, **config.model_kwargs}
        if model_kwargs != header.model_kwargs:
            net = _refit(net, header, model_kwargs)
        net.orientation = None  # refitted on the new embeddings when training ends
        config.arch, config.model_kwargs = header.arch, model_kwargs
        config.embedding_dim = header.embedding_dim
        preprocessing = header.input_preprocessing
        if config.straighten_bend is not None:  # the model learns the new input
            preprocessing = replace(preprocessing, straighten_bend=config.straighten_bend)
        config.input_height, config.input_width = preprocessing.height, preprocessing.width
        config.straighten_bend = preprocessing.straighten_bend
        parent = {
            "name": header.name,
            "model_id": header.model_id,
            "path": Path(config.init_checkpoint).name,
        }
        return net, preprocessing, parent

    def run(self) -> Path:
        if self.config.resume:
            self._resume()
        self.events = self._start_events()
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        self.started, self.seen = time.monotonic(), 0
        try:
            for epoch in range(self.start_epoch, self.config.epochs):
                record = self._train_epoch(epoch)
                self._end_epoch(epoch, record)
        except (KeyboardInterrupt, TrainingInterrupted):
            if self.lead:
                message = f"stopped; continue with --resume --output {self.folder}"
                self.events.emit("interrupted", message=message)
            raise TrainingInterrupted from None
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
            self.events.close()
        return self._finish()

    def _on_sigterm(self, number: int, frame: object) -> None:
        self.stop_signal = number  # stop between two steps, never inside a write

    def _resume(self) -> None:
        path = self.folder / "state.pt"
        if not path.is_file():
            return
        try:  # weights_only: tensors and plain containers; anything carrying code is refused
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state["model"])
            self.optimiser.load_state_dict(state["optimiser"])
            self.schedule.load_state_dict(state["schedule"])  # restores the saved length too
            self.start_epoch = int(state["epoch"])
            learning_rate = self.schedule.lr_lambdas[0]
            learning_rate.retarget(self.start_epoch * self.steps_per_epoch, self.total_steps)
            # the optimiser's lr now follows the (possibly new) schedule from the next step
            self.best_accuracy = float(state["best_accuracy"])
            self.history = list(state.get("history", []))
            if self.ema is not None:
                self.ema.module.load_state_dict(state.get("ema", state["model"]))
        except Exception as error:  # damaged, of another run's model, or not ours at all
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise CheckpointError(
                f"{path}: the saved training state cannot be resumed ({first}); "
                "start the run again without --resume, or into another --output folder"
            ) from None
        seed = self.config.seed + self.rank + 7919 * self.start_epoch
        self.sampler.rng = np.random.default_rng(seed)
        self.generator.manual_seed(seed)

    def _start_events(self) -> EventLog:
        if self.lead and self.start_epoch == 0:
            (self.folder / "events.jsonl").unlink(missing_ok=True)  # a fresh log for a fresh run
        events = EventLog(
            self.folder if self.lead else None, self.jsonl, self.total_steps, self.lead
        )
        if self.lead:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "config.yaml").write_text(self.config.to_yaml(), encoding="utf-8")
            events.emit(
                "start",
                arch=self.config.arch,
                device=str(self.device),
                world_size=self.world,
                train=describe(self.training),
                val=describe(self.validation) if len(self.validation) else "none",
                steps_per_epoch=self.steps_per_epoch,
                epochs=self.config.epochs,
                resumed_at_epoch=self.start_epoch,
                problems=len(self.training.problems),
            )
            events.bar.n = self.start_epoch * self.steps_per_epoch
        return events

    def _train_epoch(self, epoch: int) -> dict:
        config = self.config
        self.objective.set_gamma(0.0 if epoch < config.ce_warmup_epochs else config.focal_gamma)
        sums: dict[str, float] = {}
        epoch_started = time.monotonic()
        for step_in_epoch in range(self.steps_per_epoch):
            if self.stop_signal is not None:
                raise TrainingInterrupted
            first, second, labels = self.sampler.draw()
            batch = torch.from_numpy(self.pictures(np.concatenate([first, second])))
            x = augment(batch, self.preprocessing, self.augmentation, self.generator)
            terms = training_step(
                self.model, self.objective, self.optimiser, x, labels, self.device, config.grad_clip
            )
            self.schedule.step()
            step = epoch * self.steps_per_epoch + step_in_epoch + 1
            if self.ema is not None:
                self.ema.update(self.net, step)  # step 1 copies the weights, then averages
            self.seen += len(x)
            values = {k: float(v) for k, v in terms.items()}
            self._check_finite(step, values["total"])
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            last = step_in_epoch == self.steps_per_epoch - 1
            if self.lead and (step % config.log_every == 0 or last):
                self._report_step(epoch, step, values)
        record = {"epoch": epoch + 1, "seconds": time.monotonic() - epoch_started}
        record.update({f"loss_{k}": v / self.steps_per_epoch for k, v in sums.items()})
        return record

    def _check_finite(self, step: int, loss: float) -> None:
        """Stop at the first non-finite loss (every rank at the same step: one all-reduce)."""
        diverged = not math.isfinite(loss)
        if self.world > 1:
            flag = torch.tensor([float(diverged)], device=self.device)
            dist.all_reduce(flag)
            diverged = bool(flag.item() > 0)
        if diverged:
            self._diverged(step, f"the loss became {loss}" if not math.isfinite(loss)
                           else "the loss became non-finite on another process")

    def _diverged(self, step: int, what: str) -> None:
        error = TrainingDiverged(step, what)
        if self.lead:
            self.events.emit("diverged", step=step, message=str(error))
        raise error

    def _report_step(self, epoch: int, step: int, values: dict[str, float]) -> None:
        elapsed = time.monotonic() - self.started
        done_here = step - self.start_epoch * self.steps_per_epoch
        self.events.emit(
            "step",
            epoch=epoch + 1,
            step=step,
            total_steps=self.total_steps,
            lr=self.schedule.get_last_lr()[0],
            images_per_second=self.seen * self.world / elapsed,
            eta_seconds=elapsed / done_here * (self.total_steps - step),
            temperature=1.0 / float(self.net.similarity_scale.detach()),
            **{f"loss_{k}": v for k, v in values.items()},
        )
        self.events.advance(step, loss=values["total"])

    def _end_epoch(self, epoch: int, record: dict) -> None:
        if self.world > 1:
            # DDP averages gradients but each rank keeps its own BatchNorm statistics;
            # rank 0's are the ones saved, so every rank takes them
            for buffer in self.net.buffers():
                dist.broadcast(buffer, 0)
        # the last step's update may itself have made the weights non-finite (its loss was
        # finite): they must not reach last/best.safetensors or the resume state
        broken = not all(_weights_finite(net) for net in self._candidates().values())
        if self.world > 1:
            flag = torch.tensor([float(broken)], device=self.device)
            dist.all_reduce(flag)
            broken = bool(flag.item() > 0)
        if broken:
            self._diverged((epoch + 1) * self.steps_per_epoch, "the weights became non-finite")
        if self.lead:
            self._validate_and_save(epoch, record)
            self.events.emit("epoch", **record)
        if self.world > 1:
            dist.barrier()

    def _candidates(self) -> dict[str, ChromosomeNet]:
        """The weights that compete for best.safetensors: the trained ones and their average."""
        if self.ema is None:
            return {"trained": self.net}
        return {"trained": self.net, "average": self.ema.module}

    def _validate_and_save(self, epoch: int, record: dict) -> None:
        candidates = self._candidates()
        probabilities = {}
        if len(self.validation):
            scores = {}
            for weights, net in candidates.items():
                metrics, predictions = evaluate_crops(
                    net, self.validation, self.preprocessing, self.device,
                    self.config.eval_batch_size,
                )  # fmt: skip
                metrics.update(lab_accuracies(self.validation, predictions.probabilities))
                scores[weights] = metrics
                probabilities[weights] = predictions.probabilities
                if len(candidates) > 1:
                    record[f"val_{weights}_crop_accuracy"] = metrics["crop_accuracy"]
            # ties go to the trained weights (first in the dict)
            weights = max(scores, key=lambda name: scores[name]["selection"])
            for key in ("crop_accuracy", "macro_recall", "macro_auc", *self._lab_keys()):
                if key in scores[weights]:  # a lab may have no crops among the held-out cells
                    record[f"val_{key}"] = scores[weights][key]
            accuracy = scores[weights]["selection"]
        else:
            weights = "average" if self.ema is not None else "trained"
            accuracy = float(epoch)  # no validation data: the latest model is the best
        self.history.append(dict(record))
        save_checkpoint(
            self.folder / "last.safetensors", self.net, self._header({"history": self.history})
        )
        if accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
            val = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
            metrics = {"val": val, "epoch": epoch + 1, "history": self.history}
            if len(candidates) > 1:
                metrics["weights"] = weights
            header = self._header(metrics)
            if len(self.validation) >= MIN_CALIBRATION_CROPS and weights in probabilities:
                # the best model's probabilities calibrated on the run's own val crops
                report = calibration_report(probabilities[weights], self.validation.labels)
                header.calibration = {**report, "fitted_on": ["this run's val crops"]}
            save_checkpoint(self.folder / "best.safetensors", candidates[weights], header)
        record["best_val_crop_accuracy"] = self.best_accuracy if len(self.validation) else None
        self._save_state(epoch + 1)

    def _lab_keys(self) -> list[str]:
        labs = self.validation.labs
        return [f"{lab}_crop_accuracy" for lab in labs] if len(labs) > 1 else []

    def _fit_orientation(self) -> dict | None:
        """Give the best model its orientation head (``trainer.orientation``), fitted on the
        training crops; the file is replaced atomically, so a kill keeps the model without."""
        best = self.folder / "best.safetensors"
        if not best.is_file():
            return None
        net, header = load_checkpoint(best, self.device)
        report = fit_orientation(net, self.training.images, self.preprocessing, self.device)
        if report["kept"]:
            header.orientation = report
            save_checkpoint(best, net, header)
        return report

    def _compare_with_parent(self) -> dict | None:
        """A fine-tuned model against the model it started from, on the held-out cells
        (crop accuracy, assigned accuracy, ISCN exact); also written to comparison.json."""
        best = self.folder / "best.safetensors"
        if self.parent is None or not len(self.validation) or not best.is_file():
            return None
        results = {"n_cells": len(self.validation.cell_names), "n_crops": len(self.validation)}
        correct = {}
        for role, path in (("parent", self.config.init_checkpoint), ("new", best)):
            net, _ = load_checkpoint(path, self.device)
            metrics, predictions = evaluate_crops(
                net, self.validation, self.preprocessing, self.device, self.config.eval_batch_size
            )
            results[role] = _compared(metrics)
            correct[role] = predictions.probabilities.argmax(axis=1) == self.validation.labels
        # how far the held-out cells let the difference be trusted (bootstrap over cells)
        results["crop_accuracy_gain"] = paired_difference(
            correct["parent"], correct["new"], self.validation.cell_of
        )
        (self.folder / "comparison.json").write_text(
            json.dumps(results, indent=1), encoding="utf-8"
        )
        return results

    def _header(self, metrics: dict) -> ModelHeader:
        config = self.config
        return ModelHeader(
            arch=config.arch,
            embedding_dim=config.embedding_dim,
            preprocessing=self.preprocessing.to_dict(),
            model_kwargs=config.model_kwargs,
            name=config.name or self.folder.name,
            training_data={"train": self.training.summary(), "val": self.validation.summary()},
            metrics=metrics,
            config=asdict(config),
            parent=self.parent,
        )

    def _save_state(self, epochs_done: int) -> None:
        """What --resume needs, written atomically (a kill mid-write keeps the previous one)."""
        path = self.folder / "state.pt"
        temporary = path.with_name(f".{path.name}.tmp")
        state = {
            "model": self.net.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "schedule": self.schedule.state_dict(),
            "epoch": epochs_done,
            "best_accuracy": self.best_accuracy,
            "history": self.history,
        }
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        torch.save(state, temporary)
        os.replace(temporary, path)

    def _finish(self) -> Path:
        if self.config.save_every_rank:
            save_checkpoint(
                self.folder / f"rank{self.rank}.safetensors", self.net, self._header({})
            )
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()
        if self.lead:
            events = EventLog(self.folder, self.jsonl, 0)
            orientation = self._fit_orientation()
            if orientation is not None:
                events.emit("orientation", **orientation)
            comparison = self._compare_with_parent()
            events.emit(
                "done",
                best=str(self.folder / "best.safetensors"),
                best_val_crop_accuracy=self.best_accuracy,
                seconds=time.monotonic() - self.started,
                comparison=comparison,
            )
            events.close()
        return self.folder / "best.safetensors"


COMPARED = ("crop_accuracy", "assigned_accuracy", "iscn_exact")


def _compared(metrics: dict) -> dict:
    return {key: metrics[key] for key in COMPARED if key in metrics}


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
