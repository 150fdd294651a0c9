"""Bad input met through the window, as a user meets it: every problem is named, with its
file, and the work that is open stays open, with its edits."""

import errno
import json
import os
import pickle
from pathlib import Path

import pytest

from karyo_gui.core import images
from karyo_gui.core.case_file import SCHEMA_VERSION, SUFFIX, load_case
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.loaders import MAX_CELL_CHROMOSOMES, display_path, write_cell
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.main_window import MainWindow
from karyo_gui.qt.settings import Settings, pending_recoveries, recovery_dir


@pytest.fixture
def edited(window, tmp_path):
    """A cell opened from its folder with one chromosome moved by hand, not yet saved."""
    folder = write_cell(generate_cell("46,XY", seed=5), tmp_path / "P7.1.tiff", labelled=False)
    assert window.open_path(folder)
    cell = window.current_cell
    window.reassign(cell.chromosomes[0].id, T.CHR21)
    assert window.isWindowModified()
    return window, cell, cell.karyotype


def assert_work_kept(window, cell, karyotype):
    assert window.current_cell is cell
    assert window.case.cells == [cell]
    assert cell.chromosomes[0].manual.label is T.CHR21
    assert window.karyotype_label.text() == karyotype
    assert window.isWindowModified()  # still unsaved, still offered on close
    assert len(window.scene.chromosome_items) == len(cell)


def saved_case(tmp_path, karyotype="46,XX", seed=1) -> Path:
    """A case file saved by a window, its crops in a folder beside it."""
    window = MainWindow(load_model=False)
    window.ask_on_close = False
    folder = write_cell(generate_cell(karyotype, seed=seed), tmp_path / "crops")
    assert window.open_path(folder)
    assert window.save_to(tmp_path / f"case{SUFFIX}")
    window.close()
    return tmp_path / f"case{SUFFIX}"


def newer_schema(text: str) -> str:
    document = json.loads(text)
    document["schema_version"] = SCHEMA_VERSION + 1
    document["written_by"] = "karyo 9.0"
    return json.dumps(document)


def hand_edited(text: str) -> str:
    document = json.loads(text)
    document["case"]["cells"][0]["status"] = "nearly done"
    return json.dumps(document)


@pytest.mark.parametrize(
    ("damage", "name", "reason"),
    [
        (lambda text: text[: len(text) // 2], "half.karyo.json", "truncated or edited"),
        (lambda text: "", "empty.karyo.json", "broken"),
        (newer_schema, "newer.karyo.json", "Update karyo"),
        (hand_edited, "edited.karyo.json", "damaged or hand-edited"),
        (lambda text: "\x00\x01 binary", "binary.karyo.json", "broken"),
        (lambda text: text[:100], os.fsdecode(b"caf\xe9.karyo.json"), "broken"),
        (lambda text: "%PDF-1.7 a report", "report.pdf", "not a file karyo opens"),
    ],
)
def test_a_bad_case_file_is_named_and_the_open_work_stays(edited, tmp_path, damage, name, reason):
    window, cell, karyotype = edited
    good = saved_case(tmp_path / "other")
    bad = tmp_path / name
    bad.write_text(damage(good.read_text(encoding="utf-8")), encoding="utf-8")
    assert not window.open_path(bad)
    assert display_path(bad.name) in window.last_error
    assert reason in window.last_error
    assert_work_kept(window, cell, karyotype)


def test_a_case_file_renamed_by_its_user_still_opens(tmp_path):
    from karyo_gui.core.opening import open_case

    saved = saved_case(tmp_path / "saved")
    renamed = saved.with_name("patient 17 case.bak")
    saved.rename(renamed)
    assert open_case(renamed).cells  # it begins as a case file does: read as one


def test_an_unreadable_case_file_is_named_and_the_open_work_stays(edited, tmp_path, monkeypatch):
    window, cell, karyotype = edited
    locked = saved_case(tmp_path / "other")
    real_open = images.open_regular_file

    def open_regular_file(path):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(images, "open_regular_file", open_regular_file)
    assert not window.open_path(locked)
    assert "case.karyo.json" in window.last_error and "permission denied" in window.last_error
    assert_work_kept(window, cell, karyotype)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda folder: folder.mkdir(), "no chromosome images"),
        (lambda folder: (folder.mkdir(), (folder / "a.png").write_bytes(b"junk")),
         "not a readable image"),
        (lambda folder: None, "no such file or folder"),
    ],
)
def test_a_folder_without_usable_crops_is_named_and_the_open_work_stays(
    edited, tmp_path, make, reason
):
    window, cell, karyotype = edited
    folder = tmp_path / "Q9.2.tiff"
    make(folder)
    assert not window.open_path(folder)
    assert "Q9.2.tiff" in window.last_error and reason in window.last_error
    assert_work_kept(window, cell, karyotype)


