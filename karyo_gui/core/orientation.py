"""Which way up a chromosome is shown: the model's p-arm-up guess, and the reviewer's word.

A karyogram shows every chromosome standing, p-arm up. The model reads each crop standing
(a crop lying on its side is turned counter-clockwise first, see :func:`is_lying`) and,
when it has an orientation head, says how likely that standing crop is upside down. The
guess becomes the chromosome's display orientation, and a guess near even is flagged
``orientation_unsure`` for the reviewer. Once a reviewer has turned or flipped a
chromosome (the audit trail says so), no later classification turns it back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from karyo_gui.core.case import Cell, Flag, Orientation

# a guess whose probability of "upside down" lies within this of 0.5 is flagged unsure:
# on the val cells of gband612 that flags 7-10 % of the crops, and the rest are right
# about 97.5 % of the time (bench/orientation.py measures it for any model)
UNSURE_MARGIN = 0.2


def is_lying(height: int, width: int) -> bool:
    """Whether a crop of this shape shows a chromosome lying on its side."""
    return width > 1.3 * height


def guessed_orientation(upside_down: float, height: int, width: int) -> Orientation:
    """The display orientation that stands a crop of this shape p-arm up, given the model's
    probability that the standing crop is upside down."""
    rotation = 90 if is_lying(height, width) else 0  # as the model read it
    return Orientation(rotation + (180 if upside_down > 0.5 else 0))


def turned_by_reviewer(cell: Cell, chromosome_id: str) -> bool:
    return any(
        entry.action == "orientation" and entry.chromosome_id == chromosome_id
        for entry in cell.audit
    )


def apply_orientation_guess(
    cell: Cell,
    indices: Sequence[int],
    upside_down: np.ndarray,
    margin: float = UNSURE_MARGIN,
) -> list[str]:
    """Stand the classified chromosomes (positions ``indices`` in ``cell.chromosomes``,
    probabilities ``upside_down`` in the same order) p-arm up; the ids whose display
    orientation changed. Chromosomes a reviewer has turned keep their orientation."""
    changed = []
    for index, probability in zip(indices, np.asarray(upside_down, float)):
        chromosome = cell.chromosomes[index]
        chromosome.flags.discard(Flag.ORIENTATION_UNSURE)
        if chromosome.image is None or turned_by_reviewer(cell, chromosome.id):
            continue
        guess = guessed_orientation(probability, *chromosome.image.shape[:2])
        if guess != chromosome.orientation:
            chromosome.orientation = guess
            changed.append(chromosome.id)
        if abs(probability - 0.5) < margin:
            chromosome.flags.add(Flag.ORIENTATION_UNSURE)
    return changed
