"""The model file shared by the trainer and the app: safetensors weights + a JSON header.

One ``.safetensors`` file holds the tensors and, in its metadata, the header under the key
``karyo``: format version, architecture, input size and preprocessing, class names,
embedding size, what it was trained on, its metrics, the training config and its parent
model. Reading the header never loads the weights, and loading never unpickles anything,
so a model file cannot run code.

Nothing in a file is trusted before it is checked: the header's values (architecture,
embedding size, model arguments, preprocessing, class order) are validated first; the net
is then built on the meta device (no memory) and every tensor's shape and type in the
file compared with it, with a cap on the parameter count, before anything is allocated;
the weights must be finite and their id, recomputed, must be the header's ``model_id`` (a
file whose weights were replaced under the same name is refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open

from karyo_gui import __version__
from karyo_gui.core.case_file import writable_target
from karyo_gui.core.labels import N_TYPES, ChromosomeType
from karyo_gui.core.privacy import without_private_paths
from trainer.config import (
    MAX_BEND,
    MAX_INPUT_SIDE,
    MIN_INPUT_SIDE,
    is_number,
    model_kwargs_problem,
)
from trainer.preprocessing import Preprocessing

if TYPE_CHECKING:  # torch is imported where weights are read or written: reading a
    # header (the app's start, a model list) needs none
    import torch

    from trainer.model import ChromosomeNet

FORMAT = "karyo-model"
FORMAT_VERSION = 2  # 2: the optional orientation head
HEADER_KEY = "karyo"
SUFFIX = ".safetensors"
CLASS_NAMES = [ChromosomeType(t).display_name for t in range(N_TYPES)]

MAX_PARAMETERS = 100_000_000  # a resnet18 has 11.7 M; a ViT-giant (1 G) is no crop model
MAX_EMBEDDING_DIM = 65_536
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})  # safetensors' names
INTEGER_DTYPES = {"I64": "torch.int64", "I32": "torch.int32", "BOOL": "torch.bool"}

MODEL_ENV = "KARYO_MODEL"  # a model file to use instead of the shipped one
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "resources" / "karyo-default.safetensors"


def default_checkpoint() -> Path:
    """The model used when none is chosen: $KARYO_MODEL, else the one shipped in resources/."""
    chosen = os.environ.get(MODEL_ENV)
    path = Path(chosen) if chosen else SHIPPED_MODEL
    if not path.is_file():
        where = f"${MODEL_ENV} points to {path}" if chosen else f"{path.name} is not installed"
        raise CheckpointError(f"no model given and {where}; choose one with --checkpoint")
    return path


MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


class CheckpointError(Exception):
    """A model file that cannot be used; the message names the file and the reason."""


@dataclass
class ModelHeader:
    arch: str
    embedding_dim: int
    preprocessing: dict[str, Any]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    name: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    parent: dict[str, Any] | None = None  # name and id of the model this one was tuned from
    # how the orientation head was fitted (trainer.orientation); None: the model has none
    orientation: dict[str, Any] | None = None
    # how the probabilities were calibrated: {"temperature": T, ...} (the logits are divided
    # by T, fitted on val by bench/flag_quality.py --calibrate); None: as the network says
    calibration: dict[str, Any] | None = None
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    karyo_version: str = __version__
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    model_id: str = ""  # first 12 hex digits of the weights' SHA-256, set on save

    @property
    def input_preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.preprocessing)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, shown: str) -> ModelHeader:
        known = header_fields(
            text, shown, cls, (FORMAT, FORMAT_VERSION), CheckpointError, "model", "karyo model file"
        )
        try:
            header = cls(**known)
        except TypeError as error:
            raise CheckpointError(f"{shown}: incomplete model header ({error})") from None
        problem = _header_problem(header)
        if problem:
            raise CheckpointError(f"{shown}: {problem}")
        return header


def header_fields(
    text: str,
    shown: str,
    header_type: type,
    format_and_version: tuple[str, int],
    error_type: type[Exception],
    what: str,
    kind: str,
) -> dict[str, Any]:
    """The fields of ``header_type`` found in a model file's JSON header, after checking that
    it is JSON, of the right format and not of a newer version than this karyo reads; the
    classifier's and the finder's headers alike. ``error_type`` names the file otherwise."""
    expected_format, newest = format_and_version
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise error_type(f"{shown}: {what} header is not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        raise error_type(f"{shown}: not a {kind}")
    version = data.get("format_version")
    if not isinstance(version, int) or version > newest:
        raise error_type(
            f"{shown}: {what} format version {version} is newer than this karyo "
            f"understands ({newest}); update karyo"
        )
    return {name: data[name] for name in header_type.__dataclass_fields__ if name in data}


def _header_problem(header: ModelHeader) -> str | None:
    """What makes a header unusable, in words, or None: checked before anything is built,
    so a crafted header cannot make karyo allocate gigabytes or crash in numpy/OpenCV."""
    if not isinstance(header.arch, str) or not header.arch:
        return "the model header names no architecture"
    if type(header.embedding_dim) is not int or not 1 <= header.embedding_dim <= MAX_EMBEDDING_DIM:
        return (f"embedding_dim {header.embedding_dim!r} is not a size between 1 and "
                f"{MAX_EMBEDDING_DIM:,}")
    if not isinstance(header.class_names, list) or len(header.class_names) != N_TYPES:
        count = len(header.class_names) if isinstance(header.class_names, list) else "?"
        return f"the model predicts {count} classes, karyo expects {N_TYPES}"
    if header.class_names != CLASS_NAMES:
        moved = next(i for i, (a, b) in enumerate(zip(header.class_names, CLASS_NAMES)) if a != b)
        return (f"the model's class {moved + 1} is {header.class_names[moved]!r}, karyo's is "
                f"{CLASS_NAMES[moved]!r}: its classes are not karyo's types in karyo's order "
                "(1-22, X, Y)")
    if not isinstance(header.model_id, str):
        return "the model id is not text"
    if header.orientation is not None and not isinstance(header.orientation, dict):
        return "the orientation entry is not an object"
    if header.calibration is not None:
        temperature = (header.calibration.get("temperature")
                       if isinstance(header.calibration, dict) else None)
        if not is_number(temperature) or not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
            return (f"the calibration temperature {temperature!r} is not a number within "
                    f"{MIN_TEMPERATURE:g}..{MAX_TEMPERATURE:g}")
    return model_kwargs_problem(header.model_kwargs) or _preprocessing_problem(
        header.preprocessing
    )


def _preprocessing_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "the preprocessing entry is not an object"
    for side in ("height", "width"):
        value = data.get(side, getattr(Preprocessing, side))
        if type(value) is not int or not MIN_INPUT_SIDE <= value <= MAX_INPUT_SIDE:
            return (f"preprocessing {side} {value!r} is not a whole number of pixels between "
                    f"{MIN_INPUT_SIDE} and {MAX_INPUT_SIDE}")
    limits = {
        "median_length": (0.0, 1.0),
        "mean": (-10.0, 10.0),
        "std": (0.0, 10.0),
        "straighten_bend": (0.0, MAX_BEND),
    }
    for name, (low, high) in limits.items():
        value = data.get(name, getattr(Preprocessing, name))
        positive = name in ("median_length", "std")
        if not is_number(value) or not low <= value <= high or (positive and value <= 0):
            return f"preprocessing {name} {value!r} is not a number within {low:g}..{high:g}"
    return None


def _finite(tensor: torch.Tensor) -> bool:
    """No inf or NaN in a CPU tensor (True for integer ones). numpy's test: torch's on
    float16 takes 0.7 s for the shipped model on a busy 2-core CPU, numpy's 30 ms."""
    import torch

    if not tensor.is_floating_point():
        return True
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: all-ones exponent bits
        bits = tensor.contiguous().view(torch.int16).numpy()
        return not bool(((bits & 0x7F80) == 0x7F80).any())
    return bool(np.isfinite(tensor.detach().contiguous().numpy()).all())


