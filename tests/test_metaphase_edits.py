"""Correcting the finder on a metaphase image: split, join, delete, add, separate a crossing,
each undoable and in the audit trail. Run on generated metaphases with their true regions."""

import cv2
import numpy as np
import pytest

from karyo_gui.core.case import CellStatus
from karyo_gui.core.metaphase import cut_crop
from karyo_gui.core.metaphase_edits import (
    EditError,
    add_chromosome,
    add_chromosome_at,
    chromosomes_at,
    delete_chromosomes,
    join_chromosomes,
    overlapping_pairs,
    separate_crossing,
    split_chromosome,
)
from karyo_gui.core.synthetic import generate_cell, generate_metaphase, metaphase_cell

BY = "reviewer"


@pytest.fixture(scope="module")
def generated():
    return generate_metaphase("46,XY", seed=21)


@pytest.fixture
def cell(generated):
    return metaphase_cell(generated, name="spread", with_truth=True)


def _full(region, shape):
    return region.full_mask(shape)


def _iou(first, second, shape):
    a, b = _full(first, shape), _full(second, shape)
    return (a & b).sum() / (a | b).sum()


def _longest_single(generated):
    """Index of the longest chromosome that crosses and touches nothing."""
    busy = {k for pair in generated.crossings + generated.touching for k in pair}
    free = [k for k in range(len(generated.chromosomes)) if k not in busy]
    return max(free, key=lambda k: generated.chromosomes[k][1].area)


def _line_across_middle(generated, index):
    """A line across the chromosome at half its length, reaching past both sides."""
    line = generated.centre_lines[index]
    steps = np.linalg.norm(np.diff(line, axis=0), axis=1)
    along = np.concatenate([[0], np.cumsum(steps)])
    k = int(np.searchsorted(along, along[-1] / 2))
    tangent = line[min(k + 1, len(line) - 1)] - line[max(k - 1, 0)]
    normal = np.array([-tangent[1], tangent[0]]) / np.linalg.norm(tangent)
    reach = 1.5 * generated.style.chromatid_width
    middle = line[k]
    return [tuple(middle - reach * normal), tuple(middle + reach * normal)]


def _outline_around(region, shape, grow=3):
    full = cv2.dilate(_full(region, shape).astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8))
    contours, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [tuple(map(float, p)) for p in max(contours, key=cv2.contourArea).reshape(-1, 2)]


def test_split_across_the_middle_gives_two_chromosomes_covering_the_original(cell, generated):
    shape = generated.pixels.shape
    index = _longest_single(generated)
    original = cell.chromosomes[index]
    edit = split_chromosome(cell, original.id, _line_across_middle(generated, index), by=BY)
    assert cell.chromosomes[index] is original, "building an edit changes nothing"
    edit.apply()
    assert len(cell) == 47 and original not in cell.chromosomes
    first, second = cell.chromosomes[index:index + 2]
    assert [first.id, second.id] == ["m047", "m048"] == edit.changed
    assert edit.text == f"Split {original.id} into m047 and m048"
    a, b = _full(first.region, shape), _full(second.region, shape)
    assert not (a & b).any()
    assert np.array_equal(a | b, _full(original.region, shape)), "no pixel lost or gained"
    assert min(a.sum(), b.sum()) > 0.3 * original.region.area, "cut near the middle"
    for piece in (first, second):
        assert piece.probabilities is None and piece.label.display_name == "?"
        assert piece.flags == set() and piece.found_score is None and piece.source_path is None
        assert np.array_equal(piece.image, cut_crop(generated.pixels, piece.region))
        assert piece.region.tight().box == piece.region.box


def test_join_puts_split_pieces_back_together(cell, generated):
    shape = generated.pixels.shape
    index = _longest_single(generated)
    original = cell.chromosomes[index]
    split = split_chromosome(cell, original.id, _line_across_middle(generated, index), by=BY)
    split.apply()
    join = join_chromosomes(cell, split.changed, by=BY)
    join.apply()
    assert len(cell) == 46
    joined = cell.chromosomes[index]
    assert joined.id == "m049" and join.changed == ["m049"]
    assert join.text == "Join m047 and m048 into m049"
    assert np.array_equal(_full(joined.region, shape), _full(original.region, shape))


