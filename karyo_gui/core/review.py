"""A reviewer's work on a cell, without Qt: reversible edits, typed types, what needs a look.

Every edit is a small object with ``apply()`` and ``revert()`` so that the app's undo stack
only wraps them; each change goes through :class:`~karyo_gui.core.case.Cell`, which writes
the audit trail (who, when, from, to).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from karyo_gui.core.case import (
    INFORMATION_FLAGS,
    ORIENTATION_FLAGS,
    Case,
    Cell,
    Chromosome,
    Flag,
    ManualLabel,
    Orientation,
)
from karyo_gui.core.labels import N_TYPES, ChromosomeType


@dataclass
class LabelEdit:
    """Chromosomes given new types by hand: a reassign (one) or a swap of two."""

    cell: Cell
    changes: dict[str, ChromosomeType]
    by: str
    text: str = ""
    _before: dict[str, ManualLabel | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._before = {id_: self.cell.chromosome(id_).manual for id_ in self.changes}

    def apply(self) -> None:
        for chromosome_id, label in self.changes.items():
            self.cell.set_manual_label(chromosome_id, label, by=self.by)

    def revert(self) -> None:
        for chromosome_id, manual in self._before.items():
            self.cell.restore_manual_label(chromosome_id, manual, by=self.by)


@dataclass
class OrientationEdit:
    """A chromosome turned or mirrored for display."""

    cell: Cell
    chromosome_id: str
    after: Orientation
    by: str
    text: str = ""
    _before: Orientation = field(init=False, repr=False)
    _was_unsure: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        chromosome = self.cell.chromosome(self.chromosome_id)
        self._before = chromosome.orientation
        self._was_unsure = Flag.ORIENTATION_UNSURE in chromosome.flags

    def apply(self) -> None:
        self.cell.set_orientation(self.chromosome_id, self.after, by=self.by)
        # the reviewer has decided which way up it stands: no longer in doubt
        self.cell.chromosome(self.chromosome_id).flags.discard(Flag.ORIENTATION_UNSURE)

    def revert(self) -> None:
        self.cell.set_orientation(self.chromosome_id, self._before, by=self.by)
        if self._was_unsure:
            self.cell.chromosome(self.chromosome_id).flags.add(Flag.ORIENTATION_UNSURE)


def reassign(cell: Cell, chromosome_id: str, label: ChromosomeType, by: str) -> LabelEdit | None:
    """Move one chromosome to another type; None when it already shows that type."""
    chromosome = cell.chromosome(chromosome_id)
    if chromosome.label is label and chromosome.manual is not None:
        return None
    if chromosome.label is label:  # confirming the model's type still records the reviewer
        text = f"Confirm {chromosome_id} as {label.display_name}"
    else:
        text = f"Move {chromosome_id} from {chromosome.label.display_name} to {label.display_name}"
    return LabelEdit(cell, {chromosome_id: label}, by, text)


def swap(cell: Cell, first_id: str, second_id: str, by: str) -> LabelEdit | None:
    """Exchange the types of two chromosomes; None when they show the same type."""
    first, second = cell.chromosome(first_id), cell.chromosome(second_id)
    if first_id == second_id or first.label is second.label:
        return None
    text = (
        f"Swap {first_id} ({first.label.display_name}) "
        f"and {second_id} ({second.label.display_name})"
    )
    return LabelEdit(cell, {first_id: second.label, second_id: first.label}, by, text)


def turn(cell: Cell, chromosome_id: str, by: str) -> OrientationEdit:
    """Rotate a chromosome by 180 degrees (p-arm up when it stood upside down)."""
    after = cell.chromosome(chromosome_id).orientation.rotated(180)
    return OrientationEdit(cell, chromosome_id, after, by, f"Rotate {chromosome_id} by 180°")


def mirror(cell: Cell, chromosome_id: str, by: str) -> OrientationEdit:
    """Flip a chromosome left to right."""
    after = cell.chromosome(chromosome_id).orientation.mirrored()
    return OrientationEdit(cell, chromosome_id, after, by, f"Flip {chromosome_id}")


# ------------------------------------------------------------------ what needs a look
def needs_review(chromosome: Chromosome, orientation: bool = False) -> bool:
    """Needs a look and not yet set by hand: its type is in doubt, its picture is missing or
    changed, the finder is unsure of it... Orientation doubts count only with
    ``orientation=True``; a chromosome the assignment moved confidently never does."""
    if chromosome.manual is not None:
        return False
    asking = chromosome.flags - INFORMATION_FLAGS
    if not orientation:
        asking -= ORIENTATION_FLAGS
    return bool(asking)


# flags of the finder that put the cell's count in doubt: an object that may be two
# touching chromosomes, or crosses another, or may be no chromosome at all
COUNT_FLAGS = frozenset({Flag.CLUSTER, Flag.OVERLAP, Flag.FINDER_UNSURE, Flag.SET_ASIDE})


@dataclass(frozen=True)
class OpenQuestions:
    """What still needs a look in one cell the case rests on (a cell with a role)."""

    cell: str
    to_check: int  # chromosomes that need a look (orientation doubts apart)
    count_in_doubt: int  # of them, objects whose flags put the cell's count in doubt

    def text(self) -> str:
        line = f"{self.cell}: {self.to_check} chromosome(s) to check"
        if self.count_in_doubt:
            line += (f", {self.count_in_doubt} of them may change the count (touching, "
                     "crossing or perhaps no chromosome)")
        return line


def open_questions(case: Case) -> list[OpenQuestions]:
    """The cells with a role (counted, analysed, karyogrammed) that still have chromosomes
    needing a look, in case order: what a reviewer should settle before signing."""
    questions = []
    for cell in case.cells:
        if not cell.roles:
            continue
        pending = [c for c in cell.chromosomes if needs_review(c)]
        if pending:
            questions.append(OpenQuestions(cell.name, len(pending),
                                           sum(bool(c.flags & COUNT_FLAGS) for c in pending)))
    return questions


def open_questions_text(questions: Sequence[OpenQuestions], limit: int = 5) -> list[str]:
    """At most ``limit`` lines, the rest summed up in one."""
    lines = [q.text() for q in questions[:limit]]
    if len(questions) > limit:
        rest = questions[limit:]
        lines.append(f"and {len(rest)} more cell(s) with "
                     f"{sum(q.to_check for q in rest)} chromosome(s) to check")
    return lines


# what each flag says to the reviewer, in words
FLAG_WORDS = {
    Flag.LOW_CONFIDENCE: "type unsure",
    Flag.HOMOLOG_UNLIKE: "unlike its homolog",
    Flag.SEX_UNCERTAIN: "sex chromosome call uncertain",
    Flag.MOVED_BY_ASSIGNMENT: "type from the karyotype assignment",
    Flag.ORIENTATION_UNSURE: "orientation unsure",
    Flag.IMAGE_MISSING: "picture missing",
    Flag.IMAGE_CHANGED: "picture changed since it was saved",
    Flag.FINDER_UNSURE: "the finder is unsure it is a chromosome",
    Flag.CLUSTER: "may be touching chromosomes",
    Flag.OVERLAP: "crosses another chromosome",
    Flag.SET_ASIDE: "not counted: perhaps no chromosome (debris, a piece, or two as one)",
    Flag.CANDIDATE: "found faintly: kept only if it fills a free place of the karyotype",
    Flag.FAINT: "found faintly",
}


def flags_text(chromosome: Chromosome) -> str:
    """The chromosome's flags in words, what needs a look first: "flags: type unsure, ...";
    the model's first choice is named where the assignment gave another type."""
    order = list(FLAG_WORDS)
    words = []
    for flag in sorted(chromosome.flags, key=order.index):
        text = FLAG_WORDS[flag]
        if flag is Flag.MOVED_BY_ASSIGNMENT and chromosome.predicted is not None:
            text += f" (the model's first choice: {chromosome.predicted.display_name})"
        words.append(text)
    return "flags: " + ", ".join(words) if words else ""


