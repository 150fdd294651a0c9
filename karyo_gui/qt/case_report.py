"""The case report as a PDF: what a laboratory signs out for a patient.

Page 1: identifiers, specimen, study, cells counted / analysed / karyogrammed against the
lab's policy, band level, the case karyotype (with its clones and the single-cell findings
left out of it), the interpretation, analyst and checker with their dates, karyo and model
versions. Then one page per karyogrammed cell: its karyogram, without review marks. A draft
(not signed by both) says so on every page. Needs a QGuiApplication (offscreen is enough);
a failed export leaves no file behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QFont, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter, QPen

from karyo_gui import __version__
from karyo_gui.core.case import Case, CellRole
from karyo_gui.core.case_karyotype import CellPolicy, case_karyotype, compose_case, tally
from karyo_gui.core.review import corrected_chromosomes, count_text
from karyo_gui.qt.export import (
    _MM_PER_POINT,
    FOOTER,
    MARGIN_MM,
    MUTED,
    PDF_RESOLUTION,
    RULE,
    _check_writable,
    _format_date,
    _paint_karyogram,
    _write_atomically,
)
from karyo_gui.qt.karyogram_view import INK, PAPER


@dataclass(frozen=True)
class CaseReportInfo:
    policy: CellPolicy
    model: str | None = None  # the loaded model's description; None: the cells' model ids
    karyo_version: str = __version__
    date: datetime | None = None  # of the export; None: now


def karyogrammed_cells(case: Case):
    return [cell for cell in case.cells if CellRole.KARYOGRAMMED in cell.roles]


def case_report_lines(case: Case, info: CaseReportInfo) -> list[tuple[str, str]]:
    """The label / value pairs of the report's first page, in order."""
    details = case.details
    counts = tally(case, info.policy)
    models = sorted({cell.model_id for cell in case.cells if cell.model_id})
    finders = sorted({cell.finder_id for cell in case.cells if cell.finder_id})

    def signed(signature) -> str:
        return (f"{signature.name}, {_format_date(signature.at)}" if signature
                else "not signed")

    lines = [
        ("Patient ID", details.patient_id or "—"),
        ("Specimen ID", details.specimen_id or "—"),
        ("Lab ID", details.lab_id or "—"),
        ("Indication", details.indication or "—"),
        ("Specimen", ", ".join(x for x in (details.specimen_type, details.culture) if x) or "—"),
        ("Study", case.study.value),
        ("Band level", f"{case.band_level} bands" if case.band_level else "not stated"),
    ]
    for role in CellRole:
        lines.append((f"Cells {role.value}",
                      f"{counts.done[role]} (policy {counts.needed[role]})"))
    corrected = sum(corrected_chromosomes(cell) for cell in case.cells)
    lines += [
        ("Manual corrections", f"{corrected} chromosome(s) given another type by hand"),
        ("Analysed by", signed(case.analyst)),
        ("Checked by", signed(case.checker)),
        ("Model", info.model or ", ".join(models) or "no model"),
    ]
    if finders:
        lines.append(("Chromosome finder", ", ".join(finders)))
    lines += [("karyo", info.karyo_version),
              ("Report date", _format_date(info.date or datetime.now().astimezone()))]
    return lines


class _Page:
    """Text and rules on one page, in millimetres of the printable area."""

    def __init__(self, painter: QPainter, rect: QRectF) -> None:
        self.painter, self.rect = painter, rect
        self.mm = rect.width() / (210 - 2 * MARGIN_MM)
        self.y = rect.top()

    def font(self, points: float, bold: bool = False, italic: bool = False) -> QFont:
        font = QFont()
        font.setPixelSize(max(1, round(points * _MM_PER_POINT * self.mm)))
        font.setBold(bold)
        font.setItalic(italic)
        return font

    def text(self, value: str, size: float, bold=False, color=INK, left_mm=0.0,
             width_mm=None, centre=False, italic=False, advance=True) -> QRectF:
        mm = self.mm
        width = (width_mm * mm) if width_mm else self.rect.width() - left_mm * mm
        flags = ((Qt.AlignmentFlag.AlignHCenter if centre else Qt.AlignmentFlag.AlignLeft)
                 | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap)
        box = QRectF(self.rect.left() + left_mm * mm, self.y, width, 200 * mm)
        self.painter.setFont(self.font(size, bold, italic))
        self.painter.setPen(color)
        used = self.painter.boundingRect(box, flags, value)
        self.painter.drawText(box, flags, value)
        if advance:
            self.y = used.bottom()
        return used

    def gap(self, mm: float) -> None:
        self.y += mm * self.mm

    def rule(self) -> None:
        self.painter.setPen(QPen(RULE, max(1.0, 0.25 * self.mm)))
        self.painter.drawLine(QPointF(self.rect.left(), self.y),
                              QPointF(self.rect.right(), self.y))

    def footer(self, case: Case, info: CaseReportInfo, number: int, pages: int) -> None:
        mm = self.mm
        top = self.rect.bottom() - 8 * mm
        self.painter.setPen(QPen(RULE, max(1.0, 0.25 * mm)))
        self.painter.drawLine(QPointF(self.rect.left(), top + mm),
                              QPointF(self.rect.right(), top + mm))
        state = "" if case.is_final else "DRAFT (not signed by analyst and checker) — "
        self.y = top + 2 * mm
        self.text(f"{state}Case {case.case_id} — page {number} of {pages} — karyo "
                  f"{info.karyo_version} — {FOOTER}", 8, color=MUTED, centre=True)


def case_report_pages(case: Case) -> int:
    return 1 + len(karyogrammed_cells(case))


