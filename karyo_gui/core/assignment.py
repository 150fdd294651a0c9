"""Karyotype-aware assignment: the types of a whole cell decided together.

A cell is not n independent guesses. A normal cell holds two homologs of every autosome
and XX or XY, so when the classifier calls three crops "4" and one "5", one of the "4"s
is probably the missing 5. The assignment picks the labelling of the whole cell that is
most probable under the classifier's per-crop probabilities AND a prior over karyotypes:

    cost(labelling) = sum over crops of -log p(crop is its type)
                      + sum over deviations from the normal karyotype of -log rate(deviation)

Deviations are losses (a chromosome missing from the spread, a monosomy, 45,X) and gains
(a trisomy such as +21, 47,XXY), each at a rate per cell a lab sees (``KaryotypePrior``).
Aneuploid cells are therefore found by comparing hypotheses on one scale, never by
forcing 46. The prior factorises over types, so for each sex baseline (XX, XY) the best
labelling is ONE min-cost assignment (scipy's ``linear_sum_assignment``) of crops to
slots: the expected copies of a type are slots with a bonus of the loss penalty (leaving
one empty costs that penalty), extra copies are slots priced by the gain penalty. The
cheaper baseline wins. Everything is a negative log probability, so costs of different
cells and hypotheses compare directly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from karyo_gui.core.case import Cell, Flag
from karyo_gui.core.iscn import karyotype_string, sex_chromosomes
from karyo_gui.core.labels import N_TYPES, ChromosomeType

_X, _Y = ChromosomeType.X.value, ChromosomeType.Y.value
_FLOOR = 1e-6  # no crop's probability counts as lower: one mistake costs at most 13.8
_NEVER = 1e6  # the cost of setting aside a crop that surely is a chromosome
# A sex chromosome call decides a diagnosis, so it is held to a higher bar than other types:
# an X or Y assigned below this probability is flagged "sex uncertain"...
SEX_CONFIDENT = 0.95
# ...and so is every X and Y of a cell whose best labelling of the other sex is less than
# this many times less probable (odds 100:1): the cell's sex then rests on doubtful crops
SEX_ODDS = 100.0
# a chromosome whose assigned type is wrong with a probability above this is flagged
# "type unsure" (chosen with HOMOLOG_UNLIKE on the val cells of both labs by
# bench/flag_quality.py: of the rules that flag no more chromosomes of the cells the model
# got right than 0.1 / 0.2 did, the one that catches the most wrong types and keeps the
# homolog check; the model card has the figures)
TYPE_DOUBT = 0.08
# a chromosome whose picture is this much more like (cosine of the model's embeddings) a
# chromosome given another type than like its most alike homolog is flagged "homolog
# unlike" (a swapped pair looks so: each is its true type's twin); chosen with TYPE_DOUBT
HOMOLOG_UNLIKE = 0.3


def _default_gains() -> dict[str, float]:
    # live-born and referral frequencies: trisomy 21 is the most common aneuploidy a lab
    # sees, then 47,XXY / 47,XXX / 47,XYY, +18 and +13; other trisomies are rarely viable
    return {"21": 0.01, "18": 0.004, "13": 0.002, "X": 0.004, "Y": 0.002}


def _default_losses() -> dict[str, float]:
    return {"X": 0.004}  # 45,X (Turner syndrome) beside the random loss of any chromosome


@dataclass(frozen=True)
class KaryotypePrior:
    """How often a cell deviates from 46,XX / 46,XY, per deviation (a probability per cell).

    ``loss``: one copy of a given type missing (lost while spreading, or a monosomy);
    ``gain``: one extra copy of a given type; ``gains`` and ``losses`` override both for
    named types (``"21"``, ``"X"``). ``female``: the prior share of XX cells.
    """

    loss: float = 0.003
    gain: float = 0.0005
    gains: Mapping[str, float] = field(default_factory=_default_gains)
    losses: Mapping[str, float] = field(default_factory=_default_losses)
    female: float = 0.5

    def __post_init__(self) -> None:
        rates = [self.loss, self.gain, *self.gains.values(), *self.losses.values()]
        if not all(0 < rate < 1 for rate in rates) or not 0 < self.female < 1:
            raise ValueError("karyotype prior rates must lie strictly between 0 and 1")
        for name in [*self.gains, *self.losses]:
            ChromosomeType.from_name(name)  # raises ValueError naming a bad type

    def _penalties(self, rates: Mapping[str, float], default: float) -> np.ndarray:
        penalty = np.full(N_TYPES, -math.log(default))
        for name, rate in rates.items():
            penalty[ChromosomeType.from_name(name).value] = -math.log(rate)
        return penalty

    @property
    def loss_penalties(self) -> np.ndarray:
        return self._penalties(self.losses, self.loss)

    @property
    def gain_penalties(self) -> np.ndarray:
        return self._penalties(self.gains, self.gain)


_BASELINES = {"XX": 2, "XY": 1}  # copies of X; the XY baseline also expects one Y
# a cell's own sex evidence is held within this many nats (a reviewer's X or Y label makes
# the other sex all but impossible; 30 nats is far beyond any doubt and stays finite)
_EVIDENCE_CAP = 30.0


@dataclass(frozen=True)
class CellAssignment:
    """The types of a cell's crops after the assignment, and the karyotype they make."""

    types: np.ndarray  # (n,) class index per crop
    predicted: np.ndarray  # (n,) the classifier's own argmax
    margins: np.ndarray  # (n,) p(assigned type) - the highest other probability
    karyotype: str  # ISCN of the assigned types
    cost: float  # -log probability of the labelling, up to a constant shared by all
    alternative: str  # the best karyotype of the other sex baseline...
    alternative_cost: float  # ...and its cost: the gap says how sure the call is
    alternative_sex: str = ""  # the sex chromosomes of that alternative
    # (n,) probability that each crop's assigned type is wrong, read from the cell as a
    # whole: the best labelling that gives the crop ANY other type (moving its homologs and
    # the karyotype with it) against the chosen one, 1 / (1 + exp(cost gap)); 0 for a crop
    # a reviewer labelled
    doubts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # (n,) crops set aside as likely not a chromosome (``assign_types(not_chromosome=...)``):
    # each keeps its own best type and took no slot of the karyotype
    set_aside: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    # the cell's own word on its sex: log odds of its best XX labelling against its best XY
    # labelling, whatever share of XX cells the prior assumed (see case_female_shares)
    female_log_odds: float = 0.0
    baseline: str = "XX"  # the sex baseline of the chosen labelling ("XX" or "XY")

    @property
    def sex_in_doubt(self) -> bool:
        """The other sex is almost as probable as the one called (odds below SEX_ODDS), by
        the cell's own chromosomes: a sex the case's other cells decided stays in doubt."""
        own_gap = self.female_log_odds if self.baseline == "XX" else -self.female_log_odds
        return self.alternative_sex != self.sex and own_gap < math.log(SEX_ODDS)

    @property
    def counted(self) -> np.ndarray:
        """The types of the crops the karyotype counts (all but those set aside)."""
        return self.types[~self.set_aside] if len(self.set_aside) else self.types

    @property
    def count(self) -> int:
        return len(self.counted)

    @property
    def sex(self) -> str:
        """The sex chromosome complement: ``XX``, ``XY``, ``X``, ``XXY``...; '' if none."""
        return sex_chromosomes(_counts(self.counted))

    @property
    def changed(self) -> np.ndarray:
        """Indices of the crops whose type the assignment changed from the argmax."""
        return np.flatnonzero(self.types != self.predicted)

    def low_confidence(self, doubt: float | None = None) -> np.ndarray:
        """Indices of the crops whose assigned type is wrong with a probability above
        ``doubt`` (default :data:`TYPE_DOUBT`): the ones a reviewer should look at."""
        return np.flatnonzero(self.doubts > (TYPE_DOUBT if doubt is None else doubt))


def calibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities as the network's logits divided by ``temperature`` would give them
    (temperature scaling: p ** (1 / T), renormalised, is exactly softmax(logits / T)).
    T > 1 softens an overconfident model; the order of the types never changes."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1 or not len(probabilities):
        return probabilities.astype(np.float32)
    logs = np.log(np.clip(probabilities, 1e-30, None)) / temperature
    logs -= logs.max(axis=1, keepdims=True)
    scaled = np.exp(logs)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


def _check(probabilities: np.ndarray) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != N_TYPES:
        raise ValueError(
            f"probabilities must have shape (crops, {N_TYPES}), not {probabilities.shape}"
        )
    if not np.isfinite(probabilities).all() or (probabilities < 0).any():
        raise ValueError("probabilities must be finite and not negative")
    return probabilities


def _solve(
    costs: np.ndarray,
    expected: np.ndarray,
    loss: np.ndarray,
    gain: np.ndarray,
    fixed_counts: np.ndarray,
    aside: np.ndarray | None = None,
) -> tuple[np.ndarray, float, np.ndarray]:
    """The best types for one baseline (expected copies per type), the labelling's cost and
    the crops it set aside. ``aside``: per crop, the cost of setting it aside (not a
    chromosome of the cell: it takes no slot and keeps its own best type), or None when
    every crop is one."""
    n = len(costs)
    extra = 2 + max(0, math.ceil((n - int(expected.sum())) / N_TYPES))
    slot_type, slot_offset = [], []
    for t in range(N_TYPES):
        # room for every crop a reviewer fixed to the type, however many that is
        for copy in range(max(int(expected[t]) + extra, int(fixed_counts[t]))):
            surplus = copy + 1 - expected[t]
            slot_type.append(t)
            slot_offset.append(-loss[t] if surplus <= 0 else gain[t] * surplus)
    from scipy.optimize import linear_sum_assignment  # 0.7 s to import: not before it is needed

    slot_type = np.asarray(slot_type)
    matrix = costs[:, slot_type] + np.asarray(slot_offset)[None, :]
    if aside is not None:  # one set-aside column per crop, priced by the crop
        matrix = np.hstack([matrix, np.repeat(aside[:, None], n, 1)])
    rows, columns = linear_sum_assignment(matrix)
    types = np.argmin(costs, axis=1) if n else np.zeros(0, np.int64)
    kept = columns < len(slot_type)
    types[rows[kept]] = slot_type[columns[kept]]
    # turning the bonuses of the expected slots into penalties for the empty ones
    cost = float(matrix[rows, columns].sum() + (expected * loss).sum())
    set_aside = np.zeros(n, bool)
    set_aside[rows[~kept]] = True
    return types, cost, set_aside


