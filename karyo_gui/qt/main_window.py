"""The review window: a cytogeneticist opens a cell, checks and corrects it, signs it off.

Cells of the case on the left, the karyogram in the middle, the inspector (Grad-CAM and
the model's probabilities) on the right. A cell of a whole metaphase image shows the image
beside the karyogram, its chromosomes outlined, with the tools that correct what the finder
found (split, join, delete, add, separate a crossing). The model works in a thread of its
own (:class:`ModelService`); every correction is an undoable command whose change goes into
the cell's audit trail, and is autosaved to a recovery file at once (one per window).

Opening reads in a thread of its own, behind a progress dialog with Cancel. A case file
opened here is locked for the window (other windows are told it is open) and
fingerprinted: Save checks that the file on disk is still what this window opened or last
saved, and asks before replacing changes saved meanwhile elsewhere.
"""

from __future__ import annotations

import os
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEventLoop, Qt, QTimer
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
    QProgressDialog,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from karyo_gui import __version__

if TYPE_CHECKING:
    from karyo_gui.qt.retrain import ModelHistoryDialog, RetrainDialog
from karyo_gui.core.assignment import sex_uncertain
from karyo_gui.core.case import (
    Case,
    Cell,
    CellRole,
    CellStatus,
    Flag,
    MarkedAbnormality,
    SignOffRefused,
    SignRole,
    Study,
)
from karyo_gui.core.case_file import SUFFIX, load_case, save_case
from karyo_gui.core.case_karyotype import CaseComposition, case_karyotype, compose_case, tally
from karyo_gui.core.display import DisplayOptions
from karyo_gui.core.file_guard import (
    Fingerprint,
    Holder,
    LockState,
    changed_on_disk,
    end_session,
    fingerprint,
    new_session,
    refresh_lock,
    release_lock,
    take_lock,
)
from karyo_gui.core.images import IMAGE_SUFFIXES, is_image_file
from karyo_gui.core.iscn import IscnError, parse_iscn
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.layout import LayoutStyle
from karyo_gui.core.loaders import display_path
from karyo_gui.core.opening import example_case, open_case
from karyo_gui.core.review import (
    LabelEdit,
    OrientationEdit,
    TypedType,
    count_text,
    mirror,
    needs_review,
    next_flagged,
    open_questions,
    open_questions_text,
    orientation_unsure,
    reassign,
    swap,
    turn,
)
from karyo_gui.core.synthetic import EXAMPLE_KARYOTYPES
from karyo_gui.qt.background import BackgroundRead
from karyo_gui.qt.case_panel import (
    AbnormalityDialog,
    CaseDetailsDialog,
    CasePanel,
    PolicyDialog,
)
from karyo_gui.qt.case_report import CaseReportInfo, export_case_report_pdf
from karyo_gui.qt.display_dialog import DisplayDialog
from karyo_gui.qt.export import ReportInfo, export_karyogram_png, export_report_pdf
from karyo_gui.qt.inspector import InspectorPanel
from karyo_gui.qt.karyogram_view import (
    DOUBTFUL,
    FLAG,
    MANUAL,
    ORIENTATION,
    SELECTED,
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
from karyo_gui.qt.settings import (
    Recovery,
    Settings,
    claim_recovery,
    discard_recovery,
    own_recovery,
    owns_recovery,
    pending_recoveries,
    release_recovery,
    set_aside_recovery,
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
OPEN_POLL_MS = 20  # how often the window looks whether a case being read is ready
OPEN_PROGRESS_AFTER_MS = 300  # a read taking longer shows its progress dialog
RELOAD, SAVE_AS, OVERWRITE, CANCEL = "Reload", "Save as…", "Overwrite", "Cancel"
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
     "Add (A): double-click on a chromosome the finder missed (its dark pixels, less those "
     "of the chromosomes beside it), drag around it, or click its corners one by one and "
     "double-click (or Enter) to close the outline"),
    (MetaphaseTool.SEPARATE, "Separate &crossing", "C",
     "Separate crossing (C): on two crossing chromosomes outlined as one (Join them first "
     "if they are two wrong pieces), trace one of them through the crossing, end to end; "
     "the two then share the pixels where they cross"),
)


