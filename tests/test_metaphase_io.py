"""Whole metaphase images: reading them, opening them as cases, and saving cells found in
them to case files (regions, labels and audit survive; the crops are cut again)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import struct
import threading
import zlib
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest
from PIL import Image

from karyo_gui.core import case_file
from karyo_gui.core.case import Case, Cell, Chromosome, Correction, Flag, Orientation
from karyo_gui.core.case_file import CaseFileError, load_case, save_case
from karyo_gui.core.images import content_hash
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import CellLoadError
from karyo_gui.core.metaphase import (
    MAX_METAPHASE_PIXELS,
    MAX_METAPHASE_SIDE,
    MetaphaseImage,
    MetaphaseReadError,
    Region,
    cut_crop,
    read_metaphase,
)
from karyo_gui.core.opening import MAX_METAPHASE_FILES, OpenError, open_case
from karyo_gui.core.synthetic import generate_crop

T = ChromosomeType
TYPES = (T.CHR1, T.CHR7, T.X, T.CHR21, T.CHR16, T.Y)


def spread(seed: int = 0, size: tuple[int, int] = (520, 760)) -> tuple[np.ndarray, list[Region]]:
    """A metaphase-like picture: generated crops pasted on a white canvas, and their regions."""
    rng = np.random.default_rng(seed)
    canvas = np.full(size, 250, np.uint8)
    regions = []
    for index, chromosome_type in enumerate(TYPES):
        crop = generate_crop(chromosome_type, rng)
        if index % 2:
            crop = np.ascontiguousarray(crop.T)  # lying chromosomes too
        height, width = crop.shape
        y, x = 20 + 250 * (index // 3), 20 + 240 * (index % 3)
        canvas[y:y + height, x:x + width] = np.minimum(canvas[y:y + height, x:x + width], crop)
        region = Region((x, y, x + width, y + height), crop < 200).tight()
        assert region is not None
        regions.append(region)
    return canvas, regions


def encode(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG that only claims a size: signature, IHDR and IEND, no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def one_colour_png(width: int, height: int, value: int = 255) -> bytes:
    """A real grey PNG of one colour, written row by row (a 100-megapixel one in ~0.3 s)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
    compressor = zlib.compressobj(6)
    row = b"\x00" + bytes([value]) * width
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


def call_without_hanging(function, fifo: pathlib.Path, seconds: float = 10.0):
    """Run ``function``; if it blocks on the FIFO, unblock it and fail the test."""
    outcome: dict[str, object] = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(descriptor)
        thread.join(5)
        pytest.fail("blocked reading a FIFO")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


# ---------------------------------------------------------------- reading images

def test_grey_png_is_read_as_it_is(tmp_path):
    canvas, _ = spread()
    data = encode(canvas, ".png")
    path = write(tmp_path / "m.png", data)
    image = read_metaphase(path)
    assert np.array_equal(image.pixels, canvas)
    assert image.pixels.dtype == np.uint8 and image.pixels.flags.c_contiguous
    assert image.path == str(path) and image.content_hash == content_hash(data)
    assert (image.width, image.height) == (760, 520)
    assert image.scale == 1.0 and not image.inverted and image.notes == []


def test_rgb_jpeg_is_read_as_grey(tmp_path):
    canvas, _ = spread()
    colour = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    colour[..., 0] = np.clip(colour[..., 0].astype(int) + 3, 0, 255)  # a slight tint
    image = read_metaphase(write(tmp_path / "m.jpg", encode(colour, ".jpg")))
    assert image.pixels.shape == canvas.shape and not image.inverted
    assert np.abs(image.pixels.astype(int) - canvas).mean() < 3


def test_16_bit_tiff_keeps_its_contrast(tmp_path):
    canvas, _ = spread()
    deep = canvas.astype(np.uint16) * 257  # full 16-bit range
    path = tmp_path / "m.tif"
    Image.fromarray(deep).save(path)  # uint16: mode I;16
    image = read_metaphase(path)
    assert np.abs(image.pixels.astype(int) - canvas).max() <= 1


