"""Two windows, or two workstations on a shared folder, on one case file.

* A **fingerprint** of the case file (size, modification time, SHA-256 of its bytes) is
  taken when a window opens it and after each save; before the next save the file on disk
  is compared with it, so that an edit saved meanwhile by another window is never
  overwritten without asking.
* A **lock file** beside the case file (``.NAME.karyo-lock``, a few lines of JSON: host,
  process, user, start time, window) tells a second window that the case is open
  elsewhere. A lock whose process is gone (same host), or that has not been refreshed for
  ``OTHER_HOST_FRESH_HOURS`` (another host), is stale and taken over. A lock that cannot
  be written (a read-only folder) never stops a case from opening.
* Each window is a **session** (:func:`new_session`); what a session holds (a lock, a
  recovery file) names it, so that a live window's files are told from a crashed one's.

Pure Python: no Qt, no torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import secrets
import socket
import stat
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from karyo_gui.core.case import current_user
from karyo_gui.core.loaders import display_path

LOCK_SUFFIX = ".karyo-lock"
OTHER_HOST_FRESH_HOURS = 12.0  # a lock of another host refreshed within this is live
MAX_HOLDER_BYTES = 4096  # a lock or owner file is a few hundred bytes; more is not ours
_READ_CHUNK = 1 << 20

_numbers = itertools.count(1)
_live_sessions: set[str] = set()  # the sessions (windows) of this process still open


# ------------------------------------------------------------------------ fingerprints
@dataclass(frozen=True)
class Fingerprint:
    """What a case file was when it was read or written."""

    size: int
    mtime_ns: int
    sha256: str


def fingerprint(path: str | os.PathLike) -> Fingerprint | None:
    """The file's fingerprint; None when it is not there or is not a regular file (a pipe
    is never opened: it would block) or cannot be read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            digest = hashlib.sha256()
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return Fingerprint(info.st_size, info.st_mtime_ns, digest.hexdigest())


def changed_on_disk(path: str | os.PathLike, expected: Fingerprint | None) -> str | None:
    """Why the file at ``path`` is no longer what ``expected`` describes (one phrase), or
    None when it still is. Same bytes count as unchanged, even if the file was touched."""
    if expected is None:
        return None
    now = fingerprint(path)
    if now is None:
        return "was deleted, moved or made unreadable since this window opened it"
    if now.size == expected.size and now.sha256 == expected.sha256:
        return None
    when = datetime.fromtimestamp(now.mtime_ns / 1e9)
    return f"was changed on disk at {when:%Y-%m-%d %H:%M:%S}, after this window opened it"


# ---------------------------------------------------------------------------- sessions
def this_host() -> str:
    try:
        return socket.gethostname() or "unknown host"
    except OSError:
        return "unknown host"


def new_session() -> str:
    """A new window's session id: letters and digits only (it goes into file names)."""
    session = f"{os.getpid()}w{next(_numbers)}{secrets.token_hex(3)}"
    _live_sessions.add(session)
    return session


