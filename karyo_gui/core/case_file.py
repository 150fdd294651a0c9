"""The case file: a versioned JSON document of everything a reviewer did to a case.

It holds, per chromosome, the crop's source path (relative to the case file where it
can be) and content hash, the given/predicted/assigned/manual labels, orientation and
flags; per cell its status, model id and audit trail. Crops without a file of their own
(generated example cells) are embedded as PNG. Writes are atomic (temp file, fsync,
rename): a crash leaves either the old or the new file, never half of one.

A cell made from a whole metaphase image stores the image's path and content hash (the
image itself only when it has no file: a generated example), the finder that found its
chromosomes, and per chromosome its region (box and run-length mask) and finder score.
Those chromosomes' crops are not stored: they are cut from the metaphase again on load.

Budgets (see ``images``): the file itself is read only when it is a regular file of at
most MAX_CASE_FILE_BYTES; a file listing more than MAX_CASE_CELLS cells, MAX_FILE_CHROMOSOMES
chromosomes in a cell (or MAX_CASE_CHROMOSOMES in all) or MAX_AUDIT_ENTRIES audit entries in a
cell is refused before any of them is built; the crops' decoded pixels, embedded ones and those
cut from a metaphase included, come out of a per-cell and a per-case PixelBudget.

Sign-off: a signed-off cell carries ``sign_off_digest`` (see ``case.sign_off_digest``). On
load it is computed again; a sign-off without it, or with one that differs, is "modified
outside karyo": the cell opens as reviewed (not signed off, so neither read-only nor trusted
as training data), with the reason in ``Cell.problems`` and ``Cell.sign_off_problem`` and an
audit entry saying so. Tamper-evident against hand edits, not tamper-proof: the digest has no
secret in it.

Versions: ``schema_version`` is bumped whenever the layout changes, and MIGRATIONS holds
one function per step that upgrades a document from version n to n + 1.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import glob
import io
import json
import math
import os
import stat
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from karyo_gui import __version__
from karyo_gui.core import images
from karyo_gui.core.case import (
    BAND_LEVELS,
    Case,
    CaseDetails,
    Cell,
    CellRole,
    CellStatus,
    Chromosome,
    Correction,
    Flag,
    KaryotypeOverride,
    ManualLabel,
    MarkedAbnormality,
    Orientation,
    Signature,
    SignOffRefused,
    SignRole,
    Study,
    last_sign_off,
    now_utc,
    sign_off_digest,
)
from karyo_gui.core.case_karyotype import case_karyotype
from karyo_gui.core.images import (
    CropReadError,
    FileTooLargeError,
    NotRegularFileError,
    PixelBudget,
    PixelBudgetExceeded,
    decode_crop,
    read_crop_and_hash,
    read_regular_file,
)
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import (
    MAX_CASE_CELLS,
    MAX_CASE_CHROMOSOMES,
    MAX_CELL_FILES,
    display_path,
)
from karyo_gui.core.metaphase import (
    MAX_METAPHASE_PIXELS,
    MetaphaseImage,
    MetaphaseReadError,
    Region,
    cut_crop,
    read_metaphase,
)

FORMAT = "karyo-case"
SCHEMA_VERSION = 3
SUFFIX = ".karyo.json"
MAX_REGION_PIXELS = 10_000_000  # one chromosome's box; a whole 4096 x 2048 image is less
MAX_CASE_FILE_BYTES = 512 * 2**20  # 1,000 cells of 46 chromosomes with their regions: ~100 MB
MAX_FILE_CHROMOSOMES = MAX_CELL_FILES  # per cell: what a folder opens (a cell holds 46-92)
MAX_AUDIT_ENTRIES = 100_000  # per cell; a long review makes a few hundred


def _one_to_two(document: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 adds metaphase images: per cell ``metaphase`` and ``finder_id``, per
    chromosome ``region`` and ``found_score``; a schema-1 file has none of them (null).
    Parts that are not as expected are left alone, for the loader to name."""
    case = document.get("case")
    cells = case.get("cells") if isinstance(case, dict) else None
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict):
            continue
        cell.setdefault("metaphase", None)
        cell.setdefault("finder_id", None)
        chromosomes = cell.get("chromosomes")
        for chromosome in chromosomes if isinstance(chromosomes, list) else []:
            if isinstance(chromosome, dict):
                chromosome.setdefault("region", None)
                chromosome.setdefault("found_score", None)
    return document


