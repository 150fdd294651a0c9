"""Replay the thirteen items of issue 25 the way an adversarial user reproduced them, against
karyo's real entry points, and print a pass/fail table.

    python bench/hardening_replay.py [--only 3 5] [--json OUT] [--keep]

Every crafted input is built in a temporary folder: generated cells (karyo_gui.core.synthetic),
FIFOs, a private copy of the /dev/null device node (never the system's own), case files with
Infinity, 200,000 nested brackets, 5,000-digit numbers, duplicate ids and 10^6 chromosomes,
copies of the shipped model with swapped, int8 or non-finite weights and headers that ask for
gigabytes, TIFFs with wrong StripByteCounts, a sign-off typed in by hand, a Y called at
p = 0.71.

The items run one after the other in a worker process (torch and Qt are imported once; the
window runs offscreen, with settings and autosave folders of its own, never the user's).
Commands run as a user runs them: ``karyo classify`` as a subprocess of the console script
where it refuses before any model is loaded, otherwise ``karyo_gui.cli.main`` and
``trainer.cli.main`` in the worker (what the console scripts call: an exception escaping
them is the traceback the user would see). Window A of item 1 is a process of its own. Nothing
hangs the replay:

* a FIFO that karyo opens is seen from the other end by a watchdog, released (so a blocked
  read ends) and the item fails ("karyo opened ... FIFO");
* an item without a result within its limit (its CPU budget, times how slow the machine is
  just then, measured before each item) is killed and fails; the worker starts again for
  the items after it;
* a worker whose memory passes 4 GiB is killed, and its item fails.

One row per item: number, name, PASS/FAIL, wall and CPU seconds (the worker's threads and its
subprocesses), and one line of evidence (what karyo printed or did). Exits 0 when every item
passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import resource
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()
_console = Path(sys.executable).with_name("karyo")
KARYO = [str(_console)] if _console.is_file() else [sys.executable, "-m", "karyo_gui"]
MEMORY_CAP = 4 * 2**30
PAGE = os.sysconf("SC_PAGE_SIZE")
FD_VARIABLE = "KARYO_REPLAY_FD"
FLAT_CPU_LIMIT = 60  # item 4: CPU seconds for classifying the 150 PNGs (it: 55 s)
# the smallest training run that exercises the trainer (item 10)
TINY = ["--arch", "resnet10t", "--embedding-dim", "32", "--input-height", "64",
        "--input-width", "32", "--generated-cells", "2", "--epochs", "1",
        "--steps-per-epoch", "2", "--device", "cpu", "--log-every", "1"]


# ====================================================================== results and checks
class Failed(Exception):
    """An expectation of an item that did not hold; the message is the evidence."""


def expect(condition: object, evidence: str) -> None:
    if not condition:
        raise Failed(evidence)


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def shown(text: str | None, limit: int = 220) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(error: BaseException) -> str:
    """``Type: message at file:line`` of the innermost frame: a traceback in one line."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}: {shown(str(error), 160)}{where}"


@dataclass
class Ran:
    """What a command did: exit status (None: an exception escaped), output, CPU seconds and
    memory (peak RSS of a subprocess, or how far the worker's RSS grew for an in-process run)."""

    rc: int | None
    out: str
    err: str
    cpu: float
    peak_mb: float
    escaped: str | None = None


PROGRESS_BAR = re.compile(r"^\s*\d+%\|")  # tqdm's, which the trainer draws on stderr


def without_progress(text: str) -> str:
    """What a command said on stderr, without the trainer's progress bar."""
    lines = re.split(r"[\r\n]+", text)
    return "\n".join(line for line in lines if line.strip() and not PROGRESS_BAR.match(line))


def expect_refusal(ran: Ran, what: str, *needles: str, status: int = 2) -> str:
    """The one-line refusal karyo promises: exit ``status``, one line naming ``needles``."""
    message = without_progress(ran.err).strip()
    if ran.escaped:
        raise Failed(f"{what}: a traceback ({ran.escaped})")
    expect(ran.rc == status,
           f"{what}: exit status {ran.rc}, not {status}: {shown(message or ran.out)}")
    expect(one_line(message), f"{what}: not a one-line message: {shown(message)}")
    missing = [needle for needle in needles if needle not in message]
    expect(not missing, f"{what}: the message does not name {missing}: {shown(message)}")
    return message


def expect_success(ran: Ran, what: str) -> None:
    if ran.escaped:
        raise Failed(f"{what}: a traceback ({ran.escaped})")
    expect(ran.rc == 0, f"{what}: exit status {ran.rc}: {shown(ran.err or ran.out)}")


def slowdown() -> float:
    """How many wall seconds a CPU second takes here just now (1: an idle machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    while time.process_time() - cpu < 0.05:
        pass
    return max(1.0, (time.perf_counter() - wall) / (time.process_time() - cpu))


def _rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakRss:
    """How far this process's resident memory grows while the block runs (sampled)."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def grown_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class FifoWatch(threading.Thread):
    """Looks from the other end whether karyo holds one of the replay's FIFOs open: a reader
    (a crop path that is a FIFO) or a writer (an output path that is one). Seen once, the
    FIFO is released (the probe itself gives a blocked reader EOF) and named in ``opened``."""

    def __init__(self) -> None:
        super().__init__(name="fifo-watch", daemon=True)
        self.lock = threading.Lock()
        self.fifos: dict[Path, str] = {}
        self.opened: dict[Path, str] = {}

    def add(self, path: Path, kind: str) -> Path:
        os.mkfifo(path)
        with self.lock:
            self.fifos[path] = kind
        return path

    def forget(self, paths) -> None:
        with self.lock:
            for path in paths:
                self.fifos.pop(path, None)

    def run(self) -> None:
        while True:
            time.sleep(0.25)
            with self.lock:
                watched = list(self.fifos.items())
            for path, kind in watched:
                if path not in self.opened and self._held(path, kind):
                    self.opened[path] = "for reading" if kind == "input" else "for writing"

    @staticmethod
    def _held(path: Path, kind: str) -> bool:
        try:
            if kind == "input":  # opening the write end succeeds only while a reader waits
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                return True
            end = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                return os.read(end, 1) != b""  # b"": no writer; data: one wrote
            except BlockingIOError:
                return True  # a writer holds it open
            finally:
                os.close(end)
        except OSError:  # ENXIO: nobody reads it; or it is gone
            return False


