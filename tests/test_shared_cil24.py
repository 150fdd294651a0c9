"""Integration tests on the real cil24 whole metaphases (../shared/data/cil24).

Skipped when the data set is not there. A few validation metaphases only, to stay fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from karyo_gui.core.annotations import annotated_cell, load_annotated_folder
from karyo_gui.core.metaphase import match_boxes, read_metaphase

pytestmark = pytest.mark.shared_data

CIL24 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cil24"


@pytest.fixture(scope="module")
def metaphases():
    if not (CIL24 / "annotations").is_dir():
        pytest.skip("../shared/data/cil24 is not here")
    names = (CIL24 / "splits" / "val.txt").read_text().split()[:3]
    found, problems = load_annotated_folder(CIL24, names)
    assert len(found) == 3, problems
    return found


def test_every_annotated_chromosome_loads_with_its_type(metaphases):
    for metaphase in metaphases:
        assert 40 <= len(metaphase.chromosomes) <= 50
        assert metaphase.image_path.is_file()
        image = read_metaphase(metaphase.image_path)
        assert (image.width, image.height) == (metaphase.width, metaphase.height)
        assert not image.inverted


def test_crops_are_cut_from_the_annotated_boxes(metaphases):
    cell = annotated_cell(metaphases[0])
    assert len(cell.chromosomes) >= len(metaphases[0].chromosomes) - 1
    for chromosome in cell.chromosomes:
        height, width = chromosome.image.shape
        assert height >= width  # stood upright
        assert (chromosome.image < 200).any()


def test_the_shipped_finder_finds_the_chromosomes_of_real_metaphases(metaphases):
    from karyo_gui.inference.finder import ChromosomeFinder

    finder = ChromosomeFinder(device="cpu")
    recalls = []
    for metaphase in metaphases:
        found = finder.find(read_metaphase(metaphase.image_path)).found
        truth = np.array([c.box for c in metaphase.chromosomes])
        matched = match_boxes(np.array([f.box for f in found]), truth)
        recalls.append(len(matched) / len(truth))
    assert np.mean(recalls) > 0.8
