"""Loading cells and datasets from the folders users have; bad files never stop good ones."""

from __future__ import annotations

import os
import pathlib
from collections import Counter

import cv2
import numpy as np
import pytest

from karyo_gui.core import images
from karyo_gui.core.case import Cell, Chromosome
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import (
    CellLoadError,
    cells_folder,
    load_cell,
    load_dataset,
    natural_key,
    read_cell_list,
    write_cell,
)

T = ChromosomeType


def rod_crop(height: int = 60, width: int = 24, level: int = 40) -> np.ndarray:
    crop = np.full((height, width), 255, np.uint8)
    crop[5 : height - 5, width // 2 - 4 : width // 2 + 4] = level
    return crop


def write_crop(path: pathlib.Path, crop: np.ndarray | None = None) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # cv2.imwrite would crash on a file name that is not valid UTF-8: encode, then write
    ok, encoded = cv2.imencode(path.suffix, rod_crop() if crop is None else crop)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def make_labelled_cell(folder: pathlib.Path, classes: dict[str, int]) -> pathlib.Path:
    """A labelled cell: ``classes`` maps a sub-folder name to how many crops it holds."""
    for index, (sub_folder, count) in enumerate(classes.items()):
        for copy in range(count):
            write_crop(folder / sub_folder / f"{sub_folder}_{copy}.png", rod_crop(40 + index))
    return folder


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A 20000 x 20000 PNG of one grey value: a whole slide, not a crop (compresses small)."""
    ok, encoded = cv2.imencode(".png", np.full((20000, 20000), 255, np.uint8))
    assert ok
    return encoded.tobytes()


@pytest.fixture
def deny_reading(monkeypatch):
    """Make a file unreadable: chmod 000, and for root (who reads anything) refuse it too."""
    denied: list[pathlib.Path] = []
    real_open = images.open_regular_file

    def open_regular_file(file):
        file = pathlib.Path(file)
        if any(file.name == path.name and file.parent.name == path.parent.name
               for path in denied):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file)

    if os.geteuid() == 0:
        monkeypatch.setattr(images, "open_regular_file", open_regular_file)

    def deny(path: pathlib.Path) -> None:
        path.chmod(0)
        denied.append(path)

    yield deny
    for path in denied:
        path.chmod(0o644)


# --------------------------------------------------------------------------- one cell


def test_flat_folder_is_an_unlabelled_cell_in_natural_order(tmp_path):
    folder = tmp_path / "cell"
    for name in ["crop10.png", "crop2.png", "crop1.tif", "Crop3.bmp"]:
        write_crop(folder / name)
    cell = load_cell(folder)
    assert cell.name == "cell"
    assert [c.id for c in cell.chromosomes] == ["crop1.tif", "crop2.png", "Crop3.bmp",
                                                 "crop10.png"]
    assert all(c.given is None for c in cell.chromosomes)
    assert all(c.label is T.UNCLASSIFIED for c in cell.chromosomes)
    assert cell.problems == []
    assert cell.source == str(folder.resolve())
    for chromosome in cell.chromosomes:
        assert chromosome.image.dtype == np.uint8 and chromosome.image.ndim == 2
        assert pathlib.Path(chromosome.source_path) == (folder / chromosome.id).resolve()
        assert chromosome.content_hash.startswith("sha256:")


def test_a_name_can_be_given(tmp_path):
    write_crop(tmp_path / "cell" / "a.png")
    assert load_cell(tmp_path / "cell", name="patient 7, cell 3").name == "patient 7, cell 3"


def test_labelled_cell_with_class_sub_folders(tmp_path):
    # the gband612 cell folders are directories whose names end in .tiff
    folder = make_labelled_cell(
        tmp_path / "A123.4.tiff",
        {"clase1": 2, "clase10": 2, "clase2": 2, "X": 1, "chr7": 2, "21": 3, "clase24": 1,
         "clase23": 1},
    )
    cell = load_cell(folder)
    assert cell.name == "A123.4.tiff"
    assert cell.problems == []
    assert cell.given_counts() == Counter(
        {T.CHR1: 2, T.CHR10: 2, T.CHR2: 2, T.X: 2, T.CHR7: 2, T.CHR21: 3, T.Y: 1}
    )
    for chromosome in cell.chromosomes:
        sub_folder = chromosome.id.split("/")[0]
        assert chromosome.given is T.from_name(sub_folder)
        assert chromosome.label is chromosome.given
    assert cell.karyotype.startswith("14,XXY,")


def test_class_folders_load_in_natural_order(tmp_path):
    folder = make_labelled_cell(tmp_path / "cell", {"clase10": 1, "clase2": 1, "clase1": 1})
    write_crop(folder / "clase2" / "clase2_10.png")
    write_crop(folder / "clase2" / "clase2_9.png")
    ids = [c.id for c in load_cell(folder).chromosomes]
    assert ids == [
        "clase1/clase1_0.png",
        "clase2/clase2_0.png",
        "clase2/clase2_9.png",
        "clase2/clase2_10.png",
        "clase10/clase10_0.png",
    ]


def test_natural_key_sorts_numbers_by_value():
    names = ["clase10", "clase2", "clase1", "Clase3", "clase21"]
    assert sorted(names, key=natural_key) == ["clase1", "clase2", "Clase3", "clase10", "clase21"]


def test_natural_key_takes_names_with_other_unicode_digits():
    # '²' is a digit to str.isdigit but not to int(): sorting must not crash on it
    names = ["cell10", "cell1\u00b2", "cell2", "cell\u0663"]  # superscript 2, Arabic-Indic 3
    assert sorted(names, key=natural_key) == ["cell1\u00b2", "cell2", "cell\u0663", "cell10"]


def test_a_dataset_with_such_a_cell_name_loads(tmp_path):
    make_dataset(tmp_path / "data", ["cell1\u00b2", "cell2"])
    dataset = load_dataset(tmp_path / "data")
    assert [cell.name for cell in dataset.cells] == ["cell1\u00b2", "cell2"]


def test_bad_files_in_a_good_cell_are_reported_and_the_rest_loads(
    tmp_path, huge_png, deny_reading
):
    folder = make_labelled_cell(tmp_path / "B7.tiff", {"clase1": 2, "clase2": 2, "X": 2})
    bad = {
        "notes.txt": folder / "notes.txt",
        "empty.tif": folder / "clase1" / "empty.tif",
        "corrupt.png": folder / "clase2" / "corrupt.png",
        "slide.png": folder / "X" / "slide.png",
        "locked.png": folder / "clase1" / "locked.png",
        "misc": folder / "misc",
    }
    bad["notes.txt"].write_text("patient notes")
    bad["empty.tif"].write_bytes(b"")
    bad["corrupt.png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    bad["slide.png"].write_bytes(huge_png)
    write_crop(bad["locked.png"])
    deny_reading(bad["locked.png"])
    write_crop(bad["misc"] / "crop.png")  # a sub-folder with no class name
    # silently ignored: hidden files and the files operating systems leave behind
    (folder / ".DS_Store").write_bytes(b"\x00\x01binary")
    (folder / "clase1" / "._clase1_0.png").write_bytes(b"\x00resource fork")
    (folder / "Thumbs.db").write_bytes(b"\x00")

    cell = load_cell(folder)
    assert cell.given_counts() == Counter({T.CHR1: 2, T.CHR2: 2, T.X: 2})
    assert len(cell.problems) == len(bad), cell.problems
    for name in bad:
        assert sum(name in problem for problem in cell.problems) == 1, (name, cell.problems)
    assert not any(".DS_Store" in p or "._clase1" in p or "Thumbs" in p for p in cell.problems)
    reasons = "\n".join(cell.problems)
    assert "not an image file" in reasons
    assert "empty file" in reasons
    assert "permission denied" in reasons
    assert "too large" in reasons
    assert "not a chromosome class name" in reasons


def test_a_file_name_that_is_not_utf8_loads_and_problems_stay_printable(tmp_path):
    folder = tmp_path / "cell"
    write_crop(folder / os.fsdecode(b"good_\xff.png"))
    (folder / os.fsdecode(b"bad_\xfe.png")).write_text("not an image")
    cell = load_cell(folder)
    assert len(cell) == 1
    assert len(cell.problems) == 1
    assert "bad_\ufffd.png" in cell.problems[0]
    cell.problems[0].encode("utf-8")


def test_empty_folder_raises_naming_it(tmp_path):
    folder = tmp_path / "empty cell"
    folder.mkdir()
    with pytest.raises(CellLoadError, match="empty cell"):
        load_cell(folder)


def test_folder_of_hidden_files_only_raises(tmp_path):
    folder = tmp_path / "cell"
    folder.mkdir()
    (folder / ".DS_Store").write_bytes(b"\x00")
    with pytest.raises(CellLoadError, match="no chromosome images"):
        load_cell(folder)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(CellLoadError, match="not found") as info:
        load_cell(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


def test_a_file_instead_of_a_folder_raises(tmp_path):
    path = write_crop(tmp_path / "crop.png")
    with pytest.raises(CellLoadError, match="not a folder"):
        load_cell(path)


def test_folder_of_only_bad_files_raises_naming_folder_and_a_reason(tmp_path):
    folder = tmp_path / "hopeless"
    folder.mkdir()
    (folder / "a.png").write_text("text")
    (folder / "b.tif").write_bytes(b"")
    (folder / "readme.txt").write_text("hello")
    with pytest.raises(CellLoadError) as info:
        load_cell(folder)
    message = str(info.value)
    assert "hopeless" in message
    assert "3 file(s)" in message  # how many were tried
    assert "not an image file" in message or "empty file" in message or "readable" in message


# --------------------------------------------------------------------------- datasets


def make_dataset(folder: pathlib.Path, names: list[str]) -> None:
    for index, name in enumerate(names):
        make_labelled_cell(folder / name, {"clase1": 2, "clase2": 1 + index % 2, "X": 1})


def test_load_dataset_with_a_list_file(tmp_path):
    root = tmp_path / "data"
    make_dataset(root / "cells", ["c1.tiff", "c2.tiff", "c3.tiff", "c10.tiff"])
    listing = root / "splits" / "test.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("c10.tiff\n\nc2.tiff\n  \nmissing.tiff\n# a comment\nc1.tiff # first\n")
    assert read_cell_list(listing) == ["c10.tiff", "c2.tiff", "missing.tiff", "c1.tiff"]

    reported = []
    dataset = load_dataset(root, listing, progress=lambda done, total: reported.append(
        (done, total)))
    assert [cell.name for cell in dataset.cells] == ["c10.tiff", "c2.tiff", "c1.tiff"]
    assert len(dataset.problems) == 1
    assert "missing.tiff" in dataset.problems[0] and "not found" in dataset.problems[0]
    # c10 and c2 hold 5 crops, c1 holds 4
    assert dataset.n_chromosomes == sum(len(cell) for cell in dataset.cells) == 5 + 5 + 4
    assert reported[-1] == (3, 3)


def test_load_dataset_with_names_and_with_everything(tmp_path):
    root = tmp_path / "data"
    make_dataset(root / "cells", ["c1.tiff", "c2.tiff", "c10.tiff"])
    assert cells_folder(root) == root / "cells"
    named = load_dataset(root, ["c2.tiff"])
    assert [cell.name for cell in named.cells] == ["c2.tiff"]
    everything = load_dataset(root)
    assert [cell.name for cell in everything.cells] == ["c1.tiff", "c2.tiff", "c10.tiff"]
    assert everything.problems == []


def test_load_dataset_from_a_plain_root(tmp_path):
    root = tmp_path / "plain"
    make_dataset(root, ["a.tiff", "b.tiff"])
    assert cells_folder(root) == root
    dataset = load_dataset(root)
    assert [cell.name for cell in dataset.cells] == ["a.tiff", "b.tiff"]
    assert all(cell.given_counts()[T.CHR1] == 2 for cell in dataset.cells)


def test_a_cell_that_fails_is_reported_while_the_others_load(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, ["good1.tiff", "good2.tiff"])
    (root / "broken.tiff").mkdir()
    (root / "broken.tiff" / "clase1").mkdir()
    (root / "broken.tiff" / "clase1" / "x.png").write_text("no image")
    (root / "half.tiff" / "clase3").mkdir(parents=True)
    write_crop(root / "half.tiff" / "clase3" / "ok.png")
    (root / "half.tiff" / "clase3" / "bad.png").write_bytes(b"")
    dataset = load_dataset(root)
    assert [cell.name for cell in dataset.cells] == ["good1.tiff", "good2.tiff", "half.tiff"]
    assert len(dataset.problems) == 2
    assert any("broken.tiff" in problem for problem in dataset.problems)
    assert any("bad.png" in problem for problem in dataset.problems)


def test_a_dataset_with_nothing_loadable_raises(tmp_path):
    root = tmp_path / "data"
    (root / "cells" / "empty.tiff").mkdir(parents=True)
    with pytest.raises(CellLoadError):
        load_dataset(root)
    with pytest.raises(CellLoadError, match="not found"):
        load_dataset(tmp_path / "no such dataset")
    with pytest.raises(CellLoadError, match="cell list not found"):
        load_dataset(root, tmp_path / "no-list.txt")


# --------------------------------------------------------------------------- write_cell


def test_write_cell_then_load_cell_keeps_labels_and_pixels(tmp_path):
    labels = [T.CHR1, T.CHR1, T.CHR21, T.CHR21, T.CHR21, T.X, T.Y, T.UNCLASSIFIED]
    chromosomes = [
        Chromosome(id=f"c{index}", image=rod_crop(30 + 5 * index, 20, level=10 * index),
                   given=label)
        for index, label in enumerate(labels)
    ]
    chromosomes.append(Chromosome(id="no-image", image=None, given=T.CHR5))
    original = Cell(name="made", chromosomes=chromosomes)

    folder = write_cell(original, tmp_path / "made.tiff")
    loaded = load_cell(folder)
    assert loaded.problems == []
    assert len(loaded) == len(labels)  # the crop without an image is not written
    written = sorted((c.given.value, c.image.tobytes()) for c in loaded.chromosomes)
    expected = sorted((c.given.value, c.image.tobytes()) for c in chromosomes[:-1])
    assert written == expected


def test_write_cell_unlabelled_writes_a_flat_folder(tmp_path):
    original = Cell(name="flat", chromosomes=[
        Chromosome(id=str(i), image=rod_crop(), given=T.CHR3) for i in range(3)
    ])
    folder = write_cell(original, tmp_path / "flat", labelled=False)
    assert sorted(p.name for p in folder.iterdir()) == [
        "flat_000.png", "flat_001.png", "flat_002.png"]
    loaded = load_cell(folder)
    assert [c.given for c in loaded.chromosomes] == [None, None, None]


def test_write_cell_with_a_name_that_is_not_utf8(tmp_path):
    # a cell is named after its folder, and folder names need not be valid UTF-8
    name = os.fsdecode(b"cell_\xff")
    original = Cell(name=name, chromosomes=[
        Chromosome(id=str(i), image=rod_crop(), given=label)
        for i, label in enumerate([T.CHR4, T.CHR4, T.X])
    ])
    folder = write_cell(original, tmp_path / name)
    loaded = load_cell(folder)
    assert loaded.name == "cell_\ufffd"  # shown with a replacement character, as Qt can
    assert loaded.source == str(folder.resolve())  # while its folder keeps its own bytes
    assert loaded.given_counts() == Counter({T.CHR4: 2, T.X: 1})
