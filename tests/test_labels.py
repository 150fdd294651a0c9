"""Chromosome type names as labs and datasets write them, display names and Denver groups."""

from __future__ import annotations

import pytest

from karyo_gui.core.labels import N_TYPES, ChromosomeType

T = ChromosomeType


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clase5", T.CHR5),
        ("5", T.CHR5),
        ("chr5", T.CHR5),
        ("Chr5", T.CHR5),
        ("CHR5", T.CHR5),
        (" chr5 ", T.CHR5),
        ("chromosome5", T.CHR5),
        ("class5", T.CHR5),
        ("clase1", T.CHR1),
        ("clase10", T.CHR10),
        ("22", T.CHR22),
        ("X", T.X),
        ("x", T.X),
        ("chrX", T.X),
        ("Y", T.Y),
        ("chrY", T.Y),
        ("clase23", T.X),
        ("clase24", T.Y),
        ("23", T.X),
        ("24", T.Y),
        ("clase25", T.UNCLASSIFIED),
        ("other", T.UNCLASSIFIED),
        ("Other", T.UNCLASSIFIED),
        ("unclassified", T.UNCLASSIFIED),
        ("mar", T.UNCLASSIFIED),
        ("?", T.UNCLASSIFIED),
    ],
)
def test_from_name_reads_the_naming_conventions(name, expected):
    assert ChromosomeType.from_name(name) is expected


@pytest.mark.parametrize(
    "name", ["foo", "clase26", "0", "clase0", "23x", "", "chr", "100", "Z", "chr5q"]
)
def test_from_name_rejects_anything_else_with_value_error_naming_it(name):
    with pytest.raises(ValueError) as info:
        ChromosomeType.from_name(name)
    assert repr(name) in str(info.value)


def test_autosome_numbers_map_to_their_class_index():
    for number in range(1, 23):
        chromosome_type = ChromosomeType.autosome(number)
        assert chromosome_type.display_name == str(number)
        assert chromosome_type.is_autosome
        assert not chromosome_type.is_sex_chromosome
        assert ChromosomeType.from_name(f"chr{number}") is chromosome_type
    for bad in (0, 23, -1):
        with pytest.raises(ValueError):
            ChromosomeType.autosome(bad)


def test_display_names():
    assert T.CHR1.display_name == "1"
    assert T.CHR21.display_name == "21"
    assert T.X.display_name == "X"
    assert T.Y.display_name == "Y"
    assert T.UNCLASSIFIED.display_name == "?"


def test_every_display_name_reads_back_as_the_same_type():
    # the case file stores labels by display name: this round trip is what keeps them
    for chromosome_type in ChromosomeType:
        assert ChromosomeType.from_name(chromosome_type.display_name) is chromosome_type


def test_sex_chromosomes_and_unclassified_are_not_autosomes():
    assert T.X.is_sex_chromosome and T.Y.is_sex_chromosome
    assert not T.X.is_autosome and not T.Y.is_autosome
    assert not T.UNCLASSIFIED.is_autosome and not T.UNCLASSIFIED.is_sex_chromosome


def test_types_are_the_24_classifier_classes_in_karyogram_order():
    types = ChromosomeType.types()
    assert len(types) == N_TYPES == 24
    assert [t.display_name for t in types] == [str(n) for n in range(1, 23)] + ["X", "Y"]
    assert T.UNCLASSIFIED not in types
    # the integer value is the classifier's output index
    assert all(ChromosomeType(index) is t for index, t in enumerate(types))


_GROUPS = {
    "A": [1, 2, 3],
    "B": [4, 5],
    "C": [6, 7, 8, 9, 10, 11, 12, "X"],
    "D": [13, 14, 15],
    "E": [16, 17, 18],
    "F": [19, 20],
    "G": [21, 22, "Y"],
}


@pytest.mark.parametrize(
    ("name", "letter"),
    [(str(member), letter) for letter, members in _GROUPS.items() for member in members],
)
def test_denver_group_letters(name, letter):
    assert ChromosomeType.from_name(name).group == letter


def test_groups_cover_every_type_once_and_unclassified_has_none():
    listed = [str(member) for members in _GROUPS.values() for member in members]
    assert sorted(listed) == sorted(t.display_name for t in ChromosomeType.types())
    assert T.UNCLASSIFIED.group == ""
