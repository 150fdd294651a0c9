"""The review window driven as a cytogeneticist drives it: mouse drags through the view,
keys, undo, sign-off, save and reopen, autosave recovery, export."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from karyo_gui.core.case import CellStatus, Flag, Orientation
from karyo_gui.core.case_file import SUFFIX
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.loaders import write_cell
from karyo_gui.core.review import needs_review
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.main_window import MainWindow
from karyo_gui.qt.settings import pending_recoveries


def make_window(qtbot, load_model=False, **kwargs):
    window = MainWindow(load_model=load_model, **kwargs)
    window.ask_on_close = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture
def window(qtbot):
    """A window without a model: generated cells keep the types they were generated with."""
    return make_window(qtbot)


def view_point(window, scene_point: QPointF) -> QPoint:
    return window.view.mapFromScene(scene_point)


def crop_centre(window, chromosome_id) -> QPointF:
    return window.scene.chromosome_items[chromosome_id].crop_rect().center()


def slot_centre(window, chromosome_type) -> QPointF:
    label = window.scene.layout.slots[chromosome_type].label_rect  # under its chromosomes
    return QPointF(label.x + label.width / 2, label.y + label.height / 2)


def drag(window, start: QPointF, end: QPointF) -> None:
    """Press, move in steps and release the left button, through the view's viewport."""
    viewport = window.view.viewport()
    a, b = view_point(window, start), view_point(window, end)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for k in range(1, 9):
        QTest.mouseMove(viewport, a + (b - a) * (k / 8))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


def click(window, chromosome_id) -> None:
    point = view_point(window, crop_centre(window, chromosome_id))
    QTest.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, point)


def of_type(cell, chromosome_type):
    return [c for c in cell.chromosomes if c.label is chromosome_type]


def test_dragging_a_chromosome_onto_another_slot_reassigns_it_and_undo_brings_it_back(window):
    window.open_example("46,XY")
    cell = window.current_cell
    moved = of_type(cell, T.CHR4)[0]
    drag(window, crop_centre(window, moved.id), slot_centre(window, T.CHR5))

    assert moved.label is T.CHR5 and moved.manual.label is T.CHR5
    assert window.karyotype_label.text() == "46,XY,-4,+5"
    assert moved.id in window.scene.layout.slots[T.CHR5].members
    drawn = window.scene.chromosome_items[moved.id].crop_rect().center()
    assert window.scene.layout.slots[T.CHR5].rect.contains(drawn.x(), drawn.y())
    entry = cell.audit[-1]
    assert (entry.chromosome_id, entry.before, entry.after) == (moved.id, "4", "5")
    assert entry.by == window.settings.reviewer
    assert window.isWindowModified()

    window.undo_action.trigger()
    assert moved.manual is None and moved.label is T.CHR4
    assert window.karyotype_label.text() == "46,XY"
    assert moved.id in window.scene.layout.slots[T.CHR4].members
    window.redo_action.trigger()
    assert window.karyotype_label.text() == "46,XY,-4,+5"


def test_dropping_a_chromosome_on_another_swaps_their_types(window):
    window.open_example("46,XX")
    cell = window.current_cell
    first, second = of_type(cell, T.CHR1)[0], of_type(cell, T.CHR2)[0]
    drag(window, crop_centre(window, first.id), crop_centre(window, second.id))
    assert (first.label, second.label) == (T.CHR2, T.CHR1)
    assert window.karyotype_label.text() == "46,XX"
    assert first.id in window.scene.layout.slots[T.CHR2].members
    window.undo_action.trigger()  # one edit, one undo
    assert (first.label, second.label) == (T.CHR1, T.CHR2)
    assert first.manual is None and second.manual is None


def test_a_drag_dropped_on_empty_paper_puts_the_chromosome_back(window):
    window.open_example("46,XY")
    chromosome = of_type(window.current_cell, T.CHR7)[0]
    before = window.scene.chromosome_items[chromosome.id].pos()
    corner = QPointF(window.scene.sceneRect().right() - 2, 2)
    drag(window, crop_centre(window, chromosome.id), corner)
    assert chromosome.manual is None
    assert window.scene.chromosome_items[chromosome.id].pos() == before
    assert not window.undo_action.isEnabled()


