"""A batch review: many cells reviewed one after another in ONE window, with the model loaded.

    python bench/batch_review.py [--data ../shared/data/gband612] [--cells 200] [--device auto]
                                 [--scenario both|cells|case] [--max-growth-mb 64]

Two scenarios, offscreen, with the shipped model:
  * cells: each cell folder opened on its own (``open_path``), as a reviewer works down a list;
  * case:  one folder holding all the cells opened as ONE case (the window classifies them in
    the background) and stepped through cell by cell.
For every cell: wait until it is classified, click a chromosome and wait for its Grad-CAM
overlay, reassign a chromosome and undo it, save the case to a case file in a temporary
folder. Prints, per scenario, the median per-cell time of the first 20 and the last 20 cells,
the resident memory (VmRSS) after cell 20, 50, 100 and 200, its growth from cell 50 to the
last, the peak RSS of the process and the wall time; and how many cells, undo stacks and
graphics items are still alive (a leak shows there first).
Fails (exit 1) when RSS grows by more than ``--max-growth-mb`` from cell 50 to the last, the
last-20 median is more than 1.5 times the first-20 median, a cell outlives its case (counted
with weak references once the example cell is opened instead), or the Qt binding drops
references to None (the crash PySide6 6.12.0 brings on Python 3.11).
Cells: gband612's test, val and train splits in that order; generated cells (written to a
temporary folder) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import PySide6
from PySide6.QtCore import QObject, Qt, qInstallMessageHandler
from PySide6.QtGui import QUndoStack
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from review_window import wait_for, window_with_model

from karyo_gui.core.case import Cell
from karyo_gui.core.case_file import SUFFIX
from karyo_gui.core.loaders import cells_folder, write_cell
from karyo_gui.core.synthetic import generate_cell

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gband612"
SPLITS = ("test", "val", "train")
CHECKPOINTS = (20, 50, 100, 200)
EDGE = 20  # cells compared at the start and at the end
SLOWDOWN_LIMIT = 1.5


def quiet_offscreen(mode, context, message: str) -> None:
    """Qt's messages, less the offscreen platform's note repeated for every dock change."""
    if "propagateSizeHints" not in message:
        print(message, file=sys.stderr)


def binding_drops_none() -> bool:
    """Whether Qt calls lose references to None (PySide6 6.12.0 below Python 3.12): the app
    then aborts ("deallocating None") within tens of cells, so a batch cannot be measured."""
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(300):
        probe.setObjectName("probe")
    return sys.getrefcount(None) < before - 150


def rss_mb() -> float:
    """Resident memory of this process now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def cell_folders(data: Path, count: int, scratch: Path) -> tuple[list[Path], str]:
    """``count`` cell folders: gband612's splits in order, or generated cells."""
    if data.is_dir():
        folder = cells_folder(data)
        names = []
        for split in SPLITS:
            listed = data / "splits" / f"{split}.txt"
            names += listed.read_text().split() if listed.is_file() else []
        if not names:
            names = sorted(p.name for p in folder.iterdir() if p.is_dir())
        found = [folder / name for name in names if (folder / name).is_dir()][:count]
        return found, f"{data} ({'+'.join(SPLITS)})"
    karyotypes = ["46,XY", "46,XX", "47,XY,+21", "45,X", "47,XXY"]
    generated = scratch / "generated"
    return [
        write_cell(generate_cell(karyotypes[k % len(karyotypes)], seed=k),
                   generated / f"B{k:03d}.1.tiff", labelled=False)
        for k in range(count)
    ], "generated cells"


