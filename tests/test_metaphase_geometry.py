"""Chromosomes as regions of a metaphase image: masks from boxes, crops, matching, width."""

import cv2
import numpy as np
import pytest

from karyo_gui.core.metaphase import (
    Region,
    box_iou,
    cut_crop,
    estimate_chromosome_width,
    foreground_mask,
    long_axis_angle,
    match_boxes,
    other_cuts,
    regions_for_boxes,
)


def _canvas(height=240, width=320):
    return np.full((height, width), 235, np.uint8)


def _bar(image, start, end, width=12, grey=70):
    cv2.line(image, start, end, int(grey), int(width))
    mask = np.zeros(image.shape, np.uint8)
    cv2.line(mask, start, end, 1, int(width))
    return mask.astype(bool)


def _box(mask, margin=2):
    ys, xs = np.nonzero(mask)
    return (xs.min() - margin, ys.min() - margin, xs.max() + 1 + margin, ys.max() + 1 + margin)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_width_is_measured_on_the_chromosomes_not_the_image_size():
    for width in (8, 14, 20):
        image = _canvas(400, 500)
        for k in range(6):
            _bar(image, (40 + 70 * k, 60), (60 + 70 * k, 300), width)
        assert estimate_chromosome_width(image) == pytest.approx(width, rel=0.3)


def test_touching_chromosomes_each_keep_their_own_pixels():
    image = _canvas()
    first = _bar(image, (60, 40), (60, 200))  # vertical
    second = _bar(image, (67, 120), (250, 120))  # horizontal, touching the first's side
    foreground = foreground_mask(image, 12)
    regions = regions_for_boxes(foreground, [_box(first), _box(second)], 12)
    assert all(region is not None for region in regions)
    shape = image.shape
    assert _iou(regions[0].full_mask(shape), first) > 0.8
    assert _iou(regions[1].full_mask(shape), second) > 0.8


def test_crossing_chromosomes_share_the_pixels_where_they_cross():
    image = _canvas()
    first = _bar(image, (30, 60), (230, 170))  # lying
    second = _bar(image, (150, 20), (120, 225))  # standing, across the first
    foreground = foreground_mask(image, 12)
    regions = regions_for_boxes(foreground, [_box(first), _box(second)], 12)
    shape = image.shape
    masks = [region.full_mask(shape) for region in regions]
    crossing = first & second
    # both reach beyond the crossing on both sides, and the crossing belongs to both
    assert (masks[0] & masks[1] & crossing).sum() > 0.5 * crossing.sum()
    assert _iou(masks[0], first) > 0.6 and _iou(masks[1], second) > 0.6


def test_a_chromosome_lying_alone_has_no_other_cut_and_a_crossing_one_has():
    image = _canvas(240, 480)
    first = _bar(image, (30, 60), (230, 170))  # lying
    second = _bar(image, (150, 20), (120, 225))  # standing, across the first
    alone = _bar(image, (400, 30), (410, 200))  # far from both
    foreground = foreground_mask(image, 12)
    boxes = [_box(first), _box(second), _box(alone)]
    regions = regions_for_boxes(foreground, boxes, 12)
    cuts = other_cuts(foreground, boxes, regions, 12)
    assert cuts[2] == []  # one way to cut it: nothing to read twice
    shape = image.shape
    for own, region, others in zip((first, second), regions, cuts[:2]):
        assert others, "a crossing chromosome is cut other ways too"
        masks = [cut.full_mask(shape) for cut in others]
        assert all(not np.array_equal(m, region.full_mask(shape)) for m in masks)
        # each other cut is still mostly this chromosome, and one holds all of its box
        assert all((m & own).sum() > 0.6 * own.sum() for m in masks)
        assert any((m & own).sum() >= 0.95 * (own & foreground).sum() for m in masks)
    assert other_cuts(foreground, boxes[:1], [None], 12) == [[]]


def test_a_box_with_nothing_dark_in_it_gives_no_region():
    image = _canvas()
    bar = _bar(image, (60, 40), (60, 200))
    regions = regions_for_boxes(foreground_mask(image, 12), [_box(bar), (200, 20, 260, 80)], 12)
    assert regions[0] is not None and regions[1] is None


def test_the_crop_holds_only_its_chromosome_and_stands_upright():
    image = _canvas()
    bar = _bar(image, (60, 190), (200, 50), width=12, grey=60)  # a diagonal chromosome
    _bar(image, (200, 200), (300, 200), width=12, grey=60)  # a neighbour in the same box
    region = Region.from_mask(bar)
    assert abs(long_axis_angle(region.mask)) == pytest.approx(45, abs=3)
    crop = cut_crop(image, region)
    height, width = crop.shape
    assert height > 3 * width  # turned so its long axis is vertical
    assert height == pytest.approx(np.hypot(140, 140) + 12, rel=0.15)
    # nothing of the neighbour: dark pixels form one straight column
    dark = crop < 150
    assert dark.sum() > 0.7 * bar.sum()
    count, _ = cv2.connectedComponents(dark.astype(np.uint8))
    assert count == 2
    flat = cut_crop(image, region, upright=False)
    assert (flat == 255).mean() > 0.5  # neighbours and background whited out


def test_run_lengths_round_trip_and_refuse_what_does_not_fit():
    mask = np.zeros((7, 9), bool)
    mask[1:5, 2:6] = True
    mask[6, 8] = True
    region = Region((10, 20, 19, 27), mask)
    back = Region.from_runs(region.box, region.to_runs())
    assert back.box == region.box and np.array_equal(back.mask, mask)
    with pytest.raises(ValueError):
        Region.from_runs(region.box, [*region.to_runs(), 3])
    with pytest.raises(ValueError):
        Region.from_runs((0, 0, 0, 5), [])


def test_boxes_are_matched_one_to_one():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
    found = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [21, 0, 31, 10], [50, 50, 60, 60]], float)
    matches = match_boxes(found, truth)
    assert len(matches) == 2  # the duplicate of the first box does not count twice
    assert {t for _, t in matches} == {0, 1}
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert match_boxes(np.zeros((0, 4)), truth) == []


def test_the_stained_part_of_a_large_scan_holds_even_thin_chromosomes():
    from karyo_gui.core.metaphase import stained_box

    scan = np.full((3000, 4000), 235, np.uint8)
    assert stained_box(scan) is None  # nothing stained
    scan[2000:2060, 3000:3003] = 90  # a thin chromosome, 3 px wide, on a big frame
    scan[500, 500] = 0  # and one speck of dust, which is not
    x0, y0, x1, y1 = stained_box(scan, margin=20)
    assert 2960 <= x0 <= 2980 and 1960 <= y0 <= 1980
    assert 3023 <= x1 <= 3030 and 2080 <= y1 <= 2090
    assert stained_box(scan, margin=5000) == (0, 0, 4000, 3000)  # kept inside the image