def _two_to_three(document: dict[str, Any]) -> dict[str, Any]:
    """Schema 3 adds the case as a lab reports it: per case ``study``, ``band_level``,
    ``details``, ``karyotype_override``, ``signatures`` and its own ``audit``; per cell
    ``roles`` and marked structural ``abnormalities``. A schema-2 file has none of them."""
    case = document.get("case")
    if not isinstance(case, dict):
        return document
    for key, value in (("study", "constitutional"), ("band_level", None), ("details", {}),
                       ("karyotype_override", None), ("signatures", []), ("audit", [])):
        case.setdefault(key, value)
    cells = case.get("cells")
    for cell in cells if isinstance(cells, list) else []:
        if isinstance(cell, dict):
            cell.setdefault("roles", [])
            cell.setdefault("abnormalities", [])
    return document


# MIGRATIONS[n] upgrades a version-n document to version n + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _one_to_two, 2: _two_to_three,
}


class CaseFileError(Exception):
    """A case file that cannot be opened; the message names the file and the reason."""


class _TooLarge(ValueError):
    """A case file listing more than karyo opens; the message says what and the limit."""


def save_case(case: Case, path: str | os.PathLike) -> None:
    path = Path(path)
    document = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "written_by": f"karyo {__version__}",
        # crops are relative to where the file really is (a symlinked case file included)
        "case": _case_to_dict(case, _folder_of(path)),
    }
    # compact: the C encoder (indent falls back to the pure-Python one, 4x slower: a 200-cell
    # case took 0.5 s per autosave)
    write_atomically(path, json.dumps(document, allow_nan=False, separators=(",", ":")))


STALE_TEMPORARY_SECONDS = 60.0  # a save takes milliseconds; older temporaries are orphans


class SaveTargetError(OSError):
    """A path karyo will not write to (a folder, a device, a pipe; a folder that does not
    exist); ``str()`` names the path and the reason in one line."""


def writable_target(path: str | os.PathLike) -> Path:
    """The regular file a save to ``path`` replaces: symlinks are followed, so a case file
    linked into a shared folder receives the edit (the link stays a link). Refused, one
    line: an existing target that is not a regular file (``/dev/null``, a FIFO, a folder:
    renaming over it would turn a device node into a file, and opening a FIFO would hang),
    a symlink loop, or a target whose folder does not exist."""
    shown = display_path(path)
    target = Path(os.path.realpath(path))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:  # a symlink loop, a path through a file, permissions
        raise SaveTargetError(f"{shown}: cannot write here ({error.strerror or error})"
                              ) from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise SaveTargetError(f"{shown}: is {kind}, not a regular file; karyo saves only to "
                              "files")
    if not target.parent.is_dir():
        raise SaveTargetError(f"{shown}: cannot write here: the folder "
                              f"{display_path(target.parent)} does not exist")
    return target


def write_atomically(path: str | os.PathLike, text: str | bytes, errors: str = "strict"
                     ) -> None:
    """Replace ``path`` with ``text`` so that readers only ever see the old or new file.

    A symlink is written through (its target is replaced, the link kept); a path that is
    not a regular file is refused with :class:`SaveTargetError` (see ``writable_target``).
    A process killed mid-save leaves its temporary file behind (never the target half
    written); the next save of the same file removes such orphans. The file keeps the
    permissions it had (a case folder shared by a lab stays readable to colleagues); a new
    one gets those the user's umask gives. ``bytes`` are written as they are.
    """
    path = writable_target(path)
    mode = _permissions_for(path)
    binary = isinstance(text, bytes)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, before the rename)
        "wb" if binary else "w", encoding=None if binary else "utf-8",
        errors=None if binary else errors, dir=path.parent, prefix=f".{path.name}.",
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


MAX_NUMBER_DIGITS = 30  # no number karyo writes comes near; 5,000 digits is an attack


def _folder_of(path: Path) -> Path:
    """The folder a case file's relative crop paths start from: that of the file itself,
    after symlinks (a case file linked elsewhere refers to the crops beside the real one)."""
    return Path(os.path.realpath(path)).parent


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text.lstrip('-')):,} digits")
    return int(text)


def _finite_number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a case file holds")


