"""Run karyo's main paths in one process and record every attempt to reach a network.

Used by tests/test_no_network.py as ``python tests/no_network_run.py WORK_FOLDER``. An
audit hook (PEP 578) sees every socket Python creates, connects or resolves, from any
library (timm, torch hub, urllib, requests...); an attempt is recorded and refused. At the
end, the process's open file descriptors are matched against the kernel's table of
internet sockets, which also catches sockets opened by C++ code (Qt) outside Python.
Prints one JSON object: {"attempts": [...], "internet_sockets": N, "done": [...]}.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

attempts: list[str] = []
NETWORK_EVENTS = {
    "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
    "socket.sendto", "socket.sendmsg", "urllib.Request", "http.client.connect",
    "ftplib.connect", "smtplib.connect",
}  # fmt: skip
INTERNET = {socket.AF_INET, socket.AF_INET6}


def audit(event: str, args: tuple) -> None:
    if event == "socket.__new__" and args and args[1] in INTERNET:
        attempts.append(f"{event} family={args[1]}")
        raise OSError("karyo test: network access refused")
    if event in NETWORK_EVENTS:
        # a connect on a local (AF_UNIX) socket, e.g. to the session bus, is not the network
        target = args[1] if event == "socket.connect" and len(args) > 1 else None
        if isinstance(target, (str, bytes)):
            return
        attempts.append(f"{event} {args[1:] if len(args) > 1 else args}")
        raise OSError("karyo test: network access refused")


def internet_sockets() -> int:
    """How many of this process's descriptors are internet (TCP/UDP) sockets."""
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        inodes.update(line.split()[9] for line in lines if len(line.split()) > 9)
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def main(work: Path) -> None:
    sys.addaudithook(audit)
    done = []

    from karyo_gui.cli import main as karyo
    from karyo_gui.core.loaders import write_cell
    from karyo_gui.core.synthetic import generate_cell

    folder = write_cell(generate_cell("47,XY,+21", seed=3), work / "cell", labelled=False)
    status = karyo(["classify", str(folder), "--json", str(work / "cell.json"),
                    "--png", str(work / "cell.png"), "--cam-dir", str(work / "cams")])
    done.append(f"karyo classify: exit {status}")

    from PySide6.QtCore import QCoreApplication, QElapsedTimer
    from PySide6.QtWidgets import QApplication

    from karyo_gui.qt.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow(load_model=True)
    window.ask_on_close = False
    window.show()

    def wait(condition, seconds: float) -> bool:
        timer = QElapsedTimer()
        timer.start()
        while not condition() and timer.elapsed() < seconds * 1000:
            QCoreApplication.processEvents()
            app.thread().msleep(10)
        return condition()

    window.open_path(folder)
    cell = window.current_cell
    classified = wait(lambda: all(c.probabilities is not None for c in cell.chromosomes), 120)
    done.append(f"window classified the cell: {classified}")
    window.select(cell.chromosomes[0].id)
    shown = wait(lambda: window.inspector.overlay_image() is not None, 60)
    done.append(f"Grad-CAM shown: {shown}")
    window.reassign(cell.chromosomes[0].id, cell.chromosomes[1].label)
    done.append(f"saved: {window.save_to(work / 'case.karyo.json')}")
    done.append(f"PDF: {window.export_pdf(work / 'report.pdf') is not None}")
    done.append(f"PNG: {window.export_png(work / 'karyogram.png') is not None}")
    done.append(f"reopened: {window.open_path(work / 'case.karyo.json')}")
    open_sockets = internet_sockets()
    window.close()
    print(json.dumps({"attempts": attempts, "internet_sockets": open_sockets, "done": done}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
