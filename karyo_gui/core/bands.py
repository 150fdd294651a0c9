"""The ideogram bands of each chromosome, by name, at the ISCN band levels.

The bands come from ``data/cytobands.tsv``: the UCSC Genome Browser's cytoBand table for
GRCh38, which is the 850-band level (862 bands in all, haploid, counting the two halves of
each centromere). The coarser levels are **derived approximations of the ISCN ideograms,
not the ISCN tables**: sub-bands are merged into their parent band (p36.33, p36.32, p36.31
-> p36.3; p36.3, p36.2, p36.1 -> p36), smallest merged band first over the whole genome
(a band holding a centromere half last), until the level's total is as near its nominal
number as merging allows. A name is thereby always a valid ISCN designation, and the levels
nest: every band of a coarser level is a run of whole bands of each finer one whose names
start with its name. Band totals over the 24 chromosomes (haploid):

    level 300: 320 (every band merged into its two-digit band: no fewer can be named)
    level 400: 400
    level 550: 550
    level 700: 701 (the next merge would go as far below 700)
    level 850: 862 (the table)

A merged band takes the stain of its darkest part; one holding a centromere half stays
``acen``. Positions are fractions of the chromosome's sequence length from pter (0) to
qter (1); the heterochromatin of 1q12, 9q12, 16q11.2 and Yq12 is as long as the sequence
says, not as a metaphase shows it.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

BAND_LEVELS: tuple[int, ...] = (300, 400, 550, 700, 850)
CHROMOSOMES: tuple[str, ...] = (*(str(number) for number in range(1, 23)), "X", "Y")

# how dark a stain is drawn: G-positive bands by their grade; the centromere as a mid grey,
# variable heterochromatin nearly as dark as gpos100, a satellite stalk almost unstained
STAIN_DARKNESS = {
    "gneg": 0.0, "gpos25": 0.25, "gpos50": 0.5, "gpos75": 0.75, "gpos100": 1.0,
    "acen": 0.5, "gvar": 0.8, "stalk": 0.1,
}  # fmt: skip
LANDMARKS = ("p10", "q10", "cen", "pter", "qter")  # named positions that are not bands
_BAND_NAME = re.compile(r"[pq]\d{2}(?:\.\d+)?")


@dataclass(frozen=True)
class IdeogramBand:
    chromosome: str  # "1".."22", "X", "Y"
    name: str  # "p36.33", "q11.2", "q34"
    start: float  # fraction of the chromosome's length from pter (0) to qter (1)
    end: float
    stain: str  # a key of STAIN_DARKNESS

    @property
    def arm(self) -> str:
        return self.name[0]

    @property
    def darkness(self) -> float:
        """0 for an unstained band, 1 for the darkest G-band."""
        return STAIN_DARKNESS[self.stain]


@dataclass(frozen=True)
class _Band:  # a band of the table, in base pairs
    name: str
    start: int
    end: int
    stain: str


@cache
def _table() -> dict[str, tuple[_Band, ...]]:
    text = resources.files("karyo_gui.core").joinpath("data/cytobands.tsv").read_text("utf-8")
    rows: dict[str, list[_Band]] = {chromosome: [] for chromosome in CHROMOSOMES}
    for line in text.splitlines()[1:]:
        if line.startswith("#") or line.startswith("chromosome\t"):
            continue
        chromosome, start, end, name, stain = line.split("\t")
        rows[chromosome].append(_Band(name, int(start), int(end), stain))
    return {chromosome: tuple(bands) for chromosome, bands in rows.items()}


def _parent(name: str) -> str | None:
    """The band one step coarser: p36.33 -> p36.3 -> p36 -> None."""
    if "." not in name:
        return None
    shorter = name[:-1]
    return shorter[:-1] if shorter.endswith(".") else shorter


def _is_under(name: str, parent: str) -> bool:
    """Whether band ``name`` lies within band ``parent`` (or is it)."""
    if name == parent:
        return True
    return name.startswith(parent if "." in parent else parent + ".")


def _merged_stain(parts: list[_Band]) -> str:
    if any(part.stain == "acen" for part in parts):
        return "acen"
    return max(parts, key=lambda part: STAIN_DARKNESS[part.stain]).stain


@cache
def _levels() -> dict[int, dict[str, tuple[_Band, ...]]]:
    """Every level's bands, by one sequence of merges from the table (so levels nest)."""
    bands = {chromosome: list(rows) for chromosome, rows in _table().items()}
    total = sum(len(rows) for rows in bands.values())

    def candidate(chromosome: str, parent: str) -> tuple | None:
        """A merge into ``parent``, when every band under it is a direct child."""
        rows = bands[chromosome]
        under = [index for index, band in enumerate(rows) if _is_under(band.name, parent)]
        if len(under) < 2 or any(_parent(rows[i].name) != parent for i in under):
            return None
        first, last = rows[under[0]], rows[under[-1]]
        holds_centromere = any(rows[i].stain == "acen" for i in under)
        return (holds_centromere, last.end - first.start, CHROMOSOMES.index(chromosome),
                first.start, chromosome, parent)

    queue = []
    for chromosome, rows in bands.items():
        for parent in dict.fromkeys(_parent(band.name) for band in rows):
            if parent is not None and (merge := candidate(chromosome, parent)):
                queue.append(merge)
    heapq.heapify(queue)

    def snapshot() -> dict[str, tuple[_Band, ...]]:
        return {chromosome: tuple(rows) for chromosome, rows in bands.items()}

    levels = {850: snapshot()}
    targets = sorted(BAND_LEVELS[:-1], reverse=True)
    while targets:
        merge = heapq.heappop(queue) if queue else None
        if merge is None:  # nothing more can be merged: the coarser levels stop here
            levels.update((target, snapshot()) for target in targets)
            break
        if candidate(merge[4], merge[5]) != merge:
            continue  # stale: its bands changed since it was queued
        chromosome, parent = merge[4], merge[5]
        rows = bands[chromosome]
        under = [i for i, band in enumerate(rows) if _is_under(band.name, parent)]
        after = total - (len(under) - 1)
        if after < targets[0] and abs(total - targets[0]) <= abs(after - targets[0]):
            levels[targets.pop(0)] = snapshot()  # nearer the target without this merge
            heapq.heappush(queue, merge)
            continue
        parts = [rows[i] for i in under]
        rows[under[0] : under[-1] + 1] = [
            _Band(parent, parts[0].start, parts[-1].end, _merged_stain(parts))]
        total = after
        if total <= targets[0]:
            levels[targets.pop(0)] = snapshot()
        grandparent = _parent(parent)
        if grandparent is not None and (next_merge := candidate(chromosome, grandparent)):
            heapq.heappush(queue, next_merge)
    return levels


