"""The whole-metaphase generator: the finder's training data and the truth its tests use."""

import time
from collections import Counter

import cv2
import numpy as np
import pytest

from karyo_gui.core.annotations import load_annotated_folder
from karyo_gui.core.iscn import parse_karyotype
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.metaphase import (
    cut_crop,
    decode_metaphase,
    estimate_chromosome_width,
    foreground_mask,
)
from karyo_gui.core.synthetic import (
    generate_metaphase,
    metaphase_cell,
    write_annotated_metaphases,
)


@pytest.fixture(scope="module")
def spread():
    return generate_metaphase("46,XY", seed=11)


def _full(region, shape):
    return region.full_mask(shape)


def _background(generated):
    """Pixels well away from every object."""
    shape = generated.pixels.shape
    anything = np.zeros(shape, dtype=bool)
    for region in [r for _, r in generated.chromosomes] + generated.nuclei + generated.debris:
        anything |= _full(region, shape)
    near = cv2.dilate(anything.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    return generated.pixels[~near]


def test_same_seed_same_metaphase_other_seed_other():
    first, again, other = (generate_metaphase("46,XX", seed=s) for s in (4, 4, 5))
    assert np.array_equal(first.pixels, again.pixels)
    assert [(t, r.box) for t, r in first.chromosomes] == [(t, r.box) for t, r in again.chromosomes]
    assert all(np.array_equal(a.mask, b.mask)
               for (_, a), (_, b) in zip(first.chromosomes, again.chromosomes))
    assert first.pixels.shape != other.pixels.shape or not np.array_equal(first.pixels,
                                                                          other.pixels)


@pytest.mark.parametrize("karyotype", ["46,XY", "47,XY,+21", "45,X"])
def test_one_true_region_per_chromosome_of_the_karyotype(karyotype):
    generated = generate_metaphase(karyotype, seed=2)
    assert Counter(generated.types()) == parse_karyotype(karyotype)
    assert generated.karyotype == karyotype
    assert generated.boxes().shape == (sum(parse_karyotype(karyotype).values()), 4)


def test_trisomy_21_has_three_21s():
    generated = generate_metaphase("47,XY,+21", seed=8)
    assert len(generated.chromosomes) == 47
    assert generated.types().count(T.CHR21) == 3


def test_image_is_a_light_field_with_a_spread_of_the_default_size(spread):
    pixels = spread.pixels
    assert pixels.dtype == np.uint8 and pixels.ndim == 2
    assert min(pixels.shape) >= 500 and max(pixels.shape) <= 1300
    background = _background(spread)
    assert 215 < np.median(background) < 252
    height, width = pixels.shape
    for _, region in spread.chromosomes:  # every chromosome lies wholly inside the image
        x0, y0, x1, y1 = region.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert region.mask.shape == (y1 - y0, x1 - x0) and region.area > 30


def test_true_masks_lie_on_dark_pixels(spread):
    shape = spread.pixels.shape
    light = np.percentile(_background(spread), 2)
    for _, region in spread.chromosomes:
        inside = spread.pixels[_full(region, shape)]
        assert np.median(inside) < light - 40, "a chromosome is clearly darker than the field"
        assert np.mean(inside < light) > 0.95, "its mask holds no background"
    # and what a threshold finds dark is, by and large, the true chromosome pixels
    width = estimate_chromosome_width(spread.pixels)
    dark = foreground_mask(spread.pixels, width)
    for _, region in spread.chromosomes:
        assert dark[_full(region, shape)].mean() > 0.6


def test_crossing_pairs_share_pixels_and_are_darker_where_they_cross(spread):
    shape = spread.pixels.shape
    assert len(spread.crossings) == 2
    crossing = {index for pair in spread.crossings for index in pair}
    for a, b in spread.crossings:
        first, second = (_full(spread.chromosomes[k][1], shape) for k in (a, b))
        shared = first & second
        assert shared.sum() > 20, "they overlap"
        assert shared.sum() < 0.5 * min(first.sum(), second.sum()), "near their middles only"
        alone = spread.pixels[first & ~second].mean(), spread.pixels[second & ~first].mean()
        assert spread.pixels[shared].mean() < min(alone) - 15, "light passes through both"
    masks = [_full(r, shape) for _, r in spread.chromosomes]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            if (i, j) not in spread.crossings:
                assert not (masks[i] & masks[j]).any(), f"{i} and {j} overlap but do not cross"
    assert crossing  # the crossing ones are listed by index


def test_touching_pairs_are_adjacent_without_sharing_pixels(spread):
    shape = spread.pixels.shape
    assert len(spread.touching) >= 3  # 15 % of 46
    for a, b in spread.touching:
        first, second = (_full(spread.chromosomes[k][1], shape) for k in (a, b))
        assert not (first & second).any()
        near = cv2.dilate(first.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert (near & second).any(), "at most 2 px of background between them"


def test_nuclei_and_debris_are_dark_and_no_chromosome(spread):
    shape = spread.pixels.shape
    assert len(spread.nuclei) == 1 and len(spread.debris) == 6
    chromosomes = np.zeros(shape, dtype=bool)
    for _, region in spread.chromosomes:
        chromosomes |= _full(region, shape)
    light = np.percentile(_background(spread), 2)
    width = spread.style.chromatid_width
    for nucleus in spread.nuclei:
        x0, y0, x1, y1 = nucleus.box
        assert max(x1 - x0, y1 - y0) > 4 * width, "a nucleus is several chromosome widths across"
    for region in spread.nuclei + spread.debris:
        mask = _full(region, shape)
        assert not (mask & chromosomes).any()
        assert np.median(spread.pixels[mask]) < light - 20
    assert all(region.area < 400 for region in spread.debris)


def test_generator_is_fast_enough_for_training_data():
    generate_metaphase("46,XY", seed=0)  # imports and caches warmed
    start = time.perf_counter()
    generate_metaphase("46,XX", seed=1)
    assert time.perf_counter() - start < 1.0


def test_an_image_too_small_for_the_spread_is_refused():
    with pytest.raises(ValueError, match="too small"):
        generate_metaphase("46,XY", seed=0, size=200)


def test_image_reads_back_like_a_file(spread):
    image = spread.image()
    again = decode_metaphase(spread.png_bytes())
    assert np.array_equal(image.pixels, again.pixels) and not again.inverted
    assert image.path is None and image.content_hash.startswith("sha256:")
    assert image.content_hash == spread.image().content_hash


def test_metaphase_cell_without_truth_needs_finding(spread):
    cell = metaphase_cell(spread)
    assert cell.needs_finding and cell.metaphase is not None and not cell.chromosomes


def test_metaphase_cell_with_truth_holds_the_true_chromosomes(spread):
    cell = metaphase_cell(spread, name="truth", with_truth=True)
    assert not cell.needs_finding and cell.finder_id == "truth"
    assert [c.id for c in cell.chromosomes] == [f"m{k:03d}" for k in range(1, 47)]
    assert [c.given for c in cell.chromosomes] == spread.types()
    assert cell.karyotype == "46,XY"
    for chromosome, (_, region) in zip(cell.chromosomes, spread.chromosomes):
        assert chromosome.region.box == region.box
        assert np.array_equal(chromosome.region.mask, region.mask)
        assert chromosome.found_score == 1.0 and chromosome.probabilities is None
        assert np.array_equal(chromosome.image, cut_crop(spread.pixels, region))
        assert chromosome.image.min() < 150 and chromosome.image[0, 0] == 255


def test_annotated_folder_round_trip(tmp_path):
    root = write_annotated_metaphases(tmp_path / "set", 5, seed=3,
                                      karyotypes=["46,XY", "47,XX,+18"])
    metaphases, problems = load_annotated_folder(root)
    assert problems == [] and len(metaphases) == 5
    for index, metaphase in enumerate(metaphases):
        karyotype = ["46,XY", "47,XX,+18"][index % 2]
        generated = generate_metaphase(karyotype, seed=3 * 1_000_003 + index)
        assert metaphase.problems == []
        assert metaphase.image_path.exists()
        assert (metaphase.height, metaphase.width) == generated.pixels.shape
        assert [c.type for c in metaphase.chromosomes] == generated.types()
        assert np.array_equal([c.box for c in metaphase.chromosomes], generated.boxes())
    splits = {s: (root / "splits" / f"{s}.txt").read_text().split() for s in
              ("train", "val", "test")}
    assert all(splits.values()), "at least one metaphase in each split"
    listed = sorted(name for names in splits.values() for name in names)
    assert listed == sorted(m.name for m in metaphases), "each metaphase in exactly one split"
    validation, _ = load_annotated_folder(root, root / "splits" / "val.txt")
    assert [m.name for m in validation] == sorted(splits["val"])


def test_annotated_folder_refuses_a_bad_karyotype_before_writing(tmp_path):
    with pytest.raises(ValueError, match="banana"):
        write_annotated_metaphases(tmp_path / "set", 3, karyotypes=["banana"])
    assert not (tmp_path / "set").exists()
