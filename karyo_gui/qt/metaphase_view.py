"""The whole metaphase image with the chromosomes found in it, and the tools that correct them.

Each chromosome is outlined where the finder (or the reviewer) put it and carries its type
near it: teal when nothing needs a look, amber when the finder was unsure of it (a low
score, a cluster of touching chromosomes, a crossing), magenta when it was drawn or cut by
hand, blue and filled when selected. The reviewer zooms with the wheel (around the cursor)
or +/- and 0, pans with the middle button, with Space held, or with the scroll bars.

The view only reads the cell: each finished gesture of a tool (a line drawn across a
chromosome, two chromosomes clicked...) is a signal with the tool, the chromosomes under it
and its points in image coordinates (pixel centres: column x, row y), and the window makes
the edit. Scene coordinates are image coordinates, whatever the zoom.
"""

from __future__ import annotations

import enum
import itertools
import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import (
    QApplication,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
)

from karyo_gui.core.case import Cell, Chromosome, Flag
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.review import flags_text
from karyo_gui.qt.karyogram_view import SELECTED, UNSURE, grey_pixmap

NORMAL = QColor(0, 150, 170)  # outline of a chromosome nothing is said against
FINDER_FLAGGED = UNSURE  # amber, as "unsure" in the karyogram
HAND = QColor(200, 40, 170)  # drawn, cut or joined by hand
RUBBER = QColor(225, 30, 30)  # the line or outline being drawn
BACKGROUND = QColor(236, 236, 236)
FINDER_FLAGS = frozenset({Flag.FINDER_UNSURE, Flag.CLUSTER, Flag.OVERLAP, Flag.SET_ASIDE})
HIT_RADIUS_PX = 5.0  # a click this close (screen pixels) to a thin chromosome still hits it
MAX_ZOOM = 40.0  # screen pixels per image pixel
ZOOM_STEP = 1.25


class MetaphaseTool(enum.Enum):
    """What a click or a drag on the metaphase does."""

    SELECT = "select"
    SPLIT = "split"
    JOIN = "join"
    DELETE = "delete"
    ADD = "add"
    SEPARATE = "separate"


TOOL_HINTS = {
    MetaphaseTool.SELECT: "Click a chromosome to select it",
    MetaphaseTool.SPLIT: "Split: drag a line across the chromosome where it should be cut "
                         "(Esc: back to Select)",
    MetaphaseTool.JOIN: "Join: click two chromosomes that are one (Esc: back to Select)",
    MetaphaseTool.DELETE: "Delete: click what is not a chromosome (Esc: back to Select)",
    MetaphaseTool.ADD: "Add: double-click on a chromosome the finder missed, drag around it, "
                       "or click its corners and double-click or Enter to close "
                       "(Esc: back to Select)",
    MetaphaseTool.SEPARATE: "Separate crossing: trace one chromosome through the crossing, "
                            "end to end (Esc: back to Select)",
}
LINE_TOOLS = (MetaphaseTool.SPLIT, MetaphaseTool.SEPARATE)


def is_hand_made(chromosome: Chromosome) -> bool:
    """A chromosome the reviewer drew, cut or joined (the finder gives every one it finds a
    score; an edit's new chromosomes have none)."""
    return chromosome.region is not None and chromosome.found_score is None


def outline_colour(chromosome: Chromosome) -> QColor:
    if chromosome.flags & FINDER_FLAGS and chromosome.manual is None:
        return FINDER_FLAGGED
    if is_hand_made(chromosome):
        return HAND
    return NORMAL


def type_text(chromosome: Chromosome) -> str:
    label = chromosome.label
    return "?" if label is ChromosomeType.UNCLASSIFIED else label.display_name


def label_anchor(region) -> QPointF:
    """Where a chromosome's type tag goes: just above and right of its pixel nearest the top
    right corner of its box, so the tag sits at the chromosome, not at an empty corner of
    a slanted one's box."""
    x0, y0, x1, _ = region.box
    ys, xs = np.nonzero(region.mask)
    if xs.size == 0:
        return QPointF(x1, y0)
    nearest = int(np.argmin((xs - (x1 - x0)) ** 2 + ys.astype(np.int64) ** 2))
    return QPointF(x0 + float(xs[nearest]) + 1.0, y0 + float(ys[nearest]) - 1.0)


