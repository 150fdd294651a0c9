"""Straightening bent chromosomes: the length and bands come out as the chromosome has them,
straight chromosomes are left alone, and maps go back to the crop's own pixels."""

import dataclasses

import cv2
import numpy as np
import pytest

from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.straightening import (
    back_to_crop,
    centre_lines,
    straighten,
    straighten_all,
)
from karyo_gui.core.synthetic import ImagingStyle, generate_cell, generate_crop
from trainer.preprocessing import Preprocessing, cell_scale, placed_crop, prepare_cell

PREP = Preprocessing()
STRAIGHTENING = dataclasses.replace(PREP, straighten_bend=0.5)


def straight_chromosome(kind: int = 1, seed: int = 3) -> np.ndarray:
    """A straight generated chromosome, bright on black as the model sees it."""
    style = ImagingStyle(bend=0.0, noise_sigma=1.5)
    return 255 - generate_crop(ChromosomeType(kind), np.random.default_rng(seed), style)


def bow(picture: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The chromosome laid along a circular arc of ``angle`` radians, its length kept, and
    for each pixel of the result how far along the chromosome it lies (0 top, 1 bottom)."""
    length, width = picture.shape
    radius = length / angle
    sagitta = radius * (1 - np.cos(angle / 2))
    rows, cols = int(2 * radius * np.sin(angle / 2) + width + 10), int(sagitta + width + 10)
    centre_x, centre_y = cols - 5 - width / 2 + radius - sagitta, rows / 2  # right of the arc
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    turn = np.arctan2(centre_y - y, centre_x - x)
    along = ((angle / 2 - turn) * radius).astype(np.float32)
    across = (width / 2 + radius - np.hypot(x - centre_x, y - centre_y)).astype(np.float32)
    bent = cv2.remap(picture, across, along, cv2.INTER_LINEAR, borderValue=0)
    rows_in, cols_in = np.flatnonzero(bent.max(axis=1) > 20), np.flatnonzero(bent.max(axis=0) > 20)
    keep = np.s_[rows_in[0] : rows_in[-1] + 1, cols_in[0] : cols_in[-1] + 1]  # a tight crop
    return np.ascontiguousarray(bent[keep]), along[keep] / length


def band_profile(picture: np.ndarray, length: int) -> np.ndarray:
    """Mean brightness across the chromosome, top to bottom, at ``length`` points."""
    return cv2.resize(picture.astype(np.float32), (picture.shape[1], length)).mean(axis=1)


@pytest.mark.parametrize("angle", [1.2, 2.0, 2.8], ids=["bowed", "bent", "folded to a U"])
def test_a_bent_chromosome_comes_out_straight_with_its_length_and_bands(angle):
    chromosome = straight_chromosome()
    bent, _ = bow(chromosome, angle)
    assert bent.shape[0] < chromosome.shape[0]  # its crop is shorter than it is

    result = straighten(bent, min_bend=0.5)

    assert result is not None and result.bend > 0.5
    assert result.image.shape[0] == pytest.approx(chromosome.shape[0], rel=0.08)
    assert result.image.shape[1] < 1.4 * chromosome.shape[1]
    length = chromosome.shape[0]
    same_way = np.corrcoef(band_profile(chromosome, length), band_profile(result.image, length))
    assert same_way[0, 1] > 0.9  # the bands in their order, the top end still on top


def test_straight_chromosomes_and_blank_crops_are_left_alone():
    for kind in (1, 7, 16, 21):
        assert straighten(straight_chromosome(kind), min_bend=0.5) is None
    blank, speck = np.zeros((40, 20), np.uint8), np.zeros((40, 20), np.uint8)
    speck[18:21, 8:11] = 200
    huge = cv2.resize(bow(straight_chromosome(), 2.0)[0], None, fx=30, fy=30)  # 10 Mpixels
    assert centre_lines([blank, speck, huge]) == [None, None, None]
    assert straighten(blank, 0.5) is None and straighten(speck, 0.5) is None


def test_a_cell_is_straightened_as_its_chromosomes_are_one_by_one():
    pictures = [straight_chromosome(kind, seed=kind) for kind in (1, 2, 9, 4)]
    pictures[1] = bow(pictures[1], 2.0)[0]
    pictures[3] = bow(pictures[3], 2.4)[0]
    together = straighten_all(pictures, 0.5)
    for picture, result in zip(pictures, together, strict=True):
        alone = straighten(picture, 0.5)
        assert (result is None) == (alone is None)
        if result is not None:
            np.testing.assert_array_equal(result.image, alone.image)
    assert [result is not None for result in together] == [False, True, False, True]


def test_a_map_over_the_straight_chromosome_goes_back_where_its_pixels_came_from():
    bent, along = bow(straight_chromosome(), 2.0)
    result = straighten(bent, 0.5)
    rows, cols = result.image.shape
    top_to_bottom = np.repeat(np.linspace(0, 1, rows)[:, None], cols, axis=1)
    back = back_to_crop(top_to_bottom, result, bent.shape)
    assert back.shape == bent.shape and back.dtype == np.float32
    chromosome = bent > 40
    assert np.corrcoef(back[chromosome], along[chromosome])[0, 1] > 0.98


def test_straightening_is_part_of_the_models_input_when_the_model_asks_for_it():
    cell = generate_cell("46,XY", seed=11)
    images = [chromosome.image for chromosome in cell.chromosomes]
    bent_at = int(np.argmax([image.shape[0] for image in images]))
    scale = cell_scale(images, PREP)
    straight_length = placed_crop(images[bent_at], scale, STRAIGHTENING)[1].height
    images[bent_at] = 255 - bow(255 - images[bent_at], 2.6)[0]  # as stored: dark on light
    assert cell_scale(images, PREP) == scale
    plain, straightened = prepare_cell(images, PREP), prepare_cell(images, STRAIGHTENING)

    canvas, where = placed_crop(images[bent_at], scale, STRAIGHTENING)
    np.testing.assert_array_equal(canvas, straightened[bent_at])
    assert where.straightened is not None
    assert placed_crop(images[bent_at], scale, PREP)[1].height < 0.9 * straight_length
    assert where.height == pytest.approx(straight_length, rel=0.08)
    others = [k for k in range(len(images)) if k != bent_at]
    np.testing.assert_array_equal(plain[others], straightened[others])

    # the canvas, mapped back, is the crop: a Grad-CAM map lands on the chromosome's pixels
    back = where.to_crop(canvas / 255.0)
    assert back.shape == images[bent_at].shape
    expected = (255 - images[bent_at].astype(np.float32)) / 255
    assert np.corrcoef(back.ravel(), expected.ravel())[0, 1] > 0.85
