"""Training configuration: dataclass defaults < YAML file < command-line overrides.

Every field is a command-line option of its own (``--lr 3e-4``, ``--arch resnet18``,
``--lambda-con 0``). The resolved configuration is written as ``config.yaml`` beside the
outputs, so any run can be repeated with ``--config that/config.yaml``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

# Crops whose two most probable types are closer than this are looked at a second time,
# upside down, and the two looks averaged (see ``predict``). Chosen on the validation cells:
# there it gave the whole crop-accuracy gain of flipping every crop while looking twice at
# only 9-19 % of the crops (bench/second_look.py measures it for any model).
SECOND_LOOK_MARGIN = 0.5


# a bend is measured in chromosome widths; a chromosome folded in two is about 5
MAX_BEND = 10.0


class ConfigError(Exception):
    pass


def check_straighten_bend(value: float | None) -> None:
    """Refuse a ``--straighten-bend`` outside 0 (never) .. ``MAX_BEND``; None means unset."""
    if value is not None and not 0 <= value <= MAX_BEND:
        raise ConfigError(
            f"--straighten-bend must lie between 0 (never straighten) and {MAX_BEND:g} "
            "chromosome widths, e.g. 0.5"
        )


@dataclass
class TrainConfig:
    # data
    data: str | None = None  # labelled dataset root (e.g. shared/data/gband612)
    train_cells: str | None = None  # cell list of the training split (default: all cells)
    val_cells: str | None = None  # cell list used for model selection
    case_files: list[str] = field(default_factory=list)  # corrected case files to learn from
    val_fraction: float = 0.0  # hold out this fraction of cells when no val list is given
    generated_cells: int = 0  # cells from the synthetic generator mixed into training
    # model
    arch: str = "resnet18"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    embedding_dim: int = 1024
    input_height: int = 128
    input_width: int = 64
    init_checkpoint: str | None = None  # fine-tune from this model
    # the method
    crops_per_class: int = 1  # k: crops of each type in each of the two batches
    lambda_con: float = 1.0  # 0 = the ablation without supervised contrastive learning
    lambda_cls: float = 1.0
    focal_gamma: float = 2.0
    ce_warmup_epochs: int = 0  # epochs of plain cross-entropy (gamma 0) before focal losses
    temperature: float = 0.07
    max_logit_scale: float = 100.0
    # augmentation
    rotate_degrees: float = 15.0
    hflip: float = 0.5
    vflip: float = 0.5
    scale_jitter: float = 0.1
    shift: float = 0.05
    contrast: float = 0.25
    gamma_jitter: float = 0.3
    bend: float = 0.0  # largest sideways bow, as a fraction of the canvas width (0: none)
    # straighten chromosomes whose centre line strays at least this many chromosome widths
    # from the line between its ends before they are placed (0: never; unset: as the parent
    # model does, never for a new model); stored with the model, so inference does the same
    straighten_bend: float | None = None
    # optimisation
    optimizer: str = "adamw"  # adamw | adam
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 10
    steps_per_epoch: int = 0  # 0: one pass over the training crops
    warmup_epochs: float = 0.5  # linear learning-rate warm-up, then cosine decay
    min_lr_ratio: float = 0.01
    grad_clip: float = 5.0
    # > 0: also keep an exponential moving average of the weights (timm's ModelEmaV3) with
    # this decay per step; each epoch the better of the two on validation is the one kept
    ema_decay: float = 0.0
    # running
    device: str = "auto"  # auto | cpu | cuda | cuda:1 | mps
    threads: int = 0  # CPU threads for torch (0: torch's default)
    seed: int = 0
    output: str = "runs/default"
    name: str = ""  # model name stored in the header (default: the output folder's name)
    resume: bool = False  # continue the run in ``output`` from its last saved state
    log_every: int = 20
    eval_batch_size: int = 256
    save_every_rank: bool = False  # multi-process check: every rank writes its weights

    def check(self) -> None:
        """Refuse values that cannot work, naming the option."""
        problems = []
        positive = ("epochs", "crops_per_class", "embedding_dim", "log_every", "eval_batch_size")
        problems += [
            f"--{n.replace('_', '-')} must be at least 1" for n in positive if getattr(self, n) < 1
        ]
        if self.input_height < 16 or self.input_width < 16:
            problems.append("--input-height and --input-width must be at least 16 pixels")
        if self.lr <= 0:
            problems.append("--lr must be positive")
        if self.lambda_con < 0 or self.lambda_cls < 0 or self.lambda_con + self.lambda_cls == 0:
            problems.append("--lambda-con and --lambda-cls must be >= 0 and not both 0")
        if self.optimizer not in ("adam", "adamw"):
            problems.append(f"--optimizer {self.optimizer!r}: use adam or adamw")
        if not 0 <= self.val_fraction < 1:
            problems.append("--val-fraction must be in [0, 1)")
        if not 0 <= self.ema_decay < 1:
            problems.append("--ema-decay must be in [0, 1) (0: no moving average)")
        if not 0 <= self.bend < 0.5:
            problems.append("--bend must be in [0, 0.5) (a fraction of the canvas width)")
        try:
            check_straighten_bend(self.straighten_bend)
        except ConfigError as error:
            problems.append(str(error))
        if self.steps_per_epoch < 0 or self.generated_cells < 0:
            problems.append("--steps-per-epoch and --generated-cells cannot be negative")
        if problems:
            raise ConfigError("; ".join(problems))

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field, defaulting to 'not given' so the YAML can fill it."""
    hints = get_type_hints(TrainConfig)
    for item in dataclasses.fields(TrainConfig):
        hint = hints[item.name]
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": item.name}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif hint == list[str]:
            kwargs["nargs"] = "*"
        elif hint == dict[str, Any]:
            kwargs["type"] = _yaml_mapping
        elif hint in (int, float):
            kwargs["type"] = hint
        elif hint == float | None:
            kwargs["type"] = float
        parser.add_argument(_option(item.name), **kwargs)


def _yaml_mapping(text: str) -> dict[str, Any]:
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a mapping such as '{drop_rate: 0.1}'")
    return value


def resolve(config_file: str | None, overrides: dict[str, Any]) -> TrainConfig:
    values: dict[str, Any] = {}
    if config_file:
        values.update(read_yaml(config_file))
    values.update(overrides)
    try:
        config = TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(str(error)) from None
    config.check()
    return config


def read_yaml(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read config ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a mapping of option: value")
    data = {str(key).replace("-", "_"): value for key, value in data.items()}
    known = {item.name for item in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return data