def test_delete_takes_debris_out(cell):
    victim = cell.chromosomes[5]
    edit = delete_chromosomes(cell, [victim.id], by=BY)
    edit.apply()
    assert len(cell) == 45 and victim not in cell.chromosomes and edit.changed == []
    entry = cell.audit[-1]
    assert (entry.action, entry.chromosome_id, entry.before, entry.after, entry.by) == (
        "delete", victim.id, victim.id, "", BY)
    edit.revert()
    assert cell.chromosomes[5] is victim


def test_add_by_drawing_around_a_missed_chromosome(cell, generated):
    shape = generated.pixels.shape
    index = _longest_single(generated)
    true_region = generated.chromosomes[index][1]
    delete_chromosomes(cell, [cell.chromosomes[index].id], by=BY).apply()
    edit = add_chromosome(cell, _outline_around(true_region, shape), by=BY)
    edit.apply()
    added = cell.chromosomes[-1]
    assert added.id == "m047" and edit.changed == ["m047"] and len(cell) == 46
    assert _iou(added.region, true_region, shape) > 0.7
    assert added.probabilities is None


def _empty_corner(generated, height=40, width=80):
    """Top-left corner of a stretch of empty field (nothing within 20 px)."""
    shape = generated.pixels.shape
    anything = np.zeros(shape, dtype=bool)
    for region in [r for _, r in generated.chromosomes] + generated.nuclei + generated.debris:
        anything |= _full(region, shape)
    near = cv2.dilate(anything.astype(np.uint8), np.ones((41, 41), np.uint8))
    for y in range(0, shape[0] - height, 10):
        for x in range(0, shape[1] - width, 10):
            if not near[y:y + height, x:x + width].any():
                return x, y
    raise AssertionError("no empty field in the generated metaphase")


def test_add_finds_a_faint_chromosome_inside_the_outline_only(cell, generated):
    x, y = _empty_corner(generated)
    pixels = cell.metaphase.pixels
    pixels[y + 16:y + 24, x + 20:x + 60] = np.minimum(pixels[y + 16:y + 24, x + 20:x + 60], 212)
    outline = [(x + 14.0, y + 10.0), (x + 66.0, y + 10.0), (x + 66.0, y + 30.0),
               (x + 14.0, y + 30.0)]
    region = add_chromosome(cell, outline, by=BY).added[0].region
    x0, y0, x1, y1 = region.box
    assert x + 14 <= x0 <= x + 21 and x + 59 <= x1 <= x + 67
    assert y + 10 <= y0 <= y + 17 and y + 23 <= y1 <= y + 31
    assert region.area > 0.8 * 40 * 8


def _deepest(region):
    """The image point deepest inside a region (a double-click on the chromosome)."""
    distance = cv2.distanceTransform(np.pad(region.mask, 1).astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(distance[1:-1, 1:-1])), region.mask.shape)
    return float(region.box[0] + x), float(region.box[1] + y)


def test_add_by_double_click_on_a_missed_chromosome(cell, generated):
    shape = generated.pixels.shape
    index = _longest_single(generated)
    true_region = generated.chromosomes[index][1]
    delete_chromosomes(cell, [cell.chromosomes[index].id], by=BY).apply()
    edit = add_chromosome_at(cell, _deepest(true_region), by=BY)
    edit.apply()
    assert len(cell) == 46 and edit.changed == [cell.chromosomes[-1].id]
    assert _iou(cell.chromosomes[-1].region, true_region, shape) > 0.7
    assert cell.audit[-1].action == "add"
    edit.revert()
    assert len(cell) == 45


def test_add_by_double_click_leaves_the_touching_neighbour_its_pixels(cell, generated):
    shape = generated.pixels.shape
    missed, neighbour = generated.touching[0]
    true_region = generated.chromosomes[missed][1]
    delete_chromosomes(cell, [cell.chromosomes[missed].id], by=BY).apply()
    added = add_chromosome_at(cell, _deepest(true_region), by=BY).added[0]
    assert _iou(added.region, true_region, shape) > 0.6
    neighbours = _full(generated.chromosomes[neighbour][1], shape)
    assert (_full(added.region, shape) & neighbours).sum() == 0


