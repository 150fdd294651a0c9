"""The karyotype-aware assignment: a cell's types decided together, aneuploidy included."""

from collections import Counter

import numpy as np
import pytest

from karyo_gui.core.assignment import (
    CASE_SEX_MOSAIC,
    HOMOLOG_UNLIKE,
    TYPE_DOUBT,
    KaryotypePrior,
    apply_assignment,
    assign_types,
    calibrated,
    case_female_shares,
    drop_unplaced_candidates,
    homolog_gaps,
    homolog_unlike,
)
from karyo_gui.core.case import Case, Chromosome, Flag
from karyo_gui.core.case_file import load_case, save_case
from karyo_gui.core.iscn import parse_karyotype
from karyo_gui.core.labels import N_TYPES, ChromosomeType
from karyo_gui.core.review import count_text
from karyo_gui.core.synthetic import generate_cell

T = ChromosomeType


def types_of(karyotype: str) -> list[int]:
    """One crop per chromosome of a karyotype, as class indices in karyogram order."""
    counts = parse_karyotype(karyotype)
    return [t.value for t in T.types() for _ in range(counts.get(t, 0))]


def confident(types: list[int], p: float = 0.9, seed: int = 0) -> np.ndarray:
    """Probabilities of a good classifier: ``p`` on the true type, the rest spread at random."""
    rng = np.random.default_rng(seed)
    rest = rng.dirichlet(np.ones(N_TYPES - 1), size=len(types)) * (1 - p)
    probabilities = np.empty((len(types), N_TYPES))
    for row, t in enumerate(types):
        probabilities[row] = np.insert(rest[row], t, p)
    return probabilities


def blend(probabilities: np.ndarray, row: int, weights: dict[int, float]) -> None:
    """Make one crop ambiguous: its probability shared among a few types."""
    probabilities[row] = 1e-4
    for t, weight in weights.items():
        probabilities[row, t] = weight
    probabilities[row] /= probabilities[row].sum()


@pytest.mark.parametrize("karyotype", ["46,XX", "46,XY", "47,XY,+21", "47,XX,+18",
                                       "47,XY,+13", "45,X", "47,XXY", "47,XXX", "47,XYY",
                                       "45,XX,-7"])  # fmt: skip
def test_a_clearly_classified_cell_keeps_its_karyotype(karyotype):
    types = types_of(karyotype)
    assignment = assign_types(confident(types))
    assert assignment.karyotype == karyotype
    assert assignment.types.tolist() == types
    assert assignment.changed.size == 0


def test_a_third_copy_of_one_type_goes_to_the_type_missing_its_homolog():
    types = types_of("46,XY")
    probabilities = confident(types)
    five = types.index(T.autosome(5).value)
    # the classifier calls this 5 a 4 (the usual 4/5 confusion), leaving three 4s and one 5
    blend(probabilities, five, {T.autosome(4).value: 0.6, T.autosome(5).value: 0.35})
    assert probabilities.argmax(axis=1)[five] == T.autosome(4).value

    assignment = assign_types(probabilities)

    assert assignment.karyotype == "46,XY"
    assert assignment.types[five] == T.autosome(5).value
    assert assignment.changed.tolist() == [five]
    assert assignment.margins[five] < 0  # assigned against the argmax: the least sure crop


def test_a_real_trisomy_is_not_forced_into_46():
    """Three confident 21s stay three 21s even though 46 would be the more usual count."""
    types = types_of("47,XX,+21")
    assignment = assign_types(confident(types, p=0.8))
    assert assignment.karyotype == "47,XX,+21"
    assert Counter(assignment.types.tolist())[T.autosome(21).value] == 3


def test_weak_evidence_for_a_rare_trisomy_yields_to_a_normal_cell():
    """A third '7' that could as well be the missing 8 is the 8: +7 is far rarer than a
    classifier's 7/8 confusion."""
    types = types_of("46,XX")
    probabilities = confident(types)
    eight = types.index(T.autosome(8).value)
    blend(probabilities, eight, {T.autosome(7).value: 0.55, T.autosome(8).value: 0.45})
    assert assign_types(probabilities).karyotype == "46,XX"


