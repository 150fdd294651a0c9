"""How fast the review window answers, with the model already loaded (offscreen Qt).

    python bench/review_speed.py [--data ../shared/data/gband612] [--cells 10] [--device cpu]

Prints median and max of:
  * open: ``open_path(cell folder)`` to the classified karyogram painted (crops read, model,
    assignment, layout, paint), per cell;
  * drag-reassign: the mouse release of a real drag through the view onto another slot to the
    karyogram relaid out, ISCN updated and painted;
  * Grad-CAM: a click on a chromosome to its attention overlay shown in the inspector.
Targets on a 2-core CPU: open <= 1.5 s, drag-reassign <= 50 ms, Grad-CAM <= 150 ms.
Without ``--data`` (or when the folder is absent) generated cells are written and used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from review_window import wait_for, window_with_model

from karyo_gui.core.loaders import cells_folder, write_cell
from karyo_gui.core.synthetic import generate_cell

TARGETS = {"open": 1.5, "drag-reassign": 0.050, "Grad-CAM overlay": 0.150}


def report(what: str, seconds: list[float]) -> None:
    median = statistics.median(seconds)
    target = TARGETS[what]
    verdict = "met" if median <= target else "NOT met"
    print(f"{what:<18} n={len(seconds):<3} median {median * 1000:8.1f} ms   "
          f"max {max(seconds) * 1000:8.1f} ms   target <= {target * 1000:g} ms: {verdict}")


def cell_folders(data: Path | None, count: int, scratch: Path) -> list[Path]:
    if data is not None and data.is_dir():
        split = data / "splits" / "test.txt"
        names = split.read_text().split() if split.is_file() else []
        folder = cells_folder(data)
        found = [folder / n for n in names] or sorted(p for p in folder.iterdir() if p.is_dir())
        return found[:count]
    karyotypes = ["46,XY", "46,XX", "47,XY,+21", "45,X", "47,XXY"]
    return [
        write_cell(generate_cell(karyotypes[k % len(karyotypes)], seed=k), scratch / f"cell{k}",
                   labelled=False)
        for k in range(count)
    ]


def drag_to_slot(app, window, chromosome_id: str, target) -> float:
    view = window.view
    viewport = view.viewport()
    start = window.scene.chromosome_items[chromosome_id].crop_rect().center()
    label = window.scene.layout.slots[target].label_rect
    end = QPointF(label.x + label.width / 2, label.y + label.height / 2)
    a, b = view.mapFromScene(start), view.mapFromScene(end)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for k in range(1, 6):
        QTest.mouseMove(viewport, a + (b - a) * (k / 5))
    app.processEvents()
    started = time.perf_counter()
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    viewport.repaint()
    window.statusBar().repaint()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--cells", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = window_with_model(app, args.device)
    if window is None:
        return 1
    print()

    opened, dragged, attention = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        folders = cell_folders(args.data, args.cells, Path(scratch))
        source = "generated cells" if args.data is None or not args.data.is_dir() else args.data
        print(f"{len(folders)} cells from {source}")
        for folder in folders:
            started = time.perf_counter()
            window.open_path(folder)
            cell = window.current_cell
            wait_for(app, lambda c=cell: not window.service.is_pending(c))
            window.view.viewport().repaint()
            opened.append(time.perf_counter() - started)

            # drag the first chromosome of the second row's first slot onto the next slot
            order = window.scene.reading_order()
            chromosome = cell.chromosome(order[len(order) // 3])
            types = list(window.scene.layout.slots)
            target = types[(types.index(chromosome.label) + 1) % 24]
            dragged.append(drag_to_slot(app, window, chromosome.id, target))
            assert chromosome.label is target, "the drag did not reassign"

            for chromosome_id in order[:: max(1, len(order) // 4)][:4]:
                item = window.scene.chromosome_items[chromosome_id]
                point = window.view.mapFromScene(item.crop_rect().center())
                started = time.perf_counter()
                QTest.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton,
                                 Qt.KeyboardModifier.NoModifier, point)
                wait_for(app, lambda: window.inspector.overlay_image() is not None, 30)
                window.inspector.repaint()
                attention.append(time.perf_counter() - started)
            window._dirty = False  # nothing to keep from a benchmark

    report("open", opened[1:] if len(opened) > 1 else opened)  # the first one warms up
    report("drag-reassign", dragged)
    report("Grad-CAM overlay", attention[1:] if len(attention) > 1 else attention)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
