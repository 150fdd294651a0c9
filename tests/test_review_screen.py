"""The karyogram as a cytogeneticist reads it: bare chromosomes, marks only where in doubt,
zoom and pan, display adjustments that change nothing but the look, exports without marks."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from test_review import click, crop_centre, make_window, of_type

from karyo_gui.core.case import Flag
from karyo_gui.core.display import centromere_fraction, karyogram_picture
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.review import TypedType, needs_review
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.karyogram_view import MANUAL, SELECTED, UNSURE, render_karyogram


@pytest.fixture
def window(qtbot):
    return make_window(qtbot)


def state_of(cell):
    """What display options must never change: labels, pictures, orientation, ISCN."""
    return (cell.karyotype, [(c.id, c.label, c.orientation, c.image.tobytes())
                             for c in cell.chromosomes])


def test_a_bright_on_dark_crop_is_drawn_dark_on_white_cut_out_and_upright():
    cell = generate_cell("46,XY", seed=5)
    crop = cell.chromosomes[0].image
    dark_ground = 255 - crop  # as a Q-banded (fluorescent) crop comes
    height, width = dark_ground.shape
    tilted = np.zeros((height + 40, width + 40), np.uint8)
    tilted[20:20 + height, 20:20 + width] = dark_ground
    import cv2
    turn = cv2.getRotationMatrix2D((tilted.shape[1] / 2, tilted.shape[0] / 2), 35, 1.0)
    tilted = cv2.warpAffine(tilted, turn, tilted.shape[::-1], borderValue=0)
    picture = karyogram_picture(tilted)
    assert picture[0, 0] == 255 and picture[-1, -1] == 255  # white paper, not a black tile
    assert picture.min() < 128  # the chromosome is there, dark
    ys, xs = np.nonzero(picture < 200)
    assert np.ptp(ys) > 1.8 * np.ptp(xs)  # stood upright: much taller than wide
    np.testing.assert_array_equal(cell.chromosomes[0].image, crop)


def test_the_centromere_is_found_at_the_waist_near_the_textbook_index():
    picture = np.full((100, 30), 255, np.uint8)
    import cv2
    cv2.ellipse(picture, (15, 16), (7, 14), 0, 0, 360, 60, -1)  # p arm
    cv2.ellipse(picture, (15, 64), (7, 34), 0, 0, 360, 60, -1)  # q arm
    assert centromere_fraction(picture, T.CHR4) == pytest.approx(0.31, abs=0.04)
    plain = np.full((100, 30), 255, np.uint8)
    plain[5:95, 8:22] = 60  # no waist anywhere: the textbook value of the type
    assert centromere_fraction(plain, T.CHR13) == pytest.approx(0.17, abs=0.01)


def test_display_options_change_the_look_and_nothing_else(window, qtbot):
    window.open_example("47,XY,+21")
    cell = window.current_cell
    before = state_of(cell)
    chromosome = cell.chromosomes[3]
    drawn_before = window.scene.chromosome_items[chromosome.id].picture.copy()
    window.straighten_action.trigger()
    window.centromere_action.trigger()
    dialog = window.show_display_dialog()
    dialog.sliders["contrast"].setValue(200)
    dialog.sliders["gamma"].setValue(150)
    dialog.sliders["sharpen"].setValue(100)
    assert window.scene.display.contrast == 2.0 and window.scene.display.sharpen == 1.0
    assert not np.array_equal(window.scene.chromosome_items[chromosome.id].picture, drawn_before)
    assert state_of(cell) == before
    assert window.karyotype_label.text() == "47,XY,+21"
    assert not window._dirty  # nothing to save: the case did not change
    dialog.reset()
    window.straighten_action.trigger()
    window.centromere_action.trigger()
    np.testing.assert_array_equal(window.scene.chromosome_items[chromosome.id].picture,
                                  drawn_before)
    # remembered for the next start
    window.marks_action.trigger()
    assert window.settings.review_marks is False
    dialog.close()


def test_homologs_hang_on_their_rows_centromere_line(window):
    window.open_example("46,XX")
    scene = window.scene
    for chromosome_type in (T.CHR1, T.CHR4, T.CHR13):
        lines = []
        for id_ in scene.layout.slots[chromosome_type].members:
            item = scene.chromosome_items[id_]
            rect = item.crop_rect()
            lines.append(rect.top() + item.centromere * rect.height())
        assert max(lines) - min(lines) < 1.0  # one centromere line for the pair


def test_marks_only_where_the_type_is_in_doubt_and_never_in_an_export(window, tmp_path):
    window.open_example("46,XY")
    cell = window.current_cell
    unsure, by_hand, sure = cell.chromosomes[0], cell.chromosomes[5], cell.chromosomes[10]
    unsure.flags.add(Flag.LOW_CONFIDENCE)
    sure.flags.add(Flag.MOVED_BY_ASSIGNMENT)  # confidently moved: nothing to look at
    window.reassign(by_hand.id, by_hand.label)
    window.show_cell(cell)
    items = window.scene.chromosome_items
    assert items[unsure.id].frame == UNSURE and items[unsure.id].flagged
    assert items[by_hand.id].frame == MANUAL != SELECTED
    assert items[sure.id].frame is None and not items[sure.id].flagged
    assert items[cell.chromosomes[20].id].frame is None
    # the export is the karyogram without any review mark: no orange, amber or violet pixel
    out = render_karyogram(cell, tmp_path / "k.png")
    image = QImage(str(out)).convertToFormat(QImage.Format.Format_RGB32)
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1, 4)[..., :3]
    colourful = (pixels.max(axis=2).astype(int) - pixels.min(axis=2)) > 60
    assert not colourful.any()
    assert image.width() == round(window.scene.sceneRect().width() * 4)  # the app's resolution


def test_n_skips_orientation_doubts_unless_asked(window):
    window.open_example("46,XY")
    cell = window.current_cell
    turned, typed = of_type(cell, T.CHR3)[0], of_type(cell, T.CHR9)[0]
    turned.flags.add(Flag.ORIENTATION_UNSURE)
    typed.flags.add(Flag.HOMOLOG_UNLIKE)
    window.show_cell(cell)
    assert not needs_review(turned) and needs_review(turned, orientation=True)
    assert window.flag_label.text() == "1 flagged · 1 orientation unsure"
    assert window.step_flagged() == typed.id
    assert window.step_flagged() == typed.id  # round again: the orientation doubt is skipped
    window.orientation_review_action.trigger()
    assert window.step_flagged() == turned.id
    assert window.settings.orientation_in_review is True
    window.rotate_selected()  # the reviewer decides which way up: no longer in doubt
    assert window.flag_label.text() == "1 flagged"
    window.undo_action.trigger()
    assert window.flag_label.text() == "1 flagged · 1 orientation unsure"


def test_zoom_with_wheel_and_keys_and_fit_again(window, qtbot):
    window.open_example("46,XY")
    view = window.view
    assert view.zoom() == pytest.approx(1.0, abs=0.02)
    QTest.keyClick(view, Qt.Key.Key_Plus)
    assert view.zoom() == pytest.approx(1.25, rel=0.02)
    centre = view.viewport().rect().center()
    from PySide6.QtGui import QWheelEvent

    wheel = QWheelEvent(QPointF(centre), QPointF(view.mapToGlobal(centre)), QPoint(0, 0),
                        QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication_send(view.viewport(), wheel)
    assert view.zoom() == pytest.approx(1.25 * 1.44, rel=0.03)
    window.resize(window.width() - 100, window.height())  # no refit while zoomed in
    assert view.zoomed
    # a chromosome is still clicked where it is drawn
    chromosome = window.current_cell.chromosomes[0]
    view.centerOn(crop_centre(window, chromosome.id))
    click(window, chromosome.id)
    assert window.selected_id() == chromosome.id
    for _ in range(10):
        QTest.keyClick(view, Qt.Key.Key_Minus)  # never smaller than fitted
    assert view.zoom() == pytest.approx(1.0, abs=0.02) and not view.zoomed
    QTest.keyClick(view, Qt.Key.Key_Plus)
    window.view.fit()
    assert not view.zoomed and view.zoom() == pytest.approx(1.0, abs=0.02)


def QApplication_send(widget, event) -> None:
    from PySide6.QtWidgets import QApplication

    QApplication.sendEvent(widget, event)


def test_u_sends_a_chromosome_to_the_unclassified_bucket_which_appears_only_then(window):
    assert TypedType().feed("u") is T.UNCLASSIFIED
    window.open_example("46,XY")
    assert T.UNCLASSIFIED not in window.scene.layout.slots
    chromosome = window.current_cell.chromosomes[7]
    click(window, chromosome.id)
    QTest.keyClick(window.view, Qt.Key.Key_U)
    assert chromosome.label is T.UNCLASSIFIED
    assert chromosome.id in window.scene.layout.slots[T.UNCLASSIFIED].members
    window.undo_action.trigger()
    assert T.UNCLASSIFIED not in window.scene.layout.slots


def test_the_inspector_names_the_folders_label_when_the_type_shown_differs(window):
    window.open_example("46,XY")
    chromosome = window.current_cell.chromosomes[0]
    window.reassign(chromosome.id, T.CHR7)
    click(window, chromosome.id)
    text = window.inspector.info_label.text()
    assert f"given {chromosome.given.display_name} (the folder's label, not the type shown)" in text


def test_a_cell_labelled_by_its_folder_is_not_shown_as_a_result(window):
    window.open_example("46,XY")  # generated cells come with their given types
    assert window.karyotype_label.text() == "46,XY"
    assert "not classified this cell yet" in window.karyotype_label.toolTip()
    assert "normal" in window.karyotype_label.styleSheet()
    entry = window.cell_list.item(0).text().replace("\u200b", "")
    assert entry.endswith("given 46,XY · unreviewed")
