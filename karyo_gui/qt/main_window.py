"""The review window: a cytogeneticist opens a cell, checks and corrects it, signs it off.

Cells of the case on the left, the karyogram in the middle, the inspector (Grad-CAM and
the model's probabilities) on the right. A cell of a whole metaphase image shows the image
beside the karyogram, its chromosomes outlined, with the tools that correct what the finder
found (split, join, delete, add, separate a crossing). The model works in a thread of its
own (:class:`ModelService`); every correction is an undoable command whose change goes into
the cell's audit trail, and is autosaved to a recovery file at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QGuiApplication,
    QKeySequence,
    QUndoCommand,
    QUndoGroup,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from karyo_gui import __version__
from karyo_gui.core.case import Case, Cell, CellStatus
from karyo_gui.core.case_file import SUFFIX, load_case, save_case
from karyo_gui.core.images import IMAGE_SUFFIXES, is_image_file
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.layout import LayoutStyle
from karyo_gui.core.loaders import display_path
from karyo_gui.core.opening import OpenError, example_case, open_case
from karyo_gui.core.review import (
    LabelEdit,
    OrientationEdit,
    TypedType,
    mirror,
    needs_review,
    next_flagged,
    reassign,
    swap,
    turn,
)
from karyo_gui.core.synthetic import EXAMPLE_KARYOTYPES
from karyo_gui.qt.export import ReportInfo, export_karyogram_png, export_report_pdf
from karyo_gui.qt.inspector import InspectorPanel
from karyo_gui.qt.karyogram_view import (
    DOUBTFUL,
    FLAG,
    MANUAL,
    SELECTED,
    SURE,
    UNSURE,
    KaryogramScene,
    KaryogramView,
)
from karyo_gui.qt.metaphase_view import (
    FINDER_FLAGGED,
    HAND,
    NORMAL,
    MetaphaseTool,
    MetaphaseView,
)
from karyo_gui.qt.model_service import ModelService
from karyo_gui.qt.retrain import ModelHistoryDialog, RetrainDialog, reviewed_case_files
from karyo_gui.qt.settings import (
    Recovery,
    Settings,
    discard_recovery,
    pending_recoveries,
    recovery_path,
    write_origin,
)

CASE_FILTER = f"karyo case (*{SUFFIX});;All files (*)"
IMAGE_FILTER = (
    "Metaphase images (" + " ".join(f"*{suffix}" for suffix in sorted(IMAGE_SUFFIXES)) + ")"
    ";;All files (*)"
)
MODEL_FILTER = "karyo model (*.safetensors);;All files (*)"
TYPING_PAUSE_MS = 900  # after a lone 1 or 2, how long to wait for a second digit
AUTOSAVE_DELAY_MS = 300  # edits within this time are autosaved together
STATUS_TEXT = {
    CellStatus.UNREVIEWED: "unreviewed",
    CellStatus.REVIEWED: "reviewed",
    CellStatus.SIGNED_OFF: "signed off",
}


class EditCommand(QUndoCommand):
    """One correction of a cell on the undo stack (the edit itself lives in the core)."""

    def __init__(self, window: MainWindow, edit: LabelEdit | OrientationEdit) -> None:
        super().__init__(edit.text)
        self.window, self.edit = window, edit

    def _ids(self) -> list[str]:
        if isinstance(self.edit, OrientationEdit):
            return [self.edit.chromosome_id]
        return list(self.edit.changes)

    def redo(self) -> None:
        self.edit.apply()
        self._tell()

    def undo(self) -> None:
        self.edit.revert()
        self._tell()

    def _tell(self) -> None:
        turned = isinstance(self.edit, OrientationEdit)
        self.window.cell_edited(self.edit.cell, self._ids(), turned)


class RegionCommand(QUndoCommand):
    """One correction of a metaphase's chromosomes (split, join, delete, add, separate) on
    the undo stack; the edit itself (a core RegionEdit) knows how to apply and revert it."""

    def __init__(self, window: MainWindow, cell: Cell, edit) -> None:
        super().__init__(edit.text)
        self.window, self.cell, self.edit = window, cell, edit

    def redo(self) -> None:
        self.edit.apply()
        self.window.regions_edited(self.cell, list(self.edit.changed))

    def undo(self) -> None:
        self.edit.revert()
        self.window.regions_edited(self.cell, [])


METAPHASE_TOOLS = (  # tool, menu text, shortcut, tooltip
    (MetaphaseTool.SELECT, "&Select", "Esc",
     "Select (Esc): click a chromosome on the image to select it here, in the karyogram and "
     "in the inspector. Wheel or +/- zoom, 0 fits, middle button or Space+drag pans"),
    (MetaphaseTool.SPLIT, "S&plit chromosomes", "S",
     "Split (S): drag a line across the outline where two touching chromosomes meet (or "
     "where one should be cut); each side becomes a chromosome"),
    (MetaphaseTool.JOIN, "&Join chromosomes", "J",
     "Join (J): click two pieces that are one chromosome (a chromosome broken at its "
     "centromere, or cut in two by the finder)"),
    (MetaphaseTool.DELETE, "&Delete chromosome", "Del",
     "Delete (Del): deletes the selected chromosome; with nothing selected, click what is "
     "not a chromosome (a nucleus, debris) to delete it"),
    (MetaphaseTool.ADD, "&Add chromosome", "A",
     "Add (A): drag around a chromosome the finder missed, or click its corners one by one "
     "and double-click (or Enter) to close the outline"),
    (MetaphaseTool.SEPARATE, "Separate &crossing", "C",
     "Separate crossing (C): on two crossing chromosomes outlined as one (Join them first "
     "if they are two wrong pieces), trace one of them through the crossing, end to end; "
     "the two then share the pixels where they cross"),
)


def _swatch(colour, text: str) -> str:
    return f'<span style="color:{colour.name()}">■</span>&nbsp;{text}'


class MainWindow(QMainWindow):
    def __init__(
        self,
        settings: Settings | None = None,
        load_model: bool = True,
        model: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.case: Case | None = None
        self.case_path: Path | None = None  # the case file Save writes (None: ask)
        self.origin: str = ""  # what the case was opened from, for its recovery file
        self.current_cell: Cell | None = None
        self.last_error: str | None = None
        self.pending_question: QMessageBox | None = None
        self.ask_on_close = True
        self.model_problem: str | None = None
        self.retrain_dialog: RetrainDialog | None = None
        self._dirty = False
        self._stacks: dict[Cell, QUndoStack] = {}
        self._typed = TypedType()
        self._typing_timer = QTimer(self, singleShot=True, interval=TYPING_PAUSE_MS)
        self._typing_timer.timeout.connect(self._typing_paused)
        self._autosave_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self.autosave)
        self.undo_group = QUndoGroup(self)

        self.scene = KaryogramScene(self)
        self.view = KaryogramView(self.scene, self)
        self.view.chromosome_selected.connect(self._on_selected)
        self.view.reassign_requested.connect(self.reassign)
        self.view.swap_requested.connect(self.swap)
        self.view.key_typed.connect(self._on_key_typed)
        legend = QLabel(
            "  ".join([
                _swatch(SURE, "sure"), _swatch(UNSURE, "unsure"), _swatch(DOUBTFUL, "doubtful"),
                _swatch(MANUAL, "set by hand"),
                f'<span style="color:{FLAG.name()}">●</span>&nbsp;needs a look (N)',
            ])
        )
        legend.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        legend.setToolTip("Frame colour: the model's probability of the type shown "
                          "(sure ≥ 90 %, unsure ≥ 50 %, doubtful below). Drag a chromosome onto "
                          "a slot or onto another chromosome, or select it and type 1-22, X, Y")
        self.mode_label = QLabel()
        self.mode_label.setStyleSheet("font-weight: bold")
        header = QHBoxLayout()
        header.setContentsMargins(6, 2, 6, 2)
        header.addWidget(self.mode_label)
        header.addSpacing(24)
        header.addWidget(legend, 1)
        self.metaphase_view = MetaphaseView(self)
        self.metaphase_view.selected.connect(self._on_metaphase_selected)
        self.metaphase_view.gesture_finished.connect(self._on_gesture)
        self.metaphase_view.tool_changed.connect(self._on_tool_changed)
        self.metaphase_view.hint.connect(self._on_metaphase_hint)
        metaphase_legend = QLabel("  ".join([
            _swatch(NORMAL, "found"), _swatch(FINDER_FLAGGED, "finder unsure / cluster / "
                                              "crossing"),
            _swatch(HAND, "outlined by hand"), _swatch(SELECTED, "selected"),
        ]))
        metaphase_legend.setContentsMargins(6, 2, 6, 2)
        metaphase_legend.setToolTip("Outline colour of each chromosome on the metaphase image; "
                                    "its type is written beside it (? = not classified yet)")
        self.metaphase_panel = QWidget()
        panel = QVBoxLayout(self.metaphase_panel)
        panel.setContentsMargins(0, 0, 0, 0)
        panel.setSpacing(0)
        panel.addWidget(metaphase_legend)
        panel.addWidget(self.metaphase_view, 1)
        self.metaphase_panel.hide()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.metaphase_panel)
        self.splitter.addWidget(self.view)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addLayout(header)
        column.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

        self.cell_list = QListWidget()
        self.cell_list.currentRowChanged.connect(self._on_cell_chosen)
        self.cells_dock = self._dock("Cells", "cells", self.cell_list,
                                     Qt.DockWidgetArea.LeftDockWidgetArea)
        self.inspector = InspectorPanel()
        self.inspector.reassign_requested.connect(self.reassign)
        self.inspector.attention_requested.connect(self._on_attention_requested)
        self.inspector_dock = self._dock("Inspector", "inspector", self.inspector,
                                         Qt.DockWidgetArea.RightDockWidgetArea)
        self.problem_list = QListWidget()
        self.problems_dock = self._dock("Load problems", "problems", self.problem_list,
                                        Qt.DockWidgetArea.BottomDockWidgetArea)
        self.problems_dock.hide()

        self.busy_label = QLabel()
        self.busy_bar = QProgressBar(maximumWidth=120, maximumHeight=14, textVisible=False)
        self.busy_bar.setRange(0, 0)  # busy, not a percentage
        self.busy_bar.hide()
        self.count_label = QLabel()
        self.sex_label = QLabel()
        self.flag_label = QLabel()
        self.model_label = QLabel("no model")
        self.karyotype_label = QLabel()
        self.karyotype_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.karyotype_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.karyotype_label.setFont(font)
        self.karyotype_label.setToolTip("ISCN karyotype of the cell as shown")
        bar = self.statusBar()
        bar.addWidget(self.busy_bar)
        bar.addWidget(self.busy_label)
        for label in (self.model_label, self.flag_label, self.count_label, self.sex_label,
                      self.karyotype_label):
            label.setContentsMargins(10, 0, 10, 0)
            bar.addPermanentWidget(label)

        self.service = ModelService(self)
        self.service.model_loaded.connect(self._on_model_loaded)
        self.service.model_failed.connect(self._on_model_failed)
        self.service.cell_classified.connect(self._on_cell_classified)
        self.service.classify_failed.connect(self._on_classify_failed)
        self.service.attention_ready.connect(self._on_attention_ready)
        self.service.attention_failed.connect(self._on_attention_failed)
        self.service.busy_changed.connect(self._on_busy)
        self.service.cell_found.connect(self._on_cell_found)
        self.service.find_failed.connect(self._on_find_failed)

        self._build_menus()
        self.setAcceptDrops(True)
        self._fit_to_screen(1440, 900)
        self._restore_window_state()
        self._update_title()
        self._update_status()
        if load_model:
            self.load_model(model if model is not None else self.settings.model_path,
                            remember=False)

    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # ----------------------------------------------------------------- menus
    def _build_menus(self) -> None:
        keys = QKeySequence.StandardKey
        menu = self.menuBar().addMenu("&File")
        self._action(menu, "&Open cell folder...", self._choose_folder, keys.Open)
        self._action(menu, "Open &case file...", self._choose_case_file, "Ctrl+Shift+O")
        self._action(menu, "Open metaphase &image...", self._choose_image, "Ctrl+I")
        self.recent_menu = menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        examples = menu.addMenu("Open &example cell")
        for karyotype in EXAMPLE_KARYOTYPES:
            self._action(examples, karyotype, lambda k=karyotype: self.open_example(k))
        self.recover_menu = menu.addMenu("Recover &unsaved edits")
        self.recover_menu.aboutToShow.connect(self._fill_recover_menu)
        menu.addSeparator()
        self.save_action = self._action(menu, "&Save case", self.save, keys.Save)
        self._action(menu, "Save case &as...", self.save_as, "Ctrl+Shift+S")
        menu.addSeparator()
        self._action(menu, "Export karyogram as &PNG...", self._choose_png, "Ctrl+E")
        self._action(menu, "Export &report as PDF...", self._choose_pdf, "Ctrl+P")
        menu.addSeparator()
        self._action(menu, "Reviewer &name...", self._ask_reviewer)
        self.classify_on_open_action = self._action(
            menu, "Classify cells on &open", self._toggle_classify_on_open
        )
        self.classify_on_open_action.setCheckable(True)
        self.classify_on_open_action.setChecked(self.settings.classify_on_open)
        menu.addSeparator()
        self._action(menu, "&Quit", self.close, keys.Quit)

        menu = self.menuBar().addMenu("&Edit")
        undo = self.undo_group.createUndoAction(self, "&Undo")
        undo.setShortcut(keys.Undo)
        redo = self.undo_group.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence(keys.Redo), QKeySequence("Ctrl+Y")])
        menu.addActions([undo, redo])
        self.undo_action, self.redo_action = undo, redo
        menu.addSeparator()
        self._action(menu, "&Rotate by 180°", self.rotate_selected, "R")
        self._action(menu, "&Flip left-right", self.flip_selected, "F")
        menu.addSeparator()
        self._action(menu, "&Next flagged chromosome", lambda: self.step_flagged(1), "N")
        self._action(menu, "&Previous flagged chromosome", lambda: self.step_flagged(-1),
                     "Shift+N")

        menu = self.menuBar().addMenu("&Cell")
        self._action(menu, "&Next cell", lambda: self._step_cell(1), "Ctrl+PgDown")
        self._action(menu, "&Previous cell", lambda: self._step_cell(-1), "Ctrl+PgUp")
        menu.addSeparator()
        self._action(menu, "Mark &reviewed", self.mark_reviewed, "Ctrl+D")
        self._action(menu, "&Sign off...", self.sign_off, "Ctrl+Shift+D")
        self._action(menu, "Re&open for editing", self.reopen)
        menu.addSeparator()
        self._action(menu, "&Classify again", self.classify_again, "Ctrl+Shift+K")

        menu = self.menuBar().addMenu("&View")
        self._action(menu, "&Fit karyogram to window", self.view.fit, "Ctrl+0")
        self.gallery_action = self._action(menu, "Metaphase &gallery (crops as loaded)",
                                           self._toggle_gallery, "G")
        self.gallery_action.setCheckable(True)
        self.sex_last_action = self._action(menu, "X and Y &after 22", self._toggle_sex_last)
        self.sex_last_action.setCheckable(True)
        self.sex_last_action.setChecked(self.settings.sex_last)
        menu.addSeparator()
        for dock in (self.cells_dock, self.inspector_dock, self.problems_dock):
            menu.addAction(dock.toggleViewAction())

        self._build_metaphase_menu()

        menu = self.menuBar().addMenu("&Model")
        self._action(menu, "&About the loaded model...", self.show_model_info)
        self._action(menu, "&Load model file...", self._choose_model)
        self._action(menu, "Use the &shipped model", lambda: self.load_model(None))
        menu.addSeparator()
        self._action(menu, "&Retrain on corrected cases...", self.open_retrain)
        self._action(menu, "Model &history...", self.show_model_history)

        menu = self.menuBar().addMenu("&Help")
        self._action(menu, "&Keyboard shortcuts", self.show_shortcuts, keys.HelpContents)
        self._action(menu, "&About karyo", self._about)

    def _build_metaphase_menu(self) -> None:
        """Metaphase menu and toolbar: the tools that correct the chromosomes found."""
        menu = self.menuBar().addMenu("&Metaphase")
        menu.setToolTipsVisible(True)  # each tool's tooltip says how to use it
        self.metaphase_menu = menu
        self.metaphase_toolbar = QToolBar("Metaphase tools", self)
        self.metaphase_toolbar.setObjectName("metaphase_tools")
        self.metaphase_toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.metaphase_toolbar)
        self.tool_group = QActionGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_actions: dict[MetaphaseTool, QAction] = {}
        for tool, text, key, tip in METAPHASE_TOOLS:
            action = QAction(text, self)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(key))
            action.setToolTip(tip)
            action.setStatusTip(tip)
            action.triggered.connect(lambda _checked=False, t=tool: self.choose_tool(t))
            self.tool_group.addAction(action)
            menu.addAction(action)
            self.metaphase_toolbar.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions[MetaphaseTool.SELECT].setChecked(True)
        menu.addSeparator()
        self.labels_action = self._action(
            menu, "Show &types on the image",
            lambda: self.metaphase_view.show_labels(self.labels_action.isChecked()), "T",
        )
        self.labels_action.setCheckable(True)
        self.labels_action.setChecked(True)
        self._action(menu, "&Fit image to view", self.metaphase_view.fit)
        self._set_metaphase_tools_enabled(False)

    def _set_metaphase_tools_enabled(self, enabled: bool) -> None:
        for tool, action in self.tool_actions.items():
            # Esc stays: it also drops a half-typed type on the karyogram
            action.setEnabled(enabled or tool is MetaphaseTool.SELECT)
        self.labels_action.setEnabled(enabled)
        self.metaphase_toolbar.setVisible(enabled)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def shortcut_table(self) -> list[tuple[str, str]]:
        """(keys, what they do): every menu action with a shortcut, and the typed keys."""
        rows = []
        for action in self.findChildren(QAction):
            keys = action.shortcuts()
            if keys and action.text():
                text = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in keys)
                rows.append((text, action.text().replace("&", "").rstrip(".")))
        rows += [
            ("1-22, X, Y", "give the selected chromosome that type (1 and 2 wait for a "
                           "second digit; Enter takes them as they are)"),
            ("drag onto a slot", "move the chromosome to that type"),
            ("drag onto a chromosome", "swap the types of the two chromosomes"),
            ("Esc", "drop a half-typed type; on the metaphase: drop the line being drawn and "
                    "go back to Select"),
            ("wheel, +, -, 0", "metaphase image: zoom around the cursor, in, out, fit"),
            ("middle button or Space + drag", "metaphase image: pan"),
            ("Enter or double-click", "metaphase image, Add: close the outline clicked"),
        ]
        return rows

    # ---------------------------------------------------------------- opening
    def open_path(self, path: str | os.PathLike) -> bool:
        """Open a cell folder, a folder of cells, a case file, a metaphase image or a folder
        of them; False (and a message) if not."""
        try:
            case = open_case(path)
        except OpenError as error:
            self.show_error(str(error))  # the case that is open stays as it is
            return False
        if not self.settle_unsaved("opening another case"):
            return False
        # Save writes a case file it was opened from, never over an image
        is_case_file = Path(path).is_file() and not is_image_file(Path(path))
        self.set_case(case, Path(path) if is_case_file else None,
                      origin=str(Path(path).resolve()))
        self.settings.add_recent(path)
        recovery = recovery_path(case.case_id, self.origin)
        if recovery.is_file():
            self.statusBar().showMessage(
                "This case has autosaved edits that were never saved: "
                "File > Recover unsaved edits", 20000,
            )
        return True

    def open_example(self, karyotype: str = EXAMPLE_KARYOTYPES[0]) -> None:
        if self.settle_unsaved("opening the example cell"):
            self.set_case(example_case(karyotype), None, origin="")

    def settle_unsaved(self, doing: str) -> bool:
        """Before the open case is replaced or the window closed: keep its unsaved edits.

        The edits are written to the recovery file first, whatever happens next; then the
        user is asked to save, discard or cancel (when ``ask_on_close``). False: cancelled.
        """
        if not self._dirty or self.case is None:
            return True
        self.autosave()
        if not self.ask_on_close:
            return True
        answer = QMessageBox.question(
            self, "Unsaved edits",
            f"Save the changes to {self.case.case_id} before {doing}?\n(Unsaved edits can "
            "be recovered later from File > Recover unsaved edits.)",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Cancel or (
            answer == QMessageBox.StandardButton.Save and not self.save()
        ):
            return False
        if answer == QMessageBox.StandardButton.Discard:
            discard_recovery(recovery_path(self.case.case_id, self.origin))
        return True

    def offer_recovery(self) -> QMessageBox | None:
        """At start: offer the edits an earlier session autosaved but never saved."""
        found = pending_recoveries()
        if not found:
            return None
        more = (f"\n\nand {len(found) - 1} more (File > Recover unsaved edits)"
                if len(found) > 1 else "")
        box = QMessageBox(
            QMessageBox.Icon.Question, "Recover unsaved edits",
            "karyo stopped before these edits were saved:\n\n"
            f"{found[0].describe()}{more}\n\nOpen them now?",
            QMessageBox.StandardButton.NoButton, self,
        )
        recover = box.addButton("Recover", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(recover)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered() -> None:
            self.pending_question = None
            if box.clickedButton() is recover:
                self.recover(found[0])

        box.finished.connect(answered)
        self.pending_question = box
        box.open()
        return box

    def set_case(self, case: Case, case_path: Path | None, origin: str = "") -> None:
        self.service.forget()
        self.undo_group.setActiveStack(None)
        for stack in self._stacks.values():
            self.undo_group.removeStack(stack)
            stack.setParent(None)  # freed with _stacks now; deleteLater waits for the event loop
        self._stacks.clear()
        self.case, self.case_path, self.origin = case, case_path, origin
        self._dirty = False
        self.cell_list.blockSignals(True)
        self.cell_list.clear()
        for cell in case.cells:
            self.cell_list.addItem(QListWidgetItem(self._cell_entry(cell)))
        self.cell_list.blockSignals(False)
        self.cell_list.setCurrentRow(0)
        self._on_cell_chosen(0)
        self._update_title()
        if self.settings.classify_on_open:
            waiting = [c for c in case.cells if self._needs_classifying(c)]
            self.service.classify(waiting)

    @staticmethod
    def _needs_classifying(cell: Cell) -> bool:
        return cell.status is not CellStatus.SIGNED_OFF and (cell.needs_finding or any(
            c.image is not None and c.probabilities is None for c in cell.chromosomes
        ))

    def _on_cell_chosen(self, row: int) -> None:
        if self.case is None or not 0 <= row < len(self.case.cells):
            self.show_cell(None)
            return
        self.show_cell(self.case.cells[row])

    def _step_cell(self, step: int) -> None:
        if self.case and self.case.cells:
            row = (self.cell_list.currentRow() + step) % len(self.case.cells)
            self.cell_list.setCurrentRow(row)

    def show_cell(self, cell: Cell | None) -> None:
        self.current_cell = cell
        self._typed.pending = ""
        self.scene.show_cell(cell, self._style(), self.gallery_action.isChecked())
        self.view.fit()
        self.metaphase_view.set_tool(MetaphaseTool.SELECT)
        has_metaphase = cell is not None and cell.metaphase is not None
        if has_metaphase and self.metaphase_panel.isHidden():
            self.metaphase_panel.show()
            half = max(1, self.splitter.width()) // 2
            self.splitter.setSizes([half, half])  # the image and the karyogram side by side
        self.metaphase_panel.setVisible(has_metaphase)
        self._set_metaphase_tools_enabled(has_metaphase)
        self.metaphase_view.show_cell(cell if has_metaphase else None)
        self.inspector.show_chromosome(cell, None)
        if cell is not None:
            if cell not in self._stacks:
                self._stacks[cell] = QUndoStack(self)
                self.undo_group.addStack(self._stacks[cell])
            self.undo_group.setActiveStack(self._stacks[cell])
            if self.service.is_pending(cell):
                self.service.classify([cell], first=True)
        problems = (self.case.problems if self.case else []) + (cell.problems if cell else [])
        self.problem_list.clear()
        self.problem_list.addItems(problems)
        self.problems_dock.setVisible(bool(problems))
        if problems:
            self.statusBar().showMessage(
                f"{len(problems)} file(s) or folder(s) could not be used: see Load problems",
                10000,
            )
        self._update_status()

    def _style(self) -> LayoutStyle:
        return LayoutStyle(sex_last=self.sex_last_action.isChecked())

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open cell folder")
        if folder:
            self.open_path(folder)

    def _choose_case_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open case file", "", CASE_FILTER)
        if path:
            self.open_path(path)

    def _choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open metaphase image", "", IMAGE_FILTER)
        if path:
            self.open_path(path)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_files()
        for path in recent:
            self._action(self.recent_menu, display_path(path), lambda p=path: self.open_path(p))
        if not recent:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self._action(self.recent_menu, "Clear list", self.settings.clear_recent)

    def _fill_recover_menu(self) -> None:
        self.recover_menu.clear()
        found = pending_recoveries()
        for recovery in found:
            self._action(self.recover_menu, recovery.describe(),
                         lambda r=recovery: self.recover(r))
        if not found:
            self.recover_menu.addAction("(nothing to recover)").setEnabled(False)

    def recover(self, recovery: Recovery) -> bool:
        """Open autosaved edits; they stay in the recovery file until the case is saved."""
        try:
            case = load_case(recovery.path)
        except OpenError as error:
            self.show_error(str(error))
            return False
        if not self.settle_unsaved("recovering other edits"):
            return False
        origin = recovery.origin
        case_path = Path(origin) if origin.endswith(SUFFIX) else None
        self.set_case(case, case_path, origin=origin)
        self._dirty = True
        self._update_title()
        self.statusBar().showMessage(f"Recovered {recovery.describe()}: save to keep it", 10000)
        return True

    # drag a folder, a case file or a metaphase image onto the window
    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    # ---------------------------------------------------------------- the model
    def load_model(self, checkpoint: str | os.PathLike | None, remember: bool = True) -> None:
        """Load a model in the background; the one in use stays until the new one works."""
        if remember:
            self.settings.model_path = None if checkpoint is None else str(checkpoint)
        self.model_label.setText("loading model…")
        self.service.load(checkpoint)

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model file", "", MODEL_FILTER)
        if path:
            self.load_model(path)

    def _on_model_loaded(self, description: str) -> None:
        self.model_problem = None
        self.model_label.setText(f"model {description}")
        device = self.service.classifier.device
        self.model_label.setToolTip(f"running on {device}; Model > About the loaded model")
        self.statusBar().showMessage(
            f"Model {description} loaded in {self.service.load_seconds:.1f} s", 5000
        )

    def _on_model_failed(self, message: str) -> None:
        self.model_problem = message
        loaded = self.service.classifier
        self.model_label.setText(f"model {loaded.description}" if loaded else "no model")
        keep = "; still using the model loaded before" if loaded else ""
        self.show_error(f"{message}{keep}")

    def open_retrain(self) -> RetrainDialog | None:
        """Model > Retrain: fine-tune the model in use on saved, reviewed case files."""
        classifier = self.service.classifier
        if classifier is None:
            self.show_error("No model is loaded yet: retraining starts from the model in use")
            return None
        if self.retrain_dialog is not None and self.retrain_dialog.running():
            self.retrain_dialog.raise_()
            return self.retrain_dialog
        candidates = list(dict.fromkeys(
            ([str(self.case_path.resolve())] if self.case_path else [])
            + self.settings.recent_files()
        ))
        dialog = RetrainDialog(
            classifier.path, classifier.header.name or classifier.path.stem,
            reviewed_case_files(candidates), self.settings.base_data, parent=self,
        )
        if self._dirty:
            dialog.status_label.setText("This case has unsaved edits: save it (Ctrl+S) so the "
                                        "run learns from them.")
        dialog.use_model.connect(self.load_model)
        dialog.finished.connect(lambda _result: self._remember_base(dialog))
        self.retrain_dialog = dialog
        dialog.show()
        return dialog

    def _remember_base(self, dialog: RetrainDialog) -> None:
        base = dialog.base_edit.text().strip()
        if dialog.replay_check.isChecked() and base and Path(base).is_dir():
            self.settings.base_data = base

    def show_model_history(self) -> ModelHistoryDialog:
        from karyo_gui.inference.registry import ModelRegistry  # reads headers with torch

        current = self.service.classifier.model_id if self.service.classifier else None
        dialog = ModelHistoryDialog(ModelRegistry(), current, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.use_model.connect(self.load_model)
        dialog.show()
        return dialog

    def classify_again(self) -> None:
        cell = self.current_cell
        if cell is None or not self._editable(cell):
            return
        if cell.needs_finding:  # the finder first (it loads on its own), then the model
            self.service.retry_finder()
            self.service.classify([cell], first=True)
            self._update_status()
            return
        if self.service.classifier is None:
            self.show_error("No model is loaded: Model > Load model file, or wait for it to load")
            return
        self.service.classify([cell], first=True)

    def _on_cell_classified(self, cell: Cell, result) -> None:
        if self.case is None or cell not in self.case.cells:
            return  # a cell of a case closed meanwhile
        self._refresh_cell_entry(cell)
        if cell is self.current_cell:
            selected = self.scene.selected_id()
            self.scene.relayout(result.turned)  # the orientation guess stood them p-arm up
            self.scene.select(selected)
            self.metaphase_view.refresh()
            self.inspector.show_chromosome(cell, selected)
            self._update_status()
        if self.case_path is not None or self._dirty:
            self._schedule_autosave()

    def _on_classify_failed(self, cell: Cell, message: str) -> None:
        self.show_error(message)

    def _on_cell_found(self, cell: Cell) -> None:
        """The finder's chromosomes are in the cell: draw them (the model classifies next)."""
        if self.case is None or cell not in self.case.cells:
            return
        self._refresh_cell_entry(cell)
        if cell is self.current_cell:
            self.scene.show_cell(cell, self._style(), self.gallery_action.isChecked())
            self.view.fit()
            self.metaphase_view.refresh()
            self._update_status()
            flagged = sum(bool(c.flags) for c in cell.chromosomes)
            self.statusBar().showMessage(
                f"{len(cell)} chromosomes found in {cell.name}"
                + (f", {flagged} to check" if flagged else ""), 8000,
            )
        if self.case_path is not None or self._dirty:
            self._schedule_autosave()

    def _on_find_failed(self, cell: Cell, message: str) -> None:
        """No finder, or nothing found: said in the status bar; the image stays open."""
        if self.case is None or cell not in self.case.cells:
            return
        self.last_error = message
        if cell is self.current_cell:
            self.statusBar().showMessage(message, 20000)
            self._update_status()

    def _on_busy(self, text: str) -> None:
        self.busy_label.setText(text)
        self.busy_bar.setVisible(bool(text))

    def show_model_info(self) -> None:
        classifier = self.service.classifier
        if classifier is None:
            text = self.model_problem or "The model is still loading."
        else:
            header = classifier.header
            lines = [
                f"<b>{header.name or classifier.path.stem}</b> ({header.arch})",
                f"model id {header.model_id}, created {header.created}, "
                f"karyo {header.karyo_version}",
                f"file: {display_path(classifier.path)}",
                f"running on: {classifier.device}",
            ]
            if header.parent:
                lines.append(f"fine-tuned from: {header.parent}")
            if header.training_data:
                data = ", ".join(f"{k}: {v}" for k, v in header.training_data.items())
                lines.append(f"training data: {data}")
            for split, metrics in (header.metrics or {}).items():
                if isinstance(metrics, dict):
                    shown = ", ".join(
                        f"{name} {value:.4f}" for name, value in metrics.items()
                        if isinstance(value, float)
                    )
                    lines.append(f"{split}: {shown}")
            text = "<br>".join(lines)
        box = QMessageBox(QMessageBox.Icon.Information, "The loaded model", text, parent=self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.pending_question = box
        box.open()

    # ------------------------------------------------------------- selecting
    def select(self, chromosome_id: str | None) -> None:
        """Select a chromosome (None: nothing) and show it in the inspector."""
        self.scene.select(chromosome_id)
        self._on_selected(chromosome_id)
        item = self.scene.chromosome_items.get(chromosome_id) if chromosome_id else None
        if item is not None:
            self.view.ensureVisible(item)

    def _on_selected(self, chromosome_id: str | None) -> None:
        self._typed.pending = ""
        self.metaphase_view.select(chromosome_id)
        self.inspector.show_chromosome(self.current_cell, chromosome_id)

    def _on_metaphase_selected(self, chromosome_id: str | None) -> None:
        """A click on the image selects the chromosome in the karyogram and the inspector."""
        self.select(chromosome_id)

    def selected_id(self) -> str | None:
        return self.scene.selected_id()

    def step_flagged(self, step: int = 1) -> str | None:
        """Select the next (or previous) chromosome that needs a look; its id, or None."""
        cell = self.current_cell
        if cell is None:
            return None
        flagged = {c.id for c in cell.chromosomes if needs_review(c)}
        found = next_flagged(self.scene.reading_order(), flagged, self.selected_id(), step)
        if found is None:
            self.statusBar().showMessage("Nothing flagged in this cell", 3000)
            return None
        self.select(found)
        self.view.setFocus()
        return found

    def _on_attention_requested(self, chromosome_id: str, target) -> None:
        if self.current_cell is not None:
            self.service.attention(self.current_cell, chromosome_id, target)

    def _on_attention_ready(self, cell: Cell, chromosome_id: str, result) -> None:
        if cell is self.current_cell:
            self.inspector.show_attention(
                chromosome_id, result.crop_map, ChromosomeType(result.target), result.probability
            )

    def _on_attention_failed(self, cell: Cell, chromosome_id: str, message: str) -> None:
        if cell is self.current_cell:
            self.inspector.show_attention_problem(chromosome_id, message)

    # ----------------------------------------------------------------- editing
    def _editable(self, cell: Cell) -> bool:
        if cell.status is CellStatus.SIGNED_OFF:
            self.show_error(
                f"Cell {cell.name} is signed off; Cell > Reopen for editing to change it"
            )
            return False
        return True

    def _push(self, edit: LabelEdit | OrientationEdit | None) -> bool:
        cell = self.current_cell
        if edit is None or cell is None:
            return False
        self._stacks[cell].push(EditCommand(self, edit))
        return True

    def reassign(self, chromosome_id: str, label: ChromosomeType) -> bool:
        """Give a chromosome of the cell shown another type (undoable); False if nothing changed."""
        return self._edit(lambda cell, by: reassign(cell, chromosome_id, label, by))

    def swap(self, first_id: str, second_id: str) -> bool:
        return self._edit(lambda cell, by: swap(cell, first_id, second_id, by))

    def _edit(self, make) -> bool:
        """Push the edit ``make(cell, reviewer)`` builds; a refused drag goes back in place."""
        cell = self.current_cell
        if cell is None or not self._editable(cell):
            self.scene.relayout()
            return False
        return self._push(make(cell, self.settings.reviewer))

    def rotate_selected(self) -> bool:
        return self._turn(turn)

    def flip_selected(self) -> bool:
        return self._turn(mirror)

    def _turn(self, how) -> bool:
        cell, selected = self.current_cell, self.selected_id()
        if cell is None or selected is None:
            self.statusBar().showMessage("Select a chromosome first", 3000)
            return False
        return self._editable(cell) and self._push(how(cell, selected, self.settings.reviewer))

    def cell_edited(self, cell: Cell, ids: list[str], orientation: bool = False) -> None:
        """After an edit or its undo: redraw, recount, autosave."""
        self._dirty = True
        if cell is self.current_cell:
            selected = self.selected_id()
            self.scene.relayout(ids if orientation else None)
            self.scene.select(selected)
            self.inspector.show_chromosome(cell, selected)
            self._update_status()
        self._refresh_cell_entry(cell)
        self._update_title()
        self._schedule_autosave()

    # ----------------------------------------------------------- metaphase tools
    def choose_tool(self, tool: MetaphaseTool) -> None:
        """A tool of the Metaphase menu: Select (Esc) also drops a half-typed type; Delete
        with a chromosome selected deletes it at once."""
        cell = self.current_cell
        if tool is MetaphaseTool.SELECT:
            self._on_key_typed("Escape")
            self.metaphase_view.cancel()
            return
        if cell is None or cell.metaphase is None:
            self._on_tool_changed(self.metaphase_view.tool)
            return
        if not self._editable(cell):
            self.metaphase_view.set_tool(MetaphaseTool.SELECT)
            self._on_tool_changed(MetaphaseTool.SELECT)
            return
        selected = self.selected_id()
        if tool is MetaphaseTool.DELETE and selected is not None:
            self._on_tool_changed(self.metaphase_view.tool)
            self.edit_regions(MetaphaseTool.DELETE, [selected], [])
            return
        self.metaphase_view.set_tool(tool)
        self.metaphase_view.setFocus()

    def _on_tool_changed(self, tool: MetaphaseTool) -> None:
        self.tool_actions[tool].setChecked(True)

    def _on_metaphase_hint(self, text: str) -> None:
        if text:
            self.statusBar().showMessage(text)
        else:
            self.statusBar().clearMessage()

    def _on_gesture(self, tool: MetaphaseTool, ids: list[str], points: list) -> None:
        self.edit_regions(tool, ids, points)

    def edit_regions(self, tool: MetaphaseTool, ids: list[str], points: list) -> bool:
        """Make the edit a finished gesture asks for (undoable); False, with the reason in
        the status bar, when it cannot be made."""
        from karyo_gui.core import metaphase_edits as edits

        cell = self.current_cell
        if cell is None or cell.metaphase is None or not self._editable(cell):
            return False
        by = self.settings.reviewer
        line = [(float(x), float(y)) for x, y in points]
        try:
            if tool is MetaphaseTool.SPLIT:
                edit = edits.split_chromosome(cell, ids[0], line, by)
            elif tool is MetaphaseTool.JOIN:
                edit = edits.join_chromosomes(cell, ids, by)
            elif tool is MetaphaseTool.DELETE:
                edit = edits.delete_chromosomes(cell, ids, by)
            elif tool is MetaphaseTool.ADD:
                edit = edits.add_chromosome(cell, line, by)
            elif tool is MetaphaseTool.SEPARATE:
                edit = edits.separate_crossing(cell, ids[0], line, by)
            else:
                return False
        except (edits.EditError, KeyError, IndexError) as error:
            message = str(error) if isinstance(error, edits.EditError) else (
                "no chromosome under the gesture"
            )
            self.last_error = message
            self.statusBar().showMessage(message, 8000)
            return False
        if edit is None:
            return False
        self._stacks[cell].push(RegionCommand(self, cell, edit))
        self.statusBar().showMessage(edit.text, 5000)
        return True

    def regions_edited(self, cell: Cell, changed: list[str]) -> None:
        """After a region edit or its undo: both views drawn again, the changed chromosomes
        classified (when a model is loaded), recount, autosave."""
        self._dirty = True
        if cell is self.current_cell:
            selected = self.selected_id()
            ids = {c.id for c in cell.chromosomes}
            now = [i for i in changed if i in ids]
            keep = now[0] if now else (selected if selected in ids else None)
            self.scene.show_cell(cell, self._style(), self.gallery_action.isChecked())
            self.view.fit()
            self.metaphase_view.refresh()
            self.select(keep)
            self._update_status()
        self._refresh_cell_entry(cell)
        self._update_title()
        self._schedule_autosave()
        self.service.classify_changed(cell)

    def _on_key_typed(self, key: str) -> None:
        if key == "Escape":
            self._typed.pending = ""
            self._typing_timer.stop()
            self.statusBar().clearMessage()
            return
        chosen = self._typed.finish() if key == "Enter" else self._typed.feed(key)
        if self._typed.pending:
            self.statusBar().showMessage(f"Type {self._typed.pending}…", TYPING_PAUSE_MS)
            self._typing_timer.start()
            return
        self._typing_timer.stop()
        if chosen is not None:
            self._apply_typed(chosen)

    def _typing_paused(self) -> None:
        chosen = self._typed.finish()
        if chosen is not None:
            self._apply_typed(chosen)

    def _apply_typed(self, chosen: ChromosomeType) -> None:
        selected = self.selected_id()
        if selected is None:
            self.statusBar().showMessage("Select a chromosome, then type its type", 3000)
            return
        self.reassign(selected, chosen)

    # ----------------------------------------------------------------- review status
    def mark_reviewed(self) -> bool:
        cell = self.current_cell
        if cell is None or not self._editable(cell):
            return False
        self._set_status(cell, CellStatus.REVIEWED)
        return True

    def sign_off(self, confirm: bool = True) -> None:
        """Sign the cell off (asks first): it becomes read-only until reopened."""
        cell = self.current_cell
        if cell is None or cell.status is CellStatus.SIGNED_OFF:
            return
        if not confirm:
            self._signed_off(cell)
            return
        flagged = sum(needs_review(c) for c in cell.chromosomes)
        warn = f"\n\n{flagged} chromosome(s) are still flagged." if flagged else ""
        box = QMessageBox(
            QMessageBox.Icon.Question, "Sign off",
            f"Sign off cell {cell.name} as {cell.karyotype}, as {self.settings.reviewer}?{warn}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.accepted.connect(lambda: self._signed_off(cell))
        self.pending_question = box
        box.open()

    def _signed_off(self, cell: Cell) -> None:
        self._set_status(cell, CellStatus.SIGNED_OFF)
        stack = self._stacks.get(cell)
        if stack is not None:
            stack.clear()  # the signed result is not undone by Ctrl+Z, it is reopened

    def reopen(self) -> None:
        cell = self.current_cell
        if cell is not None and cell.status is CellStatus.SIGNED_OFF:
            self._set_status(cell, CellStatus.REVIEWED)

    def _set_status(self, cell: Cell, status: CellStatus) -> None:
        cell.set_status(status, by=self.settings.reviewer)
        self.cell_edited(cell, [])
        self.statusBar().showMessage(f"Cell {cell.name}: {STATUS_TEXT[status]}", 5000)

    def _ask_reviewer(self) -> None:
        name, ok = QInputDialog.getText(
            self, "Reviewer", "Your name, as corrections and sign-offs record it:",
            text=self.settings.reviewer,
        )
        if ok and name.strip():
            self.settings.reviewer = name

    def _toggle_classify_on_open(self) -> None:
        self.settings.classify_on_open = self.classify_on_open_action.isChecked()

    def _toggle_gallery(self) -> None:
        selected = self.selected_id()
        self.show_cell(self.current_cell)
        self.select(selected)

    def _toggle_sex_last(self) -> None:
        self.settings.sex_last = self.sex_last_action.isChecked()
        self._toggle_gallery()

    # ----------------------------------------------------------------- saving
    def save(self) -> bool:
        if self.case_path is None:
            return self.save_as()
        return self.save_to(self.case_path)

    def save_as(self) -> bool:
        if self.case is None:
            return False
        folder = Path(self.origin).parent if self.origin else Path.home()
        suggestion = str(folder / f"{self.case.case_id}{SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self, "Save case", suggestion, CASE_FILTER)
        return bool(path) and self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        if self.case is None:
            return False
        path = Path(path)
        if not path.name.endswith(SUFFIX):
            path = path.with_name(path.name + SUFFIX)
        try:
            save_case(self.case, path)
        except (OSError, ValueError) as error:
            self.show_error(f"{display_path(path)}: could not save the case ({error})")
            return False
        self._autosave_timer.stop()
        discard_recovery(recovery_path(self.case.case_id, self.origin))
        self.case_path = path
        self.origin = str(path.resolve())
        self._dirty = False
        for stack in self._stacks.values():
            stack.setClean()
        self.settings.add_recent(path)
        self._update_title()
        self.statusBar().showMessage(f"Saved {display_path(path)}", 5000)
        return True

    def _schedule_autosave(self) -> None:
        self._autosave_timer.start()

    def autosave(self) -> Path | None:
        """Write the edits to the case's recovery file (the case file is written by Save)."""
        self._autosave_timer.stop()
        if self.case is None or not self._dirty:
            return None
        recovery = recovery_path(self.case.case_id, self.origin)
        try:
            recovery.parent.mkdir(parents=True, exist_ok=True)
            write_origin(recovery, self.origin)  # first: a recovery file always has its origin
            save_case(self.case, recovery)
        except (OSError, ValueError) as error:
            self.statusBar().showMessage(f"Autosave failed: {error}", 10000)
            return None
        return recovery

    # ----------------------------------------------------------------- export
    def _report_info(self) -> ReportInfo:
        classifier = self.service.classifier
        model = classifier.description if classifier is not None else None
        return ReportInfo(self.case.case_id if self.case else "", model,
                          reviewer=self.settings.reviewer)

    def _suggest(self, suffix: str) -> str:
        cell = self.current_cell
        folder = Path(self.origin).parent if self.origin else Path.home()
        return str(folder / f"{cell.name if cell else 'karyogram'}{suffix}")

    def _choose_png(self) -> None:
        self._choose_export("Export karyogram", ".png", "PNG image (*.png)", self.export_png)

    def _choose_pdf(self) -> None:
        self._choose_export("Export report", ".pdf", "PDF (*.pdf)", self.export_pdf)

    def _choose_export(self, title: str, suffix: str, kinds: str, export) -> None:
        if self.current_cell is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, title, self._suggest(suffix), kinds)
        if path:
            export(Path(path))

    def export_png(self, path: Path) -> Path | None:
        return self._export(path, ".png", lambda p: export_karyogram_png(self.current_cell, p))

    def export_pdf(self, path: Path) -> Path | None:
        return self._export(
            path, ".pdf", lambda p: export_report_pdf(self.current_cell, p, self._report_info())
        )

    def _export(self, path: Path, suffix: str, write) -> Path | None:
        if self.current_cell is None:
            return None
        path = Path(path)
        if path.suffix.lower() != suffix:
            path = path.with_name(path.name + suffix)
        try:
            written = write(path)
        except OSError as error:
            self.show_error(str(error))
            return None
        self.statusBar().showMessage(f"Exported {display_path(written)}", 5000)
        return written

    # ------------------------------------------------------------------ status
    def _update_status(self) -> None:
        cell = self.current_cell
        if cell is None:
            for label in (self.count_label, self.sex_label, self.flag_label,
                          self.karyotype_label, self.mode_label):
                label.setText("")
            self.view.editable = False
            return
        self.count_label.setText(f"{len(cell)} chromosomes")
        self.sex_label.setText(f"sex {cell.sex or '?'}" if cell.is_classified else "")
        flagged = sum(needs_review(c) for c in cell.chromosomes)
        self.flag_label.setText(f"{flagged} flagged" if flagged else "nothing flagged")
        self.karyotype_label.setText(self._karyotype_text(cell))
        signed = cell.status is CellStatus.SIGNED_OFF
        self.view.editable = not signed
        waiting = "classifying…  " if self.service.is_pending(cell) else ""
        if cell.needs_finding:
            waiting = ("finding chromosomes…  " if self.service.is_pending(cell)
                       else "chromosomes not found yet (Cell > Classify again)  ")
        self.mode_label.setText(
            f"{waiting}{cell.name} · {STATUS_TEXT[cell.status]}"
            + (" (read-only)" if signed else "")
        )

    @staticmethod
    def _karyotype_text(cell: Cell) -> str:
        return cell.karyotype if cell.is_classified else "not classified"

    @classmethod
    def _cell_entry(cls, cell: Cell) -> str:
        return f"{cell.name}\n{cls._karyotype_text(cell)} · {STATUS_TEXT[cell.status]}"

    def _refresh_cell_entry(self, cell: Cell) -> None:
        if self.case is not None and cell in self.case.cells:
            item = self.cell_list.item(self.case.cells.index(cell))
            if item is not None:
                item.setText(self._cell_entry(cell))

    # ------------------------------------------------------------------ misc
    def show_error(self, message: str) -> None:
        """Tell the user, without blocking the window (the box is window-modal)."""
        self.last_error = message
        self.statusBar().showMessage(message, 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, "karyo", message, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def show_shortcuts(self) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        rows = self.shortcut_table()
        table = QTableWidget(len(rows), 2, dialog)
        table.setHorizontalHeaderLabels(["Keys", "Does"])
        for row, (keys, text) in enumerate(rows):
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(text))
        table.verticalHeader().hide()
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        table.resizeColumnToContents(0)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=dialog)
        buttons.rejected.connect(dialog.close)
        layout = QVBoxLayout(dialog)
        layout.addWidget(table)
        layout.addWidget(buttons)
        dialog.resize(640, 560)
        dialog.show()
        return dialog

    def _update_title(self) -> None:
        what = self.case_path.name if self.case_path else (self.case.case_id if self.case else "")
        self.setWindowTitle(f"{what}[*] — karyo" if what else "karyo")
        self.setWindowModified(self._dirty)

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About karyo",
            f"karyo {__version__}\nA karyotyping workstation: classify, review and sign off "
            "chromosome karyograms.",
        )

    def _fit_to_screen(self, width: int, height: int) -> None:
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:
            room = screen.availableGeometry()
            width, height = min(width, room.width()), min(height, room.height())
        self.resize(width, height)

    def _restore_window_state(self) -> None:
        geometry = self.settings.store.value("window/geometry")
        state = self.settings.store.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    def closeEvent(self, event) -> None:
        if not self.settle_unsaved("closing"):
            event.ignore()
            return
        if self.retrain_dialog is not None and self.retrain_dialog.running():
            if self.ask_on_close and QMessageBox.question(
                self, "Retraining", "A retraining is running. Stop it and quit?"
            ) != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.retrain_dialog.run.cancel()
            self.retrain_dialog.run.process.waitForFinished(20000)
        self.settings.store.setValue("window/geometry", self.saveGeometry())
        self.settings.store.setValue("window/state", self.saveState())
        self.settings.sync()
        self.service.shutdown()
        super().closeEvent(event)
