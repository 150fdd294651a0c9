"""Per-user settings and recovery files, in the places platformdirs names for this system.

Settings (window state, recent files, reviewer name, the model last loaded...) live in an
INI file in the user's config folder; autosaved edits that were never saved live in the
user's data folder, one case file per case and window, so that a crash loses nothing.

A recovery file is owned by the window (session) autosaving into it (``NAME.owner``
beside it, see :mod:`karyo_gui.core.file_guard`): a second window on the same case
autosaves into a file of its own, and the recovery offered at start lists only the files
of windows that are no longer running.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import platformdirs
from PySide6.QtCore import QSettings

from karyo_gui.core.case import Study, current_user
from karyo_gui.core.case_file import SUFFIX, remove_orphan_temporaries, write_atomically
from karyo_gui.core.case_karyotype import DEFAULT_POLICIES as _DEFAULT
from karyo_gui.core.case_karyotype import CellPolicy
from karyo_gui.core.file_guard import live_holder, read_holder, write_holder

APP = "karyo"
MAX_RECENT = 10


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def recovery_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP, appauthor=False)) / "autosave"


class _Choice:
    """A setting stored under ``key``, read back as ``kind`` (``default`` when unset or
    unreadable); floats are kept within ``limits``."""

    def __init__(self, key: str, default, kind=bool, limits: tuple[float, float] | None = None):
        self.key, self.default, self.kind, self.limits = key, default, kind, limits

    def __get__(self, settings, owner=None):
        if settings is None:
            return self
        value = settings._get(self.key, self.default, self.kind)
        if self.limits is not None:
            low, high = self.limits
            value = min(max(value, low), high) if value == value else self.default  # NaN
        return value

    def __set__(self, settings, value) -> None:
        settings.store.setValue(self.key, self.kind(value))


def _policy(study: str, role: str) -> _Choice:
    """A number of the lab's cell policy, 1-200 (defaults: DEFAULT_POLICIES)."""
    return _Choice(f"policy/{study}_{role}", getattr(_DEFAULT[Study(study)], role), int,
                   (1, 200))


