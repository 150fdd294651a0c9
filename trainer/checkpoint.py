"""The model file shared by the trainer and the app: safetensors weights + a JSON header.

One ``.safetensors`` file holds the tensors and, in its metadata, the header under the key
``karyo``: format version, architecture, input size and preprocessing, class names,
embedding size, what it was trained on, its metrics, the training config and its parent
model. Reading the header never loads the weights, and loading never unpickles anything,
so a model file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from karyo_gui import __version__
from karyo_gui.core.labels import N_TYPES, ChromosomeType
from karyo_gui.core.privacy import without_private_paths
from trainer.model import ChromosomeNet, known_architecture
from trainer.preprocessing import Preprocessing

FORMAT = "karyo-model"
FORMAT_VERSION = 2  # 2: the optional orientation head
HEADER_KEY = "karyo"
SUFFIX = ".safetensors"
CLASS_NAMES = [ChromosomeType(t).display_name for t in range(N_TYPES)]

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
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{shown}: model header is not valid JSON ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{shown}: not a karyo model file")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{shown}: model format version {version} is newer than this karyo "
                f"understands ({FORMAT_VERSION}); update karyo"
            )
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        try:
            header = cls(**known)
        except TypeError as error:
            raise CheckpointError(f"{shown}: incomplete model header ({error})") from None
        if len(header.class_names) != N_TYPES:
            raise CheckpointError(
                f"{shown}: the model predicts {len(header.class_names)} classes, "
                f"karyo expects {N_TYPES}"
            )
        return header


def weights_id(state: dict[str, torch.Tensor], preprocessing: Preprocessing | None = None) -> str:
    """The model id: the first 12 hex digits of the weights' SHA-256, which also covers the
    straightening threshold when there is one. Straightening can be switched on at export,
    without new weights, and the same weights then give other answers, so the model needs
    another name; models without it keep the ids they always had."""
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
    """Write the model atomically: a crash leaves the previous file intact.

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
        state[name] = tensor.contiguous()
    header.model_id = weights_id(state, header.input_preprocessing)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(state, temporary, metadata={HEADER_KEY: header.to_json()})
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_header(path: str | os.PathLike) -> ModelHeader:
    """The header of a model file, without loading its weights."""
    path = Path(path)
    shown = path.name
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as opened:
            metadata = opened.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{shown}: not a safetensors model file, or damaged ({error})"
        ) from None
    if HEADER_KEY not in metadata:
        raise CheckpointError(f"{shown}: safetensors file without a karyo model header")
    return ModelHeader.from_json(metadata[HEADER_KEY], shown)


def build_model(header: ModelHeader) -> ChromosomeNet:
    if not known_architecture(header.arch):
        raise CheckpointError(f"architecture {header.arch!r} is not known to this timm version")
    return ChromosomeNet(
        header.arch,
        header.embedding_dim,
        orientation_head=header.orientation is not None,
        **header.model_kwargs,
    )


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[ChromosomeNet, ModelHeader]:
    """The model of a file, in eval mode on ``device``, and its header."""
    header = read_header(path)
    shown = Path(path).name
    try:
        net = build_model(header)
    except CheckpointError as error:
        raise CheckpointError(f"{shown}: {error}") from None
    except Exception as error:  # timm refusing the stored model arguments
        raise CheckpointError(f"{shown}: cannot build {header.arch} ({error})") from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{shown}: damaged weights ({error})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{shown}: weights do not fit {header.arch} ({first})") from None
    return net.to(device).eval(), header
