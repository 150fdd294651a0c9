"""Training data: labelled crops from datasets, case files and generated cells.

Every source ends up as a :class:`CropSet`: uint8 canvases already at the model's input
size (see :mod:`trainer.preprocessing`), their types and the cell each came from. Canvases
are small (128 x 64 bytes), so a whole dataset lives in memory and a training step only
indexes, augments on the batch and runs the model: loading never starves the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from karyo_gui.core.annotations import AnnotationError, is_annotated_folder, load_annotated_cells
from karyo_gui.core.case import Cell, CellStatus, Chromosome
from karyo_gui.core.case_file import CaseFileError, load_case
from karyo_gui.core.labels import N_TYPES, ChromosomeType
from karyo_gui.core.loaders import CellLoadError, Dataset, load_dataset
from karyo_gui.core.synthetic import generate_cell
from trainer.preprocessing import Preprocessing, cell_scale, prepare_crops, prepare_other_cuts


class DataError(Exception):
    """Training or evaluation data that cannot be used; the message names the source."""


def lab_of_source(source: str) -> str:
    """The lab (mix group) a source belongs to: a dataset's folder name, ``case`` for every
    case file, ``generated`` for the generator's cells."""
    return source.split(":", 1)[0] or "unnamed"


@dataclass
class CropSet:
    images: np.ndarray  # (n, height, width) uint8
    labels: np.ndarray  # (n,) int64, 0..23
    cell_of: np.ndarray  # (n,) int64, index into cell_names
    cell_names: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    source_of: np.ndarray | None = None  # (n,) int64, index into sources (default: all 0)
    # per cell (as cell_names): stained bright on dark (Q-banded, fluorescent)
    cell_bright: list[bool] = field(default_factory=list)
    # the crops' other cuts (Chromosome.other_cuts), read with them when the model is judged:
    # canvases (m, height, width) and (m,) the index of the crop each belongs to
    other_images: np.ndarray | None = None
    other_of: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.source_of is None:
            self.source_of = np.zeros(len(self.labels), np.int64)
        if self.other_of is None or self.other_images is None:
            self.other_images = np.zeros((0, *self.images.shape[1:]), np.uint8)
            self.other_of = np.zeros(0, np.int64)
        if len(self.labels) and not self.sources:
            self.sources = ["unnamed"]
        self.cell_bright = (list(self.cell_bright) + [False] * len(self.cell_names))[
            : len(self.cell_names)
        ]

    @property
    def bright_on_dark_cells(self) -> int:
        return int(sum(self.cell_bright))

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=N_TYPES).tolist()

    @property
    def labs(self) -> list[str]:
        """The labs of the crops, in order of first appearance among the sources."""
        return list(dict.fromkeys(lab_of_source(source) for source in self.sources))

    def lab_of(self) -> np.ndarray:
        """(n,) int64: each crop's lab, an index into ``labs``."""
        labs = self.labs
        per_source = np.asarray(
            [labs.index(lab_of_source(source)) for source in self.sources] or [0], np.int64
        )
        return per_source[self.source_of]

    def other_cuts_of(self, keep: np.ndarray) -> dict[str, np.ndarray]:
        """The other cuts of the crops ``keep`` (a boolean mask over the crops), their
        indices renumbered as those crops are: ``other_images`` and ``other_of``."""
        renumbered = np.cumsum(keep) - 1
        chosen = keep[self.other_of]
        return {"other_images": self.other_images[chosen],
                "other_of": renumbered[self.other_of[chosen]].astype(np.int64)}  # fmt: skip

    def lab_subset(self, lab: str) -> CropSet:
        """The crops of one lab (cells renumbered)."""
        keep = self.lab_of() == self.labs.index(lab)
        cells = sorted(set(self.cell_of[keep].tolist()))
        remap = np.zeros(max(len(self.cell_names), 1), np.int64)
        remap[cells] = np.arange(len(cells))
        return CropSet(
            images=self.images[keep],
            labels=self.labels[keep],
            cell_of=remap[self.cell_of[keep]],
            cell_names=[self.cell_names[c] for c in cells],
            sources=[lab],
            cell_bright=[self.cell_bright[c] for c in cells],
            **self.other_cuts_of(keep),
        )

    def summary(self) -> dict:
        lab_of = self.lab_of()
        return {
            "sources": self.sources,
            "labs": {lab: int((lab_of == k).sum()) for k, lab in enumerate(self.labs)},
            "n_cells": len(self.cell_names),
            "n_crops": len(self),
            "bright_on_dark_cells": self.bright_on_dark_cells,
            "class_counts": self.class_counts(),
        }

    @classmethod
    def empty(cls, preprocessing: Preprocessing) -> CropSet:
        shape = (0, preprocessing.height, preprocessing.width)
        none = np.zeros(0, np.int64)
        return cls(np.zeros(shape, np.uint8), none, none.copy())

    @classmethod
    def concatenate(cls, parts: Sequence[CropSet]) -> CropSet:
        parts = [part for part in parts if len(part) or part.problems]
        if not parts:
            raise DataError("no training data given")
        offsets = np.cumsum([0] + [len(part.cell_names) for part in parts[:-1]])
        source_offsets = np.cumsum([0] + [len(part.sources) for part in parts[:-1]])
        lengths = [len(part) for part in parts]
        return cls(
            images=np.concatenate([part.images for part in parts]),
            labels=np.concatenate([part.labels for part in parts]),
            cell_of=np.concatenate([part.cell_of + o for part, o in zip(parts, offsets)]),
            cell_names=[name for part in parts for name in part.cell_names],
            problems=[problem for part in parts for problem in part.problems],
            sources=[source for part in parts for source in part.sources],
            source_of=np.concatenate(
                [part.source_of + o for part, o in zip(parts, source_offsets)]
            ),
            cell_bright=[bright for part in parts for bright in part.cell_bright],
            other_images=np.concatenate([part.other_images for part in parts]),
            other_of=np.concatenate(
                [part.other_of + o for part, o in zip(parts, np.cumsum([0, *lengths[:-1]]))]
            ),
        )


