"""The karyogram as a QGraphicsScene: the core's layout drawn with the cell's chromosomes.

Each chromosome is drawn bare on white (karyo_gui.core.display: cut out of its crop, dark
on light, stood upright), homologs hung on their row's centromere line. Review marks say
only what is in doubt: a thin bar under a chromosome whose type the model is not sure of
(amber: unsure, red: doubtful), a violet bar under one set by hand, an orange dot on one
that needs a look (N goes there) and a small grey turn arrow on one whose orientation is
unsure; View > Review marks hides them all, and exports never draw them. The selection is
a pale blue ground behind the chromosome. The view zooms (wheel, pinch, +/-, Ctrl+0 fits)
and pans (drag the paper, or the scroll bars), and lets the reviewer drag a chromosome
onto another type's slot (reassign) or onto another chromosome (swap).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPainter,
    QPen,
    QPixmap,
    QPolygonF,
)
from PySide6.QtWidgets import (
    QApplication,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QStyle,
)

from karyo_gui.core.bands import ideogram_bands
from karyo_gui.core.case import TYPE_FLAGS, Cell, Chromosome
from karyo_gui.core.case_karyotype import derivative_names
from karyo_gui.core.display import DisplayOptions, centromere_fraction, karyogram_picture
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.layout import (
    KaryogramLayout,
    LayoutStyle,
    Rect,
    gallery_layout,
    karyogram_layout,
)
from karyo_gui.core.review import confidence, flags_text, needs_review, orientation_unsure

PAPER = QColor("white")  # crops have a white background: the karyogram stays white
INK = QColor(30, 30, 30)
SLOT_LINE = QColor(150, 150, 150)
UNSURE = QColor(230, 150, 0)
DOUBTFUL = QColor(215, 40, 40)
MANUAL = QColor(130, 60, 190)  # violet: not the selection's blue
FLAG = QColor(255, 120, 0)
ORIENTATION = QColor(120, 120, 120)
SELECTED = QColor(0, 120, 215)
SELECTED_GROUND = QColor(0, 120, 215, 45)
DROP = QColor(0, 120, 215, 40)
EXPORT_PIXELS_PER_UNIT = 4.0  # the app's karyogram PNG and karyo classify --png alike
MAX_ZOOM = 12.0  # times the fitted scale
DOUBTFUL_BELOW = 0.5  # the model's probability of the type shown: red under it


def grey_pixmap(image: np.ndarray) -> QPixmap:
    """A QPixmap of a 2-D uint8 array (copied, so the array may change afterwards)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape
    qimage = QImage(image.data, width, height, image.strides[0], QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(qimage.copy())


def mark_colour(chromosome: Chromosome) -> QColor | None:
    """The review mark under a chromosome: violet when set by hand; amber (red below 50 %)
    when its type is in doubt (a type flag: unsure within the cell, unlike its homolog, a
    doubtful sex call); none on every other call, however plain its probability."""
    if chromosome.manual is not None:
        return MANUAL
    if not chromosome.flags & TYPE_FLAGS:
        return None
    sure = confidence(chromosome)
    return DOUBTFUL if sure is not None and sure < DOUBTFUL_BELOW else UNSURE


class ChromosomeItem(QGraphicsPixmapItem):
    """One chromosome, drawn bare at the cell's common scale, with its review marks."""

    def __init__(self, chromosome: Chromosome, display: DisplayOptions | None = None) -> None:
        super().__init__()
        self.chromosome_id = chromosome.id
        self.display = display or DisplayOptions()
        self.marks = True
        self.frame: QColor | None = None  # the mark's colour (None: no mark)
        self.flagged = False
        self.orientation_unsure = False
        self.picture: np.ndarray | None = None
        self.centromere: float | None = None  # fraction of the picture's height from the top
        self._centromere_for: ChromosomeType | None = None
        self.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.update_from(chromosome, picture=True)

    def update_from(self, chromosome: Chromosome, picture: bool = False) -> None:
        """Take the chromosome's label, flags and (``picture``) its orientation again."""
        if picture or self.picture is None:
            image = chromosome.displayed_image()
            if image is None:  # crop file missing: a grey placeholder keeps its place
                self.picture = np.full((40, 12), 200, np.uint8)
            else:
                self.picture = karyogram_picture(image, self.display)
            self.setPixmap(grey_pixmap(self.picture))
            self._centromere_for = None
        if self._centromere_for is not chromosome.label:
            self.centromere = (centromere_fraction(self.picture, chromosome.label)
                               if chromosome.image is not None else None)  # fmt: skip
            self._centromere_for = chromosome.label
        self.frame = mark_colour(chromosome)
        self.flagged = needs_review(chromosome)
        self.orientation_unsure = orientation_unsure(chromosome)
        sure = confidence(chromosome)
        lines = [f"{chromosome.id}: type {chromosome.label.display_name}"]
        if chromosome.manual is not None:
            lines.append(f"set by {chromosome.manual.by}")
        elif sure is not None:
            lines.append(f"model: {sure:.0%} sure")
        if chromosome.given is not None and chromosome.given != chromosome.label:
            lines.append(f"given {chromosome.given.display_name} by the folder")
        if chromosome.flags:
            lines.append(flags_text(chromosome))
        self.setToolTip("\n".join(lines))
        self.update()

    def paint(self, painter: QPainter, option, widget=None) -> None:
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        option.state &= ~QStyle.StateFlag.State_Selected  # our own mark, not Qt's dashes
        rect = QRectF(self.pixmap().rect())
        unit = 1.0 / max(self.scale(), 1e-6)  # one scene unit in picture pixels
        if selected:  # a pale blue ground with a thin blue edge, behind the chromosome
            pen = QPen(SELECTED, 1.5)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(SELECTED_GROUND)
            painter.drawRoundedRect(rect.adjusted(-3 * unit, -3 * unit, 3 * unit, 3 * unit),
                                    3 * unit, 3 * unit)  # fmt: skip
        super().paint(painter, option, widget)
        if not self.marks:
            return
        if self.frame is not None:  # a thin bar under the chromosome
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self.frame)
            painter.drawRect(QRectF(rect.left(), rect.bottom() + 1.5 * unit, rect.width(),
                                    2.0 * unit))  # fmt: skip
        if self.flagged:
            radius = 3.0 * unit
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(FLAG)
            painter.drawEllipse(QPointF(rect.right(), rect.top()), radius, radius)
        if self.orientation_unsure:  # a small turn arrow at the top left
            font = QFont()
            font.setPixelSize(max(1, round(9 * unit)))
            painter.setFont(font)
            painter.setPen(ORIENTATION)
            painter.drawText(QRectF(rect.left() - 8 * unit, rect.top() - 8 * unit, 9 * unit,
                                    9 * unit), Qt.AlignmentFlag.AlignCenter, "↻")  # fmt: skip

    def crop_rect(self) -> QRectF:
        """Where the chromosome itself is drawn, in scene units (without its marks)."""
        return self.mapRectToScene(QRectF(self.pixmap().rect()))

    def boundingRect(self) -> QRectF:
        margin = 5.0 / max(self.scale(), 1e-6)
        return super().boundingRect().adjusted(-margin, -margin, margin, margin)