class AbnormalityCommand(QUndoCommand):
    """A structural abnormality marked on (or removed from) chromosomes of a cell."""

    def __init__(self, window: MainWindow, cell: Cell, marked: MarkedAbnormality | None,
                 iscn: str = "", ids: tuple[str, ...] = ()) -> None:
        super().__init__(f"remove {marked.iscn}" if marked else f"mark {iscn}")
        self.window, self.cell, self.marked = window, cell, marked
        self.iscn, self.ids, self.removing = iscn, ids, marked is not None

    def redo(self) -> None:
        by = self.window.settings.reviewer
        if self.removing:
            self.cell.unmark_abnormality(self.marked, by)
        else:
            self.marked = self.cell.mark_abnormality(self.iscn, self.ids, by)
        self.window.cell_edited(self.cell, [])

    def undo(self) -> None:
        by = self.window.settings.reviewer
        if self.removing:  # marked again (a new entry in the audit trail)
            self.marked = self.cell.mark_abnormality(self.marked.iscn,
                                                     self.marked.chromosome_ids, by)
        else:
            self.cell.unmark_abnormality(self.marked, by)
        self.window.cell_edited(self.cell, [])


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
        # this window's session: names its lock files and recovery files
        self.session = new_session()
        weakref.finalize(self, end_session, self.session)  # a window dropped unclosed
        self._recovery: Path | None = None  # where this window autosaves the open case
        self._opened: Fingerprint | None = None  # the case file as opened or last saved
        self._lock: LockState | None = None  # this window's lock on its case file
        self.shared_with: Holder | None = None  # another live window holding the case file
        self.shared_notice: str | None = None
        # answers a question instead of a dialog (tests; scripted use): (kind, text,
        # choices) -> the choice
        self.answer: Callable[[str, str, list[str]], str] | None = None
        self._open_job: BackgroundRead | None = None
        self._open_apply: Callable[[object], bool] | None = None
        self.open_progress: QProgressDialog | None = None
        self._open_timer = QTimer(self, interval=OPEN_POLL_MS)
        self._open_timer.timeout.connect(self._poll_open)
        self._model_requests: deque[tuple[str | None, bool, bool]] = deque()
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
                _swatch(UNSURE, "type unsure"), _swatch(DOUBTFUL, "doubtful"),
                _swatch(MANUAL, "set by hand"),
                f'<span style="color:{FLAG.name()}">●</span>&nbsp;needs a look (N)',
                f'<span style="color:{ORIENTATION.name()}">↻</span>&nbsp;orientation unsure',
            ])
        )
        legend.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        legend.setToolTip("The bar under a chromosome: its type is in doubt (amber; red when "
                          "the model gives it less than 50 %); other calls carry none. "
                          "View > Review marks (M) hides them all. Drag a "
                          "chromosome onto a slot or onto another chromosome, or select it and "
                          "type 1-22, X, Y (U: unclassified). Wheel or +/- zooms, Ctrl+0 fits")
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
        self.cell_list.setWordWrap(True)  # long ISCN strings wrap, never clipped
        self.cell_list.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.cell_list.currentRowChanged.connect(self._on_cell_chosen)
        self.cells_dock = self._dock("Cells", "cells", self.cell_list,
                                     Qt.DockWidgetArea.LeftDockWidgetArea)
        self.inspector = InspectorPanel()
        self.inspector.reassign_requested.connect(self.reassign)
        self.inspector.attention_requested.connect(self._on_attention_requested)
        self.inspector_dock = self._dock("Inspector", "inspector", self.inspector,
                                         Qt.DockWidgetArea.RightDockWidgetArea)
        self.case_panel = CasePanel()
        self.case_dock = self._dock("Case", "case", self.case_panel,
                                    Qt.DockWidgetArea.LeftDockWidgetArea)
        self.cell_list.setToolTip("[C A K]: the cell is counted, analysed, karyogrammed "
                                  "(Cell menu, Ctrl+Alt+C / A / K)")
        panel = self.case_panel
        panel.details_button.clicked.connect(lambda: self.edit_case_details())
        panel.override_button.clicked.connect(lambda: self.override_karyotype())
        panel.analyst_button.clicked.connect(lambda: self.sign_case(SignRole.ANALYST))
        panel.checker_button.clicked.connect(lambda: self.sign_case(SignRole.CHECKER))
        panel.reopen_button.clicked.connect(lambda: self.reopen_case())
        panel.report_button.clicked.connect(lambda: self._choose_case_report())
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
        self.stain_label = QLabel()  # a cell stained unlike the model's training cells
        self.stain_label.setStyleSheet("color: #b45309; font-weight: bold;")
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
        # permanent, so that a status message never lies under the busy indicator
        bar.addPermanentWidget(self.busy_bar)
        bar.addPermanentWidget(self.busy_label)
        for label in (self.model_label, self.stain_label, self.flag_label, self.count_label,
                      self.sex_label, self.karyotype_label):
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
        if load_model:  # first: the model thread imports torch while the window is built
            remembered = self.settings.model_path if model is None else None
            self.load_model(model if model is not None else remembered, remember=False,
                            fallback=remembered is not None)

        self._build_menus()
        self.scene.set_display(self.display_options(), marks=self.marks_action.isChecked(),
                               align_centromeres=self.centromere_action.isChecked())
        self.scene.ideogram_level = self.ideogram_level()
        self.setAcceptDrops(True)
        self._fit_to_screen(1440, 900)
        self._restore_window_state()
        self._update_title()
        self._update_status()

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
        self.orientation_review_action = self._action(
            menu, "N stops at &orientation doubts too", self._toggle_orientation_review)
        self.orientation_review_action.setCheckable(True)
        self.orientation_review_action.setChecked(self.settings.orientation_in_review)

        menu = self.menuBar().addMenu("&Cell")
        self._action(menu, "&Next cell", lambda: self._step_cell(1), "Ctrl+PgDown")
        self._action(menu, "&Previous cell", lambda: self._step_cell(-1), "Ctrl+PgUp")
        menu.addSeparator()
        self._action(menu, "Mark &reviewed", self.mark_reviewed, "Ctrl+D")
        self._action(menu, "&Sign off...", self.sign_off, "Ctrl+Shift+D")
        self._action(menu, "Re&open for editing", self.reopen)
        menu.addSeparator()
        self.role_actions: dict[CellRole, QAction] = {}
        for role, key in ((CellRole.COUNTED, "Ctrl+Alt+C"), (CellRole.ANALYSED, "Ctrl+Alt+A"),
                          (CellRole.KARYOGRAMMED, "Ctrl+Alt+K")):
            action = self._action(menu, f"{role.value.capitalize()}",
                                  lambda r=role: self.set_role(r), key)
            action.setCheckable(True)
            self.role_actions[role] = action
        menu.addSeparator()
        self._action(menu, "Mark structural &abnormality...", self.mark_abnormality, "Ctrl+B")
        self._action(menu, "Remove marked abnormality", self.unmark_abnormality)
        menu.addSeparator()
        self._action(menu, "&Classify again", self.classify_again, "Ctrl+Shift+K")

        menu = self.menuBar().addMenu("C&ase")
        self._action(menu, "Case &details (identifiers, study, band level)...",
                     self.edit_case_details)
        self._action(menu, "&Override the case karyotype...", self.override_karyotype)
        self._action(menu, "Lab &policy (cells per case)...", self.edit_policy)
        menu.addSeparator()
        self._action(menu, "Sign as &analyst...", lambda: self.sign_case(SignRole.ANALYST))
        self._action(menu, "Sign as &checker...", lambda: self.sign_case(SignRole.CHECKER))
        self._action(menu, "&Reopen the case", self.reopen_case)
        menu.addSeparator()
        self._action(menu, "Export case &report as PDF...", self._choose_case_report,
                     "Ctrl+Shift+P")

        menu = self.menuBar().addMenu("&View")
        self._action(menu, "&Fit karyogram to window", self.view.fit, "Ctrl+0")
        self._action(menu, "Zoom &in", lambda: self.view.zoom_by(1.25), keys.ZoomIn)
        self._action(menu, "Zoom &out", lambda: self.view.zoom_by(0.8), keys.ZoomOut)
        menu.addSeparator()
        self.marks_action = self._action(menu, "Review &marks (doubt, set by hand, N)",
                                         self._display_changed, "M")
        self.marks_action.setCheckable(True)
        self.marks_action.setChecked(self.settings.review_marks)
        self.centromere_action = self._action(menu, "Align homologs on their &centromeres",
                                              self._display_changed)
        self.centromere_action.setCheckable(True)
        self.centromere_action.setChecked(self.settings.centromere_aligned)
        self.straighten_action = self._action(menu, "&Straighten bent chromosomes",
                                              self._display_changed)
        self.straighten_action.setCheckable(True)
        self.straighten_action.setChecked(self.settings.straightened)
        self.ideogram_action = self._action(menu, "&Ideograms beside the pairs",
                                            self._toggle_ideograms)
        self.ideogram_action.setCheckable(True)
        self.ideogram_action.setChecked(self.settings.ideograms_beside)
        self._action(menu, "&Display adjustments...", self.show_display_dialog)
        menu.addSeparator()
        self.gallery_action = self._action(menu, "Metaphase &gallery (crops as loaded)",
                                           self._toggle_gallery, "G")
        self.gallery_action.setCheckable(True)
        self.sex_last_action = self._action(menu, "X and Y &after 22", self._toggle_sex_last)
        self.sex_last_action.setCheckable(True)
        self.sex_last_action.setChecked(self.settings.sex_last)
        menu.addSeparator()
        for dock in (self.cells_dock, self.case_dock, self.inspector_dock, self.problems_dock):
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
        of them; False (and a message) if not, or if cancelled. The read runs in a thread
        (:meth:`start_open`); this waits for it with the window's events going on."""
        job = self.start_open(path)
        return job is not None and self.wait_for(job)

    def start_open(self, path: str | os.PathLike, settle: bool = True
                   ) -> BackgroundRead | None:
        """Start reading ``path`` in the background, with a progress dialog and Cancel;
        the case opens when the read is done. None when another read is under way."""
        path = Path(path)

        def read():
            is_case_file = path.is_file() and not is_image_file(path)
            # the fingerprint first: a change between it and the read is caught at Save
            before = fingerprint(path) if is_case_file else None
            return open_case(path), is_case_file, before

        return self._start_read(read, f"Opening {display_path(path.name)}…", path,
                                lambda result: self._opened_case(path, result, settle))

    def _start_read(self, read, what: str, path: Path, apply: Callable[[object], bool]
                    ) -> BackgroundRead | None:
        if self._open_job is not None:
            self.show_error(f"Still busy ({self._open_job.what[:-1]}): wait for it, or "
                            "cancel it, first")
            return None
        job = BackgroundRead(read, what, str(path))
        self._open_job, self._open_apply = job, apply
        self.statusBar().showMessage(what)
        dialog = QProgressDialog(what, "Cancel", 0, 0, self)
        dialog.setWindowTitle("karyo")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setMinimumDuration(OPEN_PROGRESS_AFTER_MS)
        dialog.canceled.connect(self.cancel_open)
        self.open_progress = dialog
        reading = weakref.ref(job)  # the timer must not keep a read (and its case) alive
        QTimer.singleShot(OPEN_PROGRESS_AFTER_MS, self,
                          lambda: self._reveal_progress(reading()))
        self._open_timer.start()
        return job

    def _reveal_progress(self, job: BackgroundRead | None) -> None:
        if job is not None and job is self._open_job and self.open_progress is not None:
            self.open_progress.show()

    def wait_for(self, job: BackgroundRead) -> bool:
        """Run the window's events until ``job`` is opened, refused or cancelled."""
        if job.outcome is None:
            loop = QEventLoop()
            job.when_settled.append(loop.quit)
            loop.exec()
        if job.outcome is None:  # the loop was ended from outside (the app quits)
            self.cancel_open()
        return bool(job.outcome)

    def cancel_open(self) -> None:
        """Cancel the read under way: the case that is open stays as it is."""
        job = self._open_job
        if job is None:
            return
        job.cancelled = True
        self._end_read()
        self.statusBar().showMessage(f"{job.what[:-1]}: cancelled", 8000)
        job.settle(False)

    def _end_read(self) -> None:
        self._open_timer.stop()
        self._open_job, self._open_apply = None, None
        dialog, self.open_progress = self.open_progress, None
        if dialog is not None:
            dialog.canceled.disconnect(self.cancel_open)
            dialog.hide()
            dialog.deleteLater()

    def _poll_open(self) -> None:
        job, apply = self._open_job, self._open_apply
        if job is None or not job.done:
            return
        self._end_read()
        self.statusBar().clearMessage()
        if job.error is not None:
            self.show_error(job.error)  # the case that is open stays as it is
            job.settle(False)
            return
        opened = False
        try:
            opened = bool(apply(job.result))
        finally:  # whatever happens, whoever waits for the read stops waiting
            job.result = None  # the case is the window's now (or dropped)
            job.settle(opened)

    def _opened_case(self, path: Path, result, settle: bool) -> bool:
        case, is_case_file, before = result
        if settle and not self.settle_unsaved("opening another case"):
            return False
        # Save writes a case file it was opened from, never over an image
        self.set_case(case, path if is_case_file else None, origin=str(path.resolve()))
        self._opened = before
        if is_case_file:
            self._take_lock(path)
        self.settings.add_recent(path)
        if self.shared_with is None and any(
            r.origin == self.origin for r in pending_recoveries(self.session)
        ):
            self.statusBar().showMessage(
                "This case has autosaved edits that were never saved: "
                "File > Recover unsaved edits", 20000,
            )
        return True

    def _take_lock(self, path: Path, tell: bool = True) -> None:
        """Lock the case file for this window; another live window holding it is told
        (``tell``: in a message box too)."""
        state = take_lock(path, self.session)
        self._lock = state
        self.shared_with = state.other
        if state.other is not None:
            text = (f"{display_path(path.name)} is open {state.other.describe()}. If both "
                    "windows save it, one would replace the other's edits: karyo checks "
                    "the file before each save and asks first.")
            self.shared_notice = text
            self.statusBar().showMessage(text, 30000)
            if tell:
                box = QMessageBox(QMessageBox.Icon.Warning, "Open elsewhere", text,
                                  parent=self)
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.open()
        elif state.problem is not None:
            self.statusBar().showMessage(state.problem, 10000)
        self._update_title()

    def _leave_case(self) -> None:
        """The open case is replaced or the window closes: what this window held of it
        (the lock, the recovery file) is let go."""
        release_lock(self._lock, self.session)
        release_recovery(self._recovery, self.session)
        self._lock, self._recovery, self._opened = None, None, None
        self.shared_with, self.shared_notice = None, None

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
        if answer == QMessageBox.StandardButton.Discard and self._recovery is not None:
            discard_recovery(self._recovery)
            self._recovery = None
        return True

    def offer_recovery(self) -> QMessageBox | None:
        """At start: offer the edits an earlier session autosaved but never saved (not
        those of another window still open)."""
        found = pending_recoveries(self.session)
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
            # read in the background, not waited for here: the box is being deleted
            job = self.start_recover(found[0]) if box.clickedButton() is recover else None
            if job is None:
                self.pending_question = None
            else:  # answered once the edits are open (or could not be)
                job.when_settled.append(lambda: setattr(self, "pending_question", None))

        box.finished.connect(answered)
        self.pending_question = box
        box.open()
        return box

    def set_case(self, case: Case, case_path: Path | None, origin: str = "") -> None:
        self._leave_case()
        self.service.forget()
        self.undo_group.setActiveStack(None)
        for stack in self._stacks.values():
            self.undo_group.removeStack(stack)
            stack.setParent(None)  # freed with _stacks now; deleteLater waits for the event loop
        self._stacks.clear()
        self.case, self.case_path, self.origin = case, case_path, origin
        self.scene.ideogram_level = self.ideogram_level()  # at this case's band level
        self._dirty = False
        self.cell_list.blockSignals(True)
        self.cell_list.clear()
        for cell in case.cells:
            item = QListWidgetItem(self._cell_entry(cell))
            item.setToolTip(cell.sign_off_problem or "")
            self.cell_list.addItem(item)
        self.cell_list.blockSignals(False)
        self.cell_list.setCurrentRow(0)
        self._on_cell_chosen(0)
        self._refresh_case()
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
        found = pending_recoveries(self.session)
        for recovery in found:
            self._action(self.recover_menu, recovery.describe(),
                         lambda r=recovery: self.recover(r))
        if not found:
            self.recover_menu.addAction("(nothing to recover)").setEnabled(False)

    def recover(self, recovery: Recovery) -> bool:
        """Open autosaved edits; they stay in the recovery file until the case is saved."""
        job = self.start_recover(recovery)
        return job is not None and self.wait_for(job)

    def start_recover(self, recovery: Recovery) -> BackgroundRead | None:
        """Start reading autosaved edits in the background (see :meth:`recover`); None
        when another read is under way. The window takes the recovery file over: a window
        still autosaving into it moves to a file of its own at its next autosave."""
        origin = recovery.origin
        case_path = Path(origin) if origin.endswith(SUFFIX) else None

        def read():
            return load_case(recovery.path), fingerprint(case_path) if case_path else None

        return self._start_read(read, f"Recovering {recovery.case_id}…", recovery.path,
                                lambda result: self._recovered(recovery, case_path, result))

    def _recovered(self, recovery: Recovery, case_path: Path | None, result) -> bool:
        case, on_disk = result
        if not self.settle_unsaved("recovering other edits"):
            return False
        self.set_case(case, case_path, origin=recovery.origin)
        self._recovery = recovery.path  # autosaved on into, removed by Save
        own_recovery(recovery.path, self.session)
        self._opened = on_disk  # Save checks the case file against what it is now
        if case_path is not None and on_disk is not None:
            self._take_lock(case_path)
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
    def load_model(self, checkpoint: str | os.PathLike | None, remember: bool = True,
                   fallback: bool = False) -> None:
        """Load a model in the background; the one in use stays until the new one works.

        ``remember``: once it has loaded (never before), the next start loads it too.
        ``fallback``: if it fails, the shipped model is loaded instead, and the window says
        which file failed and why (the model remembered from the last session)."""
        self._model_requests.append(
            (None if checkpoint is None else str(checkpoint), remember, fallback))
        self.model_label.setText("loading model…")
        self.service.load(checkpoint)

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model file", "", MODEL_FILTER)
        if path:
            self.load_model(path)

    def _on_model_loaded(self, description: str) -> None:
        checkpoint, remember, _ = (self._model_requests.popleft() if self._model_requests
                                   else (None, False, False))
        if remember:
            self.settings.model_path = checkpoint
        self.model_problem = None
        self.model_label.setText(f"model {description}")
        device = self.service.classifier.device_name
        self.model_label.setToolTip(f"running on {device}; Model > About the loaded model")
        self.statusBar().showMessage(
            f"Model {description} loaded in {self.service.load_seconds:.1f} s", 5000
        )

    def _on_model_failed(self, message: str) -> None:
        checkpoint, _, fallback = (self._model_requests.popleft() if self._model_requests
                                   else (None, False, False))
        if fallback and checkpoint is not None:
            # kept in the settings: a share offline today is back tomorrow, and the lab
            # gets its own model again rather than the shipped one without a word
            text = (f"The model used last time, {display_path(checkpoint)}, could not be "
                    f"loaded ({message}); using the shipped model instead. karyo tries that "
                    "file again at the next start (Model > Use the shipped model forgets it)")
            self.model_problem = text
            self.show_error(text)
            self.load_model(None, remember=False)
            return
        self.model_problem = message
        loaded = self.service.classifier
        self.model_label.setText(f"model {loaded.description}" if loaded else "no model")
        keep = "; still using the model loaded before" if loaded else ""
        self.show_error(f"{message}{keep}")

    def open_retrain(self) -> RetrainDialog | None:
        """Model > Retrain: fine-tune the model in use on saved, reviewed case files."""
        # imported here: with pyqtgraph and the trainer's data code, 1 s of the start-up
        from karyo_gui.qt.retrain import RetrainDialog, reviewed_case_files

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
        from karyo_gui.qt.retrain import ModelHistoryDialog

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
            if result.dropped:  # faint candidates with no place in the karyotype are gone
                self.scene.show_cell(cell, self._style(), self.gallery_action.isChecked())
                if selected in result.dropped:
                    selected = None
                n = len(result.dropped)
                self.statusBar().showMessage(
                    f"Left out {n} faint object{'s' if n > 1 else ''} with no place in the "
                    "karyotype", 8000,
                )
            else:
                self.scene.relayout(result.turned)  # the orientation guess stood them p-arm up
            self.scene.select(selected)
            self.metaphase_view.refresh()
            self.inspector.show_chromosome(cell, selected)
            self._update_status()
            if result.sex_from_case:
                self.statusBar().showMessage(
                    f"{cell.name}: sex read as {cell.sex} with the case's other cells (in "
                    "doubt by its own chromosomes)", 8000,
                )  # fmt: skip
        if self.case_path is not None or self._dirty:
            self._schedule_autosave()
        if not result.sex_from_case:
            self._read_sex_with_case()

    def _read_sex_with_case(self) -> None:
        """After a cell's assignment: the case's cells not yet reviewed read their sex with
        the others (one person's cells; a cell in doubt by its own chromosomes follows the
        case). Only a cell whose sex turns is assigned again: milliseconds."""
        classifier = self.service.classifier
        if self.case is None or classifier is None or len(self.case.cells) < 2:
            return
        from karyo_gui.inference.classifier import assign_with_case  # loaded with the model

        for result in assign_with_case(classifier, self.case.cells):
            self._on_cell_classified(result.cell, result)

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
            found = [c for c in cell.chromosomes if Flag.CANDIDATE not in c.flags]
            flagged = sum(bool(c.flags) for c in found)
            faint = len(cell) - len(found)
            self.statusBar().showMessage(
                f"{len(found)} chromosomes found in {cell.name}"
                + (f", {flagged} to check" if flagged else "")
                + (f"; {faint} faint object{'s' if faint > 1 else ''} wait"
                   f"{'' if faint > 1 else 's'} for the karyotype" if faint else ""), 8000,
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
                f"running on: {classifier.device_name}",
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
        orientation = self.orientation_review_action.isChecked()
        flagged = {c.id for c in cell.chromosomes if needs_review(c, orientation)}
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
        if self.case is not None and self.case.signatures:
            self.show_error(f"Case {self.case.case_id} is signed; Case > Reopen the case to "
                            "change it")
            return False
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
        self._refresh_case()
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
            elif tool is MetaphaseTool.ADD and len(line) == 1:  # a double-click on it
                edit = edits.add_chromosome_at(cell, line[0], by)
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

    # ------------------------------------------------------------------ the case
    def composition(self) -> CaseComposition | None:
        return compose_case(self.case) if self.case is not None else None

    def _refresh_case(self) -> None:
        case = self.case
        composition = self.composition()
        self.case_panel.show_case(
            case, composition,
            tally(case, self.settings.policy(case.study)) if case is not None else None)
        cell = self.current_cell
        for role, action in self.role_actions.items():
            action.setEnabled(cell is not None)
            action.setChecked(cell is not None and role in cell.roles)

    def case_edited(self) -> None:
        """After a change of the case itself (details, override, signature)."""
        self._dirty = True
        self._refresh_case()
        self._update_title()
        self._schedule_autosave()

    def set_role(self, role: CellRole, on: bool | None = None) -> bool:
        """Count the cell shown as counted / analysed / karyogrammed (or not); analysing or
        karyogramming a cell counts it too."""
        cell, case = self.current_cell, self.case
        if cell is None or case is None:
            return False
        if case.signatures:
            self.show_error(f"Case {case.case_id} is signed; Case > Reopen the case to "
                            "change what was done with its cells")
            self._refresh_case()
            return False
        on = role not in cell.roles if on is None else on
        by = self.settings.reviewer
        cell.set_role(role, on, by)
        if on and role is not CellRole.COUNTED:
            cell.set_role(CellRole.COUNTED, True, by)
        self.cell_edited(cell, [])
        return True

    def mark_abnormality(self, kind: str | None = None) -> AbnormalityDialog | None:
        """Open the dialog that marks a structural abnormality on the selected chromosome
        (returned, already open; its OK applies it, undoably)."""
        cell, selected = self.current_cell, self.selected_id()
        if cell is None or selected is None:
            self.statusBar().showMessage("Select the abnormal chromosome first", 4000)
            return None
        if not self._editable(cell):
            return None
        dialog = AbnormalityDialog(cell, selected, self.case.band_level if self.case else None,
                                   self)
        if kind is not None:
            dialog.set_kind(kind)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._abnormality_chosen(cell, dialog))
        dialog.open()
        return dialog

    def _abnormality_chosen(self, cell: Cell, dialog: AbnormalityDialog) -> None:
        if dialog.result_text == "+mar":  # a marker is an unclassified chromosome
            for chromosome_id in dialog.result_ids:
                self.reassign(chromosome_id, ChromosomeType.UNCLASSIFIED)
            return
        for chromosome_id in dialog.result_ids:  # a chromosome carries one abnormality
            earlier = cell.abnormality_of(chromosome_id)
            if earlier is not None:
                self._stacks[cell].push(AbnormalityCommand(self, cell, earlier))
        self._stacks[cell].push(AbnormalityCommand(self, cell, None, dialog.result_text,
                                                   dialog.result_ids))

    def unmark_abnormality(self) -> bool:
        cell, selected = self.current_cell, self.selected_id()
        marked = cell.abnormality_of(selected) if cell and selected else None
        if marked is None:
            self.statusBar().showMessage("The selected chromosome has no marked abnormality",
                                         4000)
            return False
        if not self._editable(cell):
            return False
        self._stacks[cell].push(AbnormalityCommand(self, cell, marked))
        return True

    def edit_case_details(self) -> CaseDetailsDialog | None:
        case = self.case
        if case is None:
            return None
        if case.signatures:
            self.show_error(f"Case {case.case_id} is signed; Case > Reopen the case to "
                            "change its details")
            return None
        dialog = CaseDetailsDialog(case, self.composition(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def apply() -> None:
            by = self.settings.reviewer
            case.set_details(dialog.details(), by)
            case.set_study(*dialog.chosen_study(), by=by)
            self.case_edited()
            self.scene.set_ideograms(self.ideogram_level())  # drawn at the new band level

        dialog.accepted.connect(apply)
        dialog.open()
        return dialog

    def edit_policy(self) -> PolicyDialog:
        dialog = PolicyDialog({study: self.settings.policy(study) for study in Study}, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def apply() -> None:
            for study, policy in dialog.policies().items():
                self.settings.set_policy(study, policy)
            self._refresh_case()

        dialog.accepted.connect(apply)
        dialog.open()
        return dialog

    def override_karyotype(self, text: str | None = None, reason: str = "") -> bool:
        """Set the case karyotype by hand (asks when ``text`` is None); an empty text goes
        back to the composed one. Malformed ISCN is refused with the place of the error."""
        case = self.case
        if case is None:
            return False
        composed = self.composition().karyotype
        if text is None:
            current = case_karyotype(case)
            text, ok = QInputDialog.getText(
                self, "Case karyotype", f"Composed from the cells: {composed or '—'}\n"
                "Your karyotype for the report (ISCN; empty: the composed one):", text=current)
            if not ok:
                return False
        text = text.strip()
        try:
            if text:
                text = parse_iscn(text).text
            case.override_karyotype(text or None, composed, self.settings.reviewer, reason)
        except IscnError as error:
            self.show_error(f"Not a karyotype karyo can read: {error}")
            return False
        except PermissionError as error:
            self.show_error(str(error))
            return False
        self.case_edited()
        return True

    def sign_case(self, role: SignRole, name: str | None = None) -> bool:
        """Sign the case as analyst or checker (asks the name when not given); refused with
        the reason when the rules do not allow it (same person twice, checker first...)."""
        case = self.case
        if case is None:
            return False
        karyotype = case_karyotype(case)
        if not karyotype:
            self.show_error("There is no case karyotype to sign yet")
            return False
        if name is None:
            default = self.settings.reviewer if role is SignRole.ANALYST else ""
            counts = tally(case, self.settings.policy(case.study))
            unreviewed = sum(cell.status is CellStatus.UNREVIEWED for cell in case.cells
                             if cell.roles)
            warnings = ([] if counts.complete else [f"Policy not met: {counts.text()}."]) + (
                [f"{unreviewed} cell(s) with a role are not marked reviewed."]
                if unreviewed else [])
            questions = open_questions(case)
            if questions:
                warnings += ["Still to check in the cells with a role:"] + [
                    f"  {line}" for line in open_questions_text(questions)]
            name, ok = QInputDialog.getText(
                self, f"Sign as {role.value}",
                f"Case {case.case_id}: {karyotype}\n" + "".join(w + "\n" for w in warnings)
                + "Your name, as the report shows it:", text=default)
            if not ok:
                return False
        try:
            case.sign(role, name, karyotype)
        except SignOffRefused as error:
            self.show_error(f"Not signed: {error}")
            return False
        self.case_edited()
        self.statusBar().showMessage(f"Case {case.case_id} signed by {name} as {role.value}"
                                     + (": final" if case.is_final else ""), 6000)
        return True

    def reopen_case(self) -> bool:
        case = self.case
        if case is None or not case.signatures:
            return False
        case.reopen(self.settings.reviewer)
        self.case_edited()
        return True

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

    def display_options(self) -> DisplayOptions:
        """How the karyogram looks now (View menu and Display adjustments)."""
        settings = self.settings
        return DisplayOptions(
            brightness=settings.brightness, contrast=settings.contrast, gamma=settings.gamma,
            sharpen=settings.sharpen, straighten=self.straighten_action.isChecked(),
        )

    def _display_changed(self) -> None:
        """A View option changed: the karyogram is drawn again (labels, crops and ISCN stay)."""
        settings = self.settings
        settings.review_marks = self.marks_action.isChecked()
        settings.centromere_aligned = self.centromere_action.isChecked()
        settings.straightened = self.straighten_action.isChecked()
        self.scene.set_display(self.display_options(), marks=self.marks_action.isChecked(),
                               align_centromeres=self.centromere_action.isChecked())
        self.select(self.selected_id())

    def show_display_dialog(self) -> QDialog:
        """Brightness, contrast, gamma and sharpening of the karyogram, for the eye only."""
        dialog = DisplayDialog(self.display_options(), self)
        dialog.changed.connect(self._set_tone)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _set_tone(self, options: DisplayOptions) -> None:
        settings = self.settings
        settings.brightness, settings.contrast = options.brightness, options.contrast
        settings.gamma, settings.sharpen = options.gamma, options.sharpen
        self._display_changed()

    def ideogram_level(self) -> int | None:
        """Band level of the ideograms beside the pairs (the case's, else 400); None: off."""
        if not self.ideogram_action.isChecked():
            return None
        return (self.case.band_level if self.case and self.case.band_level else 400)

    def _toggle_ideograms(self) -> None:
        self.settings.ideograms_beside = self.ideogram_action.isChecked()
        self.scene.set_ideograms(self.ideogram_level())
        self.view.fit()

    def _toggle_orientation_review(self) -> None:
        self.settings.orientation_in_review = self.orientation_review_action.isChecked()
        self._update_status()

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
        decision = self._check_on_disk(path)
        if decision == SAVE_AS:
            return self.save_as()
        if decision == RELOAD:
            self.reload_from_disk()
            return False
        if decision == CANCEL:
            return False
        try:
            save_case(self.case, path)
        except (OSError, ValueError) as error:
            self.show_error(f"{display_path(path)}: could not save the case ({error})")
            return False
        self._autosave_timer.stop()
        if self._recovery is not None:
            discard_recovery(self._recovery)
            self._recovery = None  # the next edit is autosaved for the case file saved
        moved = self.case_path is None or not _same_file(path, self.case_path)
        self._opened = fingerprint(path)
        self.case_path = path
        self.origin = str(path.resolve())
        if moved or self._lock is None or not self._lock.held:
            release_lock(self._lock, self.session)
            self._take_lock(path, tell=moved)
        else:
            refresh_lock(self._lock)
        self._dirty = False
        for stack in self._stacks.values():
            stack.setClean()
        self.settings.add_recent(path)
        self._update_title()
        self.statusBar().showMessage(f"Saved {display_path(path)}", 5000)
        return True

    def _check_on_disk(self, path: Path) -> str:
        """Before Save writes the case file this window opened: is it still what was opened
        or last saved here? If another window or workstation saved it meanwhile, ask:
        Reload, Save as…, Overwrite or Cancel. OVERWRITE when nothing changed."""
        if self.case_path is None or self._opened is None or not _same_file(
            path, self.case_path
        ):
            return OVERWRITE
        reason = changed_on_disk(path, self._opened)
        if reason is None:
            return OVERWRITE
        name = display_path(path.name)
        text = (f"{name} {reason} (by another window or workstation?). Saving would replace "
                "those changes with this window's.\n\nReload: open the file as it is now "
                "(this window's edits stay in File > Recover unsaved edits). Save as…: keep "
                "both. Overwrite: replace it with this window's version.")
        choice = self._ask("changed on disk", text, [RELOAD, SAVE_AS, OVERWRITE, CANCEL],
                           default=CANCEL)
        if choice == CANCEL:
            self.last_error = f"{name} {reason}: not saved (File > Save case as… keeps both)"
            self.statusBar().showMessage(self.last_error, 20000)
        return choice

    def _ask(self, kind: str, text: str, choices: list[str], default: str) -> str:
        """One of ``choices``: from ``answer`` when set, else from a dialog (``default``
        when the window asks nothing, see ``ask_on_close``)."""
        if self.answer is not None:
            choice = self.answer(kind, text, list(choices))
            return choice if choice in choices else default
        if not self.ask_on_close:
            return default
        box = QMessageBox(QMessageBox.Icon.Warning, "karyo", text,
                          QMessageBox.StandardButton.NoButton, self)
        buttons = {}
        for choice in choices:
            role = (QMessageBox.ButtonRole.RejectRole if choice == CANCEL
                    else QMessageBox.ButtonRole.ActionRole)
            button = box.addButton(choice, role)
            buttons[button] = choice
            if choice == default:
                box.setDefaultButton(button)
            if choice == CANCEL:
                box.setEscapeButton(button)
        box.exec()
        return buttons.get(box.clickedButton(), default)

    def reload_from_disk(self) -> bool:
        """Open the case file again as it is on disk now; this window's unsaved edits are
        autosaved first and set aside, so that File > Recover unsaved edits has them."""
        path = self.case_path
        if path is None:
            return False
        self.autosave()
        if self._recovery is not None:
            set_aside_recovery(self._recovery, self.session)
            self._recovery = None
        job = self.start_open(path, settle=False)
        return job is not None and self.wait_for(job)

    def _schedule_autosave(self) -> None:
        self._autosave_timer.start()

    def autosave(self) -> Path | None:
        """Write the edits to the case's recovery file (the case file is written by Save)."""
        self._autosave_timer.stop()
        if self.case is None or not self._dirty:
            return None
        try:
            if self._recovery is None or not owns_recovery(self._recovery, self.session):
                # this window's own: another window on the case has its own
                self._recovery = claim_recovery(self.case.case_id, self.origin, self.session)
            recovery = self._recovery
            recovery.parent.mkdir(parents=True, exist_ok=True)
            write_origin(recovery, self.origin)  # first: a recovery file always has its origin
            save_case(self.case, recovery)
        except (OSError, ValueError) as error:
            self.statusBar().showMessage(f"Autosave failed: {error}", 10000)
            return None
        refresh_lock(self._lock)
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

    def _choose_case_report(self) -> None:
        if self.case is None:
            return
        folder = Path(self.origin).parent if self.origin else Path.home()
        path, _ = QFileDialog.getSaveFileName(self, "Export case report",
                                              str(folder / f"{self.case.case_id} report.pdf"),
                                              "PDF (*.pdf)")
        if path:
            self.export_case_report(Path(path))

    def export_case_report(self, path: Path) -> Path | None:
        """The case report PDF (summary page, then the karyogrammed cells' karyograms)."""
        if self.case is None:
            return None
        classifier = self.service.classifier
        info = CaseReportInfo(self.settings.policy(self.case.study),
                              classifier.description if classifier is not None else None)
        return self._export(path, ".pdf",
                            lambda p: export_case_report_pdf(self.case, p, info), need_cell=False)

    def _export(self, path: Path, suffix: str, write, need_cell: bool = True) -> Path | None:
        if need_cell and self.current_cell is None:
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
                          self.karyotype_label, self.mode_label, self.stain_label):
                label.setText("")
            self.view.editable = False
            return
        self.count_label.setText(count_text(cell))
        doubtful = cell.is_classified and sex_uncertain(cell)
        self.sex_label.setText(
            ("sex uncertain (confirm the X/Y calls)" if doubtful else f"sex {cell.sex or '?'}")
            if cell.is_classified else ""
        )
        self.sex_label.setStyleSheet("color: #b45309; font-weight: bold;" if doubtful else "")
        self.sex_label.setToolTip(
            f"karyo reads {cell.sex or '?'}, but an X or Y call is below the confidence a sex "
            "call needs: check the chromosomes flagged 'sex uncertain' (N goes there) and "
            "confirm or move them" if doubtful else ""
        )
        classifier = self.service.classifier
        warning = classifier.stain_warning(cell) if classifier is not None else None
        self.stain_label.setText("not G-banded: model not trained for it" if warning else "")
        self.stain_label.setToolTip(warning or "")
        flagged = sum(needs_review(c) for c in cell.chromosomes)
        turned = sum(orientation_unsure(c) for c in cell.chromosomes)
        self.flag_label.setText((f"{flagged} flagged" if flagged else "nothing flagged")
                                + (f" · {turned} orientation unsure" if turned else ""))
        self.flag_label.setToolTip(
            "Flagged: the type may be wrong, or the picture or finder needs a look (N goes "
            "there). Orientation unsure: the type is fine, it may stand upside down (grey "
            "arrow; N stops there only with Edit > N stops at orientation doubts too)")
        self.karyotype_label.setText(self._karyotype_text(cell))
        given_only = self._labels_given_only(cell)
        # the folder's own labels are not a result: grey and plain until the model has run
        self.karyotype_label.setStyleSheet("font-weight: normal; color: #777;" if given_only
                                           else "")  # fmt: skip
        self.karyotype_label.setToolTip(
            "given by the folder's labels: the model has not classified this cell yet"
            if given_only else "ISCN karyotype of the cell as shown")
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
    def _labels_given_only(cell: Cell) -> bool:
        """Labelled by its folder, not yet by the model or a reviewer."""
        return cell.is_classified and not any(
            c.predicted is not None or c.assigned is not None or c.manual is not None
            for c in cell.chromosomes)

    @staticmethod
    def _karyotype_text(cell: Cell) -> str:
        return cell.karyotype if cell.is_classified else "not classified"

    @classmethod
    def _cell_entry(cls, cell: Cell) -> str:
        warning = "\n⚠ sign-off modified outside karyo" if cell.sign_off_problem else ""
        # a break may fall after each comma: a long ISCN wraps instead of being clipped
        karyotype = cls._karyotype_text(cell).replace(",", ",\u200b")
        given = "given " if cls._labels_given_only(cell) else ""
        roles = " ".join(role.letter for role in CellRole if role in cell.roles)
        return (f"{cell.name}{'  [' + roles + ']' if roles else ''}\n{given}{karyotype} · "
                f"{STATUS_TEXT[cell.status]}{warning}")

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
        elsewhere = " (also open elsewhere)" if self.shared_with is not None else ""
        self.setWindowTitle(f"{what}[*]{elsewhere} — karyo" if what else "karyo")
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
        else:  # first start: the Case panel gets room for its karyotype and tally
            QTimer.singleShot(0, lambda: self.resizeDocks(
                [self.cells_dock, self.case_dock],
                [self.height() * 2 // 5, self.height() * 3 // 5], Qt.Orientation.Vertical))

    def closeEvent(self, event) -> None:
        self.cancel_open()  # a read under way is dropped; the case open stays to settle
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
        self._leave_case()  # the lock goes; unsaved edits become a recovery to offer
        end_session(self.session)
        super().closeEvent(event)


def _same_file(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)
