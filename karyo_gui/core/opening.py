"""Open whatever the user points at as a Case: a case file, a cell folder, or a folder of cells."""

from __future__ import annotations

import os
from pathlib import Path

from karyo_gui.core.case import Case
from karyo_gui.core.case_file import CaseFileError, load_case
from karyo_gui.core.loaders import (
    CellLoadError,
    display_path,
    is_cell_folder,
    load_cell,
    load_dataset,
)
from karyo_gui.core.synthetic import generate_cell

OpenError = (CaseFileError, CellLoadError)


def open_case(path: str | os.PathLike) -> Case:
    """A case from a ``.karyo.json`` file, a cell folder, or a folder holding cell folders.

    Raises CaseFileError or CellLoadError (both in ``OpenError``) with a message naming
    the path when nothing can be opened.
    """
    path = Path(path)
    if path.is_file():
        return load_case(path)
    if not path.exists():
        raise CellLoadError(f"{display_path(path)}: no such file or folder")
    if is_cell_folder(path):
        cell = load_cell(path)
        return Case(case_id=_case_id(cell.name), cells=[cell])
    dataset = load_dataset(path)
    per_cell = {problem for cell in dataset.cells for problem in cell.problems}
    return Case(
        case_id=display_path(path.name),
        cells=dataset.cells,
        problems=[problem for problem in dataset.problems if problem not in per_cell],
    )


def example_case(karyotype: str = "46,XY", seed: int = 0) -> Case:
    """The embedded demo: a generated cell of the given karyotype."""
    cell = generate_cell(karyotype, seed=seed)
    return Case(case_id="example", cells=[cell])


def _case_id(cell_name: str) -> str:
    """gband612-style cell folders are ``<case>.<cell>.tiff``: the case is the first part."""
    return cell_name.split(".", 1)[0] or cell_name
