"""The model, off the GUI thread: loading, classifying cells and Grad-CAM in one worker thread.

The window asks through :class:`ModelService` and gets Qt signals back; it never waits.
All torch work happens in the worker thread, one request at a time, so classifying and
Grad-CAM never run on the model together. Cells are sent one at a time (the rest wait in
the service's queue), so an attention map never waits behind a whole case; of attention
requests only the newest is computed. The worker computes probabilities only: the
karyotype-aware assignment (milliseconds) is applied on the GUI thread, around the manual
labels the cell has when the result arrives.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections import deque
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from karyo_gui.core.case import Cell, CellStatus
from karyo_gui.core.labels import ChromosomeType

if TYPE_CHECKING:  # torch is imported in the worker thread, after the window is up
    from karyo_gui.inference.classifier import Classifier


def _heap_trimmer():
    """glibc's ``malloc_trim``; None where there is none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _heap_trimmer()


def _give_memory_back() -> None:
    """Return the heap a classification freed to the system. glibc keeps it for reuse, so
    over a batch review the resident memory climbs by some 100 MB in steps of tens of MB;
    trimmed (a few ms, in the worker), it stays where the model left it."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _Worker(QObject):
    loaded = Signal(object, float)  # Classifier, seconds
    load_failed = Signal(str)
    classified = Signal(object, object, float)  # Cell, CellPrediction, seconds
    classify_failed = Signal(object, str)
    attention_done = Signal(int, object, str, object)  # token, Cell, chromosome id, AttentionMap
    attention_failed = Signal(int, object, str, str)

    def __init__(self) -> None:
        super().__init__()
        self.classifier: Classifier | None = None
        self.wanted_attention = 0  # set from the GUI thread: older requests are skipped

    @Slot(object, str)
    def load(self, checkpoint: str | None, device: str) -> None:
        started = time.perf_counter()
        try:
            from karyo_gui.inference.classifier import Classifier
            from trainer.checkpoint import CheckpointError

            try:
                classifier = Classifier(checkpoint, device=device)
            except (CheckpointError, ValueError, OSError) as error:
                self.load_failed.emit(str(error))
                return
        except Exception as error:  # a broken install or a model torch cannot build
            self.load_failed.emit(f"the model could not be loaded: {error}")
            return
        self.classifier = classifier
        self.loaded.emit(classifier, time.perf_counter() - started)

    @Slot(object)
    def classify(self, cell: Cell) -> None:
        started = time.perf_counter()
        try:
            prediction = self.classifier.predict_cell(cell)
        except Exception as error:  # e.g. out of memory on a huge crop: the cell stays as it was
            self.classify_failed.emit(cell, f"cell {cell.name} could not be classified: {error}")
        else:
            self.classified.emit(cell, prediction, time.perf_counter() - started)
        _give_memory_back()  # after the answer: the window does not wait for it

    @Slot(int, object, str, object)
    def attention(
        self, token: int, cell: Cell, chromosome_id: str, target: ChromosomeType | None
    ) -> None:
        if token != self.wanted_attention or self.classifier is None:
            return  # the reviewer has moved on
        try:
            result = self.classifier.attention(cell, chromosome_id, target)
        except Exception as error:  # an architecture Grad-CAM cannot explain, a missing picture
            self.attention_failed.emit(token, cell, chromosome_id, str(error))
            return
        self.attention_done.emit(token, cell, chromosome_id, result)


def _stop(thread: QThread) -> None:
    with contextlib.suppress(RuntimeError):  # its C++ object is gone: nothing runs
        thread.quit()
        thread.wait()


class ModelService(QObject):
    """What the window knows of the model: ask, and be told by signals."""

    model_loaded = Signal(str)  # description
    model_failed = Signal(str)  # message naming the file and the reason
    cell_classified = Signal(object, object)  # Cell, CellResult
    classify_failed = Signal(object, str)
    attention_ready = Signal(object, str, object)  # Cell, chromosome id, AttentionMap
    attention_failed = Signal(object, str, str)  # Cell, chromosome id, message
    busy_changed = Signal(str)  # what the model is doing, "" when idle

    _load = Signal(object, str)
    _classify = Signal(object)
    _attention = Signal(int, object, str, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.classifier: Classifier | None = None
        self.loading = False
        self.load_seconds = 0.0
        self.last_classify_seconds = 0.0
        self._queue: deque[Cell] = deque()
        self._in_flight: Cell | None = None
        self._attention_token = 0
        self._thread = QThread(self)
        self._thread.setObjectName("karyo-model")
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._load.connect(self._worker.load)
        self._classify.connect(self._worker.classify)
        self._attention.connect(self._worker.attention)
        self._worker.loaded.connect(self._on_loaded)
        self._worker.load_failed.connect(self._on_load_failed)
        self._worker.classified.connect(self._on_classified)
        self._worker.classify_failed.connect(self._on_classify_failed)
        self._worker.attention_done.connect(self._on_attention)
        self._worker.attention_failed.connect(self._on_attention_failed)
        # a window dropped without being closed (or the app quitting around it) must still
        # stop the thread: Qt aborts the process when a running QThread is destroyed
        thread = self._thread
        self.destroyed.connect(lambda: _stop(thread))
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._thread.start()

    # ----------------------------------------------------------------- asking
    def load(self, checkpoint: str | os.PathLike | None = None, device: str = "auto") -> None:
        """Load a model file (None: the shipped model); the current one stays until it works."""
        self.loading = True
        self.busy_changed.emit("Loading the model…")
        self._load.emit(None if checkpoint is None else str(checkpoint), device)

    def classify(self, cells: list[Cell], first: bool = False) -> None:
        """Queue cells for classification (``first``: ahead of the queue, e.g. the cell shown)."""
        for cell in reversed(cells) if first else cells:
            if cell is self._in_flight or cell in self._queue:
                if first and cell in self._queue:
                    self._queue.remove(cell)
                    self._queue.appendleft(cell)
                continue
            if first:
                self._queue.appendleft(cell)
            else:
                self._queue.append(cell)
        self._next()

    def forget(self) -> None:
        """Drop queued cells and the attention map asked for (another case was opened)."""
        self._queue.clear()
        self._attention_token += 1  # a map of the old case, not started yet, is skipped
        self._worker.wanted_attention = self._attention_token

    def is_pending(self, cell: Cell) -> bool:
        return cell is self._in_flight or cell in self._queue

    def attention(self, cell: Cell, chromosome_id: str, target: ChromosomeType | None) -> None:
        """Grad-CAM of one chromosome; only the newest request is answered."""
        if self.classifier is None:
            self.attention_failed.emit(cell, chromosome_id, "the model is still loading")
            return
        self._attention_token += 1
        self._worker.wanted_attention = self._attention_token
        self._attention.emit(self._attention_token, cell, chromosome_id, target)

    def shutdown(self) -> None:
        """Stop the worker thread (waits for the request it is on)."""
        self._queue.clear()
        _stop(self._thread)

    # ---------------------------------------------------------------- answers
    def _next(self) -> None:
        if self.classifier is None or self._in_flight is not None:
            return
        while self._queue:
            cell = self._queue.popleft()
            if cell.status is CellStatus.SIGNED_OFF:
                continue
            self._in_flight = cell
            waiting = len(self._queue)
            more = f" ({waiting} more waiting)" if waiting else ""
            self.busy_changed.emit(f"Classifying {cell.name}…{more}")
            self._classify.emit(cell)
            return
        self.busy_changed.emit("")

    def _on_loaded(self, classifier: Classifier, seconds: float) -> None:
        self.classifier = classifier
        self.loading = False
        self.load_seconds = seconds
        self.model_loaded.emit(classifier.description)
        self.busy_changed.emit("")
        self._next()

    def _on_load_failed(self, message: str) -> None:
        self.loading = False
        self.busy_changed.emit("")
        self.model_failed.emit(message)
        self._next()

    def _on_classified(self, cell: Cell, prediction, seconds: float) -> None:
        self._in_flight = None
        if cell.status is not CellStatus.SIGNED_OFF and self.classifier is not None:
            result = self.classifier.assign(cell, prediction)
            result.seconds += seconds
            self.last_classify_seconds = result.seconds
            self.cell_classified.emit(cell, result)
        self._next()

    def _on_classify_failed(self, cell: Cell, message: str) -> None:
        self._in_flight = None
        self.classify_failed.emit(cell, message)
        self._next()

    def _on_attention(self, token: int, cell: Cell, chromosome_id: str, result) -> None:
        if token == self._attention_token:
            self.attention_ready.emit(cell, chromosome_id, result)

    def _on_attention_failed(self, token: int, cell: Cell, chromosome_id: str, message: str):
        if token == self._attention_token:
            self.attention_failed.emit(cell, chromosome_id, message)
