"""The review window with the shipped model loaded, for the benchmarks that drive it offscreen."""

from __future__ import annotations

import sys
import time

from PySide6.QtWidgets import QApplication


def wait_for(app: QApplication, done, timeout: float = 300.0) -> None:
    """Let the window work until ``done()``; TimeoutError after ``timeout`` seconds."""
    end = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > end:
            raise TimeoutError("the window did not answer in time")
        app.processEvents()
        time.sleep(0.001)


def window_with_model(app: QApplication, device: str = "auto"):
    """A shown 1440 x 900 MainWindow once its model has loaded; None (and why) if it cannot."""
    from karyo_gui.qt.main_window import MainWindow  # after the caller has set XDG_* folders

    window = MainWindow(load_model=False)
    window.ask_on_close = False
    window.resize(1440, 900)
    window.show()
    window.service.load(None, device)
    wait_for(app, lambda: window.service.classifier is not None or window.model_problem)
    if window.service.classifier is None:
        print(f"no model: {window.model_problem}", file=sys.stderr)
        return None
    classifier = window.service.classifier
    print(f"model {classifier.description} on {classifier.device}, "
          f"loaded in {window.service.load_seconds:.2f} s", end="")
    return window
