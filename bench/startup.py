"""How fast the app starts: from ``karyo gui CELL`` to the window, the model and a
classified karyogram, and what the app holds in memory then.

    python bench/startup.py [CELL] [--runs 5] [--warm-up 1] [--cli] [--cache DIR] [--json OUT]

Each run is a fresh process that does what ``karyo gui CELL`` does (the same entry point,
run_app's steps) and notes, in seconds since the process was started:
  * window: the main window is shown and has painted once;
  * model: the model is loaded (its own load time as the status bar says it, too);
  * classified: the cell's karyogram is classified and drawn;
and the peak resident memory of the process at that point. The first ``--warm-up`` runs
fill the disk cache and the classifier's quick-start cache (an ONNX copy of its network,
written after a start that built it; ``karyo_gui.inference.quick_start``) and are not counted; the
first of them is shown apart as the first start. The quick-start cache is the bench's own
(a fresh folder; ``--cache DIR`` to keep one), never the user's. CELL defaults to the app's
example cell (46 generated crops). Targets on a 2-core CPU with a warm disk cache: window
< 1 s, classified <= 3 s. ``--imports`` also prints the ten slowest imports of the window
and of the model (python -X importtime). ``--cli`` times ``karyo classify CELL --json OUT``
instead, from the process start to its exit (the CLI uses and writes the same quick-start
copy; the first run is shown apart); CELL then defaults to the example cell written to a
folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
started = float(sys.argv[1]); path = sys.argv[2] or None; out = sys.argv[3]
marks = {"interpreter": time.time() - started}
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication.instance() or QApplication(sys.argv[:1])
from karyo_gui.qt.main_window import MainWindow
marks["imports"] = time.time() - started
window = MainWindow()
window.show()
app.processEvents()
marks["window"] = time.time() - started

def loaded(_description):
    marks["model"] = time.time() - started
    marks["model_own_seconds"] = window.service.load_seconds

def classified(cell, result):
    if "quick_start" not in marks:
        marks["quick_start"] = window.service.classifier.quick_started
    if cell is window.current_cell and "classified" not in marks:
        app.processEvents()  # the karyogram drawn
        marks["classified"] = time.time() - started
        marks["classify_seconds"] = result.seconds
        marks["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        quit_when_settled()


def quit_when_settled():
    # the model thread's follow-up a moment after its first answer (writing the quick start,
    # or building the network after one) runs as it would for a user who stays a second
    if window.service._worker.settled or time.time() - started > 150:
        QTimer.singleShot(0, app.quit)
    else:
        QTimer.singleShot(100, quit_when_settled)

window.service.model_loaded.connect(loaded)
window.service.cell_classified.connect(classified)
if path is None or not window.open_path(path):
    window.open_example()
QTimer.singleShot(120_000, app.quit)
app.exec()
window.service.shutdown()  # waits for the model thread (it may be writing the quick start)
with open(out, "w") as f:
    json.dump(marks, f)
import os; os._exit(0)
"""

MARKS = ("interpreter", "imports", "window", "model", "classified")


def one_run(cell: str | None, cache: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "marks.json"
        env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               "XDG_CONFIG_HOME": folder, "XDG_DATA_HOME": folder,
               "XDG_CACHE_HOME": cache}  # fmt: skip
        started = time.time()
        subprocess.run([sys.executable, "-c", CHILD, repr(started), cell or "", str(out)],
                       env=env, check=True, timeout=180)  # fmt: skip
        return json.loads(out.read_text())


def one_cli_run(cell: str, cache: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        started = time.time()
        subprocess.run([sys.executable, "-m", "karyo_gui", "classify", cell, "--json",
                        str(Path(folder) / "out.json")], env=env, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
        return {"classified": time.time() - started}


def cli_main(args: argparse.Namespace) -> int:
    from karyo_gui.core.loaders import write_cell
    from karyo_gui.core.opening import example_case

    with tempfile.TemporaryDirectory() as fresh:
        cache = args.cache or str(Path(fresh) / "cache")
        cell = args.cell or str(write_cell(example_case().cells[0], Path(fresh) / "example",
                                           labelled=False))  # fmt: skip
        warm = [one_cli_run(cell, cache) for _ in range(args.warm_up)]
        runs = [one_cli_run(cell, cache)["classified"] for _ in range(args.runs)]
    if warm:
        print(f"first run: {warm[0]['classified']:.2f} s")
    print(f"karyo classify {args.cell or '(the example cell)'} --json OUT: {args.runs} runs, "
          f"{os.cpu_count()} CPUs: median {statistics.median(runs):.2f} s, max {max(runs):.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"first": warm[:1], "runs": runs}, indent=2))
    return 0


def slowest_imports(module: str, count: int = 10) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    return [f"{micro / 1e6:6.2f} s {name}" for micro, name in rows[:count]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cell", nargs="?")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warm-up", type=int, default=1)
    parser.add_argument("--imports", action="store_true")
    parser.add_argument("--cache", help="quick-start cache folder (default: a fresh one)")
    parser.add_argument("--cli", action="store_true", help="time karyo classify instead")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.cli:
        return cli_main(args)
    with tempfile.TemporaryDirectory() as fresh:
        cache = args.cache or fresh
        warm = [one_run(args.cell, cache) for _ in range(args.warm_up)]
        runs = [one_run(args.cell, cache) for _ in range(args.runs)]
    if warm:
        first = warm[0]
        print(f"first start ({'quick start' if first.get('quick_start') else 'network built'}): "
              + ", ".join(f"{m} {first[m]:.2f} s" for m in MARKS if m in first))
    quick = sum(bool(run.get("quick_start")) for run in runs)
    print(f"karyo gui {args.cell or '(the example cell)'}: {args.runs} runs ({quick} quick "
          f"starts), {os.cpu_count()} CPUs; seconds since the process started (median, max)")
    summary = {}
    for mark in (*MARKS, "model_own_seconds", "classify_seconds", "peak_mb"):
        values = [run[mark] for run in runs if mark in run]
        if not values:
            continue
        summary[mark] = {"median": statistics.median(values), "max": max(values)}
        unit = "MB" if mark == "peak_mb" else "s"
        print(f"  {mark:>18}: {statistics.median(values):7.2f} {unit}  (max {max(values):.2f})")
    if args.imports:
        for module in ("karyo_gui.qt.main_window", "karyo_gui.inference.classifier"):
            print(f"slowest imports under {module}:")
            print("\n".join("  " + line for line in slowest_imports(module)))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"first": warm[:1], "runs": runs, "summary": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
