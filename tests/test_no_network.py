"""karyo works offline: classifying, Grad-CAM, the window, saving and export never touch
the network (a lab workstation may have none, and patient data must not leave it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.checkpoint import SHIPPED_MODEL

RUN = Path(__file__).with_name("no_network_run.py")


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped model in resources/")
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_classify_review_save_and_export_make_no_network_connection(tmp_path):
    environment = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    finished = subprocess.run(
        [sys.executable, str(RUN), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=environment,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    assert report["done"] == [
        "karyo classify: exit 0",
        "window classified the cell: True",
        "Grad-CAM shown: True",
        "saved: True",
        "PDF: True",
        "PNG: True",
        "reopened: True",
    ]
    assert report["attempts"] == []
    assert report["internet_sockets"] == 0


def test_the_network_watch_itself_catches_a_connection(tmp_path):
    """The audit hook used above does see (and refuse) a plain connection attempt."""
    code = (
        "import sys, socket; sys.path.insert(0, sys.argv[1]);"
        "import no_network_run as watch; sys.addaudithook(watch.audit)\n"
        "try:\n socket.create_connection(('192.0.2.1', 80), timeout=0.1)\n"
        "except OSError: pass\n"
        "print(len(watch.attempts))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code, str(RUN.parent)], capture_output=True, text=True, timeout=60
    )
    assert finished.stdout.strip() == "1", finished.stderr
