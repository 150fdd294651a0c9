"""The classifier service: a trained model applied to whole cells (torch, no Qt).

    classifier = Classifier()                  # the shipped model, on CUDA, MPS or the CPU
    result = classifier.classify(cell)         # types, karyotype-aware assignment, flags
    result.karyotype, result.moved             # '47,XY,+21', ids the assignment changed
    classifier.attention(cell, "c12")          # Grad-CAM map of one chromosome

The model file decides its own input: its preprocessing (size, scale, polarity) is read
from its header and applied to the crops of the cell together, so relative chromosome
sizes survive and G- and Q-banded cells both reach the model as it was trained.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from karyo_gui.core.assignment import (
    CASE_SEX_CAP,
    CASE_SEX_MOSAIC,
    HOMOLOG_UNLIKE,
    TYPE_DOUBT,
    CellAssignment,
    KaryotypePrior,
    apply_assignment,
    assign_types,
    calibrated,
    case_female_shares,
    drop_unplaced_candidates,
)
from karyo_gui.core.case import Cell, CellStatus, Chromosome, Flag
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.orientation import apply_orientation_guess
from karyo_gui.inference.finder import not_chromosome_probability
from trainer.checkpoint import CheckpointError, default_checkpoint, load_checkpoint, read_header
from trainer.config import SECOND_LOOK_MARGIN
from trainer.devices import pick_device, surely_cpu
from trainer.looking import Predictions, read_together, with_second_look
from trainer.preprocessing import cell_scale, placed_crop, prepare_crops, prepare_other_cuts

if TYPE_CHECKING:
    import torch

    from karyo_gui.inference.attention import AttentionMap
    from trainer.model import ChromosomeNet


@dataclass
class CellPrediction:
    """The model's half of classifying a cell: what it read from the pictures."""

    pictured: list[int]  # positions in cell.chromosomes of the chromosomes with a picture
    probabilities: np.ndarray  # (n, 24), one row per pictured chromosome
    # (n,) probability that each stands upside down; None: the model makes no such guess
    upside_down: np.ndarray | None = None
    # (n, D) the model's embeddings of the pictures (homologs are compared on them); None:
    # not at hand (a re-assignment from stored probabilities)
    embeddings: np.ndarray | None = None


def assign_with_case(classifier: Classifier, cells: list[Cell], mosaic: float = CASE_SEX_MOSAIC,
                     cap: float = CASE_SEX_CAP) -> list[CellResult]:
    """Read each cell's sex with the other cells of its case: the prior share of XX of
    each is what the others' own evidence says (``core.assignment.case_female_shares``). A
    cell not yet reviewed whose sex would then turn is assigned again from the probabilities
    it holds (milliseconds, nothing is read again); its result says ``sex_from_case``. A
    cell reviewed or signed off keeps its types, and its word counts for the others; a
    cell whose sex does not turn is left as it is."""
    shares = case_female_shares([cell.sex_evidence for cell in cells], mosaic, cap)
    results = []
    for cell, share in zip(cells, shares):
        evidence = cell.sex_evidence
        if evidence is None or cell.status is not CellStatus.UNREVIEWED:
            continue
        if (evidence + _logit(share) > 0) == (evidence + _logit(cell.sex_share) > 0):
            continue  # the same sex either way
        pictured = [k for k, c in enumerate(cell.chromosomes) if c.image is not None]
        if not pictured or any(cell.chromosomes[k].probabilities is None for k in pictured):
            continue  # waiting to be classified: its own pass reads the case again
        probabilities = np.stack([cell.chromosomes[k].probabilities for k in pictured])
        result = classifier.assign(cell, CellPrediction(pictured, probabilities, None), share)
        result.sex_from_case = True
        results.append(result)
    return results


def _logit(share: float) -> float:
    return math.log(share / (1.0 - share))


@dataclass
class CellResult:
    """What classifying one cell found (the cell's chromosomes hold the per-crop labels)."""

    cell: Cell
    assignment: CellAssignment | None  # None when the cell has no picture to classify
    moved: list[str]  # ids of the chromosomes the assignment gave another type
    low_confidence: list[str]  # ids whose assigned type is in doubt (flagged "type unsure")
    seconds: float  # preprocessing, model and assignment, without loading the model
    turned: list[str] = field(default_factory=list)  # ids the orientation guess turned
    # said when the cell is stained in a way the model never saw (bright on dark, Q-banding)
    stain_warning: str | None = None
    # ids of the faint candidates the assignment found no place for, taken out of the cell
    dropped: list[str] = field(default_factory=list)
    # the cell's sex was turned by what the case's other cells say (assign_with_case)
    sex_from_case: bool = False

    @property
    def karyotype(self) -> str:
        return self.cell.karyotype


