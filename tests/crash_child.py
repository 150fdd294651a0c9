"""The app killed in the middle of a write, and the loop that kills it.

Run as a script this is the *child*: the real review window (offscreen, no model) opens a
case file and edits it for ever: one change of the labels per step, the case's notes set
to the step's version, an autosave (called, or by the window's own 0.3 s timer) and now
and then a Save. Before and after each write it prints one line, so the parent knows
which versions are confirmed on disk and which write was under way when it died::

    python tests/crash_child.py CASE_FILE --first-version 17 [--seed 3]

    ready 17
    autosave-begin 17 <fingerprint>     (or autosave-armed: the timer will write it)
    autosave-done 17
    save-begin 17 <fingerprint>
    save-done 17

The rest is the *parent* side, shared by tests/test_crash_safety.py and
bench/crash_loop.py: start the child, SIGKILL it at a random moment or just after a
write began, then check that the case file is the old or the new version and that the
recovery file loads. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from karyo_gui.core.case import Case
from karyo_gui.core.case_file import SUFFIX, CaseFileError, load_case, save_case

CHILD = Path(__file__).resolve()
NOTE = "crash-loop version "
TIMER_SHARE = 0.2  # steps whose autosave is left to the window's timer
SAVE_SHARE = 0.4  # steps that end with a Save
# a start waits up to 30 s for a settings lock file that a kill left empty (Qt's
# QLockFile stale time); READY_TIMEOUT_S is above that, so such a start is slow, not lost
READY_TIMEOUT_S = 60.0
STEP_TIMEOUT_S = 20.0
# aim -> the line to kill after, and at most the how-many-th such line
KILL_AFTER = {"save": ("save-begin", 3), "autosave": ("autosave-begin", 3),
              "after-autosave": ("autosave-done", 1)}
WRITES = {"autosave-begin": "autosave", "autosave-armed": "autosave timer", "save-begin": "save"}


def version_note(version: int) -> str:
    return f"{NOTE}{version}"


def version_of(case: Case) -> int | None:
    """The version a case was saved at (None: notes not written by this loop)."""
    if not case.notes.startswith(NOTE):
        return None
    try:
        return int(case.notes[len(NOTE):])
    except ValueError:
        return None


def fingerprint(case: Case) -> str:
    """A short digest of what the reviewer changed: labels, orientation, audit, notes."""
    content = [
        case.notes,
        [
            [cell.name, cell.status.value, len(cell.audit)]
            + [
                [c.id, c.label.display_name, c.orientation.rotation, c.orientation.flipped]
                for c in cell.chromosomes
            ]
            for cell in case.cells
        ],
    ]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------- the child
def say(*words: object) -> None:
    """One line in one write: the kill must not leave half a line (PYTHONUNBUFFERED
    would make print write each word on its own)."""
    sys.stdout.write(" ".join(str(word) for word in words) + "\n")
    sys.stdout.flush()


def change_labels(window, rng: random.Random) -> None:
    """One reviewer's correction: swap two chromosomes' types, or move one to another."""
    from karyo_gui.core.labels import ChromosomeType

    chromosomes = window.current_cell.chromosomes
    while True:
        if rng.random() < 0.5:
            first, second = rng.sample(chromosomes, 2)
            if window.swap(first.id, second.id):
                return
        else:
            chromosome = rng.choice(chromosomes)
            others = [t for t in ChromosomeType if t is not chromosome.label]
            if window.reassign(chromosome.id, rng.choice(others)):
                return


def spin(app, seconds: float) -> None:
    """Let the window's event loop run (painting, timers) for a while."""
    end = time.monotonic() + seconds
    while True:
        app.processEvents()
        if time.monotonic() >= end:
            return
        time.sleep(0.001)