def count_text(cell: Cell) -> str:
    """How many chromosomes the cell holds, in words: "46 chromosomes", or, where the
    assignment set some aside, "46 chromosomes counted, 1 set aside" (the ISCN's count)."""
    aside = sum(not chromosome.counted for chromosome in cell.chromosomes)
    if not aside:
        return f"{len(cell)} chromosomes"
    return f"{len(cell) - aside} chromosomes counted, {aside} set aside"


def orientation_unsure(chromosome: Chromosome) -> bool:
    """The model's p-arm-up guess is near even and no reviewer has turned it since."""
    return bool(chromosome.flags & ORIENTATION_FLAGS)


def confidence(chromosome: Chromosome) -> float | None:
    """The model's probability of the type shown; None when there is no probability for it."""
    label = chromosome.label
    if chromosome.probabilities is None or label.value >= N_TYPES:
        return None
    return float(chromosome.probabilities[label.value])


def next_flagged(
    order: Sequence[str], flagged: set[str], current: str | None, step: int = 1
) -> str | None:
    """The next (``step=1``) or previous (``-1``) flagged id after ``current`` in reading
    order, wrapping round; None when nothing is flagged."""
    candidates = [id_ for id_ in order if id_ in flagged]
    if not candidates:
        return None
    if current not in order:
        return candidates[0] if step > 0 else candidates[-1]
    start = order.index(current)
    for offset in range(1, len(order) + 1):
        id_ = order[(start + step * offset) % len(order)]
        if id_ in flagged:
            return id_
    return None


# ------------------------------------------------------------------ typing a type
_TWO_DIGIT_STARTS = {"1", "2"}  # 1 may become 10-19, 2 may become 20-22


@dataclass
class TypedType:
    """Keys typed on a selected chromosome, read as its new type.

    ``3``-``9``, ``X`` and ``Y`` are a type at once; ``1`` and ``2`` wait for a second digit
    (``1`` then ``7`` is 17) and become 1 or 2 on :meth:`finish` (Enter or a short pause);
    ``U`` sends the chromosome to the unclassified bucket (not a chromosome, or of no type).
    """

    pending: str = ""

    def feed(self, key: str) -> ChromosomeType | None:
        """The type completed by this key, or None (waiting, or the key means nothing)."""
        key = key.strip().upper()
        if key in ("X", "Y", "U"):
            self.pending = ""
            return {"X": ChromosomeType.X, "Y": ChromosomeType.Y}.get(
                key, ChromosomeType.UNCLASSIFIED)
        if len(key) != 1 or not key.isdigit():
            self.pending = ""
            return None
        text = self.pending + key
        if not self.pending and key in _TWO_DIGIT_STARTS:
            self.pending = key
            return None
        self.pending = ""
        number = int(text)
        if text.startswith("0") or not 1 <= number <= 22:
            return None
        return ChromosomeType.autosome(number)

    def finish(self) -> ChromosomeType | None:
        """A waiting ``1`` or ``2`` taken as it is."""
        text, self.pending = self.pending, ""
        return ChromosomeType.autosome(int(text)) if text else None


def corrected_chromosomes(cell: Cell) -> int:
    """How many chromosomes a reviewer gave another type than karyo's: a drag and its undo
    count nothing, a swap counts its two chromosomes (not the audit entries it made)."""
    corrected = 0
    for chromosome in cell.chromosomes:
        if chromosome.manual is None:
            continue
        machine = chromosome.assigned or chromosome.predicted or chromosome.given
        corrected += chromosome.manual.label is not machine
    return corrected
