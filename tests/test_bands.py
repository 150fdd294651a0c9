"""The ideogram bands: the GRCh38 table at 850 bands, the coarser levels derived from it."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import pytest

from karyo_gui.core.bands import (
    BAND_LEVELS,
    CHROMOSOMES,
    STAIN_DARKNESS,
    band_counts,
    band_position,
    centromere_position,
    ideogram_bands,
    is_band,
    nearest_level,
)

BAND_NAME = re.compile(r"[pq]\d{2}(\.\d+)?")


def test_the_levels_are_the_iscn_ones_and_their_totals_are_near_the_nominal_numbers():
    assert BAND_LEVELS == (300, 400, 550, 700, 850)
    counts = band_counts()
    assert counts == {300: 320, 400: 400, 550: 550, 700: 701, 850: 862}  # as the docstring says
    for level, count in counts.items():
        assert abs(count - level) <= 0.07 * level


@pytest.mark.parametrize("level", BAND_LEVELS)
@pytest.mark.parametrize("chromosome", CHROMOSOMES)
def test_bands_tile_the_chromosome_from_pter_to_qter(chromosome, level):
    bands = ideogram_bands(chromosome, level)
    assert bands[0].start == 0 and bands[-1].end == pytest.approx(1)
    for before, after in itertools.pairwise(bands):
        assert before.end == after.start and before.start < before.end
    arms = "".join(band.arm for band in bands)
    assert re.fullmatch(r"p+q+", arms)  # the short arm, then the long arm
    assert len({band.name for band in bands}) == len(bands)
    for band in bands:
        assert BAND_NAME.fullmatch(band.name) and band.chromosome == chromosome
        assert band.stain in STAIN_DARKNESS and 0 <= band.darkness <= 1


@pytest.mark.parametrize("chromosome", CHROMOSOMES)
def test_levels_nest_a_coarser_band_is_a_run_of_finer_bands_named_under_it(chromosome):
    for coarse_level, fine_level in itertools.pairwise(BAND_LEVELS):
        fine = ideogram_bands(chromosome, fine_level)
        for band in ideogram_bands(chromosome, coarse_level):
            inside = [f for f in fine if band.start <= f.start and f.end <= band.end]
            assert inside[0].start == band.start and inside[-1].end == band.end
            assert all(f.name.startswith(band.name) for f in inside)
            darkest = max(inside, key=lambda f: f.darkness)
            if any(f.stain == "acen" for f in inside):
                assert band.stain == "acen"
            else:
                assert band.darkness == darkest.darkness


def test_the_850_level_is_the_table_with_its_sub_sub_bands():
    names = [band.name for band in ideogram_bands("1", 850)]
    assert names[:3] == ["p36.33", "p36.32", "p36.31"] and names[-1] == "q44"
    assert len(names) == 63
    assert [band.name for band in ideogram_bands("Y", 850)][6:9] == [
        "q11.221", "q11.222", "q11.223"]
    nine = {band.name: band.stain for band in ideogram_bands("9", 850)}
    assert nine["q12"] == "gvar" and nine["p11.1"] == nine["q11"] == "acen"
    assert {band.stain for band in ideogram_bands("13", 850)[:3]} == {"gvar", "stalk"}


def test_coarser_levels_merge_sub_bands_into_their_parents():
    at_400 = [band.name for band in ideogram_bands("1", 400)]
    assert at_400[:3] == ["p36.3", "p36.2", "p36.1"]
    at_300 = [band.name for band in ideogram_bands("1", 300)]
    assert at_300[:3] == ["p36", "p35", "p34"]
    assert all("." not in name for name in at_300)  # 300: every band its two-digit band
    assert len(ideogram_bands("1", 300)) < len(ideogram_bands("1", 550)) < len(at_400) * 2


def test_the_centromere_is_where_the_arms_meet():
    for chromosome in CHROMOSOMES:
        bands = ideogram_bands(chromosome, 850)
        last_p = max(band.end for band in bands if band.arm == "p")
        assert centromere_position(chromosome) == pytest.approx(last_p)
        acen = [band for band in bands if band.stain == "acen"]
        assert acen[0].end == pytest.approx(centromere_position(chromosome))
    assert centromere_position("1") == pytest.approx(0.4957, abs=1e-3)  # metacentric
    assert centromere_position("13") < 0.17  # acrocentric


@pytest.mark.parametrize(
    ("chromosome", "name"),
    [("9", "q34.1"), ("9", "q34.11"), ("9", "q34"), ("22", "q11.2"), ("22", "q11.23"),
     ("5", "q31"), ("5", "q13"), ("17", "q10"), ("17", "p10"), ("X", "q28"), ("Y", "q11.22"),
     ("1", "pter"), ("1", "qter"), ("1", "cen"), ("18", "p11.3")],
)  # fmt: skip
def test_bands_of_any_level_and_the_landmarks_are_bands(chromosome, name):
    assert is_band(chromosome, name)


@pytest.mark.parametrize(
    ("chromosome", "name"),
    [("5", "q99"), ("9", "q35"), ("21", "q23"), ("19", "q14"), ("1", "p37"), ("1", "q3"),
     ("1", "p36.4"), ("23", "q11"), ("X", "q29"), ("1", "x11")],
)  # fmt: skip
def test_names_that_are_no_band_of_the_chromosome_are_not(chromosome, name):
    assert not is_band(chromosome, name)


def test_band_position_is_the_middle_of_the_band_at_any_resolution():
    q34 = band_position("9", "q34")
    assert band_position("9", "q34.11") < band_position("9", "q34.1") < q34
    assert 0.9 < q34 < 1
    assert band_position("9", "q10") == band_position("9", "cen") == centromere_position("9")
    assert band_position("9", "pter") == 0 and band_position("9", "qter") == 1
    p36 = next(b for b in ideogram_bands("1", 300) if b.name == "p36")
    assert band_position("1", "p36") == pytest.approx((p36.start + p36.end) / 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: band_position("5", "q99"), "'q99' is not a band of chromosome 5"),
        (lambda: band_position("23", "q11"), "'23' is not a chromosome"),
        (lambda: ideogram_bands("M"), "'M' is not a chromosome"),
        (lambda: ideogram_bands("1", 500), "500 is not a band level"),
        (lambda: centromere_position("0"), "'0' is not a chromosome"),
    ],
)
def test_unknown_chromosomes_levels_and_bands_are_refused_with_the_reason(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_nearest_level():
    assert nearest_level(320) == 300 and nearest_level(862) == 850
    assert nearest_level(470) == 400 and nearest_level(480) == 550 and nearest_level(10) == 300


def test_the_band_table_is_shipped_with_the_package_and_cheap_to_read():
    from importlib import resources

    text = resources.files("karyo_gui.core").joinpath("data/cytobands.tsv").read_text("utf-8")
    assert "GRCh38" in text and len(text.splitlines()) < 900
    probe = ("import time; t = time.perf_counter(); from karyo_gui.core import bands; "
             "bands.ideogram_bands('1'); bands.is_band('9', 'q34.1'); "
             "print(time.perf_counter() - t)")  # fmt: skip
    seconds = float(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                   text=True, check=True).stdout)
    assert seconds < 1.0  # the table, every level derived and the names: a few tens of ms