def _parse(text: str, shown: str) -> Any:
    """The JSON of a case file; anything the parser cannot or must not read (NaN, Infinity,
    numbers of thousands of digits, nesting deeper than the interpreter allows) is a
    CaseFileError naming the file."""
    try:
        return json.loads(text, parse_int=_whole_number, parse_float=_finite_number,
                          parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise CaseFileError(
            f"{shown}: the case file is broken (truncated or edited?): "
            f"{error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except RecursionError:
        raise CaseFileError(f"{shown}: the case file is damaged (nested too deeply)") from None
    except ValueError as error:  # from the hooks above
        raise CaseFileError(f"{shown}: the case file is damaged or hand-edited: {error}"
                            ) from None


def load_case(path: str | os.PathLike) -> Case:
    """Read a case file; the crops are re-read from their files and checked by hash.

    A crop whose file is gone or changed keeps its labels and is flagged (image_missing,
    image_changed), with the reason in ``Cell.problems``. Chromosomes that share an id
    with an earlier one of their cell are renamed (``c001 (2)``) and named there too.
    Any JSON of the wrong shape is a CaseFileError naming the file.
    """
    path = Path(path)
    shown = display_path(path)
    try:
        text = read_regular_file(path, MAX_CASE_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise CaseFileError(f"{shown}: case file not found") from None
    except PermissionError:
        raise CaseFileError(f"{shown}: permission denied") from None
    except IsADirectoryError:
        raise CaseFileError(f"{shown}: is a folder, not a case file") from None
    except NotRegularFileError:
        raise CaseFileError(f"{shown}: not a regular file (a device, a pipe or a socket); "
                            "not read") from None
    except FileTooLargeError as error:
        raise CaseFileError(f"{shown}: the case file is {error.size:,} bytes, more than karyo "
                            f"opens (at most {error.limit / 2**20:,.0f} MiB)") from None
    except UnicodeDecodeError:
        raise CaseFileError(f"{shown}: not a karyo case file (not UTF-8 text)") from None
    except OSError as error:
        raise CaseFileError(f"{shown}: cannot read ({error.strerror})") from None
    document = _upgrade(_parse(text, shown), shown)
    try:
        if not isinstance(document.get("case"), dict):
            raise TypeError("'case' must be an object")
        return _case_from_dict(document["case"], _folder_of(path))
    except _TooLarge as error:
        raise CaseFileError(f"{shown}: {error}") from None
    except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError,
            RecursionError) as error:
        raise CaseFileError(
            f"{shown}: the case file is damaged or hand-edited: {type(error).__name__}: {error}"
        ) from None


def _upgrade(document: Any, shown: str) -> dict[str, Any]:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CaseFileError(f"{shown}: not a karyo case file")
    version = document.get("schema_version")
    if type(version) is not int or version < 1:
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
    return None if text is None else ChromosomeType.from_name(_text(text, "label"))


def _audit_to_list(audit: list[Correction]) -> list[dict[str, str]]:
    return [
        {
            "chromosome": entry.chromosome_id,
            "action": entry.action,
            "from": entry.before,
            "to": entry.after,
            "by": entry.by,
            "at": entry.at.isoformat(),
        }
        for entry in audit
    ]


def _case_to_dict(case: Case, base: Path) -> dict[str, Any]:
    override = case.karyotype_override
    return {
        "case_id": case.case_id,
        "created": case.created.isoformat(),
        "notes": case.notes,
        "study": case.study.value,
        "band_level": case.band_level,
        "details": {name: getattr(case.details, name) for name in CaseDetails.FIELDS},
        "karyotype_override": None if override is None else {
            "text": override.text, "composed": override.composed, "by": override.by,
            "at": override.at.isoformat(), "reason": override.reason,
        },
        "signatures": [
            {"role": s.role.value, "name": s.name, "at": s.at.isoformat(),
             "karyotype": s.karyotype}
            for s in case.signatures
        ],
        "audit": _audit_to_list(case.audit),
        "cells": [_cell_to_dict(cell, base) for cell in case.cells],
    }


def _cell_to_dict(cell: Cell, base: Path) -> dict[str, Any]:
    on_metaphase = cell.metaphase is not None
    return {
        "name": cell.name,
        "source": _portable_path(cell.source, base),
        "status": cell.status.value,
        "model_id": cell.model_id,
        "metaphase": _metaphase_to_dict(cell.metaphase, base),
        "finder_id": cell.finder_id,
        "sign_off_digest": cell.sign_off_digest if cell.status is CellStatus.SIGNED_OFF else None,
        "chromosomes": [_chromosome_to_dict(c, base, on_metaphase) for c in cell.chromosomes],
        "roles": sorted(role.value for role in cell.roles),
        "abnormalities": [
            {"iscn": m.iscn, "chromosomes": list(m.chromosome_ids), "by": m.by,
             "at": m.at.isoformat()}
            for m in cell.abnormalities
        ],
        "audit": _audit_to_list(cell.audit),
    }


def _metaphase_to_dict(metaphase: MetaphaseImage | None, base: Path) -> dict[str, Any] | None:
    if metaphase is None:
        return None
    data: dict[str, Any] = {
        "source_path": _portable_path(metaphase.path, base),
        "content_hash": metaphase.content_hash,
        "width": metaphase.width,
        "height": metaphase.height,
        "scale": float(metaphase.scale),
        "inverted": bool(metaphase.inverted),
    }
    if metaphase.path is None and not metaphase.missing:
        ok, png = cv2.imencode(".png", np.ascontiguousarray(metaphase.pixels, dtype=np.uint8))
        if not ok:
            raise ValueError("cannot encode the metaphase image")
        data["image_png"] = base64.b64encode(png.tobytes()).decode("ascii")
    return data


def _chromosome_to_dict(chromosome: Chromosome, base: Path, on_metaphase: bool = False
                        ) -> dict[str, Any]:
    region = chromosome.region
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
        "region": None if region is None else {"box": list(region.box), "runs": region.to_runs()},
        "found_score": None
        if chromosome.found_score is None
        else round(float(chromosome.found_score), 6),
    }
    cut_on_load = region is not None and on_metaphase
    if chromosome.source_path is None and chromosome.image is not None and not cut_on_load:
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


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "text", bool: "true or false"}
    return "null" if value is None else kinds.get(type(value), "a number")