def paint_case_page(painter: QPainter, rect: QRectF, case: Case, info: CaseReportInfo,
                    index: int) -> None:
    """Draw page ``index`` (0: the summary; then one per karyogrammed cell)."""
    painter.save()
    painter.setRenderHints(QPainter.RenderHint.Antialiasing
                           | QPainter.RenderHint.SmoothPixmapTransform
                           | QPainter.RenderHint.TextAntialiasing)
    page = _Page(painter, rect)
    pages = case_report_pages(case)
    if index == 0:
        _paint_summary(page, case, info)
    else:
        cell = karyogrammed_cells(case)[index - 1]
        page.text(f"Karyogram: {cell.name}", 14, bold=True)
        page.gap(1)
        line = cell.karyotype if cell.is_classified else "—"
        page.text(f"Case {case.case_id}    cell line {line}    {count_text(cell)}", 10,
                  color=MUTED)
        page.gap(3)
        area = QRectF(rect.left(), page.y, rect.width(),
                      rect.bottom() - 12 * page.mm - page.y)
        _paint_karyogram(painter, area, cell, page.mm)
    page.footer(case, info, index + 1, pages)
    painter.restore()


def _paint_summary(page: _Page, case: Case, info: CaseReportInfo) -> None:
    composition = compose_case(case)
    page.text("Cytogenetic report", 18, bold=True)
    page.gap(1)
    page.text(f"Case {case.case_id}", 11, color=MUTED)
    page.gap(2)
    page.rule()
    page.gap(4)
    page.text("Karyotype", 10, color=MUTED)
    page.gap(1)
    page.text(case_karyotype(case, composition) or "no cell to compose from", 20, bold=True)
    if case.karyotype_override is not None:
        override = case.karyotype_override
        page.gap(1)
        page.text(f"Stated by {override.by} ({_format_date(override.at)}); composed from the "
                  f"cells: {override.composed or '—'}"
                  + (f". Reason: {override.reason}" if override.reason else ""), 9,
                  color=MUTED, italic=True)
    if len(composition.clones) > 1:
        page.gap(1)
        page.text("; ".join(f"{clone.karyotype.text}: {len(clone.cells)} cell(s)"
                            for clone in composition.clones), 9, color=MUTED)
    if composition.single_cell_findings:
        page.gap(1)
        page.text("Not clonal, not in the karyotype: "
                  + "; ".join(f.text() for f in composition.single_cell_findings), 9,
                  color=MUTED)
    page.gap(4)
    page.rule()
    page.gap(3)
    for label, value in case_report_lines(case, info):
        page.text(label, 10, color=MUTED, advance=False, width_mm=45)
        page.text(value, 10, left_mm=47)
        page.gap(1.2)
    page.gap(3)
    page.rule()
    page.gap(3)
    page.text("Interpretation", 10, color=MUTED)
    page.gap(1)
    page.text(case.details.interpretation or "—", 10.5)


def _new_writer(buffer: QBuffer, title: str) -> QPdfWriter:
    writer = QPdfWriter(buffer)
    writer.setResolution(PDF_RESOLUTION)
    writer.setPageLayout(QPageLayout(
        QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
        QMarginsF(MARGIN_MM, MARGIN_MM, MARGIN_MM, MARGIN_MM), QPageLayout.Unit.Millimeter))
    writer.setTitle(title)
    writer.setCreator("karyo")
    return writer


def export_case_report_pdf(case: Case, path: str | os.PathLike, info: CaseReportInfo) -> Path:
    """Save the case report (A4 PDF, vector karyograms)."""
    path = Path(path)
    _check_writable(path)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = _new_writer(buffer, f"Cytogenetic report: case {case.case_id}")
    painter = QPainter()
    if not painter.begin(writer):
        raise OSError(f"{path}: cannot write the PDF report (the PDF writer did not start)")
    try:
        page = QRectF(writer.pageLayout().paintRectPixels(PDF_RESOLUTION))
        for index in range(case_report_pages(case)):
            if index:
                writer.newPage()
            paint_case_page(painter, QRectF(0, 0, page.width(), page.height()), case, info,
                            index)
    finally:
        painter.end()
    buffer.close()
    content = bytes(data.data())
    if not content.startswith(b"%PDF"):
        raise OSError(f"{path}: cannot write the PDF report (nothing was produced)")
    _write_atomically(path, "PDF report", lambda tmp: Path(tmp).write_bytes(content))
    return path


def render_case_report_pages(case: Case, info: CaseReportInfo, folder: str | os.PathLike,
                             dpi: int = 100) -> list[Path]:
    """Every page of the report as a PNG (A4 at ``dpi``), drawn as in the PDF."""
    folder = Path(folder)
    sheet = QPageSize(QPageSize.PageSizeId.A4).sizePoints()
    per_mm = dpi / 25.4
    size = QSize(round(sheet.width() * _MM_PER_POINT * per_mm),
                 round(sheet.height() * _MM_PER_POINT * per_mm))
    written = []
    for index in range(case_report_pages(case)):
        image = QImage(size, QImage.Format.Format_RGB32)
        image.fill(PAPER)
        painter = QPainter(image)
        margin = MARGIN_MM * per_mm
        paint_case_page(painter, QRectF(margin, margin, size.width() - 2 * margin,
                                        size.height() - 2 * margin), case, info, index)
        painter.end()
        path = folder / f"page-{index + 1}.png"
        _check_writable(path)
        if not image.save(str(path), "PNG"):
            raise OSError(f"{path}: the page could not be saved")
        written.append(path)
    return written