def outline_path(chromosome: Chromosome) -> QPainterPath:
    """Every outline of the chromosome's region as one closed path in image coordinates."""
    path = QPainterPath()
    if chromosome.region is None:
        return path
    for contour in chromosome.region.contours():
        path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in contour]))
        path.closeSubpath()
    return path


class OutlineItem(QGraphicsPathItem):
    """One chromosome's outline; its pen says its state."""

    def __init__(self, chromosome: Chromosome, finder_id: str | None) -> None:
        super().__init__(outline_path(chromosome))
        self.chromosome_id = chromosome.id
        self.region = chromosome.region  # the region drawn: redrawn only when it changes
        self.colour = NORMAL
        self.selected = False
        self.update_from(chromosome, finder_id)

    def update_from(self, chromosome: Chromosome, finder_id: str | None) -> None:
        self.colour = outline_colour(chromosome)
        lines = [f"{chromosome.id}: type {chromosome.label.display_name}"]
        if chromosome.found_score is not None and finder_id != "truth":
            lines.append(f"finder: {chromosome.found_score:.0%} sure it is a chromosome")
        elif is_hand_made(chromosome):
            lines.append("outlined by hand")
        if chromosome.flags:
            lines.append(flags_text(chromosome))
        self.setToolTip("\n".join(lines))
        self._style()

    def set_selected(self, selected: bool) -> None:
        if selected != self.selected:
            self.selected = selected
            self._style()

    def _style(self) -> None:
        colour = SELECTED if self.selected else self.colour
        pen = QPen(colour, 3.0 if self.selected else 1.6)
        pen.setCosmetic(True)  # the same width on screen at any zoom
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        self.setPen(pen)
        fill = QColor(SELECTED)
        fill.setAlpha(45)
        self.setBrush(QBrush(fill) if self.selected else Qt.BrushStyle.NoBrush)
        self.setZValue(3 if self.selected else 1)


class LabelItem(QGraphicsItem):
    """A chromosome's type beside it, on a light tag, the same size on screen at any zoom."""

    def __init__(self, text: str, colour: QColor, font: QFont) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setZValue(4)
        self.font = font
        self.text, self.colour = text, colour
        self._rect = QRectF()
        self.set_text(text, colour)

    def set_text(self, text: str, colour: QColor) -> None:
        self.prepareGeometryChange()
        self.text, self.colour = text, colour
        metrics = QFontMetricsF(self.font)
        width = metrics.horizontalAdvance(text) + 6
        height = metrics.height() + 1
        self._rect = QRectF(1, -height - 1, width, height)  # bottom-left at the item's position
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-1, -1, 1, 1)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.setPen(QPen(self.colour, 1))
        painter.setBrush(QColor(255, 255, 255, 215))
        painter.drawRoundedRect(self._rect, 3, 3)
        painter.setFont(self.font)
        painter.setPen(self.colour.darker(130))
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self.text)