def test_the_prior_decides_between_a_gain_and_a_confusion():
    types = types_of("46,XY")
    probabilities = confident(types)
    twenty_two = types.index(T.autosome(22).value)
    blend(probabilities, twenty_two, {T.autosome(21).value: 0.9, T.autosome(22).value: 0.1})
    usual = assign_types(probabilities)
    assert usual.karyotype == "46,XY"
    # in a population where trisomy 21 is common and losing a 22 too, +21 -22 wins
    prior = KaryotypePrior(gains={"21": 0.5}, loss=0.5)
    assert assign_types(probabilities, prior).karyotype == "46,XY,+21,-22"


def test_a_lost_chromosome_is_reported_as_missing_without_moving_others():
    types = types_of("46,XY")
    types.remove(T.autosome(3).value)
    assignment = assign_types(confident(types))
    assert assignment.karyotype == "45,XY,-3"
    assert assignment.changed.size == 0


def test_a_partial_spread_and_a_near_tetraploid_cell_give_every_crop_a_type():
    partial = types_of("46,XX")[::2]  # 23 crops
    assert assign_types(confident(partial)).types.tolist() == partial
    tetraploid = types_of("46,XY") * 2  # 92 crops: four copies of every autosome
    assignment = assign_types(confident(tetraploid, p=0.95))
    assert Counter(assignment.types.tolist()) == Counter(tetraploid)
    assert assignment.karyotype.startswith("92,XXYY")


def test_the_sex_baselines_compete_and_the_runner_up_is_reported():
    types = types_of("46,XY")
    assignment = assign_types(confident(types))
    assert assignment.sex == "XY"
    assert assignment.alternative != assignment.karyotype
    assert assignment.alternative_cost > assignment.cost


def test_fixed_types_are_kept_and_the_others_assigned_around_them():
    types = types_of("46,XY")
    probabilities = confident(types)
    one = types.index(T.autosome(1).value)
    # a reviewer says this '1' is really a 2: the cell still makes sense only if one of
    # the other two 2s is the missing 1, which the assignment then finds
    assignment = assign_types(probabilities, fixed={one: T.autosome(2).value})
    assert assignment.types[one] == T.autosome(2).value
    assert assignment.karyotype == "46,XY"
    assert assignment.changed.size == 2


def test_an_empty_cell_is_assigned_nothing():
    assignment = assign_types(np.zeros((0, N_TYPES)))
    assert assignment.count == 0
    assert assignment.karyotype.startswith("0,")


@pytest.mark.parametrize(
    "probabilities, message",
    [
        (np.ones((3, 23)), "shape"),
        (np.ones(24), "shape"),
        (np.full((2, 24), np.nan), "finite"),
        (-np.ones((2, 24)), "negative"),
    ],
)
def test_bad_probabilities_are_refused_with_a_reason(probabilities, message):
    with pytest.raises(ValueError, match=message):
        assign_types(probabilities)


def test_a_prior_naming_no_chromosome_is_refused():
    with pytest.raises(ValueError, match="chromosome class name"):
        KaryotypePrior(gains={"23q": 0.1})
    with pytest.raises(ValueError, match="between 0 and 1"):
        KaryotypePrior(loss=0.0)