IDEOGRAM_WIDTH = 9.0  # scene units: a narrow bar beside the homologs


def ideogram_items(scene: QGraphicsScene, chromosome_type: ChromosomeType, rect: Rect,
                   level: int) -> list[QGraphicsItem]:
    """The type's ideogram at ``level`` bands drawn into ``rect`` (pter at the top): grey
    bands by their stain, the centromere as a waist, a thin outline."""
    if chromosome_type is ChromosomeType.UNCLASSIFIED:
        return []
    items: list[QGraphicsItem] = []
    no_pen = QPen(Qt.PenStyle.NoPen)
    for band in ideogram_bands(chromosome_type.display_name, level):
        top = rect.y + band.start * rect.height
        height = (band.end - band.start) * rect.height
        if band.stain == "acen":
            wide, narrow = rect.width / 2, rect.width * 0.2
            upper, lower = (wide, narrow) if band.arm == "p" else (narrow, wide)
            middle = rect.x + rect.width / 2
            shape = QPolygonF([QPointF(middle - upper, top), QPointF(middle + upper, top),
                               QPointF(middle + lower, top + height),
                               QPointF(middle - lower, top + height)])
            items.append(scene.addPolygon(shape, no_pen, QBrush(QColor(150, 150, 150))))
            continue
        grey = round(255 - 215 * band.darkness)
        items.append(scene.addRect(QRectF(rect.x, top, rect.width, height), no_pen,
                                   QBrush(QColor(grey, grey, grey))))
    outline = QPen(INK, 0.6)
    items.append(scene.addRect(QRectF(rect.x, rect.y, rect.width, rect.height), outline))
    for item in items:
        item.setZValue(-1)
    return items


