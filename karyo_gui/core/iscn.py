"""ISCN karyotype strings from label counts, and back.

The string is: chromosome count, the sex chromosome complement written out (``XX``,
``XY``, ``X``, ``XXY``), then gains and losses of autosomes relative to two copies in
ascending order (``+21``, ``-20``; a double loss is written twice), then marker
chromosomes (objects of no known type) as ``+mar`` / ``+2mar``. Examples: ``46,XX``,
``47,XY,+21``, ``45,X``, ``47,XXY``, ``45,XX,-20``, ``46,XXY,-17,-18,+mar``.
A cell without any sex chromosome (a partial spread) has no sex field: ``36,-13,-13``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from karyo_gui.core.labels import ChromosomeType

_DISOMY = 2


def sex_chromosomes(counts: Mapping[ChromosomeType, int]) -> str:
    """The sex chromosomes written out: ``XX``, ``XY``, ``X``, ``XXY``; '' when none."""
    return "X" * counts.get(ChromosomeType.X, 0) + "Y" * counts.get(ChromosomeType.Y, 0)


def karyotype_string(counts: Mapping[ChromosomeType, int]) -> str:
    """ISCN string of a cell whose chromosomes have the given label counts."""
    total = sum(counts.values())
    fields = [str(total)]
    sex = sex_chromosomes(counts)
    if sex:
        fields.append(sex)
    for number in range(1, 23):
        deviation = counts.get(ChromosomeType.autosome(number), 0) - _DISOMY
        sign = "+" if deviation > 0 else "-"
        fields.extend([f"{sign}{number}"] * abs(deviation))
    markers = counts.get(ChromosomeType.UNCLASSIFIED, 0)
    if markers:
        fields.append("+mar" if markers == 1 else f"+{markers}mar")
    return ",".join(fields)


_COUNT = re.compile(r"\d{1,3}")
_SEX = re.compile(r"[XY]+")
_AUTOSOME = re.compile(r"(?P<sign>[+-])(?P<type>\d{1,2}|X|Y)(?:x(?P<times>\d))?")
_MARKER = re.compile(r"\+(?P<times>\d*)mar\d*")


def parse_karyotype(text: str) -> Counter[ChromosomeType]:
    """Label counts of a numerical ISCN karyotype such as ``47,XY,+21``.

    Structural rearrangements (``t(9;22)``...) are outside what counts can express and
    raise ValueError, as does a stated count that differs from the listed complement.
    """
    fields = [field.strip() for field in text.strip().split(",")]
    if not fields or not _COUNT.fullmatch(fields[0]):
        raise ValueError(f"{text!r} is not an ISCN karyotype: it must start with a count")
    stated = int(fields[0])
    rest = fields[1:]
    counts: Counter[ChromosomeType] = Counter(
        {chromosome_type: _DISOMY for chromosome_type in ChromosomeType.types()[:22]}
    )
    if rest and _SEX.fullmatch(rest[0]):
        counts[ChromosomeType.X] = rest[0].count("X")
        counts[ChromosomeType.Y] = rest[0].count("Y")
        rest = rest[1:]
    for field in rest:
        _apply_change(field, counts, text)
    counts = Counter({k: v for k, v in counts.items() if v > 0})
    listed = sum(counts.values())
    if listed != stated:
        raise ValueError(f"{text!r} states {stated} chromosomes but describes {listed}")
    return counts


def _apply_change(field: str, counts: Counter[ChromosomeType], text: str) -> None:
    if marker := _MARKER.fullmatch(field):
        counts[ChromosomeType.UNCLASSIFIED] += int(marker.group("times") or 1)
        return
    change = _AUTOSOME.fullmatch(field)
    if change is None:
        raise ValueError(f"{text!r}: cannot read {field!r} (only numerical changes are supported)")
    name = change.group("type")
    if name.isdigit() and not 1 <= int(name) <= 22:  # from_name would read 23 as X, 25 as ?
        raise ValueError(f"{text!r}: {field!r} names no chromosome (autosomes are 1-22)")
    chromosome_type = ChromosomeType.from_name(name)
    times = int(change.group("times") or 1)
    counts[chromosome_type] += times if change.group("sign") == "+" else -times
    if counts[chromosome_type] < 0:
        raise ValueError(f"{text!r}: {field!r} removes a chromosome that is not there")
