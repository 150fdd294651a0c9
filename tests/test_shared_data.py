"""Integration tests on the real gband612 dataset (../shared/data/gband612).

Skipped when the dataset is not there. Only the test split is loaded, to stay fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from karyo_gui.core.iscn import karyotype_string
from karyo_gui.core.loaders import Dataset, load_cell, load_dataset, read_cell_list

pytestmark = pytest.mark.shared_data

GBAND612 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gband612"

# every karyotype of the dataset, from the label counts of its cells
KNOWN_KARYOTYPES = {
    "46,XY", "46,XX", "47,XY,+18", "45,X", "47,XY,+21", "45,XX,-20", "47,XXY", "47,XX,+21",
    "47,XXX", "45,XY,-12", "45,XX,-19", "45,XY,-16", "45,XY,-15", "45,XX,-2", "45,XY,-19",
    "45,XY,-3", "45,XX,-7", "45,XY,-8", "46,XXYY,-15,-16", "36,-13,-13,-20,-20,-21,-21,-22,-22",
    "45,XX,-11", "45,XY,-2", "45,XY,-21", "47,XYY", "46,XXY,-17,-18,+mar", "45,XX,-3",
    "45,XY,-22",
}


@pytest.fixture(scope="module")
def root() -> Path:
    if not GBAND612.is_dir():
        pytest.skip(f"shared dataset not found at {GBAND612}")
    return GBAND612


@pytest.fixture(scope="module")
def test_split(root) -> Dataset:
    return load_dataset(root, root / "splits" / "test.txt", workers=8)


def test_the_test_split_loads_completely(root, test_split):
    names = read_cell_list(root / "splits" / "test.txt")
    assert len(test_split.cells) == len(names) == 110
    assert test_split.problems == []
    assert [cell.name for cell in test_split.cells] == names
    assert all(cell.problems == [] for cell in test_split.cells)


def test_cell_folders_end_in_tiff(test_split):
    for cell in test_split.cells:
        assert cell.name.endswith(".tiff")
        assert Path(cell.source).is_dir()


def test_every_karyotype_is_a_known_one_and_most_are_normal(test_split):
    karyotypes = [karyotype_string(cell.given_counts()) for cell in test_split.cells]
    assert set(karyotypes) <= KNOWN_KARYOTYPES
    normal = sum(k in ("46,XX", "46,XY") for k in karyotypes)
    assert normal > 0.8 * len(karyotypes)


def test_every_crop_is_labelled_and_greyscale(test_split):
    for cell in test_split.cells:
        for chromosome in cell.chromosomes:
            assert chromosome.given is not None
            assert chromosome.image.ndim == 2 and chromosome.image.dtype.name == "uint8"
            assert chromosome.content_hash.startswith("sha256:")


def test_one_labelled_cell_loads_on_its_own(root):
    name = read_cell_list(root / "splits" / "test.txt")[0]
    cell = load_cell(root / "cells" / name)
    assert cell.name == name
    assert 44 <= len(cell) <= 47
    assert all(chromosome.given is not None for chromosome in cell.chromosomes)
    assert cell.problems == []
    # the labels come from the class folders the crops sit in
    for chromosome in cell.chromosomes:
        assert Path(chromosome.source_path).parent.name.startswith("clase")