def test_add_by_double_click_takes_back_what_a_greedy_neighbour_outlined(cell, generated):
    """A found chromosome whose outline took in the end of the missed one it touches gives
    those pixels back: the missed one comes out whole, the neighbour as it truly is."""
    from karyo_gui.core.metaphase import Region

    shape = generated.pixels.shape
    missed, neighbour = generated.touching[0]
    missed_true = _full(generated.chromosomes[missed][1], shape)
    neighbour_true = _full(generated.chromosomes[neighbour][1], shape)
    for reach in range(3, 60, 2):  # the missed one's end, outlined with its neighbour
        near = cv2.dilate(neighbour_true.astype(np.uint8), np.ones((reach, reach), np.uint8))
        taken = missed_true & near.astype(bool)
        if taken.sum() >= 0.2 * missed_true.sum():
            break
    assert 0.2 * missed_true.sum() <= taken.sum() < 0.5 * missed_true.sum()
    greedy = cell.chromosomes[neighbour]
    greedy.region = Region.from_mask(neighbour_true | taken)
    delete_chromosomes(cell, [cell.chromosomes[missed].id], by=BY).apply()
    edit = add_chromosome_at(cell, _deepest(Region.from_mask(missed_true & ~taken)), by=BY)
    assert [c.id for c in edit.removed] == [greedy.id]
    given_back, added = edit.added
    assert _iou(added.region, generated.chromosomes[missed][1], shape) > 0.8
    assert _iou(given_back.region, generated.chromosomes[neighbour][1], shape) > 0.9
    edit.apply()
    assert len(cell) == 46 and greedy not in cell.chromosomes
    assert f"pixels from {greedy.id}" in edit.text
    edit.revert()
    assert greedy in cell.chromosomes and len(cell) == 45


def test_add_by_double_click_refuses_what_is_no_missed_chromosome(cell, generated):
    found = cell.chromosomes[_longest_single(generated)]
    with pytest.raises(EditError, match=f"{found.id} is here already"):
        add_chromosome_at(cell, _deepest(found.region), by=BY)
    x, y = _empty_corner(generated)
    with pytest.raises(EditError, match="nothing dark here"):
        add_chromosome_at(cell, (x + 40.0, y + 20.0), by=BY)
    cell.metaphase.pixels[y + 18:y + 24, x + 38:x + 44] = 40  # a speck of dust
    with pytest.raises(EditError, match="a speck, too small"):
        add_chromosome_at(cell, (x + 41.0, y + 21.0), by=BY)
    with pytest.raises(EditError, match="too large for one chromosome"):
        add_chromosome_at(cell, _deepest(generated.nuclei[0]), by=BY)
    with pytest.raises(EditError, match="outside the metaphase"):
        add_chromosome_at(cell, (-5.0, 10.0), by=BY)
    assert len(cell) == 46


def test_separate_a_crossing_into_its_two_chromosomes(cell, generated):
    shape = generated.pixels.shape
    a, b = generated.crossings[0]
    ids = [cell.chromosomes[a].id, cell.chromosomes[b].id]
    assert tuple(ids) in overlapping_pairs(cell)
    join = join_chromosomes(cell, ids, by=BY)
    join.apply()
    crossing = join.added[0]
    assert overlapping_pairs(cell) == [p for p in overlapping_pairs(cell) if crossing.id not in p]
    for traced_index, other_index in ((a, b), (b, a)):
        path = [tuple(p) for p in generated.centre_lines[traced_index]]
        edit = separate_crossing(cell, crossing.id, path, by=BY)
        traced, other = edit.added
        assert _iou(traced.region, generated.chromosomes[traced_index][1], shape) > 0.6
        assert _iou(other.region, generated.chromosomes[other_index][1], shape) > 0.6
        shared = _full(traced.region, shape) & _full(other.region, shape)
        assert shared.sum() > 20, "both keep the pixels where they cross"
        assert edit.text == f"Separate {crossing.id} into {traced.id} and {other.id}"
    edit.apply()
    assert (traced.id, other.id) in overlapping_pairs(cell)
    x, y = np.argwhere(shared)[0][::-1]
    assert sorted(chromosomes_at(cell, x + 0.5, y + 0.5)) == sorted([traced.id, other.id])


