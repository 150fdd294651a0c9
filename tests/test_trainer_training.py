"""Training and evaluation end to end on generated cells: CLI, outputs, resume, DDP."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from karyo_gui.cli import main as karyo
from karyo_gui.core.case import Case, CellStatus
from karyo_gui.core.case_file import save_case
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell
from trainer.checkpoint import load_checkpoint, read_header
from trainer.cli import main as trainer
from trainer.data import training_label

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--arch", "resnet10t", "--embedding-dim", "32", "--input-height", "64",
    "--input-width", "32", "--threads", "2", "--log-every", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A labelled dataset folder like gband612: cells/<cell>/chrN/*.png plus split lists."""
    root = tmp_path_factory.mktemp("dataset")
    karyotypes = ["46,XY", "46,XX", "47,XY,+21", "45,X", "46,XX", "46,XY"]
    names = []
    for k, karyotype in enumerate(karyotypes):
        cell = generate_cell(karyotype, seed=100 + k, name=f"case{k}.1")
        write_cell(cell, root / "cells" / cell.name)
        names.append(cell.name)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(names[:4]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(names[4:]) + "\n")
    return root


def train_args(dataset, output, *extra):
    return [
        "train", "--data", str(dataset), "--train-cells", str(dataset / "splits/train.txt"),
        "--val-cells", str(dataset / "splits/val.txt"), "--output", str(output), *TINY, *extra,
    ]  # fmt: skip


def events_of(run):
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def test_a_run_from_a_yaml_config_writes_models_config_and_events(dataset, tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"epochs": 5, "lr": 0.5, "crops_per_class": 2}))
    run = tmp_path / "run"
    args = train_args(dataset, run, "--config", str(config), "--lr", "0.002")
    args += ["--steps-per-epoch", "2", "--events", "jsonl"]
    assert trainer(args) == 0
    # the command line beats the YAML, the YAML beats the defaults; the result is saved
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["lr"] == 0.002 and resolved["epochs"] == 5 and resolved["crops_per_class"] == 2
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == events_of(run)
    kinds = [event["event"] for event in printed]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 5
    step = next(e for e in printed if e["event"] == "step")
    for key in (
        "loss_contrastive",
        "loss_classification",
        "lr",
        "images_per_second",
        "eta_seconds",
    ):
        assert np.isfinite(step[key])
    epochs = [e for e in printed if e["event"] == "epoch"]
    assert all(0 <= e["val_crop_accuracy"] <= 1 for e in epochs)

    _, header = load_checkpoint(run / "best.safetensors")
    assert header.arch == "resnet10t" and header.embedding_dim == 32
    assert header.training_data["train"]["n_cells"] == 4
    assert header.training_data["val"]["n_cells"] == 2
    best_epoch = max(epochs, key=lambda e: e["val_crop_accuracy"])
    assert header.metrics["val"]["crop_accuracy"] == best_epoch["val_crop_accuracy"]
    assert read_header(run / "last.safetensors").metrics["history"][-1]["epoch"] == 5
    # the orientation head is fitted when training ends; the file says whether it was kept
    (orientation,) = [e for e in printed if e["event"] == "orientation"]
    assert 0 <= orientation["held_out_accuracy"] <= 1
    assert (header.orientation is not None) == orientation["kept"]
    # two held-out cells are too few to set a temperature by: the probabilities stay as they are
    assert header.calibration is None


def test_a_run_with_enough_val_crops_calibrates_its_best_model(dataset, tmp_path, monkeypatch):
    from trainer import engine

    monkeypatch.setattr(engine, "MIN_CALIBRATION_CROPS", 50)
    run = tmp_path / "calibrated"
    assert trainer(train_args(dataset, run, "--epochs", "2", "--steps-per-epoch", "3")) == 0
    header = read_header(run / "best.safetensors")
    assert header.calibration["fitted_on"] == ["this run's val crops"]
    assert header.calibration["crops"] == header.training_data["val"]["n_crops"]
    assert 0.05 <= header.calibration["temperature"] <= 20


def test_training_learns_the_generated_chromosomes(dataset, tmp_path):
    run = tmp_path / "learn"
    args = train_args(dataset, run, "--epochs", "10", "--steps-per-epoch", "10", "--lr", "0.003")
    assert trainer([*args, "--generated-cells", "8"]) == 0
    accuracy = max(e["val_crop_accuracy"] for e in events_of(run) if e["event"] == "epoch")
    assert accuracy > 0.3  # chance is 1/24


