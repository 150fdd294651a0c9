"""Retraining from the app: fine-tune the current model on the lab's corrected cells.

The run is the bundled trainer in a process of its own (``python -m trainer train --events
jsonl``), never the GUI process; its JSON-lines events drive a progress bar with ETA and
live curves (contrastive and classification loss per step, validation accuracy per epoch).
When it ends, the new model is compared with the current one on the lab's held-out cells
and registered; the user switches to it or keeps the old one. A failed, cancelled or killed
run leaves the current model as it was and shows the tail of the trainer's log.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
import pyqtgraph as pg
from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from karyo_gui.core.case import CellStatus
from karyo_gui.core.case_file import SUFFIX
from karyo_gui.core.loaders import display_path
from trainer.data import lab_of_source
from trainer.finetune import LAB_WEIGHT, curve_note, estimate_seconds, recipe_for

if TYPE_CHECKING:  # the registry reads model headers with torch: imported when used
    from karyo_gui.inference.registry import ModelRegistry, RegisteredModel

LOG_LINES = 40  # of the trainer's output kept for a failure report
COMPARED = (("crop_accuracy", "crop accuracy"), ("assigned_accuracy", "assigned accuracy"),
            ("iscn_exact", "ISCN exact"))


def runs_folder() -> Path:
    return Path(platformdirs.user_data_dir("karyo", appauthor=False)) / "runs"


def _reviewed_cells(path: str) -> int:
    """How many reviewed or signed-off cells a case file holds (read as JSON only: the
    crops are not loaded here); 0 for anything that is not a readable case file."""
    if not path.endswith(SUFFIX) or not os.path.isfile(path):
        return 0
    try:
        with open(path, encoding="utf-8") as handle:
            cells = json.load(handle)["case"]["cells"]
        reviewed = {CellStatus.REVIEWED.value, CellStatus.SIGNED_OFF.value}
        return sum(1 for cell in cells if cell.get("status") in reviewed)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return 0


def reviewed_case_files(candidates: list[str]) -> list[str]:
    """Those case files that hold at least one reviewed or signed-off cell."""
    return [path for path in candidates if _reviewed_cells(path)]


def reviewed_cell_count(paths: list[str]) -> int:
    return sum(_reviewed_cells(path) for path in paths)


@dataclass
class RetrainPlan:
    """Everything one fine-tuning run needs; ``command()`` is the trainer's command line.

    ``for_cells`` fills the run's length and learning rate from the number of reviewed
    cells (``trainer.finetune.recipe_for``, chosen on the new-lab curve); the lab's crops
    are drawn as often as the replay dataset's (``lab_weight``), however few they are.
    """

    parent: Path  # the model the run starts from (the one in use)
    case_files: list[str]
    name: str
    base_data: str | None = None  # a labelled dataset mixed in (replay)
    base_cells: str | None = None  # its cell list (default: its train split when present)
    epochs: int = 5
    steps_per_epoch: int = 0  # 0: one pass over the training crops
    device: str = "auto"
    val_fraction: float = 0.25  # of the lab's cells held out to compare old and new
    lr: float = 2e-4  # gentler than training from scratch: learn the lab, keep the rest
    lab_weight: float = LAB_WEIGHT  # the lab's share of the draws against the replay's 1
    output: Path = field(default_factory=lambda: runs_folder() / "run")

    def for_cells(self, n_cells: int) -> RetrainPlan:
        """This plan with the recipe for a lab of ``n_cells`` reviewed cells."""
        recipe = recipe_for(n_cells)
        return replace(self, epochs=recipe.epochs, steps_per_epoch=recipe.steps_per_epoch,
                       lr=recipe.lr, lab_weight=recipe.lab_weight)

    def command(self) -> list[str]:
        args = [
            sys.executable, "-m", "trainer", "train", "--events", "jsonl",
            "--init-checkpoint", str(self.parent), "--case-files", *self.case_files,
            "--val-fraction", str(self.val_fraction), "--epochs", str(self.epochs),
            "--lr", str(self.lr),
            "--device", self.device, "--output", str(self.output), "--name", self.name,
        ]  # fmt: skip
        if self.steps_per_epoch:
            args += ["--steps-per-epoch", str(self.steps_per_epoch)]
        if self.base_data:
            args += ["--data", self.base_data]
            cells = self.base_cells or _train_split(self.base_data)
            if cells:
                args += ["--train-cells", cells]
            base = lab_of_source(Path(self.base_data).resolve().name)
            args += ["--mix", f"{{case: {self.lab_weight:g}, {base!r}: 1}}"]
        return args

    def estimate_seconds(self, n_cells: int, n_base_cells: int, threads: int) -> float | None:
        """Rough wall time (None for a run of one pass per epoch: its length is unknown)."""
        if not self.steps_per_epoch:
            return None
        device = self.device
        if device == "auto":
            device = "cuda" if _cuda_present() else "cpu"
        return estimate_seconds(self.steps_per_epoch * self.epochs, n_cells + n_base_cells,
                                device, threads)


def _cuda_present() -> bool:
    """A CUDA device is there (asked of torch only when torch is loaded already)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())