def run_child(case_path: Path, first_version: int, seed: int) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    faulthandler.enable()  # a crash of the child names where it happened
    faulthandler.register(signal.SIGUSR1)  # the parent asks where a stuck child hangs
    from PySide6.QtWidgets import QApplication

    from karyo_gui.qt.main_window import MainWindow
    from karyo_gui.qt.settings import Settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = Settings()
    settings.classify_on_open = False  # no model in the child
    window = MainWindow(settings=settings, load_model=False)
    window.ask_on_close = False
    window.show()
    if not window.open_path(case_path):
        say("open-failed", window.last_error)
        return 2
    settings.sync()  # the settings write of the start happens before "ready", so it is timed
    rng = random.Random(seed)
    version = first_version
    say("ready", version)
    while True:
        change_labels(window, rng)
        window.case.notes = version_note(version)
        mark = fingerprint(window.case)
        if rng.random() < TIMER_SHARE:
            say("autosave-armed", version, mark)
            # the edit started the window's autosave timer; wait for it to fire
            while window._autosave_timer.isActive():
                spin(app, 0.005)
        else:
            say("autosave-begin", version, mark)
            if window.autosave() is None:
                say("autosave-failed", version)
                return 3
        say("autosave-done", version)
        if rng.random() < SAVE_SHARE:
            say("save-begin", version, mark)
            if not window.save_to(case_path):
                say("save-failed", version, window.last_error)
                return 3
            say("save-done", version)
        spin(app, rng.uniform(0.0, 0.02))
        version += 1


# ---------------------------------------------------------------------------- the parent
def prepare_case(folder: Path, data: Path | None = None, seed: int = 0) -> tuple[Path, str]:
    """A case file of one cell (generated 46,XY, or the first test cell of ``data``) at
    version 0; the case file's path and its fingerprint."""
    from karyo_gui.core.loaders import cells_folder, write_cell
    from karyo_gui.core.opening import open_case
    from karyo_gui.core.synthetic import generate_cell

    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        split = data / "splits" / "test.txt"
        names = split.read_text().split() if split.is_file() else []
        cells = cells_folder(data)
        cell_folder = cells / names[0] if names else sorted(p for p in cells.iterdir()
                                                            if p.is_dir())[0]
    else:
        cell_folder = write_cell(generate_cell("46,XY", seed=seed), folder / "K1.1.tiff")
    case = open_case(cell_folder)
    case.notes = version_note(0)
    case_path = folder / f"{case.case_id}{SUFFIX}"
    save_case(case, case_path)
    return case_path, fingerprint(load_case(case_path))


@dataclass
class Kill:
    """One SIGKILL and what it left on disk."""

    aimed: str  # "save", "autosave", "random" or "after-autosave"
    landed: str  # "save", "autosave", "autosave timer" or "between writes"
    case_version: int | None  # None: the case file did not load
    recovery_version: int | None  # None: no recovery file (or it did not load)
    recovery_present: bool
    writing: int | None  # the version whose write was under way (landed in a write)
    steps: int  # versions the child began
    start_s: float  # from starting the child to "ready" (nan: it never was)
    settings_lock_left: bool  # the kill left an empty settings lock file
    problems: list[str] = field(default_factory=list)
    last_lines: list[str] = field(default_factory=list)  # what the child said last