def _check_chromosome(chromosome: str) -> str:
    name = str(chromosome)
    if name not in CHROMOSOMES:
        raise ValueError(f"{chromosome!r} is not a chromosome (1-22, X or Y)")
    return name


def _length(chromosome: str) -> int:
    return _table()[chromosome][-1].end


def ideogram_bands(chromosome: str, level: int = 400) -> tuple[IdeogramBand, ...]:
    """The bands of a chromosome at a band level, from pter to qter."""
    name = _check_chromosome(chromosome)
    if level not in BAND_LEVELS:
        raise ValueError(f"{level!r} is not a band level ({', '.join(map(str, BAND_LEVELS))})")
    return _ideogram(name, level)


@cache
def _ideogram(chromosome: str, level: int) -> tuple[IdeogramBand, ...]:
    length = _length(chromosome)
    return tuple(
        IdeogramBand(chromosome, band.name, band.start / length, band.end / length, band.stain)
        for band in _levels()[level][chromosome]
    )


@cache
def _names(chromosome: str) -> frozenset[str]:
    """Every band name of a chromosome at any resolution: the table's and their parents."""
    names = set()
    for band in _table()[chromosome]:
        name: str | None = band.name
        while name is not None:
            names.add(name)
            name = _parent(name)
    return frozenset(names)


def is_band(chromosome: str, name: str) -> bool:
    """Whether ``name`` is a band of the chromosome at any band level (p36, p36.3, p36.33),
    or the centromere (p10, q10, cen) or an end (pter, qter)."""
    if str(chromosome) not in CHROMOSOMES:
        return False
    return name in LANDMARKS or name in _names(str(chromosome))


def centromere_position(chromosome: str) -> float:
    """Where the centromere is: the fraction of the length from pter to the p/q boundary."""
    name = _check_chromosome(chromosome)
    p_end = max(band.end for band in _table()[name] if band.name.startswith("p"))
    return p_end / _length(name)


def band_position(chromosome: str, name: str) -> float:
    """The middle of a band as a fraction of the length from pter (p10, q10 and cen: the
    centromere; pter 0, qter 1)."""
    chromosome = _check_chromosome(chromosome)
    if name in ("p10", "q10", "cen"):
        return centromere_position(chromosome)
    if name in ("pter", "qter"):
        return 0.0 if name == "pter" else 1.0
    if not _BAND_NAME.fullmatch(name) or name not in _names(chromosome):
        raise ValueError(f"{name!r} is not a band of chromosome {chromosome}")
    parts = [band for band in _table()[chromosome] if _is_under(band.name, name)]
    return (parts[0].start + parts[-1].end) / 2 / _length(chromosome)


def nearest_level(count: int) -> int:
    """The band level nearest a count of bands (a haploid set's)."""
    return min(BAND_LEVELS, key=lambda level: (abs(level - count), level))


def band_counts() -> dict[int, int]:
    """How many bands each level has over the 24 chromosomes (haploid)."""
    return {level: sum(len(rows) for rows in _levels()[level].values()) for level in BAND_LEVELS}