def test_evaluate_writes_metrics_and_plots(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert trainer(train_args(dataset, run, "--epochs", "1", "--steps-per-epoch", "2")) == 0
    out = tmp_path / "eval" / "metrics.json"
    status = karyo([
        "evaluate", "--data", str(dataset), "--cells", str(dataset / "splits/val.txt"),
        "--checkpoint", str(run / "best.safetensors"), "--json", str(out),
        "--plots", str(tmp_path / "plots"),
    ])  # fmt: skip
    assert status == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_cells"] == 2 and metrics["n_crops"] == 92
    for key in ("crop_accuracy", "macro_recall", "macro_auc", "crops_per_second"):
        assert 0 <= metrics[key] <= (1 if key != "crops_per_second" else 1e9)
    assert len(metrics["per_type"]) == 24 and np.sum(metrics["confusion_matrix"]) == 92
    for name in ("confusion.png", "tsne.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "crop accuracy" in capsys.readouterr().out


def _run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "/no/such/folder", "--output", "{tmp}/r"], "dataset folder not found"),
        (["train", "--config", "{tmp}/bad.yaml"], "unknown option(s) learning_rte"),
        (["train", "--generated-cells", "2", "--arch", "resnet999"], "not a timm model name"),
        (["train", "--generated-cells", "2", "--device", "cuda:7"], "cuda"),
        (["train", "--generated-cells", "2", "--bend", "0.8"], "--bend must be in [0, 0.5)"),
        (["train", "--generated-cells", "2", "--straighten-bend", "-1"],
         "--straighten-bend must lie between 0 (never straighten) and 10"),
        (["evaluate", "--data", "{tmp}", "--json", "o.json", "--straighten-bend", "99"],
         "--straighten-bend must lie between 0 (never straighten) and 10"),
        (["evaluate", "--data", "{tmp}", "--checkpoint", "{tmp}/bad.yaml", "--json", "o.json"],
         "not a safetensors model file"),
    ],
)  # fmt: skip
def test_user_mistakes_are_one_line_without_a_traceback(tmp_path, args, message):
    (tmp_path / "bad.yaml").write_text("learning_rte: 0.1\n")
    result = _run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_killed_run_resumes_where_it_stopped(dataset, tmp_path):
    run = tmp_path / "run"
    args = train_args(dataset, run, "--epochs", "3", "--steps-per-epoch", "20", "--events", "jsonl")
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", *args], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in process.stdout:  # stop it as soon as the first epoch is saved
        if json.loads(line)["event"] == "epoch":
            process.send_signal(signal.SIGTERM)
            break
    process.communicate(timeout=120)
    assert process.returncode == 130
    saved = read_header(run / "last.safetensors").metrics["history"]
    assert len(saved) in (1, 2)  # the kill can land while epoch 2 is finishing
    load_checkpoint(run / "best.safetensors")  # what was written is whole

    assert (
        trainer(train_args(dataset, run, "--epochs", "3", "--steps-per-epoch", "20", "--resume"))
        == 0
    )
    starts = [e for e in events_of(run) if e["event"] == "start"]
    assert starts[-1]["resumed_at_epoch"] == len(saved)
    history = read_header(run / "last.safetensors").metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_the_moving_average_of_the_weights_competes_for_the_best_model(dataset, tmp_path):
    import torch

    from trainer.data import load_dataset_crops
    from trainer.evaluation import evaluate_crops

    run = tmp_path / "run"
    args = train_args(dataset, run, "--epochs", "2", "--steps-per-epoch", "6", "--lr", "0.003")
    assert trainer([*args, "--ema-decay", "0.8"]) == 0
    epochs = [e for e in events_of(run) if e["event"] == "epoch"]
    for e in epochs:  # both were judged, and the better one is the epoch's figure
        pair = (e["val_trained_crop_accuracy"], e["val_average_crop_accuracy"])
        assert e["val_crop_accuracy"] == max(pair)
    state = torch.load(run / "state.pt", weights_only=True)
    assert any(not torch.equal(state["ema"][k], v) for k, v in state["model"].items())

    net, header = load_checkpoint(run / "best.safetensors")
    assert header.metrics["weights"] in ("trained", "average")
    preprocessing = header.input_preprocessing
    val = load_dataset_crops(dataset, dataset / "splits/val.txt", preprocessing)
    metrics, _ = evaluate_crops(net, val, preprocessing, torch.device("cpu"))
    # the file holds the weights that earned the best figure, whichever they were
    assert metrics["crop_accuracy"] == pytest.approx(header.metrics["val"]["crop_accuracy"])
    assert header.metrics["val"]["crop_accuracy"] == max(e["val_crop_accuracy"] for e in epochs)