def one_case_folder(folders: list[Path], scratch: Path) -> Path:
    """A folder holding the cells (as links: the data stay where they are)."""
    case = scratch / "one-case"
    case.mkdir()
    for folder in folders:
        (case / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
    return case


@dataclass
class Run:
    name: str
    classified: list[float] = field(default_factory=list)  # seconds to classified, per cell
    per_cell: list[float] = field(default_factory=list)  # seconds for the whole review step
    rss: list[float] = field(default_factory=list)  # MB after each cell
    alive: dict[int, str] = field(default_factory=dict)  # cell number -> what is still alive
    left_alive: int = 0  # cells still alive once their case was closed
    wall: float = 0.0


def classified(window, cell: Cell) -> bool:
    return not window.service.is_pending(cell) and any(
        c.probabilities is not None for c in cell.chromosomes
    )


def review_cell(app, window, cell: Cell, save_to: Path) -> None:
    """Click a chromosome, wait for Grad-CAM, reassign one and undo, save."""
    order = window.scene.reading_order()
    clicked = order[len(order) // 3]
    item = window.scene.chromosome_items[clicked]
    point = window.view.mapFromScene(item.crop_rect().center())
    QTest.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, point)
    wait_for(app, lambda: window.inspector.overlay_image() is not None, 120)

    chromosome = cell.chromosome(order[len(order) // 2])
    before = chromosome.label
    types = list(window.scene.layout.slots)
    other = types[(types.index(before) + 1) % len(types)] if before in types else types[0]
    if not window.reassign(chromosome.id, other) or chromosome.label is not other:
        raise RuntimeError(f"cell {cell.name}: the reassignment did not happen")
    window.undo_group.undo()
    if chromosome.label is not before:
        raise RuntimeError(f"cell {cell.name}: undo did not bring the type back")
    if not window.save_to(save_to):
        raise RuntimeError(f"cell {cell.name}: not saved ({window.last_error})")


def census(window, opened: list[weakref.ref]) -> str:
    alive = sum(ref() is not None for ref in opened)
    stacks = len(window.findChildren(QUndoStack))
    return (f"cells alive {alive}/{len(opened)}, undo stacks {stacks}, "
            f"scene items {len(window.scene.items())}")


def close_and_count(app, window, opened: list[weakref.ref], patience: float = 30.0) -> int:
    """Open the example cell instead; how many of the opened cells are still alive once the
    model has answered what it was asked about them (a request holds its cell until then)."""
    window.open_example()
    end = time.perf_counter() + patience
    while True:
        gc.collect()
        alive = sum(ref() is not None for ref in opened)
        if not alive or time.perf_counter() > end:
            return alive
        for _ in range(100):
            app.processEvents()
            time.sleep(0.001)


def cells_one_by_one(app, window, folders: list[Path], scratch: Path) -> Run:
    run, opened = Run("cells: each folder opened on its own"), []
    started = time.perf_counter()
    for number, folder in enumerate(folders, start=1):
        begun = time.perf_counter()
        if not window.open_path(folder):
            raise RuntimeError(f"{folder}: not opened ({window.last_error})")
        cell = window.current_cell
        opened.append(weakref.ref(cell))
        wait_for(app, lambda c=cell: classified(window, c))
        run.classified.append(time.perf_counter() - begun)
        review_cell(app, window, cell, scratch / f"cell{number:03d}{SUFFIX}")
        run.per_cell.append(time.perf_counter() - begun)
        run.rss.append(rss_mb())
        del cell
        if number in CHECKPOINTS or number == len(folders):
            run.alive[number] = census(window, opened)
    run.wall = time.perf_counter() - started
    run.left_alive = close_and_count(app, window, opened)
    return run


def cells_of_one_case(app, window, folders: list[Path], scratch: Path) -> Run:
    run = Run("case: one folder of cells, stepped through")
    started = time.perf_counter()
    if not window.open_path(one_case_folder(folders, scratch)):
        raise RuntimeError(f"the case folder did not open ({window.last_error})")
    cells = list(window.case.cells)
    opened = [weakref.ref(c) for c in cells]
    for number, cell in enumerate(cells, start=1):
        begun = time.perf_counter()
        window.cell_list.setCurrentRow(number - 1)
        if window.current_cell is not cell:
            raise RuntimeError(f"cell {cell.name} was not shown")
        wait_for(app, lambda c=cell: classified(window, c))
        run.classified.append(time.perf_counter() - begun)
        review_cell(app, window, cell, scratch / f"case{SUFFIX}")
        run.per_cell.append(time.perf_counter() - begun)
        run.rss.append(rss_mb())
        if number in CHECKPOINTS or number == len(cells):
            run.alive[number] = census(window, opened)
    cells = cell = None
    run.wall = time.perf_counter() - started
    run.left_alive = close_and_count(app, window, opened)
    return run


def write_csv(path: Path, runs: list[Run]) -> None:
    rows = ["scenario,cell,classified_s,per_cell_s,rss_mb"]
    for run in runs:
        scenario = run.name.split(":")[0]
        rows += [f"{scenario},{k + 1},{c:.4f},{t:.4f},{r:.1f}" for k, (c, t, r)
                 in enumerate(zip(run.classified, run.per_cell, run.rss))]
    path.write_text("\n".join(rows) + "\n")


def judge(run: Run, max_growth: float) -> list[str]:
    """Print the run's table; the reasons it fails (none: it passes)."""
    n = len(run.per_cell)
    first = statistics.median(run.per_cell[:EDGE])
    last = statistics.median(run.per_cell[-EDGE:])
    ratio = last / first
    print(f"\n{run.name}: {n} cells, wall time {run.wall:.1f} s")
    print(f"  time to classified  median {statistics.median(run.classified) * 1000:8.1f} ms   "
          f"max {max(run.classified) * 1000:8.1f} ms")
    print(f"  per-cell time       first {min(EDGE, n)} median {first * 1000:8.1f} ms   "
          f"last {min(EDGE, n)} median {last * 1000:8.1f} ms   ratio {ratio:.2f} "
          f"(limit {SLOWDOWN_LIMIT})")
    shown = [c for c in CHECKPOINTS if c <= n] + ([n] if n not in CHECKPOINTS else [])
    print("  RSS after cell      " + "   ".join(f"{c}: {run.rss[c - 1]:7.1f} MB" for c in shown))
    for number, alive in run.alive.items():
        print(f"  after cell {number:<4}     {alive}")
    failures = []
    base = 50 if n >= 50 else 1
    growth = run.rss[-1] - run.rss[base - 1]
    print(f"  RSS growth cell {base} to {n}: {growth:+.1f} MB (limit {max_growth:g} MB)")
    print(f"  cells alive once their case was closed: {run.left_alive}")
    if run.left_alive:
        failures.append(f"{run.name}: {run.left_alive} cells outlived their case")
    if growth > max_growth:
        failures.append(f"{run.name}: RSS grew by {growth:.1f} MB from cell {base} to {n}")
    if ratio > SLOWDOWN_LIMIT:
        failures.append(f"{run.name}: the last {EDGE} cells took {ratio:.2f} x the first {EDGE}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--scenario", choices=("both", "cells", "case"), default="both")
    parser.add_argument("--csv", type=Path, default=None,
                        help="also write one row per cell (scenario, cell, seconds, RSS)")
    parser.add_argument("--max-growth-mb", type=float, default=64.0,
                        help="RSS growth allowed from cell 50 to the last (default 64 MB)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="karyo-batch-") as scratch_name:
        scratch = Path(scratch_name)
        # the benchmark's recent files and recovery files stay out of the user's settings
        os.environ["XDG_CONFIG_HOME"] = str(scratch / "config")
        os.environ["XDG_DATA_HOME"] = str(scratch / "data")
        qInstallMessageHandler(quiet_offscreen)
        app = QApplication.instance() or QApplication(sys.argv[:1])
        if binding_drops_none():
            print(f"FAILED: PySide6 {PySide6.__version__} drops a reference to None on every "
                  "void Qt call and aborts long sessions; use PySide6-Essentials < 6.12 on "
                  "Python < 3.12 (as pyproject.toml asks)", file=sys.stderr)
            return 1
        window = window_with_model(app, args.device)
        if window is None:
            return 1
        print(f"; RSS {rss_mb():.1f} MB")
        folders, source = cell_folders(args.data, args.cells, scratch)
        print(f"{len(folders)} cells from {source}")

        runs = []
        if args.scenario in ("both", "cells"):
            runs.append(cells_one_by_one(app, window, folders, scratch))
        if args.scenario in ("both", "case"):
            runs.append(cells_of_one_case(app, window, folders, scratch))
        window.close()

    if args.csv is not None:
        write_csv(args.csv, runs)
    failures = [failure for run in runs for failure in judge(run, args.max_growth_mb)]
    print(f"\npeak RSS {peak_rss_mb():.1f} MB")
    print(f"PySide6 {PySide6.__version__}, Python {sys.version.split()[0]}: "
          "Qt calls keep their references to None")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
