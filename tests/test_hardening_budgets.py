"""Issue 25, items 3, 4 and 12: nothing a crop path points at can hang or exhaust the app,
what decoding may cost is bounded per crop, cell and case, and a sign-off typed into a case
file by hand is not trusted."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import struct
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import ImageFile

from karyo_gui.core import case_file, images, loaders, metaphase, opening
from karyo_gui.core.case import Case, CellStatus, Flag
from karyo_gui.core.case_file import CaseFileError, load_case, save_case
from karyo_gui.core.images import CropReadError, decode_crop, read_crop
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.loaders import load_cell, write_cell
from karyo_gui.core.synthetic import generate_cell, generate_metaphase

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs and devices")

HANG_SECONDS = 20.0  # an open that has not returned by then would never return
# Time limits below are of CPU time (time.process_time): the tests share the machine with
# other work, and what they bound is the work done, not how long the machine made us wait.


def finished_within(seconds: float, work, *fifos: pathlib.Path):
    """``work()``'s result, run in a thread; fails the test if it has not returned in
    ``seconds`` (a read blocked on a FIFO), and then releases the FIFOs it may block on."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:  # a writer that closes at once gives the blocked reader EOF
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"still reading after {seconds:.0f} s: blocked on a FIFO or a device")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def crops(tmp_path) -> pathlib.Path:
    """A cell folder of five generated crops."""
    cell = generate_cell("46,XY", seed=3)
    cell.chromosomes = cell.chromosomes[:5]
    return write_cell(cell, tmp_path / "cell", labelled=False)


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def white_png(width: int, height: int) -> bytes:
    """A mostly white image of that size: a few kB on disk, width x height decoded."""
    image = np.full((height, width), 255, np.uint8)
    image[height // 2, : width // 2] = 0
    return png_bytes(image)


# --------------------------------------------------------------- item 3: what is read


def test_a_fifo_among_the_crops_of_a_folder_is_refused_and_the_rest_of_the_cell_opens(crops):
    fifo = crops / "zz_pipe.png"
    os.mkfifo(fifo)
    cell = finished_within(HANG_SECONDS, lambda: load_cell(crops), fifo)
    assert len(cell) == 5
    [problem] = [p for p in cell.problems if "zz_pipe.png" in p]
    assert "not a regular file" in problem


def test_a_case_file_whose_crops_are_a_fifo_and_devices_opens_without_reading_them(
    crops, tmp_path
):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    linked = tmp_path / "linked.png"
    linked.symlink_to("/dev/urandom")  # followed: what it points at is what counts
    path = tmp_path / "case.karyo.json"
    save_case(Case("c1", [load_cell(crops)]), path)
    document = json.loads(path.read_text(encoding="utf-8"))
    chromosomes = document["case"]["cells"][0]["chromosomes"]
    for chromosome, target in zip(chromosomes, [fifo, "/dev/zero", linked]):
        chromosome["source_path"] = str(target)
    path.write_text(json.dumps(document), encoding="utf-8")

    [cell] = finished_within(HANG_SECONDS, lambda: load_case(path).cells, fifo)
    for chromosome, name in zip(cell.chromosomes, ["pipe.png", "/dev/zero", "linked.png"]):
        assert chromosome.image is None and Flag.IMAGE_MISSING in chromosome.flags
        [problem] = [p for p in cell.problems if name in p]
        assert "not a regular file" in problem
    assert all(c.image is not None for c in cell.chromosomes[3:])


def test_a_fifo_swapped_in_after_the_check_does_not_block(crops, monkeypatch):
    """The check and the open are two steps: a FIFO put in the crop's place between them
    must not block the open (non-blocking) nor be read (checked again once open)."""
    fifo = crops / "swapped.png"
    os.mkfifo(fifo)
    regular = os.stat(next(crops.glob("*.png")))
    real_stat = os.stat

    def stat_before_the_swap(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(fifo):
            return regular  # what the path was a moment before
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_before_the_swap)
    with pytest.raises(CropReadError, match="not a regular file"):
        finished_within(HANG_SECONDS, lambda: read_crop(fifo), fifo)


def test_bytes_read_per_crop_are_capped_and_the_message_names_the_limit(tmp_path):
    sparse = tmp_path / "huge.png"
    with sparse.open("wb") as handle:  # 65 MiB that take no disk space
        handle.truncate(images.MAX_CROP_BYTES + 2**20)
    with pytest.raises(CropReadError) as refused:
        read_crop(sparse)
    assert refused.value.path == str(sparse)
    assert f"at most {images.MAX_CROP_BYTES // 2**20} MiB" in refused.value.reason


# --------------------------------------------------------------- item 4: budgets


def test_a_4096_pixel_square_crop_is_refused_from_its_header_without_decoding(
    crops, monkeypatch
):
    """The issue's 150 mostly white 4096 x 4096 PNGs (3.6 MB on disk, 5.8 GB and 55 s to
    classify): each is refused from its header, at the real limit, none decoded."""
    huge = white_png(4096, 4096)
    for index in range(20):
        (crops / f"slide_{index:02d}.png").write_bytes(huge)
    decoded = []
    real_load = ImageFile.ImageFile.load

    def load(image):
        decoded.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    start = time.process_time()
    cell = load_cell(crops)
    assert time.process_time() - start < 5
    assert len(cell) == 5
    refused = [p for p in cell.problems if "slide_" in p]
    assert len(refused) == 20
    assert all("4096 x 4096" in p and f"{images.MAX_CROP_PIXELS / 1e6:g} megapixels" in p
               for p in refused)
    assert (4096, 4096) not in decoded


def test_the_decoded_pixels_of_a_cell_are_bounded_by_its_budget(tmp_path, monkeypatch):
    """The issue's figures at small scale: 150 crops, a cell budget of 20 of them."""
    crop = white_png(40, 100)
    folder = tmp_path / "cell"
    folder.mkdir()
    for index in range(150):
        (folder / f"crop_{index:03d}.png").write_bytes(crop)
    limit = 20 * 40 * 100
    monkeypatch.setattr(images, "MAX_CELL_PIXELS", limit)
    cell = load_cell(folder)
    assert 0 < len(cell) <= 20
    assert sum(c.image.size for c in cell.chromosomes) <= limit
    [problem] = [p for p in cell.problems if "crop_020.png" in p]
    assert f"{limit / 1e6:g} megapixels" in problem and "cell" in problem
    assert "129 more crop(s)" in problem


def test_a_folder_of_cells_opened_as_a_case_is_bounded_by_the_case_budget(
    tmp_path, monkeypatch
):
    root = tmp_path / "dataset"
    for number in range(6):
        cell = generate_cell("46,XY", seed=number, name=f"cell{number}")
        write_cell(cell, root / f"cell{number}")
    one_cell = sum(c.image.size for c in generate_cell("46,XY", seed=0).chromosomes)
    monkeypatch.setattr(images, "MAX_CASE_PIXELS", int(2.5 * one_cell))
    case = opening.open_case(root)
    loaded = sum(c.image.size for cell in case.cells for c in cell.chromosomes)
    assert loaded <= 2.5 * one_cell
    assert len(case.cells) < 6
    everything = case.problems + [p for cell in case.cells for p in cell.problems]
    assert any("case" in p and "megapixels" in p for p in everything), everything


def test_a_folder_holding_more_files_than_a_cell_reads_at_most_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_CELL_FILES", 40)  # really 2,000: a slide's export is 500
    folder = tmp_path / "flattened"
    folder.mkdir()
    crop = white_png(10, 30)
    for index in range(65):
        (folder / f"c{index:04d}.png").write_bytes(crop)
    cell = load_cell(folder)
    assert len(cell) == 40
    assert any("65 image files" in p and "only the first 40" in p for p in cell.problems)


def embedded_case(tmp_path: pathlib.Path, png: bytes, count: int) -> pathlib.Path:
    """A case file of one cell whose ``count`` chromosomes embed ``png``."""
    cell = generate_cell("46,XY", seed=1)
    cell.chromosomes = cell.chromosomes[:1]
    path = tmp_path / "embedded.karyo.json"
    save_case(Case("c1", [cell]), path)
    document = json.loads(path.read_text(encoding="utf-8"))
    [template] = document["case"]["cells"][0]["chromosomes"]
    encoded = base64.b64encode(png).decode("ascii")
    document["case"]["cells"][0]["chromosomes"] = [
        {**template, "id": f"e{index:04d}", "image_png": encoded} for index in range(count)
    ]
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_embedded_crops_of_a_case_file_are_under_the_per_crop_limit(tmp_path):
    """The issue's 29 MB case file of 1000 embedded 4096 x 4096 crops (MemoryError)."""
    path = embedded_case(tmp_path, white_png(4096, 4096), 30)
    start = time.process_time()
    [cell] = load_case(path).cells
    assert time.process_time() - start < 5
    assert len(cell) == 30  # the chromosomes and their labels are kept
    assert all(c.image is None and Flag.IMAGE_MISSING in c.flags for c in cell.chromosomes)
    assert all("embedded image of e" in p and "4096 x 4096" in p for p in cell.problems)


def test_embedded_crops_of_a_case_file_are_under_the_cell_budget(tmp_path, monkeypatch):
    path = embedded_case(tmp_path, white_png(40, 100), 200)
    limit = 50 * 40 * 100
    monkeypatch.setattr(images, "MAX_CELL_PIXELS", limit)
    [cell] = load_case(path).cells
    assert len(cell) == 200
    shown = [c for c in cell.chromosomes if c.image is not None]
    assert 0 < len(shown) <= 50
    assert sum(c.image.size for c in shown) <= limit
    assert all(Flag.IMAGE_MISSING in c.flags for c in cell.chromosomes if c.image is None)
    text = "\n".join(cell.problems)
    assert f"{limit / 1e6:g} megapixels" in text and "149 more crop(s)" in text


def test_a_case_file_listing_a_million_chromosomes_is_refused_quickly(tmp_path):
    path = tmp_path / "million.karyo.json"
    chromosomes = ",".join(['{"id":"c"}'] * 10**6)
    path.write_text(
        '{"format":"karyo-case","schema_version":2,"case":{"case_id":"x",'
        '"created":"2024-01-01T00:00:00+00:00","cells":[{"name":"A","status":"unreviewed",'
        f'"audit":[],"chromosomes":[{chromosomes}]}}]}}}}', encoding="utf-8",
    )
    start = time.process_time()
    with pytest.raises(CaseFileError) as refused:
        load_case(path)
    assert time.process_time() - start < 5
    message = str(refused.value)
    assert "million.karyo.json" in message and "1,000,000 chromosomes" in message
    assert f"at most {case_file.MAX_FILE_CHROMOSOMES:,}" in message


def test_a_case_file_listing_more_cells_than_a_case_holds_is_refused(tmp_path):
    path = tmp_path / "cells.karyo.json"
    cell = {"name": "A", "status": "unreviewed", "audit": [], "chromosomes": []}
    path.write_text(json.dumps({
        "format": "karyo-case", "schema_version": 2,
        "case": {"case_id": "x", "created": "2024-01-01T00:00:00+00:00",
                 "cells": [cell] * (loaders.MAX_CASE_CELLS + 1)},
    }), encoding="utf-8")
    with pytest.raises(CaseFileError, match=f"at most {loaders.MAX_CASE_CELLS:,}"):
        load_case(path)


def test_a_case_file_listing_more_chromosomes_than_a_case_holds_is_refused(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(case_file, "MAX_CASE_CHROMOSOMES", 100)
    path = tmp_path / "many.karyo.json"
    cells = [{"name": f"A{n}", "status": "unreviewed", "audit": [],
              "chromosomes": [{"id": f"c{k}"} for k in range(40)]} for n in range(3)]
    path.write_text(json.dumps({
        "format": "karyo-case", "schema_version": 2,
        "case": {"case_id": "x", "created": "2024-01-01T00:00:00+00:00", "cells": cells},
    }), encoding="utf-8")
    with pytest.raises(CaseFileError, match=r"120 chromosomes.*at most 100"):
        load_case(path)


def test_a_folder_of_cells_opened_as_a_case_keeps_at_most_its_chromosome_cap(tmp_path):
    root = tmp_path / "dataset"
    for number in range(3):
        write_cell(generate_cell("46,XY", seed=number), root / f"cell{number}")
    dataset = loaders.load_dataset(root, max_chromosomes=100, workers=1)
    assert [cell.name for cell in dataset.cells] == ["cell0", "cell1"]
    assert any("cell2" in p and "more than 100 chromosomes" in p for p in dataset.problems)


def exif_segments(jpeg: bytes) -> bytes:
    segment = b"\xff\xe1" + struct.pack(">H", 4002) + b"Exif\0\0" + bytes(3994)
    return jpeg[:2] + segment * 2000 + jpeg[2:]


def padding(jpeg: bytes) -> bytes:
    return jpeg[:2] + b"\xff" * 4_000_000 + jpeg[2:]


@pytest.mark.parametrize("craft", [exif_segments, padding])
def test_a_jpeg_crafted_with_thousands_of_segments_is_refused_within_a_second(
    craft, tmp_path
):
    ok, encoded = cv2.imencode(".jpg", np.full((120, 40), 180, np.uint8))
    assert ok
    jpeg = encoded.tobytes()
    path = tmp_path / "crafted.jpg"
    path.write_bytes(craft(jpeg))
    start = time.process_time()
    with pytest.raises(CropReadError, match="JPEG with more than"):
        read_crop(path)
    assert opening.image_size(path) is None  # the folder sniffing reads headers too
    assert time.process_time() - start < 1.0
    # a real JPEG with its few metadata segments still opens
    tiff = b"II*\0\x08\0\0\0" + bytes(6)  # an Exif block with an empty directory
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\0\0" + tiff
    assert decode_crop(jpeg[:2] + exif * 3 + jpeg[2:]).shape == (120, 40)


# --------------------------------------------------------------- item 12: sign-off


def signed_case(tmp_path: pathlib.Path, sign: bool = True) -> pathlib.Path:
    cell = generate_cell("46,XY", seed=5, name="A1")
    write_cell(cell, tmp_path / "crops")
    cell = load_cell(tmp_path / "crops", name="A1")
    for chromosome in cell.chromosomes:
        chromosome.assigned = chromosome.given  # as the model's assignment
    # the model's assignment of this one differs from its given type: training on it is
    # what a sign-off vouches for
    unsure = cell.chromosomes[1]
    unsure.assigned = T.Y if unsure.given is not T.Y else T.X
    cell.set_manual_label(cell.chromosomes[0].id, T.autosome(4), by="ann")
    cell.set_status(CellStatus.REVIEWED, by="ann")
    if sign:
        cell.set_status(CellStatus.SIGNED_OFF, by="dr.chief")
    path = tmp_path / "case.karyo.json"
    save_case(Case("c1", [cell]), path)
    return path


def edit(path: pathlib.Path, change) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document["case"]["cells"][0])
    path.write_text(json.dumps(document), encoding="utf-8")


def assert_not_signed_off(path: pathlib.Path) -> None:
    from trainer.data import training_label

    [cell] = load_case(path).cells
    assert cell.status is CellStatus.REVIEWED
    assert "modified outside karyo" in cell.sign_off_problem
    [problem] = [p for p in cell.problems if "modified outside karyo" in p]
    assert "cell A1" in problem
    unreviewed = cell.chromosomes[1]  # its type is only the model's assignment
    assert unreviewed.assigned is not unreviewed.given
    assert training_label(unreviewed, cell) is unreviewed.given  # the assignment not trusted
    cell.set_manual_label(unreviewed.id, T.X, by="ann")  # editable: not read-only


def test_a_sign_off_made_in_karyo_is_verified_when_the_file_opens(tmp_path):
    [cell] = load_case(signed_case(tmp_path)).cells
    assert cell.status is CellStatus.SIGNED_OFF
    assert cell.sign_off_problem is None and cell.problems == []
    assert cell.sign_off_digest and cell.sign_off_digest.startswith("sha256:")


def test_a_sign_off_typed_into_a_case_file_by_hand_is_not_trusted(tmp_path):
    path = signed_case(tmp_path, sign=False)

    def claim(cell):
        cell["status"] = "signed_off"
        cell["audit"].append({"chromosome": "", "action": "status", "from": "reviewed",
                              "to": "signed_off", "by": "dr.chief",
                              "at": "2024-05-02T10:00:00+00:00"})

    edit(path, claim)
    assert_not_signed_off(path)
    # saved and opened again: still not signed off, and the audit trail says why
    case = load_case(path)
    save_case(case, path)
    [cell] = load_case(path).cells
    assert cell.status is CellStatus.REVIEWED
    assert cell.audit[-1].by == "karyo (sign-off not verified)"
    # signed off again, in karyo: trusted again
    cell.set_status(CellStatus.SIGNED_OFF, by="dr.chief")
    save_case(Case("c1", [cell]), path)
    assert load_case(path).cells[0].status is CellStatus.SIGNED_OFF


def _assigned(cell):
    chromosome = cell["chromosomes"][1]
    chromosome["assigned"] = next(name for name in ("13", "14", "15")
                                  if name not in (chromosome["given"], chromosome["assigned"]))


def _manual_by(cell):
    cell["chromosomes"][0]["manual"]["by"] = "dr.chief"


def _signer(cell):
    cell["audit"][-1]["by"] = "dr.someone.else"


def _audit_dropped(cell):
    del cell["audit"][0]


def _orientation(cell):
    cell["chromosomes"][2]["orientation"]["rotation"] = 180


def _old_file(cell):  # a case file signed off before karyo recorded digests
    cell.pop("sign_off_digest", None)


@pytest.mark.parametrize(
    "change", [_assigned, _manual_by, _signer, _audit_dropped, _orientation, _old_file]
)
def test_a_signed_off_cell_edited_by_hand_is_shown_as_modified_outside_karyo(
    tmp_path, change
):
    path = signed_case(tmp_path)
    edit(path, change)
    assert_not_signed_off(path)
    if change is _old_file:
        assert "no sign-off digest" in load_case(path).cells[0].sign_off_problem


def test_the_classify_report_says_a_hand_made_sign_off_is_not_one(tmp_path):
    from karyo_gui.inference.report import cell_report

    path = signed_case(tmp_path)
    edit(path, _assigned)
    [cell] = load_case(path).cells
    result = SimpleNamespace(cell=cell, assignment=None, moved=[], low_confidence=[],
                             seconds=0.0, stain_warning=None)
    report = cell_report(result)
    assert report["status"] == "reviewed"
    assert any("modified outside karyo" in p for p in report["problems"])


def test_a_metaphase_jpeg_crafted_with_thousands_of_segments_is_refused_within_a_second(
    tmp_path,
):
    from karyo_gui.core.metaphase import MetaphaseReadError, read_metaphase

    ok, encoded = cv2.imencode(".jpg", np.full((400, 500), 200, np.uint8))
    assert ok
    path = tmp_path / "spread.jpg"
    path.write_bytes(exif_segments(encoded.tobytes()))
    start = time.process_time()
    with pytest.raises(MetaphaseReadError, match="JPEG with more than"):
        read_metaphase(path)
    assert time.process_time() - start < 1.0
    path.write_bytes(encoded.tobytes())
    assert read_metaphase(path).pixels.shape == (400, 500)


def metaphase_folder(folder: pathlib.Path, count: int) -> tuple[pathlib.Path, int]:
    """``count`` generated metaphase PNGs in ``folder``; the pixels of one."""
    folder.mkdir(parents=True)
    pixels = 0
    for number in range(count):
        image = generate_metaphase("46,XY", seed=number).pixels
        cv2.imwrite(str(folder / f"slide{number}.png"), image)
        pixels = max(pixels, image.size)
    return folder, pixels


def test_a_folder_of_metaphase_images_is_bounded_by_the_case_budget(tmp_path, monkeypatch):
    folder, one = metaphase_folder(tmp_path / "slides", 5)
    monkeypatch.setattr(metaphase, "MAX_CASE_METAPHASE_PIXELS", int(2.5 * one))
    case = opening.open_case(folder)
    held = sum(cell.metaphase.pixels.size for cell in case.cells)
    assert held <= 2.5 * one
    assert 2 <= len(case.cells) < 5
    refused = [p for p in case.problems if "not read" in p]
    assert len(refused) == 5 - len(case.cells), case.problems
    assert "slide" in refused[0] and "images of this case" in refused[0]
    assert "megapixels" in refused[0]


def test_metaphase_images_of_a_case_file_past_the_budget_keep_their_cells(
    tmp_path, monkeypatch
):
    folder, one = metaphase_folder(tmp_path / "slides", 3)
    case = opening.open_case(folder)
    case.cells[0].chromosomes = []  # nothing found yet: the cells hold only their images
    path = tmp_path / f"case{case_file.SUFFIX}"
    save_case(case, path)
    monkeypatch.setattr(images, "MAX_CASE_PIXELS", int(1.5 * one))
    reopened = load_case(path)
    assert [c.name for c in reopened.cells] == [c.name for c in case.cells]  # nothing dropped
    stand_ins = [c for c in reopened.cells if c.metaphase.missing]
    assert 1 <= len(stand_ins) < 3
    problems = [p for c in stand_ins for p in c.problems]
    assert all("images of this case" in p for p in problems), problems
    assert all(c.metaphase.pixels.strides == (0, 0) for c in stand_ins)  # no memory taken
    save_case(reopened, tmp_path / f"again{case_file.SUFFIX}")
    monkeypatch.setattr(images, "MAX_CASE_PIXELS", 10 * one)
    again = load_case(tmp_path / f"again{case_file.SUFFIX}")
    assert not any(c.metaphase.missing for c in again.cells)  # the paths were kept


def test_a_blank_frame_is_told_apart_from_a_metaphase_at_a_glance(tmp_path):
    from karyo_gui.core.metaphase import has_dark_objects

    blank = np.full((4096, 4096), 255, np.uint8)
    blank[2048, :2048] = 0  # a scratch: one pixel thin
    assert not has_dark_objects(blank)
    assert not has_dark_objects(np.full((800, 800), 200, np.uint8))
    assert has_dark_objects(generate_metaphase("46,XY", seed=1).pixels)
    assert has_dark_objects(generate_metaphase("45,X", seed=2, size=3000).pixels)
    cpu = time.process_time()
    has_dark_objects(blank)
    assert time.process_time() - cpu < 0.5


def test_classify_on_a_folder_of_blank_frames_says_so_quickly(tmp_path, capsys):
    from karyo_gui.cli import main

    folder = tmp_path / "blank"
    folder.mkdir()
    for number in range(4):
        (folder / f"slide{number}.png").write_bytes(white_png(4096, 4096))
    cpu = time.process_time()
    assert main(["classify", str(folder), "--device", "cpu", "--json",
                 str(tmp_path / "r.json")]) == 0
    assert time.process_time() - cpu < 30  # searched, each would take seconds of the net
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cells"] == []
    assert sum("no chromosomes found" in p for p in report["problems"]) == 4