# ====================================================================== the worker's context
class Driver:
    """A review window in a process of its own (``--window-driver``), driven by JSON lines."""

    def __init__(self, folder: Path) -> None:
        self.log = (folder / "window-a.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(THIS), "--window-driver"], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
        )
        self.ready = self._reply()

    def _reply(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("REPLY "):
                answer = json.loads(line[6:])
                if answer.get("escaped"):
                    raise Failed(f"window A: a traceback ({answer['escaped']})")
                return answer
        raise Failed(f"window A's process ended (see {self.log.name})")

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # SIGKILL: a crash, nothing tidied up
        self.process.wait()
        self.log.close()


class Context:
    """One item's folder, its FIFOs, windows and helper processes, and ways to run karyo."""

    def __init__(self, folder: Path, send: Callable[..., None], watch: FifoWatch) -> None:
        self.folder = folder
        self._send = send
        self.watch = watch
        self.factor = slowdown()
        self.windows: list = []
        self.drivers: list[Driver] = []
        self.fifos: list[Path] = []

    def step(self, text: str) -> None:
        self._send(step=text)

    def path(self, *parts: str) -> Path:
        path = self.folder.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def fifo(self, path: Path, kind: str = "input") -> Path:
        self.fifos.append(self.watch.add(path, kind))
        return path

    def no_fifo_opened(self, what: str) -> None:
        opened = [(path, how) for path, how in self.watch.opened.items() if path in self.fifos]
        if opened:
            path, how = opened[0]
            raise Failed(f"{what}: karyo opened the FIFO {path.name} {how} (a plain open "
                         "blocks there forever; the replay released it)")

    def run(self, argv: list[str], what: str) -> Ran:
        """A command as a subprocess (no time limit of its own: the FIFO watch releases a
        blocked open, the item's limit ends anything else)."""
        self.step(what)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=err)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            return Ran(process.returncode, out.read().decode(errors="replace"),
                       err.read().decode(errors="replace"), usage.ru_utime + usage.ru_stime,
                       usage.ru_maxrss / 1024)

    def call(self, main: Callable[[list[str]], int], argv: list[str], what: str) -> Ran:
        """A console script's ``main(argv)`` in this process, its output captured."""
        self.step(what)
        out, err = io.StringIO(), io.StringIO()
        cpu, escaped, rc = time.process_time(), None, None
        with PeakRss() as memory, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as stop:  # argparse refusing an option
                rc = stop.code if isinstance(stop.code, int) else 2
            except Exception as error:
                escaped = summary(error)
        return Ran(rc, out.getvalue(), err.getvalue(), time.process_time() - cpu,
                   memory.grown_mb, escaped)

    # ------------------------------------------------------------------ the window
    def app(self):
        from PySide6.QtWidgets import QApplication

        return QApplication.instance() or QApplication(["karyo-replay"])

    def window(self, load_model: bool = False):
        from karyo_gui.qt.main_window import MainWindow

        self.app()
        window = MainWindow(load_model=load_model)
        window.ask_on_close = False
        window.show()
        self.windows.append(window)
        return window

    def close_window(self, window) -> None:
        window.close()
        self.windows.remove(window)
        self.pump(0.05)

    def driver(self) -> Driver:
        self.drivers.append(Driver(self.folder))
        return self.drivers[-1]

    def pump(self, seconds: float = 0.1) -> None:
        app, end = self.app(), time.perf_counter() + seconds
        while True:
            app.processEvents()
            if time.perf_counter() >= end:
                return
            time.sleep(0.01)

    def wait_until(self, ready: Callable[[], object], what: str, cpu: float = 30.0) -> None:
        """Run the window's events until ``ready()``; Failed after ``cpu`` seconds of this
        process's CPU or that times the machine's slowness in wall seconds."""
        app = self.app()
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        wall_limit = (4 * cpu + 10) * self.factor
        while not ready():
            app.processEvents()
            time.sleep(0.01)
            if (time.process_time() - cpu_start > cpu
                    or time.perf_counter() - wall_start > wall_limit):
                raise Failed(f"{what}: still waiting after "
                             f"{time.perf_counter() - wall_start:.0f} s")

    def close(self) -> None:
        for driver in self.drivers:
            driver.kill()
        for window in list(self.windows):
            with contextlib.suppress(Exception):
                window.close()
        self.windows.clear()
        self.watch.forget(self.fifos)


# ====================================================================== crafted inputs
def chromosome_type(name: str):
    from karyo_gui.core.labels import ChromosomeType

    return next(t for t in ChromosomeType if t.display_name == name)


def first_of(cell, name: str):
    wanted = chromosome_type(name)
    return next(c for c in cell.chromosomes if c.label is wanted)


def generated_folder(ctx: Context, name: str, karyotype: str, seed: int,
                     labelled: bool = False) -> Path:
    from karyo_gui.core.loaders import write_cell
    from karyo_gui.core.synthetic import generate_cell

    return write_cell(generate_cell(karyotype, seed=seed, name=name), ctx.path(name),
                      labelled=labelled)


