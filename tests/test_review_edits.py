"""The reviewer's edits without Qt: reversible, audited, refused on a signed-off cell."""

import numpy as np
import pytest

from karyo_gui.core.case import CellStatus, Flag, Orientation
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.layout import gallery_layout
from karyo_gui.core.review import (
    TypedType,
    confidence,
    mirror,
    needs_review,
    next_flagged,
    reassign,
    swap,
    turn,
)
from karyo_gui.core.synthetic import generate_cell


@pytest.fixture
def cell():
    return generate_cell("46,XY", seed=1)


def first(cell, chromosome_type):
    return next(c for c in cell.chromosomes if c.label is chromosome_type)


def test_a_reassign_is_undone_to_the_label_it_had_and_both_steps_are_audited(cell):
    chromosome = first(cell, T.CHR4)
    edit = reassign(cell, chromosome.id, T.CHR5, by="ann")
    edit.apply()
    assert chromosome.manual.label is T.CHR5 and chromosome.manual.by == "ann"
    assert cell.karyotype == "46,XY,-4,+5"
    edit.revert()
    assert chromosome.manual is None and chromosome.label is T.CHR4
    assert [(e.before, e.after, e.by) for e in cell.audit] == [
        ("4", "5", "ann"), ("5", "4 (undo)", "ann")
    ]


def test_undo_restores_an_earlier_manual_label_not_just_none(cell):
    chromosome = first(cell, T.CHR4)
    reassign(cell, chromosome.id, T.CHR5, by="ann").apply()
    earlier = chromosome.manual
    second = reassign(cell, chromosome.id, T.CHR6, by="bob")
    second.apply()
    second.revert()
    assert chromosome.manual == earlier


def test_swap_exchanges_types_and_keeps_the_karyotype(cell):
    a, b = first(cell, T.CHR1), first(cell, T.X)
    edit = swap(cell, a.id, b.id, by="ann")
    edit.apply()
    assert (a.label, b.label) == (T.X, T.CHR1)
    assert cell.karyotype == "46,XY"
    edit.revert()
    assert (a.label, b.label) == (T.CHR1, T.X)


def test_no_edit_when_nothing_would_change(cell):
    homologs = [c for c in cell.chromosomes if c.label is T.CHR3]
    assert swap(cell, homologs[0].id, homologs[1].id, by="ann") is None
    chromosome = homologs[0]
    confirm = reassign(cell, chromosome.id, T.CHR3, by="ann")  # confirming is an edit ...
    confirm.apply()
    assert chromosome.manual.label is T.CHR3
    assert reassign(cell, chromosome.id, T.CHR3, by="ann") is None  # ... once


def test_turn_and_mirror_are_reversible(cell):
    chromosome = first(cell, T.CHR2)
    turned = turn(cell, chromosome.id, by="ann")
    turned.apply()
    flipped = mirror(cell, chromosome.id, by="ann")
    flipped.apply()
    assert chromosome.orientation == Orientation(180, flipped=True)
    flipped.revert()
    turned.revert()
    assert chromosome.orientation == Orientation()
    assert [e.action for e in cell.audit] == ["orientation"] * 4


def test_a_signed_off_cell_refuses_edits(cell):
    chromosome = first(cell, T.CHR4)
    cell.set_status(CellStatus.SIGNED_OFF, by="ann")
    with pytest.raises(PermissionError, match="signed off"):
        reassign(cell, chromosome.id, T.CHR5, by="ann").apply()
    assert chromosome.manual is None


@pytest.mark.parametrize(
    ("keys", "expected", "pending"),
    [
        ("7", T.CHR7, ""), ("x", T.X, ""), ("Y", T.Y, ""), ("17", T.CHR17, ""),
        ("22", T.CHR22, ""), ("10", T.CHR10, ""), ("1", None, "1"), ("2", None, "2"),
        ("23", None, ""), ("0", None, ""), ("1x", T.X, ""),
    ],
)
def test_typed_keys_become_types(keys, expected, pending):
    typed = TypedType()
    result = None
    for key in keys:
        result = typed.feed(key)
    assert result is expected
    assert typed.pending == pending


def test_a_waiting_digit_is_taken_as_it_is_when_typing_stops():
    typed = TypedType()
    assert typed.feed("2") is None
    assert typed.finish() is T.CHR2
    assert typed.finish() is None


def test_next_flagged_wraps_round_in_reading_order():
    order = ["a", "b", "c", "d"]
    assert next_flagged(order, {"b", "d"}, None) == "b"
    assert next_flagged(order, {"b", "d"}, "b") == "d"
    assert next_flagged(order, {"b", "d"}, "d") == "b"
    assert next_flagged(order, {"b", "d"}, "c", step=-1) == "b"
    assert next_flagged(order, set(), "a") is None


def test_needs_review_and_confidence(cell):
    chromosome = first(cell, T.CHR8)
    assert confidence(chromosome) is None and not needs_review(chromosome)
    chromosome.probabilities = np.full(24, 0.01, np.float32)
    chromosome.probabilities[T.CHR8] = 0.77
    chromosome.flags.add(Flag.LOW_CONFIDENCE)
    assert confidence(chromosome) == pytest.approx(0.77)
    assert needs_review(chromosome)
    cell.set_manual_label(chromosome.id, T.CHR8, by="ann")
    assert not needs_review(chromosome)


def test_the_gallery_keeps_the_loading_order_and_one_scale(cell):
    layout = gallery_layout(cell.chromosomes, columns=10)
    rects = [layout.placements[c.id] for c in cell.chromosomes]
    assert layout.slots == {}
    first_line = rects[:10]
    assert [r.x for r in first_line] == sorted(r.x for r in first_line)
    assert len({round(r.bottom, 6) for r in first_line}) == 1  # standing on one line
    assert rects[10].y > max(r.bottom for r in first_line)  # the eleventh starts the next
    for chromosome, rect in zip(cell.chromosomes, rects):
        assert rect.height == pytest.approx(chromosome.size[1] * layout.scale)
    assert all(r.right <= layout.width for r in rects)
