"""Open whatever the user points at as a Case: a case file, a cell folder, a folder of cells,
a whole metaphase image, or a folder of metaphase images.

A flat folder of images is either one cell of chromosome crops or a set of whole metaphase
images. The two are told apart by the images' pixel sizes, read from their headers without
decoding: crops are small (tens to a couple of hundred pixels a side), metaphase photographs
hundreds of pixels or more.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from karyo_gui.core import metaphase
from karyo_gui.core.annotations import is_annotated_folder
from karyo_gui.core.case import Case, Cell
from karyo_gui.core.case_file import SUFFIX as CASE_SUFFIX
from karyo_gui.core.case_file import CaseFileError, load_case
from karyo_gui.core.images import (
    PixelBudget,
    PixelBudgetExceeded,
    image_header_size,
    is_image_file,
)
from karyo_gui.core.loaders import (
    MAX_CASE_CELLS,
    MAX_CASE_CHROMOSOMES,
    CellLoadError,
    _list_folder,
    class_of_folder,
    display_path,
    is_cell_folder,
    load_cell,
    load_dataset,
    natural_key,
)
from karyo_gui.core.metaphase import (
    MetaphaseImage,
    MetaphaseReadError,
    decoded_pixels,
    read_metaphase,
)
from karyo_gui.core.synthetic import generate_cell

OpenError = (CaseFileError, CellLoadError)

METAPHASE_LONGER_SIDE = 400  # px: images at least this long are whole metaphases, not crops
MAX_METAPHASE_FILES = 500  # one case; a larger folder is a collection, opened a part at a time
_SIZE_SAMPLE = 64  # headers read to decide what a folder holds (evenly spread over it)
_IGNORED_FILES = {"thumbs.db", "desktop.ini"}


def open_case(path: str | os.PathLike) -> Case:
    """A case from a ``.karyo.json`` file, a cell folder, a folder holding cell folders, a
    metaphase image file or a folder of metaphase images (also the ``images/`` of a folder
    with ``images/`` and ``annotations/``).

    Raises CaseFileError or CellLoadError (both in ``OpenError``) with a message naming
    the path when nothing can be opened.
    """
    path = Path(path)
    if path.is_file():
        if is_image_file(path):
            return open_metaphase(path)
        if not path.name.lower().endswith(".json") and not _starts_like_json(path):
            raise CellLoadError(
                f"{display_path(path)}: not a file karyo opens (a case file, *{CASE_SUFFIX}; a "
                "metaphase image, PNG, JPEG, TIFF or BMP; or a folder of chromosome crops or "
                "of metaphase images)"
            )
        return load_case(path)
    if not path.exists():
        raise CellLoadError(f"{display_path(path)}: no such file or folder")
    if not path.is_dir():
        raise CellLoadError(
            f"{display_path(path)}: not a regular file or folder (a device or a pipe?)"
        )
    if is_annotated_folder(path):
        return open_metaphase_folder(path / "images", case_id=display_path(path.name))
    if is_metaphase_folder(path):
        return open_metaphase_folder(path)
    if is_cell_folder(path):
        cell = load_cell(path, case_budget=PixelBudget.for_case())
        return Case(case_id=_case_id(cell.name), cells=[cell])
    dataset = load_dataset(path, case_budget=PixelBudget.for_case(), max_cells=MAX_CASE_CELLS,
                           max_chromosomes=MAX_CASE_CHROMOSOMES)
    per_cell = {problem for cell in dataset.cells for problem in cell.problems}
    return Case(
        case_id=display_path(path.name),
        cells=dataset.cells,
        problems=[problem for problem in dataset.problems if problem not in per_cell],
    )


def _starts_like_json(path: Path) -> bool:
    """Whether the file begins as a JSON object does (a case file renamed by its user)."""
    try:
        with path.open("rb") as handle:
            start = handle.read(256)
    except OSError:
        return True  # load_case says what is wrong with it
    return start.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def example_case(karyotype: str = "46,XY", seed: int = 0) -> Case:
    """The embedded demo: a generated cell of the given karyotype."""
    cell = generate_cell(karyotype, seed=seed)
    return Case(case_id="example", cells=[cell])


def _case_id(cell_name: str) -> str:
    """gband612-style cell folders are ``<case>.<cell>.tiff``: the case is the first part."""
    return cell_name.split(".", 1)[0] or cell_name


# ---------------------------------------------------------------- metaphase images

def open_metaphase(path: str | os.PathLike) -> Case:
    """A case of one cell: the metaphase image at ``path``, its chromosomes not found yet."""
    path = Path(path)
    size = image_size(path)
    if size is not None and max(size) < METAPHASE_LONGER_SIDE:
        raise CellLoadError(
            f"{display_path(path)}: image is {size[0]} x {size[1]} px, too small for a whole "
            "metaphase (a chromosome crop? open the folder of crops as a cell)"
        )
    try:
        cell = metaphase_cell(path)
    except MetaphaseReadError as error:
        raise CellLoadError(str(error)) from None
    return Case(case_id=cell.name, cells=[cell])


def open_metaphase_folder(folder: str | os.PathLike, case_id: str | None = None) -> Case:
    """One case, one cell per metaphase image of ``folder`` (in natural order). An image
    that cannot be read goes into ``Case.problems``; the others load."""
    folder = Path(folder)
    shown = display_path(folder)
    problems: list[str] = []
    images = _image_files(folder, problems)
    if not images:
        raise CellLoadError(f"{shown}: no metaphase images found")
    if len(images) > MAX_METAPHASE_FILES:
        raise CellLoadError(
            f"{shown}: {len(images)} metaphase images, more than karyo opens as one case "
            f"({MAX_METAPHASE_FILES}); split them into folders of at most "
            f"{MAX_METAPHASE_FILES}"
        )
    stems = [path.stem for path in images]
    names = [path.name if stems.count(path.stem) > 1 else path.stem for path in images]
    cells: list[Cell] = []
    budget = PixelBudget(metaphase.MAX_CASE_METAPHASE_PIXELS, "case", contents="images")
    with ThreadPoolExecutor(max_workers=4) as pool:
        reads = pool.map(lambda path: _try_metaphase_cell(path, budget), images)
        for name, result in zip(names, reads):
            if isinstance(result, Cell):
                result.name = display_path(name)
                cells.append(result)
            else:
                problems.append(result)
    if not cells:
        reason = f" ({problems[0]})" if problems else ""
        raise CellLoadError(f"{shown}: none of its metaphase images could be read{reason}")
    return Case(case_id=case_id or display_path(folder.name), cells=cells, problems=problems)


def metaphase_cell(path: Path) -> Cell:
    """A cell holding the metaphase image at ``path`` and no chromosomes yet (the finder's
    work); how the image was read (downsampled, inverted) is told in ``Cell.problems``."""
    image: MetaphaseImage = read_metaphase(path.resolve())
    shown = display_path(path)
    return Cell(
        name=display_path(path.stem),
        source=image.path,
        metaphase=image,
        problems=[f"{shown}: {note}" for note in image.notes],
    )


def _try_metaphase_cell(path: Path, budget: PixelBudget | None = None) -> Cell | str:
    """The cell of one image of a folder, or why not; its pixels (from the header, before
    decoding) are taken from the case's budget, so a folder of huge frames stops at it."""
    try:
        if budget is not None:
            size = image_size(path)
            if size is not None:
                budget.take(display_path(path), decoded_pixels(*size))
        return metaphase_cell(path)
    except (MetaphaseReadError, PixelBudgetExceeded) as error:
        return str(error)


