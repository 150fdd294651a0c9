"""Reading a case off the GUI thread: a case file, a folder of cells or metaphase images.

A :class:`BackgroundRead` runs one read in a thread of its own (a daemon thread: a read
stuck on a dead network share never keeps the app from quitting) and keeps its result or
its one-line error. The window looks at it with a timer (no Qt object is touched from the
thread, so a window closed meanwhile is never signalled) and shows a progress dialog with
Cancel; a cancelled read runs to its end unseen, and what it read is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from karyo_gui.core.loaders import display_path
from karyo_gui.core.opening import OpenError


class BackgroundRead:
    """``work()`` in a thread; ``result`` or ``error`` once ``done``."""

    def __init__(self, work: Callable[[], Any], what: str, path: str = "") -> None:
        self.what = what  # "Opening P7.karyo.json", for the progress dialog
        self.path = path
        self.result: Any = None
        self.error: str | None = None
        self.cancelled = False
        self.outcome: bool | None = None  # set by the window: opened (True) or not (False)
        self.when_settled: list[Callable[[], None]] = []
        self._work = work
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="karyo-open", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._work()
        except OpenError as error:
            self.error = str(error)
        except Exception as error:  # nothing a crafted folder or file does ends in a traceback
            detail = " ".join(str(error).split())[:300] or type(error).__name__
            self.error = f"{display_path(self.path)}: could not be opened ({detail})"
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread (tests); whether it ended."""
        return self._done.wait(timeout)

    def settle(self, outcome: bool) -> None:
        """The window is done with this read: tell whoever waits for it."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        for callback in self.when_settled:
            callback()