def test_a_case_whose_crops_were_deleted_or_changed_opens_with_them_flagged(window, tmp_path):
    case_file = saved_case(tmp_path, "47,XX,+21", seed=3)
    crops = sorted((tmp_path / "crops").rglob("*.png"))
    crops[0].unlink()
    crops[1].write_bytes(b"")
    write_cell(generate_cell("46,XY", seed=9), tmp_path / "elsewhere", labelled=False)
    crops[2].write_bytes(next((tmp_path / "elsewhere").iterdir()).read_bytes())
    assert window.open_path(case_file)
    cell = window.current_cell
    assert window.karyotype_label.text() == "47,XX,+21"  # the labels are kept
    assert window.count_label.text() == "47 chromosomes"
    problems = [window.problem_list.item(i).text() for i in range(window.problem_list.count())]
    assert len(problems) == 3
    assert crops[0].name in problems[0] and "moved or deleted" in problems[0]
    assert crops[1].name in problems[1] and "empty file" in problems[1]
    assert crops[2].name in problems[2] and "changed" in problems[2]
    assert sum(c.image is None for c in cell.chromosomes) == 2
    assert window.flag_label.text().startswith("3 flagged")
    # the pictures that are left still export, and the case still saves
    assert window.export_pdf(tmp_path / "report.pdf") is not None
    assert window.save_to(case_file)
    assert load_case(case_file).cells[0].karyotype == "47,XX,+21"


def test_a_folder_of_500_crops_opens_and_says_it_is_not_one_cell(window, tmp_path):
    folder = tmp_path / "everything"
    for seed in range(11):  # 11 cells of 46: 506 crops, e.g. a whole slide's export
        cell = generate_cell("46,XX", seed=seed)
        cell.name = f"cell{seed}"
        write_cell(cell, folder, labelled=False)
    n_crops = len(list(folder.iterdir()))
    assert n_crops > 500
    assert window.open_path(folder)
    assert window.count_label.text() == f"{n_crops} chromosomes"
    assert len(window.scene.chromosome_items) == n_crops
    assert not window.problems_dock.isHidden()
    first = window.problem_list.item(0).text()
    assert f"{n_crops} chromosome images" in first and "several cells" in first
    assert n_crops > MAX_CELL_CHROMOSOMES


def test_crops_that_disappear_between_listing_and_reading(window, tmp_path, monkeypatch):
    from karyo_gui.core import loaders

    folder = write_cell(generate_cell("46,XY", seed=2), tmp_path / "cell", labelled=False)
    real_list = loaders._list_folder
    gone = []

    def list_then_lose(path):
        entries = real_list(path)
        entries[5].unlink()  # another program (a sync client, a colleague) removes one
        gone.append(entries[5].name)
        return [*entries, path / "listed-but-never-there.png"]

    monkeypatch.setattr(loaders, "_list_folder", list_then_lose)
    assert window.open_path(folder)
    assert window.count_label.text() == "45 chromosomes"
    problems = [window.problem_list.item(i).text() for i in range(window.problem_list.count())]
    assert len(problems) == 2
    assert any(gone[0] in p and "moved or deleted" in p for p in problems)
    assert any("listed-but-never-there.png" in p for p in problems)