@dataclass
class CrashLoop:
    """The state the kills leave behind, carried from one child to the next."""

    case_path: Path
    marks: dict[int, str]  # version -> fingerprint of what was written as that version
    rng: random.Random
    case_version: int = 0
    recovery_version: int | None = None  # None: no recovery file on disk
    next_version: int = 1
    kills: list[Kill] = field(default_factory=list)
    child_log: Path | None = None  # the last child's stderr, for a failure message

    @property
    def origin(self) -> str:
        return str(self.case_path.resolve())

    def recovery(self) -> Path:
        from karyo_gui.qt.settings import recovery_path

        return recovery_path(self.case_id, self.origin)

    @property
    def case_id(self) -> str:
        return self.case_path.name[: -len(SUFFIX)]

    def kill_once(self, aimed: str) -> Kill:
        """Start a child, SIGKILL it as ``aimed`` says, check the files it left."""
        log = self.case_path.parent / "child-stderr.txt"
        self.child_log = log
        started = time.monotonic()
        with open(log, "w") as stderr:
            child = subprocess.Popen(
                [sys.executable, str(CHILD), str(self.case_path),
                 "--first-version", str(self.next_version),
                 "--seed", str(self.rng.randrange(2**31))],
                stdout=subprocess.PIPE, stderr=stderr, text=True,
                env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
            )
        lines: queue.Queue[list[str] | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True)
        reader.start()
        seen: list[list[str]] = []
        problem, start_s = "", float("nan")
        try:
            if self._next_line(lines, seen, "ready", READY_TIMEOUT_S):
                start_s = time.monotonic() - started
                problem = self._wait_and_kill(child, aimed, lines, seen)
            else:
                problem = f"the child did not start ({_tail(self.child_log)})"
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
            child.wait()
            reader.join(timeout=10)
        while True:  # what the child printed before it died, to the last line
            try:
                words = lines.get_nowait()
            except queue.Empty:
                break
            if words is not None:
                seen.append(words)
        kill = self._check(aimed, seen, start_s)
        if problem:
            kill.problems.insert(0, problem)
        self.kills.append(kill)
        return kill

    def _wait_and_kill(self, child, aimed: str, lines: queue.Queue, seen: list) -> str:
        """After "ready", wait for the moment ``aimed`` names, then SIGKILL; a problem, or ''."""
        if aimed == "random":
            time.sleep(self.rng.uniform(0.0, 1.0))
        else:
            line, times = KILL_AFTER[aimed]
            for _ in range(self.rng.randint(1, times)):
                if not self._next_line(lines, seen, line, STEP_TIMEOUT_S):
                    ended = child.poll()
                    if ended is None:  # stuck: where?
                        child.send_signal(signal.SIGUSR1)
                        time.sleep(1.0)
                    how = "hangs" if ended is None else f"ended with {ended}"
                    return f"the child {how} before {line} ({_tail(self.child_log)})"
            if aimed != "after-autosave":
                time.sleep(self.rng.uniform(0.0, 0.020))  # into the write
        child.send_signal(signal.SIGKILL)
        return ""

    @staticmethod
    def _next_line(lines: queue.Queue, seen: list, kind: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while True:
            try:
                words = lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return False
            if words is None:  # the child ended
                lines.put(None)
                return False
            seen.append(words)
            if words and words[0] == kind:
                return True

    def _check(self, aimed: str, seen: list[list[str]], start_s: float) -> Kill:
        """Replay the child's lines to the versions that may be on disk, then look."""
        may_case = {self.case_version}
        may_recovery = {self.recovery_version}
        landed, steps = "between writes", 0
        problems = []
        for words in seen:
            kind = words[0]
            version = int(words[1]) if words[1:2] and words[1].isdigit() else -1
            if kind in ("autosave-begin", "autosave-armed"):
                self.marks[version] = words[2]
                may_recovery.add(version)
                self.next_version = max(self.next_version, version + 1)
                steps += 1
            elif kind == "autosave-done":
                may_recovery = {version}
            elif kind == "save-begin":
                self.marks[version] = words[2]
                may_case.add(version)
                may_recovery.add(None)  # the save discards the recovery file
            elif kind == "save-done":
                may_case, may_recovery = {version}, {None}
            elif kind != "ready":
                problems.append(f"the child said: {' '.join(words)}")
            landed = WRITES.get(kind, "between writes")
        writing = int(seen[-1][1]) if seen and landed != "between writes" else None

        case_version = self._check_file(self.case_path, may_case, "case file", problems)
        recovery = self.recovery()
        present = recovery.is_file()
        recovery_version = None
        if present:
            recovery_version = self._check_file(recovery, may_recovery, "recovery file",
                                                problems)
            origin = recovery.with_name(recovery.name + ".origin")
            try:
                if origin.read_text(encoding="utf-8") != self.origin:
                    problems.append(f"{origin.name} names another case file")
            except OSError as error:
                problems.append(f"the recovery file has no readable origin ({error})")
        elif None not in may_recovery:
            problems.append(f"the recovery file is gone, expected version {may_recovery}")
        others = [p for p in recovery.parent.glob(f"*{SUFFIX}") if p != recovery]
        if recovery.parent.is_dir() and others:
            problems.append(f"unexpected recovery files {[p.name for p in others]}")

        if case_version is not None:
            self.case_version = case_version
        self.recovery_version = recovery_version
        return Kill(aimed, landed, case_version, recovery_version, present, writing, steps,
                    start_s, _empty_settings_lock(), problems,
                    [" ".join(words) for words in seen[-4:]])

    def _check_file(self, path: Path, may: set, what: str, problems: list[str]) -> int | None:
        """Load ``path``; its version if it is one of ``may`` and holds that version's edits."""
        try:
            case = load_case(path)
        except CaseFileError as error:
            problems.append(f"the {what} is broken: {error}")
            return None
        version = version_of(case)
        if version not in may:
            problems.append(f"the {what} holds version {version}; only {sorted(may, key=str)} "
                            "could be on disk")
        elif fingerprint(case) != self.marks.get(version):
            problems.append(f"the {what} says version {version} but holds other edits")
        return version

    def temporaries(self) -> list[Path]:
        """Temporary files that killed writes left beside the case and recovery files."""
        folders = {self.case_path.parent, self.recovery().parent}
        return sorted(p for folder in folders if folder.is_dir() for p in folder.glob(".*.tmp"))


def _empty_settings_lock() -> bool:
    """Whether QSettings' lock file is there and empty: a kill between its creation and
    its first write; the next start's settings write then waits 30 s for it to go stale."""
    from karyo_gui.qt.settings import APP, config_dir

    lock = config_dir() / f"{APP}.ini.lock"
    try:
        return lock.stat().st_size == 0
    except OSError:
        return False


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        if line.endswith("\n"):  # a line without its end was cut by the kill
            lines.put(line.split())
    lines.put(None)


def _tail(log: Path | None) -> str:
    if log is None or not log.is_file():
        return "no output"
    text = log.read_text(errors="replace").strip()
    return text[-3000:] or "no output"


def kill_many(loop: CrashLoop, kills: int, progress=None) -> None:
    """``kills`` rounds aimed at saves, autosaves and random moments; then, if the last one
    left no recovery file, more rounds that kill just after an autosave, so that there are
    unsaved edits to offer on the next start."""
    aims = ["save"] * 4 + ["autosave"] * 3 + ["random"] * 3
    for number in range(1, kills + 1):
        kill = loop.kill_once(loop.rng.choice(aims))
        if progress is not None:
            progress(number, kill)
    for _ in range(10):
        if loop.recovery_version is not None:
            return
        kill = loop.kill_once("after-autosave")
        if progress is not None:
            progress(len(loop.kills), kill)


def age(paths: list[Path], seconds: float) -> None:
    then = time.time() - seconds
    for path in paths:
        with contextlib.suppress(OSError):
            os.utime(path, (then, then))


@dataclass
class RecoveryCheck:
    offered: bool = False
    restored_version: int | None = None
    problems: list[str] = field(default_factory=list)


def check_recovery_offered(window, loop: CrashLoop) -> RecoveryCheck:
    """On a fresh window: the autosaved edits are listed and offered, and Recover brings
    back the last autosaved version with its edits, tied to the case file."""
    from karyo_gui.qt.settings import pending_recoveries

    result = RecoveryCheck()
    found = pending_recoveries()
    if [r.path for r in found] != [loop.recovery()]:
        result.problems.append(f"pending recoveries {[r.path.name for r in found]}, expected "
                               f"{loop.recovery().name}")
        return result
    if found[0].origin != loop.origin:
        result.problems.append(f"the recovery names {found[0].origin!r} as its case")
    box = window.offer_recovery()
    if box is None:
        result.problems.append("no recovery offered on start")
        return result
    result.offered = True
    recover = [b for b in box.buttons() if b.text() == "Recover"]
    if not recover:
        result.problems.append("the recovery question has no Recover button")
        return result
    recover[0].click()
    _wait_until(lambda: window.pending_question is None)
    case = window.case
    result.restored_version = version_of(case) if case is not None else None
    if result.restored_version != loop.recovery_version:
        result.problems.append(f"Recover restored version {result.restored_version}, the last "
                               f"autosaved is {loop.recovery_version}")
    elif fingerprint(case) != loop.marks[loop.recovery_version]:
        result.problems.append("Recover restored other edits than the ones autosaved")
    if window.case_path is None or window.case_path.resolve() != loop.case_path.resolve():
        result.problems.append(f"the recovered case saves to {window.case_path}")
    if not window.isWindowModified():
        result.problems.append("the recovered edits are not marked unsaved")
    return result


def _wait_until(done, timeout: float = 10.0) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.001)


def main() -> int:
    parser = argparse.ArgumentParser(description="the child of the crash loop: edit, "
                                     "autosave and save a case until killed")
    parser.add_argument("case", type=Path)
    parser.add_argument("--first-version", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    return run_child(args.case, args.first_version, args.seed)


if __name__ == "__main__":
    sys.exit(main())