def test_applying_the_assignment_flags_moved_and_unsure_chromosomes_and_keeps_manual_labels():
    cell = generate_cell("46,XY", seed=1)
    types = [c.given.value for c in cell.chromosomes]
    probabilities = confident(types)
    moved_row = types.index(T.autosome(5).value)
    blend(probabilities, moved_row, {T.autosome(4).value: 0.6, T.autosome(5).value: 0.4})
    # a 9 and a 10 that look alike: the cell cannot tell which is which, both are in doubt
    unsure_row = types.index(T.autosome(9).value)
    blend(probabilities, unsure_row, {T.autosome(9).value: 0.5, T.autosome(10).value: 0.45})
    partner_row = types.index(T.autosome(10).value)
    blend(probabilities, partner_row, {T.autosome(10).value: 0.5, T.autosome(9).value: 0.45})
    sure_row = types.index(T.autosome(11).value)
    manual_row = types.index(T.autosome(1).value)
    cell.set_manual_label(cell.chromosomes[manual_row].id, T.autosome(1), by="reviewer")
    assignment = assign_types(probabilities)

    moved = apply_assignment(
        cell, list(range(len(cell))), probabilities, assignment, model_id="m1"
    )

    assert moved == [cell.chromosomes[moved_row].id]
    assert Flag.MOVED_BY_ASSIGNMENT in cell.chromosomes[moved_row].flags
    assert Flag.LOW_CONFIDENCE in cell.chromosomes[unsure_row].flags
    assert Flag.LOW_CONFIDENCE in cell.chromosomes[partner_row].flags
    assert Flag.LOW_CONFIDENCE not in cell.chromosomes[sure_row].flags
    assert Flag.LOW_CONFIDENCE not in cell.chromosomes[0 if unsure_row else 1].flags
    assert cell.chromosomes[moved_row].predicted is T.autosome(4)
    assert cell.chromosomes[moved_row].label is T.autosome(5)
    assert cell.chromosomes[manual_row].manual.label is T.autosome(1)
    assert cell.karyotype == "46,XY"
    assert cell.model_id == "m1"
    # classifying again replaces the flags instead of piling them up (a model sure enough
    # of every crop that even the X and Y calls pass the bar of a sex call)
    sure = confident(types, p=0.99)
    apply_assignment(cell, list(range(len(cell))), sure, assign_types(sure))
    assert not any(c.flags for c in cell.chromosomes)


def test_a_crop_torn_between_two_types_is_not_in_doubt_when_the_rest_of_the_cell_decides():
    cell = generate_cell("46,XY", seed=2)
    types = [c.given.value for c in cell.chromosomes]
    probabilities = confident(types)
    torn = types.index(T.autosome(9).value)
    blend(probabilities, torn, {T.autosome(9).value: 0.5, T.autosome(10).value: 0.45})
    assignment = assign_types(probabilities)
    # two sure 10s already: a third 10 and a missing 9 are far less likely than a 9
    assert assignment.types[torn] == T.autosome(9).value
    assert assignment.doubts[torn] < TYPE_DOUBT
    assert torn not in assignment.low_confidence()
    # without the cell's help the same crop would have been flagged by its margin alone
    assert assignment.margins[torn] < 0.2


def test_doubts_are_probabilities_and_a_reviewers_label_is_never_in_doubt():
    cell = generate_cell("46,XX", seed=3)
    types = [c.given.value for c in cell.chromosomes]
    probabilities = confident(types)
    a, b = types.index(T.autosome(4).value), types.index(T.autosome(5).value)
    blend(probabilities, a, {T.autosome(4).value: 0.5, T.autosome(5).value: 0.45})
    blend(probabilities, b, {T.autosome(5).value: 0.5, T.autosome(4).value: 0.45})
    assignment = assign_types(probabilities, fixed={a: T.autosome(4).value})
    assert ((assignment.doubts >= 0) & (assignment.doubts <= 1)).all()
    assert assignment.doubts[a] == 0.0
    # with a fixed, b can no longer trade places with it: its doubt falls
    free = assign_types(probabilities)
    assert free.doubts[b] > TYPE_DOUBT > assignment.doubts[b]


def test_a_chromosome_more_like_another_type_than_like_its_homolog_is_flagged():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(24, 32))
    types = np.repeat(np.arange(24), 2)
    embeddings = centres[types] + 0.05 * rng.normal(size=(48, 32))
    assert len(homolog_unlike(types, embeddings)) == 0  # homologs alike: nothing to say
    swapped = types.copy()
    swapped[[6, 8]] = swapped[[8, 6]]  # a 4 and a 5 given each other's type
    flagged = set(homolog_unlike(swapped, embeddings).tolist())
    assert {6, 8} <= flagged
    assert flagged <= {6, 7, 8, 9}  # and at most their homologs, nothing else
    gaps = homolog_gaps(swapped, embeddings)  # the measure behind the flag
    assert gaps[6] > HOMOLOG_UNLIKE and gaps[8] > HOMOLOG_UNLIKE
    assert (np.delete(gaps, [6, 7, 8, 9]) < 0).all()  # the others are most like their homolog
    embeddings[3] = np.nan  # no embedding: not judged, and its homolog has none to compare
    assert 3 not in homolog_unlike(types, embeddings)
    assert np.isnan(homolog_gaps(types, embeddings)[[2, 3]]).all()