def training_label(chromosome: Chromosome, cell: Cell) -> ChromosomeType | None:
    """The label a crop is trained on, or None when it has no trustworthy one.

    A reviewer's manual label wins; the model's own assignment counts only once a
    cytogeneticist signed the cell off; otherwise the label given with the data.
    """
    if chromosome.manual is not None:
        label = chromosome.manual.label
    elif cell.status is CellStatus.SIGNED_OFF and chromosome.assigned is not None:
        label = chromosome.assigned
    else:
        label = chromosome.given
    if label is None or label is ChromosomeType.UNCLASSIFIED:
        return None
    return label


def crops_of_cells(
    cells: Iterable[Cell], preprocessing: Preprocessing, source: str = "",
    other_cuts: bool = True,
) -> CropSet:
    """The labelled crops of some cells; unlabelled and missing crops are left out. With
    ``other_cuts``, their other cuts too (what judging a model reads; training does not)."""
    images, labels, cell_of, names = [], [], [], []
    others, other_of = [], []
    bright: list[bool] = []
    for cell in cells:
        pictured = [chromosome for chromosome in cell.chromosomes if chromosome.image is not None]
        found = [training_label(chromosome, cell) for chromosome in pictured]
        kept = [k for k, label in enumerate(found) if label is not None]
        if not kept:
            continue
        # the common scale comes from ALL crops of the cell, as at inference time
        scale = cell_scale([chromosome.image for chromosome in pictured], preprocessing)
        canvases = prepare_crops([chromosome.image for chromosome in pictured], preprocessing,
                                 scale)  # fmt: skip
        if other_cuts:
            cut, of = prepare_other_cuts([pictured[k].other_cuts for k in kept], preprocessing,
                                         scale)  # fmt: skip
            others.append(cut)
            other_of.append(of + len(labels))
        images.append(canvases[kept])
        labels.extend(int(found[k]) for k in kept)
        cell_of.extend([len(names)] * len(kept))
        names.append(cell.name)
        bright.append(cell.bright_on_dark)
    if not images:
        empty = CropSet.empty(preprocessing)
        empty.sources = [source] if source else []
        return empty
    return CropSet(
        images=np.concatenate(images),
        labels=np.asarray(labels, np.int64),
        cell_of=np.asarray(cell_of, np.int64),
        cell_names=names,
        sources=[source] if source else [],
        cell_bright=bright,
        other_images=np.concatenate(others) if others else None,
        other_of=np.concatenate(other_of) if other_of else None,
    )


def load_dataset_crops(
    root: str | os.PathLike,
    cells: str | os.PathLike | Sequence[str] | None,
    preprocessing: Preprocessing,
    other_cuts: bool = True,
) -> CropSet:
    """A labelled dataset folder (e.g. gband612 with a split list) as crops, or a folder of
    annotated metaphases (cil24: ``images/`` + ``annotations/``) as the crops cut from their
    annotated boxes (with ``other_cuts``, the other cuts of those that touch a neighbour)."""
    if is_annotated_folder(root):
        try:
            found, problems = load_annotated_cells(root, cells)
        except (AnnotationError, CellLoadError) as error:
            raise DataError(str(error)) from None
        dataset = Dataset(root=Path(root), cells=found, problems=problems)
        if not found:
            raise DataError(f"{root}: no annotated metaphase could be read")
    else:
        try:
            dataset = load_dataset(root, cells=cells)
        except CellLoadError as error:
            raise DataError(str(error)) from None
    # the lab is the folder's own name (as given: ".", "x/" or a link name all resolve)
    source = Path(root).resolve().name + (f":{Path(cells).name}" if isinstance(cells, str) else "")
    crops = crops_of_cells(dataset.cells, preprocessing, source, other_cuts)
    crops.problems = list(dataset.problems)
    return crops


def load_case_crops(paths: Iterable[str | os.PathLike], preprocessing: Preprocessing) -> CropSet:
    """The corrected cells of saved case files as crops (manual labels win)."""
    parts = []
    for path in paths:
        try:
            case = load_case(path)
        except CaseFileError as error:
            raise DataError(str(error)) from None
        part = crops_of_cells(case.cells, preprocessing, source=f"case:{Path(path).name}")
        part.problems = list(case.problems)
        parts.append(part)
    return CropSet.concatenate(parts) if parts else CropSet.empty(preprocessing)


# karyotypes of the generated cells mixed into training: mostly normal, some aneuploid
GENERATED_KARYOTYPES = ("46,XX", "46,XY", "46,XY", "46,XX", "47,XY,+21", "45,X", "47,XXY")


def generated_crops(n_cells: int, seed: int, preprocessing: Preprocessing) -> CropSet:
    """Cells from the project's own generator (so the app's example cells are known too)."""
    cells = (
        generate_cell(
            GENERATED_KARYOTYPES[k % len(GENERATED_KARYOTYPES)],
            seed=seed + k,
            name=f"generated {k}",
        )
        for k in range(n_cells)
    )
    return crops_of_cells(cells, preprocessing, source=f"generated:{n_cells}")


def describe(crops: CropSet) -> str:
    counts = crops.class_counts()
    missing = [ChromosomeType(t).display_name for t in range(N_TYPES) if counts[t] == 0]
    text = f"{len(crops)} crops of {len(crops.cell_names)} cells"
    return text + (f" (no crops of type {', '.join(missing)})" if missing else "")