def assign_types(
    probabilities: np.ndarray,
    prior: KaryotypePrior | None = None,
    fixed: Mapping[int, int] | None = None,
    not_chromosome: np.ndarray | None = None,
    autosome_only: np.ndarray | None = None,
) -> CellAssignment:
    """The most probable types of all crops of one cell, with its karyotype.

    ``probabilities``: (crops, 24) classifier probabilities over 1-22, X, Y.
    ``fixed``: crop index -> type index of crops whose type is known (a reviewer's label);
    the other crops are assigned around them.
    ``not_chromosome``: per crop, the probability that it is not one whole chromosome (an
    object the metaphase finder was unsure of: debris, a piece, two chromosomes as one).
    Such an object may be set aside: it keeps the classifier's own type and takes no slot
    of the karyotype, so a piece of debris cannot push a true chromosome out of its place.
    ``autosome_only``: per crop, whether it may not be given X or Y (a faint candidate of
    the finder: the cell's sex rests on the chromosomes found surely).
    """
    prior = prior or KaryotypePrior()
    probabilities = _check(probabilities)
    predicted = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    costs = -np.log(np.clip(probabilities, _FLOOR, None))
    fixed_counts = np.zeros(N_TYPES, np.int64)
    for index, chromosome_type in (fixed or {}).items():
        if not (0 <= index < len(costs) and 0 <= chromosome_type < N_TYPES):
            raise ValueError(f"cannot fix crop {index} to type index {chromosome_type}")
        # forbidden, not merely improbable: a finite cost was outbid by the gain penalty
        # of a third or fourth copy, and the solver overruled the reviewer
        costs[index] = np.inf
        costs[index, chromosome_type] = 0.0
        fixed_counts[chromosome_type] += 1
    if autosome_only is not None:
        only = np.asarray(autosome_only, bool).reshape(-1)
        if len(only) != len(costs):
            raise ValueError(f"autosome_only must hold one flag per crop ({len(costs)})")
        only[list(fixed or ())] = False  # a reviewer's X or Y stands
        costs[np.ix_(only, [_X, _Y])] = np.inf
    aside = _aside_costs(not_chromosome, len(costs), fixed)
    baselines = _baselines(prior)
    solved = [_solve_baseline(costs, baseline, fixed_counts, aside) for baseline in baselines]
    # the labellings' costs without the prior's share of each sex: the cell's own evidence
    own = [result[0] - baseline[3] for result, baseline in zip(solved, baselines)]
    female_log_odds = float(np.clip(own[1] - own[0], -_EVIDENCE_CAP, _EVIDENCE_CAP))
    order = sorted(range(len(solved)), key=lambda k: solved[k][0])
    (cost, types, set_aside), (alternative_cost, alternative_types, alternative_aside) = (
        solved[order[0]], solved[order[1]])
    doubts = _doubts(costs, types, cost, baselines, fixed_counts, aside, set_aside)
    assigned = probabilities[np.arange(len(types)), types]
    others = probabilities.copy()
    others[np.arange(len(types)), types] = -np.inf
    margins = assigned - (others.max(axis=1) if len(types) else np.zeros(0))
    return CellAssignment(
        types=types,
        predicted=predicted,
        margins=margins,
        karyotype=karyotype_of(types[~set_aside]),  # what is set aside is not counted
        cost=cost,
        alternative=karyotype_of(alternative_types[~alternative_aside]),
        alternative_cost=alternative_cost,
        alternative_sex=sex_chromosomes(_counts(alternative_types[~alternative_aside])),
        doubts=doubts,
        set_aside=set_aside,
        female_log_odds=female_log_odds,
        baseline=list(_BASELINES)[order[0]],
    )


