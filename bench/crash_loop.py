"""Kill the review window (SIGKILL) during autosaves and saves, many times, and check that
nothing is lost and nothing is broken.

    python bench/crash_loop.py [--kills 200] [--seed 0] [--data ../shared/data/gband612]

Each round starts the real window in a child process (tests/crash_child.py) on one case
file; the child edits, autosaves and saves until it is killed, either just after a save or
an autosave began (plus 0-20 ms, to land inside the write) or at a random moment. After
each kill: the case file must load and hold the last saved version or the one whose save
had begun, never a broken or an older one; the recovery file, when there is one, must load
and hold a version that could be there. At the end the temporary files that killed writes
left are counted, aged and removed by one normal save, and a new window must offer the
autosaved edits and restore them with Recover.

Prints a summary table; exits 1 on any failure. Without ``--data`` (or when the folder is
absent) a generated 46,XY cell is written as crop files and used.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# the child and the checks live beside tests/test_crash_safety.py, which runs a few kills
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crash_child import (
    CrashLoop,
    Kill,
    age,
    check_recovery_offered,
    kill_many,
    prepare_case,
    version_of,
)

from karyo_gui.core.case_file import STALE_TEMPORARY_SECONDS, load_case

SLOW_START_S = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None,
                        help="a gband612-style dataset: its first test cell is used")
    args = parser.parse_args()
    started = time.perf_counter()

    scratch = Path(tempfile.mkdtemp(prefix="karyo-crash-loop-"))
    # the children and this process share settings and autosave folders, none the user's
    os.environ["XDG_DATA_HOME"] = str(scratch / "data")
    os.environ["XDG_CONFIG_HOME"] = str(scratch / "config")
    os.environ["QT_QPA_PLATFORM"] = "offscreen"

    data = args.data if args.data is not None and args.data.is_dir() else None
    case_path, mark = prepare_case(scratch / "case", data, seed=args.seed)
    loop = CrashLoop(case_path, {0: mark}, random.Random(args.seed))
    print(f"crash loop: {args.kills} kills of the review window on "
          f"{'a ' + data.name + ' cell' if data else 'a generated 46,XY cell'}, "
          f"in {scratch}", flush=True)

    def progress(number: int, kill: Kill) -> None:
        if kill.problems or number % 20 == 0:
            print(f"  kill {number:4d}: aimed at {kill.aimed:<14} landed {kill.landed:<15} "
                  f"case v{kill.case_version}  recovery "
                  f"{'v' + str(kill.recovery_version) if kill.recovery_present else '-'}"
                  + "".join(f"\n      PROBLEM: {p}" for p in kill.problems)
                  + (f"\n      the child said last: {kill.last_lines}" if kill.problems else ""),
                  flush=True)

    kill_many(loop, args.kills, progress)

    leftover = loop.temporaries()
    age(leftover, 2 * STALE_TEMPORARY_SECONDS)

    from PySide6.QtWidgets import QApplication

    from karyo_gui.qt.main_window import MainWindow
    from karyo_gui.qt.settings import Settings, pending_recoveries

    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = Settings()
    settings.classify_on_open = False
    window = MainWindow(settings=settings, load_model=False)  # the next start
    window.ask_on_close = False
    window.show()
    recovery = check_recovery_offered(window, loop)
    problems = [f"kill {n}: {p}" for n, k in enumerate(loop.kills, 1) for p in k.problems]
    problems += [f"recovery: {p}" for p in recovery.problems]
    saved = recovery.offered and window.save_to(case_path)  # one normal save
    after_save = loop.temporaries()
    if not saved:
        problems.append("the recovered case could not be saved")
    else:
        if version_of(load_case(case_path)) != recovery.restored_version:
            problems.append("the saved case file does not hold the recovered edits")
        if pending_recoveries():
            problems.append("saved, yet edits are still offered for recovery")
        if after_save:
            problems.append(f"temporaries left after a save: {[p.name for p in after_save]}")
    window.close()
    app.processEvents()

    print_summary(loop, args.kills, leftover, after_save, recovery,
                  time.perf_counter() - started)
    for problem in problems:
        print(f"FAILED {problem}")
    if problems:
        print(f"FAIL ({len(problems)} problems); the files are kept in {scratch}")
        return 1
    shutil.rmtree(scratch, ignore_errors=True)
    print("PASS")
    return 0


def print_summary(loop: CrashLoop, aimed: int, leftover, after_save, recovery,
                  seconds: float) -> None:
    kills = loop.kills
    starts = sorted(k.start_s for k in kills if k.start_s == k.start_s)  # not nan
    slow = sum(s > SLOW_START_S for s in starts)
    locks = sum(k.settings_lock_left for k in kills)
    in_save = [k for k in kills if k.landed == "save"]
    in_autosave = [k for k in kills if k.landed == "autosave"]
    timer = [k for k in kills if k.landed == "autosave timer"]
    intact = sum(k.case_version is not None and not _about(k, "case file") for k in kills)
    present = [k for k in kills if k.recovery_present]
    recovery_intact = sum(not _about(k, "recovery") for k in present)
    case_versions = {k.case_version for k in kills if k.case_version is not None}
    recovery_versions = {k.recovery_version for k in present if k.recovery_version is not None}

    def new_or_old(group: list[Kill], version_of_kill) -> str:
        new = sum(version_of_kill(k) == k.writing for k in group)
        return f"(new version on disk {new}, old {len(group) - new})"

    rows = [
        ("kills (SIGKILL)", f"{len(kills)}"
                            + (f" ({len(kills) - aimed} more to end on unsaved edits)"
                               if len(kills) > aimed else "")),
        ("kills inside a save", f"{len(in_save)} {new_or_old(in_save, lambda k: k.case_version)}"),
        ("kills inside an autosave",
         f"{len(in_autosave)} {new_or_old(in_autosave, lambda k: k.recovery_version)}"),
        ("kills with the autosave timer armed", f"{len(timer)}"),
        ("case file intact", f"{intact}/{len(kills)}"),
        ("recovery file intact", f"{recovery_intact}/{len(present)} (present after "
                                 f"{len(present)} kills)"),
        ("versions seen", f"case file {len(case_versions)} distinct "
                          f"(v{min(case_versions, default=0)}-v{max(case_versions, default=0)}), "
                          f"recovery {len(recovery_versions)}; "
                          f"{loop.next_version - 1} versions written"),
        ("leftover temporaries", f"{len(leftover)} after the kills, {len(after_save)} after "
                                 "aging them and one save"),
        ("recovery offered on next start",
         f"{'yes' if recovery.offered else 'no'}"
         + (f", Recover restored v{recovery.restored_version}"
            f"{' (the last autosaved)' if not recovery.problems else ''}"
            if recovery.offered else "")),
        ("child starts (to case open)",
         f"median {statistics.median(starts):.1f} s, slowest {starts[-1]:.1f} s, "
         f"{slow} slower than {SLOW_START_S:g} s" if starts else "none"),
        ("kills leaving an empty settings lock", f"{locks} (the next start waits ~30 s on it)"),
        ("wall time", f"{seconds:.0f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print()


def _about(kill: Kill, what: str) -> bool:
    return any(what in problem for problem in kill.problems)


if __name__ == "__main__":
    sys.exit(main())