def test_undo_and_redo_restore_the_exact_chromosomes(cell, generated):
    index = _longest_single(generated)
    before = list(cell.chromosomes)
    edit = split_chromosome(cell, cell.chromosomes[index].id,
                            _line_across_middle(generated, index), by=BY)
    edit.apply()
    after = list(cell.chromosomes)
    for _ in range(2):
        edit.revert()
        assert len(cell.chromosomes) == len(before)
        assert all(x is y for x, y in zip(cell.chromosomes, before))
        edit.apply()
        assert all(x is y for x, y in zip(cell.chromosomes, after))
    edit.revert()
    actions = [(e.action, e.after) for e in cell.audit]
    assert actions[-2:] == [("split", "m047, m048"), ("split", f"{before[index].id} (undo)")]
    assert all(e.by == BY and e.chromosome_id == f"{before[index].id}, m047, m048"
               for e in cell.audit)
    # an id once handed out is not handed out again, even after its edit was undone
    other = split_chromosome(cell, cell.chromosomes[index].id,
                             _line_across_middle(generated, index), by=BY)
    assert other.changed == ["m049", "m050"]


def test_edits_are_refused_with_a_reason(cell, generated):
    index = _longest_single(generated)
    target = cell.chromosomes[index]
    x0, y0 = target.region.box[:2]
    far = [(x0 - 200.0, y0 - 200.0), (x0 - 150.0, y0 - 150.0)]
    with pytest.raises(EditError, match="misses"):
        split_chromosome(cell, target.id, far, by=BY)
    middle = generated.centre_lines[index][len(generated.centre_lines[index]) // 2]
    with pytest.raises(EditError, match="does not cut"):  # stops inside the chromosome
        split_chromosome(cell, target.id, [tuple(middle), tuple(middle + 1.0)], by=BY)
    with pytest.raises(EditError, match="at least 2 points"):
        split_chromosome(cell, target.id, [(1.0, 1.0)], by=BY)
    with pytest.raises(EditError, match="itself"):
        join_chromosomes(cell, [target.id, target.id], by=BY)
    with pytest.raises(EditError, match="at least two"):
        join_chromosomes(cell, [target.id], by=BY)
    with pytest.raises(EditError, match="no chromosome m999"):
        delete_chromosomes(cell, ["m999"], by=BY)
    with pytest.raises(EditError, match="at least 3 points"):
        add_chromosome(cell, [(1.0, 1.0), (5.0, 5.0)], by=BY)
    with pytest.raises(EditError, match="no area"):
        add_chromosome(cell, [(1.0, 1.0), (5.0, 5.0), (9.0, 9.0)], by=BY)
    with pytest.raises(EditError, match="outside"):
        add_chromosome(cell, [(-50.0, -50.0), (-10.0, -50.0), (-10.0, -10.0)], by=BY)
    x, y = _empty_corner(generated)
    background = [(x + 2.0, y + 2.0), (x + 30.0, y + 2.0), (x + 30.0, y + 30.0),
                  (x + 2.0, y + 30.0)]
    with pytest.raises(EditError, match="no dark pixels"):
        add_chromosome(cell, background, by=BY)
    with pytest.raises(EditError, match="misses"):
        separate_crossing(cell, target.id, far, by=BY)
    with pytest.raises(EditError, match="second chromosome"):  # a single one: nothing beside
        separate_crossing(cell, target.id, [tuple(p) for p in generated.centre_lines[index]],
                          by=BY)
    assert len(cell) == 46 and cell.audit == [], "a refused edit changes nothing"


def test_a_cell_of_crops_has_no_metaphase_to_edit():
    crops = generate_cell("46,XY", seed=1)
    with pytest.raises(EditError, match="no metaphase image"):
        delete_chromosomes(crops, [crops.chromosomes[0].id], by=BY)


def test_signed_off_cell_is_not_edited(cell, generated):
    edit = delete_chromosomes(cell, [cell.chromosomes[0].id], by=BY)
    cell.set_status(CellStatus.SIGNED_OFF, by=BY)
    with pytest.raises(EditError, match="signed off"):
        delete_chromosomes(cell, [cell.chromosomes[1].id], by=BY)
    with pytest.raises(PermissionError):
        edit.apply()
    assert len(cell) == 46
    cell.set_status(CellStatus.REVIEWED, by=BY)
    edit.apply()
    cell.set_status(CellStatus.SIGNED_OFF, by=BY)
    with pytest.raises(PermissionError):
        edit.revert()
    assert len(cell) == 45
