"""The user's models: the shipped one plus trained ones copied into a per-user folder.

Each registered model is one ``.safetensors`` file named ``<name>-<model_id>.safetensors``.
A model is listed only when its file passes the checks loading makes (``verify_checkpoint``:
the weights' id recomputed and equal to the header's, finite float weights that fit the
architecture), so a file replaced under the same name is named in ``problems``, never
listed as the model it claims to be. The result is kept per file (size, mtime, inode), so
listing again costs nothing. The shipped model in resources/ is listed but never written to
or deleted.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import platformdirs

from trainer.checkpoint import (
    SHIPPED_MODEL,
    SUFFIX,
    CheckpointError,
    ModelHeader,
    verify_checkpoint,
)

APP = "karyo"
_NAME_LENGTH = 60


def default_folder() -> Path:
    """Where trained models are kept for this user."""
    return Path(platformdirs.user_data_dir(APP, appauthor=False)) / "models"


class RegistryError(Exception):
    """A model that cannot be registered or removed; the message names it and the reason."""


def _created(header: ModelHeader) -> datetime | None:
    """The header's creation time (naive times taken as UTC), None when unreadable."""
    text = (header.created or "").strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


_VERIFIED: dict[tuple[str, int, int, int], ModelHeader] = {}


def verified_header(path: str | os.PathLike) -> ModelHeader:
    """The header of a model file that passed ``verify_checkpoint``; CheckpointError if not.
    A file is checked again whenever its size, modification time or inode changes."""
    path = Path(path)
    try:
        info = path.stat()
        key = (str(path.resolve()), info.st_size, info.st_mtime_ns, info.st_ino)
    except OSError:
        return verify_checkpoint(path)  # names what is wrong with it
    if key not in _VERIFIED:
        header = verify_checkpoint(path)
        if len(_VERIFIED) > 256:
            _VERIFIED.clear()
        _VERIFIED[key] = header
    return copy.deepcopy(_VERIFIED[key])


def _safe_name(text: str) -> str:
    """A model name as a file name on any system."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:_NAME_LENGTH].rstrip("._-")
    return name or "model"


def _same_file(a: Path, b: Path | None) -> bool:
    if b is None:
        return False
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


@dataclass(frozen=True)
class RegisteredModel:
    path: Path
    header: ModelHeader
    shipped: bool  # the model in resources/ (read-only)

    @property
    def model_id(self) -> str:
        return self.header.model_id

    @property
    def name(self) -> str:
        return self.header.name or self.path.stem

    def describe(self) -> str:
        """``name (arch, model_id), created YYYY-MM-DD HH:MM[, from PARENT]``."""
        when = _created(self.header)
        created = when.strftime("%Y-%m-%d %H:%M") if when else (self.header.created or "?")
        text = f"{self.name} ({self.header.arch}, {self.model_id}), created {created}"
        parent = self.header.parent
        if parent:
            text += f", from {parent.get('name') or parent.get('model_id') or '?'}"
        return text


class ModelRegistry:
    """The shipped model and the models in ``folder`` (default: :func:`default_folder`)."""

    def __init__(
        self, folder: str | os.PathLike | None = None, shipped: Path | None = SHIPPED_MODEL
    ) -> None:
        self.folder = Path(folder) if folder is not None else default_folder()
        self.shipped = Path(shipped) if shipped is not None else None
        self.problems: list[str] = []  # files skipped by the last models(), one line each

    def models(self) -> list[RegisteredModel]:
        """The shipped model first, then the folder's models, oldest first."""
        self.problems = []
        listed: list[RegisteredModel] = []
        if self.shipped is not None and self.shipped.is_file():
            try:
                listed.append(RegisteredModel(self.shipped, verified_header(self.shipped), True))
            except CheckpointError as error:
                self.problems.append(str(error))
        if not self.folder.is_dir():
            return listed
        found = []
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            if path.name.startswith(".") or not path.is_file() or _same_file(path, self.shipped):
                continue
            try:
                found.append(RegisteredModel(path, verified_header(path), False))
            except CheckpointError as error:
                self.problems.append(str(error))
        oldest = datetime.min.replace(tzinfo=timezone.utc)
        found.sort(key=lambda model: (_created(model.header) or oldest, model.path.name))
        return listed + found

    def find(self, model_id: str) -> RegisteredModel | None:
        """The registered model with this id, or None."""
        model_id = model_id.strip().lower()
        if not model_id:
            return None
        return next((m for m in self.models() if m.model_id.lower() == model_id), None)

    def add(self, checkpoint: str | os.PathLike, name: str | None = None) -> RegisteredModel:
        """Copy a trained model file into the folder; an already registered one is returned."""
        source = Path(checkpoint)
        try:
            header = verified_header(source)
        except CheckpointError as error:
            raise RegistryError(f"cannot add {error}") from None
        if not header.model_id:
            raise RegistryError(f"cannot add {source.name}: the model header has no model id")
        known = self.find(header.model_id)
        if known is not None:
            return known
        stem = _safe_name(name or header.name or source.stem)
        target = self.folder / f"{stem}-{header.model_id}{SUFFIX}"
        if _same_file(target, self.shipped):
            raise RegistryError(f"cannot add {source.name}: {target.name} is the shipped model")
        temporary: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, made = tempfile.mkstemp(
                dir=self.folder, prefix=f".{target.name}.", suffix=".tmp"
            )
            os.close(handle)
            temporary = Path(made)
            shutil.copyfile(source, temporary)
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            copied = verify_checkpoint(temporary)
            if copied.model_id != header.model_id:
                raise RegistryError(f"cannot add {source.name}: the file changed while copying")
            os.replace(temporary, target)
            temporary = None
        except OSError as error:
            raise RegistryError(f"cannot add {source.name} to {self.folder} ({error})") from None
        except CheckpointError as error:
            raise RegistryError(
                f"cannot add {source.name}: the copy is unreadable ({error})"
            ) from None
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
        return RegisteredModel(target, copied, False)

    def lineage(self, model: RegisteredModel) -> list[RegisteredModel]:
        """``[model, parent, grandparent, ...]`` as far as the parents are registered."""
        by_id: dict[str, RegisteredModel] = {}
        for known in self.models():
            by_id.setdefault(known.model_id, known)
        chain = [model]
        seen = {model.model_id}
        current = model
        while current.header.parent:
            parent_id = current.header.parent.get("model_id")
            if not parent_id or parent_id in seen or parent_id not in by_id:
                break
            current = by_id[parent_id]
            chain.append(current)
            seen.add(parent_id)
        return chain

    def remove(self, model: RegisteredModel) -> None:
        """Delete a registered model's file; the shipped model cannot be removed."""
        if model.shipped or _same_file(model.path, self.shipped):
            raise RegistryError(f"{model.path.name}: the shipped model cannot be removed")
        if not _same_file(model.path.parent, self.folder):
            raise RegistryError(f"{model.path.name}: not a model in {self.folder}")
        try:
            model.path.unlink(missing_ok=True)
        except OSError as error:
            raise RegistryError(f"{model.path.name}: cannot remove ({error})") from None
