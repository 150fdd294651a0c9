"""A quick start for the classifier and the chromosome finder: ONNX copies of their
networks in the user's cache, run by OpenCV's DNN module, so that classifying a cell or
finding the chromosomes of a metaphase needs no torch.

    net = load_quick(path, header)       # None unless a valid copy of this file is cached
    net.look(canvases)                   # probabilities, embeddings, upside-down (numpy)
    save_quick(net, header, path)        # after a start that built the network (CPU only)
    finder = load_quick_finder(path, header); finder.outputs(x)   # and save_quick_finder

On a 2-core CPU importing torch takes 1.7-2.8 s and building the network with timm as
long again: most of the time from ``karyo gui CELL`` to a classified karyogram. OpenCV is
imported anyway and runs the same network, in evaluation mode, from an ONNX file in a
quarter of a second for a 46-crop cell.

The copy is written once, after a start that built the network (torch's ONNX exporter,
which needs the ``onnx`` package), into the user's cache (platformdirs), named by the model
id. Beside it a JSON file holds the SHA-256 of the copy and of the model file it was made
from, and the network's own outputs on a fixed probe picture. It is used only while all of
these still hold: the copy is byte for byte the one written, the model file the one it was
made from, and OpenCV gives the probe's outputs back. Anything else (no cache, a damaged,
foreign or stale copy, an OpenCV that cannot run it) returns None and the caller builds the
network from the model file, with every check, as before. Grad-CAM and anything else that
needs the network's layers build it then (``Classifier.full_net``).

Nothing here imports torch at import time; only :func:`save_quick` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import platformdirs

from trainer.checkpoint import ModelHeader

if TYPE_CHECKING:
    from trainer.finder import FinderNet
    from trainer.finder_file import FinderHeader
    from trainer.model import ChromosomeNet

APP = "karyo"
FORMAT = 2  # 2: ONNX run by OpenCV (1 was a TorchScript trace of the classifier)
OPSET = 17
KEEP = 3  # copies of each kind kept (older model ids are removed when a new one is written)
TOLERANCE = 1e-3  # largest difference from the network's own outputs on the probe
OUTPUTS = ("embedding", "logits", "upside_down")
FINDER_OUTPUTS = ("heatmap", "size", "offset", "foreground")


def cache_folder() -> Path:
    return Path(platformdirs.user_cache_dir(APP, appauthor=False)) / "quick-start"


def quick_path(header: ModelHeader) -> Path:
    return cache_folder() / f"{header.model_id}-f{FORMAT}.onnx"


def quick_finder_path(header: FinderHeader) -> Path:
    return cache_folder() / f"finder-{header.model_id}-f{FORMAT}.onnx"


def facts_path(copy: Path) -> Path:
    return copy.with_suffix(".json")


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as opened:
        for block in iter(lambda: opened.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def probe(header: ModelHeader) -> np.ndarray:
    """Two fixed pictures of the model's input size, as the network takes them (n, 1, h, w):
    a gradient with bands across it, and a plain gradient."""
    height, width = header.input_preprocessing.height, header.input_preprocessing.width
    rows = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    first = np.sin(9.0 * rows) * np.cos(3.0 * cols)
    return np.stack([first, rows + 0 * cols])[:, None].astype(np.float32)


def finder_probe() -> np.ndarray:
    """A fixed finder input (1, 1, 96, 128): dark bars of chromosome width on nothing, one
    of them crossing another (the finder's input is darkness, 0 background)."""
    picture = np.zeros((96, 128), np.float32)
    for (x0, y0), (x1, y1) in (((20, 15), (30, 80)), ((60, 20), (100, 70)), ((95, 15), (70, 85))):
        cv2.line(picture, (x0, y0), (x1, y1), 0.8, thickness=10)
    return picture[None, None]


class QuickNet:
    """The ONNX copy of a classifier network, run by OpenCV on the CPU."""

    def __init__(self, net: cv2.dnn.Net, header: ModelHeader, orientation: bool) -> None:
        self.net = net
        self.preprocessing = header.input_preprocessing
        self.has_orientation = orientation

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """The network's raw outputs (embedding, logits[, upside-down logit]) for model
        input x (n, 1, h, w)."""
        return _run(self.net, x, OUTPUTS if self.has_orientation else OUTPUTS[:2])

    def look(self, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One look at prepared uint8 canvases (n, h, w), as ``trainer.evaluation`` takes one
        with the torch network: probabilities, embeddings, upside-down probability."""
        if not len(canvases):
            return np.zeros((0, 24), np.float32), np.zeros((0, 0), np.float32), None
        x = (canvases.astype(np.float32) / 255.0)[:, None]
        x = (x - self.preprocessing.mean) / self.preprocessing.std
        outputs = self.outputs(x)
        logits = outputs[1] - outputs[1].max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        upside_down = None
        if self.has_orientation:
            upside_down = (1.0 / (1.0 + np.exp(-outputs[2].reshape(-1)))).astype(np.float32)
        return probabilities.astype(np.float32), outputs[0], upside_down


class QuickFinder:
    """The ONNX copy of a finder network, run by OpenCV on the CPU: what
    ``trainer.finder_file.detect_with`` runs (numpy in, numpy out)."""

    def __init__(self, net: cv2.dnn.Net) -> None:
        self.net = net

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(FINDER_OUTPUTS, _run(self.net, x, FINDER_OUTPUTS)))


def _run(net: cv2.dnn.Net, x: np.ndarray, names) -> list[np.ndarray]:
    net.setInput(np.ascontiguousarray(x, dtype=np.float32))
    return [np.asarray(o, np.float32) for o in net.forward(list(names))]


def load_quick(model_path: str | os.PathLike, header: ModelHeader) -> QuickNet | None:
    """The cached copy of this model file's network, checked; None when there is none to
    trust. Never raises."""
    opened = _open_copy(quick_path(header), header.model_id, model_path)
    if opened is None:
        return None
    net, facts = opened
    try:
        quick = QuickNet(net, header, bool(facts["orientation"]))
        return quick if _same(quick.outputs(probe(header)), facts["probe"]) else None
    except Exception:  # an OpenCV that cannot run it: not used
        return None


def load_quick_finder(
    model_path: str | os.PathLike, header: FinderHeader
) -> QuickFinder | None:
    """The cached copy of this finder file's network, checked; None when there is none to
    trust. Never raises."""
    opened = _open_copy(quick_finder_path(header), header.model_id, model_path)
    if opened is None:
        return None
    try:
        quick = QuickFinder(opened[0])
        outputs = quick.outputs(finder_probe())
        return quick if _same([outputs[k] for k in FINDER_OUTPUTS], opened[1]["probe"]) else None
    except Exception:
        return None


def _open_copy(path: Path, model_id: str, model_path: str | os.PathLike):
    """(OpenCV's net, the facts written beside it) of a cached copy that is byte for byte
    the one written from this very model file; None otherwise."""
    try:
        if not path.is_file() or not facts_path(path).is_file():
            return None
        facts = json.loads(facts_path(path).read_text(encoding="utf-8"))
        if (
            facts.get("format") != FORMAT
            or facts.get("model_id") != model_id
            or facts.get("copy_sha256") != file_digest(path)
            or facts.get("file_sha256") != file_digest(model_path)
        ):
            return None
        return cv2.dnn.readNetFromONNX(str(path)), facts
    except Exception:  # a damaged or foreign file, an OpenCV that cannot read it: not used
        return None


def save_quick(
    net: ChromosomeNet, header: ModelHeader, model_path: str | os.PathLike
) -> Path | None:
    """Write an ONNX copy of a classifier network built from ``model_path`` (on the CPU) into
    the cache, checked: OpenCV must give the network's own outputs back. The path written,
    or None when it could not be (no ``onnx`` package, a read-only cache, a network OpenCV
    cannot run). Never raises."""
    try:
        orientation = net.orientation is not None
        names = OUTPUTS if orientation else OUTPUTS[:2]
        return _write_copy(
            net, probe(header), names, {"image": {0: "n"}}, quick_path(header), model_path,
            header.model_id, {"orientation": orientation},
            lambda output: [output.embedding, output.logits, output.upside_down][
                : len(names)
            ],
        )  # fmt: skip
    except Exception:  # the quick start is a convenience: the app runs without it
        return None


def save_quick_finder(
    net: FinderNet, header: FinderHeader, model_path: str | os.PathLike
) -> Path | None:
    """Write an ONNX copy of a finder network built from ``model_path`` (on the CPU) into
    the cache, checked as :func:`save_quick` checks; the path, or None. Never raises."""
    try:
        return _write_copy(
            net, finder_probe(), FINDER_OUTPUTS, {"image": {0: "n", 2: "height", 3: "width"}},
            quick_finder_path(header), model_path, header.model_id, {},
            lambda output: [output[k] for k in FINDER_OUTPUTS],
        )  # fmt: skip
    except Exception:
        return None


def _write_copy(net, example, names, axes, path, model_path, model_id, extra, unpack):
    """Export ``net`` (its outputs made a list by ``unpack``) to ONNX at ``path``, atomically,
    with the facts a start checks; None when OpenCV does not give the net's outputs back."""
    import torch

    if next(net.parameters()).device.type != "cpu":
        return None
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            expected = [t.float().numpy() for t in unpack(net(torch.from_numpy(example)))]
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(handle)
        try:
            with _quiet():
                torch.onnx.export(
                    _listed(net, unpack).eval(), (torch.from_numpy(example),), temporary,
                    input_names=["image"], output_names=list(names), dynamic_axes=axes,
                    opset_version=OPSET, dynamo=False,
                )  # fmt: skip
            if not _same(_run(cv2.dnn.readNetFromONNX(temporary), example, names), expected):
                return None
            facts = {
                "format": FORMAT,
                "model_id": model_id,
                "copy_sha256": file_digest(temporary),
                "file_sha256": file_digest(model_path),
                **extra,
                "probe": [e.tolist() for e in expected],
            }
            os.replace(temporary, path)
            facts_path(path).write_text(json.dumps(facts), encoding="utf-8")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    finally:
        net.train(was_training)
    _prune(path.parent, keep=path)
    return path


def _listed(net, unpack):
    """The network with a plain tuple out (what the exporter takes)."""
    import torch

    class Listed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor):
            return tuple(unpack(self.net(x)))

    return Listed()


@contextlib.contextmanager
def _quiet():
    """The exporter warns about its TorchScript path and constant folding; the copy is
    checked against the network instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _same(got: list[np.ndarray], expected: list) -> bool:
    """The same outputs within TOLERANCE (a non-finite value is never the same)."""
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected):
        e = np.asarray(e, np.float32)
        g = np.asarray(g, np.float32).reshape(e.shape) if g.size == e.size else None
        if g is None or not np.isfinite(g).all() or float(np.abs(g - e).max()) > TOLERANCE:
            return False
    return True


def _prune(folder: Path, keep: Path) -> None:
    """Only the newest KEEP copies of each kind stay (one per model the user has run
    lately); traces of the first quick start (``*.pt``) and parts left by a start killed
    while writing go."""
    finder = keep.name.startswith("finder-")
    copies = sorted(
        (p for p in folder.glob("*.onnx") if p != keep and p.name.startswith("finder-") == finder),
        key=lambda p: p.stat().st_mtime, reverse=True,
    )  # fmt: skip
    for old in copies[KEEP - 1 :] + list(folder.glob("*.pt")):
        with contextlib.suppress(OSError):
            old.unlink()
            facts_path(old).unlink()
    for part in folder.glob("*.part"):
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < keep.stat().st_mtime - 60:
                part.unlink()