@pytest.mark.parametrize("damage", ["truncated", "code"])
def test_a_damaged_or_hostile_training_state_is_refused_by_resume(
    dataset, tmp_path, capsys, damage
):
    import pickle

    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = pickle.dumps(Payload()) if damage == "code" else b"PK\x03\x04 half a zip"
    (run / "state.pt").write_bytes(state)
    status = trainer(train_args(dataset, run, "--epochs", "1", "--steps-per-epoch", "2",
                                "--resume"))
    error = capsys.readouterr().err
    assert status == 2
    assert "state.pt" in error and "cannot be resumed" in error and "Traceback" not in error
    assert not marker.exists()


def test_two_processes_under_torchrun_end_with_identical_weights(dataset, tmp_path):
    run = tmp_path / "ddp"
    args = train_args(dataset, run, "--epochs", "1", "--steps-per-epoch", "3", "--save-every-rank")
    args[args.index("--threads") + 1] = "1"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "trainer", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    first, _ = load_checkpoint(run / "rank0.safetensors")
    second, _ = load_checkpoint(run / "rank1.safetensors")
    untrained = load_checkpoint(run / "best.safetensors")[1]
    assert untrained.training_data["train"]["n_crops"] > 0
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert (a == b).all(), f"{name} differs between the ranks"
    start = next(e for e in events_of(run) if e["event"] == "start")
    assert start["world_size"] == 2


def test_fine_tuning_learns_from_corrected_case_files_and_records_its_parent(tmp_path):
    parent_run = tmp_path / "parent"
    base = ["train", "--output", str(parent_run), *TINY, "--epochs", "1", "--steps-per-epoch", "2"]
    assert trainer([*base, "--generated-cells", "3", "--val-fraction", "0.34"]) == 0

    cell = generate_cell("46,XY", seed=7, name="lab cell")
    chosen = cell.chromosomes[0]
    cell.set_manual_label(chosen.id, ChromosomeType.Y, by="reviewer")
    case_file = tmp_path / "lab.karyo.json"
    save_case(Case(case_id="lab", cells=[cell]), case_file)
    run = tmp_path / "child"
    args = ["train", "--case-files", str(case_file), "--init-checkpoint",
            str(parent_run / "best.safetensors"), "--output", str(run), "--epochs", "1",
            "--steps-per-epoch", "2", "--threads", "2"]  # fmt: skip
    assert trainer(args) == 0
    parent = read_header(parent_run / "best.safetensors")
    child = read_header(run / "best.safetensors")
    assert child.parent["model_id"] == parent.model_id
    assert child.arch == parent.arch and child.preprocessing == parent.preprocessing
    assert child.training_data["train"]["sources"] == ["case:lab.karyo.json"]
    assert child.training_data["train"]["class_counts"][ChromosomeType.Y] == 2  # 1 given + 1 manual


def test_fine_tuning_may_dilate_the_parents_last_stage_but_not_reshape_its_weights(tmp_path):
    import torch

    parent_run = tmp_path / "parent"
    base = ["train", *TINY, "--epochs", "1", "--steps-per-epoch", "2", "--generated-cells", "2"]
    assert trainer([*base, "--output", str(parent_run)]) == 0
    parent_model = str(parent_run / "best.safetensors")
    fine = ["train", "--generated-cells", "2", "--init-checkpoint", parent_model,
            "--epochs", "1", "--steps-per-epoch", "2", "--threads", "2"]  # fmt: skip
    assert trainer([*fine, "--model-kwargs", "{output_stride: 16}", "--output",
                    str(tmp_path / "dilated")]) == 0  # fmt: skip
    parent, parent_header = load_checkpoint(parent_model)
    child, child_header = load_checkpoint(tmp_path / "dilated" / "best.safetensors")
    assert child_header.model_kwargs == {**parent_header.model_kwargs, "output_stride": 16}
    assert child_header.preprocessing == parent_header.preprocessing
    crops = torch.zeros(1, 1, 64, 32)
    with torch.inference_mode():
        coarse = parent.encoder.forward_features(crops).shape[-2:]
        fine_map = child.encoder.forward_features(crops).shape[-2:]
    assert (fine_map[0], fine_map[1]) == (2 * coarse[0], 2 * coarse[1])

    reshaping = _run_cli(*fine, "--model-kwargs", "{stem_width: 8}", "--output",
                         str(tmp_path / "reshaped"))  # fmt: skip
    assert reshaping.returncode == 2
    assert "do not fit the parent model's weights" in reshaping.stderr
    assert "Traceback" not in reshaping.stderr
    assert not (tmp_path / "reshaped" / "best.safetensors").exists()