class Settings:
    """Typed access to the user's settings (QSettings in INI format)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / f"{APP}.ini"
        _remove_dead_lock(self.path.with_name(self.path.name + ".lock"))
        self.store = QSettings(str(self.path), QSettings.Format.IniFormat)

    def _get(self, key: str, default, kind=str):
        value = self.store.value(key, default)
        if kind is bool:
            return value in (True, "true", "1", 1)
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    @property
    def reviewer(self) -> str:
        return self._get("review/reviewer", "") or current_user()

    @reviewer.setter
    def reviewer(self, name: str) -> None:
        self.store.setValue("review/reviewer", name.strip())

    @property
    def classify_on_open(self) -> bool:
        return self._get("review/classify_on_open", True, bool)

    @classify_on_open.setter
    def classify_on_open(self, value: bool) -> None:
        self.store.setValue("review/classify_on_open", bool(value))

    @property
    def sex_last(self) -> bool:
        """X and Y together after 22 instead of X after 12."""
        return self._get("view/sex_last", False, bool)

    @sex_last.setter
    def sex_last(self, value: bool) -> None:
        self.store.setValue("view/sex_last", bool(value))

    # the karyogram's look (View menu): never what the chromosomes are
    review_marks = _Choice("view/review_marks", True)
    straightened = _Choice("view/straightened", False)
    centromere_aligned = _Choice("view/centromere_aligned", True)
    ideograms_beside = _Choice("view/ideograms_beside", False)
    brightness = _Choice("view/brightness", 0.0, float, (-0.5, 0.5))
    contrast = _Choice("view/contrast", 1.0, float, (0.25, 4.0))
    gamma = _Choice("view/gamma", 1.0, float, (0.3, 3.0))
    sharpen = _Choice("view/sharpen", 0.0, float, (0.0, 2.0))
    # N (next flagged) also stops at chromosomes whose orientation is unsure
    orientation_in_review = _Choice("review/orientation_in_review", False)
    # the lab's policy: cells to count / analyse / karyogram per case (Case > Lab policy)
    constitutional_counted = _policy("constitutional", "counted")
    constitutional_analysed = _policy("constitutional", "analysed")
    constitutional_karyogrammed = _policy("constitutional", "karyogrammed")
    oncology_counted = _policy("oncology", "counted")
    oncology_analysed = _policy("oncology", "analysed")
    oncology_karyogrammed = _policy("oncology", "karyogrammed")

    def policy(self, study) -> CellPolicy:
        """The lab's cell policy for a study (defaults: constitutional 20/5/2, oncology
        20/20/2, the ACMG guidelines' usual numbers)."""
        return CellPolicy(*(getattr(self, f"{study.value}_{role}")
                            for role in ("counted", "analysed", "karyogrammed")))

    def set_policy(self, study, policy: CellPolicy) -> None:
        for role in ("counted", "analysed", "karyogrammed"):
            setattr(self, f"{study.value}_{role}", getattr(policy, role))

    @property
    def model_path(self) -> str | None:
        """The model file the user loaded last, remembered once it had loaded (None: the
        shipped model)."""
        return self._get("model/path", "") or None

    @model_path.setter
    def model_path(self, path: str | None) -> None:
        self.store.setValue("model/path", path or "")

    @property
    def base_data(self) -> str | None:
        """The labelled dataset mixed into retraining (replay); None until one is chosen."""
        return self._get("retrain/base_data", "") or None

    @base_data.setter
    def base_data(self, folder: str | None) -> None:
        self.store.setValue("retrain/base_data", folder or "")

    def recent_files(self) -> list[str]:
        value = self.store.value("files/recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in value or [] if v]

    def add_recent(self, path: str | os.PathLike) -> list[str]:
        path = str(Path(path).resolve())
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.store.setValue("files/recent", recent[:MAX_RECENT])
        return recent[:MAX_RECENT]

    def clear_recent(self) -> None:
        self.store.setValue("files/recent", [])

    def sync(self) -> None:
        self.store.sync()


def _remove_dead_lock(lock: Path, older_than: float = 0.2) -> None:
    """Remove an empty settings lock file left by a process killed while taking it.

    QSettings cannot tell whose lock an empty file is, so it would wait its 30-second stale
    time before every write, freezing the window at the next start. A live process writes
    its id into the lock microseconds after creating it: one empty for 0.2 s is dead.
    """
    with contextlib.suppress(OSError):
        info = lock.stat()
        if info.st_size == 0 and time.time() - info.st_mtime > older_than:
            lock.unlink()


# ------------------------------------------------------------------ recovery of unsaved edits
@dataclass(frozen=True)
class Recovery:
    """Autosaved edits of one case: the case file to restore and where the case came from."""

    path: Path  # the autosaved case file
    origin: str  # the case file or folder the user opened ("" for an example cell)
    case_id: str
    saved: datetime

    def describe(self) -> str:
        where = self.origin or "example cell"
        return f"{self.case_id} ({where}), {self.saved:%Y-%m-%d %H:%M}"


def recovery_path(case_id: str, origin: str | os.PathLike | None,
                  session: str | None = None) -> Path:
    """Where the edits of this case are autosaved: one file per case and origin, and, for
    a window whose case another live window autosaves already, one of its ``session``."""
    # a folder name that is not valid UTF-8 is kept as its bytes (surrogateescape)
    key = hashlib.sha256(
        f"{case_id}\0{origin or ''}".encode("utf-8", "surrogateescape")
    ).hexdigest()[:12]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case_id)[:40] or "case"
    tag = f"~{session}" if session else ""
    return recovery_dir() / f"{safe}-{key}{tag}{SUFFIX}"


_RECOVERY_NAME = re.compile(r"^(?P<case>.*)-[0-9a-f]{12}(?:~[A-Za-z0-9]+)?$")


def _sidecar(recovery: Path, kind: str) -> Path:
    return recovery.with_name(f"{recovery.name}.{kind}")