class Classifier:
    """A model file loaded for classifying cells."""

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        device: str = "auto",
        prior: KaryotypePrior | None = None,
        doubt: float = TYPE_DOUBT,
        quick_start: bool = False,
    ) -> None:
        """``quick_start``: on the CPU, run a cached ONNX copy of this model file's network
        when there is a valid one (``inference.quick_start``: no torch import, the same
        numbers); the network itself is built when something needs its layers
        (:attr:`full_net`)."""
        self.path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
        self._device: torch.device | None = None
        self._full_net = None
        self._quick = None
        self._quick_cached: bool | None = None  # a valid copy is cached; None: not looked
        if not (quick_start and surely_cpu(device)):  # a GPU may be there: torch says
            self._device = pick_device(device)
        if quick_start and (self._device is None or self._device.type == "cpu"):
            from karyo_gui.inference.quick_start import load_quick

            self.header = read_header(self.path)
            self._quick = load_quick(self.path, self.header)
            self._quick_cached = self._quick is not None
        if self._quick is None:
            if self._device is None:
                self._device = pick_device(device)
            self._full_net, self.header = load_checkpoint(self.path, self._device)
        self.preprocessing = self.header.input_preprocessing
        self.prior = prior or KaryotypePrior()
        self.doubt = doubt  # flag a type wrong with a probability above this
        self.homolog_margin = HOMOLOG_UNLIKE  # flag a chromosome this much unlike its homolog
        # the model's calibration (temperature scaling fitted on val), 1: none recorded
        self.temperature = float((self.header.calibration or {}).get("temperature", 1.0))
        # the temperature (of the network's logits) at which the assignment weighs a cell's
        # crops against the karyotype's prior; None: the calibrated one. Only measured (bench/
        # metaphase_finder.py): softer gets more normal cells exact and misses aneuploidies
        self.assignment_temperature: float | None = None

    @property
    def model_id(self) -> str:
        return self.header.model_id

    @property
    def device(self) -> torch.device:
        """Where the network runs (after a quick start: the CPU; asking imports torch)."""
        if self._device is None:
            self._device = pick_device("cpu")
        return self._device

    @property
    def device_name(self) -> str:
        """Where the network runs, in words, without importing torch."""
        return "cpu" if self._device is None else str(self._device)

    @property
    def net(self):
        """The network that classifies: the model file's own once built, else its quick
        copy (``inference.quick_start.QuickNet``)."""
        return self._full_net if self._full_net is not None else self._quick

    @property
    def quick_started(self) -> bool:
        """Whether this classifier started from a cached copy of its network (and has not
        built the network yet)."""
        return self._full_net is None

    @property
    def full_net(self) -> ChromosomeNet:
        """The network built from the model file, with every check (Grad-CAM needs its
        layers); built on first use after a quick start, which it then replaces."""
        if self._full_net is None:
            net, header = load_checkpoint(self.path, self.device)
            if header.model_id != self.header.model_id:
                raise CheckpointError(
                    f"{self.path.name}: the model file changed while karyo was running "
                    f"(model id {header.model_id}, was {self.header.model_id}); open it again"
                )
            self._full_net, self._quick = net, None
        return self._full_net

    def save_quick_start(self) -> Path | None:
        """Cache a copy of the network for the next quick start (CPU only); the path, or
        None when there is nothing to write or it could not be written."""
        if self._full_net is None or self.device.type != "cpu":
            return None
        from karyo_gui.inference.quick_start import load_quick, save_quick

        if self._quick_cached is None:  # not looked for at the start
            self._quick_cached = load_quick(self.path, self.header) is not None
        if self._quick_cached:
            return None  # a valid one is there
        written = save_quick(self._full_net, self.header, self.path)
        self._quick_cached = written is not None
        return written

    @property
    def trained_on_bright_on_dark(self) -> bool:
        """Whether the model's training cells included bright-on-dark (Q-banded or
        fluorescent) ones, as its header records."""
        train = (self.header.training_data or {}).get("train")
        return isinstance(train, dict) and bool(train.get("bright_on_dark_cells"))

    def stain_warning(self, cell: Cell) -> str | None:
        """What to tell the reviewer about a cell stained unlike the model's training cells:
        its crops are turned to the model's polarity, but the banding is not G-banding."""
        if not cell.bright_on_dark or self.trained_on_bright_on_dark:
            return None
        model = f"the model {self.header.name}" if self.header.name else "the model"
        return (
            f"bright-on-dark cell (Q-banded or fluorescent?): {model} was trained on G-banded "
            "cells only; its types are a guess to check one by one (Retrain on reviewed cells "
            "of this stain to teach it)"
        )

    @property
    def description(self) -> str:
        return f"{self.header.name or self.path.stem} ({self.header.arch}, {self.model_id})"

    def classify(self, cell: Cell) -> CellResult:
        """Classify every pictured chromosome of a cell and assign the cell's types together.

        Reviewers' manual labels are kept and the others are assigned around them; a
        chromosome a reviewer called unclassified takes no slot. Chromosomes are stood
        p-arm up where the model has an orientation head, except those a reviewer turned.
        """
        started = time.perf_counter()
        result = self.assign(cell, self.predict_cell(cell))
        result.seconds = time.perf_counter() - started
        return result

    def predict_cell(self, cell: Cell) -> CellPrediction:
        """The model's half of :meth:`classify` (it only reads the pictures)."""
        pictured = [k for k, c in enumerate(cell.chromosomes) if c.image is not None]
        if not pictured:
            return CellPrediction([], np.zeros((0, len(ChromosomeType.types())), np.float32))
        # the cell's common scale comes from all its crops, as in training; not from faint
        # candidates, mostly specks and pieces that would make the cell's chromosomes look long
        chromosomes = [cell.chromosomes[k] for k in pictured]
        sure = [c.image for c in chromosomes if Flag.CANDIDATE not in c.flags]
        scale = cell_scale(sure or [c.image for c in chromosomes], self.preprocessing)
        predictions = self._read(chromosomes, scale)
        return CellPrediction(
            pictured, calibrated(predictions.probabilities, self.temperature),
            predictions.upside_down, predictions.embeddings,
        )

    def _read(self, chromosomes: list[Chromosome], scale: float) -> Predictions:
        """What the network reads from some chromosomes of a cell at the cell's scale: each
        from its crop together with its other cuts (``trainer.looking.read_together``)."""
        canvases = prepare_crops([c.image for c in chromosomes], self.preprocessing, scale)
        others, other_of = prepare_other_cuts(
            [c.other_cuts for c in chromosomes], self.preprocessing, scale
        )
        if not len(other_of):
            return self._predict(canvases)
        predictions = self._predict(np.concatenate([canvases, others]))
        n = len(chromosomes)
        upside_down = predictions.upside_down
        return Predictions(
            read_together(predictions.probabilities[:n], predictions.probabilities[n:], other_of),
            predictions.embeddings[:n], predictions.seconds,
            None if upside_down is None else upside_down[:n],
        )

    def _predict(self, canvases: np.ndarray) -> Predictions:
        """What the network reads from prepared canvases, with the second look at the
        unsure ones (``trainer.evaluation.predict``), by the quick copy until the network
        is built."""
        if self._full_net is None and self._quick is not None:
            started = time.perf_counter()
            probabilities, embeddings, upside_down = with_second_look(
                self._quick.look, canvases, SECOND_LOOK_MARGIN
            )
            return Predictions(probabilities, embeddings, time.perf_counter() - started,
                               upside_down)  # fmt: skip
        from trainer.evaluation import predict

        return predict(self.net, canvases, self.preprocessing, self.device)

    def classify_changed(self, cell: Cell) -> CellResult:
        """After an edit of a metaphase's chromosomes (split, join, add...): classify only the
        chromosomes that have no probabilities yet, at the scale of the whole cell, and run
        the assignment over the cell again."""
        started = time.perf_counter()
        pictured = [k for k, c in enumerate(cell.chromosomes) if c.image is not None]
        fresh = [k for k in pictured if cell.chromosomes[k].probabilities is None]
        new_rows: dict[int, np.ndarray] = {}
        if fresh:
            scale = cell_scale([cell.chromosomes[k].image for k in pictured], self.preprocessing)
            predictions = self._read([cell.chromosomes[k] for k in fresh], scale)
            new_rows = dict(zip(fresh, calibrated(predictions.probabilities, self.temperature)))
            for k, embedding in zip(fresh, predictions.embeddings):
                cell.chromosomes[k].embedding = embedding
            if predictions.upside_down is not None:  # only the new ones are stood p-arm up
                apply_orientation_guess(cell, fresh, predictions.upside_down)
        probabilities = np.stack(
            [new_rows[k] if k in new_rows else cell.chromosomes[k].probabilities for k in pictured]
        ) if pictured else np.zeros((0, len(ChromosomeType.types())), np.float32)
        result = self.assign(cell, CellPrediction(pictured, probabilities, None))
        result.seconds = time.perf_counter() - started
        return result

    def assign(self, cell: Cell, prediction: CellPrediction, female: float | None = None
               ) -> CellResult:
        """The assignment's half of :meth:`classify` (numpy only, milliseconds): the cell's
        types from the probabilities, around the manual labels the cell has NOW, and the
        chromosomes stood p-arm up. ``female``: the prior share of XX cells to assume (what
        the case's other cells say, :func:`assign_with_case`); default the prior's own."""
        started = time.perf_counter()
        pictured, probabilities = prediction.pictured, prediction.probabilities
        warning = self.stain_warning(cell)
        if not pictured:
            return CellResult(cell, None, [], [], time.perf_counter() - started,
                              stain_warning=warning)
        embeddings = getattr(prediction, "embeddings", None)
        if embeddings is not None:
            for index, embedding in zip(pictured, embeddings):
                cell.chromosomes[index].embedding = embedding
        turned = []
        if prediction.upside_down is not None:
            turned = apply_orientation_guess(cell, pictured, prediction.upside_down)
        fixed, rows = {}, []
        for row, index in enumerate(pictured):
            manual = cell.chromosomes[index].manual
            if manual is not None and manual.label is ChromosomeType.UNCLASSIFIED:
                continue
            if manual is not None:
                fixed[len(rows)] = manual.label.value
            rows.append(row)
        # an object the finder itself was unsure of may be set aside as no chromosome where
        # it fits no free place; one found surely (a trisomy's third copy) never is
        assigned = [cell.chromosomes[pictured[row]] for row in rows]
        not_chromosome = np.array([
            not_chromosome_probability(c.found_score)
            if c.found_score is not None and Flag.FINDER_UNSURE in c.flags else 0.0
            for c in assigned
        ])  # fmt: skip
        # a faint candidate fills a free autosome place at most: a speck read as a Y must not
        # turn a 46,XX cell into 46,XY
        candidate = np.array([bool(c.flags & {Flag.CANDIDATE, Flag.FAINT}) for c in assigned])
        prior = self.prior if female is None else dataclasses.replace(self.prior, female=female)
        evidence = probabilities[rows]  # the probabilities shown stay calibrated
        if self.assignment_temperature is not None:
            evidence = calibrated(evidence, self.assignment_temperature / self.temperature)
        assignment = assign_types(evidence, prior, fixed, not_chromosome, candidate)
        cell.sex_evidence, cell.sex_share = assignment.female_log_odds, prior.female
        indices = [pictured[row] for row in rows]
        moved = apply_assignment(
            cell, indices, probabilities[rows], assignment, self.doubt, self.model_id,
            self.homolog_margin,
        )
        unsure = [cell.chromosomes[indices[k]].id for k in assignment.low_confidence(self.doubt)]
        # the faint objects the assignment found no place for were debris or pieces: gone
        dropped = drop_unplaced_candidates(cell)
        return CellResult(cell, assignment, moved, unsure, time.perf_counter() - started, turned,
                          warning, dropped)

    def attention(
        self, cell: Cell, chromosome_id: str, target: ChromosomeType | None = None
    ) -> AttentionMap:
        """Grad-CAM of one chromosome: where the model looked for ``target`` (default: its
        predicted type), as a map over the crop's own pixels."""
        from karyo_gui.inference.attention import attention_map  # pytorch-grad-cam: slow import

        chromosome = cell.chromosome(chromosome_id)
        if chromosome.image is None:
            raise ValueError(f"chromosome {chromosome_id} of cell {cell.name} has no picture")
        pictures = [c.image for c in cell.chromosomes if c.image is not None]
        scale = cell_scale(pictures, self.preprocessing)
        canvas, where = placed_crop(chromosome.image, scale, self.preprocessing)
        return attention_map(
            self.full_net,
            canvas,
            self.preprocessing,
            where,
            None if target is None else int(target),
            self.device,
            self.temperature,
        )