def test_bmp_is_read(tmp_path):
    canvas, _ = spread()
    image = read_metaphase(write(tmp_path / "m.bmp", encode(canvas, ".bmp")))
    assert np.array_equal(image.pixels, canvas)


def test_bright_on_dark_is_inverted_and_says_so(tmp_path):
    canvas, _ = spread()
    image = read_metaphase(write(tmp_path / "dapi.png", encode(255 - canvas, ".png")))
    assert image.inverted
    assert np.array_equal(image.pixels, canvas)
    assert any("inverted" in note for note in image.notes)


def test_a_huge_image_is_downsampled_with_a_note(tmp_path):
    path = write(tmp_path / "scan.png", one_colour_png(10_000, 10_000, 240))
    image = read_metaphase(path)
    assert max(image.pixels.shape) <= MAX_METAPHASE_SIDE
    assert image.pixels.shape == (MAX_METAPHASE_SIDE, MAX_METAPHASE_SIDE)
    assert image.scale == pytest.approx(MAX_METAPHASE_SIDE / 10_000)
    assert any("10000 x 10000" in note and "downsampled" in note for note in image.notes)


def test_a_large_jpeg_decoded_reduced_says_its_scale(tmp_path):
    path = tmp_path / "wide.jpg"
    Image.new("L", (9000, 1200), 230).save(path, quality=80)
    image = read_metaphase(path)
    assert max(image.pixels.shape) <= MAX_METAPHASE_SIDE
    assert image.scale == pytest.approx(image.width / 9000)
    assert image.scale < 0.5
    assert any("downsampled" in note for note in image.notes)


@pytest.mark.parametrize("side", [11_000, 20_000], ids=["above-karyo", "above-pillow"])
def test_an_image_above_the_pixel_limit_is_refused_by_name_and_size(tmp_path, side):
    assert side * side > MAX_METAPHASE_PIXELS
    path = write(tmp_path / "giant.png", png_header(side, side))
    with pytest.raises(MetaphaseReadError, match="megapixels") as raised:
        read_metaphase(path)
    message = str(raised.value)
    assert "giant.png" in message and f"{side * side / 1e6:,.0f}" in message


def test_a_tiny_image_is_refused(tmp_path):
    path = write(tmp_path / "tiny.png", encode(np.full((40, 50), 200, np.uint8), ".png"))
    with pytest.raises(MetaphaseReadError, match=r"tiny\.png.*50 x 40 px, too small"):
        read_metaphase(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty file"), (b"not an image at all", "not a readable image"),
     (None, "truncated")],
    ids=["empty", "text", "truncated"],
)
def test_unreadable_files_are_refused_by_name(tmp_path, content, expected):
    if content is None:
        content = encode(spread()[0], ".png")[:3000]
    path = write(tmp_path / "bad.png", content)
    with pytest.raises(MetaphaseReadError, match=expected) as raised:
        read_metaphase(path)
    assert "bad.png" in str(raised.value)


