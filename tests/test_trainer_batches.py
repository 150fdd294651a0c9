"""Pairwise class-balanced batches, augmentation and the cell-level preprocessing."""

import numpy as np
import pytest
import torch

from karyo_gui.core.synthetic import generate_cell
from trainer.batches import Augmentation, PairwiseClassBalancedSampler, augment, normalise
from trainer.preprocessing import Preprocessing, prepare_cell

PREP = Preprocessing(height=96, width=48)


def crops(karyotype, seed):
    return [chromosome.image for chromosome in generate_cell(karyotype, seed=seed).chromosomes]


def test_both_batches_hold_every_type_in_the_same_order_with_different_crops():
    labels = np.repeat(np.arange(24), 5)
    sampler = PairwiseClassBalancedSampler(labels, crops_per_class=1, seed=0)
    for _ in range(20):
        first, second, y = sampler.draw()
        assert y.tolist() == list(range(24))
        assert labels[first].tolist() == y.tolist() == labels[second].tolist()
        assert (first != second).all()


def test_rare_types_are_drawn_again_but_the_two_views_still_differ():
    labels = np.concatenate([np.repeat(np.arange(23), 10), [23, 23]])  # only two Y crops
    sampler = PairwiseClassBalancedSampler(labels, crops_per_class=2, seed=1)
    for _ in range(20):
        first, second, y = sampler.draw()
        assert len(y) == 48 and (labels[first] == y).all() and (labels[second] == y).all()
        assert (first != second).all()


def test_types_missing_from_the_data_are_left_out_of_the_batches():
    labels = np.repeat([0, 4, 22], 3)
    *_, y = PairwiseClassBalancedSampler(labels, 2, seed=0).draw()
    assert y.tolist() == [0, 0, 4, 4, 22, 22]


def test_a_single_type_cannot_be_contrasted():
    with pytest.raises(ValueError, match="two types"):
        PairwiseClassBalancedSampler(np.zeros(10, np.int64))


def test_augmentation_off_is_plain_normalisation_and_flips_flip():
    canvases = torch.from_numpy(prepare_cell(crops("46,XY", 0), PREP)[:4])
    generator = torch.Generator().manual_seed(0)
    off = Augmentation(0, 0, 0, 0, 0, 0, 0)
    assert torch.allclose(
        augment(canvases, PREP, off, generator), normalise(canvases, PREP), atol=1e-5
    )
    upside_down = augment(canvases, PREP, Augmentation(0, 0, 1.0, 0, 0, 0, 0), generator)
    assert torch.allclose(upside_down, normalise(canvases, PREP).flip(2), atol=1e-5)


def _centre_column(image, row):
    weights = image[row].clamp(min=0)
    return float((weights * torch.arange(len(weights))).sum() / weights.sum())


