"""The metaphase view and its tools, driven offscreen with real mouse events on a generated
metaphase (its true regions as if a perfect finder had run): outlines, selection in both
views, split, join, delete, add, separate a crossing, undo, audit, save and reload."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from karyo_gui.core.assignment import drop_unplaced_candidates
from karyo_gui.core.case import Case, CellStatus, Chromosome, Flag
from karyo_gui.core.case_file import load_case
from karyo_gui.core.labels import N_TYPES
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.metaphase import Region
from karyo_gui.core.synthetic import generate_metaphase, metaphase_cell
from karyo_gui.qt.metaphase_view import MetaphaseTool, MetaphaseView


@pytest.fixture(scope="module")
def generated():
    """One generated 46,XY spread with two crossings and touching pairs (made once)."""
    spread = generate_metaphase("46,XY", seed=3)
    assert spread.crossings, "the generator made no crossing to separate"
    return spread


def open_spread(window, generated):
    """The window on a cell of the generated spread, with its true regions."""
    window.resize(1600, 1000)
    cell = metaphase_cell(generated, name="spread", with_truth=True)
    window.set_case(Case("metaphase-case", [cell]), None)
    QApplication.processEvents()
    window.metaphase_view.fit()
    return cell


# ---------------------------------------------------------------- where to click
def deep_point(mask: np.ndarray, box, avoid: np.ndarray | None = None) -> tuple[float, float]:
    """The image point deepest inside a mask (farthest from its edge), optionally outside
    another mask of the same box (the other chromosome of a crossing)."""
    keep = mask & ~avoid if avoid is not None else mask
    distance = cv2.distanceTransform(np.pad(keep, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(box[0] + x), float(box[1] + y)


def inside(chromosome) -> tuple[float, float]:
    return deep_point(chromosome.region.mask, chromosome.region.box)


def isolated(generated, cell, room: int = 12) -> int:
    """The index of the longest chromosome with nothing within ``room`` px of its box."""
    boxes = generated.boxes()
    busy = {i for pair in generated.crossings + generated.touching for i in pair}
    best = None
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        if k in busy:
            continue
        near = ((boxes[:, 0] < x1 + room) & (boxes[:, 2] > x0 - room)
                & (boxes[:, 1] < y1 + room) & (boxes[:, 3] > y0 - room))
        if near.sum() == 1 and (best is None or (y1 - y0) + (x1 - x0) > best[0]):
            best = ((y1 - y0) + (x1 - x0), k)
    assert best is not None
    return best[1]


def across(generated, k: int, reach: float = 1.6) -> list[tuple[float, float]]:
    """A line across chromosome ``k`` at the middle of its centre line, reaching ``reach``
    chromosome widths out on both sides."""
    line = generated.centre_lines[k]
    middle = len(line) // 2
    direction = line[min(middle + 3, len(line) - 1)] - line[max(middle - 3, 0)]
    direction = direction / np.hypot(*direction)
    normal = np.array([-direction[1], direction[0]])
    width = generated.style.chromatid_width
    centre = line[middle]
    return [tuple(centre + normal * width * t) for t in np.linspace(-reach, reach, 9)]


def view_point(view, x: float, y: float) -> QPoint:
    return view.mapFromScene(QPointF(x, y))


def click(qtbot, view, point) -> None:
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view_point(view, *point))


def double_click(qtbot, view, point) -> None:
    """A double-click as the window gets it from a hand: a click, then the double-click."""
    click(qtbot, view, point)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view_point(view, *point))


def drag(qtbot, view, points) -> None:
    """Press at the first image point, move through the others, release at the last."""
    positions = [view_point(view, *p) for p in points]
    viewport = view.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=positions[0])
    for position in positions[1:]:
        qtbot.mouseMove(viewport, position)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=positions[-1])


def use(window, tool: MetaphaseTool) -> None:
    window.tool_actions[tool].trigger()
    assert window.metaphase_view.tool is tool


def ids(cell) -> list[str]:
    return [c.id for c in cell.chromosomes]


def regions(cell) -> dict:
    return {c.id: c.region for c in cell.chromosomes}


def changed_since(cell, before: dict) -> list:
    """The chromosomes that are new, or whose region is not the one they had."""
    return [c for c in cell.chromosomes if before.get(c.id) is not c.region]


def shown_count(window) -> int:
    return len(window.scene.chromosome_items)


# ---------------------------------------------------------------- showing and selecting
def test_the_metaphase_is_shown_beside_the_karyogram_with_one_outline_each(window, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    assert window.metaphase_panel.isVisible() and window.view.isVisible()
    assert set(view.outline_items) == set(ids(cell)) and len(view.outline_items) == 46
    assert set(view.label_items) == set(ids(cell))
    assert view.label_items[cell.chromosomes[0].id].text == cell.chromosomes[0].label.display_name
    assert shown_count(window) == 46
    assert window.karyotype_label.text() == "46,XY"
    assert window.metaphase_toolbar.isVisible()
    assert all("drag" in window.tool_actions[t].toolTip().lower()
               for t in (MetaphaseTool.SPLIT, MetaphaseTool.ADD))
    window.labels_action.trigger()  # T: the types off the image, to see it
    assert not any(label.isVisible() for label in view.label_items.values())
    window.labels_action.trigger()
    assert all(label.isVisible() for label in view.label_items.values())
    # each outline runs along its chromosome's own pixels
    for chromosome in cell.chromosomes[:5]:
        rect = view.outline_items[chromosome.id].boundingRect()
        x0, _, _, y1 = chromosome.region.box
        assert rect.left() == pytest.approx(x0, abs=1)
        assert rect.bottom() == pytest.approx(y1 - 1, abs=1)


def test_a_cell_of_crops_shows_no_metaphase(window):
    window.open_example("46,XY")
    assert window.metaphase_panel.isHidden()
    assert not window.tool_actions[MetaphaseTool.SPLIT].isEnabled()
    assert shown_count(window) == 46


def test_clicking_on_the_image_selects_in_the_karyogram_and_back(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    chosen = cell.chromosomes[isolated(generated, cell)]
    click(qtbot, view, inside(chosen))
    assert view.selected_id() == chosen.id
    assert window.selected_id() == chosen.id
    assert window.inspector.shown_id() == chosen.id
    assert view.outline_items[chosen.id].selected
    # and from the karyogram to the image
    other = cell.chromosomes[0] if cell.chromosomes[0] is not chosen else cell.chromosomes[1]
    item = window.scene.chromosome_items[other.id]
    centre = window.view.mapFromScene(item.crop_rect().center())
    qtbot.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert window.selected_id() == other.id
    assert view.selected_id() == other.id
    assert not view.outline_items[chosen.id].selected
    # a click on the background selects nothing
    click(qtbot, view, (2.0, 2.0))
    assert view.selected_id() is None and window.selected_id() is None


def test_the_smallest_of_two_overlapping_chromosomes_is_hit(generated):
    cell = metaphase_cell(generated, with_truth=True)
    view = MetaphaseView()
    view.resize(900, 800)
    view.show_cell(cell)
    a, b = generated.crossings[0]
    first, second = cell.chromosomes[a], cell.chromosomes[b]
    shared = first.region.full_mask(generated.pixels.shape) & second.region.full_mask(
        generated.pixels.shape)
    ys, xs = np.nonzero(shared)
    assert xs.size
    smaller = min((first, second), key=lambda c: c.region.area)
    assert view.chromosome_at(QPointF(float(xs[0]), float(ys[0])), radius=0) == smaller.id


# ---------------------------------------------------------------- zoom, pan, gestures
def test_wheel_zooms_around_the_cursor_and_gestures_stay_in_image_coordinates(qtbot,
                                                                            generated):
    cell = metaphase_cell(generated, with_truth=True)
    view = MetaphaseView()
    qtbot.addWidget(view)
    view.resize(700, 600)
    view.show()
    view.show_cell(cell)
    fitted = view.zoom()
    target = QPointF(*inside(cell.chromosomes[10]))
    cursor = view.mapFromScene(target)
    for _ in range(3):
        wheel = QWheelEvent(QPointF(cursor), QPointF(view.viewport().mapToGlobal(cursor)),
                            QPoint(0, 0), QPoint(0, 120), Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(view.viewport(), wheel)
    assert view.zoom() == pytest.approx(fitted * 1.25 ** 3, rel=1e-3)
    under = view.mapToScene(cursor)
    assert abs(under.x() - target.x()) < 2 and abs(under.y() - target.y()) < 2

    found = []
    view.gesture_finished.connect(lambda tool, hit, points: found.append((tool, hit, points)))
    view.set_tool(MetaphaseTool.SPLIT)
    line = across(generated, 10)
    drag(qtbot, view, line)
    tool, hit, points = found[-1]
    assert tool is MetaphaseTool.SPLIT and hit[0] == cell.chromosomes[10].id
    assert np.allclose(points[0], line[0], atol=1.0) and np.allclose(points[-1], line[-1],
                                                                     atol=1.0)
    qtbot.keyClick(view, Qt.Key.Key_0)  # fit again
    assert view.zoom() == pytest.approx(fitted, rel=1e-3)
    qtbot.keyClick(view, Qt.Key.Key_Plus)
    assert view.zoom() == pytest.approx(fitted * 1.25, rel=1e-3)
    qtbot.keyClick(view, Qt.Key.Key_Minus)
    assert view.zoom() == pytest.approx(fitted, rel=1e-3)


def test_middle_button_pans(qtbot, generated):
    view = MetaphaseView()
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.show()
    view.show_cell(metaphase_cell(generated, with_truth=True))
    view.zoom_by(4.0)
    centre = view.viewport().rect().center()
    before = view.mapToScene(centre)
    qtbot.mousePress(view.viewport(), Qt.MouseButton.MiddleButton, pos=centre)
    qtbot.mouseMove(view.viewport(), centre + QPoint(80, 40))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.MiddleButton, pos=centre + QPoint(80, 40))
    after = view.mapToScene(centre)
    assert after.x() == pytest.approx(before.x() - 80 / view.zoom(), abs=1.0)
    assert after.y() == pytest.approx(before.y() - 40 / view.zoom(), abs=1.0)


def test_escape_drops_the_line_being_drawn_and_goes_back_to_select(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    use(window, MetaphaseTool.SPLIT)
    line = [view_point(view, *p) for p in across(generated, isolated(generated, cell))]
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=line[0])
    for position in line[1:]:
        qtbot.mouseMove(view.viewport(), position)
    assert not view._rubber.path().isEmpty()  # the line is shown while drawn
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=line[-1])
    assert view.tool is MetaphaseTool.SELECT
    assert window.tool_actions[MetaphaseTool.SELECT].isChecked()
    assert view._rubber.path().isEmpty()
    assert len(cell) == 46 and not cell.audit


# ---------------------------------------------------------------- the tools
def test_split_join_and_undo(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    start_ids, start_karyotype, start = ids(cell), cell.karyotype, regions(cell)
    k = isolated(generated, cell)
    whole = cell.chromosomes[k].region

    use(window, MetaphaseTool.SPLIT)
    drag(qtbot, view, across(generated, k))
    assert len(cell) == 47, window.last_error
    assert len(set(ids(cell))) == 47
    assert shown_count(window) == 47 and len(view.outline_items) == 47
    assert window.count_label.text() == "47 chromosomes"
    pieces = changed_since(cell, start)
    assert len(pieces) == 2
    assert sum(p.region.area for p in pieces) <= whole.area
    assert sum(p.region.area for p in pieces) > 0.9 * whole.area
    assert all(c.label is T.UNCLASSIFIED for c in pieces)  # no model: they wait for one
    assert cell.karyotype != start_karyotype
    assert window.isWindowModified()
    recovery = window.autosave()  # as the autosave timer would
    assert recovery is not None and len(load_case(recovery).cells[0]) == 47

    use(window, MetaphaseTool.JOIN)
    click(qtbot, view, inside(pieces[0]))
    click(qtbot, view, inside(pieces[1]))
    assert len(cell) == 46, window.last_error
    assert shown_count(window) == 46
    assert [c.action for c in cell.audit if c.action in ("split", "join")] == ["split", "join"]

    window.undo_group.undo()
    assert len(cell) == 47 and shown_count(window) == 47
    window.undo_group.undo()
    assert ids(cell) == start_ids
    assert cell.karyotype == start_karyotype
    assert window.karyotype_label.text() == start_karyotype
    assert shown_count(window) == 46 and set(view.outline_items) == set(start_ids)


def test_delete_by_click_and_by_the_delete_key(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    start_ids = ids(cell)
    first, second = cell.chromosomes[3], cell.chromosomes[isolated(generated, cell)]
    use(window, MetaphaseTool.DELETE)
    click(qtbot, view, inside(first))
    assert first.id not in ids(cell) and len(cell) == 45
    assert first.id not in view.outline_items and shown_count(window) == 45
    use(window, MetaphaseTool.SELECT)
    click(qtbot, view, inside(second))
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert second.id not in ids(cell) and len(cell) == 44
    assert window.selected_id() is None
    assert [c.action for c in cell.audit].count("delete") == 2
    window.undo_group.undo()
    window.undo_group.undo()
    assert ids(cell) == start_ids


def outline_around(region, margin: int = 5) -> list[tuple[float, float]]:
    """A rectangle around a region's box, as a drawn outline (corners and points between)."""
    x0, y0, x1, y1 = region.box
    a, b, c, d = x0 - margin, y0 - margin, x1 - 1 + margin, y1 - 1 + margin
    corners = [(a, b), (c, b), (c, d), (a, d), (a, b)]
    points = []
    for (px, py), (qx, qy) in itertools.pairwise(corners):
        for t in np.linspace(0, 1, 6)[:-1]:
            points.append((px + t * (qx - px), py + t * (qy - py)))
    return points