def test_straightening_is_learnt_with_the_model_and_kept_by_its_children(dataset, tmp_path):
    base = ["train", *TINY, "--epochs", "1", "--steps-per-epoch", "2", "--generated-cells", "2"]
    assert trainer([*base, "--output", str(tmp_path / "plain")]) == 0
    assert load_checkpoint(tmp_path / "plain" / "best.safetensors")[1].preprocessing[
        "straighten_bend"
    ] == 0  # fmt: skip
    fine = ["train", "--generated-cells", "2", "--epochs", "1", "--steps-per-epoch", "2",
            "--threads", "2", "--init-checkpoint"]  # fmt: skip
    child = tmp_path / "child"
    assert trainer([*fine, str(tmp_path / "plain" / "best.safetensors"),
                    "--straighten-bend", "0.5", "--output", str(child)]) == 0  # fmt: skip
    grandchild = tmp_path / "grandchild"
    assert trainer([*fine, str(child / "best.safetensors"), "--output", str(grandchild)]) == 0
    for run in (child, grandchild):
        header = load_checkpoint(run / "best.safetensors")[1]
        assert header.input_preprocessing.straighten_bend == 0.5
        assert yaml.safe_load((run / "config.yaml").read_text())["straighten_bend"] == 0.5

    out = tmp_path / "eval.json"
    model = str(child / "best.safetensors")
    evaluate = ["evaluate", "--data", str(dataset), "--checkpoint", model, "--json", str(out)]
    assert trainer(evaluate) == 0
    assert json.loads(out.read_text())["straighten_bend"] == 0.5
    assert trainer([*evaluate, "--straighten-bend", "0"]) == 0
    assert json.loads(out.read_text())["straighten_bend"] == 0


def test_fine_tuning_holds_out_the_labs_cells_and_compares_with_its_parent(dataset, tmp_path):
    parent_run = tmp_path / "parent"
    base = ["train", "--output", str(parent_run), *TINY, "--epochs", "1", "--steps-per-epoch", "2"]
    assert trainer([*base, "--generated-cells", "3", "--val-fraction", "0.34"]) == 0
    cells = [generate_cell(k, seed=40 + n, name=f"lab{n}")
             for n, k in enumerate(["46,XX", "46,XY", "47,XY,+21", "45,X"])]
    case_file = tmp_path / "lab.karyo.json"
    save_case(Case(case_id="lab", cells=cells), case_file)
    run = tmp_path / "child"
    args = ["train", "--case-files", str(case_file), "--data", str(dataset),
            "--train-cells", str(dataset / "splits/train.txt"), "--val-fraction", "0.5",
            "--init-checkpoint", str(parent_run / "best.safetensors"), "--output", str(run),
            "--epochs", "1", "--steps-per-epoch", "2", "--threads", "2"]  # fmt: skip
    assert trainer(args) == 0
    child = read_header(run / "best.safetensors")
    held_out = child.training_data["val"]
    assert held_out["sources"] == ["case:lab.karyo.json"]  # the lab's cells, not the replay
    assert held_out["n_cells"] == 2
    done = events_of(run)[-1]
    comparison = done["comparison"]
    assert comparison == json.loads((run / "comparison.json").read_text())
    assert comparison["n_cells"] == 2
    for role in ("parent", "new"):
        assert set(comparison[role]) == {"crop_accuracy", "assigned_accuracy", "iscn_exact"}
        assert all(0 <= value <= 1 for value in comparison[role].values())


def test_the_training_label_trusts_reviewers_and_signed_off_assignments_only():
    cell = generate_cell("46,XX", seed=1)
    first, second, third = cell.chromosomes[:3]
    first.given, first.assigned = None, ChromosomeType.CHR5
    cell.set_manual_label(second.id, ChromosomeType.X, by="reviewer")
    third.given = None
    assert training_label(first, cell) is None  # the model's own guess, not yet signed off
    assert training_label(second, cell) is ChromosomeType.X
    cell.set_status(CellStatus.SIGNED_OFF, by="reviewer")
    assert training_label(first, cell) is ChromosomeType.CHR5
    assert training_label(third, cell) is None


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "trainer/configs").glob("*.yaml")))
def test_the_bundled_configs_are_valid(name):
    from trainer.config import resolve

    config = resolve(str(ROOT / "trainer" / "configs" / name), {})
    assert config.data and config.train_cells and config.val_cells
