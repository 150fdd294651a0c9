"""bench/lab_transfer.py end to end on two generated labs of different stain and scale:
models trained on one lab and on both (here without the contrastive term, the paper's
ablation), each measured on every lab's test cells."""

import importlib.util
import json
from pathlib import Path

import pytest

from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import ImagingStyle, generate_cell

BENCH = Path(__file__).resolve().parents[1] / "bench" / "lab_transfer.py"
TINY = [
    "--arch", "resnet10t", "--embedding-dim", "32", "--input-height", "64",
    "--input-width", "32", "--threads", "2", "--epochs", "1", "--steps-per-epoch", "2",
]  # fmt: skip


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_lab_transfer", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_lab(root: Path, style: ImagingStyle, seed: int) -> Path:
    names = []
    for k, karyotype in enumerate(["46,XY", "46,XX", "46,XY", "46,XX", "47,XY,+21"]):
        cell = generate_cell(karyotype, seed=seed + k, name=f"cell{k}", style=style)
        write_cell(cell, root / "cells" / cell.name)
        names.append(cell.name)
    (root / "splits").mkdir(parents=True)
    for split, members in (("train", names[:3]), ("val", names[3:4]), ("test", names[4:])):
        (root / "splits" / f"{split}.txt").write_text("\n".join(members) + "\n")
    return root


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    long_pale = ImagingStyle(chromosome1_length=150, band_contrast=0.6, gamma=0.8)
    short_dark = ImagingStyle(chromosome1_length=90, band_contrast=0.9, gamma=1.3, blur_sigma=1.4)
    return write_lab(root / "pale", long_pale, 10), write_lab(root / "dark", short_dark, 50)


def test_every_model_is_measured_on_every_lab_and_finished_runs_are_reused(labs, tmp_path):
    bench = load_bench()
    pale, dark = labs
    out = tmp_path / "table.json"
    args = [
        "--lab", f"pale={pale}", "--lab", f"dark={dark}", "--train", "pale", "pale+dark",
        "--lambda-con", "0", "--work", str(tmp_path / "work"), "--json", str(out),
        "--", *TINY,
    ]  # fmt: skip
    assert bench.main(args) == 0
    table = json.loads(out.read_text())["models"]
    assert set(table) == {"pale con=0", "pale+dark con=0"}  # the ablation: no contrastive term
    for row in table.values():
        for lab in ("pale", "dark"):
            assert set(row[lab]) >= {"crop_accuracy", "assigned_accuracy", "iscn_exact"}
            assert 0 <= row[lab]["crop_accuracy"] <= 1 and row[lab]["n_cells"] == 1
    assert table["pale con=0"]["trained_on"] == ["pale"]
    assert table["pale+dark con=0"]["trained_on"] == ["dark", "pale"]
    best = tmp_path / "work" / "pale-dark-con0" / "best.safetensors"
    written = best.stat().st_mtime_ns
    # a second call (another split) measures again without training again
    assert bench.main([*args[:args.index("--json")], "--split", "val", "--", *TINY]) == 0
    assert best.stat().st_mtime_ns == written


def test_a_lab_without_its_splits_is_named_before_any_training(labs, tmp_path):
    bench = load_bench()
    pale, _ = labs
    with pytest.raises(SystemExit, match=r"nowhere.*splits/train\.txt"):
        bench.main(["--lab", f"pale={pale}", "--lab", f"x={tmp_path / 'nowhere'}",
                    "--train", "pale"])
    with pytest.raises(SystemExit, match="no --lab named y"):
        bench.main(["--lab", f"pale={pale}", "--train", "pale+y"])