# The cells of one case come from one person and share the sex chromosomes (a mosaic such
# as 45,X/46,XX shows in the count: a 45,X cell reads 45,X under either sex baseline). So a
# cell's sex is read with the case's other cells: its prior share of XX is what they say,
# held back by CASE_SEX_MOSAIC, the share of cells allowed to differ. At 2 / (1 + SEX_ODDS)
# the case leans a cell by log(SEX_ODDS) nats at most, so only a cell whose sex is in doubt
# by its own chromosomes (flagged "sex uncertain") can follow its case; a cell that is sure
# keeps its own sex. Chosen on cil24 val (the model card): of 0.02, 0.05, 0.1, 0.2 and 0.4,
# with each cell's word held within 2, 3, 5, 10 or 30 nats, 0.02 / 5 turned the most cells
# right (19 of the 26 it turned; none was right before) on both halves of the split.
CASE_SEX_MOSAIC = 2.0 / (1.0 + SEX_ODDS)
CASE_SEX_CAP = 5.0  # the most one cell's word counts, in nats (a misread cell can be sure)


def case_female_shares(evidence: list[float | None], mosaic: float = CASE_SEX_MOSAIC,
                       cap: float = CASE_SEX_CAP) -> list[float]:
    """For each cell of a case, the prior share of XX its assignment should assume: what the
    other cells' own sex evidence (``CellAssignment.female_log_odds``; None for a cell not
    yet classified) says together, each held within ``cap`` nats, mixed with an even share
    by ``mosaic``. A cell alone, or among cells that say nothing, gets 0.5."""
    if not 0 <= mosaic <= 1 or cap < 0:
        raise ValueError("the mosaic share must lie in [0, 1] and the cap be >= 0")
    held = [0.0 if value is None else float(np.clip(value, -cap, cap)) for value in evidence]
    total = sum(held)
    shares = []
    for own in held:
        others = total - own
        case_female = 1.0 / (1.0 + math.exp(-others))
        shares.append(min(max((1.0 - mosaic) * case_female + mosaic * 0.5, 1e-9), 1 - 1e-9))
    return shares


