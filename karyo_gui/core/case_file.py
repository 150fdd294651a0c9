"""The case file: a versioned JSON document of everything a reviewer did to a case.

It holds, per chromosome, the crop's source path (relative to the case file where it
can be) and content hash, the given/predicted/assigned/manual labels, orientation and
flags; per cell its status, model id and audit trail. Crops without a file of their own
(generated example cells) are embedded as PNG. Writes are atomic (temp file, fsync,
rename): a crash leaves either the old or the new file, never half of one.

Versions: ``schema_version`` is bumped whenever the layout changes, and MIGRATIONS holds
one function per step that upgrades a document from version n to n + 1.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import glob
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from karyo_gui import __version__
from karyo_gui.core.case import (
    Case,
    Cell,
    CellStatus,
    Chromosome,
    Correction,
    Flag,
    ManualLabel,
    Orientation,
)
from karyo_gui.core.images import CropReadError, decode_crop, read_crop_and_hash
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import display_path

FORMAT = "karyo-case"
SCHEMA_VERSION = 1
SUFFIX = ".karyo.json"

# MIGRATIONS[n] upgrades a version-n document to version n + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class CaseFileError(Exception):
    """A case file that cannot be opened; the message names the file and the reason."""


def save_case(case: Case, path: str | os.PathLike) -> None:
    path = Path(path)
    document = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "written_by": f"karyo {__version__}",
        "case": _case_to_dict(case, path.parent.resolve()),
    }
    # compact: the C encoder (indent falls back to the pure-Python one, 4x slower: a 200-cell
    # case took 0.5 s per autosave)
    write_atomically(path, json.dumps(document, allow_nan=False, separators=(",", ":")))


STALE_TEMPORARY_SECONDS = 60.0  # a save takes milliseconds; older temporaries are orphans


def write_atomically(path: Path, text: str, errors: str = "strict") -> None:
    """Replace ``path`` with ``text`` so that readers only ever see the old or new file.

    A process killed mid-save leaves its temporary file behind (never the target half
    written); the next save of the same file removes such orphans. The file keeps the
    permissions it had (a case folder shared by a lab stays readable to colleagues); a new
    one gets those the user's umask gives.
    """
    mode = _permissions_for(path)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, before the rename)
        "w", encoding="utf-8", errors=errors, dir=path.parent, prefix=f".{path.name}.",
        suffix=".tmp", delete=False,
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            with contextlib.suppress(OSError, NotImplementedError):  # e.g. a FAT USB stick
                os.chmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    remove_orphan_temporaries(path)


def _permissions_for(path: Path) -> int:
    """The mode ``path`` has, or the one a plain new file gets (tempfile's would be 0600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux names it without changing it (os.umask would, for every thread, a moment)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def remove_orphan_temporaries(path: Path, older_than: float = STALE_TEMPORARY_SECONDS) -> int:
    """Delete temporary files of earlier, killed saves of ``path``; how many were removed."""
    removed = 0
    now = time.time()
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - orphan.stat().st_mtime > older_than:
                orphan.unlink()
                removed += 1
    return removed


def load_case(path: str | os.PathLike) -> Case:
    """Read a case file; the crops are re-read from their files and checked by hash.

    A crop whose file is gone or changed keeps its labels and is flagged (image_missing,
    image_changed), with the reason in ``Cell.problems``.
    """
    path = Path(path)
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaseFileError(f"{shown}: case file not found") from None
    except PermissionError:
        raise CaseFileError(f"{shown}: permission denied") from None
    except UnicodeDecodeError:
        raise CaseFileError(f"{shown}: not a karyo case file (not UTF-8 text)") from None
    except OSError as error:
        raise CaseFileError(f"{shown}: cannot read ({error.strerror})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise CaseFileError(
            f"{shown}: the case file is broken (truncated or edited?): "
            f"{error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    document = _upgrade(document, shown)
    try:
        return _case_from_dict(document["case"], path.parent.resolve())
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CaseFileError(
            f"{shown}: the case file is damaged or hand-edited: {type(error).__name__}: {error}"
        ) from None


def _upgrade(document: Any, shown: str) -> dict[str, Any]:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CaseFileError(f"{shown}: not a karyo case file")
    version = document.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise CaseFileError(f"{shown}: the case file has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise CaseFileError(
            f"{shown}: written by a newer karyo ({document.get('written_by', 'unknown')}, "
            f"case file schema {version}); this karyo reads up to schema {SCHEMA_VERSION}. "
            "Update karyo to open it."
        )
    while version < SCHEMA_VERSION:
        try:
            document = MIGRATIONS[version](document)
        except Exception as error:  # a migration meets a document it cannot upgrade
            raise CaseFileError(
                f"{shown}: cannot upgrade the case file from schema {version} "
                f"({type(error).__name__}: {error})"
            ) from None
        version += 1
        document["schema_version"] = version
    return document


def _label(chromosome_type: ChromosomeType | None) -> str | None:
    return None if chromosome_type is None else chromosome_type.display_name


def _parse_label(text: str | None) -> ChromosomeType | None:
    return None if text is None else ChromosomeType.from_name(text)


def _case_to_dict(case: Case, base: Path) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "created": case.created.isoformat(),
        "notes": case.notes,
        "cells": [_cell_to_dict(cell, base) for cell in case.cells],
    }


def _cell_to_dict(cell: Cell, base: Path) -> dict[str, Any]:
    return {
        "name": cell.name,
        "source": _portable_path(cell.source, base),
        "status": cell.status.value,
        "model_id": cell.model_id,
        "chromosomes": [_chromosome_to_dict(c, base) for c in cell.chromosomes],
        "audit": [
            {
                "chromosome": entry.chromosome_id,
                "action": entry.action,
                "from": entry.before,
                "to": entry.after,
                "by": entry.by,
                "at": entry.at.isoformat(),
            }
            for entry in cell.audit
        ],
    }


def _chromosome_to_dict(chromosome: Chromosome, base: Path) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": chromosome.id,
        "source_path": _portable_path(chromosome.source_path, base),
        "content_hash": chromosome.content_hash,
        "given": _label(chromosome.given),
        "predicted": _label(chromosome.predicted),
        "probabilities": None
        if chromosome.probabilities is None
        else [round(float(p), 6) for p in chromosome.probabilities],
        "assigned": _label(chromosome.assigned),
        "manual": None
        if chromosome.manual is None
        else {
            "label": _label(chromosome.manual.label),
            "by": chromosome.manual.by,
            "at": chromosome.manual.at.isoformat(),
        },
        "orientation": {
            "rotation": chromosome.orientation.rotation,
            "flipped": chromosome.orientation.flipped,
        },
        "flags": sorted(flag.value for flag in chromosome.flags),
    }
    if chromosome.source_path is None and chromosome.image is not None:
        ok, png = cv2.imencode(".png", chromosome.image)
        if not ok:
            raise ValueError(f"chromosome {chromosome.id}: cannot encode its image")
        data["image_png"] = base64.b64encode(png.tobytes()).decode("ascii")
    return data