def test_a_missing_file_and_a_folder_are_refused(tmp_path):
    with pytest.raises(MetaphaseReadError, match="not found"):
        read_metaphase(tmp_path / "gone.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(MetaphaseReadError, match="folder"):
        read_metaphase(tmp_path / "folder.png")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(MetaphaseReadError, match=r"pipe\.png.*not a regular file"):
        call_without_hanging(lambda: read_metaphase(fifo), fifo)
    with pytest.raises(CellLoadError, match=r"pipe\.png.*not a regular file"):
        call_without_hanging(lambda: open_case(fifo), fifo)
    # inside a folder of metaphases, it is one problem; the others open
    folder = tmp_path / "spreads"
    folder.mkdir()
    write(folder / "m1.png", encode(spread()[0], ".png"))
    os.mkfifo(folder / "m2.png")
    case = call_without_hanging(lambda: open_case(folder), folder / "m2.png")
    assert [cell.name for cell in case.cells] == ["m1"]
    assert any("m2.png" in p and "not a regular file" in p for p in case.problems)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_refused_without_reading_it():
    with pytest.raises(MetaphaseReadError, match="not a regular file"):
        read_metaphase("/dev/zero")
    with pytest.raises(OpenError, match="zero"):
        open_case("/dev/zero")


# ---------------------------------------------------------------- opening

def test_opening_one_metaphase_image(tmp_path):
    canvas, _ = spread()
    path = write(tmp_path / "patient 7.png", encode(255 - canvas, ".png"))
    case = open_case(path)
    (cell,) = case.cells
    assert cell.name == "patient 7" and case.case_id == "patient 7"
    assert cell.source == str(path.resolve())
    assert cell.metaphase is not None and np.array_equal(cell.metaphase.pixels, canvas)
    assert cell.metaphase.path == str(path.resolve())
    assert cell.chromosomes == [] and cell.needs_finding
    assert any("patient 7.png" in p and "inverted" in p for p in cell.problems)


def test_opening_a_crop_sized_image_file_says_what_it_looks_like(tmp_path):
    crop = generate_crop(T.CHR1, np.random.default_rng(0))
    path = write(tmp_path / "crop.png", encode(crop, ".png"))
    with pytest.raises(CellLoadError, match=r"crop\.png.*too small for a whole metaphase"):
        open_case(path)


def test_opening_an_unreadable_metaphase_file_names_it(tmp_path):
    path = write(tmp_path / "broken.jpg", b"\xff\xd8\xff" + b"\x00" * 5000)
    with pytest.raises(CellLoadError, match=r"broken\.jpg"):
        open_case(path)


def test_opening_a_folder_of_metaphases(tmp_path):
    folder = tmp_path / "slide 3"
    for seed, name in enumerate(["m10.png", "m2.png", "m1.jpg", "m5.png", "m5.tif"]):
        canvas, _ = spread(seed)
        write(folder / name, encode(canvas, pathlib.Path(name).suffix))
    write(folder / "m3.png", png_header(2000, 1500))  # header only: no pixels to read
    write(folder / "notes.txt", b"slide notes")
    write(folder / ".hidden.png", b"ignored")
    case = open_case(folder)
    assert case.case_id == "slide 3"
    assert [cell.name for cell in case.cells] == ["m1", "m2", "m5.png", "m5.tif", "m10"]
    assert all(cell.metaphase is not None and cell.needs_finding for cell in case.cells)
    assert all(cell.source.endswith(pathlib.Path(cell.metaphase.path).name)
               for cell in case.cells)
    assert any("m3.png" in p for p in case.problems)
    assert any("notes.txt" in p and "not an image" in p for p in case.problems)
    assert not any("hidden" in p for p in case.problems)


def test_a_flat_folder_of_crops_is_still_one_unlabelled_cell(tmp_path):
    folder = tmp_path / "cell 1"
    rng = np.random.default_rng(1)
    for index, chromosome_type in enumerate(TYPES):
        write(folder / f"c{index}.png", encode(generate_crop(chromosome_type, rng), ".png"))
    case = open_case(folder)
    (cell,) = case.cells
    assert cell.metaphase is None and not cell.needs_finding
    assert len(cell.chromosomes) == len(TYPES)
    assert all(c.given is None and c.region is None for c in cell.chromosomes)


def test_a_labelled_cell_folder_with_a_large_picture_stays_a_cell(tmp_path):
    folder = tmp_path / "cell"
    rng = np.random.default_rng(2)
    write(folder / "chr1" / "a.png", encode(generate_crop(T.CHR1, rng), ".png"))
    write(folder / "overview.png", encode(spread()[0], ".png"))
    case = open_case(folder)
    assert case.cells[0].metaphase is None
    assert case.cells[0].chromosome("chr1/a.png").given is T.CHR1


def test_a_cil24_folder_opens_its_images_as_metaphases(tmp_path):
    root = tmp_path / "cil24"
    for name in ("b", "a"):
        write(root / "images" / f"{name}.jpg", encode(spread()[0], ".jpg"))
        write(root / "annotations" / f"{name}.xml", b"<annotation/>")
    case = open_case(root)
    assert case.case_id == "cil24"
    assert [cell.name for cell in case.cells] == ["a", "b"]
    assert all(cell.needs_finding for cell in case.cells)


def test_a_folder_of_too_many_metaphases_is_refused(tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    data = one_colour_png(600, 80, 250)
    for index in range(MAX_METAPHASE_FILES + 1):
        (folder / f"m{index}.png").write_bytes(data)
    with pytest.raises(CellLoadError, match=rf"archive.*{MAX_METAPHASE_FILES + 1} metaphase"):
        open_case(folder)


def test_a_folder_of_only_unreadable_metaphases_names_the_folder(tmp_path):
    folder = tmp_path / "bad"
    write(folder / "m1.png", png_header(1200, 900))
    write(folder / "m2.png", png_header(1200, 900))
    with pytest.raises(CellLoadError, match=r"bad.*could be read.*m1\.png"):
        open_case(folder)


# ---------------------------------------------------------------- case files

def probabilities(top: ChromosomeType, confidence: float) -> np.ndarray:
    values = np.full(24, (1.0 - confidence) / 23, np.float32)
    values[top.value] = confidence
    return values


AT = datetime(2026, 3, 4, 10, 30, tzinfo=timezone.utc)


def metaphase_cell(path: pathlib.Path | None, seed: int = 0) -> Cell:
    """A cell as the finder leaves it, made by hand: the image, its regions, labels, audit."""
    canvas, regions = spread(seed)
    if path is not None:
        write(path, encode(canvas, ".png"))
        image = read_metaphase(path.resolve())
    else:
        image = MetaphaseImage(canvas, scale=0.5, inverted=True)
    chromosomes = [
        Chromosome(
            id=f"m{index + 1:03d}", image=cut_crop(image.pixels, region), region=region,
            found_score=0.5 + 0.07 * index, predicted=chromosome_type,
            probabilities=probabilities(chromosome_type, 0.8), assigned=chromosome_type,
            flags={Flag.OVERLAP} if index == 2 else set(),
        )
        for index, (chromosome_type, region) in enumerate(zip(TYPES, regions))
    ]
    cell = Cell("spread 1", chromosomes, source=image.path, metaphase=image,
                finder_id="finder-1a2b3c", model_id="model-9")
    cell.audit.append(Correction("m004", "split", "m004", "m004, m005", "dr.ada", AT))
    cell.set_manual_label("m002", T.CHR8, by="dr.ada")
    cell.set_orientation("m001", Orientation(180), by="dr.ada")
    return cell


def assert_same_cell(loaded: Cell, cell: Cell) -> None:
    assert loaded.name == cell.name and loaded.finder_id == cell.finder_id
    assert loaded.model_id == cell.model_id and loaded.audit == cell.audit
    assert loaded.metaphase is not None and cell.metaphase is not None
    assert loaded.metaphase.path == cell.metaphase.path
    assert loaded.metaphase.content_hash == cell.metaphase.content_hash
    assert loaded.metaphase.scale == cell.metaphase.scale
    assert loaded.metaphase.inverted == cell.metaphase.inverted
    assert np.array_equal(loaded.metaphase.pixels, cell.metaphase.pixels)
    assert [c.id for c in loaded.chromosomes] == [c.id for c in cell.chromosomes]
    for got, want in zip(loaded.chromosomes, cell.chromosomes):
        assert got.region is not None and got.region.box == want.region.box
        assert np.array_equal(got.region.mask, want.region.mask)
        assert got.found_score == pytest.approx(want.found_score, abs=1e-6)
        assert (got.predicted, got.assigned, got.manual) == (
            want.predicted, want.assigned, want.manual)
        assert got.label is want.label and got.orientation == want.orientation
        assert got.flags == want.flags
        assert np.allclose(got.probabilities, want.probabilities, atol=1e-6)
        assert got.image is not None
        assert np.array_equal(got.image, cut_crop(loaded.metaphase.pixels, got.region))
        assert np.array_equal(got.image, want.image)


def test_a_metaphase_cell_round_trips(tmp_path):
    cell = metaphase_cell(tmp_path / "images" / "spread.png")
    path = tmp_path / "case.karyo.json"
    save_case(Case("c1", [cell]), path)
    loaded = load_case(path)
    assert loaded.cells[0].problems == []
    assert_same_cell(loaded.cells[0], cell)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["schema_version"] == case_file.SCHEMA_VERSION == 3
    stored = document["case"]["cells"][0]
    assert stored["metaphase"]["source_path"] == "images/spread.png"  # portable
    assert "image_png" not in stored["metaphase"]
    assert all("image_png" not in c for c in stored["chromosomes"])  # crops are cut again
    assert stored["chromosomes"][0]["region"]["runs"] == cell.chromosomes[0].region.to_runs()


def test_a_case_folder_moved_elsewhere_still_finds_its_metaphase(tmp_path):
    folder = tmp_path / "case"
    cell = metaphase_cell(folder / "spread.png")
    save_case(Case("c1", [cell]), folder / "case.karyo.json")
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    loaded = load_case(moved / "case.karyo.json").cells[0]
    assert loaded.problems == [] and loaded.metaphase.path == str(moved / "spread.png")


def test_a_generated_metaphase_is_embedded_exactly(tmp_path):
    cell = metaphase_cell(None)
    dark = cell.metaphase.pixels // 3  # dark enough that reading a file would invert it
    cell.metaphase.pixels = dark
    for chromosome in cell.chromosomes:
        chromosome.image = cut_crop(dark, chromosome.region)
    path = tmp_path / "example.karyo.json"
    save_case(Case("example", [cell]), path)
    stored = json.loads(path.read_text(encoding="utf-8"))["case"]["cells"][0]["metaphase"]
    assert stored["source_path"] is None and "image_png" in stored
    loaded = load_case(path).cells[0]
    assert loaded.problems == []
    assert_same_cell(loaded, cell)


def test_a_metaphase_cell_before_finding_round_trips(tmp_path):
    path = write(tmp_path / "m.png", encode(spread()[0], ".png"))
    case = open_case(path)
    save_case(case, tmp_path / "m.karyo.json")
    loaded = load_case(tmp_path / "m.karyo.json").cells[0]
    assert loaded.needs_finding and loaded.metaphase.path == str(path.resolve())


def test_a_changed_metaphase_flags_every_chromosome(tmp_path):
    image_path = tmp_path / "spread.png"
    cell = metaphase_cell(image_path)
    save_case(Case("c1", [cell]), tmp_path / "case.karyo.json")
    changed = cell.metaphase.pixels.copy()
    changed[:40, :40] = 0
    write(image_path, encode(changed, ".png"))
    loaded = load_case(tmp_path / "case.karyo.json").cells[0]
    assert all(Flag.IMAGE_CHANGED in c.flags for c in loaded.chromosomes)
    assert any("spread.png" in p and "changed" in p for p in loaded.problems)
    assert np.array_equal(loaded.metaphase.pixels, changed)
    assert loaded.chromosome("m002").label is T.CHR8  # labels kept
    first = loaded.chromosomes[0]
    assert np.array_equal(first.image, cut_crop(changed, first.region))
    # saved again unreviewed, the case keeps saying so
    save_case(Case("c1", [loaded]), tmp_path / "case.karyo.json")
    again = load_case(tmp_path / "case.karyo.json").cells[0]
    assert all(Flag.IMAGE_CHANGED in c.flags for c in again.chromosomes)


def test_a_metaphase_that_shrank_keeps_the_chromosomes_outside_it(tmp_path):
    image_path = tmp_path / "spread.png"
    cell = metaphase_cell(image_path)
    save_case(Case("c1", [cell]), tmp_path / "case.karyo.json")
    write(image_path, encode(cell.metaphase.pixels[:, :400].copy(), ".png"))
    loaded = load_case(tmp_path / "case.karyo.json").cells[0]
    assert len(loaded.chromosomes) == len(TYPES)
    assert all(Flag.IMAGE_CHANGED in c.flags for c in loaded.chromosomes)
    shown = [c for c in loaded.chromosomes if c.image is not None]
    assert 0 < len(shown) < len(TYPES)
    assert any("400 x 520" in p for p in loaded.problems)
    assert any("outside" in p for p in loaded.problems)
    assert all(c.region is not None for c in loaded.chromosomes)  # kept for when it is back


def test_a_missing_metaphase_still_opens_with_its_labels(tmp_path):
    image_path = tmp_path / "spread.png"
    cell = metaphase_cell(image_path)
    case_path = tmp_path / "case.karyo.json"
    save_case(Case("c1", [cell]), case_path)
    kept = image_path.read_bytes()
    image_path.unlink()
    loaded = load_case(case_path).cells[0]
    assert all(Flag.IMAGE_MISSING in c.flags and c.image is None for c in loaded.chromosomes)
    assert [c.label for c in loaded.chromosomes] == [c.label for c in cell.chromosomes]
    assert [c.region.box for c in loaded.chromosomes] == [c.region.box for c in cell.chromosomes]
    assert any("spread.png" in p and "not found" in p for p in loaded.problems)
    assert loaded.metaphase.missing and loaded.metaphase.path == str(image_path)
    assert (loaded.metaphase.width, loaded.metaphase.height) == (760, 520)
    # saved again meanwhile, the case still knows its image, and finds it once it is back
    save_case(Case("c1", [loaded]), case_path)
    write(image_path, kept)
    again = load_case(case_path).cells[0]
    assert again.problems == [] and not again.metaphase.missing
    assert all(not c.flags & {Flag.IMAGE_MISSING, Flag.IMAGE_CHANGED}
               for c in again.chromosomes)
    assert_same_cell(again, cell)


@pytest.fixture
def saved(tmp_path) -> tuple[pathlib.Path, dict]:
    path = tmp_path / "case.karyo.json"
    save_case(Case("c1", [metaphase_cell(tmp_path / "spread.png")]), path)
    return path, json.loads(path.read_text(encoding="utf-8"))


def rewrite(path: pathlib.Path, document: dict) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ({"box": [700, 10, 800, 60], "runs": [5000]}, "not inside"),
        ({"box": [10, 10, 50, 60], "runs": [0, 1999]}, "add up to 1,999"),
        ({"box": [10, 10, 50, 60], "runs": [1000, "1000"]}, "run lengths"),
        ({"box": [10, 10, 50, 60], "runs": [-1, 2001]}, "run lengths"),
        ({"box": [10, 10, 50, 60], "runs": [2000]}, "no pixels"),
        ({"box": [10, 10, 50], "runs": [2000]}, "four whole numbers"),
        ({"box": [10.5, 10, 50, 60], "runs": [2000]}, "four whole numbers"),
        ({"box": [50, 10, 10, 60], "runs": [2000]}, "empty"),
        ({"runs": [2000]}, "four whole numbers"),
        ([1, 2, 3], "not an object"),
        (7, "not an object"),
    ],
)
def test_a_damaged_region_is_a_problem_naming_the_chromosome(saved, region, expected):
    path, document = saved
    document["case"]["cells"][0]["chromosomes"][1]["region"] = region
    rewrite(path, document)
    cell = load_case(path).cells[0]
    (problem,) = cell.problems
    assert "m002" in problem and expected in problem
    damaged = cell.chromosome("m002")
    assert damaged.region is None and damaged.image is None
    assert Flag.IMAGE_MISSING in damaged.flags and damaged.label is T.CHR8
    others = [c for c in cell.chromosomes if c.id != "m002"]
    assert all(c.region is not None and c.image is not None for c in others)


