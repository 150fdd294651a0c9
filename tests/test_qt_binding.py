"""Qt never takes the process down. The installed binding keeps Python's reference counts:
a review session makes hundreds of thousands of Qt calls, and a binding that drops a
reference to None on each (PySide6 6.12.0 below Python 3.12) aborts the app within minutes
of review. And a window destroyed while its model thread runs does not abort it either."""

import gc
import sys

import pytest
from PySide6.QtCore import QObject, QPointF
from PySide6.QtWidgets import QGraphicsPixmapItem, QLabel

CALLS = 300  # few enough that a leaking binding fails the test, not the process


@pytest.mark.parametrize(
    "call",
    [
        lambda qt: qt["object"].setObjectName("cell"),
        lambda qt: qt["label"].setText("46,XY"),
        lambda qt: qt["item"].setPos(QPointF(1.0, 2.0)),
        lambda qt: qt["item"].setToolTip("type 21"),
    ],
    ids=["QObject.setObjectName", "QLabel.setText", "item.setPos", "item.setToolTip"],
)
def test_qt_calls_keep_the_reference_count_of_none(qtbot, call):
    qt = {"object": QObject(), "label": QLabel(), "item": QGraphicsPixmapItem()}
    gc.collect()
    before = sys.getrefcount(None)
    for _ in range(CALLS):
        call(qt)
    gc.collect()
    lost = before - sys.getrefcount(None)
    assert lost < CALLS // 2, (
        f"each Qt call dropped a reference to None ({lost} in {CALLS} calls): this PySide6 "
        "build aborts long review sessions; install the version pyproject.toml asks for"
    )



def test_a_window_deleted_while_its_close_was_refused_does_not_abort_the_process(tmp_path):
    """Its model thread is stopped first: Qt aborts a process that destroys a running thread."""
    import os
    import subprocess

    code = (
        "from PySide6.QtCore import QCoreApplication, QEvent\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from karyo_gui.qt.main_window import MainWindow\n"
        "app = QApplication([])\n"
        "window = MainWindow(load_model=False)\n"
        "window.show(); app.processEvents()\n"
        "window.closeEvent = lambda event: event.ignore()  # e.g. Cancel on unsaved edits\n"
        "window.close(); window.deleteLater()\n"
        "QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)\n"
        "print('ok')\n"
    )
    environment = dict(os.environ, QT_QPA_PLATFORM="offscreen",
                       XDG_CONFIG_HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path))
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=environment)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip() == "ok"
