"""Start the karyo window."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from karyo_gui.qt.main_window import MainWindow

ICON = Path(__file__).resolve().parents[2] / "resources" / "karyo.svg"


def run_app(path: str | None = None, example: str | None = None) -> int:
    """Open the main window on ``path``, or on the example cell when none is given.

    The window is up at once; the model loads in the background and classifies the cell
    when it is ready.
    """
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("karyo")
    app.setOrganizationName("karyo")
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    window = MainWindow()
    window.show()
    if path is None or not window.open_path(path):
        window.open_example(example) if example else window.open_example()
    window.offer_recovery()
    return app.exec()