def _train_split(root: str) -> str | None:
    split = Path(root) / "splits" / "train.txt"
    return str(split) if split.is_file() else None


def _cell_count(root: str | None, cells: str | None) -> int:
    """Cells of a base dataset: its split list's lines, else its cell folders."""
    if not root:
        return 0
    listing = cells or _train_split(root)
    try:
        if listing:
            return sum(1 for line in Path(listing).read_text(encoding="utf-8").splitlines()
                       if line.strip())
        return sum(1 for entry in os.scandir(Path(root) / "cells") if entry.is_dir())
    except (OSError, UnicodeDecodeError):
        return 0


class TrainingRun(QObject):
    """The trainer as a child process, read event by event."""

    event = Signal(dict)
    finished = Signal(bool, str)  # succeeded, message (the log's tail when it failed)

    def __init__(self, plan: RetrainPlan, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.plan = plan
        self.events: list[dict] = []
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.cancelled = False
        self._buffer = b""
        self.process = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")
        self.process.setProcessEnvironment(environment)
        self.process.readyReadStandardOutput.connect(self._read_output)
        self.process.readyReadStandardError.connect(self._read_errors)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)
        self._kill_timer = QTimer(self, singleShot=True, interval=15000)
        self._kill_timer.timeout.connect(self.process.kill)

    def start(self) -> None:
        command = self.plan.command()
        self.plan.output.parent.mkdir(parents=True, exist_ok=True)
        self.process.start(command[0], command[1:])

    def running(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    def cancel(self) -> None:
        """Ask the trainer to stop between two steps (SIGTERM); kill it if it does not."""
        if self.running():
            self.cancelled = True
            self.process.terminate()
            self._kill_timer.start()

    def done_event(self) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("event") == "done"), None)

    def _read_output(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and "event" in record:
                self.events.append(record)
                self.event.emit(record)
            else:
                self.log.append(line)

    def _read_errors(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
        self.log.extend(line for line in text.splitlines() if line.strip())

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._read_output()
        self._read_errors()
        done = self.done_event()
        if status == QProcess.ExitStatus.NormalExit and code == 0 and done is not None:
            self.finished.emit(True, "")
            return
        if self.cancelled:
            why = "cancelled"
        elif status == QProcess.ExitStatus.CrashExit:
            why = "the training process was killed or crashed"
        else:
            why = f"the training process stopped with exit status {code}"
        tail = "\n".join(self.log)
        self.finished.emit(False, f"{why}; the current model is unchanged.\n\n{tail}".strip())

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.finished.emit(False, f"the trainer could not be started: "
                                      f"{self.process.errorString()}")


class RetrainDialog(QDialog):
    """Model > Retrain on corrected cases: choose, run, watch, compare, switch or keep."""

    use_model = Signal(str)  # path of the model the user switched to

    def __init__(
        self,
        parent_model: Path,
        parent_name: str,
        case_files: list[str],
        base_data: str | None = None,
        registry: ModelRegistry | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Retrain on corrected cases")
        self.parent_model = Path(parent_model)
        if registry is None:
            from karyo_gui.inference.registry import ModelRegistry

            registry = ModelRegistry()
        self.registry = registry
        self.run: TrainingRun | None = None
        self.new_model: RegisteredModel | None = None
        self.comparison: dict | None = None
        self.failure: str | None = None

        self.case_list = QListWidget()
        for path in case_files:
            self._add_case_file(path)
        add_cases = QPushButton("Add case files...")
        add_cases.clicked.connect(self._choose_case_files)
        self.replay_check = QCheckBox("Mix in a base dataset (replay: the model does not forget)")
        self.base_edit = QLineEdit(base_data or "")
        self.base_edit.setPlaceholderText("labelled dataset folder, e.g. gband612")
        self.replay_check.setChecked(bool(base_data))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._choose_base)
        self.epochs_spin = QSpinBox(minimum=1, maximum=500, value=5)
        self.steps_spin = QSpinBox(minimum=0, maximum=100000, value=0, specialValueText="auto")
        self.recipe_label = QLabel()
        self.recipe_label.setWordWrap(True)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        stamp = datetime.now().strftime("%Y%m%d-%H%M")
        self.name_edit = QLineEdit(f"{parent_name}-lab-{stamp}")

        form = QFormLayout()
        base_row = QHBoxLayout()
        base_row.addWidget(self.base_edit, 1)
        base_row.addWidget(browse)
        form.addRow("Backbone", QLabel(f"kept from the current model: {parent_name}"))
        form.addRow("", self.replay_check)
        form.addRow("Base dataset", base_row)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Steps per epoch", self.steps_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Run", self.recipe_label)
        form.addRow("New model name", self.name_edit)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = QLabel("Choose the case files, then Start.")
        self.status_label.setWordWrap(True)
        pg.setConfigOptions(antialias=True)
        self.loss_plot = pg.PlotWidget(background="w", title="loss per step")
        self.loss_plot.addLegend()
        self.contrastive_curve = self.loss_plot.plot(pen=pg.mkPen("#1f77b4", width=2),
                                                     name="contrastive")
        self.classification_curve = self.loss_plot.plot(pen=pg.mkPen("#d62728", width=2),
                                                        name="classification")
        self.accuracy_plot = pg.PlotWidget(background="w", title="validation accuracy per epoch")
        self.accuracy_plot.setYRange(0, 1)
        self.accuracy_curve = self.accuracy_plot.plot(
            pen=pg.mkPen("#2ca02c", width=2), symbol="o", symbolBrush="#2ca02c"
        )
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.setMenuEnabled(False)
            plot.setMinimumHeight(160)
        self.comparison_table = QTableWidget(len(COMPARED), 2)
        self.comparison_table.setHorizontalHeaderLabels(["current model", "new model"])
        self.comparison_table.setVerticalHeaderLabels([label for _, label in COMPARED])
        self.comparison_table.hide()
        self.comparison_note = QLabel()
        self.comparison_note.setWordWrap(True)
        self.comparison_note.hide()
        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.hide()

        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel run")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.use_button = QPushButton("Use the new model")
        self.use_button.clicked.connect(self._use_new)
        self.use_button.hide()
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Case files to learn from (final labels: manual where given, "
                                "else the assigned type of signed-off cells):"))
        layout.addWidget(self.case_list)
        layout.addWidget(add_cases, alignment=Qt.AlignmentFlag.AlignLeft)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.accuracy_plot)
        layout.addLayout(plots)
        layout.addWidget(self.comparison_table)
        layout.addWidget(self.comparison_note)
        layout.addWidget(self.log_view)
        layout.addLayout(buttons)
        self.resize(900, 760)
        self._steps: list[float] = []
        self._contrastive: list[float] = []
        self._classification: list[float] = []
        self._epochs: list[float] = []
        self._accuracy: list[float] = []
        self._recipe_cells = -1
        self.case_list.itemChanged.connect(self._fill_recipe)
        for widget in (self.epochs_spin, self.steps_spin):
            widget.valueChanged.connect(self._show_estimate)
        self.device_combo.currentTextChanged.connect(self._show_estimate)
        self.replay_check.toggled.connect(self._show_estimate)
        self.base_edit.textChanged.connect(self._show_estimate)
        self._fill_recipe()

    # ----------------------------------------------------------------- choosing
    def _add_case_file(self, path: str, checked: bool = True) -> None:
        item = QListWidgetItem(display_path(path))
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.case_list.addItem(item)

    def _fill_recipe(self, *_: object) -> None:
        """Length and learning rate from the number of reviewed cells chosen (the recipe of
        ``trainer.finetune``); the user may still change epochs and steps."""
        cells = reviewed_cell_count(self.chosen_case_files())
        if cells != self._recipe_cells:
            self._recipe_cells = cells
            recipe = recipe_for(cells)
            self.epochs_spin.setValue(recipe.epochs)
            self.steps_spin.setValue(recipe.steps_per_epoch)
        self._show_estimate()

    def _show_estimate(self, *_: object) -> None:
        plan = self.plan()
        if isinstance(plan, str):
            self.recipe_label.setText(plan)
            return
        cells = max(self._recipe_cells, 0)
        base = _cell_count(plan.base_data, plan.base_cells)
        seconds = plan.estimate_seconds(cells, base, os.cpu_count() or 1)
        share = (f"your crops in {plan.lab_weight / (plan.lab_weight + 1):.0%} of the draws, "
                 f"replay in the rest" if plan.base_data else "your crops only (no replay)")
        timing = (f"about {_duration(seconds)} on this computer"
                  if seconds is not None else "one pass over all crops per epoch")
        self.recipe_label.setText(
            f"{cells} reviewed cells: {plan.epochs * plan.steps_per_epoch or 'all'} steps at "
            f"learning rate {plan.lr:g}, {share}; {timing}. {curve_note(cells)}"
        )

    def _choose_case_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Case files", "",
                                                f"karyo case (*{SUFFIX})")
        for path in paths:
            self._add_case_file(path)
        self._fill_recipe()

    def _choose_base(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Base dataset folder")
        if folder:
            self.base_edit.setText(folder)
            self.replay_check.setChecked(True)
            self._show_estimate()

    def chosen_case_files(self) -> list[str]:
        return [
            self.case_list.item(k).data(Qt.ItemDataRole.UserRole)
            for k in range(self.case_list.count())
            if self.case_list.item(k).checkState() == Qt.CheckState.Checked
        ]

    def plan(self) -> RetrainPlan | str:
        """The run the form describes, or what is wrong with it."""
        cases = self.chosen_case_files()
        if not cases:
            return "Choose at least one saved case file with corrected cells."
        missing = [p for p in cases if not os.path.isfile(p)]
        if missing:
            return f"{display_path(missing[0])}: case file not found"
        base = self.base_edit.text().strip() if self.replay_check.isChecked() else ""
        if base and not os.path.isdir(base):
            return f"{display_path(base)}: base dataset folder not found"
        name = self.name_edit.text().strip() or "retrained"
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        output = runs_folder() / f"{safe}-{datetime.now():%Y%m%d-%H%M%S}"
        recipe = RetrainPlan(
            parent=self.parent_model, case_files=cases, name=name, base_data=base or None,
            device=self.device_combo.currentText(), output=output,
        ).for_cells(max(self._recipe_cells, 0))  # fmt: skip
        # the form's epochs and steps (filled from the recipe) are the user's last word
        return replace(recipe, epochs=self.epochs_spin.value(),
                       steps_per_epoch=self.steps_spin.value())

    # ------------------------------------------------------------------ running
    def start(self) -> bool:
        plan = self.plan()
        if isinstance(plan, str):
            self.status_label.setText(plan)
            return False
        self.failure, self.comparison, self.new_model = None, None, None
        for values in (self._steps, self._contrastive, self._classification, self._epochs,
                       self._accuracy):
            values.clear()
        self._redraw()
        self.comparison_table.hide()
        self.comparison_note.hide()
        self.log_view.hide()
        self.use_button.hide()
        self.run = TrainingRun(plan, self)
        self.run.event.connect(self._on_event)
        self.run.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.status_label.setText("Starting the trainer (loading the cells)...")
        self.run.start()
        return True

    def cancel(self) -> None:
        if self.run is not None and self.run.running():
            self.status_label.setText("Stopping after the current step...")
            self.run.cancel()

    def running(self) -> bool:
        return self.run is not None and self.run.running()

    def _on_event(self, record: dict) -> None:
        kind = record.get("event")
        if kind == "start":
            self.status_label.setText(f"Training {record.get('train', '')} on "
                                      f"{record.get('device', '')}; held out: {record.get('val')}")
        elif kind == "step":
            total = int(record.get("total_steps") or 1)
            step = int(record.get("step") or 0)
            self.progress.setRange(0, total)
            self.progress.setValue(step)
            eta = record.get("eta_seconds")
            eta_text = f", about {_duration(eta)} left" if isinstance(eta, (int, float)) else ""
            self.status_label.setText(f"Step {step} of {total} (epoch {record.get('epoch')})"
                                      f"{eta_text}")
            self._steps.append(step)
            self._contrastive.append(record.get("loss_contrastive") or 0.0)
            self._classification.append(record.get("loss_classification") or 0.0)
            self._redraw()
        elif kind == "epoch" and record.get("val_crop_accuracy") is not None:
            self._epochs.append(record["epoch"])
            self._accuracy.append(record["val_crop_accuracy"])
            self._redraw()

    def _redraw(self) -> None:
        self.contrastive_curve.setData(self._steps, self._contrastive)
        self.classification_curve.setData(self._steps, self._classification)
        self.accuracy_curve.setData(self._epochs, self._accuracy)

    def _on_finished(self, succeeded: bool, message: str) -> None:
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if succeeded else 0)
        if not succeeded:
            self._fail(message)
            return
        from karyo_gui.inference.registry import RegistryError

        done = self.run.done_event()
        try:
            self.new_model = self.registry.add(done["best"], self.run.plan.name)
        except (RegistryError, KeyError) as error:
            self._fail(f"the new model could not be registered: {error}")
            return
        self.comparison = done.get("comparison")
        self._show_comparison()
        self.use_button.show()
        self.status_label.setText(
            f"Done: {self.new_model.describe()}. It is in the model history; use it now, "
            "or keep the current model."
        )

    def _fail(self, message: str) -> None:
        self.failure = message
        first, _, tail = message.partition("\n\n")
        self.status_label.setText(f"Retraining failed: {first}")
        self.log_view.setPlainText(tail or first)
        self.log_view.show()

    def _show_comparison(self) -> None:
        if not self.comparison:
            self.comparison_table.hide()
            return
        for row, (key, _) in enumerate(COMPARED):
            for column, role in enumerate(("parent", "new")):
                value = self.comparison.get(role, {}).get(key)
                text = "–" if value is None else f"{value:.3f}"
                self.comparison_table.setItem(row, column, QTableWidgetItem(text))
        cells = self.comparison.get("n_cells", 0)
        table = self.comparison_table
        table.setToolTip(f"on {cells} held-out cells of your cases")
        table.setHorizontalHeaderLabels([f"current model ({cells} held-out cells)", "new model"])
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        table.resizeRowsToContents()
        height = table.horizontalHeader().height() + 2 * table.frameWidth()
        table.setFixedHeight(height + sum(table.rowHeight(r) for r in range(table.rowCount())))
        table.show()
        self.comparison_note.setText(comparison_text(self.comparison))
        self.comparison_note.show()

    def _use_new(self) -> None:
        if self.new_model is not None:
            self.use_model.emit(str(self.new_model.path))
            self.use_button.setEnabled(False)
            self.status_label.setText(f"Now using {self.new_model.describe()}")

    def closeEvent(self, event) -> None:
        if self.running():
            answer = QMessageBox.question(
                self, "Retraining", "A retraining is running. Stop it and close?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.run.cancel()
            self.run.process.waitForFinished(20000)
        super().closeEvent(event)


TRUSTED_CELLS = 5  # fewer held-out cells than this: the comparison is a hint, not a result


def comparison_text(comparison: dict) -> str:
    """What the comparison rests on and how uncertain it is, in words."""
    cells, crops = comparison.get("n_cells", 0), comparison.get("n_crops", 0)
    gain = comparison.get("crop_accuracy_gain") or {}
    basis = f"on {cells} held-out cell{'s' if cells != 1 else ''} ({crops} crops) of your cases"
    if "difference" not in gain:
        return f"Measured {basis}."
    text = f"New minus current crop accuracy: {100 * gain['difference']:+.1f} points {basis}"
    interval = gain.get("ci95")
    if interval:
        low, high = (100 * value for value in interval)
        text += f"; 95 % interval {low:+.1f} to {high:+.1f} points (resampling the cells)"
        if low <= 0 <= high:
            text += ", so it may be no better"
    text += "."
    if cells < TRUSTED_CELLS:
        text += (f" Fewer than {TRUSTED_CELLS} held-out cells: treat this as a hint, not a "
                 "measurement; review more cells, or try the new model on a few new cells.")
    return text


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class ModelHistoryDialog(QDialog):
    """Model > Model history: every registered model with its lineage; switch or roll back."""

    use_model = Signal(str)

    def __init__(self, registry: ModelRegistry, current_id: str | None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model history")
        self.registry = registry
        self.models = registry.models()
        self.list = QListWidget()
        for model in self.models:
            lineage = " ← ".join(m.name for m in registry.lineage(model)[1:])
            text = model.describe() + (f"\n    lineage: {lineage}" if lineage else "")
            if model.model_id == current_id:
                text = "● " + text + "  (in use)"
            item = QListWidgetItem(text)
            item.setToolTip(_metrics_text(model))
            self.list.addItem(item)
        use = QPushButton("Use this model")
        use.clicked.connect(self._use)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(use)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Models on this computer, oldest first. The shipped model is "
                                "never changed; any model can be taken back into use."))
        layout.addWidget(self.list)
        for problem in registry.problems:
            layout.addWidget(QLabel(problem))
        layout.addLayout(buttons)
        self.resize(720, 420)

    def choose(self, model: RegisteredModel) -> None:
        self.list.setCurrentRow(self.models.index(model))
        self._use()

    def _use(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.models):
            self.use_model.emit(str(self.models[row].path))
            self.close()


def _metrics_text(model: RegisteredModel) -> str:
    lines = []
    for split, metrics in (model.header.metrics or {}).items():
        if isinstance(metrics, dict):
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
            if shown:
                lines.append(f"{split}: {shown}")
    return "\n".join(lines) or "no metrics stored"
