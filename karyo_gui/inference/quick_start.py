"""A quick start for the classifier: a traced copy of its network in the user's cache.

    net = load_traced(path, header)      # None unless a valid trace of this file is cached
    save_traced(net, header, path)       # after a start that built the network (CPU only)

Building the network needs timm, and importing timm brings torchvision and torch.compile's
machinery with it: on a 2-core CPU that import is over half of the time from ``karyo gui
CELL`` to a classified karyogram. A TorchScript trace of the same network in evaluation
mode, the mode the app runs it in, loads with torch alone and gives the same numbers.

The trace is written once, after a start that built the network, into the user's cache
(platformdirs), named by the model id and the torch version. Beside it a JSON file holds
the SHA-256 of the trace and of the model file it was traced from, and the network's
outputs on a fixed probe picture. It is used only while all of these still hold: the trace
is byte for byte the one written, the model file the one it was traced from, this torch
wrote it, and it gives the probe's outputs back. Anything else
(no cache, a damaged, foreign or stale trace, a torch without TorchScript) returns None
and the caller builds the network from the model file, with every check, as before.
Grad-CAM and anything else that needs the network's layers build it then
(``Classifier.full_net``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import platformdirs
import torch
from torch import nn

from trainer.checkpoint import ModelHeader
from trainer.model import ModelOutput

APP = "karyo"
FORMAT = 1
KEEP = 3  # traces kept in the cache (older model ids are removed when a new one is written)
TOLERANCE = 1e-4  # largest difference from the network's own outputs on the probe


def cache_folder() -> Path:
    return Path(platformdirs.user_cache_dir(APP, appauthor=False)) / "quick-start"


def trace_path(header: ModelHeader) -> Path:
    version = "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in torch.__version__)
    return cache_folder() / f"{header.model_id}-torch{version}-f{FORMAT}.pt"


def facts_path(trace: Path) -> Path:
    return trace.with_suffix(".json")


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as opened:
        for block in iter(lambda: opened.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TracedNet(nn.Module):
    """A traced network that answers as ``ChromosomeNet`` does (a ``ModelOutput``)."""

    def __init__(self, module: torch.jit.ScriptModule, orientation: bool) -> None:
        super().__init__()
        self.module = module
        self.has_orientation = orientation

    def forward(self, x: torch.Tensor) -> ModelOutput:
        outputs = self.module(x)
        return ModelOutput(outputs[0], outputs[1], outputs[2] if self.has_orientation else None)


class _Tuple(nn.Module):
    """The network with a plain tuple out (what tracing takes)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        output = self.net(x)
        if output.upside_down is None:
            return output.embedding, output.logits
        return output.embedding, output.logits, output.upside_down


def probe(header: ModelHeader) -> torch.Tensor:
    """Two fixed pictures of the model's input size: a gradient with bands across it."""
    height, width = header.input_preprocessing.height, header.input_preprocessing.width
    rows = torch.linspace(-1.0, 1.0, height)[:, None]
    cols = torch.linspace(-1.0, 1.0, width)[None, :]
    first = torch.sin(9.0 * rows) * torch.cos(3.0 * cols)
    return torch.stack([first, rows + 0 * cols])[:, None].float()


def _outputs(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    output = net(x)
    return [t for t in (output.embedding, output.logits, output.upside_down) if t is not None]


@contextlib.contextmanager
def _quiet():
    """TorchScript says it is deprecated; the quick start works without it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def load_traced(model_path: str | os.PathLike, header: ModelHeader) -> TracedNet | None:
    """The cached trace of this model file, checked; None when there is none to trust."""
    path = trace_path(header)
    if not path.is_file() or not facts_path(path).is_file():
        return None
    try:
        facts = json.loads(facts_path(path).read_text(encoding="utf-8"))
        if (
            facts.get("format") != FORMAT
            or facts.get("model_id") != header.model_id
            or facts.get("torch") != torch.__version__
            or facts.get("trace_sha256") != file_digest(path)
            or facts.get("file_sha256") != file_digest(model_path)
        ):
            return None
        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu")
        net = TracedNet(module.eval(), bool(facts.get("orientation"))).eval()
        with torch.inference_mode():
            got = _outputs(net, probe(header))
        if not _same(got, [torch.tensor(values) for values in facts["probe"]]):
            return None
    except Exception:  # a damaged or foreign file, a torch that cannot read it: not used
        return None
    return net


def save_traced(net: nn.Module, header: ModelHeader, model_path: str | os.PathLike) -> Path | None:
    """Trace a network built from ``model_path`` (on the CPU, in evaluation mode) into the
    cache, checked against the network itself; the path written, or None when it could not
    be (a read-only cache, a network tracing does not reproduce). Never raises."""
    try:
        if next(net.parameters()).device.type != "cpu":
            return None
        was_training = net.training
        net.eval()
        try:
            example = probe(header)
            with torch.inference_mode():
                expected = _outputs(net, example)
            with torch.no_grad(), _quiet():
                traced = torch.jit.trace(_Tuple(net), example[:1].clone(), check_trace=False)
            with torch.inference_mode():
                got = _outputs(TracedNet(traced, len(expected) == 3), example)
        finally:
            net.train(was_training)
        if not _same(got, expected):
            return None
        path = trace_path(header)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(handle)
        try:
            with _quiet():
                torch.jit.save(traced, temporary)
            facts = {
                "format": FORMAT,
                "model_id": header.model_id,
                "torch": torch.__version__,
                "trace_sha256": file_digest(temporary),
                "file_sha256": file_digest(model_path),
                "orientation": len(expected) == 3,
                "probe": [e.tolist() for e in expected],
            }
            os.replace(temporary, path)
            facts_path(path).write_text(json.dumps(facts), encoding="utf-8")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        _prune(path.parent, keep=path)
        return path
    except Exception:  # the quick start is a convenience: the app runs without it
        return None


def _same(got: list[torch.Tensor], expected: list[torch.Tensor]) -> bool:
    """The same outputs within TOLERANCE (a non-finite value is never the same)."""
    return len(got) == len(expected) and all(
        g.shape == e.shape
        and bool(torch.isfinite(g).all())
        and float((g - e).abs().max()) <= TOLERANCE
        for g, e in zip(got, expected)
    )


def _prune(folder: Path, keep: Path) -> None:
    """Only the newest KEEP traces stay (one per model the user has run lately)."""
    traces = sorted(
        (p for p in folder.glob("*.pt") if p != keep), key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in traces[KEEP - 1 :]:
        with contextlib.suppress(OSError):
            old.unlink()
            facts_path(old).unlink()
    for part in folder.glob("*.part"):  # left by a start that was killed while writing
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < keep.stat().st_mtime - 60:
                part.unlink()
