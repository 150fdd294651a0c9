"""Killing the app in the middle of a save loses nothing: the case file on disk is always
the old or the new version, the autosaved edits always load, and the next start offers
them. The real window runs in a child process (tests/crash_child.py) and gets SIGKILLed;
bench/crash_loop.py runs the same loop hundreds of times."""

from __future__ import annotations

import random
import signal

import pytest
from crash_child import CrashLoop, age, check_recovery_offered, kill_many, prepare_case

from karyo_gui.core.case_file import STALE_TEMPORARY_SECONDS, SUFFIX, load_case, save_case
from karyo_gui.qt.main_window import MainWindow
from karyo_gui.qt.settings import Settings, discard_recovery, pending_recoveries, recovery_path

KILLS = 10


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL on this system")
def test_sigkill_during_saves_and_autosaves_leaves_old_or_new_files_and_offers_recovery(
    qtbot, tmp_path
):
    case_path, first = prepare_case(tmp_path / "case", seed=4)
    loop = CrashLoop(case_path, {0: first}, random.Random(20240611))

    kill_many(loop, KILLS)

    assert len(loop.kills) >= KILLS
    assert {k.aimed for k in loop.kills} >= {"save", "autosave"}
    problems = [(n, k.aimed, k.landed, p, k.last_lines)
                for n, k in enumerate(loop.kills) for p in k.problems]
    assert problems == []  # every case file loaded and held the old or new version
    assert all(k.case_version is not None for k in loop.kills)
    assert loop.next_version > KILLS  # the children got to edit
    assert loop.recovery_version is not None  # the last kill left unsaved edits

    settings = Settings()
    settings.classify_on_open = False
    window = MainWindow(settings=settings, load_model=False)  # the next start
    window.ask_on_close = False
    qtbot.addWidget(window)
    recovery = check_recovery_offered(window, loop)
    assert recovery.problems == []
    assert recovery.offered and recovery.restored_version == loop.recovery_version

    leftover = loop.temporaries()
    age(leftover, 2 * STALE_TEMPORARY_SECONDS)
    assert window.save_to(case_path)  # one normal save clears what killed writes left
    assert loop.temporaries() == []
    assert pending_recoveries() == []
    assert load_case(case_path).notes == window.case.notes


def test_a_write_cut_by_a_kill_leaves_a_temporary_that_a_later_save_removes_once_stale(
    tmp_path,
):
    case_path, _ = prepare_case(tmp_path / "case")
    case = load_case(case_path)
    old = case_path.read_bytes()
    stale = case_path.with_name(f".{case_path.name}.killed.tmp")
    stale.write_text('{"format": "karyo-case", "sche', encoding="utf-8")  # half written
    age([stale], 2 * STALE_TEMPORARY_SECONDS)
    fresh = case_path.with_name(f".{case_path.name}.running.tmp")  # another save under way
    fresh.write_text("{", encoding="utf-8")
    assert case_path.read_bytes() == old  # the killed write never touched the case file

    case.notes = "saved again"
    save_case(case, case_path)
    assert not stale.exists() and fresh.exists()
    assert load_case(case_path).notes == "saved again"


def test_saving_the_case_clears_temporaries_of_killed_autosaves(tmp_path):
    recovery = recovery_path("K1", tmp_path / f"K1{SUFFIX}")
    recovery.parent.mkdir(parents=True)
    recovery.write_text("{}", encoding="utf-8")
    killed = [recovery.with_name(f".{recovery.name}.abc.tmp"),
              recovery.with_name(f".{recovery.name}.origin.def.tmp")]
    for path in killed:
        path.write_text("{", encoding="utf-8")
    age(killed, 2 * STALE_TEMPORARY_SECONDS)
    running = recovery.with_name(f".{recovery.name}.ghi.tmp")  # an autosave under way
    running.write_text("{", encoding="utf-8")

    discard_recovery(recovery)  # what Save does once the case file is written
    assert sorted(p.name for p in recovery.parent.iterdir()) == [running.name]