def _text(value: Any, name: str, optional: bool = False) -> str | None:
    """``value`` when it is text (or null, when ``optional``); a TypeError naming the key
    otherwise: a hand-edited number or list must not become an id or a path."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        null = " or null" if optional else ""
        raise TypeError(f"{name!r} must be text{null}, not {_kind(value)}")
    return value


def _of_kind(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {_kind(kind())}, not {_kind(value)}")
    return value


def _case_from_dict(data: dict[str, Any], base: Path) -> Case:
    cells = _of_kind(data["cells"], list, "'cells'")
    _check_counts(cells)
    budget = PixelBudget.for_case()
    case = Case(
        case_id=_text(data["case_id"], "case_id"),
        cells=[_cell_from_dict(_of_kind(cell, dict, "each cell"), base, budget)
               for cell in cells],
        created=datetime.fromisoformat(_text(data["created"], "created")),
        notes=_text(data.get("notes", ""), "notes"),
        study=Study(_text(data.get("study", "constitutional"), "study")),
        band_level=_band_level(data.get("band_level")),
        details=_details(_of_kind(data.get("details", {}), dict, "'details'")),
        karyotype_override=_override(data.get("karyotype_override")),
        audit=[_correction(entry) for entry in _of_kind(data.get("audit", []), list,
                                                        "the case's 'audit'")],
    )
    _check_signatures(case, _of_kind(data.get("signatures", []), list, "'signatures'"))
    return case


def _band_level(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value not in BAND_LEVELS:
        raise ValueError(f"'band_level' must be one of {', '.join(map(str, BAND_LEVELS))} or "
                         f"null, not {value!r}")
    return value


def _details(data: dict[str, Any]) -> CaseDetails:
    return CaseDetails(**{name: _text(data.get(name, ""), name) for name in CaseDetails.FIELDS})


def _override(data: Any) -> KaryotypeOverride | None:
    if data is None:
        return None
    data = _of_kind(data, dict, "'karyotype_override'")
    return KaryotypeOverride(
        text=_text(data["text"], "text"), composed=_text(data["composed"], "composed"),
        by=_text(data["by"], "by"), at=datetime.fromisoformat(_text(data["at"], "at")),
        reason=_text(data.get("reason", ""), "reason"),
    )


def _check_signatures(case: Case, stored: list[Any]) -> None:
    """Keep the signatures the rules allow (one analyst first, then a different checker who
    signed the same karyotype); one that breaks them was made outside karyo: dropped, and
    said in the case's problems and audit trail."""
    for entry in stored:
        entry = _of_kind(entry, dict, "each signature")
        role = SignRole(_text(entry["role"], "role"))
        name = _text(entry["name"], "name")
        karyotype = _text(entry["karyotype"], "karyotype")
        at = datetime.fromisoformat(_text(entry["at"], "at"))
        try:
            signature = case.sign(role, name, karyotype)
        except SignOffRefused as error:
            problem = (f"case {case.case_id}: the {role.value}'s signature ({name}) was not "
                       f"kept: {error}; modified outside karyo?")
            case.problems.append(problem)
            case.audit.append(Correction("", "sign", role.value, "not kept (not valid)",
                                         "karyo (signature not verified)", now_utc()))
            continue
        case.audit.pop()  # sign() logged it again: the stored trail already has it
        case.signatures[-1] = Signature(signature.role, signature.name, at, karyotype)
    if case.signatures and case.signatures[0].karyotype != case_karyotype(case):
        signed = case.signatures[0].karyotype
        problem = (f"case {case.case_id}: signed as {signed}, but its cells now read "
                   f"{case_karyotype(case) or 'nothing'} (modified outside karyo?); the "
                   "signatures were withdrawn: check the case and sign it again")
        case.problems.append(problem)
        case.reopen(by="karyo (signature not verified)", reason="karyotype changed since signing")


