"""The karyogram as a QGraphicsScene: the core's layout drawn with the cell's crops."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
)

from karyo_gui.core.case import Cell, Chromosome
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.layout import KaryogramLayout, LayoutStyle, karyogram_layout

PAPER = QColor("white")  # crops have a white background: the karyogram stays white
INK = QColor(30, 30, 30)
SLOT_LINE = QColor(150, 150, 150)


def grey_pixmap(image: np.ndarray) -> QPixmap:
    """A QPixmap of a 2-D uint8 array (copied, so the array may change afterwards)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape
    qimage = QImage(image.data, width, height, image.strides[0], QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(qimage.copy())


class ChromosomeItem(QGraphicsPixmapItem):
    """One chromosome crop, drawn at the cell's common scale."""

    def __init__(self, chromosome: Chromosome, scale: float) -> None:
        image = chromosome.displayed_image()
        if image is None:  # crop file missing: a grey placeholder keeps its place
            image = np.full((40, 12), 200, np.uint8)
        super().__init__(grey_pixmap(image))
        self.chromosome_id = chromosome.id
        self.setScale(scale)
        self.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setToolTip(f"{chromosome.id}\ntype {chromosome.label.display_name}")


class KaryogramScene(QGraphicsScene):
    """Slots with their labels, and the chromosomes placed by the core's layout."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackgroundBrush(PAPER)
        self.layout: KaryogramLayout | None = None
        self.chromosome_items: dict[str, ChromosomeItem] = {}
        self.label_items: dict[ChromosomeType, QGraphicsSimpleTextItem] = {}

    def show_cell(self, cell: Cell | None, style: LayoutStyle | None = None) -> None:
        self.clear()
        self.chromosome_items.clear()
        self.label_items.clear()
        self.layout = None
        if cell is None:
            return
        self.layout = karyogram_layout(cell.chromosomes, style)
        label_font = QFont()
        label_font.setPointSizeF(11)
        for chromosome_type, slot in self.layout.slots.items():
            label = slot.label_rect
            line = self.addLine(label.x, label.y + 2, label.right, label.y + 2, QPen(SLOT_LINE, 1))
            line.setZValue(-1)
            name = (
                "unclassified"
                if chromosome_type is ChromosomeType.UNCLASSIFIED
                else (chromosome_type.display_name)
            )
            text = self.addSimpleText(name, label_font)
            text.setBrush(INK)
            bounds = text.boundingRect()
            text.setPos(label.x + (label.width - bounds.width()) / 2, label.y + 3)
            self.label_items[chromosome_type] = text
        for chromosome in cell.chromosomes:
            rect = self.layout.placements[chromosome.id]
            item = ChromosomeItem(chromosome, 1.0)
            pixmap = item.pixmap()
            item.setScale(rect.height / pixmap.height() if pixmap.height() else 1.0)
            item.setPos(rect.x, rect.y)
            self.addItem(item)
            self.chromosome_items[chromosome.id] = item
        self.setSceneRect(QRectF(0, 0, self.layout.width, self.layout.height))


class KaryogramView(QGraphicsView):
    """Shows the whole karyogram, refitted whenever the window changes size."""

    def __init__(self, scene: KaryogramScene, parent=None) -> None:
        super().__init__(scene, parent)
        self.setRenderHints(
            QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform
        )
        self.setBackgroundBrush(PAPER)
        self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)

    def fit(self) -> None:
        if not self.scene().sceneRect().isEmpty():
            self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()


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
