"""The main window: the cells of a case on the left, the karyogram of the current cell."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
)

from karyo_gui import __version__
from karyo_gui.core.case import Case, Cell
from karyo_gui.core.case_file import SUFFIX, save_case
from karyo_gui.core.loaders import display_path
from karyo_gui.core.opening import OpenError, example_case, open_case
from karyo_gui.core.synthetic import EXAMPLE_KARYOTYPES
from karyo_gui.qt.karyogram_view import KaryogramScene, KaryogramView

CASE_FILTER = f"karyo case (*{SUFFIX});;All files (*)"


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.case: Case | None = None
        self.case_path: Path | None = None
        self.current_cell: Cell | None = None
        self.last_error: str | None = None

        self.scene = KaryogramScene(self)
        self.view = KaryogramView(self.scene, self)
        self.setCentralWidget(self.view)

        self.cell_list = QListWidget()
        self.cell_list.currentRowChanged.connect(self._on_cell_chosen)
        cells_dock = QDockWidget("Cells", self)
        cells_dock.setObjectName("cells")
        cells_dock.setWidget(self.cell_list)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, cells_dock)

        self.problem_list = QListWidget()
        self.problems_dock = QDockWidget("Load problems", self)
        self.problems_dock.setObjectName("problems")
        self.problems_dock.setWidget(self.problem_list)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.problems_dock)
        self.problems_dock.hide()

        self.count_label = QLabel()
        self.karyotype_label = QLabel()
        self.karyotype_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.karyotype_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.karyotype_label.setFont(font)
        self.karyotype_label.setToolTip("ISCN karyotype of the cell as shown")
        self.statusBar().addPermanentWidget(self.count_label)
        self.statusBar().addPermanentWidget(self.karyotype_label)

        self._build_menus()
        self.resize(1280, 820)
        self._update_title()

    # ----------------------------------------------------------------- menus
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        keys = QKeySequence.StandardKey
        self._action(file_menu, "&Open cell folder...", self._choose_folder, keys.Open)
        self._action(file_menu, "Open &case file...", self._choose_case_file, "Ctrl+Shift+O")
        examples = file_menu.addMenu("Open &example cell")
        for karyotype in EXAMPLE_KARYOTYPES:
            self._action(examples, karyotype, lambda k=karyotype: self.open_example(k))
        file_menu.addSeparator()
        self.save_action = self._action(file_menu, "&Save case", self.save, keys.Save)
        self._action(file_menu, "Save case &as...", self.save_as, keys.SaveAs)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, keys.Quit)

        view_menu = self.menuBar().addMenu("&View")
        self._action(view_menu, "&Fit karyogram to window", self.view.fit, "Ctrl+0")
        for dock in self.findChildren(QDockWidget):
            view_menu.addAction(dock.toggleViewAction())

        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&About karyo", self._about)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    # ---------------------------------------------------------------- opening
    def open_path(self, path: str | os.PathLike) -> bool:
        """Open a cell folder, a folder of cells or a case file; False (and a message) if not."""
        try:
            case = open_case(path)
        except OpenError as error:
            self.show_error(str(error))
            return False
        self.set_case(case, Path(path) if Path(path).is_file() else None)
        return True

    def open_example(self, karyotype: str = EXAMPLE_KARYOTYPES[0]) -> None:
        self.set_case(example_case(karyotype), None)

    def set_case(self, case: Case, case_path: Path | None) -> None:
        self.case = case
        self.case_path = case_path
        self.cell_list.blockSignals(True)
        self.cell_list.clear()
        for cell in case.cells:
            self.cell_list.addItem(QListWidgetItem(self._cell_entry(cell)))
        self.cell_list.blockSignals(False)
        self.cell_list.setCurrentRow(0)
        self._on_cell_chosen(0)
        self._update_title()

    def _on_cell_chosen(self, row: int) -> None:
        if self.case is None or not 0 <= row < len(self.case.cells):
            self.show_cell(None)
            return
        self.show_cell(self.case.cells[row])

    def show_cell(self, cell: Cell | None) -> None:
        self.current_cell = cell
        self.scene.show_cell(cell)
        self.view.fit()
        if cell is None:
            self.count_label.setText("")
            self.karyotype_label.setText("")
            self.problems_dock.hide()
            return
        self.count_label.setText(f"{len(cell)} chromosomes")
        self.karyotype_label.setText(self._karyotype_text(cell))
        problems = self.case.problems + cell.problems if self.case else cell.problems
        self.problem_list.clear()
        self.problem_list.addItems(problems)
        self.problems_dock.setVisible(bool(problems))
        if problems:
            self.statusBar().showMessage(
                f"{len(problems)} file(s) or folder(s) could not be used: see Load problems",
                10000,
            )

    @staticmethod
    def _karyotype_text(cell: Cell) -> str:
        return cell.karyotype if cell.is_classified else "not classified"

    @classmethod
    def _cell_entry(cls, cell: Cell) -> str:
        status = cell.status.value.replace("_", " ")
        return f"{cell.name}\n{cls._karyotype_text(cell)} · {status}"

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open cell folder")
        if folder:
            self.open_path(folder)

    def _choose_case_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open case file", "", CASE_FILTER)
        if path:
            self.open_path(path)

    # ----------------------------------------------------------------- saving
    def save(self) -> bool:
        if self.case_path is None:
            return self.save_as()
        return self.save_to(self.case_path)

    def save_as(self) -> bool:
        if self.case is None:
            return False
        suggestion = f"{self.case.case_id}{SUFFIX}"
        path, _ = QFileDialog.getSaveFileName(self, "Save case", suggestion, CASE_FILTER)
        return bool(path) and self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        if self.case is None:
            return False
        if not path.name.endswith(SUFFIX):
            path = path.with_name(path.name + SUFFIX)
        try:
            save_case(self.case, path)
        except (OSError, ValueError) as error:
            self.show_error(f"{display_path(path)}: could not save the case ({error})")
            return False
        self.case_path = path
        self._update_title()
        self.statusBar().showMessage(f"Saved {display_path(path)}", 5000)
        return True

    # ------------------------------------------------------------------ misc
    def show_error(self, message: str) -> None:
        """Tell the user, without blocking the window (the box is window-modal)."""
        self.last_error = message
        self.statusBar().showMessage(message, 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, "karyo", message, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _update_title(self) -> None:
        what = self.case_path.name if self.case_path else (self.case.case_id if self.case else "")
        self.setWindowTitle(f"{what} — karyo" if what else "karyo")

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About karyo",
            f"karyo {__version__}\nA karyotyping workstation: classify, review and sign off "
            "chromosome karyograms.",
        )