def test_a_model_file_that_is_a_pickle_is_refused_without_running_it(qtbot, window, tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("evil.safetensors", "evil.pt"):
        window.last_error = None
        (tmp_path / name).write_bytes(pickle.dumps(Payload()))
        window.load_model(tmp_path / name)
        qtbot.waitUntil(lambda: window.last_error is not None, timeout=60000)
        assert name in window.last_error and "not a safetensors model file" in window.last_error
        assert not marker.exists()
        assert window.model_label.text() == "no model"
    window.open_example("46,XX")
    assert window.karyotype_label.text() == "46,XX"  # the window works on


def test_karyo_classify_and_the_model_registry_refuse_a_pickle(tmp_path, capsys):
    from karyo_gui.cli import main
    from karyo_gui.inference.registry import ModelRegistry, RegistryError

    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps(Payload()))
    folder = write_cell(generate_cell("46,XY", seed=1), tmp_path / "cell", labelled=False)
    status = main(["classify", str(folder), "--checkpoint", str(evil),
                   "--json", str(tmp_path / "out.json")])
    error = capsys.readouterr().err
    assert status == 2 and "model.pt" in error and "Traceback" not in error
    with pytest.raises(RegistryError, match=r"model\.pt"):
        ModelRegistry(tmp_path / "models").add(evil)
    assert not marker.exists()
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_a_full_disk_during_save_keeps_the_saved_file_and_the_edits(edited, tmp_path, monkeypatch):
    window, cell, karyotype = edited
    target = tmp_path / f"case{SUFFIX}"
    assert window.save_to(target)
    before = target.read_bytes()
    window.reassign(cell.chromosomes[1].id, T.CHR22)
    karyotype = cell.karyotype

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("karyo_gui.core.case_file.os.fsync", no_space)
    assert not window.save_to(target)
    assert "case.karyo.json" in window.last_error and "No space left" in window.last_error
    assert target.read_bytes() == before  # the last good save is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert window.isWindowModified() and window.karyotype_label.text() == karyotype
    monkeypatch.undo()
    assert window.save_to(target)  # room again: the same edits save
    assert load_case(target).cells[0].karyotype == karyotype


def test_a_damaged_recovery_file_is_named_when_recovering(qtbot, edited, tmp_path):
    window, cell, karyotype = edited
    window.autosave()
    (recovery,) = pending_recoveries()
    recovery.path.write_text('{"format": "karyo-case", "schema_ver', encoding="utf-8")
    box = window.offer_recovery()
    assert recovery.case_id in box.text()
    recover = next(b for b in box.buttons() if b.text() == "Recover")
    recover.click()
    qtbot.waitUntil(lambda: window.pending_question is None)
    assert recovery.path.name in window.last_error
    assert_work_kept(window, cell, karyotype)


def test_damaged_settings_are_replaced_by_defaults(qtbot, tmp_path):
    settings = Settings(tmp_path / "karyo.ini")
    settings.path.write_bytes(b"\xff\xfe[review\x00]\nreviewer=\x00\x01\nrecent=[[[\n" * 3)
    settings = Settings(tmp_path / "karyo.ini")
    window = MainWindow(settings=settings, load_model=False)
    window.ask_on_close = False
    qtbot.addWidget(window)
    window.open_example("45,X")
    assert window.karyotype_label.text() == "45,X"
    assert isinstance(settings.recent_files(), list)
    assert isinstance(settings.classify_on_open, bool)


def test_a_recent_case_that_is_gone_is_named(window, tmp_path):
    case_file = saved_case(tmp_path)
    window.settings.add_recent(case_file)
    case_file.unlink()
    window._fill_recent_menu()
    entry = next(a for a in window.recent_menu.actions() if "case.karyo.json" in a.text())
    window.open_example("46,XY")
    entry.trigger()
    assert "case.karyo.json" in window.last_error
    assert window.karyotype_label.text() == "46,XY"