def write_origin(recovery: Path, origin: str | os.PathLike | None) -> None:
    """Note where the case came from beside its recovery file (atomically: kills happen)."""
    origin_file = _sidecar(recovery, "origin")
    text = str(origin or "")
    try:
        unchanged = origin_file.read_text(encoding="utf-8", errors="surrogateescape") == text
    except OSError:
        unchanged = False
    if not unchanged:
        write_atomically(origin_file, text, errors="surrogateescape")


def recovery_holder(recovery: Path, session: str | None = None):
    """The live window (other than ``session``) autosaving into ``recovery``, or None."""
    return live_holder(_sidecar(recovery, "owner"), session)


def claim_recovery(case_id: str, origin: str | os.PathLike | None, session: str) -> Path:
    """The recovery file a window (``session``) autosaves this case into, marked as its
    own: the case's file, unless another live window autosaves into it; then the
    window's own. A file left by a window that is gone is taken over."""
    shared = recovery_path(case_id, origin)
    path = shared if recovery_holder(shared, session) is None else recovery_path(
        case_id, origin, session)
    own_recovery(path, session)
    return path


def owns_recovery(recovery: Path, session: str) -> bool:
    """Whether ``session`` still autosaves into ``recovery`` (no other window took it over
    to recover its edits)."""
    found = read_holder(_sidecar(recovery, "owner"))
    return found is not None and found[0].session == session


def own_recovery(recovery: Path, session: str) -> None:
    """Mark ``recovery`` as autosaved by ``session`` (best effort: a missing owner file
    only makes the recovery look like a crashed window's)."""
    owner = _sidecar(recovery, "owner")
    found = read_holder(owner)
    if found is not None and found[0].session == session:
        return
    with contextlib.suppress(OSError):
        owner.parent.mkdir(parents=True, exist_ok=True)
        write_holder(owner, session)


def release_recovery(recovery: Path | None, session: str) -> None:
    """The window leaves the case (another case opened, the window closed): its unsaved
    edits, if any, become a recovery any window is offered."""
    if recovery is None:
        return
    owner = _sidecar(recovery, "owner")
    found = read_holder(owner)
    if found is not None and found[0].session == session:
        owner.unlink(missing_ok=True)


def set_aside_recovery(recovery: Path, session: str) -> Path | None:
    """Move a window's recovery file out of the way under a name of its own (the window
    reloads its case: the edits it had stay recoverable); the new path, or None."""
    if not recovery.is_file():
        return None
    stem = recovery.name[: -len(SUFFIX)].split("~", 1)[0]
    moved = recovery.with_name(f"{stem}~{session}t{time.time_ns()}{SUFFIX}")
    try:
        origin = _sidecar(recovery, "origin")
        if origin.is_file():
            os.replace(origin, _sidecar(moved, "origin"))
        os.replace(recovery, moved)
    except OSError:
        return None
    release_recovery(recovery, session)
    return moved


def discard_recovery(recovery: Path) -> None:
    """Drop a case's autosaved edits (saved or discarded), and what killed autosaves left."""
    for path in (recovery, _sidecar(recovery, "origin"), _sidecar(recovery, "owner")):
        path.unlink(missing_ok=True)
        remove_orphan_temporaries(path)  # else only a later autosave of this case would


def pending_recoveries(session: str | None = None) -> list[Recovery]:
    """Autosaved edits that were never saved, newest first. With ``session`` (the window
    asking), those another live window is autosaving into are left out."""
    folder = recovery_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(f"*{SUFFIX}"):
        origin_file = _sidecar(path, "origin")
        try:
            if not path.is_file():
                continue
            origin = (
                origin_file.read_text(encoding="utf-8", errors="surrogateescape")
                if origin_file.is_file() else ""
            )
            saved = datetime.fromtimestamp(path.stat().st_mtime)
        except (OSError, UnicodeDecodeError):
            continue
        if session is not None and recovery_holder(path, session) is not None:
            continue  # another window is open on it: its edits are not lost
        stem = path.name[: -len(SUFFIX)]
        named = _RECOVERY_NAME.match(stem)
        case_id = named["case"] if named else stem.rsplit("-", 1)[0]
        found.append(Recovery(path, origin, case_id, saved))
    return sorted(found, key=lambda r: r.saved, reverse=True)