class KaryogramScene(QGraphicsScene):
    """Slots with their labels, and the chromosomes placed by the core's layout."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackgroundBrush(PAPER)
        self.cell: Cell | None = None
        self.style: LayoutStyle | None = None
        self.gallery = False
        self.layout: KaryogramLayout | None = None
        self.chromosome_items: dict[str, ChromosomeItem] = {}
        self.label_items: dict[ChromosomeType, QGraphicsSimpleTextItem] = {}
        self._decorations: list[QGraphicsItem] = []
        self.drop_marker = None
        self.display = DisplayOptions()  # how the chromosomes look (never what they are)
        self.marks = True  # review marks; an export draws none
        self.align_centromeres = True
        self.ideogram_level: int | None = None  # band level of ideograms beside the pairs

    def show_cell(
        self, cell: Cell | None, style: LayoutStyle | None = None, gallery: bool = False
    ) -> None:
        """Draw a cell from scratch (a new cell, or the other view of it)."""
        self.clear()
        self.chromosome_items.clear()
        self._decorations.clear()
        self.cell, self.style, self.gallery = cell, style, gallery
        self.drop_marker = self.addRect(QRectF(), QPen(Qt.PenStyle.NoPen), QBrush(DROP))
        self.drop_marker.setZValue(-2)
        self.drop_marker.hide()
        if cell is None:
            self.layout = None
            self.label_items.clear()
            return
        for chromosome in cell.chromosomes:
            item = ChromosomeItem(chromosome, self.display)
            item.marks = self.marks
            self.addItem(item)
            self.chromosome_items[chromosome.id] = item
        self.relayout()

    def set_display(self, display: DisplayOptions | None = None, marks: bool | None = None,
                    align_centromeres: bool | None = None) -> None:
        """Change how the karyogram looks: the pictures are drawn again, labels, crops and
        ISCN stay as they are."""
        redraw = display is not None and display != self.display
        if display is not None:
            self.display = display
        if marks is not None:
            self.marks = marks
        if align_centromeres is not None:
            self.align_centromeres = align_centromeres
        for item in self.chromosome_items.values():
            item.display, item.marks = self.display, self.marks
        if self.cell is not None:
            self.relayout(list(self.chromosome_items) if redraw else None)

    def set_ideograms(self, level: int | None) -> None:
        """Draw each type's ideogram beside its homologs at ``level`` bands (None: none)."""
        self.ideogram_level = level
        if self.cell is not None:
            self.relayout()

    def relayout(self, changed: list[str] | None = None) -> None:
        """Place every chromosome by its label again, reusing the drawn crops; ``changed``
        ids are redrawn (their orientation changed)."""
        cell = self.cell
        if cell is None:
            return
        changed = set(changed or ())
        for item in self._decorations:
            self.removeItem(item)
        self._decorations.clear()
        self.label_items.clear()
        for chromosome in cell.chromosomes:  # pictures first: the layout takes their sizes
            self.chromosome_items[chromosome.id].update_from(
                chromosome, picture=chromosome.id in changed)
        sizes = {id_: (item.pixmap().width(), item.pixmap().height())
                 for id_, item in self.chromosome_items.items()}  # fmt: skip
        if self.gallery:
            self.layout = gallery_layout(cell.chromosomes, self.style, sizes=sizes)
        else:
            centromeres = {id_: item.centromere for id_, item in self.chromosome_items.items()
                           if item.centromere is not None} if self.align_centromeres else None
            style = replace(self.style or LayoutStyle(),
                            ideogram_width=IDEOGRAM_WIDTH if self.ideogram_level else 0.0)
            self.layout = karyogram_layout(cell.chromosomes, style, sizes=sizes,
                                           centromeres=centromeres,
                                           derivatives=derivative_names(cell))
        label_font = QFont()
        label_font.setPointSizeF(11)
        for chromosome_type, rect in self.layout.ideograms.items():
            self._decorations += ideogram_items(self, chromosome_type, rect, self.ideogram_level)
        for chromosome_type, slot in self.layout.slots.items():
            label = slot.label_rect
            line = self.addLine(label.x, label.y + 2, label.right, label.y + 2, QPen(SLOT_LINE, 1))
            line.setZValue(-1)
            name = (
                "unclassified"
                if chromosome_type is ChromosomeType.UNCLASSIFIED
                else chromosome_type.display_name
            )
            self._decorations += [line, self._caption(name, label_font, label.x, label.y + 3,
                                                      label.width)]
            self.label_items[chromosome_type] = self._decorations[-1]
        small = QFont()
        small.setPointSizeF(9)
        derivatives = derivative_names(cell)
        for chromosome in cell.chromosomes:
            item = self.chromosome_items[chromosome.id]
            rect = self.layout.placements[chromosome.id]
            height = item.pixmap().height()
            item.setScale(rect.height / height if height and rect.height else 1.0)
            item.setPos(rect.x, rect.y)
            item.setZValue(0)
            if self.gallery:  # no slots: each crop says its type underneath
                self._decorations.append(self._caption(
                    chromosome.label.display_name, small, rect.x - 10, rect.bottom + 2,
                    rect.width + 20,
                ))
            elif chromosome.id in derivatives:  # der(9), del(5)...: named above it
                self._decorations.append(self._caption(
                    derivatives[chromosome.id], small, rect.x - 14,
                    rect.y - QFontMetricsF(small).height() - 1, rect.width + 28,
                ))
        self.setSceneRect(QRectF(0, 0, self.layout.width, self.layout.height))

    def _caption(self, text: str, font: QFont, x: float, y: float, width: float):
        item = self.addSimpleText(text, font)
        item.setBrush(INK)
        item.setPos(x + (width - item.boundingRect().width()) / 2, y)
        return item

    def reading_order(self) -> list[str]:
        """Chromosome ids as the reviewer reads them: slot by slot, row by row."""
        if self.layout is None:
            return []
        if self.gallery or not self.layout.slots:
            return [c.id for c in self.cell.chromosomes]
        return [id_ for slot in self.layout.slots.values() for id_ in slot.members]

    def chromosome_at(self, point: QPointF, exclude: str | None = None) -> str | None:
        for item in self.items(point):
            if isinstance(item, ChromosomeItem) and item.chromosome_id != exclude:
                return item.chromosome_id
        return None

    def slot_at(self, point: QPointF) -> ChromosomeType | None:
        if self.layout is None:
            return None
        return self.layout.slot_at(point.x(), point.y())

    def select(self, chromosome_id: str | None) -> None:
        self.clearSelection()
        item = self.chromosome_items.get(chromosome_id) if chromosome_id else None
        if item is not None:
            item.setSelected(True)

    def selected_id(self) -> str | None:
        for item in self.selectedItems():
            if isinstance(item, ChromosomeItem):
                return item.chromosome_id
        return None

    def mark_drop(self, chromosome_type: ChromosomeType | None) -> None:
        slot = self.layout.slots.get(chromosome_type) if self.layout and chromosome_type else None
        if slot is None:
            self.drop_marker.hide()
            return
        rect = slot.rect
        self.drop_marker.setRect(QRectF(rect.x - 4, rect.y - 4, rect.width + 8, rect.height + 8))
        self.drop_marker.show()