def _aside_costs(not_chromosome: np.ndarray | None, n: int, fixed: Mapping[int, int] | None
                 ) -> np.ndarray | None:
    """The cost of setting each crop aside against counting it, log((1 - q) / q) for its
    probability q of not being a chromosome; None when no crop can be set aside."""
    if not_chromosome is None:
        return None
    q = np.asarray(not_chromosome, np.float64).reshape(-1)
    if len(q) != n or not np.isfinite(q).all():
        raise ValueError(f"not_chromosome must hold one finite probability per crop ({n})")
    q = np.clip(q, 0.0, 1.0 - 1e-9)
    aside = np.full(n, _NEVER)
    doubtful = q > 0
    aside[doubtful] = np.log((1.0 - q[doubtful]) / q[doubtful])
    for index in fixed or {}:
        aside[index] = _NEVER  # a reviewer labelled it: it is a chromosome
    return aside if doubtful.any() else None


def _doubts(costs: np.ndarray, types: np.ndarray, cost: float, baselines: list,
            fixed_counts: np.ndarray, aside: np.ndarray | None = None,
            set_aside: np.ndarray | None = None) -> np.ndarray:
    """The probability that each crop's type is wrong, over the labellings near the best.

    For every crop, the best labelling that gives it any other type (its runner-up; the
    other crops follow: a swapped homolog pair, a shifted run) is solved. These labellings
    and the best one are weighed by their probabilities, exp(-cost), and a crop's doubt is
    the weight of those among them that give it another type. A crop of a pair the model
    swapped is in doubt with its partner, not only when its own runner-up is close.
    A crop set aside is in doubt as its own probabilities say (it is outside the cell's
    labelling).
    """
    alternatives: dict[bytes, tuple[float, np.ndarray]] = {}
    own = np.zeros(len(types))
    for row in range(len(types)):
        if np.isinf(costs[row]).sum() == N_TYPES - 1:
            continue  # a reviewer's label: nothing else is possible
        if set_aside is not None and set_aside[row]:
            own[row] = 1.0 - math.exp(-costs[row, types[row]])
            continue
        other = costs.copy()
        other[row, types[row]] = np.inf  # any type but the one it was given
        runner_up, runner_types, _ = min(
            (_solve_baseline(other, baseline, fixed_counts, aside) for baseline in baselines),
            key=lambda result: result[0],
        )
        alternatives.setdefault(runner_types.tobytes(), (runner_up, runner_types))
    doubts = np.zeros(len(types))
    total = 1.0  # the best labelling's own weight
    for runner_up, runner_types in alternatives.values():
        weight = math.exp(-min(runner_up - cost, 700.0))
        total += weight
        doubts[runner_types != types] += weight
    doubts /= total
    if set_aside is not None:
        doubts[set_aside] = own[set_aside]
    return doubts


