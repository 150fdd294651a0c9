"""The inspector: the selected chromosome enlarged, its 24 probabilities and a Grad-CAM overlay.

The panel asks for attention maps (``attention_requested``) and for reassignments
(``reassign_requested``); the main window answers, so no model code runs here.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from karyo_gui.core.case import Cell, CellStatus, Chromosome
from karyo_gui.core.labels import N_TYPES, ChromosomeType
from karyo_gui.core.review import flags_text
from karyo_gui.inference.report import attention_overlay
from karyo_gui.qt.karyogram_view import grey_pixmap

NO_SELECTION = "No chromosome selected"
NO_PICTURE = "no picture"
PREDICTED_TARGET = "predicted type"
BAR_COLOUR = QColor(120, 144, 180)
HIGHLIGHT_COLOUR = QColor(214, 96, 40)
TOP_COUNT = 3
CHART_DELAY_MS = 200  # after the window is up
DEFAULT_OPACITY = 45


def rgb_pixmap(image: np.ndarray) -> QPixmap:
    """A QPixmap of an RGB uint8 array (copied)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width, _ = image.shape
    qimage = QImage(image.data, width, height, image.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


def _type_name(chromosome_type: ChromosomeType | None) -> str:
    return "–" if chromosome_type is None else chromosome_type.display_name


class CropLabel(QLabel):
    """A label that shows its pixmap as large as fits, keeping the aspect ratio, smoothly."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._source: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(60, 120)
        # Ignored: the scaled pixmap must not feed back into the layout (no resize loop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)

    def sizeHint(self) -> QSize:
        return QSize(220, 320)

    def set_source(self, pixmap: QPixmap | None, text: str = "") -> None:
        self._source = pixmap
        if pixmap is None:
            self.clear()
            self.setText(text)
        else:
            self._rescale()

    def source(self) -> QPixmap | None:
        return self._source

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._source is not None:
            self._rescale()

    def _rescale(self) -> None:
        size = self.contentsRect().size()
        if size.width() < 1 or size.height() < 1:
            size = self.sizeHint()
        self.setPixmap(
            self._source.scaled(
                size,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )


class InspectorPanel(QWidget):
    """The inspector dock: one chromosome, its type probabilities and where the model looked."""

    reassign_requested = Signal(str, object)  # chromosome id, ChromosomeType
    attention_requested = Signal(str, object)  # chromosome id, ChromosomeType or None = predicted

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._cell: Cell | None = None
        self._chromosome: Chromosome | None = None
        self._map: np.ndarray | None = None  # over the crop as stored
        self._map_caption = ""
        self._overlay: np.ndarray | None = None  # RGB as drawn, when an overlay is shown

        self.image_label = CropLabel(self)
        self.image_label.setText(NO_SELECTION)

        self.caption_label = QLabel(self)
        self.caption_label.setTextFormat(Qt.TextFormat.PlainText)
        self.caption_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption_label.setWordWrap(True)

        self.overlay_check = QCheckBox("Grad-CAM overlay", self)
        self.overlay_check.setChecked(True)
        self.overlay_check.setToolTip("Colour the crop by where the classifier looked")
        self.target_combo = QComboBox(self)
        self.target_combo.addItem(PREDICTED_TARGET)
        for chromosome_type in ChromosomeType.types():
            self.target_combo.addItem(f"type {chromosome_type.display_name}")
        self.target_combo.setToolTip("The type whose evidence the overlay shows")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(DEFAULT_OPACITY)
        self.opacity_slider.setToolTip("Overlay opacity")

        self.info_label = QLabel(NO_SELECTION, self)
        self.info_label.setTextFormat(Qt.TextFormat.PlainText)
        self.info_label.setWordWrap(True)
        self.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # the probability chart is built a moment after the window is up: pyqtgraph's
        # import costs a third of a second that the first paint need not wait for
        self._bar_plot = None
        self._bars = None
        self._chart_holder = QWidget(self)
        self._chart_holder.setMinimumHeight(140)
        QVBoxLayout(self._chart_holder).setContentsMargins(0, 0, 0, 0)
        QTimer.singleShot(CHART_DELAY_MS, self._chart)

        self.top_buttons: list[QPushButton] = []
        self._top_types: list[ChromosomeType | None] = [None] * TOP_COUNT
        for rank in range(TOP_COUNT):
            button = QPushButton("–", self)
            button.setEnabled(False)
            button.clicked.connect(lambda _checked=False, rank=rank: self._reassign(rank))
            self.top_buttons.append(button)

        controls = QHBoxLayout()
        controls.addWidget(self.overlay_check)
        controls.addWidget(self.target_combo, 1)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity", self))
        opacity_row.addWidget(self.opacity_slider, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("Reassign:", self))
        for button in self.top_buttons:
            buttons.addWidget(button, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(self.image_label, 3)
        layout.addWidget(self.caption_label)
        layout.addLayout(controls)
        layout.addLayout(opacity_row)
        layout.addWidget(self.info_label)
        layout.addWidget(self._chart_holder, 2)
        layout.addLayout(buttons)

        self.overlay_check.toggled.connect(self._overlay_toggled)
        self.target_combo.currentIndexChanged.connect(self._target_changed)
        self.opacity_slider.valueChanged.connect(self._draw_image)

    @property
    def bar_plot(self):
        """The probability chart (a pyqtgraph PlotWidget), built when first needed."""
        self._chart()
        return self._bar_plot

    @property
    def bars(self):
        self._chart()
        return self._bars

    def _chart(self) -> None:
        if self._bar_plot is not None:
            return
        import pyqtgraph as pg

        plot = pg.PlotWidget(self._chart_holder, background="w")
        plot.setMinimumHeight(140)
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        # room on the right for the last name (a label past the axis end is dropped)
        plot.setXRange(-0.7, N_TYPES - 0.1, padding=0)
        plot.setYRange(0, 1, padding=0.02)
        plot.setLabel("left", "probability")
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(pg.mkPen(90, 90, 90))
            axis.setTextPen(pg.mkPen(40, 40, 40))
        bottom = plot.getAxis("bottom")
        # every type has a tick; 1, 3, 5... 21, X are always named, and 2, 4... 22, Y when the
        # dock is wide enough for all 24 names not to run together (pyqtgraph drops the
        # second level of names when crowded)
        names = [(t.value, t.display_name) for t in ChromosomeType.types()]
        bottom.setTicks([names[0::2], names[1::2]])
        tick_font = QFont(self.font())
        tick_font.setPointSizeF(max(6.0, tick_font.pointSizeF() - 1))
        bottom.setStyle(tickFont=tick_font)
        plot.getAxis("left").setTicks([[(v, f"{v:g}") for v in (0, 0.5, 1)], []])
        self._bar_brush = pg.mkBrush(BAR_COLOUR)
        self._highlight_brush = pg.mkBrush(HIGHLIGHT_COLOUR)
        self._bars = pg.BarGraphItem(
            x=np.arange(N_TYPES),
            height=np.zeros(N_TYPES),
            width=0.8,
            brushes=[self._bar_brush] * N_TYPES,
            pen=pg.mkPen(None),
        )
        plot.addItem(self._bars)
        self._chart_holder.layout().addWidget(plot)
        self._bar_plot = plot
        self._show_probabilities()

    # -- what the window calls ---------------------------------------------------------------

    def shown_id(self) -> str | None:
        return None if self._chromosome is None else self._chromosome.id

    def overlay_image(self) -> np.ndarray | None:
        """The RGB array drawn, when an overlay is shown."""
        return self._overlay

    def show_chromosome(self, cell: Cell | None, chromosome_id: str | None) -> None:
        """Show one chromosome of a cell; None clears the panel."""
        chromosome = None
        if cell is not None and chromosome_id is not None:
            chromosome = cell.chromosome(chromosome_id)
        same = (
            chromosome is not None
            and cell is self._cell
            and self._chromosome is not None
            and self._chromosome.id == chromosome.id
        )
        self._cell, self._chromosome = cell, chromosome
        if not same or not self._map_fits():
            self._map = None
            self.caption_label.clear()
        self._show_info()
        self._show_probabilities()
        self._draw_image()
        self._request_attention()

    def show_attention(
        self,
        chromosome_id: str,
        crop_map: np.ndarray,
        target: ChromosomeType,
        probability: float,
    ) -> None:
        """Lay a map (over the crop as stored) on the crop shown; a stale map is ignored."""
        chromosome = self._chromosome
        if chromosome is None or chromosome.id != chromosome_id or chromosome.image is None:
            return
        wanted = self.target()
        if wanted is not None and wanted != target:  # answer to an earlier choice of target
            return
        crop_map = np.asarray(crop_map, np.float32)
        if crop_map.shape != chromosome.image.shape[:2]:
            self.show_attention_problem(
                chromosome_id,
                f"attention map {crop_map.shape} does not fit the crop {chromosome.image.shape}",
            )
            return
        self._map = crop_map
        # the probability the chart shows (both looks, calibrated), not the map's one look
        stored = chromosome.probabilities
        if stored is not None and target.value < N_TYPES:
            probability = float(stored[target.value])
        self._map_caption = f"Grad-CAM for type {_type_name(target)} (p = {probability:.2f})"
        self.caption_label.setText(self._map_caption)
        self._draw_image()

    def show_attention_problem(self, chromosome_id: str, message: str) -> None:
        """Why there is no map for the chromosome shown (no model, failure...)."""
        if self._chromosome is None or self._chromosome.id != chromosome_id:
            return
        self._map = None
        self.caption_label.setText(message)
        self._draw_image()

    def target(self) -> ChromosomeType | None:
        """The type the overlay explains; None = the predicted type."""
        index = self.target_combo.currentIndex()
        return None if index <= 0 else ChromosomeType(index - 1)

    # -- drawing -----------------------------------------------------------------------------

    def _map_fits(self) -> bool:
        chromosome = self._chromosome
        return (
            self._map is not None
            and chromosome is not None
            and chromosome.image is not None
            and self._map.shape == chromosome.image.shape[:2]
        )

    def _draw_image(self) -> None:
        self._overlay = None
        chromosome = self._chromosome
        if chromosome is None:
            self.image_label.set_source(None, NO_SELECTION)
            return
        if chromosome.image is None:
            self.image_label.set_source(None, NO_PICTURE)
            return
        orientation = chromosome.orientation
        if self.overlay_check.isChecked() and self._map_fits():
            self._overlay = attention_overlay(
                np.ascontiguousarray(orientation.apply(chromosome.image)),
                np.ascontiguousarray(orientation.apply(self._map)),
                self.opacity_slider.value() / 100,
            )
            self.image_label.set_source(rgb_pixmap(self._overlay))
        else:
            self.image_label.set_source(grey_pixmap(orientation.apply(chromosome.image)))

    def _show_info(self) -> None:
        chromosome = self._chromosome
        if chromosome is None:
            self.info_label.setText(NO_SELECTION)
            return
        lines = [f"{chromosome.id}: type {chromosome.label.display_name}"]
        if chromosome.probabilities is None and chromosome.predicted is None:
            lines.append("not classified")
        else:
            lines.append(
                f"predicted {_type_name(chromosome.predicted)} · "
                f"assigned {_type_name(chromosome.assigned)}"
            )
        manual = chromosome.manual
        if manual is not None:
            at = manual.at.strftime("%Y-%m-%d %H:%M %Z").strip()
            lines.append(f"manual {manual.label.display_name} by {manual.by}, {at}")
        if chromosome.given is not None:
            agrees = chromosome.given == chromosome.label
            lines.append(f"given {chromosome.given.display_name} (the folder's label"
                         f"{'' if agrees else ', not the type shown'})")  # fmt: skip
        if chromosome.flags:
            lines.append(flags_text(chromosome))
        self.info_label.setText("\n".join(lines))

    def _show_probabilities(self) -> None:
        chromosome = self._chromosome
        probabilities = None if chromosome is None else chromosome.probabilities
        if probabilities is None:
            heights = np.zeros(N_TYPES)
        else:
            heights = np.asarray(probabilities, float).reshape(N_TYPES)
        if self._bar_plot is not None:  # else drawn when the chart is built
            brushes = [self._bar_brush] * N_TYPES
            if chromosome is not None and chromosome.label is not ChromosomeType.UNCLASSIFIED:
                brushes[chromosome.label.value] = self._highlight_brush
            self._bars.setOpts(height=heights, brushes=brushes)

        editable = self._cell is not None and self._cell.status is not CellStatus.SIGNED_OFF
        order = [] if probabilities is None else np.argsort(-heights, kind="stable")[:TOP_COUNT]
        for rank, button in enumerate(self.top_buttons):
            if rank < len(order):
                chromosome_type = ChromosomeType(int(order[rank]))
                name = chromosome_type.display_name
                button.setText(f"{name}  ({heights[order[rank]] * 100:.0f} %)")
                button.setToolTip(f"Make {chromosome.id} type {name}")
                button.setEnabled(editable)
                self._top_types[rank] = chromosome_type
            else:
                button.setText("–")
                button.setToolTip("")
                button.setEnabled(False)
                self._top_types[rank] = None

    # -- user actions ------------------------------------------------------------------------

    def _reassign(self, rank: int) -> None:
        chromosome_type = self._top_types[rank]
        if self._chromosome is not None and chromosome_type is not None:
            self.reassign_requested.emit(self._chromosome.id, chromosome_type)

    def _request_attention(self) -> None:
        """Ask for the map of the chromosome shown, when the overlay is on and it has a picture."""
        chromosome = self._chromosome
        if chromosome is None or chromosome.image is None or not self.overlay_check.isChecked():
            return
        target = self.target()
        if self._map is None:
            which = "the " + PREDICTED_TARGET if target is None else f"type {target.display_name}"
            self.caption_label.setText(f"Grad-CAM for {which}: computing…")
        # emitted last: a window that answers at once finds the panel ready
        self.attention_requested.emit(chromosome.id, target)

    def _overlay_toggled(self, checked: bool) -> None:
        self.caption_label.setText(self._map_caption if checked and self._map_fits() else "")
        self._draw_image()
        self._request_attention()

    def _target_changed(self, _index: int) -> None:
        self._map = None  # the map explains the previous target
        self._draw_image()
        self._request_attention()