def _portable_path(path: str | None, base: Path) -> str | None:
    """Relative to the case file's folder when below it, so a moved case folder still opens."""
    if path is None:
        return None
    absolute = Path(path)
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return str(absolute)


def _case_from_dict(data: dict[str, Any], base: Path) -> Case:
    if not isinstance(data["cells"], list):
        raise TypeError("'cells' must be a list")
    return Case(
        case_id=str(data["case_id"]),
        cells=[_cell_from_dict(cell, base) for cell in data["cells"]],
        created=datetime.fromisoformat(data["created"]),
        notes=str(data.get("notes", "")),
    )


def _cell_from_dict(data: dict[str, Any], base: Path) -> Cell:
    cell = Cell(
        name=str(data["name"]),
        source=_absolute_path(data.get("source"), base),
        status=CellStatus(data["status"]),
        model_id=data.get("model_id"),
        audit=[
            Correction(
                chromosome_id=str(entry["chromosome"]),
                action=str(entry["action"]),
                before=str(entry["from"]),
                after=str(entry["to"]),
                by=str(entry["by"]),
                at=datetime.fromisoformat(entry["at"]),
            )
            for entry in data["audit"]
        ],
    )
    for chromosome_data in data["chromosomes"]:
        chromosome = _chromosome_from_dict(chromosome_data, base)
        _attach_image(chromosome, chromosome_data, cell.problems)
        cell.chromosomes.append(chromosome)
    return cell


def _chromosome_from_dict(data: dict[str, Any], base: Path) -> Chromosome:
    manual = data.get("manual")
    probabilities = data.get("probabilities")
    orientation = data.get("orientation") or {}
    return Chromosome(
        id=str(data["id"]),
        image=None,
        source_path=_absolute_path(data.get("source_path"), base),
        content_hash=data.get("content_hash"),
        given=_parse_label(data.get("given")),
        predicted=_parse_label(data.get("predicted")),
        probabilities=None if probabilities is None else _probabilities(probabilities),
        assigned=_parse_label(data.get("assigned")),
        manual=None
        if manual is None
        else ManualLabel(
            label=ChromosomeType.from_name(manual["label"]),
            by=str(manual["by"]),
            at=datetime.fromisoformat(manual["at"]),
        ),
        orientation=Orientation(
            int(orientation.get("rotation", 0)), bool(orientation.get("flipped", False))
        ),
        flags={Flag(flag) for flag in data.get("flags", [])}
        - {Flag.IMAGE_MISSING, Flag.IMAGE_CHANGED},  # re-checked below, on this machine
    )


def _probabilities(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.shape != (24,) or not np.all(np.isfinite(array)):
        raise ValueError("probabilities must be 24 finite numbers")
    return array


def _absolute_path(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    return str(base / path) if not Path(path).is_absolute() else path


def _attach_image(chromosome: Chromosome, data: dict[str, Any], problems: list[str]) -> None:
    try:
        if chromosome.source_path is None:
            if "image_png" in data:
                png = base64.b64decode(data["image_png"], validate=True)
                chromosome.image = decode_crop(png, f"embedded image of {chromosome.id}")
            return
        chromosome.image, digest = read_crop_and_hash(chromosome.source_path)
    except CropReadError as error:
        chromosome.flags.add(Flag.IMAGE_MISSING)
        problems.append(f"{display_path(error.path)}: {error.reason}")
        return
    except binascii.Error:
        chromosome.flags.add(Flag.IMAGE_MISSING)
        problems.append(f"embedded image of {chromosome.id}: damaged (not valid base64)")
        return
    if chromosome.content_hash is not None and digest != chromosome.content_hash:
        chromosome.flags.add(Flag.IMAGE_CHANGED)
        problems.append(
            f"{display_path(chromosome.source_path)}: the crop file changed since the case "
            "was saved (content hash differs); check its labels"
        )