def is_metaphase_folder(folder: str | os.PathLike) -> bool:
    """Whether a folder holds whole metaphase images (not a cell of crops): image files
    directly in it, no class sub-folders, and the median longer side of the images (read
    from their headers, a sample of at most 64) at least METAPHASE_LONGER_SIDE."""
    folder = Path(folder)
    try:
        entries = sorted(folder.iterdir(), key=lambda entry: natural_key(entry.name))
    except OSError:
        return False
    if any(entry.is_dir() and class_of_folder(entry.name) is not None for entry in entries):
        return False
    images = [entry for entry in entries if _is_image_entry(entry)]
    if not images:
        return False
    step = max(1, len(images) // _SIZE_SAMPLE)
    sides = [max(size) for size in map(image_size, images[::step][:_SIZE_SAMPLE]) if size]
    if not sides:
        return False
    sides.sort()
    middle = len(sides) // 2
    median = sides[middle] if len(sides) % 2 else (sides[middle - 1] + sides[middle]) / 2
    return median >= METAPHASE_LONGER_SIDE


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image file's header, without decoding its pixels; None
    when it is not a regular file (a pipe would block the open) or its header cannot be
    read."""
    try:
        return image_header_size(path)
    except Image.DecompressionBombError:
        return (2**31, 2**31)  # claims to be enormous: not a crop (the reader refuses it)
    except Exception:  # any unreadable header: the reader will say why
        return None


def _is_image_entry(entry: Path) -> bool:
    return (
        is_image_file(entry)
        and entry.name.lower() not in _IGNORED_FILES
        and not entry.is_dir()
    )


def _image_files(folder: Path, problems: list[str]) -> list[Path]:
    entries = sorted(_list_folder(folder), key=lambda entry: natural_key(entry.name))
    images = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name.lower() in _IGNORED_FILES:
            continue
        if entry.is_dir():
            problems.append(f"{display_path(entry)}: folder inside a folder of metaphase "
                            "images; skipped")
        elif is_image_file(entry):
            images.append(entry)
        else:
            problems.append(f"{display_path(entry)}: not an image file; skipped")
    return images
