"""The generator draws structural abnormalities by cutting and joining band patterns, and
whole cases of many cells: what the case-karyotype rules are tested on."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from karyo_gui.core.case_karyotype import compose_case
from karyo_gui.core.ideogram import ideogram
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.synthetic import (
    ImagingStyle,
    Rearrangement,
    derivative_shapes,
    generate_case,
    generate_cell,
    generate_rearranged_crops,
    generate_structural_cell,
)

STEADY = ImagingStyle(bend=0.0)


def test_a_deletion_is_shorter_by_what_it_lost_and_keeps_the_bands_around_it():
    (shape,) = derivative_shapes(Rearrangement("del", ("5",), (0.45, 0.7)))
    assert shape.relative_length == pytest.approx(ideogram(T.CHR5).relative_length * 0.75)
    positions, darkness, centromere = shape.profile(1000)
    normal = ideogram(T.CHR5)
    before = positions < 0.45 / 0.75 - 0.01  # the part above the deletion, as it was
    np.testing.assert_array_equal(darkness[before],
                                  normal.darkness_profile(positions[before] * 0.75))
    after = positions > 0.45 / 0.75 + 0.01  # below it: the bands from 0.7 on
    np.testing.assert_array_equal(
        darkness[after], normal.darkness_profile(0.7 + (positions[after] - 0.6) * 0.75))
    assert centromere == pytest.approx(normal.centromere_index / 0.75)
    rng = np.random.default_rng(0)
    deleted = generate_rearranged_crops(Rearrangement("del", ("5",), (0.45, 0.7)), rng,
                                        STEADY)[0]
    whole = generate_cell("46,XX", seed=0, style=STEADY)
    fives = [c.image.shape[0] for c in whole.chromosomes if c.given is T.CHR5]
    assert deleted.shape[0] == pytest.approx(np.mean(fives) * 0.75, rel=0.12)


def test_a_translocation_keeps_the_total_length_and_swaps_the_distal_bands():
    der9, der22 = derivative_shapes(Rearrangement("t", ("9", "22"), (0.9, 0.5)))
    nine, twenty_two = ideogram(T.CHR9), ideogram(T.CHR22)
    assert der9.relative_length + der22.relative_length == pytest.approx(
        nine.relative_length + twenty_two.relative_length)
    assert der9.centromere_of is T.CHR9 and der22.centromere_of is T.CHR22
    positions, darkness, _ = der9.profile(2000)
    tail = positions > 0.999 * (nine.relative_length * 0.9) / der9.relative_length + 0.01
    share = (positions[tail] * der9.relative_length - nine.relative_length * 0.9)
    np.testing.assert_array_equal(darkness[tail], twenty_two.darkness_profile(
        0.5 + share / twenty_two.relative_length))


def test_a_robertsonian_cell_has_45_chromosomes_and_one_fused():
    cell, (fused,) = generate_structural_cell("46,XX", Rearrangement("rob", ("13", "14")),
                                              seed=3)
    assert len(cell) == 45
    counts = cell.given_counts()
    assert counts[T.CHR13] == 2 and counts[T.CHR14] == 1  # the fused one is given 13
    assert cell.chromosome(fused).given is T.CHR13


@pytest.mark.parametrize(("rearrangement", "message"), [
    (Rearrangement("rob", ("1", "14")), "acrocentric"),
    (Rearrangement("del", ("5",), (0.2, 0.5)), "centromere"),
    (Rearrangement("t", ("9", "22"), (0.2, 0.5)), "on q arms or both on p arms"),
])
def test_impossible_rearrangements_are_refused(rearrangement, message):
    with pytest.raises(ValueError, match=message):
        derivative_shapes(rearrangement)


def test_normal_cells_are_drawn_exactly_as_before():
    """The structural generator must not change what existing calls give (models were
    trained on them): the crops of a fixed seed hash as they did."""
    cell = generate_cell("46,XY", seed=3)
    digest = hashlib.sha256(b"".join(c.image.tobytes() for c in cell.chromosomes)).hexdigest()
    assert digest == EXPECTED_46XY_SEED3


def test_a_generated_case_composes_to_its_karyotype_once_the_derivatives_are_marked():
    translocation = Rearrangement("t", ("9", "22"), (0.9, 0.5))
    case, abnormal = generate_case([(("46,XY", translocation), 4), ("46,XY", 1)], seed=5)
    assert len(case.cells) == 5 and len({c.name for c in case.cells}) == 5
    for cell in case.cells:
        if abnormal[cell.name]:
            cell.mark_abnormality("t(9;22)(q34.1;q11.2)", abnormal[cell.name], by="test")
    assert compose_case(case).karyotype == "mos 46,XY,t(9;22)(q34.1;q11.2)[4]/46,XY[1]"
    again, _ = generate_case([(("46,XY", translocation), 4), ("46,XY", 1)], seed=5)
    assert [c.name for c in again.cells] == [c.name for c in case.cells]
    assert all(np.array_equal(a.image, b.image) for x, y in zip(case.cells, again.cells)
               for a, b in zip(x.chromosomes, y.chromosomes))


# generate_cell("46,XY", seed=3) before the structural generator was added
EXPECTED_46XY_SEED3 = "4e8e92fab0d4aaf57dc511e1a96ec9afc41dd40f81739b419ca16c76f7cf6e08"


@pytest.mark.parametrize(("base", "rearrangement", "iscn", "expected"), [
    ("46,XX", Rearrangement("rob", ("13", "14")), "der(13;14)(q10;q10)",
     "45,XX,der(13;14)(q10;q10)"),
    ("46,XX", Rearrangement("del", ("5",), (0.45, 0.7)), "del(5)(q13q33)",
     "46,XX,del(5)(q13q33)"),
    ("47,XY,+21", Rearrangement("t", ("11", "22"), (0.85, 0.55)), "t(11;22)(q23;q11.2)",
     "47,XY,t(11;22)(q23;q11.2),+21"),
])
def test_generated_structural_cases_compose_by_the_iscn_rules(base, rearrangement, iscn,
                                                              expected):
    case, abnormal = generate_case([((base, rearrangement), 3)], seed=7)
    for cell in case.cells:
        cell.mark_abnormality(iscn, abnormal[cell.name], by="test")
        assert cell.karyotype == expected
    assert compose_case(case).karyotype == expected
    case.cells[0].abnormalities.clear()  # a cell left unmarked is a line of its own
    composition = compose_case(case)
    first = composition.clones[0]
    assert (first.karyotype.text, len(first.cells)) == (f"{expected}[2]", 2)
    assert composition.clones[1].cells == (case.cells[0].name,)
    if rearrangement.kind == "rob":  # the unmarked fused cell: a 14 missing, not clonal
        assert [f.abnormality for f in composition.single_cell_findings] == ["-14"]