def test_calibration_keeps_every_types_rank_and_softens_or_sharpens():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(N_TYPES) * 0.3, size=20)
    for temperature in (0.5, 2.0):
        scaled = calibrated(probabilities, temperature)
        np.testing.assert_allclose(scaled.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probabilities.argmax(axis=1))
    top = probabilities.max(axis=1)
    assert (calibrated(probabilities, 2.0).max(axis=1) <= top + 1e-6).all()
    assert (calibrated(probabilities, 0.5).max(axis=1) >= top - 1e-6).all()


def test_without_embeddings_the_homolog_check_keeps_its_last_answer_where_the_type_stays():
    """A case file opened again has no embeddings: re-running the assignment (after a
    correction) must not wipe the homolog warnings it can no longer recompute."""
    cell = generate_cell("46,XY", seed=5)
    types = [c.given.value for c in cell.chromosomes]
    probabilities = confident(types)
    apply_assignment(cell, list(range(len(cell))), probabilities, assign_types(probabilities))
    a = types.index(T.autosome(4).value)
    b = types.index(T.autosome(7).value)
    kept = cell.chromosomes[types.index(T.autosome(12).value)]
    for chromosome in (cell.chromosomes[a], cell.chromosomes[b], kept):
        chromosome.flags.add(Flag.HOMOLOG_UNLIKE)  # as the check said at classification
    assert all(c.embedding is None for c in cell.chromosomes)
    probabilities[[a, b]] = probabilities[[b, a]]  # a 4 and a 7 now read the other way
    apply_assignment(cell, list(range(len(cell))), probabilities, assign_types(probabilities))
    assert cell.chromosomes[a].label is T.autosome(7)
    assert Flag.HOMOLOG_UNLIKE in kept.flags  # the same type: the last answer stands
    assert Flag.HOMOLOG_UNLIKE not in cell.chromosomes[a].flags  # new type: not known
    assert Flag.HOMOLOG_UNLIKE not in cell.chromosomes[b].flags


def _with_debris(karyotype: str, debris: dict[int, float], seed: int = 0) -> np.ndarray:
    """A cell's confident crops and, last, one more object read as ``debris`` says."""
    probabilities = np.vstack([confident(types_of(karyotype), seed=seed), np.zeros(N_TYPES)])
    blend(probabilities, len(probabilities) - 1, debris)
    return probabilities


def test_an_object_the_finder_doubts_that_fits_no_free_place_is_set_aside():
    # a speck read as "4" beside two sure 4s: without the finder's doubt it becomes a
    # third 4 (47,XY,+4) or pushes a true chromosome out of its place
    probabilities = _with_debris("46,XY", {T.autosome(4).value: 0.5, T.autosome(5).value: 0.3})
    counted = assign_types(probabilities)
    assert not counted.set_aside.any() and counted.count == 47

    doubt = np.zeros(len(probabilities))
    doubt[-1] = 0.3
    result = assign_types(probabilities, not_chromosome=doubt)

    assert result.set_aside.tolist() == [False] * 46 + [True]
    assert result.types[-1] == T.autosome(4).value  # it keeps the model's own first choice
    kept = result.types[~result.set_aside]
    assert kept.tolist() == types_of("46,XY")
    # in doubt as its own reading says
    assert result.doubts[-1] == pytest.approx(1 - probabilities[-1, T.autosome(4).value])