def test_a_region_too_large_for_a_chromosome_is_refused(tmp_path):
    canvas = np.full((2600, 4000), 255, np.uint8)
    region = Region((10, 10, 20, 20), np.ones((10, 10), bool))
    cell = Cell("big", [Chromosome("m001", cut_crop(canvas, region), region=region)],
                metaphase=MetaphaseImage(canvas))
    path = tmp_path / "big.karyo.json"
    save_case(Case("c", [cell]), path)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["case"]["cells"][0]["chromosomes"][0]["region"] = {
        "box": [0, 0, 4000, 2600], "runs": [0, 4000 * 2600]}
    rewrite(path, document)
    (problem,) = load_case(path).cells[0].problems
    assert "m001" in problem and "more than one chromosome" in problem


def test_a_region_in_a_cell_without_a_metaphase_is_dropped(saved):
    path, document = saved
    document["case"]["cells"][0]["metaphase"] = None
    rewrite(path, document)
    cell = load_case(path).cells[0]
    assert cell.metaphase is None
    assert len(cell.problems) == len(TYPES) and "m001" in cell.problems[0]
    assert all(c.region is None and Flag.IMAGE_MISSING in c.flags for c in cell.chromosomes)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda m: m.update(width="760"), "width"),
        (lambda m: m.update(height=0), "height"),
        (lambda m: m.update(width=100_000, height=100_000), "larger than"),
        (lambda m: m.update(scale="half"), "scale"),
        (lambda m: m.update(scale=-1), "scale"),
        (lambda m: m.update(inverted="yes"), "inverted"),
        (lambda m: m.update(source_path=5), "source_path"),
        (lambda m: m.update(content_hash=[1]), "content_hash"),
        (lambda m: m.pop("width"), "width"),
    ],
)
def test_damaged_metaphase_json_is_a_case_file_error(saved, edit, expected):
    path, document = saved
    edit(document["case"]["cells"][0]["metaphase"])
    rewrite(path, document)
    with pytest.raises(CaseFileError, match=expected) as raised:
        load_case(path)
    assert "case.karyo.json" in str(raised.value)


