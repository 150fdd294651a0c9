"""Textbook shape of each chromosome type: relative length, centromere index, band pattern.

Relative lengths (in % of the haploid autosome length) and centromere indices (p-arm
length / total length, in %) are the textbook values of the ISCN ideogram at metaphase.
The band pattern is a deterministic stand-in for the ideogram's G-bands: the same type
always gets the same bands (so homologs match and types differ), dark bands alternate
with light ones, telomeres are light, and longer arms carry more bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from karyo_gui.core.labels import ChromosomeType

# type: (relative length %, centromere index %)
_TEXTBOOK = {
    "1": (8.44, 48), "2": (8.02, 39), "3": (6.83, 47), "4": (6.30, 29), "5": (6.08, 29),
    "6": (5.90, 39), "7": (5.36, 39), "8": (4.93, 34), "9": (4.80, 35), "10": (4.59, 33),
    "11": (4.61, 40), "12": (4.66, 30), "13": (3.74, 17), "14": (3.56, 19), "15": (3.46, 20),
    "16": (3.36, 41), "17": (3.25, 34), "18": (2.93, 31), "19": (2.67, 47), "20": (2.56, 45),
    "21": (1.90, 31), "22": (2.04, 30), "X": (5.12, 40), "Y": (2.15, 27),
}


@dataclass(frozen=True)
class Band:
    start: float  # fraction of the length from the p-arm end (top)
    end: float
    darkness: float  # 0 = unstained (light), 1 = darkest G-band


@dataclass(frozen=True)
class Ideogram:
    chromosome_type: ChromosomeType
    relative_length: float  # length relative to chromosome 1
    centromere_index: float  # p-arm fraction of the length
    bands: tuple[Band, ...]

    def darkness_profile(self, positions: np.ndarray) -> np.ndarray:
        """Band darkness at positions along the chromosome (fractions from the p end)."""
        starts = np.array([band.start for band in self.bands])
        darkness = np.array([band.darkness for band in self.bands])
        index = np.clip(np.searchsorted(starts, positions, side="right") - 1, 0, len(starts) - 1)
        return darkness[index]


@cache
def ideogram(chromosome_type: ChromosomeType) -> Ideogram:
    if chromosome_type is ChromosomeType.UNCLASSIFIED:
        raise ValueError("an unclassified object has no ideogram")
    length, index = _TEXTBOOK[chromosome_type.display_name]
    relative_length = length / _TEXTBOOK["1"][0]
    centromere = index / 100.0
    rng = np.random.default_rng(1000 + chromosome_type.value)  # same bands on every run
    p_bands = _arm_bands(rng, relative_length * centromere)
    q_bands = _arm_bands(rng, relative_length * (1 - centromere))
    bands: list[Band] = []
    # p arm runs from the telomere (0) down to the centromere: reverse its bands
    for start, end, dark in reversed(p_bands):
        bands.append(Band((1 - end) * centromere, (1 - start) * centromere, dark))
    for start, end, dark in q_bands:
        q_arm = 1 - centromere
        bands.append(Band(centromere + start * q_arm, centromere + end * q_arm, dark))
    return Ideogram(chromosome_type, relative_length, centromere, tuple(bands))


def _arm_bands(rng: np.random.Generator, arm_length: float) -> list[tuple[float, float, float]]:
    """Bands of one arm from the centromere (0) to the telomere (1)."""
    n_dark = max(1, round(arm_length * 11))
    n_bands = 2 * n_dark + 1  # light, dark, light, ..., light (telomere light)
    widths = rng.gamma(4.0, 1.0, n_bands)
    edges = np.concatenate([[0.0], np.cumsum(widths) / widths.sum()])
    bands = []
    for k in range(n_bands):
        dark = 0.0 if k % 2 == 0 else float(rng.choice([0.35, 0.6, 0.8, 1.0]))
        bands.append((float(edges[k]), float(edges[k + 1]), dark))
    return bands