def test_a_sure_object_or_a_reviewers_label_is_never_set_aside():
    # a true trisomy 21 the finder was sure of: the third 21 counts
    probabilities = _with_debris("46,XY", {T.autosome(21).value: 0.95, T.autosome(22).value: 0.05})
    result = assign_types(probabilities, not_chromosome=np.zeros(len(probabilities)))
    assert not result.set_aside.any() and result.karyotype == "47,XY,+21"
    # a doubtful object a reviewer labelled is a chromosome, whatever the finder thought
    debris = _with_debris("46,XY", {T.autosome(4).value: 0.5, T.autosome(5).value: 0.3})
    doubt = np.zeros(len(debris))
    doubt[-1] = 0.3
    fixed = assign_types(debris, fixed={len(debris) - 1: T.autosome(4).value},
                         not_chromosome=doubt)
    assert not fixed.set_aside.any() and fixed.types[-1] == T.autosome(4).value
    with pytest.raises(ValueError, match="not_chromosome"):
        assign_types(debris, not_chromosome=np.zeros(3))


def test_a_set_aside_object_is_shown_unclassified_and_not_counted_until_labelled(tmp_path):
    cell = generate_cell("46,XY", seed=6)
    extra = cell.chromosomes[0].__class__(id="m999", image=cell.chromosomes[0].image)
    cell.chromosomes.append(extra)
    probabilities = _with_debris("46,XY", {T.autosome(4).value: 0.5, T.autosome(5).value: 0.3})
    rows = [types_of("46,XY").index(c.given.value) for c in cell.chromosomes[:-1]]
    ordered = np.vstack([probabilities[:-1][rows], probabilities[-1:]])
    doubt = np.zeros(len(ordered))
    doubt[-1] = 0.3

    apply_assignment(cell, list(range(len(cell))), ordered,
                     assign_types(ordered, not_chromosome=doubt))

    assert extra.label is T.UNCLASSIFIED and extra.predicted is T.autosome(4)
    assert Flag.SET_ASIDE in extra.flags and not extra.counted
    assert Flag.LOW_CONFIDENCE not in extra.flags
    assert cell.karyotype == "46,XY"  # not 47,XY,+mar
    assert count_text(cell) == "46 chromosomes counted, 1 set aside"  # the status bar's words
    # saved and opened again, it is still set aside and still not counted
    case = Case(case_id="c", cells=[cell])
    save_case(case, tmp_path / "c.karyo")
    again = load_case(tmp_path / "c.karyo").cells[0]
    assert Flag.SET_ASIDE in again.chromosome("m999").flags and again.karyotype == "46,XY"
    # a reviewer who sees a chromosome there gives it its type: now it counts
    cell.set_manual_label("m999", T.autosome(4), by="reviewer")
    assert extra.counted and cell.karyotype == "47,XY,+4"
    assert count_text(cell) == "47 chromosomes"
    # classified again, the labelled object stays counted and loses the flag
    apply_assignment(cell, list(range(len(cell))), ordered,
                     assign_types(ordered, fixed={len(cell) - 1: T.autosome(4).value},
                                  not_chromosome=doubt))
    assert Flag.SET_ASIDE not in extra.flags and extra.counted


def test_a_candidate_a_reviewer_labelled_stays_and_one_set_aside_leaves():
    cell = generate_cell("46,XY", seed=7)
    image = cell.chromosomes[0].image
    faint = Chromosome(id="m998", image=image,
                       flags={Flag.CANDIDATE, Flag.FINDER_UNSURE, Flag.SET_ASIDE})
    labelled = Chromosome(id="m999", image=image, flags={Flag.CANDIDATE, Flag.SET_ASIDE})
    cell.chromosomes += [faint, labelled]
    cell.set_manual_label("m999", T.autosome(4), by="reviewer")

    assert drop_unplaced_candidates(cell) == ["m998"]
    assert "m998" not in [c.id for c in cell.chromosomes] and len(cell) == 47
    assert not any(Flag.CANDIDATE in c.flags for c in cell.chromosomes)
    assert Flag.FAINT in next(c for c in cell.chromosomes if c.id == "m999").flags
    assert drop_unplaced_candidates(cell) == []  # only the first assignment drops


