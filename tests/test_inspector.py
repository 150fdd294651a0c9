"""The inspector panel, offscreen: one chromosome, its probabilities, its Grad-CAM overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from karyo_gui.core.case import CellStatus, Flag, Orientation
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.inspector import HIGHLIGHT_COLOUR, NO_PICTURE, NO_SELECTION, InspectorPanel


def _probabilities(top: dict[T, float]) -> np.ndarray:
    """24 probabilities with the given ones, the rest sharing what is left evenly."""
    rest = (1 - sum(top.values())) / (24 - len(top))
    probabilities = np.full(24, rest)
    for chromosome_type, p in top.items():
        probabilities[chromosome_type.value] = p
    return probabilities


@pytest.fixture
def cell():
    """A 46,XY cell classified by a pretend model; c000 is mostly type 5."""
    cell = generate_cell("46,XY", seed=0)
    rng = np.random.default_rng(1)
    for chromosome in cell.chromosomes:
        chromosome.probabilities = rng.dirichlet(np.full(24, 0.3))
        chromosome.predicted = T(int(np.argmax(chromosome.probabilities)))
        chromosome.assigned = chromosome.predicted
    first = cell.chromosomes[0]
    first.probabilities = _probabilities({T.CHR5: 0.82, T.CHR4: 0.09, T.X: 0.05})
    first.predicted = first.assigned = T.CHR5
    return cell


@pytest.fixture
def panel(qtbot):
    panel = InspectorPanel()
    qtbot.addWidget(panel)
    panel.resize(360, 800)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def _upper_half_map(chromosome) -> np.ndarray:
    crop_map = np.zeros(chromosome.image.shape, np.float32)
    crop_map[: chromosome.image.shape[0] // 2] = 1
    return crop_map


def _redness(rgb: np.ndarray) -> float:
    """Red minus blue: jet colours a hot region red and a cold one blue."""
    return float(rgb[..., 0].astype(float).mean() - rgb[..., 2].astype(float).mean())


def test_info_shows_the_id_and_the_shown_type(panel, cell):
    chromosome = cell.chromosomes[0]
    panel.show_chromosome(cell, chromosome.id)
    assert panel.shown_id() == chromosome.id
    text = panel.info_label.text()
    assert "c000: type 5" in text
    assert "predicted 5" in text and "assigned 5" in text
    assert not panel.image_label.pixmap().isNull()


def test_info_shows_a_manual_label_with_who_and_flags(panel, cell):
    chromosome = cell.chromosomes[0]
    chromosome.flags.add(Flag.MOVED_BY_ASSIGNMENT)
    cell.set_manual_label(chromosome.id, T.CHR4, by="alice")
    panel.show_chromosome(cell, chromosome.id)
    text = panel.info_label.text()
    assert "type 4" in text
    assert "manual 4 by alice" in text
    assert "type from the karyotype assignment (the model's first choice: " in text


def test_bars_are_the_probabilities_and_the_shown_type_is_highlighted(panel, cell):
    chromosome = cell.chromosomes[0]
    cell.set_manual_label(chromosome.id, T.CHR4, by="alice")
    panel.show_chromosome(cell, chromosome.id)
    np.testing.assert_allclose(panel.bars.opts["height"], chromosome.probabilities)
    colours = [brush.color() for brush in panel.bars.opts["brushes"]]
    assert colours[T.CHR4.value] == HIGHLIGHT_COLOUR
    assert sum(colour == HIGHLIGHT_COLOUR for colour in colours) == 1
    levels = panel.bar_plot.getAxis("bottom")._tickLevels
    named = sorted((value, name) for level in levels for value, name in level)
    assert [name for _, name in named] == [str(n) for n in range(1, 23)] + ["X", "Y"]
    # every other type on the first level: named whatever the width, none running together
    assert [name for _, name in levels[0]] == [str(n) for n in range(1, 23, 2)] + ["X"]


def test_top_three_are_in_descending_order_and_a_click_reassigns(panel, cell, qtbot):
    panel.show_chromosome(cell, "c000")
    texts = [button.text() for button in panel.top_buttons]
    assert texts == ["5  (82 %)", "4  (9 %)", "X  (5 %)"]
    assert all(button.isEnabled() for button in panel.top_buttons)
    with qtbot.waitSignal(panel.reassign_requested) as blocker:
        qtbot.mouseClick(panel.top_buttons[1], Qt.MouseButton.LeftButton)
    assert blocker.args == ["c000", T.CHR4]


def test_buttons_are_disabled_for_a_signed_off_cell(panel, cell, qtbot):
    cell.set_status(CellStatus.SIGNED_OFF)
    panel.show_chromosome(cell, "c000")
    assert len(panel.top_buttons) == 3
    assert not any(button.isEnabled() for button in panel.top_buttons)
    with qtbot.assertNotEmitted(panel.reassign_requested):
        qtbot.mouseClick(panel.top_buttons[0], Qt.MouseButton.LeftButton)


def test_an_unclassified_chromosome_has_empty_bars_and_no_buttons(panel, cell):
    chromosome = cell.chromosomes[1]
    chromosome.probabilities = chromosome.predicted = chromosome.assigned = None
    panel.show_chromosome(cell, chromosome.id)
    assert "not classified" in panel.info_label.text()
    assert not np.any(panel.bars.opts["height"])
    assert not any(button.isEnabled() for button in panel.top_buttons)


def test_selecting_a_chromosome_asks_for_its_predicted_type_map(panel, cell, qtbot):
    assert panel.overlay_check.isChecked()
    assert panel.opacity_slider.value() == 45
    with qtbot.waitSignal(panel.attention_requested) as blocker:
        panel.show_chromosome(cell, "c003")
    assert blocker.args == ["c003", None]
    assert "computing" in panel.caption_label.text()


def test_choosing_a_target_type_asks_for_that_map(panel, cell, qtbot):
    assert panel.target_combo.count() == 25
    assert panel.target_combo.itemText(0) == "predicted type"
    panel.show_chromosome(cell, "c000")
    with qtbot.waitSignal(panel.attention_requested) as blocker:
        panel.target_combo.setCurrentIndex(1 + T.X.value)
    assert blocker.args == ["c000", T.X]
    with qtbot.waitSignal(panel.attention_requested) as blocker:
        panel.show_chromosome(cell, "c001")
    assert blocker.args == ["c001", T.X]


def test_no_request_without_a_picture_or_with_the_overlay_off(panel, cell, qtbot):
    cell.chromosomes[2].image = None
    with qtbot.assertNotEmitted(panel.attention_requested):
        panel.show_chromosome(cell, "c002")
    assert panel.image_label.text() == NO_PICTURE
    assert panel.image_label.pixmap().isNull()
    panel.overlay_check.setChecked(False)
    with qtbot.assertNotEmitted(panel.attention_requested):
        panel.show_chromosome(cell, "c000")
    with qtbot.waitSignal(panel.attention_requested) as blocker:
        panel.overlay_check.setChecked(True)
    assert blocker.args == ["c000", None]


def test_a_map_colours_the_upper_half_of_the_crop(panel, cell):
    chromosome = cell.chromosomes[0]
    panel.show_chromosome(cell, chromosome.id)
    panel.show_attention(chromosome.id, _upper_half_map(chromosome), T.CHR5, 0.82)
    overlay = panel.overlay_image()
    assert overlay is not None and overlay.shape == (*chromosome.image.shape, 3)
    quarter = overlay.shape[0] // 4
    assert _redness(overlay[:quarter]) > _redness(overlay[-quarter:]) + 30
    assert panel.caption_label.text() == "Grad-CAM for type 5 (p = 0.82)"


def test_the_map_turns_with_the_chromosome(panel, cell):
    chromosome = cell.chromosomes[0]
    cell.set_orientation(chromosome.id, Orientation(180))
    panel.show_chromosome(cell, chromosome.id)
    panel.show_attention(chromosome.id, _upper_half_map(chromosome), T.CHR5, 0.82)
    overlay = panel.overlay_image()
    quarter = overlay.shape[0] // 4
    assert _redness(overlay[-quarter:]) > _redness(overlay[:quarter]) + 30


def test_a_quarter_turn_turns_the_overlay_too(panel, cell):
    chromosome = cell.chromosomes[0]
    cell.set_orientation(chromosome.id, Orientation(90))
    panel.show_chromosome(cell, chromosome.id)
    panel.show_attention(chromosome.id, _upper_half_map(chromosome), T.CHR5, 0.82)
    height, width = chromosome.image.shape
    assert panel.overlay_image().shape == (width, height, 3)


def test_opacity_reblends_the_kept_map_without_a_new_request(panel, cell, qtbot):
    chromosome = cell.chromosomes[0]
    panel.show_chromosome(cell, chromosome.id)
    panel.show_attention(chromosome.id, _upper_half_map(chromosome), T.CHR5, 0.82)
    before = panel.overlay_image().copy()
    with qtbot.assertNotEmitted(panel.attention_requested):
        panel.opacity_slider.setValue(80)
    assert _redness(panel.overlay_image()[:5]) > _redness(before[:5])
    with qtbot.assertNotEmitted(panel.attention_requested):
        panel.opacity_slider.setValue(0)
    grey = np.repeat(chromosome.displayed_image()[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(panel.overlay_image(), grey)


def test_a_stale_map_is_ignored(panel, cell):
    panel.show_chromosome(cell, "c000")
    caption = panel.caption_label.text()
    panel.show_attention("c001", _upper_half_map(cell.chromosomes[1]), T.CHR5, 0.5)
    assert panel.overlay_image() is None
    assert panel.caption_label.text() == caption
    panel.target_combo.setCurrentIndex(1 + T.CHR7.value)
    panel.show_attention("c000", _upper_half_map(cell.chromosomes[0]), T.CHR5, 0.82)
    assert panel.overlay_image() is None  # the answer to the target chosen before


def test_a_new_chromosome_drops_the_map(panel, cell):
    first = cell.chromosomes[0]
    panel.show_chromosome(cell, first.id)
    panel.show_attention(first.id, _upper_half_map(first), T.CHR5, 0.82)
    panel.show_chromosome(cell, "c001")
    assert panel.overlay_image() is None
    panel.show_chromosome(cell, first.id)
    assert panel.overlay_image() is None
    assert "computing" in panel.caption_label.text()


def test_toggling_the_overlay_off_shows_the_plain_crop(panel, cell):
    chromosome = cell.chromosomes[0]
    panel.show_chromosome(cell, chromosome.id)
    panel.show_attention(chromosome.id, _upper_half_map(chromosome), T.CHR5, 0.82)
    panel.overlay_check.setChecked(False)
    assert panel.overlay_image() is None
    assert panel.caption_label.text() == ""
    assert panel.image_label.pixmap().toImage().allGray()
    panel.overlay_check.setChecked(True)
    assert panel.overlay_image() is not None


def test_a_problem_is_shown_in_the_caption(panel, cell):
    panel.show_chromosome(cell, "c000")
    panel.show_attention_problem("c001", "stale")
    assert panel.caption_label.text() != "stale"
    panel.show_attention_problem("c000", "no model loaded")
    assert panel.caption_label.text() == "no model loaded"
    assert panel.overlay_image() is None


def test_none_clears_the_panel(panel, cell, qtbot):
    chromosome = cell.chromosomes[0]
    panel.show_chromosome(cell, chromosome.id)
    panel.show_attention(chromosome.id, _upper_half_map(chromosome), T.CHR5, 0.82)
    with qtbot.assertNotEmitted(panel.attention_requested):
        panel.show_chromosome(None, None)
    assert panel.shown_id() is None
    assert panel.overlay_image() is None
    assert panel.info_label.text() == NO_SELECTION
    assert panel.image_label.text() == NO_SELECTION
    assert panel.caption_label.text() == ""
    assert not np.any(panel.bars.opts["height"])
    assert not any(button.isEnabled() for button in panel.top_buttons)


def test_the_crop_is_enlarged_to_fill_the_panel(panel, cell, qtbot):
    chromosome = cell.chromosomes[0]
    panel.show_chromosome(cell, chromosome.id)
    height, width = chromosome.image.shape
    pixmap = panel.image_label.pixmap()
    assert pixmap.height() >= 250 > 3 * height  # a small crop, upscaled
    assert abs(pixmap.width() / pixmap.height() - width / height) < 0.05
    small = pixmap.height()
    panel.resize(500, 1100)
    qtbot.waitUntil(lambda: panel.image_label.pixmap().height() > small)