@pytest.mark.parametrize(
    ("where", "value"),
    [("metaphase", [1, 2]), ("metaphase", "spread.png"), ("finder_id", 3),
     ("found_score", "high"), ("found_score", True)],
)
def test_other_damaged_metaphase_fields_are_a_case_file_error(saved, where, value):
    path, document = saved
    cell = document["case"]["cells"][0]
    (cell["chromosomes"][0] if where == "found_score" else cell)[where] = value
    rewrite(path, document)
    with pytest.raises(CaseFileError, match=r"case\.karyo\.json.*damaged"):
        load_case(path)


def test_a_damaged_embedded_metaphase_keeps_the_labels(tmp_path):
    path = tmp_path / "example.karyo.json"
    save_case(Case("example", [metaphase_cell(None)]), path)
    document = json.loads(path.read_text(encoding="utf-8"))
    stored = document["case"]["cells"][0]["metaphase"]
    for damage, expected in (("%%% not base64 %%%", "damaged"),
                             (stored["image_png"][:200], "damaged")):
        stored["image_png"] = damage
        rewrite(path, document)
        cell = load_case(path).cells[0]
        assert any("spread 1" in p and expected in p for p in cell.problems)
        assert all(Flag.IMAGE_MISSING in c.flags for c in cell.chromosomes)
        assert cell.chromosome("m002").label is T.CHR8


