"""The karyogram as a QGraphicsScene: the core's layout drawn with the cell's crops.

Each chromosome is framed by how sure the model is of the type it shows (green: sure,
amber: unsure, red: doubtful, blue: set by hand) and carries an orange dot when it needs a
look (moved by the assignment, low confidence...). The view lets the reviewer drag a
chromosome onto another type's slot (reassign) or onto another chromosome (swap).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QStyle,
)

from karyo_gui.core.case import Cell, Chromosome
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.layout import KaryogramLayout, LayoutStyle, gallery_layout, karyogram_layout
from karyo_gui.core.review import confidence, needs_review

PAPER = QColor("white")  # crops have a white background: the karyogram stays white
INK = QColor(30, 30, 30)
SLOT_LINE = QColor(150, 150, 150)
SURE = QColor(46, 160, 67)
UNSURE = QColor(230, 150, 0)
DOUBTFUL = QColor(215, 40, 40)
MANUAL = QColor(40, 100, 220)
FLAG = QColor(255, 120, 0)
SELECTED = QColor(0, 120, 215)
DROP = QColor(0, 120, 215, 40)
SURE_FROM, DOUBTFUL_BELOW = 0.9, 0.5  # the model's probability of the type shown


def grey_pixmap(image: np.ndarray) -> QPixmap:
    """A QPixmap of a 2-D uint8 array (copied, so the array may change afterwards)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape
    qimage = QImage(image.data, width, height, image.strides[0], QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(qimage.copy())


def frame_colour(chromosome: Chromosome) -> QColor | None:
    """The frame that tells how sure the type shown is; None when nothing classified it."""
    if chromosome.manual is not None:
        return MANUAL
    sure = confidence(chromosome)
    if sure is None:
        return None
    if sure >= SURE_FROM:
        return SURE
    return UNSURE if sure >= DOUBTFUL_BELOW else DOUBTFUL


class ChromosomeItem(QGraphicsPixmapItem):
    """One chromosome crop, drawn at the cell's common scale, framed by confidence."""

    def __init__(self, chromosome: Chromosome) -> None:
        super().__init__()
        self.chromosome_id = chromosome.id
        self.frame: QColor | None = None
        self.flagged = False
        self.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.update_from(chromosome, picture=True)

    def update_from(self, chromosome: Chromosome, picture: bool = False) -> None:
        """Take the chromosome's label, flags and (``picture``) its orientation again."""
        if picture:
            image = chromosome.displayed_image()
            if image is None:  # crop file missing: a grey placeholder keeps its place
                image = np.full((40, 12), 200, np.uint8)
            self.setPixmap(grey_pixmap(image))
        self.frame = frame_colour(chromosome)
        self.flagged = needs_review(chromosome)
        sure = confidence(chromosome)
        lines = [f"{chromosome.id}: type {chromosome.label.display_name}"]
        if chromosome.manual is not None:
            lines.append(f"set by {chromosome.manual.by}")
        elif sure is not None:
            lines.append(f"model: {sure:.0%} sure")
        lines += [flag.value.replace("_", " ") for flag in sorted(chromosome.flags)]
        self.setToolTip("\n".join(lines))
        self.update()

    def paint(self, painter: QPainter, option, widget=None) -> None:
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        option.state &= ~QStyle.StateFlag.State_Selected  # our own frame, not Qt's dashes
        super().paint(painter, option, widget)
        rect = QRectF(self.pixmap().rect()).adjusted(-0.5, -0.5, 0.5, 0.5)
        if self.frame is not None or selected:
            pen = QPen(SELECTED if selected else self.frame, 3.5 if selected else 1.8)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(rect)
        if self.flagged:
            radius = 3.0 / max(self.scale(), 1e-6)  # about 6 scene units across at any scale
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(FLAG)
            painter.drawEllipse(QPointF(rect.right(), rect.top()), radius, radius)

    def crop_rect(self) -> QRectF:
        """Where the crop itself is drawn, in scene units (without frame and flag)."""
        return self.mapRectToScene(QRectF(self.pixmap().rect()))

    def boundingRect(self) -> QRectF:
        margin = 4.0 / max(self.scale(), 1e-6)
        return super().boundingRect().adjusted(-margin, -margin, margin, margin)


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
            item = ChromosomeItem(chromosome)
            self.addItem(item)
            self.chromosome_items[chromosome.id] = item
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
        make = gallery_layout if self.gallery else karyogram_layout
        self.layout = make(cell.chromosomes, self.style)
        label_font = QFont()
        label_font.setPointSizeF(11)
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
        for chromosome in cell.chromosomes:
            item = self.chromosome_items[chromosome.id]
            item.update_from(chromosome, picture=chromosome.id in changed)
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
        scene.sceneRectChanged.connect(lambda _rect: self.fit())  # a relayout may widen it
        self._pressed: tuple[str, QPointF, QPointF] | None = None  # id, press point, item pos
        self._dragging = False

    def karyogram(self) -> KaryogramScene:
        return self.scene()

    def fit(self) -> None:
        if not self.scene().sceneRect().isEmpty():
            self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()

    # ------------------------------------------------------------ mouse: select and drag
    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        scene = self.karyogram()
        point = self.mapToScene(event.position().toPoint())
        chromosome_id = scene.chromosome_at(point)
        scene.select(chromosome_id)
        self.chromosome_selected.emit(chromosome_id)
        if chromosome_id is not None:
            item = scene.chromosome_items[chromosome_id]
            self._pressed = (chromosome_id, point, item.pos())
        self._dragging = False
        event.accept()

    def mouseMoveEvent(self, event) -> None:
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
        if (len(text) == 1 and (text.isdigit() or text in "XY")) or event.key() in (
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


def render_karyogram(cell: Cell, path: str | os.PathLike, pixels_per_unit: float = 2.0) -> Path:
    """Save the karyogram of a cell as the app draws it, as a PNG with the ISCN beneath.

    Needs a QApplication (offscreen is enough); raises OSError naming the file when it
    cannot be written.
    """
    path = Path(path)
    scene = KaryogramScene()
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