def end_session(session: str) -> None:
    """The window closed: what it still names (a lock, a recovery file) is no longer live."""
    _live_sessions.discard(session)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock or a recovery file."""

    host: str
    pid: int
    user: str
    started: float  # seconds since the epoch
    session: str

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.started)
        where = ("in another karyo window" if self.host == this_host()
                 else f"on {self.host}")
        return f"{where} ({self.user}, process {self.pid}) since {since:%Y-%m-%d %H:%M}"


def holder_of(session: str) -> Holder:
    return Holder(this_host(), os.getpid(), current_user(), time.time(), session)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that id runs (a zombie does not)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        return True
    except OSError:
        return False
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def _windows_pid_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel = ctypes.windll.kernel32
    handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
    finally:
        kernel.CloseHandle(handle)


def is_live(holder: Holder, age_seconds: float) -> bool:
    """Whether the session that wrote ``holder`` still runs: on this host, its process
    (in this process: its window still open); on another host, whose processes cannot be
    seen, a file refreshed within OTHER_HOST_FRESH_HOURS counts as live."""
    if holder.host == this_host():
        if holder.pid == os.getpid():
            return holder.session in _live_sessions
        return pid_alive(holder.pid)
    return age_seconds < OTHER_HOST_FRESH_HOURS * 3600


def read_holder(path: str | os.PathLike) -> tuple[Holder, float] | None:
    """The holder written in a lock or owner file and the file's age in seconds; None
    when there is none, or it is empty, damaged or not a regular file (then it is stale)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_HOLDER_BYTES:
            return None
        with open(path, "rb") as handle:
            data = json.loads(handle.read(MAX_HOLDER_BYTES).decode("utf-8"))
        holder = Holder(str(data["host"]), int(data["pid"]), str(data["user"]),
                        float(data["started"]), str(data["session"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None
    return holder, max(0.0, time.time() - info.st_mtime)


def live_holder(path: str | os.PathLike, session: str | None = None) -> Holder | None:
    """The live session other than ``session`` that holds the lock or owner file at
    ``path``; None when nobody does (no file, a stale or damaged one, or our own)."""
    found = read_holder(path)
    if found is None:
        return None
    holder, age = found
    if holder.session == session or not is_live(holder, age):
        return None
    return holder


def write_holder(path: str | os.PathLike, session: str, exclusive: bool = False) -> None:
    """Write this session as the holder of ``path`` (OSError when it cannot be written;
    FileExistsError when ``exclusive`` and the file is there). No temporary file: a write
    cut by a kill leaves a damaged file, which counts as stale."""
    text = json.dumps(asdict(holder_of(session))).encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        os.write(descriptor, text)
    finally:
        os.close(descriptor)


# ------------------------------------------------------------------------------- locks
def lock_path(case_file: str | os.PathLike) -> Path:
    """The lock file of a case file: beside the file itself (a symlink is followed, so two
    links to one shared file share one lock)."""
    real = Path(os.path.realpath(case_file))
    return real.with_name(f".{real.name}{LOCK_SUFFIX}")


@dataclass(frozen=True)
class LockState:
    """What :func:`take_lock` found and did."""

    path: Path
    held: bool  # this session holds the lock now
    other: Holder | None = None  # the live session that holds it instead
    problem: str | None = None  # why it could not be written (opening goes on)


def take_lock(case_file: str | os.PathLike, session: str) -> LockState:
    """Lock ``case_file`` for ``session`` unless another live session holds it; a stale
    lock (its process gone, or damaged) is taken over silently. Never raises."""
    path = lock_path(case_file)
    other = live_holder(path, session)
    if other is not None:
        return LockState(path, False, other)
    try:
        try:
            write_holder(path, session, exclusive=True)
        except FileExistsError:  # stale, damaged or our own: replaced
            with contextlib.suppress(FileNotFoundError):
                if live_holder(path, session) is None:
                    os.unlink(path)
            write_holder(path, session, exclusive=True)
    except FileExistsError:  # another window took it between the look and the write
        other = live_holder(path, session)
        if other is not None:
            return LockState(path, False, other)
        return LockState(path, False, problem=f"{display_path(path)}: lock file in use")
    except OSError as error:
        reason = error.strerror or str(error)
        return LockState(path, False, problem=f"{display_path(path)}: lock file not written "
                                              f"({reason}); other windows are not told")
    found = read_holder(path)
    if found is None or found[0].session != session:  # replaced meanwhile by another
        other = found[0] if found is not None else None
        return LockState(path, False, other)
    return LockState(path, True)


def refresh_lock(state: LockState | None) -> None:
    """Keep a held lock young (other hosts count a lock unrefreshed for hours as stale)."""
    if state is not None and state.held:
        with contextlib.suppress(OSError):
            os.utime(state.path)


def release_lock(state: LockState | None, session: str) -> None:
    """Remove the lock if this session still holds it (another's is never removed)."""
    if state is None or not state.held:
        return
    found = read_holder(state.path)
    if found is not None and found[0].session == session:
        with contextlib.suppress(OSError):
            os.unlink(state.path)