def test_a_faint_candidate_never_decides_the_sex_of_the_cell():
    # a speck the finder found faintly, read as a Y, beside a cell of one X: allowed to be a
    # Y it makes 46,XY; a candidate fills free autosome places only, so the cell stays 45,X
    probabilities = _with_debris("45,X", {T.Y.value: 0.7, T.autosome(21).value: 0.1})
    doubt = np.zeros(len(probabilities))
    doubt[-1] = 0.6
    assert assign_types(probabilities, not_chromosome=doubt).karyotype == "46,XY"

    candidate = np.zeros(len(probabilities), bool)
    candidate[-1] = True
    result = assign_types(probabilities, not_chromosome=doubt, autosome_only=candidate)
    assert result.types[-1] not in (T.X.value, T.Y.value)
    assert result.set_aside[-1] and result.karyotype == "45,X"
    # a reviewer who labels it a Y is not overruled
    fixed = assign_types(probabilities, fixed={len(probabilities) - 1: T.Y.value},
                         not_chromosome=doubt, autosome_only=candidate)
    assert fixed.types[-1] == T.Y.value and fixed.karyotype == "46,XY"


def _torn_sex(karyotype: str, y_weight: float, seed: int = 0) -> np.ndarray:
    """A cell whose Y is torn between a Y (``y_weight``) and an X, the other chromosomes
    clear: 46,XY if it is a Y, 46,XX if it is an X."""
    types = types_of(karyotype)
    probabilities = confident(types, seed=seed)
    row = types.index(T.Y.value)
    blend(probabilities, row, {T.Y.value: y_weight, T.X.value: 1 - y_weight})
    return probabilities


def test_the_cells_own_word_on_its_sex_does_not_depend_on_the_prior():
    torn = _torn_sex("46,XY", 0.5)
    even = assign_types(torn)
    leaning = assign_types(torn, KaryotypePrior(female=0.9))
    assert even.female_log_odds == pytest.approx(leaning.female_log_odds)
    assert assign_types(confident(types_of("46,XX"))).female_log_odds > 5
    assert assign_types(confident(types_of("46,XY"))).female_log_odds < -5


def test_a_cell_alone_or_among_silent_cells_keeps_an_even_share():
    assert case_female_shares([]) == []
    assert case_female_shares([-3.0]) == [pytest.approx(0.5)]
    assert case_female_shares([2.0, None]) == [pytest.approx(0.5),
                                                pytest.approx(0.5 + (0.5 - CASE_SEX_MOSAIC / 2)
                                                              * np.tanh(1.0))]
    with pytest.raises(ValueError, match="mosaic"):
        case_female_shares([1.0], mosaic=1.5)


def test_the_other_cells_of_a_case_lean_a_cells_share_but_never_beyond_the_mosaic_share():
    shares = case_female_shares([-40.0, -40.0, -40.0, 1.0])
    # the last cell hears three sure XY cells: its share of XX falls to the floor the mosaic
    # share leaves, however sure they are; each of the others hears two XY and one XX
    assert shares[3] == pytest.approx(CASE_SEX_MOSAIC / 2, rel=1e-3)
    assert all(share < 0.5 for share in shares)
    assert case_female_shares([-40.0, -40.0, 1.0], cap=0.0) == [pytest.approx(0.5)] * 3


def test_a_cell_in_doubt_follows_its_case_and_a_sure_one_keeps_its_own_sex():
    xy_case = KaryotypePrior(female=case_female_shares([-40.0, -40.0, 0.0])[2])
    # a cell whose Y might be an X reads XX alone; in an XY case it reads XY, and stays in
    # doubt by its own chromosomes, so its X and Y are still flagged for a person
    torn = _torn_sex("46,XY", 0.4)
    assert assign_types(torn).sex == "XX"
    leaning = assign_types(torn, xy_case)
    assert leaning.karyotype == "46,XY" and leaning.sex_in_doubt
    # a clear 46,XX cell in the same case (a chimera, or another person's cell) stays XX
    assert assign_types(confident(types_of("46,XX")), xy_case).karyotype == "46,XX"
    # and a 45,X cell reads 45,X whatever the case's sex: the count shows the mosaic
    assert assign_types(confident(types_of("45,X")), xy_case).karyotype == "45,X"
