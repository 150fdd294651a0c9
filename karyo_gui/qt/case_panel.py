"""The case as a laboratory reports it: the Case panel (tally of cell roles against the lab's
policy, the composed karyotype with its clones and single-cell findings, the signatures), the
case details dialog, the structural-abnormality dialog with its clickable ideogram, and the
two-person sign-off.

The window (main_window) owns the case and applies every change through the core; these
widgets only ask and show.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from karyo_gui.core.bands import BAND_LEVELS, IdeogramBand, ideogram_bands
from karyo_gui.core.case import Case, CaseDetails, Cell, Study
from karyo_gui.core.case_karyotype import (
    CaseComposition,
    CellPolicy,
    Tally,
    case_karyotype,
    suggest_interpretation,
)
from karyo_gui.core.iscn import IscnError, parse_abnormality
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.review import open_questions, open_questions_text

INK = QColor(30, 30, 30)
MUTED = QColor(110, 110, 110)
MARKED = QColor(200, 30, 30)
ACROCENTRIC = ("13", "14", "15", "21", "22")
CHROMOSOME_NAMES = [t.display_name for t in ChromosomeType.types()]  # 1..22, X, Y

# kind: (words, chromosomes, breakpoints on the first (least, most), on the second)
REARRANGEMENTS: dict[str, tuple[str, int, tuple[int, int], tuple[int, int]]] = {
    "t": ("reciprocal translocation", 2, (1, 1), (1, 1)),
    "del": ("deletion (one band: terminal; two: interstitial)", 1, (1, 2), (0, 0)),
    "dup": ("duplication", 1, (2, 2), (0, 0)),
    "inv": ("inversion", 1, (2, 2), (0, 0)),
    "der": ("derivative of a translocation", 2, (1, 1), (1, 1)),
    "rob": ("Robertsonian translocation (written der(A;B)(q10;q10))", 2, (0, 0), (0, 0)),
    "i": ("isochromosome (click a band of the arm it is made of)", 1, (1, 1), (0, 0)),
    "r": ("ring chromosome", 1, (2, 2), (0, 0)),
    "ins": ("insertion (a band of the first, then two of the second)", 2, (1, 1), (2, 2)),
    "add": ("additional material of unknown origin", 1, (1, 1), (0, 0)),
    "mar": ("marker chromosome (no recognisable banding: typed unclassified)", 0, (0, 0),
            (0, 0)),
}


class IdeogramWidget(QWidget):
    """One chromosome's ISCN ideogram at a band level, drawn upright (pter at the top), its
    bands named beside it; a click on a band emits its name. Chosen bands are drawn red."""

    band_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chromosome = "1"
        self.level = 400
        self.bands: tuple[IdeogramBand, ...] = ()
        self.chosen: list[str] = []
        self.setMinimumSize(QSize(150, 460))
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.set_chromosome("1", 400)

    def set_chromosome(self, chromosome: str, level: int) -> None:
        self.chromosome, self.level = chromosome, level
        self.bands = ideogram_bands(chromosome, level)
        self.chosen = []
        self.setToolTip(f"chromosome {chromosome} at the {level}-band level: click a band")
        self.update()

    def set_chosen(self, names: list[str]) -> None:
        self.chosen = list(names)
        self.update()

    def _bar(self) -> QRectF:
        return QRectF(12, 14, 26, max(40, self.height() - 28))

    def band_rect(self, name: str) -> QRectF:
        """Where a band is drawn (widget pixels); KeyError for a band it does not show."""
        bar = self._bar()
        for band in self.bands:
            if band.name == name:
                return QRectF(bar.left(), bar.top() + band.start * bar.height(), bar.width(),
                              max(1.0, (band.end - band.start) * bar.height()))
        raise KeyError(f"chromosome {self.chromosome} has no band {name} at the "
                       f"{self.level}-band level")

    def band_at(self, y: float) -> str | None:
        bar = self._bar()
        fraction = (y - bar.top()) / bar.height()
        for band in self.bands:
            if band.start <= fraction < band.end or (fraction >= 1 and band is self.bands[-1]):
                return band.name
        return None

    def mousePressEvent(self, event) -> None:
        name = self.band_at(event.position().y())
        if name is not None and event.button() == Qt.MouseButton.LeftButton:
            self.band_clicked.emit(name)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        bar = self._bar()
        font = QFont()
        font.setPixelSize(10)
        painter.setFont(font)
        painter.setPen(INK)
        painter.drawText(QRectF(0, 0, self.width(), 12), Qt.AlignmentFlag.AlignLeft,
                         f"{self.chromosome}  ({self.level} bands)")
        outline = QPainterPath()
        outline.addRoundedRect(bar, 8, 8)
        painter.save()
        painter.setClipPath(outline)
        last_label = -100.0
        for band in self.bands:
            rect = self.band_rect(band.name)
            if band.stain == "acen":  # the centromere: the arms narrow to a waist
                painter.fillRect(rect, self.palette().window())
                wide, narrow = rect.width() / 2, rect.width() * 0.18
                top, bottom = (wide, narrow) if band.arm == "p" else (narrow, wide)
                middle = rect.center().x()
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(QColor(150, 150, 150))
                painter.drawPolygon([QPointF(middle - top, rect.top()),
                                     QPointF(middle + top, rect.top()),
                                     QPointF(middle + bottom, rect.bottom()),
                                     QPointF(middle - bottom, rect.bottom())])
                continue
            grey = round(255 - 215 * band.darkness)
            painter.fillRect(rect, QColor(grey, grey, grey))
        painter.restore()
        painter.setPen(QPen(INK, 1.2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(outline)
        for band in self.bands:  # names beside the bar, as many as there is room for
            rect = self.band_rect(band.name)
            chosen = band.name in self.chosen
            middle = rect.center().y()
            if chosen:
                painter.setPen(QPen(MARKED, 2.5))
                painter.drawLine(QPointF(bar.left() - 6, middle), QPointF(bar.right() + 6, middle))
            if chosen or middle - last_label >= 11:
                font.setBold(chosen)
                painter.setFont(font)
                painter.setPen(MARKED if chosen else MUTED)
                painter.drawText(QRectF(bar.right() + 8, middle - 7, self.width(), 14),
                                 Qt.AlignmentFlag.AlignVCenter, band.name)
                if not chosen:
                    last_label = middle


def _breakpoint_order(chromosome: str, names: list[str], level: int) -> list[str]:
    """Two breakpoints of one chromosome as ISCN writes them: p before q, and within an
    arm the band nearer the centromere first (del(5)(q13q33), inv(9)(p12q13))."""
    where = {band.name: (band.start + band.end) / 2 for band in ideogram_bands(chromosome, level)}

    def key(name: str) -> tuple[int, float]:
        position = where.get(name, 0.5)
        return (0, -position) if name.startswith("p") else (1, position)

    return sorted(names, key=key)


def abnormality_text(kind: str, first: str, second: str, first_bands: list[str],
                     second_bands: list[str], level: int = 400, extra: bool = False) -> str:
    """The ISCN of a rearrangement from what the dialog holds (not yet validated)."""
    sign = "+" if extra else ""
    a = "".join(_breakpoint_order(first, first_bands, level))
    if kind in ("del", "dup", "inv", "r", "add"):
        return f"{sign}{kind}({first})({a})"
    if kind == "i":
        arm = (first_bands[0][:1] if first_bands else "q") or "q"
        return f"{sign}i({first})({arm}10)"
    if kind == "t":
        return f"t({first};{second})({a};{''.join(second_bands)})"
    if kind == "der":
        return f"{sign}der({first})t({first};{second})({a};{''.join(second_bands)})"
    if kind == "rob":
        return f"der({first};{second})(q10;q10)"
    if kind == "ins":
        b = "".join(_breakpoint_order(second, second_bands, level))
        return f"ins({first};{second})({a};{b})"
    raise ValueError(f"no ISCN for {kind!r}")


class AbnormalityDialog(QDialog):
    """Mark a structural abnormality: the kind, the chromosome(s), the breakpoints clicked on
    their ideograms at the case's band level; the ISCN is written as it is built and checked
    before OK. ``result_text`` and ``result_ids`` hold the answer."""

    def __init__(self, cell: Cell, selected_id: str, level: int | None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Mark a structural abnormality")
        self.cell = cell
        self.level = level or 400
        self.result_text: str | None = None
        self.result_ids: tuple[str, ...] = ()
        selected = cell.chromosome(selected_id)
        self.kind = QComboBox()
        for kind, (words, *_rest) in REARRANGEMENTS.items():
            self.kind.addItem(f"{kind}  —  {words}", kind)
        self.first = QComboBox()
        self.second = QComboBox()
        for combo in (self.first, self.second):
            combo.addItems(CHROMOSOME_NAMES)
        known = selected.label is not ChromosomeType.UNCLASSIFIED
        self.first.setCurrentText(selected.label.display_name if known else "1")
        self.second.setCurrentText("22")
        self.first_carrier = QComboBox()  # which chromosome of the cell is the derivative
        self.second_carrier = QComboBox()
        self.extra = QComboBox()
        self.extra.addItems(["in place of a normal homolog", "an extra chromosome (+)"])
        self.ideograms = (IdeogramWidget(), IdeogramWidget())
        self.chosen: tuple[list[str], list[str]] = ([], [])
        for index, ideogram in enumerate(self.ideograms):
            ideogram.band_clicked.connect(lambda name, i=index: self.choose_band(i, name))
        self.preview = QLabel()
        font = self.preview.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.preview.setFont(font)
        self.preview.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #b91c1c")
        self.problem.setWordWrap(True)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #555")
        clear = QPushButton("Clear breakpoints")
        clear.clicked.connect(self.clear_bands)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Rearrangement", self.kind)
        pair = QGridLayout()
        pair.addWidget(QLabel("Chromosome"), 0, 0)
        pair.addWidget(self.first, 0, 1)
        pair.addWidget(QLabel("carried by"), 0, 2)
        pair.addWidget(self.first_carrier, 0, 3)
        pair.addWidget(QLabel("Partner"), 1, 0)
        pair.addWidget(self.second, 1, 1)
        pair.addWidget(QLabel("carried by"), 1, 2)
        pair.addWidget(self.second_carrier, 1, 3)
        form.addRow(pair)
        form.addRow("The abnormal chromosome is", self.extra)
        pictures = QHBoxLayout()
        for ideogram in self.ideograms:
            pictures.addWidget(ideogram)
        column = QVBoxLayout(self)
        column.addLayout(form)
        column.addWidget(self.hint)
        column.addLayout(pictures, 1)
        row = QHBoxLayout()
        row.addWidget(self.preview, 1)
        row.addWidget(clear)
        column.addLayout(row)
        column.addWidget(self.problem)
        column.addWidget(self.buttons)
        self._selected_id = selected_id
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.first.currentTextChanged.connect(lambda _t: self._chromosomes_changed())
        self.second.currentTextChanged.connect(lambda _t: self._chromosomes_changed())
        self.extra.currentIndexChanged.connect(lambda _i: self._update())
        self._kind_changed()

    # ------------------------------------------------------------ choosing
    @property
    def current_kind(self) -> str:
        return self.kind.currentData()

    def set_kind(self, kind: str) -> None:
        self.kind.setCurrentIndex(self.kind.findData(kind))

    def _spec(self) -> tuple[str, int, tuple[int, int], tuple[int, int]]:
        return REARRANGEMENTS[self.current_kind]

    def _kind_changed(self) -> None:
        _words, chromosomes, _a, _b = self._spec()
        two = chromosomes == 2
        for widget in (self.second, self.second_carrier, self.ideograms[1]):
            widget.setVisible(two)
        self.ideograms[0].setVisible(chromosomes > 0 and self.current_kind != "rob")
        self.ideograms[1].setVisible(two and self.current_kind != "rob")
        self.extra.setEnabled(self.current_kind in ("der", "i", "del", "dup", "add", "r"))
        if not self.extra.isEnabled():
            self.extra.setCurrentIndex(0)
        if self.current_kind == "rob":
            for combo, default in ((self.first, "13"), (self.second, "14")):
                if combo.currentText() not in ACROCENTRIC:
                    combo.setCurrentText(default)
        self._chromosomes_changed()

    def _chromosomes_changed(self) -> None:
        for ideogram, combo in zip(self.ideograms, (self.first, self.second)):
            ideogram.set_chromosome(combo.currentText(), self.level)
        self.chosen = ([], [])
        self._fill_carriers()
        self._update()

    def _fill_carriers(self) -> None:
        """The cell's chromosomes of each type, the selected one first."""
        kind = self.current_kind
        both = kind in ("t", "ins")  # both derivatives of a reciprocal exchange are marked
        for combo, name, needed in ((self.first_carrier, self.first.currentText(), True),
                                    (self.second_carrier, self.second.currentText(), both)):
            combo.clear()
            if not needed:
                combo.addItem("—", None)
                combo.setEnabled(False)
                continue
            combo.setEnabled(True)
            members = [c for c in self.cell.chromosomes if c.label.display_name == name]
            members.sort(key=lambda c: c.id != self._selected_id)
            if combo is self.first_carrier and not any(c.id == self._selected_id
                                                       for c in members):
                members.insert(0, self.cell.chromosome(self._selected_id))
            for chromosome in members:
                combo.addItem(f"{chromosome.id} (now typed {chromosome.label.display_name})",
                              chromosome.id)

    def choose_band(self, which: int, name: str) -> None:
        """A band clicked on ideogram ``which`` (0: the chromosome, 1: the partner): it is
        added to that chromosome's breakpoints; when they are complete it replaces the last."""
        _words, _n, first, second = self._spec()
        most = (first, second)[which][1]
        chosen = self.chosen[which]
        if most == 0:
            return
        if name in chosen:
            chosen.remove(name)
        elif len(chosen) >= most:
            chosen[-1] = name
        else:
            chosen.append(name)
        self.ideograms[which].set_chosen(chosen)
        self._update()

    def clear_bands(self) -> None:
        self.chosen = ([], [])
        for ideogram in self.ideograms:
            ideogram.set_chosen([])
        self._update()

    # ------------------------------------------------------------ the result
    def current_text(self) -> str | None:
        kind = self.current_kind
        if kind == "mar":
            return "+mar"
        _words, _n, (least_a, _most_a), (least_b, _most_b) = self._spec()
        if len(self.chosen[0]) < least_a or len(self.chosen[1]) < least_b:
            return None
        return abnormality_text(kind, self.first.currentText(), self.second.currentText(),
                                self.chosen[0], self.chosen[1], self.level,
                                extra=self.extra.currentIndex() == 1)

    def current_ids(self) -> tuple[str, ...]:
        ids = [self.first_carrier.currentData(), self.second_carrier.currentData()]
        return tuple(i for i in ids if i is not None)

    def _update(self) -> None:
        kind = self.current_kind
        _words, _n, (least_a, most_a), (least_b, most_b) = self._spec()
        wanted = []
        if most_a:
            wanted.append(f"{least_a if least_a == most_a else f'{least_a}-{most_a}'} band(s) "
                          f"on {self.first.currentText()}")
        if most_b:
            wanted.append(f"{least_b if least_b == most_b else f'{least_b}-{most_b}'} band(s) "
                          f"on {self.second.currentText()}")
        self.hint.setText(
            "Marker: the chromosome is typed unclassified and written +mar." if kind == "mar"
            else f"Click {' and '.join(wanted)} on the ideogram(s) "
                 f"({self.level}-band level)." if wanted
            else "Whole-arm exchange at the centromeres: no band to choose.")
        text = self.current_text()
        self.preview.setText(text or "…")
        problem = ""
        if text is not None and kind != "mar":
            try:
                parse_abnormality(text)
            except IscnError as error:
                problem = str(error)
            if kind == "rob" and not {self.first.currentText(),
                                      self.second.currentText()} <= set(ACROCENTRIC):
                problem = "a Robertsonian translocation joins two acrocentric chromosomes " \
                          "(13, 14, 15, 21, 22)"
            if kind in ("t", "ins") and len(set(self.current_ids())) < 2:
                problem = (f"mark both derivatives: the cell needs a chromosome typed "
                           f"{self.second.currentText()} besides the selected one")
        self.problem.setText(problem)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(
            text is not None and not problem)

    def accept(self) -> None:
        text = self.current_text()
        if text is None or self.problem.text():
            return
        self.result_text = text
        self.result_ids = self.current_ids() if self.current_kind != "mar" else (
            self._selected_id,)
        super().accept()