def test_bend_bows_a_straight_chromosome_along_its_axis_and_costs_old_runs_nothing():
    bar = torch.zeros(16, PREP.height, PREP.width, dtype=torch.uint8)
    bar[:, 8:-8, PREP.width // 2 - 4 : PREP.width // 2 + 4] = 220  # a straight chromosome
    straight = Augmentation(0, 0, 0, 0, 0, 0, 0)
    bent = augment(bar, PREP, Augmentation(0, 0, 0, 0, 0, 0, 0, bend=0.3), torch.Generator())
    plain = normalise(bar, PREP)[:, 0] + PREP.mean / PREP.std  # background 0
    bent = bent[:, 0] + PREP.mean / PREP.std
    middle, top, bottom = PREP.height // 2, 12, PREP.height - 13
    bows = []
    for image, reference in zip(bent, plain):
        # the middle stays put; both ends move to the same side, by the same amount
        assert abs(_centre_column(image, middle) - _centre_column(reference, middle)) < 0.5
        up = _centre_column(image, top) - _centre_column(reference, top)
        down = _centre_column(image, bottom) - _centre_column(reference, bottom)
        assert abs(up - down) < 0.5
        bows.append(up)
    bows = np.asarray(bows)
    assert (bows > 1).any() and (bows < -1).any()  # bent both ways
    assert np.abs(bows).max() <= 0.3 * PREP.width + 0.5  # never more than asked
    # without bend nothing more is drawn: runs configured before bend existed stay the same
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    augment(bar, PREP, straight, a)
    augment(bar, PREP, Augmentation(0, 0, 0, 0, 0, 0, 0, bend=0.0), b)
    assert torch.equal(a.get_state(), b.get_state())


def test_augmented_batches_vary_but_keep_a_black_background():
    canvases = torch.from_numpy(prepare_cell(crops("46,XX", 1), PREP))
    generator = torch.Generator().manual_seed(0)
    a = augment(canvases, PREP, Augmentation(), generator)
    b = augment(canvases, PREP, Augmentation(), generator)
    assert a.shape == (len(canvases), 1, 96, 48) and torch.isfinite(a).all()
    assert not torch.allclose(a, b)
    background = -PREP.mean / PREP.std
    assert torch.allclose(a[:, :, 0, 0], torch.full_like(a[:, :, 0, 0], background), atol=1e-4)


def _object_height(canvas):
    rows = np.flatnonzero(canvas.max(axis=1) > 40)
    return rows[-1] - rows[0] + 1


def test_one_scale_per_cell_keeps_relative_length_and_forgets_the_pixel_scale():
    images = crops("46,XY", 3)
    canvases = prepare_cell(images, PREP)
    lengths = [max(image.shape) for image in images]
    longest, shortest = int(np.argmax(lengths)), int(np.argmin(lengths))
    assert _object_height(canvases[longest]) > 2.5 * _object_height(canvases[shortest])
    # the same cell photographed at twice the pixel scale reaches the model alike
    import cv2

    doubled = [cv2.resize(im, (im.shape[1] * 2, im.shape[0] * 2)) for im in images]
    heights = [_object_height(c) for c in canvases]
    heights_doubled = [_object_height(c) for c in prepare_cell(doubled, PREP)]
    assert np.allclose(heights, heights_doubled, atol=2)


def test_q_banded_crops_reach_the_model_like_g_banded_ones():
    images = crops("46,XX", 4)
    g_band = prepare_cell(images, PREP)
    q_band = prepare_cell([255 - image for image in images], PREP)
    assert np.abs(g_band.astype(int) - q_band.astype(int)).max() <= 1


def test_lying_and_oversized_crops_are_turned_and_shrunk_to_fit():
    lying = np.full((20, 200), 255, np.uint8)
    lying[5:15, 10:190] = 0
    canvas = prepare_cell([lying, np.full((30, 10), 128, np.uint8)], PREP)[0]
    assert _object_height(canvas) > canvas.shape[1]  # now standing
    assert canvas[0].max() == 0 or _object_height(canvas) <= PREP.height


def test_a_crop_cut_other_ways_is_drawn_as_those_cuts_as_often_as_asked():
    from trainer.batches import Pictures

    images = np.arange(5, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(2, 2)
    others = np.array([10, 11, 30], np.uint8)[:, None, None].repeat(4, 1).repeat(2, 2)
    of = np.array([3, 1, 1])  # crop 3 has one other cut, crop 1 two
    drawn = np.array([1] * 400 + [3] * 400 + [0, 2, 4] * 50)
    pictures = Pictures(images, others, of, 0.5, seed=0)(drawn)[:, 0, 0]
    first, third, rest = pictures[:400], pictures[400:800], pictures[800:]
    assert set(first.tolist()) == {1, 11, 30} and set(third.tolist()) == {3, 10}
    assert 0.4 < (first != 1).mean() < 0.6 and 0.4 < (third != 3).mean() < 0.6
    assert (rest == drawn[800:]).all()  # a crop cut one way is always itself
    never = Pictures(images, others, of, 0.0, seed=0)(drawn)[:, 0, 0]
    assert (never == drawn).all()
