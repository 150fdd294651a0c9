"""The domain model: which label a chromosome shows, orientation, the audit trail."""

from datetime import timezone

import numpy as np
import pytest

from karyo_gui.core.case import Cell, CellStatus, Chromosome, Orientation
from karyo_gui.core.labels import ChromosomeType as T


def crop() -> np.ndarray:
    image = np.full((30, 10), 255, np.uint8)
    image[:10, :4] = 0  # a dark corner to tell orientations apart
    return image


def test_the_strongest_label_is_shown():
    chromosome = Chromosome("a", crop())
    assert chromosome.label is T.UNCLASSIFIED
    chromosome.given = T.CHR4
    assert chromosome.label is T.CHR4
    chromosome.predicted = T.CHR5
    assert chromosome.label is T.CHR5
    chromosome.assigned = T.CHR4
    assert chromosome.label is T.CHR4
    cell = Cell("c", [chromosome])
    cell.set_manual_label("a", T.X, by="ana")
    assert chromosome.label is T.X and chromosome.manual.by == "ana"


def test_a_correction_is_recorded_with_who_when_from_and_to():
    cell = Cell("c", [Chromosome("a", crop(), predicted=T.CHR21)])
    cell.set_manual_label("a", T.CHR22, by="ana")
    entry = cell.audit[-1]
    assert (entry.chromosome_id, entry.before, entry.after, entry.by) == ("a", "21", "22", "ana")
    assert entry.at.tzinfo is timezone.utc
    cell.set_orientation("a", Orientation(180), by="ana")
    assert cell.audit[-1].action == "orientation" and cell.audit[-1].after == "rot180"


def test_unknown_chromosome_names_itself():
    with pytest.raises(KeyError, match="nope"):
        Cell("c", []).set_manual_label("nope", T.CHR1)


def test_orientation_turns_and_mirrors_the_displayed_crop():
    image = crop()
    turned = Orientation().rotated(180)
    assert turned.rotation == 180
    np.testing.assert_array_equal(turned.apply(image), image[::-1, ::-1])
    assert turned.rotated(180) == Orientation()
    mirrored = Orientation().mirrored()
    np.testing.assert_array_equal(mirrored.apply(image), image[:, ::-1])
    assert mirrored.mirrored() == Orientation()
    quarter = Chromosome("a", image, orientation=Orientation(90))
    assert quarter.size == (30, 10) and quarter.displayed_image().shape == (10, 30)
    with pytest.raises(ValueError, match="multiple of 90"):
        Orientation(45)


def test_an_unlabelled_cell_is_not_classified_until_something_labels_it():
    cell = Cell("c", [Chromosome("a", crop()), Chromosome("b", crop())])
    assert not cell.is_classified
    cell.chromosomes[1].predicted = T.CHR1
    assert cell.is_classified


def test_sign_off_is_recorded_and_locks_the_cell():
    cell = Cell("c", [Chromosome("a", crop(), given=T.CHR1)])
    cell.set_status(CellStatus.SIGNED_OFF, by="ana")
    assert cell.audit[-1].action == "status" and cell.audit[-1].after == "signed_off"
    with pytest.raises(PermissionError):
        cell.set_manual_label("a", T.CHR2)
    cell.set_status(CellStatus.REVIEWED, by="ana")  # reopened for edit
    cell.set_manual_label("a", T.CHR2)
    assert cell.chromosomes[0].label is T.CHR2


def test_open_questions_name_the_cells_with_a_role_and_sum_up_the_rest():
    from karyo_gui.core.case import Case, CellRole, Flag
    from karyo_gui.core.review import open_questions, open_questions_text

    cells = []
    for k in range(8):
        chromosomes = [Chromosome(id=f"c{j}", image=None) for j in range(3)]
        chromosomes[0].flags.add(Flag.OVERLAP if k % 2 else Flag.LOW_CONFIDENCE)
        chromosomes[1].flags.add(Flag.MOVED_BY_ASSIGNMENT)  # information, not a question
        cell = Cell(name=f"cell {k}", chromosomes=chromosomes)
        if k < 7:
            cell.roles.add(CellRole.COUNTED)
        cells.append(cell)
    questions = open_questions(Case("C", cells))
    assert [q.cell for q in questions] == [f"cell {k}" for k in range(7)]
    assert [(q.to_check, q.count_in_doubt) for q in questions[:2]] == [(1, 0), (1, 1)]
    lines = open_questions_text(questions, limit=5)
    assert lines[0] == "cell 0: 1 chromosome(s) to check"
    assert "may change the count" in lines[1]
    assert lines[5] == "and 2 more cell(s) with 2 chromosome(s) to check"
    cells[1].set_manual_label("c0", T.CHR1, by="test")  # set by hand: settled
    assert "cell 1" not in [q.cell for q in open_questions(Case("C", cells))]