@pytest.mark.parametrize(
    ("png", "expected"),
    [(png_header(50_000, 50_000), "far larger"),
     (png_header(9_000, 9_000), "9000 x 9000 px, saved as 760 x 520"),
     (encode(np.full((100, 120), 255, np.uint8), ".png"), "120 x 100 px, saved as 760 x 520")],
    ids=["bomb", "large", "small"],
)
def test_an_embedded_metaphase_of_another_size_is_refused(tmp_path, png, expected):
    path = tmp_path / "example.karyo.json"
    save_case(Case("example", [metaphase_cell(None)]), path)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["case"]["cells"][0]["metaphase"]["image_png"] = base64.b64encode(png).decode()
    rewrite(path, document)
    cell = load_case(path).cells[0]
    assert any(expected in p for p in cell.problems)
    assert all(c.image is None and c.region is not None for c in cell.chromosomes)


SCHEMA_1 = {
    "format": "karyo-case",
    "schema_version": 1,
    "written_by": "karyo 0.9.0",
    "case": {
        "case_id": "old", "created": "2025-11-02T09:00:00+00:00", "notes": "from v0.9",
        "cells": [{
            "name": "A.tiff", "source": None, "status": "reviewed", "model_id": "m-1",
            "chromosomes": [{
                "id": "c1", "source_path": None, "content_hash": None, "given": "7",
                "predicted": "7", "probabilities": None, "assigned": "7",
                "manual": {"label": "X", "by": "dr.ada", "at": "2025-11-02T09:05:00+00:00"},
                "orientation": {"rotation": 180, "flipped": False}, "flags": [],
                "image_png": None,
            }],
            "audit": [{"chromosome": "c1", "action": "label", "from": "7", "to": "X",
                       "by": "dr.ada", "at": "2025-11-02T09:05:00+00:00"}],
        }],
    },
}


