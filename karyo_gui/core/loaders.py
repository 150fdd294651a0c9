"""Loading cells from the folders users have.

* an unlabelled cell: a flat folder of crop images;
* a labelled cell: a folder with one sub-folder per class (``claseN``, ``N``, ``chrN``,
  ``X``, ``Y``), as in gband612 where the cell folders themselves end in ``.tiff``;
* a dataset: a folder of labelled cells (or one holding ``cells/``), optionally limited
  to the cells named in a list file such as ``splits/test.txt``.

A crop that cannot be read never stops the others: its file and the reason go into
``Cell.problems`` and the rest of the cell loads. Only a cell with nothing usable at all
raises CellLoadError. What a cell may cost is bounded (see ``images``): at most
MAX_CELL_FILES crops are read from one folder, and their decoded pixels come out of the
cell's PixelBudget (and the case's, when one is given); once one is spent, the rest of the
cell is not read and one line says how many crops were left.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from karyo_gui.core.case import Cell, Chromosome
from karyo_gui.core.images import (
    CropReadError,
    PixelBudget,
    PixelBudgetExceeded,
    is_image_file,
    read_crop_and_hash,
)
from karyo_gui.core.labels import ChromosomeType

_IGNORED_FILES = {"thumbs.db", "desktop.ini"}
MAX_CELL_CHROMOSOMES = 120  # above a near-tetraploid cell (92) with some debris: not one cell
# Counts. A case file never holds more than a folder opens: what karyo saves it opens again.
MAX_CELL_FILES = 2000  # crops read from one cell folder (a whole slide's export is ~500)
MAX_CASE_CELLS = 1000  # cells opened as one case (gband612, a whole lab's dataset, has 509)
MAX_CASE_CHROMOSOMES = 200_000  # in one case: 500 metaphases of 300 found objects each


class CellLoadError(Exception):
    """Nothing usable could be loaded from a folder; the message names it and says why."""


def display_path(path: str | os.PathLike) -> str:
    """A path that prints on any terminal, even when its bytes are not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", errors="replace")


def natural_key(text: str) -> list[object]:
    """Sort key so that ``clase2`` comes before ``clase10``."""
    return [int(part) if part.isdecimal() else part.lower() for part in re.split(r"(\d+)", text)]


def class_of_folder(name: str) -> ChromosomeType | None:
    try:
        return ChromosomeType.from_name(name)
    except ValueError:
        return None


def is_cell_folder(folder: Path) -> bool:
    """Whether a folder holds one cell: crop images or class sub-folders directly in it."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    return any(
        (entry.is_file() and is_image_file(entry))
        or (entry.is_dir() and class_of_folder(entry.name) is not None)
        for entry in entries
    )


def load_cell(folder: str | os.PathLike, name: str | None = None,
              case_budget: PixelBudget | None = None) -> Cell:
    """A cell from a flat folder of crops or a folder of class sub-folders (or both).

    Its crops' decoded pixels come out of a new cell budget, and out of ``case_budget``
    when given; a case budget already spent raises CellLoadError before anything is read.
    """
    folder = Path(folder)
    spent = case_budget.exhausted if case_budget is not None else None
    if spent is not None:
        raise CellLoadError(f"{display_path(folder)}: {spent.message()}")
    entries = _list_folder(folder)
    problems: list[str] = []
    crops: list[tuple[Path, ChromosomeType | None]] = []
    for entry in sorted(entries, key=lambda path: natural_key(path.name)):
        if entry.is_dir():
            chromosome_type = class_of_folder(entry.name)
            if chromosome_type is None:
                problems.append(
                    f"{display_path(entry)}: sub-folder is not a chromosome class name "
                    "(expected 1-22, X, Y, chrN or claseN); skipped"
                )
                continue
            try:
                members = _list_folder(entry)
            except CellLoadError as error:
                problems.append(str(error))
                continue
            crops.extend(
                (path, chromosome_type)
                for path in sorted(members, key=lambda path: natural_key(path.name))
                if _is_crop_candidate(path, problems)
            )
        elif _is_crop_candidate(entry, problems):
            crops.append((entry, None))

    if len(crops) > MAX_CELL_FILES:
        problems.append(
            f"{display_path(folder)}: {len(crops):,} image files, far more than one cell "
            f"holds; only the first {MAX_CELL_FILES} were read (give each cell its own folder)"
        )
        crops = crops[:MAX_CELL_FILES]
    budget = PixelBudget.for_cell(case_budget)
    chromosomes = []
    for index, (path, chromosome_type) in enumerate(crops):
        try:
            image, digest = read_crop_and_hash(path, budget)
        except PixelBudgetExceeded as error:
            left = len(crops) - index - 1
            more = f"; {left} more crop(s) of this cell not read either" if left else ""
            problems.append(f"{display_path(error.path)}: {error.reason}{more}")
            break
        except CropReadError as error:
            problems.append(f"{display_path(error.path)}: {error.reason}")
            continue
        chromosomes.append(
            Chromosome(
                id=path.relative_to(folder).as_posix(),
                image=image,
                source_path=str(path.resolve()),
                content_hash=digest,
                given=chromosome_type,
            )
        )
    if not chromosomes:
        detail = f" ({len(problems)} file(s) unusable, e.g. {problems[0]})" if problems else ""
        raise CellLoadError(f"{display_path(folder)}: no chromosome images found{detail}")
    if len(chromosomes) > MAX_CELL_CHROMOSOMES:
        problems.insert(0, (
            f"{display_path(folder)}: {len(chromosomes)} chromosome images, far more than one "
            "metaphase cell holds (46, or about 92 near-tetraploid); are several cells in "
            "one folder? (give each cell its own folder)"
        ))
    return Cell(
        name=name or display_path(folder.name),  # a label: shown, never used as a path
        chromosomes=chromosomes,
        source=str(folder.resolve()),
        problems=problems,
    )


def _list_folder(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        raise CellLoadError(f"{display_path(folder)}: folder not found") from None
    except NotADirectoryError:
        raise CellLoadError(f"{display_path(folder)}: not a folder") from None
    except PermissionError:
        raise CellLoadError(f"{display_path(folder)}: permission denied") from None
    except OSError as error:
        raise CellLoadError(f"{display_path(folder)}: cannot list ({error.strerror})") from None


def _is_crop_candidate(path: Path, problems: list[str]) -> bool:
    """Image files are crops; other files are named in the problems, hidden ones ignored."""
    if path.name.startswith(".") or path.name.lower() in _IGNORED_FILES:
        return False
    if path.is_dir():
        problems.append(f"{display_path(path)}: nested folder inside a class folder; skipped")
        return False
    if not is_image_file(path):
        problems.append(f"{display_path(path)}: not an image file; skipped")
        return False
    return True


@dataclass
class Dataset:
    """Labelled cells for training and evaluation, with what could not be loaded."""

    root: Path
    cells: list[Cell] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def n_chromosomes(self) -> int:
        return sum(len(cell) for cell in self.cells)


def read_cell_list(path: str | os.PathLike) -> list[str]:
    """Cell names from a list file: one per line; blank lines and ``#`` comments ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CellLoadError(f"{display_path(path)}: cell list not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CellLoadError(f"{display_path(path)}: cannot read cell list ({error})") from None
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [name for name in names if name]


