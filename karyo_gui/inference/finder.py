"""Finding the chromosomes of a whole metaphase image (torch, or OpenCV running the finder's
ONNX copy; no Qt).

    finder = ChromosomeFinder()              # the shipped finder, on CUDA, MPS or the CPU
    finder = ChromosomeFinder(quick_start=True)  # on the CPU from its cached ONNX copy
    found = finder.find(metaphase)           # [FoundChromosome(region, score, flags), ...]
    finder.find_cell(cell)                   # the cell's chromosomes, cut from its metaphase

The finder model gives one box per chromosome (a centre-point detector, so two crossing
chromosomes are two boxes) and the chromosome pixels; each box's mask is then made from
the dark pixels of the image (``core.metaphase.regions_for_boxes``: a neighbour reaching
into the box stays the neighbour's, the pixels of a crossing belong to both). Two
chromosomes crossing at their middles share one centre, so the finder gives them one box:
a region shaped like an X is separated into its two chromosomes
(``core.crossings.separate_crossings``), the partner drawn with a box of its own. Objects the
finder is unsure of are flagged for review: a low score (FINDER_UNSURE), a region too large
for one chromosome (CLUSTER), two regions sharing many pixels (OVERLAP). Objects found
faintly, below the threshold, come as candidates (CANDIDATE): the cell's first karyotype
assignment keeps one only where it fills a free place (a type with a copy missing) and drops
the rest (``core.assignment.drop_unplaced_candidates``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from karyo_gui.core.case import Cell, Chromosome, Flag
from karyo_gui.core.crossings import separate_crossings
from karyo_gui.core.metaphase import (
    CLUSTER_AREA,
    TYPICAL_WIDTH,
    MetaphaseImage,
    Region,
    box_iou_matrix,
    cut_crop,
    foreground_mask,
    has_dark_objects,
    other_cuts,
    regions_for_boxes,
    stained_box,
)
from trainer.devices import pick_device, surely_cpu
from trainer.finder_file import (
    MAX_INPUT_SIDE,
    STRIDE,
    default_finder,
    detect_with,
    read_finder_header,
)

SPREAD_MARGIN = 64  # pixels kept around the stained part of a large image
SPREAD_SHARE = 0.8  # a stained part larger than this share of the image: all of it is searched
DUPLICATE_IOU = 0.7  # two boxes this alike are one chromosome found twice
# objects found with a score from this up to the threshold are candidates: most are debris or
# a piece of a found chromosome (of those from 0.15 in the first 120 cil24 val metaphases, 17 %
# were a chromosome the finder missed), so one is kept only where the karyotype assignment
# gives it a free place (the assignment's set-aside, priced by not_chromosome_probability,
# decides). Chosen on both halves of cil24 val: karyotype exact 0.667 / 0.622 from 0.15,
# 0.725 / 0.639 from 0.1; from 0.05 no better than 0.1 and 0.4 s slower
CANDIDATE_THRESHOLD = 0.1
SMALLEST_AREA = 0.12  # regions below this fraction of the median area are specks
# how often an object found with a score s is no chromosome of the annotations (box IoU
# < 0.5 with every one: debris, a piece, two as one): 1 / (1 + exp(-(a + b s))), fitted by
# logistic regression on the objects finder 11b682236669 found in the first 120 cil24 val
# metaphases (found with score 0.35-0.4: 46 % are none, 0.5-0.6: 9 %, above 0.7: 0.4 %)
NOT_CHROMOSOME_LOGISTIC = (3.07, -9.95)


class NoChromosomesFound(Exception):
    """The finder found nothing that looks like a chromosome; the message says so."""


@dataclass
class FoundChromosome:
    region: Region  # its pixels
    score: float
    box: tuple[float, float, float, float]  # the finder's box, drawn as annotators draw them
    flags: set[Flag] = field(default_factory=set)
    # its pixels cut other ways where it touches or crosses another (core.metaphase.other_cuts)
    other_regions: list[Region] = field(default_factory=list)


@dataclass
class FindResult:
    found: list[FoundChromosome]
    width: float  # the chromosome width measured on the image, pixels
    seconds: float
    # objects found faintly (below the threshold, flagged CANDIDATE): chromosomes only if
    # the karyotype assignment finds them a free place (a type with a copy missing)
    candidates: list[FoundChromosome] = field(default_factory=list)

    @property
    def objects(self) -> list[FoundChromosome]:
        """The found chromosomes and the candidates together, in reading order."""
        return _reading_order(self.found + self.candidates)


class ChromosomeFinder:
    """A chromosome-finder model file loaded for whole metaphase images."""

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        device: str = "auto",
        quick_start: bool = False,
        separate_crossings: bool = True,
        candidate_threshold: float | None = CANDIDATE_THRESHOLD,
    ) -> None:
        """``quick_start``: on the CPU, run a cached ONNX copy of the finder's network when
        there is a valid one (``inference.quick_start``: no torch import, the same boxes);
        :meth:`save_quick_start` writes one after a start that built the network.
        ``separate_crossings``: an X given one box becomes its two chromosomes (off only to
        measure what that brings: ``bench/metaphase_finder.py --crossings-whole``).
        ``candidate_threshold``: also give the objects found faintly, from this score up to
        the threshold, for the karyotype assignment to keep where one fills a free place
        (None: none, only to measure what they bring: ``--no-candidates``)."""
        self.separate_crossings = separate_crossings
        self.candidate_threshold = candidate_threshold
        self.path = Path(checkpoint) if checkpoint is not None else default_finder()
        self._device = None if quick_start and surely_cpu(device) else pick_device(device)
        self.net = self._quick = None
        self._copy_looked_after = False  # save_quick_start ran (it writes at most once)
        if quick_start and (self._device is None or self._device.type == "cpu"):
            from karyo_gui.inference.quick_start import load_quick_finder

            self.header = read_finder_header(self.path)
            self._quick = load_quick_finder(self.path, self.header)
        if self._quick is None:
            from trainer.finder import load_finder

            self.net, self.header = load_finder(self.path, self.device)

    @property
    def device(self):
        """Where the network runs: the CPU after a quick start (asking imports torch)."""
        if self._device is None:
            self._device = pick_device("cpu")
        return self._device

    @property
    def quick_started(self) -> bool:
        """Whether this finder runs the cached ONNX copy of its network."""
        return self._quick is not None

    def save_quick_start(self) -> Path | None:
        """Cache an ONNX copy of the network for the next quick start (CPU only); the path,
        or None when there was nothing to write or it could not be written."""
        if self.net is None or self.device.type != "cpu" or self._copy_looked_after:
            return None
        self._copy_looked_after = True  # each metaphase may ask: checked and written once
        from karyo_gui.inference.quick_start import load_quick_finder, save_quick_finder

        if load_quick_finder(self.path, self.header) is not None:
            return None  # a valid one is there
        return save_quick_finder(self.net, self.header, self.path)

    def _forward(self):
        """The network as ``detect_with`` runs it: the quick copy, or the torch network."""
        if self._quick is not None:
            return self._quick.outputs
        from trainer.finder import numpy_outputs

        return numpy_outputs(self.net, self.device)

    @property
    def model_id(self) -> str:
        return self.header.model_id

    @property
    def description(self) -> str:
        return f"{self.header.name or 'finder'} ({self.header.arch}, {self.model_id})"

    def find(self, metaphase: MetaphaseImage, threshold: float | None = None) -> FindResult:
        """Every chromosome of the image, in reading order (top to bottom, left to right)."""
        started = time.perf_counter()
        grey = metaphase.pixels
        if not has_dark_objects(grey):  # a blank frame: nothing to search
            return FindResult([], TYPICAL_WIDTH, time.perf_counter() - started)
        left, top, grey = _spread_of(grey)
        limit = self.header.score_threshold if threshold is None else threshold
        faint = limit if self.candidate_threshold is None else min(limit, self.candidate_threshold)
        detections, chromosome_probability, prepared = detect_with(
            self._forward(), grey, self.header, faint
        )
        detections = _without_duplicates([d for d in detections if d.score >= faint])
        width = prepared.width
        dark = foreground_mask(grey, width)
        # the model's own idea of which dark pixels are chromosomes (not nuclei or debris),
        # back at image scale and grown a little so the edge of a chromosome is not cut
        rows, cols = prepared.shape[0] // STRIDE, prepared.shape[1] // STRIDE
        learned = cv2.resize(
            chromosome_probability[:rows, :cols], (grey.shape[1], grey.shape[0]),
            interpolation=cv2.INTER_LINEAR,
        )  # fmt: skip
        grow = max(3, round(width * 0.6) | 1)
        learned = cv2.dilate((learned > 0.4).astype(np.uint8), np.ones((grow, grow), np.uint8))
        chromosome_pixels = dark & learned.astype(bool)
        kept = [d for d in detections if d.score >= limit]
        found = _flagged(self._cut(chromosome_pixels, kept, width, left, top),
                         self.header.review_threshold, width)  # fmt: skip
        candidates = []
        if found and len(kept) < len(detections):  # never a cell of faint objects alone
            # the faint ones cut among all boxes, so that a found neighbour keeps its pixels
            together = _flagged(self._cut(chromosome_pixels, detections, width, left, top),
                                self.header.review_threshold, width)  # fmt: skip
            candidates = [item for item in together if item.score < limit]
            for item in candidates:  # below the threshold: unsure whatever the review's bar
                item.flags |= {Flag.CANDIDATE, Flag.FINDER_UNSURE}
        return FindResult(_reading_order(found), width, time.perf_counter() - started,
                          _reading_order(candidates))  # fmt: skip

    def _cut(self, chromosome_pixels: np.ndarray, detections: list, width: float, left: int,
             top: int) -> list[FoundChromosome]:
        """Each detection's region of the chromosome pixels (and its other cuts where it
        touches another), crossings at the middle separated, back in the whole image."""
        boxes = [d.box for d in detections]
        regions = regions_for_boxes(chromosome_pixels, boxes, width)
        cuts = other_cuts(chromosome_pixels, boxes, regions, width)
        scores = [d.score for d in detections]
        # two chromosomes crossing at their middles share a centre: one box, an X of both
        splits = (separate_crossings(chromosome_pixels, np.array(boxes), regions, width)
                  if self.separate_crossings else [])  # fmt: skip
        for split in splits:
            regions[split.index], cuts[split.index] = split.own, []
            boxes.append(split.partner_box)
            regions.append(split.partner)
            cuts.append([])
            scores.append(scores[split.index])
        found = []
        for (x0, y0, x1, y1), region, others, score in zip(boxes, regions, cuts, scores):
            if region is not None:  # back from the spread's part to the whole image
                found.append(FoundChromosome(
                    region.shifted(left, top), score, (x0 + left, y0 + top, x1 + left, y1 + top),
                    other_regions=[cut.shifted(left, top) for cut in others],
                ))
        return found

    def find_cell(self, cell: Cell, threshold: float | None = None) -> FindResult:
        """Fill a metaphase cell's chromosomes with what the finder finds (replacing any),
        each cut from the image as the classifier takes crops. Raises NoChromosomesFound
        when there is nothing."""
        if cell.metaphase is None:
            raise ValueError(f"cell {cell.name} has no metaphase image to look in")
        result = self.find(cell.metaphase, threshold)
        cell.chromosomes = chromosomes_from(cell.metaphase, result.objects)
        cell.finder_id = self.model_id
        if not cell.chromosomes:
            raise NoChromosomesFound(
                f"{cell.name}: no chromosomes found in this image (is it a metaphase, "
                "and in focus?)"
            )
        return result


def not_chromosome_probability(score: float) -> float:
    """The probability that an object the finder found with ``score`` is no chromosome of
    the cell (the karyotype assignment may set such an object aside)."""
    a, b = NOT_CHROMOSOME_LOGISTIC
    return float(1.0 / (1.0 + np.exp(-(a + b * float(score)))))


def chromosomes_from(metaphase: MetaphaseImage, found: list[FoundChromosome]) -> list[Chromosome]:
    """Chromosomes of a cell from found regions: ids m001, m002... in the given order."""
    return [
        Chromosome(
            id=f"m{index:03d}",
            image=cut_crop(metaphase.pixels, item.region),
            region=item.region,
            found_score=round(float(item.score), 4),
            flags=set(item.flags),
            other_cuts=[cut_crop(metaphase.pixels, cut) for cut in item.other_regions],
        )
        for index, item in enumerate(found, start=1)
    ]


def _spread_of(grey: np.ndarray) -> tuple[int, int, np.ndarray]:
    """The part of a large image where the spread lies (left, top, pixels): a big scan is
    searched where it is stained, at the scale of its own chromosomes, not shrunk whole to
    the net's input (where they would come out too thin to find). Smaller images, and ones
    stained all over, are searched whole."""
    if max(grey.shape) <= MAX_INPUT_SIDE:
        return 0, 0, grey
    box = stained_box(grey, margin=SPREAD_MARGIN + max(grey.shape) // 50)
    if box is None:
        return 0, 0, grey
    x0, y0, x1, y1 = box
    if (x1 - x0) * (y1 - y0) > SPREAD_SHARE * grey.size:
        return 0, 0, grey
    return x0, y0, grey[y0:y1, x0:x1]


def _without_duplicates(detections):
    """Box non-maximum suppression at a high IoU: the heatmap's 3 x 3 peaks rarely give
    one chromosome twice, but a long bent one sometimes has two peaks."""
    if len(detections) < 2:
        return detections
    ordered = sorted(detections, key=lambda d: -d.score)
    boxes = np.array([d.box for d in ordered])
    iou = box_iou_matrix(boxes, boxes)
    kept: list[int] = []
    for index in range(len(ordered)):
        if all(iou[index, k] < DUPLICATE_IOU for k in kept):
            kept.append(index)
    return [ordered[k] for k in kept]


def _flagged(found: list[FoundChromosome], review_threshold: float, width: float):
    if not found:
        return found
    areas = np.array([item.region.area for item in found], dtype=np.float64)
    median = float(np.median(areas))
    kept = [item for item, area in zip(found, areas) if area >= SMALLEST_AREA * median]
    for item in kept:
        if item.score < review_threshold:
            item.flags.add(Flag.FINDER_UNSURE)
        if item.region.area > CLUSTER_AREA * median:
            item.flags.add(Flag.CLUSTER)
    # regions sharing more than a crossing's worth of pixels: a crossing to check
    crossing = 0.5 * width * width
    boxes = np.array([item.region.box for item in kept], dtype=np.float64)
    touching = box_iou_matrix(boxes, boxes) > 0
    for i in range(len(kept)):
        for j in np.flatnonzero(touching[i, i + 1 :]) + i + 1:
            if _shared_pixels(kept[i].region, kept[int(j)].region) >= crossing:
                kept[i].flags.add(Flag.OVERLAP)
                kept[int(j)].flags.add(Flag.OVERLAP)
    return kept


def _shared_pixels(a: Region, b: Region) -> int:
    x0, y0 = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    x1, y1 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if x1 <= x0 or y1 <= y0:
        return 0
    first = a.mask[y0 - a.box[1] : y1 - a.box[1], x0 - a.box[0] : x1 - a.box[0]]
    second = b.mask[y0 - b.box[1] : y1 - b.box[1], x0 - b.box[0] : x1 - b.box[0]]
    return int((first & second).sum())


def _reading_order(found: list[FoundChromosome]) -> list[FoundChromosome]:
    """Top to bottom in rows about one chromosome high, left to right within a row."""
    if not found:
        return found
    heights = [item.region.box[3] - item.region.box[1] for item in found]
    row = max(1.0, float(np.median(heights)))

    def key(item: FoundChromosome) -> tuple[int, float]:
        x0, y0, x1, y1 = item.region.box
        return int(((y0 + y1) / 2) // row), (x0 + x1) / 2

    return sorted(found, key=key)
