"""The model, off the GUI thread: loading, classifying cells and Grad-CAM in one worker thread.

The window asks through :class:`ModelService` and gets Qt signals back; it never waits.
All torch work happens in the worker thread, one request at a time, so classifying and
Grad-CAM never run on the model together. Cells are sent one at a time (the rest wait in
the service's queue), so an attention map never waits behind a whole case; of attention
requests only the newest is computed. The worker computes probabilities only: the
karyotype-aware assignment (milliseconds) is applied on the GUI thread, around the manual
labels the cell has when the result arrives.

A cell of a whole metaphase image whose chromosomes have not been looked for is first
given to the chromosome finder (loaded in the worker the first time it is needed); its
chromosomes come back to the GUI thread, which puts them into the cell, and the cell is
then classified like any other. After an edit of a metaphase's chromosomes (split, join,
add...) only the chromosomes without probabilities are classified again
(:meth:`ModelService.classify_changed`). The worker never changes a cell the window shows:
it reads it, or works on a copy, and the answer is applied on the GUI thread, to the
chromosomes still there.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from karyo_gui.core.case import Cell, CellStatus, Chromosome, Flag
from karyo_gui.core.labels import ChromosomeType

if TYPE_CHECKING:  # torch is imported in the worker thread, after the window is up
    from karyo_gui.inference.classifier import Classifier
    from karyo_gui.inference.finder import ChromosomeFinder


SETTLE_DELAY_MS = 800  # after the first answer, before the worker's follow-up (_settle)


def _default_finder() -> ChromosomeFinder:
    """The chromosome finder: $KARYO_FINDER, else the shipped one."""
    from karyo_gui.inference.finder import ChromosomeFinder

    return ChromosomeFinder(quick_start=True)


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
    # Cell, the chromosomes found (not yet in the cell), finder id, message ("" when found)
    found = Signal(object, object, object, str)
    find_failed = Signal(object, str)  # Cell, why the finder could not run
    # Cell, the copies of its chromosomes with the new probabilities, seconds
    changed_classified = Signal(object, object, float)

    def __init__(self, finder_factory: Callable[[], ChromosomeFinder] = _default_finder) -> None:
        super().__init__()
        self.classifier: Classifier | None = None
        self.finder: ChromosomeFinder | None = None
        self.finder_factory = finder_factory
        self.finder_problem: str | None = None  # why the finder did not load (not retried)
        self.wanted_attention = 0  # set from the GUI thread: older requests are skipped
        self.settled = False  # the classifier's first answer was given and _settle ran

    @Slot(object, str)
    def load(self, checkpoint: str | None, device: str) -> None:
        started = time.perf_counter()
        try:
            from karyo_gui.inference.classifier import Classifier
            from trainer.checkpoint import CheckpointError

            try:
                classifier = Classifier(checkpoint, device=device, quick_start=True)
            except (CheckpointError, ValueError, OSError) as error:
                self.load_failed.emit(str(error))
                return
        except Exception as error:  # a broken install or a model torch cannot build
            self.load_failed.emit(f"the model could not be loaded: {error}")
            return
        import scipy.optimize  # noqa: F401  the assignment's solver, here rather than on the GUI thread

        self.classifier = classifier
        self.settled = False
        self.loaded.emit(classifier, time.perf_counter() - started)

    def _settle(self) -> None:
        """Once, after the model's first answer, while the reviewer looks at it: a quick-
        started classifier builds its network (Grad-CAM needs the layers); one that built it
        caches its quick copy, so that the next start is a quick one."""
        if self.settled or self.classifier is None:
            return
        self.settled = True
        if self.classifier.quick_started:
            with contextlib.suppress(Exception):  # Grad-CAM will say what is wrong, if asked
                _ = self.classifier.full_net
        else:
            self.classifier.save_quick_start()

    @Slot(object)
    def classify(self, cell: Cell) -> None:
        started = time.perf_counter()
        try:
            prediction = self.classifier.predict_cell(cell)
        except Exception as error:  # e.g. out of memory on a huge crop: the cell stays as it was
            self.classify_failed.emit(cell, f"cell {cell.name} could not be classified: {error}")
        else:
            self.classified.emit(cell, prediction, time.perf_counter() - started)
            if not self.settled:  # a moment later, so that a window closed at once is not held
                QTimer.singleShot(SETTLE_DELAY_MS, self._settle)
        _give_memory_back()  # after the answer: the window does not wait for it

    @Slot(object)
    def find(self, cell: Cell) -> None:
        """The chromosomes of a metaphase image, for the GUI thread to put into the cell."""
        if self.finder is None and self.finder_problem is None:
            try:
                self.finder = self.finder_factory()
            except Exception as error:  # no finder file, a damaged one, a broken install
                self.finder_problem = f"the chromosome finder could not be loaded: {error}"
        if self.finder is None:
            self.find_failed.emit(cell, f"{cell.name}: {self.finder_problem}")
            return
        # found into a cell of its own: the window puts the chromosomes into the cell shown
        found = Cell(name=cell.name, metaphase=cell.metaphase)
        try:
            self.finder.find_cell(found)
        except Exception as error:  # nothing found (the finder says so), out of memory...
            if found.finder_id is None or found.chromosomes:
                self.find_failed.emit(cell, f"{cell.name}: chromosomes could not be found "
                                            f"({error})")
                return
            message = f"{error}; outline them with Metaphase > Add chromosome"
        else:
            message = ""
        self.found.emit(cell, found.chromosomes, found.finder_id, message)
        if not getattr(self.finder, "quick_started", True):  # built its network: cache a
            # copy for the next start, a moment later (the found cell is classified first)
            QTimer.singleShot(SETTLE_DELAY_MS, self._save_finder_copy)
        _give_memory_back()

    def _save_finder_copy(self) -> None:
        if self.finder is not None:
            with contextlib.suppress(Exception):  # a convenience: the next start builds it
                self.finder.save_quick_start()

    @Slot(object, object)
    def classify_changed(self, cell: Cell, copy: Cell) -> None:
        """Probabilities for the chromosomes that have none, computed on a copy of the cell
        (made on the GUI thread): the cell itself may be edited meanwhile."""
        started = time.perf_counter()
        try:
            self.classifier.classify_changed(copy)
        except Exception as error:  # the chromosomes stay unclassified
            self.classify_failed.emit(cell, f"cell {cell.name} could not be classified: {error}")
        else:
            self.changed_classified.emit(cell, copy.chromosomes, time.perf_counter() - started)
        _give_memory_back()

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
    cell_found = Signal(object)  # Cell: the finder's chromosomes are in it now
    find_failed = Signal(object, str)  # Cell, message (no finder, nothing found)

    _load = Signal(object, str)
    _classify = Signal(object)
    _classify_changed = Signal(object, object)
    _find = Signal(object)
    _attention = Signal(int, object, str, object)

    def __init__(
        self,
        parent: QObject | None = None,
        finder_factory: Callable[[], ChromosomeFinder] = _default_finder,
    ) -> None:
        super().__init__(parent)
        self.classifier: Classifier | None = None
        self.loading = False
        self.load_seconds = 0.0
        self.last_classify_seconds = 0.0
        self.finding = False  # metaphases are given to the finder (once a model was asked for)
        self._queue: deque[Cell] = deque()
        self._changed: set[Cell] = set()  # queued for classify_changed, not a whole pass
        self._in_flight: Cell | None = None
        self._in_flight_chromosomes: list[Chromosome] = []  # the cell's when it was sent
        self._in_flight_orientations: list = []  # theirs then (classify_changed)
        self._generation = 0  # counts the cases forgotten: answers about older ones are not
        self._in_flight_generation = 0  # followed up
        self._attention_token = 0
        self._thread = QThread(self)
        self._thread.setObjectName("karyo-model")
        self._worker = _Worker(finder_factory)
        self._worker.moveToThread(self._thread)
        self._load.connect(self._worker.load)
        self._classify.connect(self._worker.classify)
        self._classify_changed.connect(self._worker.classify_changed)
        self._find.connect(self._worker.find)
        self._attention.connect(self._worker.attention)
        self._worker.found.connect(self._on_found)
        self._worker.find_failed.connect(self._on_find_failed)
        self._worker.changed_classified.connect(self._on_changed_classified)
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
        self.finding = True
        self.busy_changed.emit("Loading the model…")
        self._load.emit(None if checkpoint is None else str(checkpoint), device)

    def classify(self, cells: list[Cell], first: bool = False) -> None:
        """Queue cells for classification (``first``: ahead of the queue, e.g. the cell shown);
        a metaphase whose chromosomes were not looked for yet is given to the finder first."""
        for cell in reversed(cells) if first else cells:
            self._changed.discard(cell)  # a whole pass covers the changed chromosomes
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

    def classify_changed(self, cell: Cell) -> bool:
        """After an edit of a metaphase's chromosomes: classify the chromosomes without
        probabilities and assign the cell's types again (at once when they all have
        probabilities). False when no model is loaded (they stay unclassified)."""
        if self.classifier is None:
            return False
        if cell in self._queue:
            return True  # already waiting: the pass, when it comes, sees the cell as it is
        if cell is not self._in_flight and all(
            c.probabilities is not None or c.image is None for c in cell.chromosomes
        ):
            self._assign_now(cell)  # nothing new to look at: milliseconds, here
            return True
        self._changed.add(cell)
        self._queue.appendleft(cell)
        self._next()
        return True

    def retry_finder(self) -> None:
        """Try loading the chromosome finder again (the user asked to classify again)."""
        self.finding = True
        self._worker.finder_problem = None

    def forget(self) -> None:
        """Drop queued cells and the attention map asked for (another case was opened)."""
        self._queue.clear()
        self._changed.clear()
        self._generation += 1
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
        if self._in_flight is not None:
            return
        for cell in list(self._queue):
            if cell.status is CellStatus.SIGNED_OFF:
                self._queue.remove(cell)
                self._changed.discard(cell)
                continue
            finding = cell.needs_finding
            if (finding and not self.finding) or (not finding and self.classifier is None):
                continue  # waits for a model
            self._queue.remove(cell)
            self._in_flight = cell
            self._in_flight_chromosomes = list(cell.chromosomes)
            self._in_flight_generation = self._generation
            waiting = len(self._queue)
            more = f" ({waiting} more waiting)" if waiting else ""
            if finding:
                self.busy_changed.emit(f"Finding chromosomes in {cell.name}…{more}")
                self._find.emit(cell)
            elif cell in self._changed:
                self._changed.discard(cell)
                self._in_flight_orientations = [c.orientation for c in cell.chromosomes]
                copy = Cell(name=cell.name, audit=list(cell.audit), chromosomes=[
                    dataclasses.replace(c, flags=set(c.flags)) for c in cell.chromosomes
                ])
                self.busy_changed.emit(f"Classifying the changed chromosomes of {cell.name}…")
                self._classify_changed.emit(cell, copy)
            else:
                self.busy_changed.emit(f"Classifying {cell.name}…{more}")
                self._classify.emit(cell)
            return
        self.busy_changed.emit("")

    def _follow_up(self, cell: Cell, asked: list[Chromosome]) -> None:
        """After an answer about a cell of the case still open: chromosomes added since it
        was asked (an edit meanwhile) are classified next."""
        if self._in_flight_generation != self._generation:
            return
        before = {id(c) for c in asked}
        if any(id(c) not in before and c.probabilities is None and c.image is not None
               for c in cell.chromosomes):
            self._changed.add(cell)
            if cell not in self._queue:
                self._queue.appendleft(cell)

    def _on_found(self, cell: Cell, chromosomes: list[Chromosome], finder_id: str,
                  message: str) -> None:
        self._in_flight, self._in_flight_chromosomes = None, []
        if cell.needs_finding:  # not meanwhile outlined by hand
            cell.chromosomes = list(chromosomes)
            cell.finder_id = finder_id
            self.cell_found.emit(cell)
        if message:
            self.find_failed.emit(cell, message)
        elif (cell.chromosomes and cell.status is not CellStatus.SIGNED_OFF
              and self._in_flight_generation == self._generation and cell not in self._queue):
            self._queue.appendleft(cell)  # classified next, before the other cells
        self._next()

    def _on_find_failed(self, cell: Cell, message: str) -> None:
        self._in_flight, self._in_flight_chromosomes = None, []
        self.find_failed.emit(cell, message)
        self._next()

    def _on_changed_classified(self, cell: Cell, copies: list[Chromosome],
                               seconds: float) -> None:
        asked, before = self._in_flight_chromosomes, self._in_flight_orientations
        self._in_flight, self._in_flight_chromosomes, self._in_flight_orientations = None, [], []
        if cell.status is not CellStatus.SIGNED_OFF and self.classifier is not None:
            present = {id(c) for c in cell.chromosomes}
            for original, copy, orientation in zip(asked, copies, before):
                if (id(original) not in present or original.probabilities is not None
                        or copy.probabilities is None):
                    continue  # gone meanwhile, or classified by a later pass
                original.probabilities = copy.probabilities
                original.embedding = copy.embedding
                if original.orientation == orientation:  # not turned by the reviewer meanwhile
                    original.orientation = copy.orientation
                    original.flags.discard(Flag.ORIENTATION_UNSURE)
                    original.flags |= copy.flags & {Flag.ORIENTATION_UNSURE}
            self._assign_now(cell, seconds)
            self._follow_up(cell, asked)
        self._next()

    def _assign_now(self, cell: Cell, seconds: float = 0.0) -> None:
        """The karyotype-aware assignment over the chromosomes that have probabilities."""
        pictured = [k for k, c in enumerate(cell.chromosomes)
                    if c.image is not None and c.probabilities is not None]
        rows = [cell.chromosomes[k].probabilities for k in pictured]
        probabilities = (np.stack(rows) if rows
                         else np.zeros((0, len(ChromosomeType.types())), np.float32))
        result = self.classifier.assign(cell, Rows(pictured, probabilities))
        result.seconds += seconds
        self.last_classify_seconds = result.seconds
        self.cell_classified.emit(cell, result)

    def _on_loaded(self, classifier: Classifier, seconds: float) -> None:
        self.classifier = classifier
        self.loading = False
        self.load_seconds = seconds
        self.model_loaded.emit(classifier.description)
        if self._in_flight is None:  # else the finder is at work, and still says so
            self.busy_changed.emit("")
        self._next()

    def _on_load_failed(self, message: str) -> None:
        self.loading = False
        if self._in_flight is None:
            self.busy_changed.emit("")
        self.model_failed.emit(message)
        self._next()

    def _on_classified(self, cell: Cell, prediction, seconds: float) -> None:
        asked, self._in_flight, self._in_flight_chromosomes = self._in_flight_chromosomes, None, []
        if len(asked) != len(cell.chromosomes) or any(
            a is not b for a, b in zip(asked, cell.chromosomes)
        ):  # a metaphase edited meanwhile: the rows of the chromosomes still there
            prediction = _remapped(prediction, asked, cell.chromosomes)
            self._follow_up(cell, asked)
        if cell.status is not CellStatus.SIGNED_OFF and self.classifier is not None:
            result = self.classifier.assign(cell, prediction)
            result.seconds += seconds
            self.last_classify_seconds = result.seconds
            self.cell_classified.emit(cell, result)
        self._next()

    def _on_classify_failed(self, cell: Cell, message: str) -> None:
        self._in_flight, self._in_flight_chromosomes = None, []
        self.classify_failed.emit(cell, message)
        self._next()

    def _on_attention(self, token: int, cell: Cell, chromosome_id: str, result) -> None:
        if token == self._attention_token:
            self.attention_ready.emit(cell, chromosome_id, result)

    def _on_attention_failed(self, token: int, cell: Cell, chromosome_id: str, message: str):
        if token == self._attention_token:
            self.attention_failed.emit(cell, chromosome_id, message)


@dataclasses.dataclass
class Rows:
    """What ``Classifier.assign`` reads of a CellPrediction (built here without importing
    the classifier, and with it torch, on the GUI thread): positions in the cell's
    chromosomes and their rows of probabilities."""

    pictured: list[int]
    probabilities: np.ndarray
    upside_down: np.ndarray | None = None
    embeddings: np.ndarray | None = None


def _remapped(prediction, asked: list[Chromosome], now: list[Chromosome]) -> Rows:
    """A prediction made for the chromosomes ``asked``, for the cell's chromosomes ``now``:
    the rows of those still there, at their positions now."""
    position = {id(c): k for k, c in enumerate(now)}
    rows, pictured = [], []
    for row, index in enumerate(prediction.pictured):
        k = position.get(id(asked[index]))
        if k is not None:
            rows.append(row)
            pictured.append(k)
    upside_down = None if prediction.upside_down is None else prediction.upside_down[rows]
    embeddings = getattr(prediction, "embeddings", None)
    return Rows(pictured, prediction.probabilities[rows], upside_down,
                None if embeddings is None else embeddings[rows])