def weights_id(state: dict[str, torch.Tensor], preprocessing: Preprocessing | None = None) -> str:
    """The model id: the first 12 hex digits of the weights' SHA-256, which also covers the
    straightening threshold when there is one. Straightening can be switched on at export,
    without new weights, and the same weights then give other answers, so the model needs
    another name; models without it keep the ids they always had."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    if preprocessing is not None and preprocessing.straighten_bend > 0:
        digest.update(f"straighten_bend={preprocessing.straighten_bend!r}".encode())
    return digest.hexdigest()[:12]


def save_checkpoint(
    path: str | os.PathLike,
    net: ChromosomeNet,
    header: ModelHeader,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write the model atomically: a crash leaves the previous file intact. A symlink is
    written through; a path that is not a regular file is refused (SaveTargetError).

    Absolute paths in the header's training data, metrics, config and parent are reduced
    to file names (``karyo_gui.core.privacy``).

    ``dtype=torch.float16`` stores floating-point weights at half size (the shipped model);
    loading converts them back to the model's float32 parameters.
    """
    path = Path(path)
    # a model file travels to other labs: it names its inputs, not this machine's folders
    for part in ("training_data", "metrics", "config", "parent"):
        setattr(header, part, without_private_paths(getattr(header, part)))
    # the header says whether the weights hold an orientation head, so loading can build it
    if net.orientation is None:
        header.orientation = None
    elif header.orientation is None:
        header.orientation = {}
    state = {}
    for name, tensor in net.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        if not _finite(tensor):
            raise CheckpointError(f"{path.name}: not written: the weights hold non-finite "
                                  f"values ({name}); the training diverged")
        state[name] = tensor.contiguous()
    header.model_id = weights_id(state, header.input_preprocessing)
    return write_model_file(path, state, header.to_json())