def test_typing_a_type_on_the_selected_chromosome(window, qtbot):
    window.open_example("46,XY")
    cell = window.current_cell
    chromosome = of_type(cell, T.CHR3)[0]
    click(window, chromosome.id)
    assert window.selected_id() == chromosome.id
    assert window.inspector.shown_id() == chromosome.id

    QTest.keyClicks(window.view, "17")
    assert chromosome.label is T.CHR17
    assert window.karyotype_label.text() == "46,XY,-3,+17"
    assert window.selected_id() == chromosome.id  # still selected for the next key

    QTest.keyClick(window.view, Qt.Key.Key_2)  # 2 waits for 20-22 ...
    assert chromosome.label is T.CHR17
    QTest.keyClick(window.view, Qt.Key.Key_Return)  # ... Enter takes it as 2
    assert chromosome.label is T.CHR2

    QTest.keyClick(window.view, Qt.Key.Key_1)  # a lone 1 is taken after a pause
    qtbot.waitUntil(lambda: chromosome.label is T.CHR1, timeout=3000)

    QTest.keyClick(window.view, Qt.Key.Key_X)
    assert chromosome.label is T.X
    assert window.karyotype_label.text() == "46,XXY,-3"
    for _ in range(4):
        window.undo_action.trigger()
    assert chromosome.label is T.CHR3 and chromosome.manual is None


def test_rotate_and_flip_keys_turn_the_selected_chromosome(window):
    window.open_example("46,XY")
    chromosome = of_type(window.current_cell, T.CHR1)[0]
    click(window, chromosome.id)
    item = window.scene.chromosome_items[chromosome.id]
    before = item.pixmap().toImage()
    QTest.keyClick(window.view, Qt.Key.Key_R)
    assert chromosome.orientation == Orientation(180)
    assert item.pixmap().toImage() != before
    QTest.keyClick(window.view, Qt.Key.Key_F)
    assert chromosome.orientation == Orientation(180, flipped=True)
    window.undo_action.trigger()
    window.undo_action.trigger()
    assert chromosome.orientation == Orientation()
    assert item.pixmap().toImage() == before


def test_next_flagged_steps_through_the_flagged_chromosomes_in_reading_order(window):
    window.open_example("46,XY")
    cell = window.current_cell
    late, early = of_type(cell, T.CHR20)[0], of_type(cell, T.CHR2)[0]
    late.flags.add(Flag.LOW_CONFIDENCE)
    early.flags.add(Flag.HOMOLOG_UNLIKE)
    window.show_cell(cell)
    assert window.flag_label.text() == "2 flagged"
    QTest.keyClick(window.view, Qt.Key.Key_N)
    assert window.selected_id() == early.id
    QTest.keyClick(window.view, Qt.Key.Key_N)
    assert window.selected_id() == late.id
    QTest.keyClick(window.view, Qt.Key.Key_N)  # round again
    assert window.selected_id() == early.id
    window.reassign(early.id, T.CHR2)  # confirmed by hand: no longer needs a look
    assert window.flag_label.text() == "1 flagged"
    assert window.step_flagged() == late.id


def test_a_signed_off_cell_is_read_only_until_reopened(window):
    window.open_example("46,XY")
    cell = window.current_cell
    chromosome = of_type(cell, T.CHR4)[0]
    window.reassign(chromosome.id, T.CHR5)
    window.sign_off()
    window.pending_question.button(window.pending_question.StandardButton.Yes).click()
    assert cell.status is CellStatus.SIGNED_OFF
    assert "signed off" in window.cell_list.item(0).text()
    assert not window.undo_action.isEnabled()  # signing off is not undone by Ctrl+Z

    drag(window, crop_centre(window, chromosome.id), slot_centre(window, T.CHR6))
    assert chromosome.label is T.CHR5
    click(window, chromosome.id)
    QTest.keyClick(window.view, Qt.Key.Key_7)
    assert chromosome.label is T.CHR5
    assert "signed off" in window.last_error

    window.reopen()
    assert cell.status is CellStatus.REVIEWED
    QTest.keyClick(window.view, Qt.Key.Key_7)
    assert chromosome.label is T.CHR7
    statuses = [(e.before, e.after) for e in cell.audit if e.action == "status"]
    assert statuses == [("unreviewed", "signed_off"), ("signed_off", "reviewed")]


