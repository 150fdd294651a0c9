"""Training configuration: dataclass defaults < YAML file < command-line overrides.

Every field is a command-line option of its own (``--lr 3e-4``, ``--arch resnet18``,
``--lambda-con 0``). The resolved configuration is written as ``config.yaml`` beside the
outputs, so any run can be repeated with ``--config that/config.yaml``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
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
MIN_INPUT_SIDE, MAX_INPUT_SIDE = 16, 1024  # pixels of the model's input canvas
MAX_THREADS = 1024
MAX_BATCH_SIZE = 65_536  # crops per forward pass at evaluation
MAX_KWARG = 4096  # largest whole number a model argument may hold (embed_dim, depth, ...)
# model arguments that would make timm fetch or read files (checkpoint_path goes through
# torch.load) or build something other than a plain network
FORBIDDEN_KWARGS = frozenset({
    "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir",
    "pretrained_strict", "features_only", "scriptable", "exportable", "no_jit",
})

# (lowest, highest, lowest allowed itself?) of each number option; every one must also be
# finite: --lr inf or nan reached the optimiser and wrote a model of non-finite weights
RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 1.0, False),
    "weight_decay": (0.0, 1.0, True),
    "temperature": (0.0, 10.0, False),
    "max_logit_scale": (1.0, 1e4, True),
    "focal_gamma": (0.0, 10.0, True),
    "lambda_con": (0.0, 1e3, True),
    "lambda_cls": (0.0, 1e3, True),
    "warmup_epochs": (0.0, 1e6, True),
    "min_lr_ratio": (0.0, 1.0, True),
    "grad_clip": (0.0, 1e6, True),
    "rotate_degrees": (0.0, 180.0, True),
    "hflip": (0.0, 1.0, True),
    "vflip": (0.0, 1.0, True),
    "scale_jitter": (0.0, 1.0, True),
    "shift": (0.0, 0.5, True),
    "contrast": (0.0, 1.0, True),
    "gamma_jitter": (0.0, 1.0, True),
    "other_cut_rate": (0.0, 1.0, True),
}


class ConfigError(Exception):
    pass


def check_straighten_bend(value: float | None) -> None:
    """Refuse a ``--straighten-bend`` outside 0 (never) .. ``MAX_BEND``; None means unset."""
    if value is not None and not (type(value) in (int, float) and 0 <= value <= MAX_BEND):
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
    # more labelled datasets (other labs), each trained on its splits/train.txt and judged on
    # its splits/val.txt where the folder has them (else all its cells, no validation)
    datasets: list[str] = field(default_factory=list)
    case_files: list[str] = field(default_factory=list)  # corrected case files to learn from
    # how often each lab is drawn, relative: {gband612: 1, cil24: 1, case: 2}; a lab is a
    # dataset's folder name, "case" (all case files) or "generated"; unset: in proportion
    # to the crops each holds. A model is selected on the mean of its labs' val accuracies.
    mix: dict[str, Any] = field(default_factory=dict)
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
    # a chromosome that touches another (cut from annotated boxes) is drawn as one of its
    # other cuts (core.metaphase.other_cuts) this often instead of its own crop: the cuts
    # the model reads it from together at inference (0: never)
    other_cut_rate: float = 0.0
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
        """Refuse values that cannot work, naming the option (one line for all of them)."""
        problems = _type_problems(self)
        if problems:  # the range checks below would meet text where numbers belong
            raise ConfigError("; ".join(problems))
        positive = ("epochs", "crops_per_class", "embedding_dim", "log_every", "eval_batch_size")
        problems += [
            f"--{n.replace('_', '-')} must be at least 1" for n in positive if getattr(self, n) < 1
        ]
        for name, (low, high, closed) in RANGES.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and (low <= value if closed else low < value)
                    and value <= high):
                bound = f"[{low:g}, {high:g}]" if closed else f"({low:g}, {high:g}]"
                problems.append(f"{_option(name)} {value!r} must be a number in {bound}")
        sides = (self.input_height, self.input_width)
        if not all(MIN_INPUT_SIDE <= side <= MAX_INPUT_SIDE for side in sides):
            problems.append(f"--input-height and --input-width must be {MIN_INPUT_SIDE} to "
                            f"{MAX_INPUT_SIDE} pixels")
        if self.eval_batch_size > MAX_BATCH_SIZE:
            problems.append(f"--eval-batch-size must be at most {MAX_BATCH_SIZE:,}")
        if not 0 <= self.threads <= MAX_THREADS:
            problems.append(f"--threads {self.threads} must be 0 (torch's default) to "
                            f"{MAX_THREADS}")
        kwargs_problem = model_kwargs_problem(self.model_kwargs)
        if kwargs_problem:
            problems.append(f"--model-kwargs: {kwargs_problem}")
        mix_problem = _mix_problem(self.mix)
        if mix_problem:
            problems.append(f"--mix: {mix_problem}")
        if self.ce_warmup_epochs < 0:
            problems.append("--ce-warmup-epochs cannot be negative")
        if self.lambda_con < 0 or self.lambda_cls < 0 or self.lambda_con + self.lambda_cls == 0:
            problems.append("--lambda-con and --lambda-cls must be >= 0 and not both 0")
        if self.optimizer not in ("adam", "adamw"):
            problems.append(f"--optimizer {self.optimizer!r}: use adam or adamw")
        if not (math.isfinite(self.val_fraction) and 0 <= self.val_fraction < 1):
            problems.append("--val-fraction must be in [0, 1)")
        if not (math.isfinite(self.ema_decay) and 0 <= self.ema_decay < 1):
            problems.append("--ema-decay must be in [0, 1) (0: no moving average)")
        if not (math.isfinite(self.bend) and 0 <= self.bend < 0.5):
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


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not text)."""
    return type(value) in (int, float) and math.isfinite(value)


