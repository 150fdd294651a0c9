"""Export of a cell: a high-resolution karyogram PNG and a one-page PDF report.

All functions need a QGuiApplication (offscreen is enough). A file that cannot be written
raises ``OSError`` naming it, and a failed export leaves no file behind: everything is
written to a temporary file next to the target, which then replaces it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
)

from karyo_gui import __version__
from karyo_gui.core.case import Cell, CellStatus, current_user
from karyo_gui.core.review import corrected_chromosomes
from karyo_gui.qt.karyogram_view import (
    EXPORT_PIXELS_PER_UNIT,
    INK,
    PAPER,
    KaryogramScene,
    render_karyogram,
)

PDF_RESOLUTION = 300  # dots per inch of the PDF's coordinate system
MARGIN_MM = 15.0
MUTED = QColor(110, 110, 110)
RULE = QColor(170, 170, 170)
FOOTER = "for review by a qualified cytogeneticist"
DATE_FORMAT = "%Y-%m-%d %H:%M"
_MM_PER_POINT = 25.4 / 72


@dataclass(frozen=True)
class ReportInfo:
    """What the report says beyond the cell itself."""

    case_id: str
    model: str | None = None  # e.g. "karyo-default (resnet18, 3f2a9c1b7d0e)"; None: the cell's
    karyo_version: str = __version__
    reviewer: str | None = None  # who exports; None: the last status change's reviewer
    date: datetime | None = None  # of the export; None: now (local time)


def export_karyogram_png(cell: Cell, path: str | os.PathLike,
                         pixels_per_unit: float = EXPORT_PIXELS_PER_UNIT) -> Path:
    """Save the karyogram as a high-resolution PNG (4 pixels per scene unit by default),
    without review marks."""
    path = Path(path)
    _check_writable(path)
    _write_atomically(
        path, "karyogram PNG", lambda tmp: render_karyogram(cell, tmp, pixels_per_unit)
    )
    return path


def export_report_pdf(cell: Cell, path: str | os.PathLike, info: ReportInfo) -> Path:
    """Save a one-page A4 PDF report of the cell: karyogram (vector), ISCN and review details."""
    path = Path(path)
    _check_writable(path)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setResolution(PDF_RESOLUTION)
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Portrait,
            QMarginsF(MARGIN_MM, MARGIN_MM, MARGIN_MM, MARGIN_MM),
            QPageLayout.Unit.Millimeter,
        )
    )
    writer.setTitle(f"Karyotype report: {info.case_id}, cell {cell.name}")
    writer.setCreator("karyo")
    painter = QPainter()
    if not painter.begin(writer):
        raise OSError(f"{path}: cannot write the PDF report (the PDF writer did not start)")
    try:
        page = QRectF(writer.pageLayout().paintRectPixels(PDF_RESOLUTION))
        paint_report(painter, QRectF(0, 0, page.width(), page.height()), cell, info)
    finally:
        painter.end()
    buffer.close()
    content = bytes(data.data())
    if not content.startswith(b"%PDF"):
        raise OSError(f"{path}: cannot write the PDF report (nothing was produced)")
    _write_atomically(path, "PDF report", lambda tmp: Path(tmp).write_bytes(content))
    return path


def render_report_preview(
    cell: Cell, info: ReportInfo, path: str | os.PathLike, dpi: int = 100
) -> Path:
    """Save the report page as a PNG (A4 at ``dpi``), drawn exactly as in the PDF."""
    path = Path(path)
    _check_writable(path)
    page = QPageSize(QPageSize.PageSizeId.A4).sizePoints()
    pixels_per_mm = dpi / 25.4
    size = QSize(
        round(page.width() * _MM_PER_POINT * pixels_per_mm),
        round(page.height() * _MM_PER_POINT * pixels_per_mm),
    )
    image = QImage(size, QImage.Format.Format_RGB32)
    image.fill(PAPER)
    painter = QPainter()
    if not painter.begin(image):
        raise OSError(f"{path}: cannot draw the report preview")
    try:
        margin = MARGIN_MM * pixels_per_mm
        paint_report(
            painter,
            QRectF(margin, margin, size.width() - 2 * margin, size.height() - 2 * margin),
            cell,
            info,
        )
    finally:
        painter.end()

    def save(tmp: str) -> None:
        if not image.save(tmp, "PNG"):
            raise OSError("the image could not be saved")

    _write_atomically(path, "report preview", save)
    return path


def report_lines(cell: Cell, info: ReportInfo) -> list[tuple[str, str]]:
    """The label/value pairs printed under the karyogram."""
    model = info.model or cell.model_id or "no model"
    return [
        ("Case", info.case_id),
        ("Cell", cell.name),
        ("Karyotype", _karyotype(cell)),
        ("Count", str(len(cell))),
        ("Sex", (cell.sex or "undetermined") if cell.is_classified else "undetermined"),
        ("Status", status_text(cell)),
        ("Manual corrections", str(corrected_chromosomes(cell))),  # chromosomes, not edits
        ("Model", model),
        ("karyo", info.karyo_version),
        ("Reviewer", _reviewer(cell, info)),
        ("Date", _format_date(info.date or datetime.now().astimezone())),
    ]


def status_text(cell: Cell) -> str:
    """``unreviewed``, ``reviewed by X on DATE`` or ``signed off by X on DATE``."""
    if cell.status is CellStatus.UNREVIEWED:
        return "unreviewed"
    words = "signed off" if cell.status is CellStatus.SIGNED_OFF else "reviewed"
    for entry in reversed(cell.audit):
        if entry.action == "status" and entry.after == cell.status.value:
            return f"{words} by {entry.by} on {_format_date(entry.at)}"
    return words  # a status without its audit entry: say only what is known


def paint_report(painter: QPainter, page_rect: QRectF, cell: Cell, info: ReportInfo) -> None:
    """Draw the report page into ``page_rect`` (device pixels, the printable area)."""
    mm = page_rect.width() / (210 - 2 * MARGIN_MM)  # device pixels per millimetre
    left, width = page_rect.left(), page_rect.width()
    painter.save()
    painter.setRenderHints(
        QPainter.RenderHint.Antialiasing
        | QPainter.RenderHint.SmoothPixmapTransform
        | QPainter.RenderHint.TextAntialiasing
    )

    def font(points: float, bold: bool = False) -> QFont:
        result = QFont()
        result.setPixelSize(max(1, round(points * _MM_PER_POINT * mm)))
        result.setBold(bold)
        return result

    def text(rect: QRectF, flags, value: str, size: float, bold=False, color=INK) -> QRectF:
        painter.setFont(font(size, bold))
        painter.setPen(color)
        used = painter.boundingRect(rect, flags, value)
        painter.drawText(rect, flags, value)
        return used

    def rule(y: float) -> None:
        painter.setPen(QPen(RULE, max(1.0, 0.25 * mm)))
        painter.drawLine(QPointF(left, y), QPointF(left + width, y))

    wrap = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap
    y = page_rect.top()
    y = text(QRectF(left, y, width, 12 * mm), wrap, "Karyotype report", 18, bold=True).bottom()
    y += 1 * mm
    subtitle = f"Case {info.case_id}    Cell {cell.name}"
    y = text(QRectF(left, y, width, 20 * mm), wrap, subtitle, 11, color=MUTED).bottom()
    y += 2 * mm
    rule(y)
    y += 3 * mm

    footer_height = 8 * mm
    footer_top = page_rect.bottom() - footer_height
    lines = report_lines(cell, info)
    table_height = (len(lines) + 1) * 6 * mm  # a little slack for a wrapped line
    iscn_height = 14 * mm
    room = footer_top - y - iscn_height - table_height - 6 * mm
    y = _paint_karyogram(painter, QRectF(left, y, width, max(room, 20 * mm)), cell, mm)
    y += 3 * mm

    centre = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap
    y = text(QRectF(left, y, width, iscn_height), centre, _karyotype(cell), 22, bold=True).bottom()
    y += 4 * mm

    label_width = 45 * mm
    for label, value in lines:
        if y >= footer_top - 5 * mm:
            break  # never write over the footer
        text(QRectF(left, y, label_width, 10 * mm), wrap, label, 10, color=MUTED)
        used = text(QRectF(left + label_width, y, width - label_width, 20 * mm), wrap, value, 10)
        y = used.bottom() + 1.2 * mm

    rule(footer_top + 1 * mm)
    footer = f"karyo {info.karyo_version} — {FOOTER}"
    text(QRectF(left, footer_top + 2 * mm, width, footer_height), centre, footer, 8, color=MUTED)
    painter.restore()


def _paint_karyogram(painter: QPainter, area: QRectF, cell: Cell, mm: float) -> float:
    """Draw the cell's karyogram into the top of ``area``, page-wide; return its bottom."""
    if len(cell) == 0:
        painter.setPen(MUTED)
        box = QRectF(area.left(), area.top(), area.width(), 20 * mm)
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "no chromosomes in this cell")
        return box.bottom()
    scene = KaryogramScene()
    scene.set_display(marks=False)  # the report shows the karyogram, not the review
    scene.show_cell(cell)
    source = scene.sceneRect()
    scale = min(area.width() / source.width(), area.height() / source.height())
    target = QRectF(0, 0, source.width() * scale, source.height() * scale)
    target.moveTopLeft(QPointF(area.left() + (area.width() - target.width()) / 2, area.top()))
    scene.render(painter, target, source, Qt.AspectRatioMode.KeepAspectRatio)
    scene.clear()
    return target.bottom()