class KaryogramView(QGraphicsView):
    """Shows the whole karyogram (refitted with the window); click selects, drag corrects."""

    chromosome_selected = Signal(object)  # chromosome id or None
    reassign_requested = Signal(str, object)  # chromosome id, ChromosomeType of the slot
    swap_requested = Signal(str, str)  # the dragged chromosome, the one it was dropped on
    key_typed = Signal(str)  # digits, X, Y, Enter and Escape typed on the karyogram

    def __init__(self, scene: KaryogramScene, parent=None) -> None:
        super().__init__(scene, parent)
        self.setRenderHints(
            QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform
        )
        self.setBackgroundBrush(PAPER)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.editable = True
        self.zoomed = False  # the reviewer zoomed in: no refit until asked (Ctrl+0)
        scene.sceneRectChanged.connect(lambda _rect: self._refit())  # a relayout may widen it
        self._pressed: tuple[str, QPointF, QPointF] | None = None  # id, press point, item pos
        self._dragging = False
        self._panning: tuple[QPointF, int, int] | None = None  # press point, scroll bars
        self.grabGesture(Qt.GestureType.PinchGesture)

    def karyogram(self) -> KaryogramScene:
        return self.scene()

    def fit(self) -> None:
        """The whole karyogram in the window (View > Fit, Ctrl+0): the zoom is reset."""
        self.zoomed = False
        if not self.scene().sceneRect().isEmpty():
            self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)

    def _refit(self) -> None:
        if not self.zoomed:
            self.fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._refit()

    # ------------------------------------------------------------ zoom and pan
    def zoom(self) -> float:
        """How much larger than fitted the karyogram is drawn (1: fitted)."""
        fitted = self._fitted_scale()
        return self.transform().m11() / fitted if fitted else 1.0

    def _fitted_scale(self) -> float:
        rect = self.scene().sceneRect()
        viewport = self.viewport().rect()
        if rect.isEmpty() or viewport.isEmpty():
            return 0.0
        return min((viewport.width() - 2) / rect.width(), (viewport.height() - 2) / rect.height())

    def zoom_by(self, factor: float, under_mouse: bool = False) -> None:
        """Zoom in (factor > 1) or out, about the mouse or the middle of the view; never
        smaller than fitted nor more than MAX_ZOOM times larger."""
        fitted = self._fitted_scale()
        current = self.transform().m11()
        if not fitted or not current or factor <= 0:
            return
        target = min(max(current * factor, fitted), fitted * MAX_ZOOM)
        if target <= fitted * 1.001:
            self.fit()
            return
        anchor = (QGraphicsView.ViewportAnchor.AnchorUnderMouse if under_mouse
                  else QGraphicsView.ViewportAnchor.AnchorViewCenter)  # fmt: skip
        self.setTransformationAnchor(anchor)
        self.scale(target / current, target / current)
        self.zoomed = True

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.2 ** steps, under_mouse=True)
        event.accept()

    def viewportEvent(self, event) -> bool:
        if (event.type() == QEvent.Type.NativeGesture
                and event.gestureType() == Qt.NativeGestureType.ZoomNativeGesture):
            self.zoom_by(1.0 + event.value(), under_mouse=True)  # a trackpad's pinch
            return True
        return super().viewportEvent(event)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.Gesture:  # a touch screen's pinch
            pinch = event.gesture(Qt.GestureType.PinchGesture)
            if pinch is not None:
                self.zoom_by(pinch.scaleFactor())
                return True
        return super().event(event)

    # ------------------------------------------------------------ mouse: select and drag
    def mousePressEvent(self, event) -> None:
        point = self.mapToScene(event.position().toPoint())
        scene = self.karyogram()
        on_paper = scene.chromosome_at(point) is None
        if event.button() == Qt.MouseButton.MiddleButton or (
                event.button() == Qt.MouseButton.LeftButton and on_paper and self.zoomed):
            self._panning = (event.position(), self.horizontalScrollBar().value(),
                             self.verticalScrollBar().value())  # fmt: skip
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            if event.button() == Qt.MouseButton.LeftButton:
                scene.select(None)
                self.chromosome_selected.emit(None)
            event.accept()
            return
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        chromosome_id = scene.chromosome_at(point)
        scene.select(chromosome_id)
        self.chromosome_selected.emit(chromosome_id)
        if chromosome_id is not None:
            item = scene.chromosome_items[chromosome_id]
            self._pressed = (chromosome_id, point, item.pos())
        self._dragging = False
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        if self._panning is not None:
            start, horizontal, vertical = self._panning
            moved = event.position() - start
            self.horizontalScrollBar().setValue(horizontal - round(moved.x()))
            self.verticalScrollBar().setValue(vertical - round(moved.y()))
            event.accept()
            return
        if self._pressed is None or not self.editable:
            super().mouseMoveEvent(event)
            return
        chromosome_id, start, item_pos = self._pressed
        point = self.mapToScene(event.position().toPoint())
        if not self._dragging:
            moved = self.mapFromScene(point) - self.mapFromScene(start)
            if moved.manhattanLength() < QApplication.startDragDistance():
                return
            self._dragging = True
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        scene = self.karyogram()
        item = scene.chromosome_items[chromosome_id]
        item.setZValue(10)
        item.setPos(item_pos + (point - start))
        if not scene.gallery:
            scene.mark_drop(scene.slot_at(point))
        event.accept()

    def mouseReleaseEvent(self, event) -> None:
        if self._panning is not None:
            self._panning = None
            self.unsetCursor()
            event.accept()
            return
        pressed, dragging = self._pressed, self._dragging
        self._pressed, self._dragging = None, False
        if pressed is None or event.button() != Qt.MouseButton.LeftButton:
            super().mouseReleaseEvent(event)
            return
        self.unsetCursor()
        scene = self.karyogram()
        scene.mark_drop(None)
        if not dragging:
            return
        chromosome_id = pressed[0]
        point = self.mapToScene(event.position().toPoint())
        onto = scene.chromosome_at(point, exclude=chromosome_id)
        slot = None if scene.gallery else scene.slot_at(point)
        # the window relays the cell out after an edit; without one, the crop goes back
        scene.relayout()
        if onto is not None:
            self.swap_requested.emit(chromosome_id, onto)
        elif slot is not None:
            self.reassign_requested.emit(chromosome_id, slot)
        event.accept()

    def keyPressEvent(self, event) -> None:
        text = event.text().strip().upper()
        if text in ("+", "=") and not event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_by(1.25)
            event.accept()
            return
        if text == "-" and not event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_by(0.8)
            event.accept()
            return
        if (len(text) == 1 and (text.isdigit() or text in "XYU")) or event.key() in (
            Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape
        ):
            if event.modifiers() & (Qt.KeyboardModifier.ControlModifier |
                                    Qt.KeyboardModifier.AltModifier):
                super().keyPressEvent(event)
                return
            key = {Qt.Key.Key_Escape: "Escape"}.get(event.key(), text or "Enter")
            self.key_typed.emit(key)
            event.accept()
            return
        super().keyPressEvent(event)


