"""Two chromosomes crossing in an X, found as one object, are separated (core.crossings)."""

import cv2
import numpy as np
import pytest

from karyo_gui.core.crossings import box_margin, crossing_paths, separate_crossings
from karyo_gui.core.metaphase import Region, box_iou, regions_for_boxes

WIDTH = 12


def bar(shape, start, end, width=WIDTH):
    mask = np.zeros(shape, np.uint8)
    cv2.line(mask, start, end, 1, width)
    return mask.astype(bool)


def mask_iou(a, b):
    return (a & b).sum() / (a | b).sum()


def box_of(mask, margin=0.0):
    region = Region.from_mask(mask)
    x0, y0, x1, y1 = region.box
    return (x0 - margin, y0 - margin, x1 + margin, y1 + margin)


def test_an_x_is_two_chromosomes_sharing_the_crossing():
    first = bar((160, 160), (20, 30), (140, 130))
    second = bar((160, 160), (30, 140), (130, 20))
    parts = crossing_paths(first | second, WIDTH)
    assert parts is not None
    matched = sorted(max(mask_iou(part, truth) for part in parts) for truth in (first, second))
    assert matched[0] > 0.8
    shared = parts[0] & parts[1]
    assert shared.any() and (shared & first & second).sum() >= 0.5 * shared.sum()


@pytest.mark.parametrize("name", ["straight", "bent", "with a stub", "splayed chromatids", "a T"])
def test_one_chromosome_or_a_touching_pair_is_not_an_x(name):
    shape = (160, 160)
    if name == "straight":
        mask = bar(shape, (20, 80), (140, 80))
    elif name == "bent":
        mask = np.zeros(shape, np.uint8)
        cv2.ellipse(mask, (80, 120), (60, 70), 0, 180, 360, 1, WIDTH)
        mask = mask.astype(bool)
    elif name == "with a stub":  # a neighbour's end reaching into the box
        mask = bar(shape, (20, 80), (140, 80)) | bar(shape, (80, 80), (80, 55))
    elif name == "splayed chromatids":  # both ends forked, the arms at a narrow angle
        mask = np.zeros(shape, bool)
        for dy in (-6, 6):
            mask |= bar(shape, (20, 80 + dy), (140, 80 - dy), WIDTH // 2 + 1)
        mask |= bar(shape, (35, 80), (125, 80))
    else:
        mask = bar(shape, (20, 40), (140, 40)) | bar(shape, (80, 40), (80, 150))
    assert crossing_paths(mask, WIDTH) is None


def spread_with_an_x():
    """A long chromosome crossed by a shorter one, found as one object (the long one's box),
    and a lone chromosome."""
    shape = (260, 300)
    first = bar(shape, (30, 40), (150, 140))
    second = bar(shape, (60, 130), (125, 45))
    lone = bar(shape, (220, 40), (230, 200))
    return shape, first, second, lone


def test_the_partner_of_an_x_is_added_with_the_finder_s_box_margin():
    shape, first, second, lone = spread_with_an_x()
    pixels = first | second | lone
    margin = 5.0
    boxes = np.array([box_of(first, margin), box_of(lone, margin)])
    regions = regions_for_boxes(pixels, boxes, WIDTH)
    assert box_margin(boxes, regions) == pytest.approx(margin, abs=1.5)
    separated = separate_crossings(pixels, boxes, regions, WIDTH)
    assert [s.index for s in separated] == [0]
    split = separated[0]
    assert box_iou(split.partner_box, box_of(second, margin)) > 0.7
    assert mask_iou(split.own.full_mask(shape), first) > 0.8
    assert mask_iou(split.partner.full_mask(shape), second) > 0.8


def test_an_x_filling_one_box_gives_both():
    """Two chromosomes crossing at their middles, their boxes alike: both are found."""
    shape = (200, 200)
    first = bar(shape, (30, 30), (160, 160))
    second = bar(shape, (30, 160), (160, 30))
    boxes = np.array([box_of(first | second)])
    regions = regions_for_boxes(first | second, boxes, WIDTH)
    separated = separate_crossings(first | second, boxes, regions, WIDTH)
    assert len(separated) == 1
    masks = [separated[0].own.full_mask(shape), separated[0].partner.full_mask(shape)]
    assert sorted(max(mask_iou(m, t) for m in masks) for t in (first, second))[0] > 0.8


def test_a_partner_found_already_is_not_added_again():
    """The finder found both chromosomes of an X, with boxes alike: both regions hold the X,
    and neither is given a partner (it would be the other found chromosome once more)."""
    shape = (200, 200)
    first = bar(shape, (30, 30), (160, 160))
    second = bar(shape, (30, 160), (160, 30))
    x0, y0, x1, y1 = box_of(first | second)
    boxes = np.array([(x0, y0, x1, y1), (x0 + 2, y0 - 1, x1 + 1, y1 + 2)])
    regions = regions_for_boxes(first | second, boxes, WIDTH)
    assert crossing_paths(regions[0].mask, WIDTH) is not None  # the X, as the finder left it
    assert separate_crossings(first | second, boxes, regions, WIDTH) == []


def test_a_partner_running_into_another_chromosome_is_that_one_s_piece():
    shape, first, second, _ = spread_with_an_x()
    # the short chromosome's lower end lies against a found neighbour
    neighbour = bar(shape, (10, 142), (60, 142))
    pixels = first | second | neighbour
    boxes = np.array([box_of(first, 5), box_of(neighbour, 5)])
    regions = regions_for_boxes(pixels, boxes, WIDTH)
    assert separate_crossings(pixels, boxes, regions, WIDTH) == []