def _check_counts(cells: list[Any]) -> None:
    """Refuse, before building any of them, more cells, chromosomes or audit entries than
    karyo opens (a hand-made file listing 10^6 chromosomes froze the window for minutes)."""
    if len(cells) > MAX_CASE_CELLS:
        raise _TooLarge(f"the case file lists {len(cells):,} cells, more than karyo opens as "
                        f"one case (at most {MAX_CASE_CELLS:,}); split it into several cases")
    total = 0
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            continue  # named by the loader
        name = cell.get("name")
        shown = f"cell {name}" if isinstance(name, str) else f"cell {index + 1}"
        for key, limit, what in (("chromosomes", MAX_FILE_CHROMOSOMES, "chromosomes"),
                                 ("audit", MAX_AUDIT_ENTRIES, "audit entries")):
            entries = cell.get(key)
            count = len(entries) if isinstance(entries, list) else 0
            if count > limit:
                raise _TooLarge(f"{shown} lists {count:,} {what}, more than karyo opens in "
                                f"one cell (at most {limit:,}); hand-edited or merged?")
        chromosomes = cell.get("chromosomes")
        total += len(chromosomes) if isinstance(chromosomes, list) else 0
    if total > MAX_CASE_CHROMOSOMES:
        raise _TooLarge(f"the case file lists {total:,} chromosomes, more than karyo opens as "
                        f"one case (at most {MAX_CASE_CHROMOSOMES:,}); split it into several")


def _correction(entry: Any) -> Correction:
    entry = _of_kind(entry, dict, "each audit entry")
    return Correction(
        chromosome_id=_text(entry["chromosome"], "chromosome"),
        action=_text(entry["action"], "action"),
        before=_text(entry["from"], "from"),
        after=_text(entry["to"], "to"),
        by=_text(entry["by"], "by"),
        at=datetime.fromisoformat(_text(entry["at"], "at")),
    )


def _cell_from_dict(data: dict[str, Any], base: Path, case_budget: PixelBudget | None = None
                    ) -> Cell:
    cell = Cell(
        name=_text(data["name"], "name"),
        source=_absolute_path(_text(data.get("source"), "source", optional=True), base),
        status=CellStatus(_text(data["status"], "status")),
        model_id=_text(data.get("model_id"), "model_id", optional=True),
        finder_id=_text(data.get("finder_id"), "finder_id", optional=True),
        audit=[_correction(entry) for entry in _of_kind(data["audit"], list, "'audit'")],
        roles={CellRole(_text(role, "role"))
               for role in _of_kind(data.get("roles", []), list, "'roles'")},
    )
    stored_digest = _text(data.get("sign_off_digest"), "sign_off_digest", optional=True)
    budget = PixelBudget.for_cell(case_budget)
    not_read = 0  # crops left unread once a budget was spent
    state, saved_size = "none", None
    if data.get("metaphase") is not None:
        cell.metaphase, state = _metaphase_from_dict(data["metaphase"], cell.name, base,
                                                     cell.problems, budget)
        saved_size = (data["metaphase"]["width"], data["metaphase"]["height"])
    outside = 0
    for chromosome_data in _of_kind(data["chromosomes"], list, "'chromosomes'"):
        chromosome = _chromosome_from_dict(_of_kind(chromosome_data, dict, "each chromosome"), base)
        chromosome.region = _region_from_dict(chromosome_data, chromosome.id, saved_size,
                                              cell.problems)
        if chromosome.region is None:
            if budget.exhausted is not None:
                chromosome.flags.add(Flag.IMAGE_MISSING)
                not_read += 1
            else:
                _attach_image(chromosome, chromosome_data, cell.problems, budget)
            if chromosome_data.get("region") is not None and chromosome.image is None:
                chromosome.flags.add(Flag.IMAGE_MISSING)
        elif cell.metaphase is not None and state == "missing":
            chromosome.flags.add(Flag.IMAGE_MISSING)
        elif cell.metaphase is not None and _fits(chromosome.region, cell.metaphase):
            if budget.exhausted is not None:
                chromosome.flags.add(Flag.IMAGE_MISSING)
                not_read += 1
            else:
                _cut_within_budget(chromosome, cell, budget)
        else:  # the image changed size since the case was saved
            chromosome.flags.add(Flag.IMAGE_CHANGED)
            outside += 1
        if state == "changed":
            chromosome.flags.add(Flag.IMAGE_CHANGED)
        cell.chromosomes.append(chromosome)
    if outside:
        cell.problems.append(
            f"cell {cell.name}: {outside} chromosome(s) lie outside the metaphase image as it "
            "is now; they keep their labels but cannot be shown"
        )
    if not_read:
        spent = budget.exhausted or budget
        cell.problems.append(f"cell {cell.name}: {not_read} more crop(s) {spent.message()}; "
                             "they keep their labels but cannot be shown")
    _rename_duplicates(cell)
    for marked in _of_kind(data.get("abnormalities", []), list, "'abnormalities'"):
        marked = _of_kind(marked, dict, "each abnormality")
        ids = tuple(_text(i, "chromosome") for i in _of_kind(marked["chromosomes"], list,
                                                             "'chromosomes'"))
        known = {c.id for c in cell.chromosomes}
        if not set(ids) <= known:
            cell.problems.append(f"cell {cell.name}: the abnormality {marked['iscn']!r} names "
                                 f"chromosomes the cell does not have "
                                 f"({', '.join(sorted(set(ids) - known))}); dropped")
            continue
        cell.abnormalities.append(MarkedAbnormality(
            _text(marked["iscn"], "iscn"), ids, _text(marked["by"], "by"),
            datetime.fromisoformat(_text(marked["at"], "at"))))
    if cell.status is CellStatus.SIGNED_OFF:
        _check_sign_off(cell, stored_digest)
    return cell