def rod(height: int = 60, width: int = 24, level: int = 40):
    import numpy as np

    crop = np.full((height, width), 255, np.uint8)
    crop[4 : height - 4, width // 2 - 4 : width // 2 + 4] = level
    crop[height // 2, :] = 200
    return crop


def png_bytes(image) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def white_png(width: int, height: int) -> bytes:
    """Mostly white: a few kB on disk, width x height pixels decoded."""
    import numpy as np

    image = np.full((height, width), 255, np.uint8)
    image[height // 2, : width // 2] = 0
    return png_bytes(image)


def small_case_text(path: Path) -> str:
    """A saved case of three crops (one with a reviewer's label); its JSON text."""
    from karyo_gui.core.case import Case, Cell, Chromosome
    from karyo_gui.core.case_file import save_case

    cell = Cell(name="c", chromosomes=[
        Chromosome(id="c001", image=rod(60)),
        Chromosome(id="c002", image=rod(50, level=80)),
        Chromosome(id="c003", image=rod(40, level=120)),
    ])
    cell.set_manual_label("c001", chromosome_type("2"), by="dr.a")
    save_case(Case(case_id="x", cells=[cell], notes="n"), path)
    return path.read_text(encoding="utf-8")


def embedded_case(path: Path, png: bytes, count: int) -> Path:
    """A case file of one cell whose ``count`` chromosomes embed ``png``."""
    import base64

    from karyo_gui.core.case import Case
    from karyo_gui.core.case_file import save_case
    from karyo_gui.core.synthetic import generate_cell

    cell = generate_cell("46,XY", seed=1)
    cell.chromosomes = cell.chromosomes[:1]
    save_case(Case("c1", [cell]), path)
    document = json.loads(path.read_text(encoding="utf-8"))
    [template] = document["case"]["cells"][0]["chromosomes"]
    encoded = base64.b64encode(png).decode("ascii")
    document["case"]["cells"][0]["chromosomes"] = [
        {**template, "id": f"e{index:04d}", "image_png": encoded} for index in range(count)
    ]
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def rewrite_model(source: Path, target: Path, change_state=None, change_header=None,
                  keep_id: bool = False) -> Path:
    """A copy of a model file with its weights and/or header changed; unless ``keep_id``
    the header's model_id is recomputed, so that only the change itself is wrong."""
    from safetensors.torch import load_file, save_file

    from trainer.checkpoint import HEADER_KEY, read_header, weights_id

    state = load_file(str(source))
    header = read_header(source)
    if change_state:
        change_state(state)
    if change_header:
        change_header(header)
    if not keep_id:
        header.model_id = weights_id(state, header.input_preprocessing)
    save_file(state, str(target), metadata={HEADER_KEY: header.to_json()})
    return target


def swap_types_1_and_2(state) -> None:
    for name in ("head.weight", "head.bias"):
        state[name] = state[name][[1, 0, *range(2, 24)]].contiguous()


def exporter_tiff(crop) -> bytes:
    """An uncompressed TIFF as some export tools write it: several strips listed in
    StripOffsets while RowsPerStrip says one strip holds the whole image, StripByteCounts of
    1 byte each, and an ImageDescription without its terminating NUL (see
    tests/test_hardening.py). Pillow calls it truncated; libtiff reads it right."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="TIFF", tiffinfo={
        278: max(1, crop.shape[0] // 5), 270: "exported by tool"})
    data = bytearray(buffer.getvalue())
    first = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[first : first + 2])[0]):
        entry = first + 2 + 12 * k
        tag, kind, count = struct.unpack("<HHI", data[entry : entry + 8])
        if tag == 278:  # RowsPerStrip: the whole image
            data[entry + 8 : entry + 12] = struct.pack("<I", crop.shape[0])
        elif tag == 279:  # StripByteCounts: 1 byte each
            code = "H" if kind == 3 else "I"
            counts = struct.pack(f"<{count}{code}", *[1] * count)
            where = entry + 8 if len(counts) <= 4 else struct.unpack(
                "<I", data[entry + 8 : entry + 12])[0]
            data[where : where + len(counts)] = counts
        elif tag == 270:  # ASCII without its NUL
            data[entry + 4 : entry + 8] = struct.pack("<I", count - 1)
    return bytes(data)


def assigning_classifier():
    """karyo's Classifier without its network: ``Classifier.assign`` is the half of
    classifying that turns a model's probabilities into the cell's types and flags."""
    from karyo_gui.core.assignment import HOMOLOG_UNLIKE, TYPE_DOUBT, KaryotypePrior
    from karyo_gui.inference.classifier import Classifier

    classifier = Classifier.__new__(Classifier)
    classifier.prior, classifier.doubt = KaryotypePrior(), TYPE_DOUBT  # karyo classify's default
    classifier.homolog_margin, classifier.temperature = HOMOLOG_UNLIKE, 1.0
    classifier.header = SimpleNamespace(model_id="replay", name="replay", arch="none")
    return classifier


# ====================================================================== the items
@dataclass(frozen=True)
class Item:
    number: int
    name: str
    budget: float  # CPU seconds, generously, on an idle 2-core machine
    run: Callable[[Context], str]


ITEMS: dict[int, Item] = {}


def item(number: int, name: str, budget: float):
    def register(function: Callable[[Context], str]) -> Callable[[Context], str]:
        ITEMS[number] = Item(number, name, budget, function)
        return function

    return register


@item(1, "two windows on one case file", 30)
def two_windows(ctx: Context) -> str:
    from karyo_gui.core.case import Case
    from karyo_gui.core.case_file import SUFFIX, load_case, save_case
    from karyo_gui.core.synthetic import generate_cell
    from karyo_gui.qt.settings import pending_recoveries

    case_file = ctx.path("shared") / f"P7{SUFFIX}"
    save_case(Case(case_id="P7", cells=[generate_cell("46,XY", seed=3)]), case_file)
    ctx.step("window A (a process of its own) opens the case file")
    a = ctx.driver()
    opened = a.ask(op="open", path=str(case_file))
    expect(opened["ok"], f"window A could not open {case_file.name}: {opened['error']}")
    ctx.step("window B opens the same case file")
    b = ctx.window()
    expect(b.open_path(case_file), f"window B could not open it: {b.last_error}")
    expect(b.shared_with is not None, "window B was not told the case is open in window A")
    expect("also open elsewhere" in b.windowTitle(), f"B's title: {b.windowTitle()!r}")

    ctx.step("A moves a 9 to 10 and saves; B, on the old version, moves a 21 and saves")
    moved = a.ask(op="reassign", source="9", target="10")["id"]
    expect(a.ask(op="save", path=str(case_file))["ok"], "window A could not save")
    expect(b.reassign(first_of(b.current_cell, "21").id, chromosome_type("22")),
           "B's edit was not made")
    asked = []
    b.answer = lambda kind, text, choices: asked.append(choices) or "Cancel"
    saved = b.save_to(case_file)
    b.answer = None
    expect(not saved and asked, "B saved over A's save without a word: A's edit is lost")
    expect({"Reload", "Overwrite", "Cancel"} <= set(asked[0])
           and any(c.startswith("Save as") for c in asked[0]), f"B was offered {asked[0]}")
    expect(not b.save_to(case_file) and "not saved" in (b.last_error or ""),
           "with nobody to answer, B's save was not refused")
    label = load_case(case_file).cells[0].chromosome(moved).label
    expect(label is chromosome_type("10"), f"A's edit is gone from the file ({moved}: {label})")
    refused = b.last_error

    ctx.step("A and B autosave their unsaved edits")
    unsaved = a.ask(op="reassign", source="1", target="2")["id"]
    recovery_a, recovery_b = a.ask(op="autosave")["path"], b.autosave()
    expect(recovery_a and recovery_b and Path(recovery_a) != Path(recovery_b),
           f"both windows autosave into one file: {recovery_a} / {recovery_b}")
    ctx.step("window A crashes (SIGKILL); window C starts")
    a.kill()
    c = ctx.window()
    offered = [r.path for r in pending_recoveries(c.session)]
    expect(Path(recovery_a) in offered, f"A's autosaved edits are not offered: {offered}")
    expect(Path(recovery_b) not in offered, "B's edits are offered while B still runs")
    label = load_case(Path(recovery_a)).cells[0].chromosome(unsaved).label
    expect(label is chromosome_type("2"), f"A's recovery file lacks its edit ({label})")
    expect(c.offer_recovery() is not None, "the new window offers nothing to recover")
    return (f"B told 'open in another karyo window'; B's save asked {'/'.join(asked[0])}, "
            f"unanswered: \"{shown(refused, 90)}\"; recovery A ≠ B, A's offered after its crash")


@item(2, "saving writes through links, not over devices", 25)
def save_targets(ctx: Context) -> str:
    from karyo_gui.cli import main as karyo
    from karyo_gui.core.case import Case, Orientation
    from karyo_gui.core.case_file import load_case, save_case
    from karyo_gui.core.loaders import load_cell

    cell = generated_folder(ctx, "p", "45,X", 9101)
    fifo = ctx.fifo(ctx.folder / "r-fifo.json", kind="output")
    ran = ctx.run([*KARYO, "classify", str(cell), "--json", str(fifo)],
                  "karyo classify CELL --json FIFO")
    ctx.no_fifo_opened("karyo classify --json FIFO")
    message = expect_refusal(ran, "--json FIFO", "not a regular file", fifo.name)
    expect(stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a regular file")

    device = ctx.folder / "null"  # the issue's /dev/null, as a node of the replay's own
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (OSError, AttributeError):
        tried = "no device node (mknod not allowed here)"
    else:
        ran = ctx.run([*KARYO, "classify", str(cell), "--json", str(device)],
                      "karyo classify CELL --json DEVICE (a copy of /dev/null)")
        expect_refusal(ran, "--json DEVICE", "not a regular file")
        expect(stat.S_ISCHR(os.stat(device).st_mode),
               "the device node was turned into a regular file")
        tried = "a /dev/null node refused"
    folder = ctx.path("folder.png")
    ran = ctx.run([*KARYO, "classify", str(cell), "--json", str(ctx.folder / "r.json"),
                   "--png", str(folder)], "karyo classify --png FOLDER")
    expect_refusal(ran, "--png FOLDER", "not a regular file")
    expect(folder.is_dir(), "the folder given as --png is gone")

    shared = ctx.path("shared")
    (shared / "r.json").write_text("old")
    (shared / "k.png").write_bytes(b"old")
    json_link, png_link = ctx.folder / "r-link.json", ctx.folder / "k-link.png"
    json_link.symlink_to(shared / "r.json")
    png_link.symlink_to(shared / "k.png")
    ran = ctx.call(karyo, ["classify", str(cell), "--device", "cpu", "--json", str(json_link),
                           "--png", str(png_link)], "karyo classify --json LINK --png LINK")
    expect_success(ran, "classify writing through links")
    expect(json_link.is_symlink() and png_link.is_symlink(), "a link was replaced by a file")
    count = json.loads((shared / "r.json").read_text())["cells"][0]["count"]
    expect(count == 45, f"the linked JSON holds count {count}, not 45")
    expect((shared / "k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n",
           "the linked PNG did not receive the karyogram")

    ctx.step("a case file linked into a reviewer's folder is saved")
    case = Case(case_id="P-1", cells=[load_cell(cell)])
    real = shared / "patient.karyo.json"
    save_case(case, real)
    mine = ctx.path("reviewer") / "patient.karyo.json"
    mine.symlink_to(real)
    first = case.cells[0].chromosomes[0].id
    case.cells[0].set_orientation(first, Orientation(180), by="dr.b")
    save_case(case, mine)
    expect(mine.is_symlink(), "Save replaced the linked case file by a file of its own")
    turned = load_case(real).cells[0].chromosome(first).orientation
    expect(turned == Orientation(180), "the shared case file did not receive the edit")
    return f"\"{shown(message, 100)}\"; {tried}; --json/--png/case file written through links"


@item(3, "FIFO and device crops; opening off the GUI thread", 25)
def fifo_crops(ctx: Context) -> str:
    from PySide6.QtWidgets import QPushButton

    import karyo_gui.qt.main_window as main_window_module
    from karyo_gui.cli import main as karyo
    from karyo_gui.core import images
    from karyo_gui.core.case import Case, Flag
    from karyo_gui.core.case_file import load_case, save_case
    from karyo_gui.core.images import CropReadError, read_crop
    from karyo_gui.core.loaders import load_cell, write_cell
    from karyo_gui.core.synthetic import generate_cell

    cell = generate_cell("46,XY", seed=3, name="S1")
    cell.chromosomes = cell.chromosomes[:5]
    crops = write_cell(cell, ctx.path("crops"), labelled=False)
    case_path = ctx.folder / "devices.karyo.json"
    save_case(Case("c1", [load_cell(crops)]), case_path)

    fifo = ctx.fifo(crops / "zz_pipe.png")
    ctx.step("load_cell: a folder whose crops include a FIFO")
    loaded = load_cell(crops)
    ctx.no_fifo_opened("opening a folder with a FIFO among its crops")
    expect(len(loaded) == 5, f"{len(loaded)} crops of 5 opened")
    problem = next((p for p in loaded.problems if fifo.name in p), "")
    expect("not a regular file" in problem, f"the FIFO is not in Load problems: {loaded.problems}")

    pipe = ctx.fifo(ctx.folder / "pipe.png")
    linked = ctx.folder / "linked.png"
    linked.symlink_to("/dev/urandom")
    document = json.loads(case_path.read_text(encoding="utf-8"))
    for chromosome, target in zip(document["case"]["cells"][0]["chromosomes"],
                                  [pipe, "/dev/zero", linked]):
        chromosome["source_path"] = str(target)
    case_path.write_text(json.dumps(document), encoding="utf-8")
    ctx.step("load_case: crops that are a FIFO, /dev/zero and a link to /dev/urandom")
    with PeakRss() as memory:
        [opened] = load_case(case_path).cells
    ctx.no_fifo_opened("opening a case file whose crop is a FIFO")
    for chromosome, name in zip(opened.chromosomes, ["pipe.png", "/dev/zero", "linked.png"]):
        expect(chromosome.image is None and Flag.IMAGE_MISSING in chromosome.flags,
               f"{name} was read as a crop")
        expect(any(name in p and "not a regular file" in p for p in opened.problems),
               f"{name} is not in Load problems: {opened.problems}")
    expect(memory.grown_mb < 300, f"opening it took {memory.grown_mb:.0f} MB")

    sparse = ctx.folder / "huge.png"
    with sparse.open("wb") as handle:  # 65 MiB that take no disk space
        handle.truncate(images.MAX_CROP_BYTES + 2**20)
    try:
        read_crop(sparse)
    except CropReadError as error:
        capped = str(error)
    else:
        raise Failed("a crop file of 65 MiB was read whole")
    expect(f"at most {images.MAX_CROP_BYTES // 2**20} MiB" in capped, capped)

    out = ctx.folder / "r.json"
    ran = ctx.call(karyo, ["classify", str(case_path), "--device", "cpu", "--json", str(out)],
                   "karyo classify on that case file")
    ctx.no_fifo_opened("karyo classify on the case file")
    expect_success(ran, "karyo classify on a case file with FIFO and device crops")
    report = json.loads(out.read_text())
    listed = report["problems"] + [p for c in report["cells"] for p in c["problems"]]
    expect(sum("not a regular file" in p for p in listed) >= 3, f"the report lists {listed}")

    ctx.step("the window opens the case file")
    window = ctx.window()
    expect(window.open_path(case_path), f"the window did not open it: {window.last_error}")
    ctx.no_fifo_opened("the window opening the case file")
    expect(window.problem_list.count() >= 3, "the window's Load problems do not list them")

    ctx.step("a slow read (a network share that does not answer): progress and Cancel")
    window.open_example("47,XY,+21")
    before = window.karyotype_label.text()
    gate, ran_in, real = threading.Event(), [], main_window_module.open_case

    def slow_open(path):
        ran_in.append(threading.current_thread())
        gate.wait(10 * ctx.factor)
        return real(path)

    main_window_module.open_case = slow_open
    try:
        other = write_cell(generate_cell("45,X", seed=1, name="S2"), ctx.path("S2.1"),
                           labelled=False)
        job = window.start_open(other)
        expect(job is not None, "the window refused to start opening")
        ctx.wait_until(lambda: window.open_progress is not None
                       and window.open_progress.isVisible(), "the progress dialog", cpu=10)
        expect(ran_in and ran_in[0] is not threading.main_thread(),
               "the case is read on the GUI thread")
        shown_text = window.open_progress.labelText()
        window.open_progress.findChild(QPushButton).click()
        expect(job.outcome is False, "Cancel did not end the open")
        gate.set()
        job.join(30 * ctx.factor)
        ctx.pump(0.2)
        expect(window.karyotype_label.text() == before,
               "the cancelled read replaced the case that was open")
    finally:
        gate.set()
        main_window_module.open_case = real
    return (f"FIFO, /dev/zero, /dev/urandom link not read (\"{shown(problem, 70)}\"); "
            f"{shown(capped, 110)}; a slow read shows '{shown_text}' off the GUI thread, "
            "Cancel keeps the open case")


@item(4, "decoding budgets per crop, cell and case", 110)
def budgets(ctx: Context) -> str:
    import cv2
    import numpy as np

    from karyo_gui.cli import main as karyo
    from karyo_gui.core.case_file import CaseFileError, load_case
    from karyo_gui.core.images import CropReadError, read_crop

    # a cell folder (one sub-folder per type) into whose chr1/ an export put 150 slides
    folder = generated_folder(ctx, "cell", "46,XY", 3, labelled=True)
    huge = white_png(4096, 4096)
    for index in range(150):
        (folder / "chr1" / f"slide_{index:03d}.png").write_bytes(huge)
    out = ctx.folder / "r.json"
    import karyo_gui.inference.classifier  # noqa: F401  (torch's own memory is not the cell's)

    ran = ctx.call(karyo, ["classify", str(folder), "--device", "cpu", "--json", str(out)],
                   "karyo classify: a cell of 46 crops and 150 white 4096 x 4096 PNGs")
    expect_success(ran, "classify with 150 huge PNGs")
    report = json.loads(out.read_text())
    problems = report["problems"] + [p for c in report["cells"] for p in c["problems"]]
    refused = [p for p in problems if "slide_" in p]
    expect(report["cells"][0]["count"] == 46, f"count {report['cells'][0]['count']}, not 46")
    expect(len(refused) == 150 and "4096 x 4096" in refused[0],
           f"{len(refused)} of the 150 refused: {shown(refused[0] if refused else '')}")
    expect(ran.cpu < 30 and ran.peak_mb < 1500,
           f"classify took {ran.cpu:.1f} s CPU and {ran.peak_mb:.0f} MB more memory")
    first = f"150 x 4096² PNGs ({150 * len(huge) / 1e6:.1f} MB): {ran.cpu:.1f} s CPU, " \
            f"+{ran.peak_mb:.0f} MB"

    ctx.step("load_case: 1000 embedded 4096 x 4096 crops")
    path = embedded_case(ctx.folder / "embedded.karyo.json", huge, 1000)
    cpu = time.process_time()
    with PeakRss() as memory:
        [cell] = load_case(path).cells
    cpu = time.process_time() - cpu
    expect(len(cell) == 1000 and all(c.image is None for c in cell.chromosomes),
           "the embedded crops were decoded")
    expect(any("4096 x 4096" in p for p in cell.problems), f"problems: {cell.problems[:2]}")
    expect(cpu < 15 and memory.grown_mb < 1000,
           f"opening it took {cpu:.1f} s CPU and {memory.grown_mb:.0f} MB")
    second = f"{path.stat().st_size / 1e6:.0f} MB case file: {cpu:.1f} s, +{memory.grown_mb:.0f} MB"

    ctx.step("a case file listing 10^6 chromosomes")
    million = ctx.folder / "million.karyo.json"
    chromosomes = ",".join(['{"id":"c"}'] * 10**6)
    million.write_text(
        '{"format":"karyo-case","schema_version":2,"case":{"case_id":"x",'
        '"created":"2024-01-01T00:00:00+00:00","cells":[{"name":"A","status":"unreviewed",'
        f'"audit":[],"chromosomes":[{chromosomes}]}}]}}}}', encoding="utf-8")
    cpu = time.process_time()
    try:
        load_case(million)
    except CaseFileError as error:
        message = str(error)
    else:
        raise Failed("a case file of 10^6 chromosomes was opened")
    expect(time.process_time() - cpu < 5 and one_line(message) and million.name in message,
           f"refused after {time.process_time() - cpu:.1f} s CPU: {shown(message)}")
    window = ctx.window()
    window.open_example("46,XY")
    cpu = time.process_time()
    expect(not window.open_path(million), "the window opened it")
    expect(million.name in (window.last_error or "") and time.process_time() - cpu < 10,
           f"the window: {window.last_error!r} after {time.process_time() - cpu:.1f} s CPU")

    ctx.step("a JPEG with 2000 EXIF segments")
    _, encoded = cv2.imencode(".jpg", np.full((120, 40), 180, np.uint8))
    jpeg = encoded.tobytes()
    segment = b"\xff\xe1" + struct.pack(">H", 4002) + b"Exif\0\0" + bytes(3994)
    crafted = ctx.folder / "crafted.jpg"
    crafted.write_bytes(jpeg[:2] + segment * 2000 + jpeg[2:])
    cpu = time.process_time()
    try:
        read_crop(crafted)
    except CropReadError as error:
        jpeg_message = str(error)
    else:
        raise Failed("a JPEG of 2000 EXIF segments was decoded")
    expect(time.process_time() - cpu < 1, f"refused after {time.process_time() - cpu:.1f} s")
    held = f"{first}; {second}; \"{shown(message, 80)}\"; {shown(jpeg_message, 50)}"

    # the input as it stands: the 150 PNGs alone in a folder, against its figures
    flat = ctx.path("flat")
    for index in range(150):
        (flat / f"slide_{index:03d}.png").write_bytes(huge)
    ran = ctx.run(["bash", "-c", f'ulimit -t {FLAT_CPU_LIMIT}; exec "$@"', "karyo", *KARYO,
                   "classify", str(flat), "--device", "cpu", "--json",
                   str(ctx.folder / "flat.json")],
                  f"karyo classify on a folder of only the 150 PNGs ({FLAT_CPU_LIMIT} s CPU)")
    searched = ran.err.count("no chromosomes found")
    expect(ran.rc in (0, 2) and ran.cpu < 55 and ran.peak_mb < 2000,
           "a folder of only the 150 PNGs (the issue's input): karyo classify "
           + (f"killed at the {FLAT_CPU_LIMIT} s CPU limit" if ran.rc not in (0, 2)
              else f"exit {ran.rc} after {ran.cpu:.0f} s CPU")
           + f" (the issue: 55 s), {ran.peak_mb:.0f} MB; it opened them as metaphase images "
           f"and the finder had searched {searched} of them; the rest held: {held}")
    return f"{held}; only the 150 PNGs: {ran.cpu:.0f} s CPU, {ran.peak_mb:.0f} MB"


@item(5, "crafted case-file JSON", 25)
def crafted_case_files(ctx: Context) -> str:
    from karyo_gui.core.case_file import CaseFileError, load_case
    from trainer.cli import main as trainer

    text = small_case_text(ctx.folder / "template.karyo.json")
    expect('"rotation":0' in text and '"notes":"n"' in text, "the template changed its form")
    crafted = {
        "infinity": (text.replace('"rotation":0', '"rotation":Infinity', 1), "Infinity"),
        "nested": (text.replace('"notes":"n"', '"notes":' + "[" * 200_000 + "]" * 200_000),
                   "nested too deeply"),
        "digits": (text.replace('"rotation":0', '"rotation":' + "9" * 5000, 1), "5,000 digits"),
    }
    window = ctx.window()
    window.open_example("46,XY")
    shown_before = window.karyotype_label.text()
    messages = []
    for name, (content, reason) in crafted.items():
        path = ctx.folder / f"{name}.karyo.json"
        path.write_text(content, encoding="utf-8")
        ctx.step(f"load_case on the {name} case file")
        try:
            load_case(path)
        except CaseFileError as error:
            message = str(error)
        except Exception as error:
            raise Failed(f"load_case({path.name}): {summary(error)}") from None
        else:
            raise Failed(f"{path.name} was opened")
        expect(message.startswith(str(path)) and reason in message and one_line(message),
               f"load_case: {shown(message)}")
        messages.append(message[len(str(path)) + 2 :])
        ran = ctx.run([*KARYO, "classify", str(path), "--json", str(ctx.folder / "r.json")],
                      f"karyo classify {path.name}")
        expect_refusal(ran, f"karyo classify {path.name}", path.name)
        ran = ctx.call(trainer, ["train", "--case-files", str(path), *TINY, "--output",
                                 str(ctx.folder / f"run-{name}")],
                       f"trainer train --case-files {path.name}")
        expect_refusal(ran, f"trainer train --case-files {path.name}", path.name)
        ctx.step(f"the window opens {path.name}")
        expect(not window.open_path(path), f"the window opened {path.name}")
        error = window.last_error or ""
        expect(path.name in error and one_line(error), f"the window says {shown(error)!r}")
        expect(window.karyotype_label.text() == shown_before, "the open case was lost")
    return "CaseFileError, exit 2 (classify, train), window keeps its case: " + " / ".join(
        shown(m, 60) for m in messages)


@item(6, "duplicate chromosome ids", 15)
def duplicate_ids(ctx: Context) -> str:
    from karyo_gui.core.case import Case
    from karyo_gui.core.case_file import load_case, save_case
    from karyo_gui.core.synthetic import generate_cell

    path = ctx.folder / "duplicates.karyo.json"
    save_case(Case("dup", [generate_cell("45,X", seed=4, name="D1")]), path)
    document = json.loads(path.read_text(encoding="utf-8"))
    chromosomes = document["case"]["cells"][0]["chromosomes"]
    first = chromosomes[0]["id"]
    chromosomes[1]["id"] = chromosomes[2]["id"] = first
    path.write_text(json.dumps(document), encoding="utf-8")
    [cell] = load_case(path).cells
    ids = [c.id for c in cell.chromosomes]
    expect(len(cell) == 45 and len(set(ids)) == 45, f"{len(cell)} crops, {len(set(ids))} ids")
    problem = next((p for p in cell.problems if first in p), "")
    expect(f"{first} -> " in problem, f"the renaming is not in Load problems: {cell.problems}")

    ctx.step("the window draws and edits the renamed crops")
    window = ctx.window()
    expect(window.open_path(path), f"the window did not open it: {window.last_error}")
    shown_cell = window.current_cell
    drawn = len(window.scene.chromosome_items)
    counted = window.count_label.text()
    expect(drawn == 45 and counted.startswith("45"), f"{counted}, {drawn} drawn")
    second, third = shown_cell.chromosomes[1], shown_cell.chromosomes[2]
    before = (shown_cell.chromosomes[0].label, third.label)
    target = next(t for t in (chromosome_type("5"), chromosome_type("6")) if t is not second.label)
    expect(window.reassign(second.id, target), f"the edit of {second.id} was not made")
    expect(second.label is target
           and (shown_cell.chromosomes[0].label, third.label) == before,
           "the edit hit another crop of the same id")
    return f"{counted}, {drawn} drawn; \"{shown(problem, 110)}\"; an edit of {second.id} hits it"


@item(7, "model files replaced or of the wrong kind", 25)
def model_files(ctx: Context) -> str:
    import torch

    from karyo_gui.cli import main as karyo
    from karyo_gui.inference.registry import ModelRegistry
    from trainer.checkpoint import CLASS_NAMES, SHIPPED_MODEL, read_header

    expect(SHIPPED_MODEL.is_file(), "no shipped model in resources/")
    cell = generated_folder(ctx, "cell", "46,XY", 5)
    shipped_id = read_header(SHIPPED_MODEL).model_id
    folder = ctx.path("install")
    swapped = rewrite_model(SHIPPED_MODEL, folder / SHIPPED_MODEL.name, swap_types_1_and_2,
                            keep_id=True)
    expect(read_header(swapped).model_id == shipped_id, "the swapped copy has another id")
    ran = ctx.call(karyo, ["classify", str(cell), "--device", "cpu", "--checkpoint",
                           str(swapped), "--json", str(ctx.folder / "r.json")],
                   "karyo classify with the shipped model's weights swapped for types 1, 2")
    message = expect_refusal(ran, "classify with swapped weights", swapped.name)
    registry = ModelRegistry(ctx.path("no-models"), shipped=swapped)
    expect(registry.models() == [], "the replaced shipped model is listed")
    expect(registry.problems and swapped.name in registry.problems[0], "and not named")
    registered = ctx.path("registered")
    rewrite_model(SHIPPED_MODEL, registered / "lab-model.safetensors", swap_types_1_and_2,
                  keep_id=True)
    registry = ModelRegistry(registered, shipped=None)
    expect(registry.models() == [], "a replaced registered model is listed")

    def int8(state):
        state["head.weight"] = (state["head.weight"] * 100).to(torch.int8)

    def nan(state):
        state["head.bias"][3] = float("nan")

    def class_order(header):
        header.class_names = [CLASS_NAMES[1], CLASS_NAMES[0], *CLASS_NAMES[2:]]

    refusals = []
    for name, change_state, change_header, needle in [
        ("int8", int8, None, "floating-point"),
        ("nan", nan, None, "non-finite"),
        ("order", None, class_order, "karyo's order"),
    ]:
        bad = rewrite_model(SHIPPED_MODEL, ctx.folder / f"{name}.safetensors", change_state,
                            change_header)
        ran = ctx.call(karyo, ["classify", str(cell), "--device", "cpu", "--checkpoint",
                               str(bad), "--json", str(ctx.folder / "r.json")],
                       f"karyo classify --checkpoint {bad.name}")
        refusals.append(expect_refusal(ran, f"classify with {bad.name}", bad.name, needle))
    return (f"\"{shown(message, 90)}\"; not listed; int8, NaN, class order refused: "
            + " / ".join(shown(r.split(": ", 1)[-1], 40) for r in refusals))


@item(8, "the header cannot drive allocations", 25)
def header_allocations(ctx: Context) -> str:
    from karyo_gui.cli import main as karyo
    from trainer.checkpoint import SHIPPED_MODEL

    expect(SHIPPED_MODEL.is_file(), "no shipped model in resources/")
    cell = generated_folder(ctx, "cell", "46,XY", 6)

    def vit_wide(header):
        header.arch = "vit_base_patch16_224"
        header.model_kwargs = {"embed_dim": 12000, "depth": 40}

    worst_cpu, worst_mb, messages = 0.0, 0.0, []
    for slug, change, needle in [
        ("embedding", lambda h: setattr(h, "embedding_dim", 2_000_000), "embedding_dim 2000000"),
        ("vit-giant", lambda h: setattr(h, "arch", "vit_giant_patch14_224"), "parameters"),
        ("vit-wide", vit_wide, "embed_dim=12000"),
        ("height", lambda h: h.preprocessing.update(height=100_000), "height 100000"),
        ("width", lambda h: h.preprocessing.update(width=0), "width 0"),
    ]:
        bad = rewrite_model(SHIPPED_MODEL, ctx.folder / f"{slug}.safetensors",
                            change_header=change, keep_id=True)
        ran = ctx.call(karyo, ["classify", str(cell), "--device", "cpu", "--checkpoint",
                               str(bad), "--json", str(ctx.folder / "r.json")],
                       f"karyo classify --checkpoint {bad.name}")
        messages.append(expect_refusal(ran, f"classify with {bad.name}", bad.name, needle))
        expect(ran.cpu < 10 and ran.peak_mb < 1000,
               f"{bad.name}: refused after {ran.cpu:.1f} s CPU and {ran.peak_mb:.0f} MB")
        worst_cpu, worst_mb = max(worst_cpu, ran.cpu), max(worst_mb, ran.peak_mb)
    return (f"5 headers refused, exit 2, at most {worst_cpu:.1f} s CPU, +{worst_mb:.0f} MB: "
            + " / ".join(shown(m.split(": ", 1)[-1], 45) for m in messages[:2]))


@item(9, "a refused model is not remembered", 35)
def remembered_model(ctx: Context) -> str:
    from karyo_gui.qt.settings import Settings, config_dir
    from trainer.checkpoint import default_checkpoint

    expect(default_checkpoint().is_file(), "no shipped model in resources/")
    shipped = default_checkpoint().resolve()
    bad = ctx.folder / "lab.safetensors"
    bad.write_bytes(b"not a model")

    ctx.step("a start: the window loads the shipped model")
    first = ctx.window(load_model=True)
    ctx.wait_until(lambda: first.service.classifier is not None, "the shipped model", cpu=60)
    ctx.step("Model > Load model file: a file that fails to load")
    first.load_model(bad)
    ctx.wait_until(lambda: bad.name in (first.last_error or ""), "the refusal", cpu=30)
    refusal = first.last_error
    expect(first.service.classifier.path.resolve() == shipped, "the shipped model was dropped")
    first.settings.store.sync()
    ini = config_dir() / "karyo.ini"
    stored = ini.read_text(errors="replace") if ini.is_file() else ""
    expect(bad.name not in stored and Settings().model_path != str(bad),
           f"the refused file was remembered ({ini})")
    ctx.close_window(first)

    ctx.step("the next start")
    second = ctx.window(load_model=True)
    ctx.wait_until(lambda: second.service.classifier is not None or second.model_problem,
                   "a model at the next start", cpu=60)
    expect(second.service.classifier is not None
           and second.service.classifier.path.resolve() == shipped,
           f"the next start has no model: {second.model_problem}")
    ctx.close_window(second)

    ctx.step("a start whose remembered model fails to load")
    settings = Settings()
    settings.model_path = str(bad)
    settings.store.sync()
    third = ctx.window(load_model=True)
    ctx.wait_until(lambda: third.service.classifier is not None, "the fallback model", cpu=90)
    expect(third.service.classifier.path.resolve() == shipped, "not the shipped model")
    said = third.last_error or ""
    expect(bad.name in said and "shipped model" in said, f"the window said {said!r}")
    return f"\"{shown(refusal, 60)}\" not remembered; next start: shipped; \"{shown(said, 90)}\""


@item(10, "trainer options and divergence", 45)
def trainer_guard(ctx: Context) -> str:
    from karyo_gui.cli import main as karyo
    from trainer.checkpoint import load_checkpoint
    from trainer.cli import main as trainer
    from trainer.config import TrainConfig

    refused = []
    for option, value, needle in [
        ("--lr", "inf", "--lr inf"), ("--lr", "nan", "--lr nan"),
        ("--lr", "1e9", "--lr 1000000000.0"), ("--temperature", "0", "--temperature 0.0"),
        ("--threads", "-1", "--threads -1"), ("--weight-decay", "-5", "--weight-decay -5.0"),
    ]:
        out = ctx.folder / f"refused{len(refused)}"
        ran = ctx.call(trainer, ["train", *TINY, option, value, "--output", str(out)],
                       f"trainer train {option} {value}")
        refused.append(expect_refusal(ran, f"train {option} {value}", needle))
        expect(not out.exists(), f"train {option} {value} wrote {out.name}/")
    ran = ctx.call(karyo, ["evaluate", "--data", str(ctx.path("data")), "--json",
                           str(ctx.folder / "e.json"), "--batch-size", "0"],
                   "karyo evaluate --batch-size 0")
    refused.append(expect_refusal(ran, "evaluate --batch-size 0", "--batch-size 0"))

    # the guard behind the option checks: the run itself, as if --lr inf had got through
    check = TrainConfig.check
    TrainConfig.check = lambda self: None
    try:
        diverging = ctx.folder / "lr-inf"
        ran = ctx.call(trainer, ["train", *TINY, "--lr", "inf", "--output", str(diverging)],
                       "train --lr inf past the option check")
        diverged = expect_refusal(ran, "train --lr inf (unchecked)", "training diverged at step",
                                  status=1)
        written = sorted(p.name for p in diverging.glob("*.safetensors"))
        expect(not written and not (diverging / "state.pt").exists(),
               f"a diverged run wrote {written or 'state.pt'}")
        events = (diverging / "events.jsonl").read_text().splitlines()
        expect(json.loads(events[-1])["event"] == "diverged", "no 'diverged' event")
        huge = ctx.folder / "lr-1e9"
        ran = ctx.call(trainer, ["train", *TINY, "--lr", "1e9", "--output", str(huge)],
                       "train --lr 1e9 past the option check")
    finally:
        TrainConfig.check = check
    if ran.escaped:
        raise Failed(f"train --lr 1e9 (unchecked): a traceback ({ran.escaped})")
    expect(ran.rc in (0, 1) and one_line(without_progress(ran.err) or "ok"),
           f"train --lr 1e9 (unchecked): exit {ran.rc}: {shown(ran.err)}")
    for weights in huge.glob("*.safetensors"):  # written only when every value is finite
        load_checkpoint(weights)
    return (f"7 options refused in one line (\"{shown(refused[0], 70)}\"); unchecked --lr inf: "
            f"\"{shown(diverged, 80)}\", no weights; --lr 1e9: exit {ran.rc}")


@item(11, "exporter TIFFs with wrong strip sizes", 20)
def exporter_tiffs(ctx: Context) -> str:
    import numpy as np
    from PIL import Image

    from karyo_gui.cli import main as karyo
    from karyo_gui.core.images import CropReadError, decode_crop, read_crop
    from karyo_gui.core.synthetic import generate_cell

    cell = generate_cell("46,XX", seed=21, name="T1")
    folder = ctx.path("T1")
    files = []
    for index, chromosome in enumerate(cell.chromosomes):
        files.append(folder / f"T1_{index:03d}.tif")
        files[-1].write_bytes(exporter_tiff(chromosome.image))
    data = files[0].read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as pillow:
            pillow.load()
    except OSError as error:
        pillow_says = str(error)
    else:
        raise Failed("the crafted TIFF does not reproduce the issue: Pillow reads it")
    np.testing.assert_array_equal(read_crop(files[0]), cell.chromosomes[0].image)
    out = ctx.folder / "r.json"
    ran = ctx.call(karyo, ["classify", str(folder), "--device", "cpu", "--json", str(out)],
                   "karyo classify on a cell of exporter TIFFs")
    expect_success(ran, "classify on exporter TIFFs")
    report = json.loads(out.read_text())
    count = report["cells"][0]["count"]
    problems = report["problems"] + report["cells"][0]["problems"]
    expect(count == 46 and not problems, f"count {count}, problems {problems[:2]}")
    try:
        decode_crop(data[: len(data) // 2], "cut.tif")
    except CropReadError as error:
        cut = str(error)
    else:
        raise Failed("a TIFF cut in half was opened")
    expect("corrupt or truncated" in cut, cut)
    return (f"Pillow: \"{shown(pillow_says, 50)}\"; karyo classify: {count} chromosomes, "
            f"pixels exact; a TIFF cut in half: \"{shown(cut, 50)}\"")


@item(12, "a sign-off typed in by hand", 25)
def hand_made_sign_off(ctx: Context) -> str:
    from karyo_gui.cli import main as karyo
    from karyo_gui.core.case import Case, CellStatus
    from karyo_gui.core.case_file import load_case, save_case
    from karyo_gui.core.loaders import load_cell, write_cell
    from karyo_gui.core.synthetic import generate_cell
    from trainer.data import training_label

    def signed_case(name: str, sign: bool) -> Path:
        crops = write_cell(generate_cell("46,XY", seed=5, name="A1"), ctx.path(name, "crops"))
        cell = load_cell(crops, name="A1")
        for chromosome in cell.chromosomes:
            chromosome.assigned = chromosome.given
        unsure = cell.chromosomes[1]  # the model's assignment differs from its given type
        unsure.assigned = chromosome_type("Y" if unsure.given is not chromosome_type("Y")
                                          else "X")
        cell.set_manual_label(cell.chromosomes[0].id, chromosome_type("4"), by="ann")
        cell.set_status(CellStatus.REVIEWED, by="ann")
        if sign:
            cell.set_status(CellStatus.SIGNED_OFF, by="dr.chief")
        path = ctx.folder / name / "case.karyo.json"
        save_case(Case("c1", [cell]), path)
        return path

    def edit(path: Path, change) -> None:
        document = json.loads(path.read_text(encoding="utf-8"))
        change(document["case"]["cells"][0])
        path.write_text(json.dumps(document), encoding="utf-8")

    def claim(cell) -> None:
        cell["status"] = "signed_off"
        cell["audit"].append({"chromosome": "", "action": "status", "from": "reviewed",
                              "to": "signed_off", "by": "dr.chief",
                              "at": "2024-05-02T10:00:00+00:00"})

    def assigned(cell) -> None:
        chromosome = cell["chromosomes"][1]
        chromosome["assigned"] = next(n for n in ("13", "14", "15")
                                      if n not in (chromosome["given"], chromosome["assigned"]))

    genuine = signed_case("genuine", sign=True)
    [cell] = load_case(genuine).cells
    expect(cell.status is CellStatus.SIGNED_OFF and cell.sign_off_problem is None,
           f"a sign-off made in karyo is not trusted: {cell.sign_off_problem}")
    claimed = signed_case("claimed", sign=False)
    edit(claimed, claim)
    altered = signed_case("altered", sign=True)
    edit(altered, assigned)
    said = ""
    for path in (claimed, altered):
        [cell] = load_case(path).cells
        what = f"{path.parent.name} sign-off"
        expect(cell.status is CellStatus.REVIEWED, f"the {what} is shown as {cell.status.value}")
        said = cell.sign_off_problem or ""
        expect("modified outside karyo" in said, f"the {what} says {said!r}")
        unreviewed = cell.chromosomes[1]
        expect(training_label(unreviewed, cell) is unreviewed.given,
               f"the {what}: training trusts the model's assignment of {unreviewed.id}")

    ctx.step("the window opens the hand-signed case")
    window = ctx.window()
    expect(window.open_path(claimed), f"the window did not open it: {window.last_error}")
    entry = window.cell_list.item(0).text()
    expect("modified outside karyo" in entry, f"the cell list says {entry!r}")
    expect(window.view.editable and "read-only" not in window.mode_label.text(),
           "the window treats the cell as signed off (read-only)")
    chromosome = window.current_cell.chromosomes[1]
    expect(window.reassign(chromosome.id, chromosome_type("X")), "the cell cannot be edited")

    out = ctx.folder / "r.json"
    ran = ctx.call(karyo, ["classify", str(claimed), "--device", "cpu", "--json", str(out)],
                   "karyo classify on the hand-signed case")
    expect_success(ran, "classify on the hand-signed case")
    report = json.loads(out.read_text())["cells"][0]
    expect(report["status"] == "reviewed"
           and any("modified outside karyo" in p for p in report["problems"]),
           f"the report says status {report['status']}, problems {report['problems'][:2]}")
    return (f"typed-in and altered sign-offs shown as reviewed, editable, not trained on: "
            f"\"{shown(said, 90)}\"; report status 'reviewed'")


@item(13, "a Y called at p = 0.71", 15)
def sex_call(ctx: Context) -> str:
    import numpy as np

    from karyo_gui.core.assignment import sex_uncertain
    from karyo_gui.core.case import Case, Flag
    from karyo_gui.core.labels import N_TYPES
    from karyo_gui.core.synthetic import generate_cell
    from karyo_gui.inference.classifier import CellPrediction
    from karyo_gui.inference.report import cell_report

    x, y, chr21 = chromosome_type("X"), chromosome_type("Y"), chromosome_type("21")
    cell = generate_cell("46,XX", seed=11, name="XX1")
    row = [k for k, c in enumerate(cell.chromosomes) if c.given is x][1]
    # a model out of its lab: sure of every crop but one X, which it calls Y at p = 0.71
    probabilities = np.full((len(cell), N_TYPES), 0.002 / (N_TYPES - 1))
    for k, chromosome in enumerate(cell.chromosomes):
        probabilities[k, chromosome.given.value] = 0.998
    probabilities[row] = 1e-4
    probabilities[row, [y.value, x.value, chr21.value]] = [0.71, 0.2, 0.09]
    probabilities = (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)

    window = ctx.window()
    window.set_case(Case("XX1", [cell]), None)
    shown_cell = window.current_cell
    result = assigning_classifier().assign(
        shown_cell, CellPrediction(list(range(len(shown_cell))), probabilities, None))
    window.service.cell_classified.emit(shown_cell, result)  # as the model's result arrives
    ctx.pump(0.1)
    crop = shown_cell.chromosomes[row]
    flags = cell_report(result)["chromosomes"][row]["flags"]
    read, called = shown_cell.karyotype, crop.label.display_name
    expect(Flag.SEX_UNCERTAIN in crop.flags and "sex_uncertain" in flags,
           f"karyo read {read}; the crop called {called} at p = 0.71 has flags {flags}")
    expect(sex_uncertain(shown_cell), "the cell's sex is not uncertain")
    status = window.sex_label.text()
    expect("sex uncertain" in status, f"karyo read {read}; the status bar says {status!r}")
    visited = []
    for _ in range(len(shown_cell)):
        found = window.step_flagged()
        if found == crop.id or found is None:
            break
        visited.append(found)
    expect(found == crop.id, f"N never selects the crop called Y (it visits {visited[:4]})")

    ctx.step("the reviewer moves it to X and confirms the other sex calls")
    expect(window.reassign(crop.id, x), "the crop could not be moved to X")
    for other in shown_cell.chromosomes:
        if Flag.SEX_UNCERTAIN in other.flags and other.manual is None:
            window.reassign(other.id, other.label)  # "Confirm ... as X"
    after = window.sex_label.text()
    expect(after == "sex XX" and shown_cell.karyotype == "46,XX",
           f"after the review: {after!r}, {shown_cell.karyotype}")
    return (f"karyo read {read}; the crop called {called} at p=0.71 flagged {flags}; status "
            f"bar '{status}'; N selects it; reviewed: '{after}'")


# ====================================================================== processes
def window_driver() -> int:
    """``--window-driver``: a review window driven by JSON lines on stdin (item 1's A)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from karyo_gui.qt.main_window import MainWindow

    app = QApplication(["karyo-replay-window"])
    window = MainWindow(load_model=False)
    window.ask_on_close = False
    window.show()

    def reply(**answer) -> None:
        print("REPLY " + json.dumps(answer), flush=True)

    reply(session=window.session)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["op"] == "open":
                reply(ok=window.open_path(command["path"]), error=window.last_error)
            elif command["op"] == "reassign":
                chromosome = first_of(window.current_cell, command["source"])
                reply(id=chromosome.id,
                      ok=window.reassign(chromosome.id, chromosome_type(command["target"])))
            elif command["op"] == "save":
                reply(ok=window.save_to(Path(command["path"])), error=window.last_error)
            elif command["op"] == "autosave":
                path = window.autosave()
                reply(path=str(path) if path else None)
            else:
                reply(escaped=f"unknown command {command['op']!r}")
        except Exception as error:
            reply(escaped=summary(error))
        app.processEvents()
    return 0


def worker(scratch: Path, numbers: list[int]) -> int:
    """``--worker``: run the items in this process, reporting on the parent's pipe."""
    channel = int(os.environ.pop(FD_VARIABLE))
    os.environ["QT_QPA_PLATFORM"] = "offscreen"

    def send(**message) -> None:
        os.write(channel, (json.dumps(message) + "\n").encode())

    watch = FifoWatch()
    watch.start()
    for number in numbers:
        send(start=number)
        folder = scratch / f"item{number:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["XDG_CONFIG_HOME"] = str(folder / "config")  # never the user's settings
        os.environ["XDG_DATA_HOME"] = str(folder / "data")  # nor autosave folder
        context = Context(folder, send, watch)
        wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        try:
            evidence, passed = ITEMS[number].run(context), True
        except Failed as failure:
            evidence, passed = str(failure), False
        except Exception as error:
            evidence, passed = f"escaped: {summary(error)}", False
        finally:
            with contextlib.suppress(Exception):
                context.close()
        send(result={
            "item": number, "name": ITEMS[number].name, "passed": passed,
            "wall": round(time.perf_counter() - wall, 2),
            "cpu": round(time.process_time() - cpu + _children_cpu() - children, 2),
            # the replay's temporary folders, left out: the names are what tells
            "evidence": " ".join(evidence.replace(f"{folder}{os.sep}", "")
                                 .replace(f"{scratch}{os.sep}", "").split()),
        })
    return 0


def _group_rss(group: int) -> int:
    """Resident memory of the processes of one process group (the worker and its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:
            total += int(fields[21]) * PAGE
    return total


def _failure(number: int, wall: float, evidence: str) -> dict:
    return {"item": number, "name": ITEMS[number].name, "passed": False,
            "wall": round(wall, 2), "cpu": None, "evidence": evidence}


def _run_worker(todo: list[int], scratch: Path, attempt: int, results: dict) -> bool:
    """Run the items of ``todo`` in one worker; False when it started none of them."""
    read_end, write_end = os.pipe()
    log_path = scratch / f"worker-{attempt}.log"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    env[FD_VARIABLE] = str(write_end)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(THIS), "--worker", str(scratch), *map(str, todo)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(write_end,), start_new_session=True,
        )
    os.close(write_end)
    current, step, started, buffer, killed, began = None, "starting", time.monotonic(), b"", "", 0
    deadline = started + 120 * slowdown()
    try:
        while True:
            if select.select([read_end], [], [], 0.5)[0]:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if "start" in message:
                        current, step, started = message["start"], "starting", time.monotonic()
                        began += 1
                        limit = (3 * ITEMS[current].budget + 30) * slowdown()
                        deadline = started + limit
                    elif "step" in message:
                        step = message["step"]
                    elif "result" in message:
                        result = message["result"]
                        results[result["item"]] = result
                        _progress(result)
                        current, deadline = None, time.monotonic() + 60 * slowdown()
            now = time.monotonic()
            if now > deadline:
                killed = f"no result after {now - started:.0f} s (a hang?) while: {step}"
                break
            if _group_rss(process.pid) > MEMORY_CAP:
                killed = f"memory passed {MEMORY_CAP / 2**30:.0f} GiB while: {step}"
                break
    finally:
        if killed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        os.close(read_end)
        code = process.wait()
    if current is not None and current not in results:
        evidence = killed or (f"the worker ended (status {code}) while: {step}; "
                              f"see {log_path}")
        results[current] = _failure(current, time.monotonic() - started, evidence)
        _progress(results[current])
    elif killed:  # between items or before the first
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        for number in todo:
            results.setdefault(number, _failure(number, 0, f"{killed}; {shown(tail[0])}"))
    return began > 0


def _progress(result: dict) -> None:
    verdict = "PASS" if result["passed"] else "FAIL"
    print(f"  [{result['item']:2d}] {result['name']}: {verdict} ({result['wall']:.0f} s)",
          file=sys.stderr, flush=True)


def replay(numbers: list[int], scratch: Path) -> list[dict]:
    results: dict[int, dict] = {}
    todo, attempt = list(numbers), 0
    while todo:
        attempt += 1
        if not _run_worker(todo, scratch, attempt, results):
            log = scratch / f"worker-{attempt}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            for number in todo:
                results.setdefault(number, _failure(
                    number, 0, f"the worker did not start: {shown(tail[0])}"))
        todo = [n for n in todo if n not in results]
    return [results[n] for n in numbers]


def print_table(results: list[dict], wall: float) -> None:
    passed = sum(r["passed"] for r in results)
    cpu = sum(r["cpu"] or 0 for r in results)
    print(f"issue 25 replay: {passed} of {len(results)} passed "
          f"(wall {wall:.0f} s, CPU {cpu:.0f} s)")
    print(f"{'#':>3}  {'item':<46} {'result':<6} {'wall s':>7} {'cpu s':>6}  evidence")
    for r in results:
        cpu_text = f"{r['cpu']:.1f}" if r["cpu"] is not None else "-"
        print(f"{r['item']:>3}  {r['name']:<46} {'PASS' if r['passed'] else 'FAIL':<6} "
              f"{r['wall']:>7.1f} {cpu_text:>6}  {shown(r['evidence'], 400)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", type=int, choices=sorted(ITEMS), metavar="N",
                        help="replay only these items (1-13)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the crafted files")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--window-driver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.window_driver:
        return window_driver()
    if args.worker:
        return worker(Path(args.worker[0]), [int(n) for n in args.worker[1:]])

    numbers = sorted(set(args.only or ITEMS))
    scratch = Path(tempfile.mkdtemp(prefix="karyo-hardening-"))
    print(f"replaying issue 25, items {' '.join(map(str, numbers))}, in {scratch}",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        results = replay(numbers, scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    wall = time.monotonic() - started
    print_table(results, wall)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "issue": 25, "passed": all(r["passed"] for r in results), "wall": round(wall, 1),
            "items": results,
        }, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