def test_recovery_folder_junk_does_not_stop_the_start(qtbot, tmp_path):
    folder = recovery_dir()
    folder.mkdir(parents=True)
    (folder / f"x-123{SUFFIX}").mkdir()  # a folder where a file is expected
    (folder / f".x-123{SUFFIX}.abc.tmp").write_bytes(b"half")  # left by a killed autosave
    (folder / os.fsdecode(b"\xff-456" + SUFFIX.encode())).write_bytes(b"junk")
    window = MainWindow(load_model=False)
    window.ask_on_close = False
    qtbot.addWidget(window)
    box = window.offer_recovery()
    assert box is None or "karyo stopped" in box.text()


def test_a_cell_folder_whose_name_is_not_utf8_opens_saves_and_exports(window, tmp_path):
    name = os.fsdecode(b"P\xe9rez.1.tiff")  # Latin-1 bytes from an old file server
    folder = write_cell(generate_cell("46,XX", seed=4), tmp_path / name)
    assert window.open_path(folder)
    assert window.karyotype_label.text() == "46,XX"
    assert "P\ufffdrez" in window.mode_label.text()  # shown with a replacement character
    assert window.save_to(tmp_path / os.fsdecode(b"P\xe9rez" + SUFFIX.encode()))
    assert window.export_pdf(tmp_path / "report.pdf") is not None
    assert window.export_png(tmp_path / os.fsdecode(b"k\xe9.png")) is not None
    reopened = load_case(tmp_path / os.fsdecode(b"P\xe9rez" + SUFFIX.encode()))
    assert reopened.cells[0].karyotype == "46,XX"


def test_opening_another_case_right_after_an_edit_keeps_the_edit_for_recovery(window, tmp_path):
    other = saved_case(tmp_path / "other")
    folder = write_cell(generate_cell("46,XY", seed=5), tmp_path / "P7.1.tiff", labelled=False)
    assert window.open_path(folder)
    window._autosave_timer.setInterval(3_600_000)  # the edit's autosave has not run yet
    window.reassign(window.current_cell.chromosomes[0].id, T.CHR21)
    assert pending_recoveries() == []
    assert window.open_path(other)
    (recovery,) = pending_recoveries()
    assert load_case(recovery.path).cells[0].chromosomes[0].manual.label is T.CHR21


@pytest.mark.parametrize(("answer", "opened"), [("Cancel", False), ("Discard", True)])
def test_opening_another_case_with_unsaved_edits_asks_first(
    edited, tmp_path, monkeypatch, answer, opened
):
    from PySide6.QtWidgets import QMessageBox

    window, cell, karyotype = edited
    window.ask_on_close = True
    asked = []

    def question(parent, title, text, buttons):
        asked.append(text)
        return getattr(QMessageBox.StandardButton, answer)

    monkeypatch.setattr(QMessageBox, "question", question)
    other = saved_case(tmp_path / "other")
    case_id = window.case.case_id
    assert window.open_path(other) is opened
    assert len(asked) == 1 and case_id in asked[0]
    if opened:
        assert window.case_path == other and pending_recoveries() == []
    else:
        assert_work_kept(window, cell, karyotype)
        assert len(pending_recoveries()) == 1  # written before asking, whatever the answer
    window.ask_on_close = False  # let the test's teardown close it


def test_a_settings_lock_left_by_a_killed_app_does_not_freeze_the_next_start(tmp_path):
    import time

    lock = tmp_path / "karyo.ini.lock"
    lock.write_bytes(b"")  # killed between creating the lock and writing its owner
    old = time.time() - 5
    os.utime(lock, (old, old))
    settings = Settings(tmp_path / "karyo.ini")
    assert not lock.exists()  # QSettings would wait 30 s before trusting it is stale
    settings.reviewer = "A. Reviewer"
    settings.sync()
    assert Settings(tmp_path / "karyo.ini").reviewer == "A. Reviewer"
