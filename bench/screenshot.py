"""Screenshot of the karyo main window reviewing a cell, for the README.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/screenshot.py OUT.png
        [--karyotype 47,XY,+21] [--seed 4] [--folder CELL_DIR | --image METAPHASE.jpg]
        [--cell NAME]
        [--metaphase-view VIEW.png]

(``bench/screenshot.sh`` runs exactly that.) The window opens on a generated cell (or on
``--folder``, or on a whole metaphase image, whose chromosomes the finder finds first), waits
for the model to classify it, steps to the first flagged chromosome (the N key) so the
inspector shows its Grad-CAM and probabilities, and saves the window; ``--metaphase-view``
also saves the metaphase view alone, larger.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QApplication

from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.qt.main_window import MainWindow


def wait_for(app: QApplication, done, timeout: float = 120.0) -> bool:
    end = time.perf_counter() + timeout
    while not done() and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)
    return done()


def dark_palette() -> QPalette:
    palette = QPalette()
    role = QPalette.ColorRole
    for name, colour in {
        role.Window: "#2b2b2b", role.WindowText: "#e6e6e6", role.Base: "#1f1f1f",
        role.AlternateBase: "#2f2f2f", role.Text: "#e6e6e6", role.Button: "#3a3a3a",
        role.ButtonText: "#e6e6e6", role.Highlight: "#2f65ca", role.HighlightedText: "#ffffff",
        role.ToolTipBase: "#3a3a3a", role.ToolTipText: "#e6e6e6", role.PlaceholderText: "#9a9a9a",
    }.items():
        palette.setColor(name, QColor(colour))
    return palette


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--karyotype", default="47,XY,+21")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--image", type=Path, help="a whole metaphase image")
    parser.add_argument("--cell", help="the cell of the case (a folder of several) to show, "
                        "once every cell is classified")
    parser.add_argument("--metaphase-view", type=Path, help="also save the metaphase view here")
    parser.add_argument("--dark", action="store_true", help="the dark colour scheme")
    args = parser.parse_args()

    app = QApplication.instance() or QApplication(sys.argv[:1])
    if args.dark:
        app.setStyle("Fusion")
        app.setPalette(dark_palette())  # what a dark desktop theme hands the app
    window = MainWindow()
    window.ask_on_close = False
    window.resize(1560, 960)
    window.show()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.image or args.folder or write_cell(
            generate_cell(args.karyotype, seed=args.seed), Path(scratch) / "P12.3", labelled=False
        )
        window.open_path(folder)
        cell = window.current_cell
        if args.cell:
            names = [c.name for c in window.case.cells]
            if args.cell not in names:
                print(f"no cell {args.cell} in {folder} (it holds {', '.join(names)})",
                      file=sys.stderr)
                return 2
            waiting = window.case.cells
        else:
            waiting = [cell]
        if not wait_for(app, lambda: all(bool(c.chromosomes) and all(
            x.probabilities is not None for x in c.chromosomes) for c in waiting
        ), 120.0 * len(waiting)):  # fmt: skip
            print(f"the cell was not classified: {window.model_problem}", file=sys.stderr)
            return 1
        if args.cell:
            cell = next(c for c in window.case.cells if c.name == args.cell)
            window.cell_list.setCurrentRow(window.case.cells.index(cell))
            wait_for(app, lambda: False, 1.0)
        window.step_flagged()  # what the N key does (no window manager to focus the window)
        wait_for(app, lambda: window.inspector.overlay_image() is not None, 30)
        wait_for(app, lambda: False, 0.5)  # let the last paint land
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not window.grab().save(str(args.out)):
            print(f"{args.out}: cannot write the screenshot", file=sys.stderr)
            return 1
        if args.metaphase_view is not None:
            # the scene (image, outlines, type tags) at 1.5 image pixels per pixel
            scene = window.metaphase_view.scene()
            source = scene.itemsBoundingRect()
            picture = QImage(int(source.width() * 1.5), int(source.height() * 1.5),
                             QImage.Format.Format_RGB32)  # fmt: skip
            picture.fill(QColor("white"))
            painter = QPainter(picture)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            scene.render(painter, QRectF(picture.rect()), source)
            painter.end()
            if not picture.save(str(args.metaphase_view)):
                print(f"{args.metaphase_view}: cannot write the screenshot", file=sys.stderr)
                return 1
            print(f"wrote {args.metaphase_view}")
    window.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
