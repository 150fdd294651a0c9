"""A sex chromosome call decides a diagnosis: doubtful X/Y calls are flagged until a person
confirms them, and a cell whose sex rests on such a call says so."""

import numpy as np

from karyo_gui.core.assignment import SEX_CONFIDENT, apply_assignment, assign_types, sex_uncertain
from karyo_gui.core.case import Flag
from karyo_gui.core.labels import N_TYPES, ChromosomeType
from karyo_gui.core.review import reassign
from karyo_gui.core.synthetic import generate_cell

T = ChromosomeType


def classified(karyotype: str, changes: dict[int, dict[int, float]] | None = None):
    """A generated cell classified by a confident model, some crops' probabilities changed."""
    cell = generate_cell(karyotype, seed=11)
    probabilities = np.full((len(cell), N_TYPES), 0.002 / (N_TYPES - 1))
    for row, chromosome in enumerate(cell.chromosomes):
        probabilities[row, chromosome.given.value] = 0.998
    for row, weights in (changes or {}).items():
        probabilities[row] = 1e-4
        for t, weight in weights.items():
            probabilities[row, t] = weight
        probabilities[row] /= probabilities[row].sum()
    assignment = assign_types(probabilities)
    apply_assignment(cell, list(range(len(cell))), probabilities, assignment)
    return cell, assignment


def row_of(cell, chromosome_type):
    return next(k for k, c in enumerate(cell.chromosomes) if c.given is chromosome_type)


def test_a_confident_cell_has_no_sex_doubt():
    cell, assignment = classified("46,XY")
    assert assignment.karyotype == "46,XY"
    assert not sex_uncertain(cell)
    assert not any(Flag.SEX_UNCERTAIN in c.flags for c in cell.chromosomes)


def test_a_y_called_at_p_071_is_flagged_although_it_leads_its_runner_up_clearly():
    cell = generate_cell("46,XY", seed=11)
    y = row_of(cell, T.Y)
    # 0.71 against 0.2: a margin the low-confidence flag lets through
    cell, assignment = classified("46,XY", {y: {T.Y.value: 0.71, T.CHR21.value: 0.2,
                                                T.CHR22.value: 0.09}})
    assert assignment.types[y] == T.Y.value and SEX_CONFIDENT > 0.71
    assert Flag.LOW_CONFIDENCE not in cell.chromosomes[y].flags
    assert Flag.SEX_UNCERTAIN in cell.chromosomes[y].flags
    assert sex_uncertain(cell)


def test_a_crop_that_looked_like_a_y_but_was_assigned_otherwise_is_flagged():
    cell = generate_cell("46,XX", seed=11)
    row = row_of(cell, T.CHR21)  # one 21 that the model calls Y, in an XX cell
    cell, assignment = classified("46,XX", {row: {T.Y.value: 0.6, T.CHR21.value: 0.4}})
    assert assignment.predicted[row] == T.Y.value
    if assignment.types[row] != T.Y.value:
        assert Flag.SEX_UNCERTAIN in cell.chromosomes[row].flags
    assert sex_uncertain(cell)


def test_when_the_other_sex_is_nearly_as_probable_every_sex_call_is_flagged():
    cell = generate_cell("46,XY", seed=11)
    y = row_of(cell, T.Y)
    # the Y crop could as well be a lost... a second X: XY and XX nearly tie
    cell, assignment = classified("46,XY", {y: {T.Y.value: 0.52, T.X.value: 0.48}})
    assert assignment.sex_in_doubt
    sex_rows = [k for k, t in enumerate(assignment.types) if t in (T.X.value, T.Y.value)]
    assert sex_rows and all(Flag.SEX_UNCERTAIN in cell.chromosomes[k].flags for k in sex_rows)


def test_a_reviewers_label_confirms_the_call_and_clears_the_doubt():
    cell = generate_cell("46,XY", seed=11)
    y = row_of(cell, T.Y)
    changes = {y: {T.Y.value: 0.71, T.CHR21.value: 0.29}}
    cell, _ = classified("46,XY", changes)
    assert sex_uncertain(cell)
    edit = reassign(cell, cell.chromosomes[y].id, T.Y, by="dr.a")  # "Confirm ... as Y"
    assert edit is not None and edit.text.startswith("Confirm")
    edit.apply()
    assert not sex_uncertain(cell)  # a reviewer's label settles it at once
    probabilities = np.stack([c.probabilities for c in cell.chromosomes])
    fixed = {y: T.Y.value}
    apply_assignment(cell, list(range(len(cell))), probabilities,
                     assign_types(probabilities, fixed=fixed))
    assert not sex_uncertain(cell)
    assert Flag.SEX_UNCERTAIN not in cell.chromosomes[y].flags


def test_the_status_bar_says_sex_uncertain_until_the_call_is_confirmed(window):
    window.open_example("46,XY")
    cell = window.current_cell
    y = row_of(cell, T.Y)
    probabilities = np.full((len(cell), N_TYPES), 0.002 / (N_TYPES - 1))
    for row, chromosome in enumerate(cell.chromosomes):
        probabilities[row, chromosome.given.value] = 0.998
    probabilities[y] = 1e-4
    probabilities[y, [T.Y.value, T.CHR21.value]] = [0.71, 0.29]
    probabilities[y] /= probabilities[y].sum()
    apply_assignment(cell, list(range(len(cell))), probabilities, assign_types(probabilities))
    window._update_status()
    assert cell.is_classified
    assert "sex uncertain" in window.sex_label.text()
    reassign(cell, cell.chromosomes[y].id, T.Y, by="dr.a").apply()
    window._update_status()
    assert window.sex_label.text() == "sex XY"