def _cut_within_budget(chromosome: Chromosome, cell: Cell, budget: PixelBudget) -> None:
    """The chromosome's crop cut from its metaphase, its box's pixels taken from the budget
    first; refused: flagged image_missing, the reason in the cell's problems."""
    x0, y0, x1, y1 = chromosome.region.box
    try:
        budget.take(f"chromosome {chromosome.id} of cell {cell.name}", (x1 - x0) * (y1 - y0))
    except PixelBudgetExceeded as error:
        chromosome.flags.add(Flag.IMAGE_MISSING)
        cell.problems.append(str(error))
        return
    chromosome.image = cut_crop(cell.metaphase.pixels, chromosome.region)


def _check_sign_off(cell: Cell, stored: str | None) -> None:
    """Keep a sign-off only when the digest saved with it is that of the cell as loaded;
    otherwise the cell opens as reviewed, "modified outside karyo", and says why."""
    expected = sign_off_digest(cell)
    if stored is not None and stored == expected:  # nothing secret: == is fine
        cell.sign_off_digest = stored
        return
    signed = last_sign_off(cell)
    claim = ("" if signed is None
             else f" by {signed.by} on {signed.at.strftime('%Y-%m-%d %H:%M')}")
    if expected is None:
        why = "its audit trail records no sign-off"
    elif stored is None:
        why = ("the case file holds no sign-off digest: signed by a karyo that did not record "
               "one, or marked signed off by hand")
    else:
        why = "its labels, edits or audit trail are not those that were signed off"
    problem = (f"cell {cell.name}: sign-off{claim} modified outside karyo ({why}); opened as "
               "reviewed, not signed off: check the cell and sign it off again")
    cell.status = CellStatus.REVIEWED
    cell.sign_off_digest = None
    cell.sign_off_problem = problem
    cell.problems.append(problem)
    cell.audit.append(Correction("", "status", CellStatus.SIGNED_OFF.value,
                                 CellStatus.REVIEWED.value, "karyo (sign-off not verified)",
                                 now_utc()))


def _rename_duplicates(cell: Cell) -> None:
    """Give every chromosome of the cell its own id: the karyogram, the edits and the audit
    trail find a chromosome by its id, so a second "c001" (a hand-edited or merged file)
    would hide a crop and let edits hit the wrong one. The first keeps the id; later ones
    become "c001 (2)", "c001 (3)", ..., each named in the cell's problems."""
    taken = {chromosome.id for chromosome in cell.chromosomes}
    seen: set[str] = set()
    renamed = []
    for chromosome in cell.chromosomes:
        if chromosome.id not in seen:
            seen.add(chromosome.id)
            continue
        number = 2
        while f"{chromosome.id} ({number})" in taken:
            number += 1
        new_id = f"{chromosome.id} ({number})"
        renamed.append(f"{chromosome.id} -> {new_id}")
        chromosome.id = new_id
        taken.add(new_id)
        seen.add(new_id)
    if renamed:
        cell.problems.append(
            f"cell {cell.name}: {len(renamed)} chromosome(s) had the id of another one and "
            f"were renamed ({', '.join(renamed[:5])}{', ...' if len(renamed) > 5 else ''}); "
            "the audit trail's entries for that id are the first one's"
        )


