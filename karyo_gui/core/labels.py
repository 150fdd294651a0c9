"""Chromosome types: the 24 classes 1-22, X, Y and the bucket for objects of no type.

The integer value of a type is its class index (0..23 for the 24 types the model
predicts, 24 for the unclassified bucket), so ``ChromosomeType(k)`` maps a
classifier output back to a type.
"""

from __future__ import annotations

import enum
import re

N_TYPES = 24  # 1-22, X, Y: what a classifier predicts


class ChromosomeType(enum.IntEnum):
    CHR1 = 0
    CHR2 = 1
    CHR3 = 2
    CHR4 = 3
    CHR5 = 4
    CHR6 = 5
    CHR7 = 6
    CHR8 = 7
    CHR9 = 8
    CHR10 = 9
    CHR11 = 10
    CHR12 = 11
    CHR13 = 12
    CHR14 = 13
    CHR15 = 14
    CHR16 = 15
    CHR17 = 16
    CHR18 = 17
    CHR19 = 18
    CHR20 = 19
    CHR21 = 20
    CHR22 = 21
    X = 22
    Y = 23
    UNCLASSIFIED = 24  # not a chromosome type: debris, overlaps, marker chromosomes

    @property
    def display_name(self) -> str:
        """What a cytogeneticist writes: ``1``..``22``, ``X``, ``Y``, ``?``."""
        if self.is_autosome:
            return str(self.value + 1)
        return {ChromosomeType.X: "X", ChromosomeType.Y: "Y"}.get(self, "?")

    @property
    def is_autosome(self) -> bool:
        return self.value < 22

    @property
    def is_sex_chromosome(self) -> bool:
        return self in (ChromosomeType.X, ChromosomeType.Y)

    @property
    def group(self) -> str:
        """Denver group A-G (X goes with group C, Y with group G); '' for unclassified."""
        if self is ChromosomeType.UNCLASSIFIED:
            return ""
        if self is ChromosomeType.X:
            return "C"
        if self is ChromosomeType.Y:
            return "G"
        number = self.value + 1
        for last, letter in ((3, "A"), (5, "B"), (12, "C"), (15, "D"), (18, "E"), (20, "F")):
            if number <= last:
                return letter
        return "G"

    @classmethod
    def autosome(cls, number: int) -> ChromosomeType:
        if not 1 <= number <= 22:
            raise ValueError(f"there is no autosome {number}; autosomes are 1-22")
        return cls(number - 1)

    @classmethod
    def types(cls) -> list[ChromosomeType]:
        """The 24 types a classifier predicts, in karyogram order (no unclassified)."""
        return [cls(i) for i in range(N_TYPES)]

    @classmethod
    def from_name(cls, name: str) -> ChromosomeType:
        """Parse a class name as labs and datasets write it.

        Accepts ``7``, ``chr7``, ``chromosome7``, ``clase7``, ``class7``, ``X``, ``chrX``,
        ``Y``; in the numbered conventions (``claseN``, ``N``) 23 = X, 24 = Y and
        25 = other; ``other``, ``unclassified``, ``mar`` and ``?`` = unclassified.
        Raises ValueError with the name for anything else.
        """
        text = name.strip().lower()
        if text in _UNCLASSIFIED_NAMES:
            return cls.UNCLASSIFIED
        match = _NAME_PATTERN.fullmatch(text)
        if match is None:
            raise ValueError(f"{name!r} is not a chromosome class name")
        value = match.group("value")
        if value == "x":
            return cls.X
        if value == "y":
            return cls.Y
        number = int(value)
        if 1 <= number <= 22:
            return cls.autosome(number)
        if number in _NUMBERED_EXTRAS:
            return _NUMBERED_EXTRAS[number]
        raise ValueError(f"{name!r} is not a chromosome class name (number {number})")


_UNCLASSIFIED_NAMES = {"other", "others", "unclassified", "unknown", "mar", "marker", "?"}
_NAME_PATTERN = re.compile(r"(?:chr|chromosome|clase|class|c)?[ _-]?(?P<value>\d{1,2}|x|y)")
_NUMBERED_EXTRAS = {
    23: ChromosomeType.X,
    24: ChromosomeType.Y,
    25: ChromosomeType.UNCLASSIFIED,
}