def cells_folder(root: str | os.PathLike) -> Path:
    """The folder holding the cell folders: ``root/cells`` when present, else ``root``."""
    root = Path(root)
    return root / "cells" if (root / "cells").is_dir() else root


def load_dataset(
    root: str | os.PathLike,
    cells: Iterable[str] | str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 4,
    case_budget: PixelBudget | None = None,
    max_cells: int | None = None,
    max_chromosomes: int | None = None,
) -> Dataset:
    """All cells under ``root``, or those named by ``cells`` (names, or a list file).

    Opened as one case (``case_budget``, ``max_cells``, ``max_chromosomes``): the crops'
    decoded pixels come out of the case's budget, at most ``max_cells`` cells are read and
    at most ``max_chromosomes`` chromosomes kept, the cells left out named in the problems.
    A training dataset has none of them (each cell still has its own budget)."""
    folder = cells_folder(root)
    if not folder.is_dir():
        raise CellLoadError(f"{display_path(root)}: dataset folder not found")
    problems: list[str] = []
    if cells is None:
        names = sorted(
            (entry.name for entry in _list_folder(folder) if entry.is_dir()), key=natural_key
        )
    elif isinstance(cells, (str, os.PathLike)):
        names = read_cell_list(cells)
    else:
        names = list(cells)
    wanted = []
    for name in names:
        if (folder / name).is_dir():
            wanted.append(name)
        else:
            problems.append(f"{display_path(folder / name)}: listed cell not found; skipped")

    if max_cells is not None and len(wanted) > max_cells:
        problems.append(
            f"{display_path(folder)}: {len(wanted):,} cell folders, more than karyo opens as "
            f"one case ({max_cells:,}); only the first {max_cells:,} were opened"
        )
        wanted = wanted[:max_cells]
    loaded: list[Cell] = []
    load = partial(_try_load_cell, case_budget=case_budget)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(load, (folder / name for name in wanted))
        kept = 0
        for done, (cell, error) in enumerate(results, start=1):
            if cell is not None and max_chromosomes is not None and (
                    kept + len(cell) > max_chromosomes):
                cell, error = None, (
                    f"{display_path(cell.source or cell.name)}: not opened: the case would "
                    f"hold more than {max_chromosomes:,} chromosomes, the most karyo opens "
                    "as one case")
            if cell is not None:
                loaded.append(cell)
                kept += len(cell)
                problems.extend(cell.problems)
            else:
                problems.append(error)
            if progress is not None:
                progress(done, len(wanted))
    if not wanted and not problems:
        raise CellLoadError(
            f"{display_path(folder)}: no chromosome images and no cell folders in it"
        )
    if not loaded:
        reason = f" ({problems[0]})" if len(problems) == 1 else ""
        raise CellLoadError(f"{display_path(folder)}: no cells could be loaded{reason}")
    return Dataset(root=Path(root), cells=loaded, problems=problems)


def _try_load_cell(folder: Path, case_budget: PixelBudget | None = None
                   ) -> tuple[Cell | None, str]:
    try:
        return load_cell(folder, case_budget=case_budget), ""
    except CellLoadError as error:
        return None, str(error)


def write_cell(cell: Cell, folder: str | os.PathLike, labelled: bool = True) -> Path:
    """Write a cell's crops as PNG files: one sub-folder per class when ``labelled``.

    Used to export generated example cells so they can be opened like a lab's own.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, chromosome in enumerate(cell.chromosomes):
        if chromosome.image is None:
            continue
        target = folder
        if labelled:
            label = chromosome.label
            is_other = label is ChromosomeType.UNCLASSIFIED
            target = folder / ("other" if is_other else f"chr{label.display_name}")
            target.mkdir(exist_ok=True)
        write_png(target / f"{cell.name}_{index:03d}.png", chromosome.image)
    return folder


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a grey or RGB uint8 image as PNG; OSError naming the file if that fails."""
    # encode, then write with Python: cv2.imwrite crashes the process on a path that is
    # not valid UTF-8 (a cell named after such a folder) and fails on non-ASCII Windows paths
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, png = cv2.imencode(".png", pixels)
    if not ok:
        raise OSError(f"{display_path(path)}: could not encode image")
    path.write_bytes(png.tobytes())