def _fits(region: Region, metaphase: MetaphaseImage) -> bool:
    return region.box[2] <= metaphase.width and region.box[3] <= metaphase.height


def _metaphase_from_dict(data: Any, cell_name: str, base: Path, problems: list[str],
                         budget: PixelBudget | None = None) -> tuple[MetaphaseImage, str]:
    """The cell's metaphase image read again, and its state: "ok", "changed" (content hash
    or size differ from the saved ones) or "missing" (unreadable: a white stand-in of the
    saved size, so that the regions and labels still load and save)."""
    if not isinstance(data, dict):
        raise TypeError("'metaphase' must be an object or null")
    width, height = data["width"], data["height"]
    if not all(type(v) is int and v >= 1 for v in (width, height)):
        raise ValueError("metaphase 'width' and 'height' must be positive whole numbers")
    if width * height > MAX_METAPHASE_PIXELS:
        raise ValueError(f"metaphase of {width} x {height} px is larger than karyo reads")
    scale, inverted = data.get("scale", 1.0), data.get("inverted", False)
    if type(scale) not in (int, float) or not math.isfinite(scale) or scale <= 0:
        raise ValueError("metaphase 'scale' must be a positive number")
    if not isinstance(inverted, bool):
        raise TypeError("metaphase 'inverted' must be true or false")
    source, digest = data.get("source_path"), data.get("content_hash")
    for key, value in (("source_path", source), ("content_hash", digest)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"metaphase {key!r} must be text or null")
    source = _absolute_path(source, base)

    def stand_in(reason: str, spent: bool = False) -> tuple[MetaphaseImage, str]:
        problems.append(f"{reason}; the chromosomes keep their labels but cannot be shown")
        if spent:  # past the budget: a white stand-in that takes no memory (read-only)
            pixels = np.broadcast_to(np.uint8(255), (height, width))
        else:
            pixels = np.full((height, width), 255, dtype=np.uint8)
        return MetaphaseImage(pixels, source, digest, float(scale), inverted,
                              notes=[reason], missing=True), "missing"

    if budget is not None:
        try:
            budget.take(f"cell {cell_name}", width * height)
        except PixelBudgetExceeded:
            spent = budget.exhausted or budget
            where = display_path(source) if source else f"cell {cell_name}"
            return stand_in(f"{where}: {spent.message('images')}", spent=True)

    if source is None:
        encoded = data.get("image_png")
        if encoded is None:
            return stand_in(f"cell {cell_name}: its metaphase image is not in the case file")
        if not isinstance(encoded, str):
            raise TypeError("metaphase 'image_png' must be text")
        try:
            pixels = _decode_embedded(encoded, width, height)
        except ValueError as error:  # binascii.Error too
            return stand_in(f"cell {cell_name}: embedded metaphase image damaged ({error})")
        return MetaphaseImage(pixels, None, digest, float(scale), inverted), "ok"
    try:
        image = read_metaphase(source)
    except MetaphaseReadError as error:
        return stand_in(f"{display_path(error.path)}: {error.reason}")
    state = "ok"
    if digest is not None and image.content_hash != digest:
        state = "changed"
        image.content_hash = digest  # as for crops: saved again, the case still says so
        problems.append(
            f"{display_path(source)}: the metaphase image changed since the case was saved "
            "(content hash differs); check its chromosomes and their labels"
        )
    if (image.width, image.height) != (width, height):
        state = "changed"
        problems.append(
            f"{display_path(source)}: the metaphase image is now {image.width} x "
            f"{image.height} px, saved as {width} x {height}; its regions may not fit"
        )
    return image, state


def _decode_embedded(encoded: str, width: int, height: int) -> np.ndarray:
    """An embedded PNG of the saved size as grey pixels, exactly as saved (not inverted or
    resized again). ValueError says what is wrong."""
    png = base64.b64decode(encoded, validate=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(png)) as image:
                if image.size != (width, height):
                    raise ValueError(f"{image.size[0]} x {image.size[1]} px, saved as "
                                     f"{width} x {height}")
                image.load()
                grey = image if image.mode == "L" else image.convert("L")
                return np.array(grey, dtype=np.uint8)
    except ValueError:
        raise
    except Image.DecompressionBombError:
        raise ValueError(f"claims a far larger size than the saved {width} x {height} px"
                         ) from None
    except Exception as error:  # Pillow's many ways to fail on bad bytes
        raise ValueError(f"not a readable PNG: {error}") from None


