"""A batch review: many cells opened one after another in one window. The cases closed on the
way are let go at once (their cells, undo stacks and drawn items), however long the session."""

import gc
import threading
import weakref
from types import SimpleNamespace

import numpy as np
from PySide6.QtGui import QUndoStack

from karyo_gui.core.labels import N_TYPES
from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.karyogram_view import KaryogramScene

KARYOTYPES = ["46,XY", "46,XX", "47,XY,+21", "45,X", "47,XXY"]


def write_cells(folder, count):
    karyotypes = [KARYOTYPES[k % len(KARYOTYPES)] for k in range(count)]
    return [write_cell(generate_cell(karyotype, seed=k), folder / f"B{k:02d}.1.tiff")
            for k, karyotype in enumerate(karyotypes)]


def review(window, number, saved_to):
    """What a reviewer does with a cell: select one, correct another and take it back, save."""
    cell = window.current_cell
    order = window.scene.reading_order()
    window.select(order[len(order) // 3])
    corrected = cell.chromosome(order[len(order) // 2])
    before = corrected.label
    types = list(window.scene.layout.slots)
    assert window.reassign(corrected.id, types[(types.index(before) + 1) % len(types)])
    window.undo_group.undo()
    assert corrected.label is before
    assert window.save_to(saved_to / f"cell{number}.karyo.json")


def drawn_for_itself(window) -> int:
    """How many graphics items the cell shown needs, drawn in a scene of its own."""
    fresh = KaryogramScene()
    fresh.show_cell(window.current_cell, window.scene.style, window.scene.gallery)
    return len(fresh.items())


def test_opening_cells_one_after_another_keeps_only_the_open_case(window, tmp_path):
    # no event-loop turn between the cells: nothing may wait for one to be released
    opened = []
    for number, folder in enumerate(write_cells(tmp_path / "cells", 25)):
        assert window.open_path(folder)
        opened.append((weakref.ref(window.case), weakref.ref(window.current_cell)))
        review(window, number, tmp_path)
    gc.collect()

    alive = [n for n, (case, cell) in enumerate(opened) if case() is not None or cell() is not None]
    assert alive == [len(opened) - 1]  # only the case open now
    assert len(window.findChildren(QUndoStack)) == len(window.undo_group.stacks()) == 1
    assert len(window.scene.items()) == drawn_for_itself(window)
    assert set(window.scene.chromosome_items) == {c.id for c in window.current_cell.chromosomes}
    assert len(window.inspector.bar_plot.getPlotItem().items) == 1  # the bars, drawn once
    # without a model the open cell waits for one; no cell of a closed case does
    assert window.service.is_pending(window.current_cell)


def test_stepping_through_a_case_keeps_one_undo_stack_per_cell_until_the_next_case(
    window, tmp_path
):
    write_cells(tmp_path / "case", 5)
    assert window.open_path(tmp_path / "case")
    cells = [weakref.ref(cell) for cell in window.case.cells]
    assert len(cells) == 5
    for row in range(5):
        window.cell_list.setCurrentRow(row)
        review(window, row, tmp_path)
    assert len(window.undo_group.stacks()) == 5
    assert len(window.scene.items()) == drawn_for_itself(window)

    window.open_example("46,XY")
    gc.collect()
    assert [cell() for cell in cells] == [None] * 5
    assert len(window.findChildren(QUndoStack)) == len(window.undo_group.stacks()) == 1


class HeldModel:
    """A stand-in model: classifying waits until the test lets it go; it notes the
    chromosomes it is asked to explain (and explains none)."""

    description = model_id = "stand-in"
    device = device_name = "cpu"

    def __init__(self):
        self.go = threading.Event()
        self.explained = []

    def predict_cell(self, cell):
        self.go.wait(10)
        pictured = [k for k, c in enumerate(cell.chromosomes) if c.image is not None]
        return pictured, np.full((len(pictured), N_TYPES), 1 / N_TYPES, np.float32)

    def assign(self, cell, prediction):
        return SimpleNamespace(seconds=0.0, turned=[], dropped=[], sex_from_case=False)

    def stain_warning(self, cell):
        return None

    def attention(self, cell, chromosome_id, target):
        self.explained.append(cell.name)
        raise ValueError("a stand-in explains nothing")


def test_a_map_asked_about_a_closed_case_is_not_computed_and_the_case_goes(
    window, qtbot, tmp_path
):
    model = HeldModel()
    window.service._worker.classifier = model  # as if the model thread had loaded it
    window.service._worker.loaded.emit(model, 0.0)
    qtbot.waitUntil(lambda: window.service.classifier is model)
    first, second = write_cells(tmp_path, 2)
    try:
        assert window.open_path(first)  # its classification holds the model thread
        closed = weakref.ref(window.current_cell)
        window.select(window.current_cell.chromosomes[0].id)  # a map asked for, waiting
        assert window.open_path(second)
    finally:
        model.go.set()
    qtbot.waitUntil(lambda: not window.service.is_pending(window.current_cell))
    window.select(window.current_cell.chromosomes[0].id)
    qtbot.waitUntil(lambda: window.current_cell.name in model.explained)
    assert model.explained == [window.current_cell.name]
    gc.collect()
    assert closed() is None
