"""ISCN karyotype strings from label counts and back.

The table holds every karyotype that occurs in the gband612 dataset (from its label
counts). Each row's counts are built from a description of the cell (two of every
autosome, then the listed changes), independently of the parser.
"""

from __future__ import annotations

from collections import Counter

import pytest

from karyo_gui.core.iscn import karyotype_string, parse_karyotype
from karyo_gui.core.labels import ChromosomeType

T = ChromosomeType


def cell_counts(
    sex: str = "",
    gains: tuple[int, ...] = (),
    losses: tuple[int, ...] = (),
    markers: int = 0,
) -> Counter[ChromosomeType]:
    """Counts of a cell: two of each autosome, ``sex`` written out, then gains and losses."""
    counts: Counter[ChromosomeType] = Counter()
    for number in range(1, 23):
        counts[T.autosome(number)] = 2
    for number in gains:
        counts[T.autosome(number)] += 1
    for number in losses:
        counts[T.autosome(number)] -= 1
    counts[T.X] = sex.count("X")
    counts[T.Y] = sex.count("Y")
    counts[T.UNCLASSIFIED] = markers
    return Counter({k: v for k, v in counts.items() if v > 0})


DATASET_KARYOTYPES = [
    ("46,XY", cell_counts("XY")),
    ("46,XX", cell_counts("XX")),
    ("47,XY,+18", cell_counts("XY", gains=(18,))),
    ("45,X", cell_counts("X")),
    ("47,XY,+21", cell_counts("XY", gains=(21,))),
    ("45,XX,-20", cell_counts("XX", losses=(20,))),
    ("47,XXY", cell_counts("XXY")),
    ("47,XX,+21", cell_counts("XX", gains=(21,))),
    ("47,XXX", cell_counts("XXX")),
    ("45,XY,-12", cell_counts("XY", losses=(12,))),
    ("45,XX,-19", cell_counts("XX", losses=(19,))),
    ("45,XY,-16", cell_counts("XY", losses=(16,))),
    ("45,XY,-15", cell_counts("XY", losses=(15,))),
    ("45,XX,-2", cell_counts("XX", losses=(2,))),
    ("45,XY,-19", cell_counts("XY", losses=(19,))),
    ("45,XY,-3", cell_counts("XY", losses=(3,))),
    ("45,XX,-7", cell_counts("XX", losses=(7,))),
    ("45,XY,-8", cell_counts("XY", losses=(8,))),
    ("46,XXYY,-15,-16", cell_counts("XXYY", losses=(15, 16))),
    (
        # a partial spread: 36 crops, no sex chromosomes, no 13, 20, 21 or 22
        "36,-13,-13,-20,-20,-21,-21,-22,-22",
        cell_counts("", losses=(13, 13, 20, 20, 21, 21, 22, 22)),
    ),
    ("45,XX,-11", cell_counts("XX", losses=(11,))),
    ("45,XY,-2", cell_counts("XY", losses=(2,))),
    ("45,XY,-21", cell_counts("XY", losses=(21,))),
    ("47,XYY", cell_counts("XYY")),
    ("46,XXY,-17,-18,+mar", cell_counts("XXY", losses=(17, 18), markers=1)),
    ("45,XX,-3", cell_counts("XX", losses=(3,))),
    ("45,XY,-22", cell_counts("XY", losses=(22,))),
]


@pytest.mark.parametrize(
    ("expected", "counts"), DATASET_KARYOTYPES, ids=[row[0] for row in DATASET_KARYOTYPES]
)
def test_dataset_karyotypes_written_and_read_back(expected, counts):
    assert karyotype_string(counts) == expected
    assert parse_karyotype(expected) == counts


def test_the_stated_count_is_the_number_of_chromosomes():
    for expected, counts in DATASET_KARYOTYPES:
        assert int(expected.split(",")[0]) == sum(counts.values())


def test_zero_counts_in_the_mapping_change_nothing():
    counts = cell_counts("XX")
    counts[T.Y] = 0
    counts[T.UNCLASSIFIED] = 0
    assert karyotype_string(counts) == "46,XX"


def test_order_is_sex_then_autosomes_ascending_then_markers_regardless_of_insertion():
    described = cell_counts("XXY", gains=(21, 8), losses=(5, 13), markers=1)
    # the same counts inserted in reverse order
    counts = Counter(dict(reversed(list(described.items()))))
    assert karyotype_string(counts) == "48,XXY,-5,+8,-13,+21,+mar"


def test_a_double_loss_is_written_twice_and_a_double_gain_too():
    counts = cell_counts("XY", gains=(8, 8), losses=(4, 4))
    assert karyotype_string(counts) == "46,XY,-4,-4,+8,+8"
    assert parse_karyotype("46,XY,-4,-4,+8,+8") == counts


def test_several_markers_are_written_with_their_number():
    counts = cell_counts("XX", markers=2)
    assert karyotype_string(counts) == "48,XX,+2mar"
    assert parse_karyotype("48,XX,+2mar") == counts
    # written out one by one they count the same
    assert parse_karyotype("48,XX,+mar,+mar") == counts


def test_parse_tolerates_spaces_around_fields():
    assert parse_karyotype(" 47, XY, +21 ") == cell_counts("XY", gains=(21,))


@pytest.mark.parametrize(
    "text",
    [
        "46,XY,t(9;22)(q34;q11)",
        "t(9;22)(q34;q11)",
        "46,XX,del(5)(q13)",
    ],
)
def test_structural_rearrangements_are_refused(text):
    with pytest.raises(ValueError):
        parse_karyotype(text)


@pytest.mark.parametrize("text", ["46,XY,+21", "46,XX,-7", "47,XY", "45,XX"])
def test_a_stated_count_that_differs_from_the_complement_is_refused(text):
    with pytest.raises(ValueError, match="states"):
        parse_karyotype(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "XY,46",
        "46;XY",
        "46,XY,+",
        "46,XY,banana",
        "46,XY,XX",
        "46,xy",
        "47,XY,+23",  # there is no chromosome 23 in ISCN
        "47,XY,+0",
        "45,X,-Y",  # removes a Y that is not there
    ],
)
def test_garbage_raises_value_error(text):
    with pytest.raises(ValueError):
        parse_karyotype(text)
