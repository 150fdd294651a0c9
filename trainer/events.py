"""Progress of a run: a tqdm bar on a terminal, JSON lines for the app, a file for later.

Every event is one JSON object with an ``event`` field (``start``, ``step``, ``epoch``,
``checkpoint``, ``done``, ``error``). With ``--events jsonl`` they are printed one per line
on stdout (the app's retraining panel plots them); they are always appended to
``events.jsonl`` in the run folder.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EventLog:
    def __init__(
        self,
        run_folder: Path | None,
        jsonl: bool = False,
        total_steps: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.enabled = enabled
        self.jsonl = jsonl
        self.stream = stream or sys.stdout
        self.file = None
        if enabled and run_folder is not None:
            run_folder.mkdir(parents=True, exist_ok=True)
            self.file = open(run_folder / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        show_bar = enabled and not jsonl and total_steps > 0
        self.bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True, disable=not show_bar)
        self.started = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "time": round(time.time(), 3)}
        record.update({key: _clean(value) for key, value in fields.items()})
        line = json.dumps(record)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()
        if self.jsonl:
            print(line, file=self.stream, flush=True)
        elif event in ("epoch", "checkpoint", "done", "error", "start"):
            summary = {k: v for k, v in record.items() if k not in ("event", "time", "config")}
            self.bar.write(
                f"[{event}] " + ", ".join(f"{k}={_short(v)}" for k, v in summary.items())
            )

    def advance(self, step: int, **postfix: float) -> None:
        if self.enabled and not self.jsonl:
            self.bar.n = step
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=True)

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        return text if len(text) < 80 else text[:77] + "..."
    return str(value)