def _baselines(prior: KaryotypePrior) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """The XX and the XY baseline: expected copies per type, loss and gain penalties, and
    the cost of the sex itself (-log of its prior share)."""
    baselines = []
    for sex, copies_of_x in _BASELINES.items():
        expected = np.full(N_TYPES, 2)
        expected[_X] = copies_of_x
        expected[_Y] = 2 - copies_of_x
        loss = prior.loss_penalties
        if sex == "XY":  # 45,X as a syndrome comes from the XX side; here it is a lost X
            loss[_X] = -math.log(prior.loss)
        share = prior.female if sex == "XX" else 1 - prior.female
        baselines.append((expected, loss, prior.gain_penalties, -math.log(share)))
    return baselines


def _solve_baseline(costs: np.ndarray, baseline: tuple, fixed_counts: np.ndarray,
                    aside: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """The cost of the best labelling under one baseline, its types and the crops it set
    aside."""
    expected, loss, gain, sex_cost = baseline
    types, cost, set_aside = _solve(costs, expected, loss, gain, fixed_counts, aside)
    return cost + sex_cost, types, set_aside


def homolog_gaps(types: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """How much more each chromosome is like one of another type than like its homologs.

    ``types``: the assigned class per chromosome; ``embeddings``: (n, D) the model's
    embeddings of their pictures (rows of NaN: none). Per chromosome, the cosine similarity
    to the most alike chromosome of another type minus that to its most alike homolog; NaN
    for one that cannot be judged (no embedding, no homolog or no other type).
    """
    types = np.asarray(types)
    embeddings = np.asarray(embeddings, dtype=np.float64)
    gaps = np.full(len(types), np.nan)
    known = np.isfinite(embeddings).all(axis=1) if len(embeddings) else np.zeros(0, bool)
    if known.sum() < 2:
        return gaps
    unit = np.where(known[:, None], embeddings, 0.0)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    same = (types[:, None] == types[None, :]) & known[None, :]
    np.fill_diagonal(same, False)
    other = (types[:, None] != types[None, :]) & known[None, :]
    for row in np.flatnonzero(known):
        if same[row].any() and other[row].any():
            gaps[row] = similarity[row, other[row]].max() - similarity[row, same[row]].max()
    return gaps


def homolog_unlike(types: np.ndarray, embeddings: np.ndarray,
                   margin: float = HOMOLOG_UNLIKE) -> np.ndarray:
    """Indices of the chromosomes more like one of another type than like their homologs:
    whose :func:`homolog_gaps` exceeds ``margin`` (one without a homolog is not judged)."""
    gaps = homolog_gaps(types, embeddings)
    return np.flatnonzero(np.nan_to_num(gaps, nan=-np.inf) > margin).astype(np.int64)


def sex_uncertain(cell: Cell) -> bool:
    """The cell's sex rests on a call nobody has confirmed: some chromosome the model called
    (or nearly called) X or Y carries the "sex uncertain" flag and has no reviewer's label."""
    return any(Flag.SEX_UNCERTAIN in c.flags and c.manual is None for c in cell.chromosomes)


def _counts(types: np.ndarray) -> Counter[ChromosomeType]:
    return Counter(ChromosomeType(int(t)) for t in types)


def karyotype_of(types: np.ndarray) -> str:
    """ISCN string of a cell whose crops have these class indices."""
    return karyotype_string(_counts(types))


def apply_assignment(
    cell: Cell,
    indices: list[int],
    probabilities: np.ndarray,
    assignment: CellAssignment,
    doubt: float = TYPE_DOUBT,
    model_id: str | None = None,
    homolog_margin: float = HOMOLOG_UNLIKE,
) -> list[str]:
    """Write the classification of a cell into its chromosomes; the ids the assignment moved.

    ``indices``: the chromosomes (positions in ``cell.chromosomes``) that were classified,
    in the order of the rows of ``probabilities``. Their predicted and assigned types,
    probabilities and flags are replaced; manual labels are kept as they are.
    """
    set_aside = set(np.flatnonzero(assignment.set_aside).tolist())
    moved = set(assignment.changed.tolist()) - set_aside
    unsure = set(assignment.low_confidence(doubt).tolist()) - set_aside
    embeddings = [cell.chromosomes[index].embedding for index in indices]
    if any(e is not None for e in embeddings):
        width = next(len(e) for e in embeddings if e is not None)
        stacked = np.stack([np.full(width, np.nan) if e is None or len(e) != width else e
                            for e in embeddings])
        counted_types = assignment.types.copy()
        counted_types[list(set_aside)] = ChromosomeType.UNCLASSIFIED.value  # no one's homolog
        unlike = set(homolog_unlike(counted_types, stacked, homolog_margin).tolist()
                     ) - set_aside  # fmt: skip
    else:  # no embeddings (a case file opened again): the last answer stands where the
        # chromosome keeps its type, since the check cannot be made again without them
        unlike = {row for row, index in enumerate(indices)
                  if Flag.HOMOLOG_UNLIKE in cell.chromosomes[index].flags
                  and cell.chromosomes[index].assigned is not None
                  and cell.chromosomes[index].assigned.value == int(assignment.types[row])}
    sex_types = (_X, _Y)
    changed_ids = []
    for row, index in enumerate(indices):
        chromosome = cell.chromosomes[index]
        chromosome.probabilities = probabilities[row].astype(np.float32)
        chromosome.predicted = ChromosomeType(int(assignment.predicted[row]))
        chromosome.assigned = ChromosomeType(int(assignment.types[row]))
        chromosome.flags -= {Flag.MOVED_BY_ASSIGNMENT, Flag.LOW_CONFIDENCE, Flag.HOMOLOG_UNLIKE,
                             Flag.SET_ASIDE}
        if row in set_aside and chromosome.manual is None:
            # likely no chromosome: in the unclassified bucket, not counted, the model's own
            # first choice kept as its prediction
            chromosome.assigned = ChromosomeType.UNCLASSIFIED
            chromosome.flags.add(Flag.SET_ASIDE)
            chromosome.flags.discard(Flag.SEX_UNCERTAIN)
            continue
        if row in moved and chromosome.manual is None:
            chromosome.flags.add(Flag.MOVED_BY_ASSIGNMENT)
            changed_ids.append(chromosome.id)
        if row in unsure and chromosome.manual is None:
            chromosome.flags.add(Flag.LOW_CONFIDENCE)
        if row in unlike and chromosome.manual is None:
            chromosome.flags.add(Flag.HOMOLOG_UNLIKE)
        chromosome.flags.discard(Flag.SEX_UNCERTAIN)
        assigned, predicted = int(assignment.types[row]), int(assignment.predicted[row])
        doubtful_sex_call = assigned in sex_types and (
            probabilities[row, assigned] < SEX_CONFIDENT or assignment.sex_in_doubt
        )
        overruled_sex_call = predicted in sex_types and assigned != predicted
        if chromosome.manual is None and (doubtful_sex_call or overruled_sex_call):
            chromosome.flags.add(Flag.SEX_UNCERTAIN)
    if model_id is not None:
        cell.model_id = model_id
    return changed_ids


def drop_unplaced_candidates(cell: Cell) -> list[str]:
    """After the assignment: the candidates (objects the finder found faintly) it set aside
    leave the cell, those it gave a place stay as chromosomes (flagged "finder unsure"); the
    ids dropped. A candidate a reviewer labelled always stays; one that stays is flagged
    FAINT instead."""
    dropped = [c.id for c in cell.chromosomes
               if Flag.CANDIDATE in c.flags and Flag.SET_ASIDE in c.flags and c.manual is None]
    if dropped:
        gone = set(dropped)
        cell.chromosomes = [c for c in cell.chromosomes if c.id not in gone]
    for chromosome in cell.chromosomes:
        if Flag.CANDIDATE in chromosome.flags:
            chromosome.flags.discard(Flag.CANDIDATE)
            chromosome.flags.add(Flag.FAINT)  # later assignments keep it off X and Y too
    return dropped