def test_a_schema_1_file_still_loads(tmp_path):
    document = json.loads(json.dumps(SCHEMA_1))
    crop = np.full((60, 20), 255, np.uint8)
    crop[5:55, 6:14] = 40
    document["case"]["cells"][0]["chromosomes"][0]["image_png"] = base64.b64encode(
        encode(crop, ".png")).decode("ascii")
    path = tmp_path / "old.karyo.json"
    rewrite(path, document)
    case = load_case(path)
    (cell,) = case.cells
    assert case.notes == "from v0.9" and cell.metaphase is None and cell.finder_id is None
    (chromosome,) = cell.chromosomes
    assert chromosome.region is None and chromosome.found_score is None
    assert chromosome.label is T.X and chromosome.orientation == Orientation(180)
    assert np.array_equal(chromosome.image, crop)
    assert cell.audit[0].after == "X"
    save_case(case, path)  # written again at the current schema
    schema = json.loads(path.read_text(encoding="utf-8"))["schema_version"]
    assert schema == case_file.SCHEMA_VERSION
    assert load_case(path).cells[0].chromosomes[0].label is T.X


def test_the_schema_1_migration_leaves_damage_for_the_loader_to_name(tmp_path):
    document = json.loads(json.dumps(SCHEMA_1))
    document["case"]["cells"] = [5]
    path = tmp_path / "old.karyo.json"
    rewrite(path, document)
    with pytest.raises(CaseFileError, match="damaged") as raised:
        load_case(path)
    assert "upgrade" not in str(raised.value)