class MetaphaseView(QGraphicsView):
    """The metaphase image of a cell with its chromosomes outlined; select, zoom, pan, edit."""

    selected = Signal(object)  # chromosome id or None, when the user clicks
    # tool, ids of the chromosomes under the gesture (most covered first), its points
    # [(x, y), ...] in image coordinates
    gesture_finished = Signal(object, list, list)
    tool_changed = Signal(object)  # MetaphaseTool (Esc goes back to SELECT)
    hint = Signal(str)  # what to do next, for the status bar

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(
            QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform
        )
        self.setBackgroundBrush(BACKGROUND)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.viewport().setMouseTracking(True)
        self.cell: Cell | None = None
        self.tool = MetaphaseTool.SELECT
        self.outline_items: dict[str, OutlineItem] = {}
        self.label_items: dict[str, LabelItem] = {}
        self.label_font = QFont()
        self.label_font.setPointSizeF(9)
        self.label_font.setBold(True)
        self.labels_shown = True
        self._pixmap: QGraphicsPixmapItem | None = None
        self._selected: str | None = None
        self._fitted = True  # refit on resize until the user zooms
        self._space = False
        self._pan_from: QPointF | None = None
        self._points: list[QPointF] = []  # the gesture drawn so far, image coordinates
        self._drawing = False  # a drag of a line or an outline is on
        self._clicking = False  # an outline clicked corner by corner is on (Add)
        self._press: QPointF | None = None  # where the drag began, viewport pixels
        self._join_first: str | None = None
        self._rubber = QGraphicsPathItem()
        self._rubber.setZValue(10)
        rubber_pen = QPen(RUBBER, 2.0, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                          Qt.PenJoinStyle.RoundJoin)
        rubber_pen.setCosmetic(True)
        self._rubber.setPen(rubber_pen)
        self.scene().addItem(self._rubber)

    # ------------------------------------------------------------------ showing
    def show_cell(self, cell: Cell | None) -> None:
        """Show a cell's metaphase from scratch (None, or a cell of crops: empty)."""
        self._reset_gesture()
        self._join_first = None
        self.cell = cell
        self._selected = None
        for item in list(self.outline_items.values()) + list(self.label_items.values()):
            self.scene().removeItem(item)
        self.outline_items.clear()
        self.label_items.clear()
        if self._pixmap is not None:
            self.scene().removeItem(self._pixmap)
            self._pixmap = None
        if cell is None or cell.metaphase is None:
            self.scene().setSceneRect(QRectF())
            return
        pixels = cell.metaphase.pixels
        self._pixmap = QGraphicsPixmapItem(grey_pixmap(pixels))
        self._pixmap.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._pixmap.setOffset(-0.5, -0.5)  # pixel centres on integer scene coordinates
        self._pixmap.setZValue(0)
        self.scene().addItem(self._pixmap)
        height, width = pixels.shape
        self.scene().setSceneRect(QRectF(-0.5, -0.5, width, height))
        self.refresh()
        self.fit()

    def refresh(self) -> None:
        """Take the cell's chromosomes again after an edit or a classification: outlines of
        changed regions are traced again, the others only restyled."""
        cell = self.cell
        if cell is None:
            return
        present = {c.id: c for c in cell.chromosomes if c.region is not None}
        for chromosome_id in [i for i in self.outline_items if i not in present]:
            self.scene().removeItem(self.outline_items.pop(chromosome_id))
            self.scene().removeItem(self.label_items.pop(chromosome_id))
        for chromosome_id, chromosome in present.items():
            item = self.outline_items.get(chromosome_id)
            if item is not None and item.region is not chromosome.region:
                self.scene().removeItem(item)
                self.scene().removeItem(self.label_items.pop(chromosome_id))
                item = None
            if item is None:
                item = OutlineItem(chromosome, cell.finder_id)
                self.scene().addItem(item)
                self.outline_items[chromosome_id] = item
                label = LabelItem(type_text(chromosome), item.colour, self.label_font)
                label.setPos(label_anchor(chromosome.region))
                label.setVisible(self.labels_shown)
                self.scene().addItem(label)
                self.label_items[chromosome_id] = label
            else:
                item.update_from(chromosome, cell.finder_id)
                self.label_items[chromosome_id].set_text(type_text(chromosome), item.colour)
        if self._selected not in present:
            self._selected = None
        if self._join_first not in present:
            self._join_first = None
        for chromosome_id, item in self.outline_items.items():
            item.set_selected(chromosome_id in (self._selected, self._join_first))

    def show_labels(self, shown: bool) -> None:
        """Show or hide the type tags (to see the image itself)."""
        self.labels_shown = shown
        for label in self.label_items.values():
            label.setVisible(shown)

    def select(self, chromosome_id: str | None, reveal: bool = True) -> None:
        """Select a chromosome from outside (no signal); ``reveal`` scrolls it into view."""
        if chromosome_id not in self.outline_items:
            chromosome_id = None
        self._selected = chromosome_id
        for id_, item in self.outline_items.items():
            item.set_selected(id_ in (chromosome_id, self._join_first))
        if reveal and chromosome_id is not None and not self._fitted:
            self.ensureVisible(self.outline_items[chromosome_id].boundingRect(), 40, 40)

    def selected_id(self) -> str | None:
        return self._selected

    # ------------------------------------------------------------------ tools
    def set_tool(self, tool: MetaphaseTool) -> None:
        """Switch tools (a gesture half drawn is dropped)."""
        self._reset_gesture()
        self._join_first = None
        self.select(self._selected, reveal=False)
        changed = tool is not self.tool
        self.tool = tool
        self.set_cursor_for_tool()
        self.hint.emit(TOOL_HINTS[tool] if tool is not MetaphaseTool.SELECT else "")
        if changed:
            self.tool_changed.emit(tool)

    def cancel(self) -> None:
        """Esc: drop the gesture being drawn and go back to Select."""
        self.set_tool(MetaphaseTool.SELECT)

    def gesture_in_progress(self) -> bool:
        return bool(self._points) or self._join_first is not None

    # ------------------------------------------------------------------ looking up
    def image_point(self, view_point) -> QPointF:
        """A viewport position in image coordinates."""
        return self.mapToScene(view_point.toPoint() if hasattr(view_point, "toPoint")
                               else view_point)

    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return float(self.transform().m11())

    def chromosome_at(self, point: QPointF, radius: float | None = None) -> str | None:
        """The chromosome whose pixels hold an image point: of several (a crossing), the
        smallest; when none does, the nearest within ``radius`` image pixels (default a few
        screen pixels, so thin chromosomes are easy to hit when zoomed out)."""
        if self.cell is None:
            return None
        if radius is None:
            radius = max(1.0, HIT_RADIUS_PX / max(self.zoom(), 1e-6))
        col, row = round(point.x()), round(point.y())
        best: tuple[float, int, str] | None = None
        reach = math.ceil(radius)
        for chromosome in self.cell.chromosomes:
            region = chromosome.region
            if region is None:
                continue
            x0, y0, x1, y1 = region.box
            if not (x0 - reach <= col < x1 + reach and y0 - reach <= row < y1 + reach):
                continue
            a, b = max(col - reach, x0), max(row - reach, y0)
            c, d = min(col + reach + 1, x1), min(row + reach + 1, y1)
            if c <= a or d <= b:
                continue
            window = region.mask[b - y0:d - y0, a - x0:c - x0]
            ys, xs = np.nonzero(window)
            if xs.size == 0:
                continue
            distance = float(np.min(np.hypot(xs + a - col, ys + b - row)))
            if distance > radius:
                continue
            key = (0.0 if distance < 0.5 else distance, region.area, chromosome.id)
            if best is None or key[:2] < best[:2]:
                best = key
        return None if best is None else best[2]

    def chromosomes_along(self, points: list[QPointF]) -> list[str]:
        """Ids of the chromosomes a drawn line passes over, the most covered first."""
        if self.cell is None or not points:
            return []
        xy = np.array([(p.x(), p.y()) for p in points], dtype=np.float64)
        samples = [xy[:1]]
        for start, end in itertools.pairwise(xy):
            steps = max(1, math.ceil(np.hypot(*(end - start)) * 2))
            t = np.linspace(0.0, 1.0, steps + 1)[1:, None]
            samples.append(start + t * (end - start))
        pixels = np.unique(np.rint(np.concatenate(samples)).astype(np.int64), axis=0)
        counts: list[tuple[int, int, str]] = []
        for index, chromosome in enumerate(self.cell.chromosomes):
            region = chromosome.region
            if region is None:
                continue
            x0, y0, x1, y1 = region.box
            inside = ((pixels[:, 0] >= x0) & (pixels[:, 0] < x1)
                      & (pixels[:, 1] >= y0) & (pixels[:, 1] < y1))
            if not inside.any():
                continue
            hits = int(region.mask[pixels[inside, 1] - y0, pixels[inside, 0] - x0].sum())
            if hits:
                counts.append((-hits, index, chromosome.id))
        return [chromosome_id for _, _, chromosome_id in sorted(counts)]

    # ------------------------------------------------------------------ zoom and pan
    def fit(self) -> None:
        """The whole image in the view."""
        rect = self.scene().sceneRect()
        if not rect.isEmpty():
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._fitted = True

    def zoom_by(self, factor: float, around: QPointF | None = None) -> None:
        """Zoom by ``factor`` keeping the image point under ``around`` (viewport pixels;
        default the view's centre) where it is."""
        rect = self.scene().sceneRect()
        if rect.isEmpty():
            return
        fit = min(self.viewport().width() / rect.width(), self.viewport().height() / rect.height())
        current = self.zoom()
        target = float(np.clip(current * factor, min(fit, 1.0) * 0.5, MAX_ZOOM))
        if abs(target - current) < 1e-9:
            return
        if around is None:
            around = QPointF(self.viewport().rect().center())
        anchor = self.mapToScene(around.toPoint())
        self.scale(target / current, target / current)
        self._pan_by(self.mapFromScene(anchor) - around.toPoint())  # the point stays put
        self._fitted = False

    def _pan_by(self, delta) -> None:
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + int(delta.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + int(delta.y()))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(ZOOM_STEP ** steps, event.position())
        event.accept()

    # ------------------------------------------------------------------ mouse
    def mousePressEvent(self, event) -> None:
        button = event.button()
        position = event.position()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space
        ):
            self._pan_from = position
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if button != Qt.MouseButton.LeftButton or self.cell is None or self._pixmap is None:
            super().mousePressEvent(event)
            return
        self.setFocus()
        point = self.image_point(position)
        tool = self.tool
        if tool is MetaphaseTool.SELECT:
            chromosome_id = self.chromosome_at(point)
            self.select(chromosome_id, reveal=False)
            self.selected.emit(chromosome_id)
        elif tool is MetaphaseTool.DELETE:
            chromosome_id = self.chromosome_at(point)
            if chromosome_id is None:
                self.hint.emit("Delete: no chromosome there; click on one")
            else:
                self._finish([chromosome_id], [point])
        elif tool is MetaphaseTool.JOIN:
            self._join_click(point)
        elif tool is MetaphaseTool.ADD and self._clicking:
            if not self._points or _far(self._points[-1], point, 0.5):
                self._points.append(point)
            self._show_rubber(point)
        else:  # a line (split, separate) or an outline (add) is drawn from here
            self._points = [point]
            self._drawing = True
            self._press = position
            self._show_rubber()
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        position = event.position()
        if self._pan_from is not None:
            delta = self._pan_from - position
            self._pan_from = position
            self._pan_by(delta)
            self._fitted = False
            event.accept()
            return
        if self._drawing:
            point = self.image_point(position)
            if _far(self._points[-1], point, 0.75 / max(self.zoom(), 1e-6)):
                self._points.append(point)
                self._show_rubber()
            event.accept()
            return
        if self._clicking:
            self._show_rubber(self.image_point(position))
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if self._pan_from is not None and event.button() in (
            Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton
        ):
            self._pan_from = None
            self.set_cursor_for_tool()
            event.accept()
            return
        if event.button() != Qt.MouseButton.LeftButton or not self._drawing:
            super().mouseReleaseEvent(event)
            return
        position = event.position()
        point = self.image_point(position)
        if _far(self._points[-1], point, 1e-6):
            self._points.append(point)
        self._drawing = False
        dragged = (position - self._press).manhattanLength() >= QApplication.startDragDistance()
        points = self._points
        if self.tool is MetaphaseTool.ADD:
            if dragged and len(points) >= 3:
                self._finish(self.chromosomes_along(points), points)
            else:  # a click: the outline is clicked corner by corner
                self._points = [points[0]]
                self._clicking = True
                self._show_rubber(point)
                self.hint.emit("Add: click the next corner; double-click or Enter closes it")
        elif dragged and len(points) >= 2:
            ids = self.chromosomes_along(points)
            if ids:
                self._finish(ids, points)
            else:
                self._reset_gesture()
                self.hint.emit("The line crosses no chromosome: draw it across one")
        else:
            self._reset_gesture()
            self.hint.emit(TOOL_HINTS[self.tool])
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._clicking:
            self._close_outline()
            event.accept()
            return
        self.mousePressEvent(event)

    def set_cursor_for_tool(self) -> None:
        if self.tool in (MetaphaseTool.JOIN, MetaphaseTool.DELETE):
            self.viewport().setCursor(Qt.CursorShape.PointingHandCursor)
        elif self.tool is MetaphaseTool.SELECT:
            self.viewport().unsetCursor()
        else:
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)

    # ------------------------------------------------------------------ keys
    def keyPressEvent(self, event) -> None:
        key = event.key()
        modifiers = event.modifiers() & (Qt.KeyboardModifier.ControlModifier
                                         | Qt.KeyboardModifier.AltModifier)
        if key == Qt.Key.Key_Space and not modifiers:
            if not event.isAutoRepeat():
                self._space = True
                self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
        elif key == Qt.Key.Key_Escape:
            self.cancel()
            event.accept()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self._clicking:
            self._close_outline()
            event.accept()
        elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self._selected:
            self._finish_as(MetaphaseTool.DELETE, [self._selected], [])
            event.accept()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal) and not modifiers:
            self.zoom_by(ZOOM_STEP)
            event.accept()
        elif key == Qt.Key.Key_Minus and not modifiers:
            self.zoom_by(1 / ZOOM_STEP)
            event.accept()
        elif key == Qt.Key.Key_0 and not modifiers:
            self.fit()
            event.accept()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.set_cursor_for_tool()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:
        self._space = False  # the release goes elsewhere
        super().focusOutEvent(event)

    # ------------------------------------------------------------------ gestures
    def _join_click(self, point: QPointF) -> None:
        chromosome_id = self.chromosome_at(point)
        if chromosome_id is None:
            self.hint.emit("Join: no chromosome there; click on one")
            return
        if self._join_first is None:
            self._join_first = chromosome_id
            self.select(self._selected, reveal=False)
            self.hint.emit(f"Join {chromosome_id} with: click the other chromosome")
            return
        if chromosome_id == self._join_first:
            return
        first, self._join_first = self._join_first, None
        self.select(self._selected, reveal=False)
        self._finish([first, chromosome_id], [point])

    def _close_outline(self) -> None:
        points = self._points
        self._clicking = False
        if len(points) == 1:  # a double-click on the chromosome itself: add what lies there
            self._finish([], points)
            return
        if len(points) < 3:
            self._reset_gesture()
            self.hint.emit("Add: an outline needs at least three corners")
            return
        self._finish(self.chromosomes_along(points), points)

    def _finish(self, ids: list[str], points: list[QPointF]) -> None:
        self._finish_as(self.tool, ids, points)

    def _finish_as(self, tool: MetaphaseTool, ids: list[str], points: list[QPointF]) -> None:
        self._reset_gesture()
        self.gesture_finished.emit(tool, list(ids), [(p.x(), p.y()) for p in points])

    def _reset_gesture(self) -> None:
        self._points = []
        self._drawing = self._clicking = False
        self._press = None
        self._rubber.setPath(QPainterPath())

    def _show_rubber(self, cursor: QPointF | None = None) -> None:
        """The line or outline being drawn (``cursor``: the open corner follows the mouse)."""
        points = list(self._points) + ([cursor] if cursor is not None else [])
        path = QPainterPath()
        if points:
            path.addPolygon(QPolygonF(points))
            if self.tool is MetaphaseTool.ADD and len(points) >= 3:
                path.closeSubpath()
        fill = QColor(RUBBER)
        fill.setAlpha(35)
        self._rubber.setBrush(QBrush(fill) if self.tool is MetaphaseTool.ADD
                              else Qt.BrushStyle.NoBrush)
        self._rubber.setPath(path)


def _far(a: QPointF, b: QPointF, distance: float) -> bool:
    return math.hypot(a.x() - b.x(), a.y() - b.y()) > distance