class CaseDetailsDialog(QDialog):
    """Identifiers, specimen, study, band level and the interpretation of a case."""

    SPECIMENS = ("", "peripheral blood", "bone marrow", "amniotic fluid", "chorionic villi",
                 "products of conception", "skin fibroblasts", "solid tumour")

    def __init__(self, case: Case, composition: CaseComposition,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Case details: {case.case_id}")
        self.composition = composition
        details = case.details
        self.fields: dict[str, QLineEdit | QComboBox] = {}
        form = QFormLayout()
        for name in ("patient_id", "specimen_id", "lab_id", "indication"):
            edit = QLineEdit(getattr(details, name))
            self.fields[name] = edit
            form.addRow(CaseDetails.TITLES[name], edit)
        specimen = QComboBox()
        specimen.setEditable(True)
        specimen.addItems(self.SPECIMENS)
        specimen.setCurrentText(details.specimen_type)
        self.fields["specimen_type"] = specimen
        form.addRow(CaseDetails.TITLES["specimen_type"], specimen)
        culture = QLineEdit(details.culture)
        self.fields["culture"] = culture
        form.addRow(CaseDetails.TITLES["culture"], culture)
        self.study = QComboBox()
        for study in Study:
            self.study.addItem(study.value, study)
        self.study.setCurrentIndex(self.study.findData(case.study))
        form.addRow("Study", self.study)
        self.band_level = QComboBox()
        self.band_level.addItem("not set", None)
        for level in BAND_LEVELS:
            self.band_level.addItem(f"{level} bands", level)
        self.band_level.setCurrentIndex(self.band_level.findData(case.band_level))
        form.addRow("Band level", self.band_level)
        self.interpretation = QPlainTextEdit(details.interpretation)
        self.interpretation.setPlaceholderText("Interpretation for the report")
        suggest = QPushButton("Suggest from the karyotype")
        suggest.setToolTip("A starting text for common findings; edit it before you sign")
        suggest.clicked.connect(self.suggest)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        column = QVBoxLayout(self)
        column.addLayout(form)
        column.addWidget(QLabel("Interpretation"))
        column.addWidget(self.interpretation, 1)
        column.addWidget(suggest, 0, Qt.AlignmentFlag.AlignLeft)
        column.addWidget(buttons)
        self.resize(560, 560)

    def suggest(self) -> None:
        text = suggest_interpretation(self.composition, self.study.currentData())
        self.interpretation.setPlainText(text or "No cell to interpret yet.")

    def details(self) -> CaseDetails:
        values = {name: (w.currentText() if isinstance(w, QComboBox) else w.text()).strip()
                  for name, w in self.fields.items()}
        return CaseDetails(interpretation=self.interpretation.toPlainText().strip(), **values)

    def chosen_study(self) -> tuple[Study, int | None]:
        return self.study.currentData(), self.band_level.currentData()


class CasePanel(QWidget):
    """The Case dock: roles tally, composed karyotype, clones, single-cell findings,
    override, signatures, and the buttons that change them (the window connects them)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tally_label = QLabel()
        self.tally_label.setWordWrap(True)
        self.karyotype_label = QLabel()
        self.karyotype_label.setWordWrap(True)
        self.karyotype_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.karyotype_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.karyotype_label.setFont(font)
        self.detail_label = QLabel()
        self.detail_label.setWordWrap(True)
        self.detail_label.setTextFormat(Qt.TextFormat.RichText)
        self.details_button = QPushButton("Details…")
        self.override_button = QPushButton("Override…")
        self.analyst_button = QPushButton("Sign as analyst…")
        self.checker_button = QPushButton("Sign as checker…")
        self.reopen_button = QPushButton("Reopen case")
        self.report_button = QPushButton("Case report (PDF)…")
        grid = QGridLayout()
        for index, button in enumerate((self.details_button, self.override_button,
                                        self.analyst_button, self.checker_button,
                                        self.reopen_button, self.report_button)):
            grid.addWidget(button, index // 2, index % 2)
        text = QWidget()
        lines = QVBoxLayout(text)
        lines.setContentsMargins(0, 0, 0, 0)
        lines.addWidget(self.karyotype_label)
        lines.addWidget(self.tally_label)
        lines.addWidget(self.detail_label)
        lines.addStretch(1)
        scroll = QScrollArea()  # a long list of clones never squeezes the text
        scroll.setWidget(text)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumHeight(220)
        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 6, 6)
        column.addWidget(scroll, 1)
        column.addLayout(grid)

    def show_case(self, case: Case | None, composition: CaseComposition | None,
                  tally: Tally | None) -> None:
        if case is None or composition is None or tally is None:
            self.karyotype_label.setText("no case")
            self.tally_label.setText("")
            self.detail_label.setText("")
            for button in (self.details_button, self.override_button, self.analyst_button,
                           self.checker_button, self.reopen_button, self.report_button):
                button.setEnabled(False)
            return
        stated = case_karyotype(case, composition)
        self.karyotype_label.setText(stated or "no cell to compose from")
        self.tally_label.setText(f"{case.study.value} · band level "
                                 f"{case.band_level or 'not set'}\n{tally.text()}")
        lines = []
        if case.karyotype_override is not None:
            lines.append(f"<i>set by {html.escape(case.karyotype_override.by)}; composed: "
                         f"{html.escape(composition.karyotype or '—')}</i>")
        for clone in composition.clones:
            lines.append(f"{html.escape(clone.karyotype.text)}: {len(clone.cells)} cell(s)")
        for finding in composition.single_cell_findings:
            lines.append(f"<span style='color:#555'>not clonal: "
                         f"{html.escape(finding.text())}</span>")
        lines.append(f"<span style='color:#555'>from {html.escape(composition.basis)}</span>")
        for problem in composition.problems:
            lines.append(f"<span style='color:#b91c1c'>{html.escape(problem)}</span>")
        questions = open_questions(case)
        if questions:
            count = sum(q.count_in_doubt for q in questions)
            lines.append(
                f"<span style='color:#b45309'>still to check: "
                f"{sum(q.to_check for q in questions)} chromosome(s) in {len(questions)} "
                f"cell(s) with a role" + (f", {count} may change the count" if count else "")
                + "</span>")
            self.detail_label.setToolTip("\n".join(open_questions_text(questions, limit=20)))
        else:
            self.detail_label.setToolTip("")
        for signature in case.signatures:
            lines.append(f"<b>{signature.role.value}</b>: {html.escape(signature.name)}, "
                         f"{signature.at.astimezone().strftime('%Y-%m-%d %H:%M')}")
        lines.append("<b>final</b> (analysed and checked)" if case.is_final
                     else "not final: the analyst signs, then a second person checks")
        self.detail_label.setText("<br>".join(lines))
        signed = bool(case.signatures)
        self.details_button.setEnabled(not signed)
        self.override_button.setEnabled(not signed)
        self.analyst_button.setEnabled(case.analyst is None and bool(stated))
        self.checker_button.setEnabled(case.analyst is not None and case.checker is None)
        self.reopen_button.setEnabled(signed)
        self.report_button.setEnabled(True)


class PolicyDialog(QDialog):
    """The lab's cell policy: how many cells a case needs counted, analysed, karyogrammed,
    for each kind of study."""

    def __init__(self, policies: dict[Study, CellPolicy], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Lab policy: cells per case")
        grid = QGridLayout()
        self.spins: dict[tuple[Study, str], QSpinBox] = {}
        roles = ("counted", "analysed", "karyogrammed")
        for column, role in enumerate(roles, start=1):
            grid.addWidget(QLabel(role), 0, column)
        for row, study in enumerate(Study, start=1):
            grid.addWidget(QLabel(study.value), row, 0)
            for column, role in enumerate(roles, start=1):
                spin = QSpinBox()
                spin.setRange(1, 200)
                spin.setValue(getattr(policies[study], role))
                self.spins[(study, role)] = spin
                grid.addWidget(spin, row, column)
        note = QLabel("ACMG guidelines: constitutional studies usually count 20 cells, analyse 5 "
                      "and karyogram 2; oncology counts and analyses 20; mosaicism is pursued "
                      "to 30-50 cells.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #555")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        column = QVBoxLayout(self)
        column.addLayout(grid)
        column.addWidget(note)
        column.addWidget(buttons)

    def policies(self) -> dict[Study, CellPolicy]:
        return {study: CellPolicy(*(self.spins[(study, role)].value()
                                    for role in ("counted", "analysed", "karyogrammed")))
                for study in Study}