# ---------------------------------------------------------------- generated metaphases

def test_a_generated_metaphase_with_its_chromosomes_round_trips(tmp_path):
    from karyo_gui.core.synthetic import generate_metaphase
    from karyo_gui.core.synthetic import metaphase_cell as generated_cell

    generated = generate_metaphase("47,XY,+21", seed=3)
    cell = generated_cell(generated, with_truth=True)
    path = tmp_path / "generated.karyo.json"
    save_case(Case("gen", [cell]), path)
    loaded = load_case(path).cells[0]
    assert loaded.problems == [] and loaded.finder_id == "truth"
    assert np.array_equal(loaded.metaphase.pixels, generated.pixels)
    assert [c.given for c in loaded.chromosomes] == generated.types()
    assert loaded.karyotype == cell.karyotype
    for got, want in zip(loaded.chromosomes, cell.chromosomes):
        assert got.region.box == want.region.box
        assert np.array_equal(got.region.mask, want.region.mask)
        assert np.array_equal(got.image, want.image) and got.flags == want.flags


def test_a_generated_cil24_folder_opens_and_its_annotations_match(tmp_path):
    from karyo_gui.core.annotations import load_annotated_folder
    from karyo_gui.core.synthetic import generate_metaphase, write_annotated_metaphases

    root = write_annotated_metaphases(tmp_path / "cil24", 2, seed=5, karyotypes=["45,X"])
    case = open_case(root)
    assert [cell.name for cell in case.cells] == ["synthetic0001", "synthetic0002"]
    assert all(cell.needs_finding for cell in case.cells) and case.problems == []
    metaphases, problems = load_annotated_folder(root)
    assert problems == [] and [m.name for m in metaphases] == ["synthetic0001", "synthetic0002"]
    first = generate_metaphase("45,X", seed=5 * 1_000_003)  # as the writer draws the first
    assert np.array_equal(case.cells[0].metaphase.pixels, first.pixels)
    assert [c.type for c in metaphases[0].chromosomes] == first.types()
    assert np.allclose([c.box for c in metaphases[0].chromosomes], first.boxes())
    assert metaphases[0].image_path == root / "images" / "synthetic0001.png"
