"""Keeping the folder names of one user's machine out of files that travel.

Model files and exported reports go to other labs and other people. What they need to
say about their inputs is *which* file (its name), not where it sat on the machine that
wrote them: ``/home/alice/cases/case17.karyo.json`` is written as ``…/case17.karyo.json``.
Case files are different: they must find their crops again, see ``case_file``.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

HIDDEN = "…"


def is_absolute_path(text: str) -> bool:
    """Whether ``text`` is an absolute path here, on POSIX or on Windows, or a ``~`` path."""
    return (
        os.path.isabs(text)
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or text.startswith("~")
    )


def shareable_path(text: str) -> str:
    """An absolute path reduced to its last part; a relative path left as it is."""
    if not is_absolute_path(text):
        return text
    name = PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return f"{HIDDEN}/{name}" if name else HIDDEN


def without_private_paths(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every absolute path made shareable."""
    if isinstance(value, str):
        return shareable_path(value)
    if isinstance(value, dict):
        return {key: without_private_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_private_paths(item) for item in value]
    return value
