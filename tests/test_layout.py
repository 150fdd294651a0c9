"""Karyogram layout: rows, slots, one scale for every crop, nothing overlapping."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from karyo_gui.core.case import Chromosome, Orientation
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.layout import KaryogramLayout, LayoutStyle, Rect, karyogram_layout

T = ChromosomeType
EPS = 1e-6


def crop(height: int, width: int) -> np.ndarray:
    return np.full((height, width), 255, np.uint8)


def chromosome_height(chromosome_type: ChromosomeType) -> int:
    """Crop heights roughly like real ones: 1 the longest, 21/22/Y the shortest."""
    if chromosome_type is T.X:
        return 150
    if chromosome_type is T.Y:
        return 70
    return 200 - 6 * chromosome_type.value


def make_cell(extra: dict[ChromosomeType, int] | None = None, sex: str = "XY"
              ) -> list[Chromosome]:
    """A 46,XY cell (plus ``extra`` copies), homologs 30 and 34 px wide."""
    copies = {t: 2 for t in T.types()[:22]}
    copies[T.X] = sex.count("X")
    copies[T.Y] = sex.count("Y")
    for chromosome_type, count in (extra or {}).items():
        copies[chromosome_type] = copies.get(chromosome_type, 0) + count
    chromosomes = []
    for chromosome_type, count in copies.items():
        for copy in range(count):
            height = 60 if chromosome_type is T.UNCLASSIFIED else chromosome_height(
                chromosome_type)
            chromosomes.append(Chromosome(
                id=f"{chromosome_type.display_name}-{copy}",
                image=crop(height, 30 + 4 * (copy % 2)),
                given=chromosome_type,
            ))
    return chromosomes


def overlaps(a: Rect, b: Rect) -> bool:
    """Whether two rectangles share area (touching edges do not count)."""
    return (a.x < b.right - EPS and b.x < a.right - EPS
            and a.y < b.bottom - EPS and b.y < a.bottom - EPS)


def inside(inner: Rect, outer: Rect) -> bool:
    return (inner.x >= outer.x - EPS and inner.right <= outer.right + EPS
            and inner.y >= outer.y - EPS and inner.bottom <= outer.bottom + EPS)


def rows_of(layout: KaryogramLayout) -> list[list[str]]:
    """The typed slots grouped by their top edge, top to bottom, left to right."""
    typed = [(slot.rect.y, slot.rect.x, t.display_name) for t, slot in layout.slots.items()
             if t is not T.UNCLASSIFIED]
    rows: dict[float, list[tuple[float, str]]] = {}
    for y, x, name in typed:
        rows.setdefault(round(y, 6), []).append((x, name))
    return [[name for _, name in sorted(row)] for _, row in sorted(rows.items())]


def names(*items) -> list[str]:
    return [str(item) for item in items]


def test_four_rows_in_karyogram_order():
    layout = karyogram_layout(make_cell())
    assert rows_of(layout) == [
        names(1, 2, 3, 4, 5),
        names(6, 7, 8, 9, 10, 11, 12, "X"),
        names(13, 14, 15, 16, 17, 18),
        names(19, 20, 21, 22, "Y"),
    ]


def test_sex_last_puts_x_and_y_after_22():
    layout = karyogram_layout(make_cell(), LayoutStyle(sex_last=True))
    assert rows_of(layout) == [
        names(1, 2, 3, 4, 5),
        names(6, 7, 8, 9, 10, 11, 12),
        names(13, 14, 15, 16, 17, 18),
        names(19, 20, 21, 22, "X", "Y"),
    ]


def test_rows_do_not_overlap_and_chromosomes_stand_above_their_labels():
    layout = karyogram_layout(make_cell())
    for chromosome_type, slot in layout.slots.items():
        assert slot.label_rect.y >= slot.rect.y - EPS
        assert inside(slot.label_rect, slot.rect)
        for member in slot.members:
            placed = layout.placements[member]
            assert inside(placed, slot.rect), (chromosome_type, member)
            assert placed.bottom <= slot.label_rect.y + EPS
    for (type_a, a), (type_b, b) in itertools.combinations(layout.slots.items(), 2):
        assert not overlaps(a.rect, b.rect), (type_a, type_b)


def test_homologs_stand_side_by_side_in_their_slot():
    chromosomes = make_cell()
    layout = karyogram_layout(chromosomes)
    for chromosome_type in T.types():
        slot = layout.slots[chromosome_type]
        expected = {c.id for c in chromosomes if c.label is chromosome_type}
        assert set(slot.members) == expected
        placed = [layout.placements[member] for member in slot.members]
        assert len(placed) == (1 if chromosome_type in (T.X, T.Y) else 2)
        for a, b in itertools.combinations(placed, 2):
            assert not overlaps(a, b)
            assert abs(a.bottom - b.bottom) < EPS  # a common baseline
        xs = [p.x for p in placed]
        assert xs == sorted(xs)  # left to right in member order


def test_every_crop_has_the_same_scale():
    chromosomes = make_cell()
    style = LayoutStyle()
    layout = karyogram_layout(chromosomes, style)
    ratios_h = []
    ratios_w = []
    for chromosome in chromosomes:
        placed = layout.placements[chromosome.id]
        height, width = chromosome.image.shape
        ratios_h.append(placed.height / height)
        ratios_w.append(placed.width / width)
    assert np.allclose(ratios_h, ratios_h[0])
    assert np.allclose(ratios_w, ratios_h[0])
    assert layout.scale == pytest.approx(ratios_h[0])
    # the tallest crop (chromosome 1) is drawn at the style's tallest height
    tallest = max(layout.placements[c.id].height for c in chromosomes)
    assert tallest == pytest.approx(style.tallest)
    # and chromosome 1 stays much longer than chromosome 21
    assert layout.placements["1-0"].height > 1.5 * layout.placements["21-0"].height


def test_a_chromosome_twice_as_tall_is_placed_twice_as_tall():
    chromosomes = [
        Chromosome(id="long", image=crop(120, 30), given=T.CHR2),
        Chromosome(id="short", image=crop(60, 30), given=T.CHR20),
    ]
    layout = karyogram_layout(chromosomes)
    assert layout.placements["long"].height == pytest.approx(
        2 * layout.placements["short"].height)
    assert layout.placements["long"].width == pytest.approx(layout.placements["short"].width)


def test_a_given_scale_is_used():
    layout = karyogram_layout(make_cell(), scale=0.5)
    assert layout.scale == 0.5
    assert layout.placements["1-0"].height == pytest.approx(chromosome_height(T.CHR1) * 0.5)


def test_all_chromosomes_placed_and_nothing_overlaps():
    chromosomes = make_cell({T.UNCLASSIFIED: 4, T.CHR8: 1})
    layout = karyogram_layout(chromosomes)
    assert set(layout.placements) == {c.id for c in chromosomes}
    canvas = Rect(0, 0, layout.width, layout.height)
    for placed in layout.placements.values():
        assert inside(placed, canvas)
        assert placed.width > 0 and placed.height > 0
    for (id_a, a), (id_b, b) in itertools.combinations(layout.placements.items(), 2):
        assert not overlaps(a, b), (id_a, id_b)


def test_a_trisomy_slot_is_wider_and_holds_three():
    normal = karyogram_layout(make_cell())
    trisomy = karyogram_layout(make_cell({T.CHR21: 1}))
    slot = trisomy.slots[T.CHR21]
    assert len(slot.members) == 3
    assert slot.rect.width > normal.slots[T.CHR21].rect.width
    # wider than its neighbour 22, which holds two crops of the same widths
    assert slot.rect.width > trisomy.slots[T.CHR22].rect.width
    placed = [trisomy.placements[member] for member in slot.members]
    for a, b in itertools.combinations(placed, 2):
        assert not overlaps(a, b)
    assert all(inside(p, slot.rect) for p in placed)


def test_a_missing_homolog_keeps_room_for_two():
    chromosomes = [c for c in make_cell() if c.id != "7-1"]
    layout = karyogram_layout(chromosomes)
    assert layout.slots[T.CHR7].members == ["7-0"]
    # the slot keeps room for the missing homolog, so the karyogram does not shift
    assert layout.slots[T.CHR7].rect.width > 1.5 * layout.placements["7-0"].width


def test_unclassified_objects_go_to_the_bucket_below_the_rows():
    chromosomes = make_cell({T.UNCLASSIFIED: 3})
    layout = karyogram_layout(chromosomes)
    bucket = layout.slots[T.UNCLASSIFIED]
    assert bucket.members == ["?-0", "?-1", "?-2"]
    lowest_row = max(slot.rect.bottom for t, slot in layout.slots.items()
                     if t is not T.UNCLASSIFIED)
    assert bucket.rect.y >= lowest_row
    for member in bucket.members:
        placed = layout.placements[member]
        assert placed.y >= lowest_row
        assert inside(placed, bucket.rect)
    assert all(member not in slot.members for t, slot in layout.slots.items()
               if t is not T.UNCLASSIFIED for member in bucket.members)


def test_five_hundred_unclassified_crops_wrap_within_the_karyogram_width():
    chromosomes = [
        Chromosome(id=f"object-{i}", image=crop(40 + i % 30, 20 + i % 17)) for i in range(500)
    ]
    style = LayoutStyle()
    layout = karyogram_layout(chromosomes, style)
    assert set(layout.placements) == {c.id for c in chromosomes}
    assert set(layout.slots[T.UNCLASSIFIED].members) == set(layout.placements)
    placed = list(layout.placements.values())
    assert max(p.right for p in placed) <= layout.width - style.margin + EPS
    assert min(p.x for p in placed) >= style.margin - EPS
    assert max(p.bottom for p in placed) <= layout.height + EPS
    assert len({round(p.bottom, 6) for p in placed}) > 1  # more than one line
    for a, b in itertools.combinations(placed, 2):
        assert not overlaps(a, b)


def test_orientation_90_swaps_width_and_height():
    upright = Chromosome(id="upright", image=crop(80, 20), given=T.CHR3)
    turned = Chromosome(id="turned", image=crop(80, 20), given=T.CHR3,
                        orientation=Orientation(90))
    flipped = Chromosome(id="flipped", image=crop(80, 20), given=T.CHR4,
                         orientation=Orientation(180, True))
    layout = karyogram_layout([upright, turned, flipped])
    a, b = layout.placements["upright"], layout.placements["turned"]
    assert b.width == pytest.approx(a.height)
    assert b.height == pytest.approx(a.width)
    assert a.height / a.width == pytest.approx(4)
    c = layout.placements["flipped"]
    assert (c.width, c.height) == pytest.approx((a.width, a.height))


def test_an_empty_cell_does_not_crash():
    layout = karyogram_layout([])
    assert layout.placements == {}
    assert set(layout.slots) == set(ChromosomeType.types())  # no bucket: nothing unclassified
    assert all(slot.members == [] for slot in layout.slots.values())
    assert layout.width > 0 and layout.height > 0
    assert rows_of(layout)[0] == names(1, 2, 3, 4, 5)


def test_a_crop_without_image_is_still_placed():
    chromosomes = make_cell()
    chromosomes[0].image = None  # its file went missing
    layout = karyogram_layout(chromosomes)
    assert chromosomes[0].id in layout.placements


@pytest.mark.parametrize("sex_last", [False, True])
def test_slot_at_a_slots_centre_is_its_type(sex_last):
    layout = karyogram_layout(make_cell({T.UNCLASSIFIED: 2}), LayoutStyle(sex_last=sex_last))
    for chromosome_type, slot in layout.slots.items():
        centre_x = slot.rect.x + slot.rect.width / 2
        centre_y = slot.rect.y + slot.rect.height / 2
        assert layout.slot_at(centre_x, centre_y) is chromosome_type
        label_centre = (slot.label_rect.x + slot.label_rect.width / 2,
                        slot.label_rect.y + slot.label_rect.height / 2)
        assert layout.slot_at(*label_centre) is chromosome_type
    assert layout.slot_at(-10, -10) is None
    assert layout.slot_at(layout.width + 10, layout.height + 10) is None