def test_add_by_drawing_around_a_chromosome(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    chosen = cell.chromosomes[isolated(generated, cell)]
    truth = chosen.region.full_mask(generated.pixels.shape)
    use(window, MetaphaseTool.DELETE)
    click(qtbot, view, inside(chosen))
    assert len(cell) == 45
    before = regions(cell)
    use(window, MetaphaseTool.ADD)
    drag(qtbot, view, outline_around(chosen.region))
    assert len(cell) == 46, window.last_error
    [new] = changed_since(cell, before)
    mask = new.region.full_mask(truth.shape)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8  # the chromosome, not the box
    assert new.image is not None and new.label is T.UNCLASSIFIED
    assert shown_count(window) == 46 and new.id in view.outline_items
    assert "add" in [c.action for c in cell.audit]


def test_add_by_clicking_corners_closed_with_a_double_click(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    chosen = cell.chromosomes[isolated(generated, cell)]
    use(window, MetaphaseTool.DELETE)
    click(qtbot, view, inside(chosen))
    use(window, MetaphaseTool.ADD)
    x0, y0, x1, y1 = chosen.region.box
    corners = [(x0 - 5, y0 - 5), (x1 + 4, y0 - 5), (x1 + 4, y1 + 4), (x0 - 5, y1 + 4)]
    for corner in corners[:-1]:
        click(qtbot, view, corner)
    assert len(cell) == 45  # still drawing
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton,
                      pos=view_point(view, *corners[-1]))
    assert len(cell) == 46, window.last_error


def test_add_by_double_clicking_the_missed_chromosome_and_undo(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    chosen = cell.chromosomes[isolated(generated, cell)]
    point = inside(chosen)
    truth = chosen.region.full_mask(generated.pixels.shape)
    use(window, MetaphaseTool.DELETE)
    click(qtbot, view, point)
    assert len(cell) == 45
    before = regions(cell)
    use(window, MetaphaseTool.ADD)
    double_click(qtbot, view, point)  # as a hand does it: press, release, double-click
    assert len(cell) == 46, window.last_error
    [new] = changed_since(cell, before)
    mask = new.region.full_mask(truth.shape)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8
    assert shown_count(window) == 46 and new.id in view.outline_items
    # a double-click on a chromosome already there adds nothing and says why
    double_click(qtbot, view, point)
    assert len(cell) == 46 and "here already" in window.last_error
    window.undo_group.undo()
    assert len(cell) == 45 and new.id not in view.outline_items


def test_separate_a_crossing_after_joining_the_pair(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    a, b = generated.crossings[0]
    first, second = cell.chromosomes[a], cell.chromosomes[b]
    shape = generated.pixels.shape
    mask_a, mask_b = first.region.full_mask(shape), second.region.full_mask(shape)
    start = regions(cell)
    use(window, MetaphaseTool.JOIN)
    x0, y0, x1, y1 = first.region.box
    click(qtbot, view, deep_point(first.region.mask, first.region.box,
                                  mask_b[y0:y1, x0:x1]))
    x0, y0, x1, y1 = second.region.box
    click(qtbot, view, deep_point(second.region.mask, second.region.box,
                                  mask_a[y0:y1, x0:x1]))
    assert len(cell) == 45, window.last_error
    [joined] = changed_since(cell, start)
    assert joined.region.area == (mask_a | mask_b).sum()

    use(window, MetaphaseTool.SEPARATE)
    line = generated.centre_lines[a]
    ends = line[-1] - line[0]
    ends = ends / np.hypot(*ends) * 4  # from a little beyond one end to beyond the other
    drag(qtbot, view, [tuple(line[0] - ends), *map(tuple, line[::2]), tuple(line[-1] + ends)])
    assert len(cell) == 46, window.last_error
    new = changed_since(cell, start)
    assert len(new) == 2
    one, other = (c.region.full_mask(shape) for c in new)
    assert (one & other).sum() > 0  # they share the pixels where they cross
    assert "separate" in [c.action for c in cell.audit]
    assert shown_count(window) == 46 and len(view.outline_items) == 46


def test_a_refused_edit_says_why_in_the_status_bar(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    chosen = cell.chromosomes[isolated(generated, cell)]
    use(window, MetaphaseTool.SPLIT)
    # a line that ends inside the chromosome does not cut it in two
    line = across(generated, isolated(generated, cell), reach=1.6)
    drag(qtbot, view, line[: len(line) // 2 + 1])
    assert len(cell) == 46
    assert chosen.id in ids(cell)
    assert window.last_error
    assert window.statusBar().currentMessage()


def test_a_signed_off_cell_refuses_metaphase_edits(window, qtbot, generated):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    window.sign_off(confirm=False)
    assert cell.status is CellStatus.SIGNED_OFF
    window.tool_actions[MetaphaseTool.DELETE].trigger()
    assert view.tool is MetaphaseTool.SELECT
    assert "signed off" in window.last_error
    assert window.edit_regions(MetaphaseTool.DELETE, [cell.chromosomes[0].id], []) is False
    assert len(cell) == 46


def test_edits_are_saved_and_load_back_with_the_same_regions(window, qtbot, generated,
                                                           tmp_path):
    cell = open_spread(window, generated)
    view = window.metaphase_view
    use(window, MetaphaseTool.SPLIT)
    drag(qtbot, view, across(generated, isolated(generated, cell)))
    assert len(cell) == 47, window.last_error
    assert window.save_to(tmp_path / "spread")
    loaded = load_case(window.case_path).cells[0]
    assert ids(loaded) == ids(cell)
    for saved, shown in zip(loaded.chromosomes, cell.chromosomes):
        assert saved.region.box == shown.region.box
        assert np.array_equal(saved.region.mask, shown.region.mask)
    assert loaded.metaphase is not None
    assert [c.action for c in loaded.audit] == [c.action for c in cell.audit]


# ---------------------------------------------------------------- the model's part
class StandIn:
    """A stand-in model: every chromosome it classifies is a 1, and the assignment keeps the
    model's types; it notes what it was asked."""

    description = model_id = "stand-in"
    device = device_name = "cpu"
    quick_started = False  # as a model that built its network: after the first cell the
    # model thread asks it to cache a quick copy

    def __init__(self):
        self.changed = []

    def save_quick_start(self):
        return None

    @staticmethod
    def _rows(count):
        rows = np.full((count, N_TYPES), 0.1 / (N_TYPES - 1), np.float32)
        rows[:, 0] = 0.9
        return rows

    def predict_cell(self, cell):
        pictured = [k for k, c in enumerate(cell.chromosomes) if c.image is not None]
        return SimpleNamespace(pictured=pictured, probabilities=self._rows(len(pictured)),
                               upside_down=None)

    def classify_changed(self, cell):
        fresh = [c for c in cell.chromosomes if c.probabilities is None]
        self.changed.append([c.id for c in fresh])
        for chromosome, row in zip(fresh, self._rows(len(fresh))):
            chromosome.probabilities = row

    def assign(self, cell, prediction):
        for index, row in zip(prediction.pictured, prediction.probabilities):
            chromosome = cell.chromosomes[index]
            chromosome.probabilities = row
            chromosome.predicted = chromosome.assigned = T(int(np.argmax(row)))
        return SimpleNamespace(seconds=0.0, turned=[], dropped=[], sex_from_case=False)

    def stain_warning(self, cell):
        return None


def test_only_the_changed_chromosomes_are_classified_after_an_edit(window, qtbot, generated):
    model = StandIn()
    window.service._worker.classifier = model  # as if the model thread had loaded it
    window.service._worker.loaded.emit(model, 0.0)
    qtbot.waitUntil(lambda: window.service.classifier is model)
    cell = open_spread(window, generated)
    qtbot.waitUntil(lambda: not window.service.is_pending(cell))
    assert all(c.probabilities is not None for c in cell.chromosomes)
    before = regions(cell)
    use(window, MetaphaseTool.SPLIT)
    drag(qtbot, window.metaphase_view, across(generated, isolated(generated, cell)))
    assert len(cell) == 47, window.last_error
    qtbot.waitUntil(lambda: not window.service.is_pending(cell) and bool(model.changed))
    pieces = sorted(c.id for c in changed_since(cell, before))
    assert len(pieces) == 2
    assert model.changed == [pieces]  # only the two pieces were looked at
    assert all(c.label is T.CHR1 for c in cell.chromosomes)
    assert window.metaphase_view.label_items[pieces[0]].text == "1"


class FakeFinder:
    """A stand-in finder: finds the generated spread's true chromosomes."""

    model_id = "fake-finder"

    def __init__(self, generated, nothing=False):
        self.generated, self.nothing = generated, nothing

    def find_cell(self, cell):
        truth = metaphase_cell(self.generated, with_truth=True)
        cell.chromosomes = [] if self.nothing else truth.chromosomes
        cell.finder_id = self.model_id
        if self.nothing:
            raise ValueError(f"{cell.name}: no chromosomes found in this image")


def test_a_metaphase_is_given_to_the_finder_before_it_is_classified(window, qtbot, generated):
    busy = []
    window.service.busy_changed.connect(busy.append)
    window.service._worker.finder_factory = lambda: FakeFinder(generated)
    cell = metaphase_cell(generated, name="unfound")
    assert cell.needs_finding
    window.set_case(Case("c", [cell]), None)
    assert window.metaphase_panel.isVisible() and not window.metaphase_view.outline_items
    window.classify_again()
    qtbot.waitUntil(lambda: len(cell) == 46)
    assert cell.finder_id == "fake-finder"
    qtbot.waitUntil(lambda: len(window.metaphase_view.outline_items) == 46)
    assert shown_count(window) == 46
    assert any(text.startswith("Finding chromosomes") for text in busy)
    assert window.count_label.text() == "46 chromosomes"


class CandidateFinder(FakeFinder):
    """Finds the true chromosomes and, faintly, a speck: a candidate for the assignment."""

    def find_cell(self, cell):
        super().find_cell(cell)
        first = cell.chromosomes[0]
        x0, y0 = first.region.box[:2]
        speck = Region((x0, y0, x0 + 6, y0 + 6), np.ones((6, 6), bool))
        cell.chromosomes.append(Chromosome(
            id="m999", image=first.image[:6, :6].copy(), region=speck, found_score=0.2,
            flags={Flag.CANDIDATE, Flag.FINDER_UNSURE},
        ))


class PlacingStandIn(StandIn):
    """The stand-in model with the real assignment's last step: it finds no place for a
    candidate, which then leaves the cell."""

    def assign(self, cell, prediction):
        super().assign(cell, prediction)
        for chromosome in cell.chromosomes:
            if Flag.CANDIDATE in chromosome.flags:
                chromosome.flags.add(Flag.SET_ASIDE)
        return SimpleNamespace(seconds=0.0, turned=[], dropped=drop_unplaced_candidates(cell),
                               sex_from_case=False)


def test_a_faint_candidate_without_a_place_leaves_both_views(window, qtbot, generated):
    model = PlacingStandIn()
    window.service._worker.classifier = model
    window.service._worker.loaded.emit(model, 0.0)
    qtbot.waitUntil(lambda: window.service.classifier is model)
    window.service._worker.finder_factory = lambda: CandidateFinder(generated)
    cell = metaphase_cell(generated, name="unfound")
    window.set_case(Case("c", [cell]), None)
    window.classify_again()
    qtbot.waitUntil(lambda: cell.finder_id == "fake-finder" and not window.service.is_pending(cell))
    assert len(cell) == 46 and "m999" not in ids(cell)
    qtbot.waitUntil(lambda: len(window.metaphase_view.outline_items) == 46)
    assert set(window.scene.chromosome_items) == set(ids(cell))
    assert "m999" not in window.metaphase_view.outline_items
    assert window.count_label.text() == "46 chromosomes"
    assert "Left out 1 faint object with no place" in window.statusBar().currentMessage()


def test_no_finder_or_nothing_found_is_said_and_the_image_stays(window, qtbot, generated):
    def broken():
        raise OSError("karyo-finder.safetensors is not installed")

    window.service._worker.finder_factory = broken
    cell = metaphase_cell(generated, name="unfound")
    window.set_case(Case("c", [cell]), None)
    window.classify_again()
    qtbot.waitUntil(lambda: "could not be loaded" in (window.last_error or ""))
    assert "not installed" in window.statusBar().currentMessage()
    assert window.metaphase_panel.isVisible() and window.metaphase_view._pixmap is not None
    assert cell.needs_finding and len(cell) == 0

    window.service._worker.finder_factory = lambda: FakeFinder(generated, nothing=True)
    window.classify_again()
    qtbot.waitUntil(lambda: "no chromosomes found" in (window.last_error or ""))
    assert "Add" in window.statusBar().currentMessage()
    assert not cell.needs_finding and len(cell) == 0
    assert window.metaphase_panel.isVisible()


def test_an_image_file_opens_as_a_metaphase_and_save_does_not_write_over_it(window, generated,
                                                                           tmp_path):
    image = tmp_path / "spread.png"
    image.write_bytes(generated.png_bytes())
    assert window.open_path(image), window.last_error
    cell = window.current_cell
    assert cell.metaphase is not None and cell.needs_finding
    assert window.metaphase_panel.isVisible()
    assert window.case_path is None  # Save asks where the case file goes
    assert image.read_bytes() == generated.png_bytes()


def test_a_folder_of_metaphase_images_dropped_onto_the_window_opens_one_cell_each(
    window, generated, tmp_path
):
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    folder = tmp_path / "slide"
    folder.mkdir()
    for name in ("spread 1.png", "spread 2.png"):
        (folder / name).write_bytes(generated.png_bytes())
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(folder))])
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, data,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    assert window.cell_list.count() == 2, window.last_error
    assert [c.name for c in window.case.cells] == ["spread 1", "spread 2"]
    assert window.metaphase_panel.isVisible()
    assert window.metaphase_view._pixmap is not None
