"""The classifier's quick start: a cached ONNX copy of its network run by OpenCV (no torch),
used only while it is the same model file's, giving the same answers, and never in the way
when it is not."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from karyo_gui.core.synthetic import generate_cell
from karyo_gui.inference import quick_start
from karyo_gui.inference.classifier import Classifier
from trainer.checkpoint import ModelHeader, read_header, save_checkpoint
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing

PREP = Preprocessing(height=48, width=32)
ROOT = Path(__file__).resolve().parents[1]


def _model(folder: Path, name: str = "lab model", seed: int = 0, orientation=None) -> Path:
    torch.manual_seed(seed)
    net = ChromosomeNet("resnet10t", embedding_dim=16, orientation_head=orientation is not None)
    header = ModelHeader(arch="resnet10t", embedding_dim=16, preprocessing=PREP.to_dict(),
                         name=name, orientation=orientation)  # fmt: skip
    return save_checkpoint(folder / "model.safetensors", net.eval(), header, dtype=torch.float16)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


@pytest.fixture
def model(tmp_path):
    return _model(tmp_path)


def _probabilities(classifier: Classifier, seed: int = 7) -> np.ndarray:
    cell = generate_cell("47,XY,+21", seed=seed)
    classifier.classify(cell)
    return np.stack([c.probabilities for c in cell.chromosomes])


def test_the_second_start_is_quick_and_answers_as_the_first(cache, model):
    first = Classifier(model, device="cpu", quick_start=True)
    assert not first.quick_started  # nothing cached yet: the network is built
    expected = _probabilities(first)
    written = first.save_quick_start()
    assert written is not None and written.is_file()
    assert written.parent == cache / "karyo" / "quick-start"
    assert first.save_quick_start() is None  # a valid copy is there already

    second = Classifier(model, device="cpu", quick_start=True)
    assert second.quick_started
    assert second.model_id == first.model_id
    assert np.allclose(_probabilities(second), expected, atol=1e-5)


def test_an_orientation_head_survives_the_copy(cache, tmp_path):
    path = _model(tmp_path, orientation={"fitted_on": "test"})
    built = Classifier(path, device="cpu", quick_start=True)
    cell = generate_cell("46,XX", seed=3)
    expected = built.predict_cell(cell)
    assert expected.upside_down is not None
    built.save_quick_start()
    quick = Classifier(path, device="cpu", quick_start=True)
    assert quick.quick_started
    got = quick.predict_cell(cell)
    assert np.allclose(got.upside_down, expected.upside_down, atol=1e-5)
    assert np.allclose(got.embeddings, expected.embeddings, atol=1e-4)


def test_a_quick_start_classifies_without_torch(cache, model):
    Classifier(model, device="cpu").save_quick_start()
    code = (
        "import sys\n"
        "from karyo_gui.core.synthetic import generate_cell\n"
        "from karyo_gui.inference.classifier import Classifier\n"
        f"c = Classifier({str(model)!r}, device='auto', quick_start=True)\n"
        "result = c.classify(generate_cell('46,XY', seed=4))\n"
        "print(c.quick_started, 'torch' in sys.modules, 'timm' in sys.modules, c.device_name,"
        " len(result.cell.chromosomes))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, check=True)  # fmt: skip
    assert done.stdout.split() == ["True", "False", "False", "cpu", "46"]


def test_grad_cam_builds_the_network_after_a_quick_start(cache, model):
    Classifier(model, device="cpu").save_quick_start()
    quick = Classifier(model, device="cpu", quick_start=True)
    cell = generate_cell("46,XX", seed=5)
    quick.classify(cell)
    heat = quick.attention(cell, cell.chromosomes[0].id)
    assert heat.crop_map.shape == cell.chromosomes[0].image.shape[:2]
    assert not quick.quick_started  # the network itself now classifies
    assert isinstance(quick.net, ChromosomeNet)


def test_a_damaged_copy_is_not_used(cache, model):
    built = Classifier(model, device="cpu")
    expected = _probabilities(built)
    path = built.save_quick_start()
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)
    path.write_bytes(bytes(data))
    again = Classifier(model, device="cpu", quick_start=True)
    assert not again.quick_started
    assert np.allclose(_probabilities(again), expected, atol=1e-5)
    path.write_bytes(b"not an ONNX file at all")
    assert not Classifier(model, device="cpu", quick_start=True).quick_started
    # and the built network writes a good one over it
    assert again.save_quick_start() == path
    assert Classifier(model, device="cpu", quick_start=True).quick_started


def test_a_changed_model_file_is_not_served_by_the_old_copy(cache, tmp_path):
    path = _model(tmp_path, name="first")
    Classifier(path, device="cpu").save_quick_start()
    model_id = read_header(path).model_id
    # the same weights under another header: the same model id, another file
    _model(tmp_path, name="renamed")
    assert read_header(path).model_id == model_id
    assert not Classifier(path, device="cpu", quick_start=True).quick_started
    # other weights: another model id, so another copy's name
    _model(tmp_path, name="retrained", seed=1)
    retrained = Classifier(path, device="cpu", quick_start=True)
    assert not retrained.quick_started
    assert retrained.header.name == "retrained"


def test_an_unwritable_cache_only_costs_the_quick_start(tmp_path, monkeypatch, model):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    classifier = Classifier(model, device="cpu", quick_start=True)
    assert classifier.save_quick_start() is None
    assert not Classifier(model, device="cpu", quick_start=True).quick_started


def test_old_copies_and_traces_are_pruned(cache, tmp_path):
    old_trace = quick_start.cache_folder() / "0123456789ab-torch2.9-f1.pt"  # the first format
    old_trace.parent.mkdir(parents=True)
    old_trace.write_bytes(b"trace")
    for seed in range(quick_start.KEEP + 2):
        folder = tmp_path / f"m{seed}"
        folder.mkdir()
        Classifier(_model(folder, seed=seed), device="cpu").save_quick_start()
    assert len(list(quick_start.cache_folder().glob("*.onnx"))) == quick_start.KEEP
    assert not old_trace.exists()


def test_the_model_thread_writes_the_copy_after_its_first_answer(qtbot, cache, model):
    from karyo_gui.qt.model_service import ModelService

    service = ModelService()
    try:
        with qtbot.waitSignal(service.model_loaded, timeout=60000):
            service.load(model, "cpu")
        assert not service.classifier.quick_started
        cell = generate_cell("46,XY", seed=11)
        with qtbot.waitSignal(service.cell_classified, timeout=60000):
            service.classify([cell])
        copy = quick_start.quick_path(service.classifier.header)
        qtbot.waitUntil(copy.is_file, timeout=60000)
        qtbot.waitUntil(lambda: service._worker.settled, timeout=60000)
        with qtbot.waitSignal(service.model_loaded, timeout=60000):
            service.load(model, "cpu")
        assert service.classifier.quick_started
        with qtbot.waitSignal(service.cell_classified, timeout=60000):
            service.classify([generate_cell("46,XX", seed=12)])
        # after its first answer the quick-started classifier builds its network (Grad-CAM)
        qtbot.waitUntil(lambda: not service.classifier.quick_started, timeout=60000)
    finally:
        service.shutdown()


def _classify_twice(source: Path, model: Path, cache: Path, tmp_path: Path, *options: str,
                    after_first=None) -> list:
    """``karyo classify SOURCE`` in two fresh processes sharing the cache: per run, its exit
    status and whether torch was imported (as words), and its JSON document."""
    code = (
        "import json, sys\n"
        "from karyo_gui.cli import main\n"
        f"rc = main(['classify', {str(source)!r}, '--json', sys.argv[1], '--checkpoint', "
        f"{str(model)!r}, *{list(options)!r}])\n"
        "print('RESULT', rc, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "CUDA_VISIBLE_DEVICES": "-1"}
    runs = []
    for name in ("first.json", "second.json"):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs.append((done.stdout.split("RESULT")[-1].split(), json.loads(out.read_text())))
        if after_first is not None and name == "first.json":
            after_first()
    return runs


def test_karyo_classify_writes_the_copy_and_then_runs_without_torch(cache, model, tmp_path):
    from karyo_gui.core.loaders import write_cell

    cell = write_cell(generate_cell("46,XY", seed=2), tmp_path / "cell")

    def copy_written():  # the network was built, so the copy is written
        assert list((cache / "karyo" / "quick-start").glob("*.onnx"))

    runs = _classify_twice(cell, model, cache, tmp_path, "--device", "cpu",
                           after_first=copy_written)  # fmt: skip
    assert runs[0][0] == ["0", "True"]
    assert runs[1][0] == ["0", "False"]  # the second run classified from the copy

    first, second = (document["cells"][0]["chromosomes"] for _, document in runs)
    assert [c["assigned"] for c in second] == [c["assigned"] for c in first]
    assert np.allclose([c["top"][0]["probability"] for c in second],
                       [c["top"][0]["probability"] for c in first], atol=1e-3)  # fmt: skip


def _boxes(finder) -> np.ndarray:
    from karyo_gui.core.synthetic import generate_metaphase

    found = finder.find(generate_metaphase("46,XY", seed=21).image()).found
    return np.array([item.box for item in found])


def test_the_finder_starts_from_its_copy_and_finds_the_same_boxes(cache):
    from karyo_gui.inference.finder import ChromosomeFinder

    built = ChromosomeFinder(device="cpu", quick_start=True)
    assert not built.quick_started  # nothing cached yet
    expected = _boxes(built)
    written = built.save_quick_start()
    assert written is not None and written.name.startswith("finder-")
    assert built.save_quick_start() is None  # a valid copy is there already
    quick = ChromosomeFinder(device="cpu", quick_start=True)
    assert quick.quick_started and quick.model_id == built.model_id
    got = _boxes(quick)
    assert got.shape == expected.shape and np.allclose(got, expected, atol=0.05)
    # a damaged copy is not used: the network is built again, with the same boxes
    data = bytearray(written.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)
    written.write_bytes(bytes(data))
    again = ChromosomeFinder(device="cpu", quick_start=True)
    assert not again.quick_started
    assert np.allclose(_boxes(again), expected, atol=0.05)


def test_karyo_classify_finds_a_metaphase_without_torch_once_the_copies_are_cached(
    cache, model, tmp_path
):
    from karyo_gui.core.synthetic import generate_metaphase

    image = tmp_path / "spread.png"
    image.write_bytes(generate_metaphase("46,XX", seed=22).png_bytes())
    runs = _classify_twice(image, model, cache, tmp_path)
    copies = {p.name.split("-")[0] for p in (cache / "karyo" / "quick-start").glob("*.onnx")}
    assert copies == {"finder", read_header(model).model_id}  # the finder's and the model's
    assert runs[0][0] == ["0", "True"]
    assert runs[1][0] == ["0", "False"]  # found and classified from the copies
    first, second = (run[1]["cells"][0]["chromosomes"] for run in runs)
    assert len(first) == len(second) >= 40
    assert [c["assigned"] for c in second] == [c["assigned"] for c in first]
    def boxes(chromosomes):
        return [[c["box"][k] for k in ("x", "y", "width", "height")] for c in chromosomes]

    assert np.allclose(boxes(second), boxes(first), atol=0.05)