def test_save_and_reopen_keeps_labels_orientation_status_and_audit(window, qtbot, tmp_path):
    folder = write_cell(generate_cell("47,XY,+21", seed=3), tmp_path / "P7.2.tiff")
    assert window.open_path(folder)
    cell = window.current_cell
    first = of_type(cell, T.CHR21)[0]
    window.reassign(first.id, T.CHR22)
    window.select(first.id)
    window.rotate_selected()
    window.mark_reviewed()
    shown = window.karyotype_label.text()
    assert window.save_to(tmp_path / "P7")
    assert not window.isWindowModified()

    again = make_window(qtbot)
    assert again.open_path(tmp_path / f"P7{SUFFIX}")
    reopened = again.current_cell
    chromosome = reopened.chromosome(first.id)
    assert again.karyotype_label.text() == shown
    assert chromosome.manual.label is T.CHR22 and chromosome.manual.by == cell.audit[0].by
    assert chromosome.orientation == Orientation(180)
    assert reopened.status is CellStatus.REVIEWED
    assert [(e.action, e.before, e.after) for e in reopened.audit] == [
        (e.action, e.before, e.after) for e in cell.audit
    ]


def test_edits_are_autosaved_and_can_be_recovered_after_a_crash(window, qtbot, tmp_path):
    folder = write_cell(generate_cell("46,XX", seed=5), tmp_path / "Q1.1.tiff")
    assert window.open_path(folder)
    chromosome = of_type(window.current_cell, T.CHR9)[0]
    window.reassign(chromosome.id, T.CHR10)
    qtbot.waitUntil(lambda: len(pending_recoveries()) == 1, timeout=3000)
    # the app dies here; the next start finds the edits
    recovery = pending_recoveries()[0]
    assert str(folder.resolve()) == recovery.origin

    after_crash = make_window(qtbot)
    assert after_crash.recover(recovery)
    assert after_crash.current_cell.chromosome(chromosome.id).label is T.CHR10
    assert after_crash.karyotype_label.text() == "46,XX,-9,+10"
    assert after_crash.isWindowModified()
    assert after_crash.save_to(tmp_path / "Q1")
    assert pending_recoveries() == []  # saved: nothing left to recover


def test_export_png_and_pdf_report(window, tmp_path):
    window.open_example("47,XX,+21")
    png = window.export_png(tmp_path / "karyogram")
    pdf = window.export_pdf(tmp_path / "report.pdf")
    assert png.name == "karyogram.png"
    import cv2

    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape[1] > 2000
    assert (image < 100).mean() > 0.01  # chromosomes, not an empty page
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    assert window.export_pdf(tmp_path / "no" / "such" / "folder" / "r.pdf") is None
    assert "r.pdf" in window.last_error


def test_gallery_shows_the_crops_in_the_order_they_were_loaded(window):
    window.open_example("46,XY")
    cell = window.current_cell
    window.gallery_action.trigger()
    assert window.scene.layout.slots == {}
    order = window.scene.reading_order()
    assert order == [c.id for c in cell.chromosomes]
    first, last = (window.scene.chromosome_items[i].crop_rect() for i in (order[0], order[-1]))
    assert first.top() < last.top()
    window.gallery_action.trigger()
    assert set(window.scene.layout.slots) == set(T.types())  # no bucket: nothing unclassified


def test_shortcut_help_lists_the_review_keys(window):
    table = dict((text, keys) for keys, text in window.shortcut_table())
    assert table["Rotate by 180°"] == "R"
    assert table["Next flagged chromosome"] == "N"
    assert table["Save case"] == "Ctrl+S"
    dialog = window.show_shortcuts()
    assert dialog.isVisible()


def test_a_broken_model_file_is_reported_and_the_window_keeps_working(qtbot, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    window = make_window(qtbot, load_model=True, model=broken)
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=30000)
    assert "broken.safetensors" in window.last_error
    window.open_example("45,X")
    assert window.karyotype_label.text() == "45,X"
    assert window.model_label.text() == "no model"


# ------------------------------------------------------------------ with the shipped model
@pytest.fixture(scope="module")
def shipped_model_path():
    from trainer.checkpoint import default_checkpoint

    path = default_checkpoint()
    if not path.is_file():
        pytest.skip("no shipped model in resources/")
    return path