def _region_from_dict(data: dict[str, Any], chromosome_id: str,
                      saved_size: tuple[int, int] | None, problems: list[str]) -> Region | None:
    """The chromosome's region, checked against its metaphase's saved size; a bad one is a
    problem naming the chromosome (it keeps its labels) and None."""
    stored = data.get("region")
    if stored is None:
        return None
    if saved_size is None:
        problems.append(
            f"chromosome {chromosome_id}: has a region but its cell has no metaphase image; "
            "region dropped"
        )
        return None
    try:
        return _checked_region(stored, *saved_size)
    except ValueError as error:
        problems.append(f"chromosome {chromosome_id}: damaged region ({error}); region dropped")
        return None


def _checked_region(stored: Any, width: int, height: int) -> Region:
    if not isinstance(stored, dict):
        raise ValueError("not an object")
    box, runs = stored.get("box"), stored.get("runs")
    if not (isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)):
        raise ValueError("'box' must be four whole numbers")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {box} is empty or not inside the {width} x {height} image")
    area = (x1 - x0) * (y1 - y0)
    if area > MAX_REGION_PIXELS:
        raise ValueError(f"box {box} holds {area:,} pixels, more than one chromosome can")
    if not (isinstance(runs, list) and len(runs) <= area + 1
            and all(type(v) is int and v >= 0 for v in runs)):
        raise ValueError("'runs' must be a list of run lengths (whole numbers >= 0)")
    if sum(runs) != area:
        raise ValueError(f"run lengths add up to {sum(runs):,}, not the box's {area:,} pixels")
    region = Region.from_runs((x0, y0, x1, y1), runs)
    if region.area == 0:
        raise ValueError("region has no pixels")
    return region


def _chromosome_from_dict(data: dict[str, Any], base: Path) -> Chromosome:
    manual = data.get("manual")
    if manual is not None:
        manual = _of_kind(manual, dict, "'manual'")
    probabilities = data.get("probabilities")
    orientation = _of_kind(data.get("orientation") or {}, dict, "'orientation'")
    rotation, flipped = orientation.get("rotation", 0), orientation.get("flipped", False)
    if type(rotation) is not int:
        raise TypeError(f"'rotation' must be a whole number of degrees, not {_kind(rotation)}")
    if not isinstance(flipped, bool):
        raise TypeError(f"'flipped' must be true or false, not {_kind(flipped)}")
    found_score = data.get("found_score")
    if found_score is not None and (
        type(found_score) not in (int, float) or not math.isfinite(found_score)
    ):
        raise ValueError("'found_score' must be a number or null")
    flags = _of_kind(data.get("flags", []), list, "'flags'")
    return Chromosome(
        id=_text(data["id"], "id"),
        image=None,
        source_path=_absolute_path(_text(data.get("source_path"), "source_path", True), base),
        content_hash=_text(data.get("content_hash"), "content_hash", optional=True),
        given=_parse_label(data.get("given")),
        predicted=_parse_label(data.get("predicted")),
        probabilities=None if probabilities is None else _probabilities(probabilities),
        assigned=_parse_label(data.get("assigned")),
        manual=None
        if manual is None
        else ManualLabel(
            label=ChromosomeType.from_name(_text(manual["label"], "label")),
            by=_text(manual["by"], "by"),
            at=datetime.fromisoformat(_text(manual["at"], "at")),
        ),
        orientation=Orientation(rotation, flipped),
        flags={Flag(_text(flag, "flags")) for flag in flags}
        - {Flag.IMAGE_MISSING, Flag.IMAGE_CHANGED},  # re-checked below, on this machine
        found_score=None if found_score is None else float(found_score),
    )


def _probabilities(values: list[float]) -> np.ndarray:
    if not isinstance(values, list) or not all(type(v) in (int, float) for v in values):
        raise ValueError("probabilities must be 24 finite numbers")
    array = np.asarray(values, dtype=np.float32)
    if array.shape != (24,) or not np.all(np.isfinite(array)):
        raise ValueError("probabilities must be 24 finite numbers")
    return array


def _absolute_path(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    return str(base / path) if not Path(path).is_absolute() else path


def _attach_image(chromosome: Chromosome, data: dict[str, Any], problems: list[str],
                  budget: PixelBudget | None = None) -> None:
    try:
        if chromosome.source_path is None:
            if "image_png" in data:
                shown = f"embedded image of {chromosome.id}"
                encoded = data["image_png"]
                if isinstance(encoded, str) and len(encoded) > images.MAX_CROP_BYTES * 4 // 3 + 4:
                    raise CropReadError(shown, f"more than {images.MAX_CROP_BYTES / 2**20:,.0f} "
                                               "MiB, more than karyo reads for one image")
                png = base64.b64decode(encoded, validate=True)
                chromosome.image = decode_crop(png, shown, budget)
            return
        chromosome.image, digest = read_crop_and_hash(chromosome.source_path, budget)
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