def write_model_file(path: str | os.PathLike, state: dict[str, torch.Tensor], header: str) -> Path:
    """Write tensors and a JSON header (under ``karyo``) as one safetensors file, atomically:
    a temporary file, fsync, rename. A symlink is written through; a path that is not a
    regular file is refused (SaveTargetError). Shared by the classifier and the finder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = writable_target(path)  # a symlink written through; /dev/null, a FIFO refused
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    os.close(handle)
    try:
        from safetensors.torch import save_file

        save_file(state, temporary, metadata={HEADER_KEY: header})
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_header(path: str | os.PathLike) -> ModelHeader:
    """The header of a model file, without loading its weights."""
    path = Path(path)
    return ModelHeader.from_json(header_text(path, CheckpointError), path.name)


def header_text(path: Path, error_type: type[Exception], what: str = "model file") -> str:
    """The JSON text under ``karyo`` in a safetensors file's metadata, without loading the
    weights; ``error_type`` (naming the file) when there is none to read."""
    shown = path.name
    if not path.is_file():
        raise error_type(f"{path}: {what} not found")
    try:
        with safe_open(str(path), framework="numpy") as opened:  # no torch to read a header
            metadata = opened.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise error_type(f"{shown}: not a safetensors model file, or damaged ({error})") from None
    if HEADER_KEY not in metadata:
        raise error_type(f"{shown}: safetensors file without a karyo model header")
    return metadata[HEADER_KEY]


def build_model(header: ModelHeader) -> ChromosomeNet:
    from trainer.model import ChromosomeNet, known_architecture

    if not known_architecture(header.arch):
        raise CheckpointError(f"architecture {header.arch!r} is not known to this timm version")
    return ChromosomeNet(
        header.arch,
        header.embedding_dim,
        orientation_head=header.orientation is not None,
        **header.model_kwargs,
    )


def _build(header: ModelHeader, shown: str, device: str | torch.device | None = None
           ) -> ChromosomeNet:
    try:
        if device is None:
            return build_model(header)
        import torch

        with torch.device(device):
            return build_model(header)
    except CheckpointError as error:
        raise CheckpointError(f"{shown}: {error}") from None
    except Exception as error:  # timm refusing the stored model arguments
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointError(f"{shown}: cannot build {header.arch} ({first})") from None


def _check_tensors(path: Path, header: ModelHeader) -> None:
    """The file's tensors against the net its header describes, built on the meta device
    (no memory, milliseconds): same names and shapes, float weights where the net has
    floats, and no more than MAX_PARAMETERS; all read from the file's index, no data."""
    shown = path.name
    skeleton = _build(header, shown, "meta")
    expected = skeleton.state_dict()
    count = sum(tensor.numel() for tensor in expected.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"{shown}: {header.arch} with these settings holds {count:,} "
                              f"parameters, more than a crop model can ({MAX_PARAMETERS:,})")
    try:
        with safe_open(str(path), framework="pt") as opened:
            slices = {name: opened.get_slice(name) for name in opened.keys()}  # noqa: SIM118
            stored = {name: (tuple(s.get_shape()), s.get_dtype()) for name, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{shown}: damaged weights ({error})") from None
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(
            f"{shown}: weights do not fit {header.arch} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors; {first})"
        )
    for name, tensor in expected.items():
        shape, dtype = stored[name]
        if shape != tuple(tensor.shape):
            raise CheckpointError(f"{shown}: weights do not fit {header.arch} ({name} is "
                                  f"{list(shape)} in the file, {list(tensor.shape)} in the net)")
        if tensor.is_floating_point() and dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{shown}: {name} holds {dtype} values where karyo needs "
                                  "floating-point weights (a quantised model?)")
        if not tensor.is_floating_point() and INTEGER_DTYPES.get(dtype) != str(tensor.dtype):
            raise CheckpointError(f"{shown}: {name} holds {dtype} values, not {tensor.dtype}")


def _verified_state(path: str | os.PathLike) -> tuple[ModelHeader, dict[str, torch.Tensor]]:
    """Header and weights of a model file, every check passed (see the module's notes)."""
    header = read_header(path)
    path = Path(path)
    shown = path.name
    _check_tensors(path, header)
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{shown}: damaged weights ({error})") from None
    for name, tensor in state.items():
        if not _finite(tensor):
            raise CheckpointError(f"{shown}: the weights are damaged (non-finite values in "
                                  f"{name})")
    if weights_id(state, header.input_preprocessing) != header.model_id:
        raise CheckpointError(
            f"{shown}: the weights are not the ones its header names (model id "
            f"{header.model_id or 'missing'}): replaced or changed after it was written"
        )
    return header, state


def verify_checkpoint(path: str | os.PathLike) -> ModelHeader:
    """The header of a model file whose weights passed every check ``load_checkpoint``
    makes, without building the model (what a model list shows must be what loads)."""
    return _verified_state(path)[0]


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[ChromosomeNet, ModelHeader]:
    """The model of a file, in eval mode on ``device``, and its header; every check first."""
    header, state = _verified_state(path)
    shown = Path(path).name
    net = _build(header, shown)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{shown}: weights do not fit {header.arch} ({first})") from None
    return net.to(device).eval(), header