def render_karyogram(cell: Cell, path: str | os.PathLike,
                     pixels_per_unit: float = EXPORT_PIXELS_PER_UNIT,
                     display: DisplayOptions | None = None) -> Path:
    """Save the karyogram of a cell as the app draws it, without review marks, as a PNG
    with the ISCN beneath (the app's File > Export and ``karyo classify --png`` alike).

    Needs a QApplication (offscreen is enough); raises OSError naming the file when it
    cannot be written.
    """
    path = Path(path)
    scene = KaryogramScene()
    scene.set_display(display, marks=False)
    scene.show_cell(cell)
    source = scene.sceneRect()
    caption = 28.0  # scene units under the karyogram for the cell name and its ISCN
    size = QSize(
        max(1, round(source.width() * pixels_per_unit)),
        max(1, round((source.height() + caption) * pixels_per_unit)),
    )
    image = QImage(size, QImage.Format.Format_RGB32)
    image.fill(PAPER)
    painter = QPainter(image)
    painter.setRenderHints(
        QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform
    )
    drawn = QRectF(0, 0, size.width(), source.height() * pixels_per_unit)
    scene.render(painter, drawn, source)
    font = QFont()
    font.setPixelSize(round(14 * pixels_per_unit))
    painter.setFont(font)
    painter.setPen(INK)
    text_box = QRectF(0, drawn.bottom(), size.width(), caption * pixels_per_unit)
    painter.drawText(text_box, Qt.AlignmentFlag.AlignCenter, f"{cell.name}    {cell.karyotype}")
    painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path), "PNG"):
        raise OSError(f"{path}: cannot write the karyogram PNG")
    return path