def _karyotype(cell: Cell) -> str:
    return cell.karyotype if cell.is_classified else "not classified"


def _reviewer(cell: Cell, info: ReportInfo) -> str:
    if info.reviewer:
        return info.reviewer
    for entry in reversed(cell.audit):
        if entry.action == "status":
            return entry.by
    return current_user()


def _format_date(moment: datetime) -> str:
    """Local time, to the minute; naive datetimes are taken as local already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime(DATE_FORMAT)


def _check_writable(path: Path) -> None:
    """Raise OSError naming ``path`` when it cannot be written (Qt's writers fail silently)."""
    folder = path.parent
    if path.is_dir():
        raise OSError(f"{path}: cannot write here: it is a folder")
    if not folder.is_dir():
        raise OSError(f"{path}: cannot write here: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(f"{path}: cannot write here: the folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise OSError(f"{path}: cannot write here: the file is read-only")


def _write_atomically(path: Path, what: str, write: Callable[[str], object]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, then move it into place."""
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise OSError(f"{path}: cannot write the {what}: {error.strerror or error}") from error
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        detail = f": {error.strerror}" if error.strerror else ""
        raise OSError(f"{path}: cannot write the {what}{detail}") from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_mode(path: Path) -> int:
    """The permissions a new file gets (mkstemp's are private), or those of the file replaced."""
    if path.exists():
        return path.stat().st_mode & 0o777
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
