"""Export of a cell: the high-resolution karyogram PNG and the one-page PDF report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest

from karyo_gui import __version__
from karyo_gui.core.case import Cell, CellStatus, Chromosome
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt import export
from karyo_gui.qt.export import (
    ReportInfo,
    export_karyogram_png,
    export_report_pdf,
    render_report_preview,
    report_lines,
)

WHEN = datetime(2026, 11, 26, 14, 3)
INFO = ReportInfo("CASE-7", model="karyo-default (resnet18, 3f2a9c1b7d0e)", date=WHEN)


@pytest.fixture(scope="module")
def trisomy() -> Cell:
    return generate_cell("47,XY,+21", seed=0)


def unclassified_cell() -> Cell:
    crops = [np.full((60, 14), 90, np.uint8), np.full((40, 14), 120, np.uint8)]
    return Cell("raw", [Chromosome(f"c{i}", crop) for i, crop in enumerate(crops)])


def pdf_title(data: bytes) -> str:
    """The document title of a PDF as Qt writes it: a literal or hex string, maybe UTF-16."""
    literal = re.search(rb"/Title\s*\(((?:\\.|[^\\)])*)\)", data, re.DOTALL)
    if literal:
        raw = re.sub(rb"\\(.)", rb"\1", literal.group(1), flags=re.DOTALL)
    else:
        hexed = re.search(rb"/Title\s*<([0-9A-Fa-f\s]*)>", data)
        assert hexed, "the PDF has no /Title"
        raw = bytes.fromhex(hexed.group(1).decode())
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be", errors="replace")
    return raw.decode("latin-1")


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- report_lines: what the report says ---------------------------------------------------


def test_report_lines_of_an_unreviewed_cell(trisomy):
    lines = report_lines(trisomy, INFO)
    assert [label for label, _ in lines] == [
        "Case",
        "Cell",
        "Karyotype",
        "Count",
        "Sex",
        "Status",
        "Manual corrections",
        "Model",
        "karyo",
        "Reviewer",
        "Date",
    ]
    values = dict(lines)
    assert values["Case"] == "CASE-7"
    assert values["Cell"] == trisomy.name
    assert values["Karyotype"] == "47,XY,+21"
    assert values["Count"] == "47"
    assert values["Sex"] == "XY"
    assert values["Status"] == "unreviewed"
    assert values["Manual corrections"] == "0"
    assert values["Model"] == "karyo-default (resnet18, 3f2a9c1b7d0e)"
    assert values["karyo"] == __version__
    assert values["Date"] == "2026-11-26 14:03"


def test_signed_off_cell_names_its_reviewer_and_counts_corrections():
    cell = generate_cell("46,XX", seed=1)
    first, second = cell.chromosomes[0].id, cell.chromosomes[1].id
    cell.set_manual_label(first, T.CHR1, by="ann")
    cell.set_manual_label(second, T.CHR2, by="ann")
    cell.set_status(CellStatus.REVIEWED, by="bob")
    cell.set_status(CellStatus.SIGNED_OFF, by="ann")
    values = dict(report_lines(cell, ReportInfo("CASE-7")))
    assert re.fullmatch(r"signed off by ann on \d{4}-\d\d-\d\d \d\d:\d\d", values["Status"])
    assert values["Manual corrections"] == "2"
    assert values["Reviewer"] == "ann"  # the last status change, when no reviewer is given
    assert values["Karyotype"] == cell.karyotype
    assert values["Count"] == "46"
    assert values["Sex"] == "XX"


def test_reviewed_status_is_shown_in_local_time():
    cell = generate_cell("46,XY", seed=2)
    cell.set_status(CellStatus.REVIEWED, by="bob")
    at = cell.audit[-1].at.astimezone().strftime("%Y-%m-%d %H:%M")
    values = dict(report_lines(cell, ReportInfo("CASE-7", reviewer="carol")))
    assert values["Status"] == f"reviewed by bob on {at}"
    assert values["Reviewer"] == "carol"


def test_defaults_for_model_and_date(trisomy):
    values = dict(report_lines(trisomy, ReportInfo("CASE-7")))
    assert values["Model"] == "no model"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", values["Date"])
    utc = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)
    values = dict(report_lines(trisomy, ReportInfo("CASE-7", date=utc)))
    assert values["Date"] == utc.astimezone().strftime("%Y-%m-%d %H:%M")


def test_unclassified_cell_reads_not_classified():
    values = dict(report_lines(unclassified_cell(), INFO))
    assert values["Karyotype"] == "not classified"
    assert values["Count"] == "2"
    assert values["Sex"] == "undetermined"


# --- the karyogram PNG ------------------------------------------------------------------------


def test_karyogram_png_is_high_resolution(qtbot, trisomy, tmp_path):
    path = export_karyogram_png(trisomy, tmp_path / "karyogram.png")
    assert path == tmp_path / "karyogram.png"
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    assert image.shape[1] > 2000
    assert (image > 230).mean() > 0.6  # white paper
    assert (image < 100).sum() > 10_000  # dark bands of the chromosomes
    assert leftovers(tmp_path) == ["karyogram.png"]


def test_png_into_a_missing_folder_is_refused(qtbot, trisomy, tmp_path):
    target = tmp_path / "missing" / "karyogram.png"
    with pytest.raises(OSError, match=re.escape(str(target))):
        export_karyogram_png(trisomy, target)
    assert leftovers(tmp_path) == []


def test_failed_png_leaves_the_old_file_and_no_temporary(qtbot, trisomy, tmp_path, monkeypatch):
    target = tmp_path / "karyogram.png"
    target.write_bytes(b"old")

    def broken(cell, path, pixels_per_unit):
        with open(path, "wb") as half:
            half.write(b"half")
        raise OSError(f"{path}: cannot write the karyogram PNG")

    monkeypatch.setattr(export, "render_karyogram", broken)
    with pytest.raises(OSError, match=re.escape(str(target))):
        export_karyogram_png(trisomy, target)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["karyogram.png"]


# --- the PDF report ---------------------------------------------------------------------------


def test_report_pdf_is_one_titled_page(qtbot, trisomy, tmp_path):
    path = export_report_pdf(trisomy, tmp_path / "report.pdf", INFO)
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    assert data.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1
    title = pdf_title(data)
    assert trisomy.name in title
    assert "CASE-7" in title
    assert leftovers(tmp_path) == ["report.pdf"]


@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript is not installed")
def test_report_pdf_renders_as_one_a4_page(qtbot, trisomy, tmp_path):
    path = export_report_pdf(trisomy, tmp_path / "report.pdf", INFO)
    out = tmp_path / "page%d.png"
    options = ["-q", "-dSAFER", "-dNOPAUSE", "-dBATCH", "-sDEVICE=pnggray", "-r30"]
    subprocess.run(
        ["gs", *options, f"-sOutputFile={out}", str(path)],
        check=True,
        timeout=60,
    )
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1
    page = cv2.imread(str(pages[0]), cv2.IMREAD_GRAYSCALE)
    height, width = page.shape
    assert abs(height / width - 297 / 210) < 0.02
    assert (page < 128).any()  # something is printed


def test_unclassified_and_empty_cells_still_export(qtbot, tmp_path):
    for cell in (unclassified_cell(), Cell("empty")):
        path = export_report_pdf(cell, tmp_path / f"{cell.name}.pdf", INFO)
        assert path.read_bytes().startswith(b"%PDF")


def test_report_overwrites_an_existing_file(qtbot, trisomy, tmp_path):
    target = tmp_path / "report.pdf"
    target.write_bytes(b"old")
    export_report_pdf(trisomy, target, INFO)
    assert target.read_bytes().startswith(b"%PDF")
    assert leftovers(tmp_path) == ["report.pdf"]


def test_report_into_a_missing_folder_is_refused(qtbot, trisomy, tmp_path):
    target = tmp_path / "missing" / "report.pdf"
    with pytest.raises(OSError, match=re.escape(str(target))):
        export_report_pdf(trisomy, target, INFO)
    assert leftovers(tmp_path) == []


def test_report_onto_a_folder_is_refused(qtbot, trisomy, tmp_path):
    with pytest.raises(OSError, match="is a folder"):
        export_report_pdf(trisomy, tmp_path, INFO)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_report_into_a_read_only_folder_is_refused(qtbot, trisomy, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OSError, match="not writable"):
            export_report_pdf(trisomy, folder / "report.pdf", INFO)
        assert leftovers(folder) == []
    finally:
        folder.chmod(0o755)


# --- the preview: the same page drawn into an image ------------------------------------------


def test_preview_is_an_a4_page_with_the_karyogram(qtbot, trisomy, tmp_path):
    path = render_report_preview(trisomy, INFO, tmp_path / "preview.png", dpi=60)
    page = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    height, width = page.shape
    assert abs(height / width - 297 / 210) < 0.01
    assert (page > 230).mean() > 0.7
    assert (page < 100).sum() > 500