def test_a_cell_is_classified_off_the_gui_thread_and_its_grad_cam_shown(
    qtbot, tmp_path, shipped_model_path
):
    window = make_window(qtbot, load_model=True)
    folder = write_cell(generate_cell("46,XY", seed=7), tmp_path / "cell", labelled=False)
    assert window.open_path(folder)
    cell = window.current_cell
    assert window.karyotype_label.text() == "not classified"  # the window did not wait
    qtbot.waitUntil(lambda: all(c.probabilities is not None for c in cell.chromosomes),
                    timeout=60000)
    assert window.karyotype_label.text() == cell.karyotype != "not classified"
    assert window.model_label.text().startswith("model ")
    assert cell.model_id == window.service.classifier.model_id
    for chromosome in cell.chromosomes:  # laid out by the assigned types
        assert chromosome.id in window.scene.layout.slots[chromosome.label].members
    flagged = sum(needs_review(c) for c in cell.chromosomes)
    turned = sum(Flag.ORIENTATION_UNSURE in c.flags for c in cell.chromosomes)
    assert window.flag_label.text() == (
        (f"{flagged} flagged" if flagged else "nothing flagged")
        + (f" · {turned} orientation unsure" if turned else ""))

    chromosome = cell.chromosomes[0]
    click(window, chromosome.id)
    qtbot.waitUntil(lambda: window.inspector.overlay_image() is not None, timeout=20000)
    overlay = window.inspector.overlay_image()
    assert overlay.shape[:2] == chromosome.displayed_image().shape
    assert not np.array_equal(overlay[..., 0], overlay[..., 2])  # coloured: a heat map


def test_a_cell_in_doubt_about_its_sex_reads_it_with_the_cases_other_cells(
    qtbot, shipped_model_path
):
    from karyo_gui.core.case import Case

    window = make_window(qtbot, load_model=True)
    cells = [generate_cell("46,XY", seed=40 + k, name=f"cell {k}") for k in range(3)]
    window.set_case(Case("CASE-XY", cells), None, "generated")
    qtbot.waitUntil(lambda: all(c.probabilities is not None
                                for cell in cells for c in cell.chromosomes), timeout=60000)
    assert [cell.karyotype for cell in cells] == ["46,XY"] * 3
    # the Y of the cell on screen now looks as much like an X: alone it would read 46,XX
    doubtful = window.current_cell
    y = next(c for c in doubtful.chromosomes if c.given is T.Y)
    y.probabilities = np.full(24, 1e-4, np.float32)
    y.probabilities[[T.Y.value, T.X.value]] = (0.4, 0.6)
    assert window.service.classify_changed(doubtful)
    qtbot.waitUntil(lambda: "with the case's other cells" in window.statusBar().currentMessage(),
                    timeout=5000)
    assert doubtful.karyotype == "46,XY" and y.label is T.Y
    assert Flag.SEX_UNCERTAIN in y.flags  # a person still looks at it
    assert window.karyotype_label.text() == "46,XY"
    assert "46,XY" in window.cell_list.item(0).text().replace("\u200b", "")  # wrap points


def test_a_folder_dropped_onto_the_window_opens(window, tmp_path):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    folder = write_cell(generate_cell("47,XX,+18", seed=2), tmp_path / "D4.1.tiff")
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(folder))])
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, data,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.case.case_id == "D4"
    assert window.karyotype_label.text() == "47,XX,+18"
    assert window.settings.recent_files()[0] == str(folder.resolve())


def test_a_case_of_several_cells_lists_each_with_its_iscn_and_status(window, tmp_path):
    for seed, karyotype in enumerate(["46,XX", "47,XX,+21"]):
        write_cell(generate_cell(karyotype, seed=seed), tmp_path / "case" / f"cell{seed}")
    assert window.open_path(tmp_path / "case")
    window.cell_list.setCurrentRow(1)
    window.mark_reviewed()
    shown = [window.cell_list.item(k).text().replace("\u200b", "") for k in (0, 1)]
    assert shown[1].endswith("given 47,XX,+21 · reviewed")  # the folder's labels, not a result
    assert shown[0].endswith("given 46,XX · unreviewed")


def test_closing_with_unsaved_edits_keeps_them_for_recovery(qtbot, tmp_path):
    window = make_window(qtbot)
    window.open_example("46,XY")
    chromosome = of_type(window.current_cell, T.CHR6)[0]
    window.reassign(chromosome.id, T.CHR7)
    window.close()  # at once, before the autosave timer fires
    (recovery,) = pending_recoveries()
    assert recovery.origin == ""  # the example cell
    again = make_window(qtbot)
    assert again.recover(recovery)
    assert again.current_cell.chromosome(chromosome.id).manual.label is T.CHR7
