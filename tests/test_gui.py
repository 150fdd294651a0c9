"""The main window, driven offscreen: open cells, see the karyogram and ISCN, save, reopen."""

import pytest

from karyo_gui.core.case_file import SUFFIX
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.main_window import MainWindow


def test_example_cell_is_laid_out_as_a_karyogram(window):
    window.open_example("46,XY")
    assert window.karyotype_label.text() == "46,XY"
    assert window.count_label.text() == "46 chromosomes"
    assert window.cell_list.count() == 1
    scene = window.scene
    assert len(scene.chromosome_items) == 46
    assert set(scene.label_items) == set(T.types())  # no unclassified bucket: none is
    for chromosome in window.current_cell.chromosomes:
        item_rect = scene.chromosome_items[chromosome.id].crop_rect()
        slot = scene.layout.slots[chromosome.label].rect
        assert slot.contains(item_rect.center().x(), item_rect.center().y())


def test_every_crop_is_drawn_at_the_same_scale(window):
    window.open_example("47,XY,+21")
    cell = window.current_cell
    scales = {round(window.scene.chromosome_items[c.id].scale(), 6) for c in cell.chromosomes}
    assert scales == {round(window.scene.layout.scale, 6)}
    for chromosome in cell.chromosomes:  # the picture drawn: the chromosome cut out, upright
        item = window.scene.chromosome_items[chromosome.id]
        drawn = item.crop_rect().height()
        assert drawn == pytest.approx(item.picture.shape[0] * window.scene.layout.scale, abs=1.5)


def test_example_menu_switches_the_cell(window):
    window.open_example("46,XY")
    action = next(a for a in window.findChildren(type(window.save_action)) if a.text() == "45,X")
    action.trigger()
    assert window.karyotype_label.text() == "45,X"
    assert len(window.scene.chromosome_items) == 45


def test_open_a_labelled_cell_folder(window, tmp_path):
    folder = write_cell(generate_cell("47,XY,+21", seed=2), tmp_path / "P1.1.tiff")
    assert window.open_path(folder)
    assert window.karyotype_label.text() == "47,XY,+21"
    assert window.case.case_id == "P1"
    assert window.problems_dock.isHidden()


def test_bad_files_are_listed_and_the_rest_of_the_cell_opens(window, tmp_path):
    folder = write_cell(generate_cell("46,XX", seed=2), tmp_path / "cell", labelled=False)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "empty.tif").write_bytes(b"")
    assert window.open_path(folder)
    assert window.count_label.text() == "46 chromosomes"
    problems = [window.problem_list.item(i).text() for i in range(window.problem_list.count())]
    assert any("broken.png" in p for p in problems)
    assert any("empty.tif" in p and "0 bytes" in p for p in problems)
    assert not window.problems_dock.isHidden()


def test_a_missing_folder_gives_a_message_and_keeps_the_open_cell(window, tmp_path):
    window.open_example("46,XY")
    assert not window.open_path(tmp_path / "nowhere")
    assert "nowhere" in window.last_error
    assert window.karyotype_label.text() == "46,XY"
    assert len(window.scene.chromosome_items) == 46


def test_a_folder_of_cells_opens_as_a_case(window, tmp_path):
    for seed, karyotype in enumerate(["46,XX", "47,XX,+21", "45,X"]):
        write_cell(generate_cell(karyotype, seed=seed), tmp_path / "case" / f"cell{seed}")
    assert window.open_path(tmp_path / "case")
    assert window.cell_list.count() == 3
    window.cell_list.setCurrentRow(1)
    assert window.karyotype_label.text() == "47,XX,+21"
    assert "47,XX,+21" in window.cell_list.item(1).text().replace("\u200b", "")


def test_save_and_reopen_restores_the_cell(window, qtbot, tmp_path):
    window.open_example("47,XXY")
    window.current_cell.set_manual_label(window.current_cell.chromosomes[0].id, T.CHR1, by="rev")
    shown = window.current_cell.karyotype  # the edit, as a reviewer would make it
    assert window.save_to(tmp_path / "case")
    saved = tmp_path / f"case{SUFFIX}"
    assert saved.is_file()
    assert saved.name in window.windowTitle()

    reopened = MainWindow(load_model=False)
    qtbot.addWidget(reopened)
    assert reopened.open_path(saved)
    cell = reopened.current_cell
    assert reopened.karyotype_label.text() == shown
    assert cell.chromosomes[0].manual.label is T.CHR1
    assert [c.image.shape for c in cell.chromosomes] == [
        c.image.shape for c in window.current_cell.chromosomes
    ]


def test_saving_into_a_missing_folder_reports_and_keeps_the_case(window, tmp_path):
    window.open_example("46,XY")
    assert not window.save_to(tmp_path / "no" / "such" / "folder" / "case")
    assert "could not save" in window.last_error
    assert window.case is not None and window.case_path is None



def test_an_unlabelled_cell_waits_in_the_unclassified_bucket(window, tmp_path):
    folder = write_cell(generate_cell("46,XY", seed=4), tmp_path / "flat", labelled=False)
    assert window.open_path(folder)
    assert window.karyotype_label.text() == "not classified"
    bucket = window.scene.layout.slots[T.UNCLASSIFIED]
    assert sorted(bucket.members) == sorted(c.id for c in window.current_cell.chromosomes)
    layout = window.scene.layout
    widest_row = max(slot.rect.right for t, slot in layout.slots.items() if t != T.UNCLASSIFIED)
    assert all(rect.right <= widest_row + 1 for rect in layout.placements.values())


def test_a_cell_that_cannot_load_is_reported_and_the_other_cells_open(window, tmp_path):
    write_cell(generate_cell("46,XX", seed=1), tmp_path / "case" / "good")
    broken = tmp_path / "case" / "broken"
    broken.mkdir()
    (broken / "crop.png").write_bytes(b"not a png at all")
    assert window.open_path(tmp_path / "case")
    assert window.cell_list.count() == 1
    problems = [window.problem_list.item(i).text() for i in range(window.problem_list.count())]
    assert any("broken" in problem for problem in problems)
    assert not window.problems_dock.isHidden()
