"""The generator of synthetic cells: the data every other test stands on, and the demo."""

import numpy as np
import pytest

from karyo_gui.core.ideogram import ideogram
from karyo_gui.core.iscn import parse_karyotype
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.synthetic import EXAMPLE_KARYOTYPES, ImagingStyle, generate_cell, generate_crop


@pytest.mark.parametrize("karyotype", [*EXAMPLE_KARYOTYPES, "47,XY,+13", "46,XXY,-17,-18,+mar"])
def test_cell_has_the_requested_karyotype(karyotype):
    cell = generate_cell(karyotype, seed=5)
    assert cell.given_counts() == parse_karyotype(karyotype)
    assert cell.karyotype == karyotype
    assert len({c.id for c in cell.chromosomes}) == len(cell)


def test_same_seed_same_cell_other_seed_other_cell():
    first, again, other = (generate_cell("46,XX", seed=s) for s in (1, 1, 2))
    pairs = zip(first.chromosomes, again.chromosomes)
    assert all(np.array_equal(a.image, b.image) for a, b in pairs)
    assert [c.given for c in first.chromosomes] == [c.given for c in again.chromosomes]
    assert not all(
        a.image.shape == b.image.shape and np.array_equal(a.image, b.image)
        for a, b in zip(first.chromosomes, other.chromosomes)
    )


def test_crops_look_like_g_banded_crops():
    cell = generate_cell("46,XY", seed=3)
    for chromosome in cell.chromosomes:
        image = chromosome.image
        assert image.dtype == np.uint8 and image.ndim == 2
        corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.min() >= 235, "background is white"
        assert image.min() < 140, "the chromosome is darker than the background"
        if chromosome.given.group in "ABC":
            assert image.shape[0] > 1.5 * image.shape[1], "long chromosomes stand upright"


def test_relative_lengths_follow_the_ideogram():
    cell = generate_cell("46,XY", seed=4)
    height = {t: np.mean([c.image.shape[0] for c in cell.chromosomes if c.given is t])
              for t in T.types()}
    assert 3.0 < height[T.CHR1] / height[T.CHR21] < 6.0
    assert height[T.CHR1] > height[T.CHR7] > height[T.CHR13] > height[T.CHR19]
    assert height[T.X] > height[T.Y]


def test_band_pattern_is_fixed_per_type_and_differs_between_types():
    assert ideogram(T.CHR4) == ideogram(T.CHR4)
    positions = np.linspace(0, 1, 200)
    assert not np.array_equal(
        ideogram(T.CHR4).darkness_profile(positions), ideogram(T.CHR5).darkness_profile(positions)
    )
    for chromosome_type in T.types():
        shape = ideogram(chromosome_type)
        assert shape.bands[0].darkness == 0 and shape.bands[-1].darkness == 0, "telomeres light"
        assert 0.1 < shape.centromere_index < 0.5
    assert ideogram(T.CHR13).centromere_index < 0.25 < ideogram(T.CHR1).centromere_index


def _band_profile(image: np.ndarray, samples: int = 64) -> np.ndarray:
    profile = image.astype(float).min(axis=1)
    return np.interp(np.linspace(0, 1, samples), np.linspace(0, 1, len(profile)), profile)


def test_homologs_resemble_each_other_more_than_other_types():
    """What makes the generated cells learnable: the bands identify the type."""
    rng = np.random.default_rng(0)
    style = ImagingStyle(bend=0.0)
    profiles = {t: [_band_profile(generate_crop(t, rng, style)) for _ in range(2)]
                for t in T.types()}
    same = [np.corrcoef(*pair)[0, 1] for pair in profiles.values()]
    different = [np.corrcoef(profiles[a][0], profiles[b][1])[0, 1]
                 for a in T.types() for b in T.types() if a != b]
    assert np.mean(same) > np.mean(different) + 0.3


def test_unknown_karyotype_is_refused_with_its_text():
    with pytest.raises(ValueError, match="banana"):
        generate_cell("banana")