def model_kwargs_problem(kwargs: Any) -> str | None:
    """What is wrong with model arguments (for timm), in words, or None: plain values only,
    none that makes timm read or fetch files, no number larger than MAX_KWARG."""
    if not isinstance(kwargs, dict):
        return "model_kwargs is not an object"
    for key, value in kwargs.items():
        if key in FORBIDDEN_KWARGS:
            return f"the model argument {key!r} is not allowed in a model file"
        values = value if isinstance(value, list) and len(value) <= 16 else [value]
        for item in values:
            if not (item is None or isinstance(item, (bool, str)) or is_number(item)):
                return f"the model argument {key}={value!r} is not a plain value"
            if is_number(item) and abs(item) > MAX_KWARG:
                return f"the model argument {key}={item!r} is larger than a crop model needs"
    return None


def _mix_problem(mix: dict) -> str | None:
    if not all(isinstance(key, str) and is_number(value) and 0 <= value <= 1e6
               for key, value in mix.items()):
        return "give each lab a weight between 0 and 1e6, e.g. '{gband612: 1, cil24: 1}'"
    if mix and not any(mix.values()):
        return "at least one lab needs a weight above 0"
    return None


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _type_problems(config: TrainConfig) -> list[str]:
    """Options of the wrong type (a YAML file can hold text where a number belongs)."""
    hints = get_type_hints(TrainConfig)
    problems = []
    for item in dataclasses.fields(TrainConfig):
        value, hint = getattr(config, item.name), hints[item.name]
        if hint is bool:
            ok = isinstance(value, bool)
        elif hint is int:
            ok = type(value) is int
        elif hint is float:
            ok = type(value) in (int, float)
        elif hint == float | None:
            ok = value is None or type(value) in (int, float)
        elif hint is str:
            ok = isinstance(value, str)
        elif hint == str | None:
            ok = value is None or isinstance(value, str)
        elif hint == list[str]:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif hint == dict[str, Any]:
            ok = isinstance(value, dict)
        else:
            ok = True
        if not ok:
            problems.append(f"{_option(item.name)} {value!r} is not {_described(hint)}")
    return problems


def _described(hint: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(
        hint, "a number or unset" if hint == float | None else f"of type {hint}"
    )


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
