"""bench/new_lab_curve.py end to end on generated data: a tiny model fine-tuned through the
Retrain dialog's own command on a few reviewed cells of a generated metaphase "lab"."""

import importlib.util
import json
from pathlib import Path

from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell, write_annotated_metaphases
from trainer.cli import main as trainer

BENCH = Path(__file__).resolve().parents[1] / "bench" / "new_lab_curve.py"
TINY = ["--arch", "resnet10t", "--embedding-dim", "32", "--input-height", "64",
        "--input-width", "32", "--threads", "2"]  # fmt: skip


def test_the_curve_has_a_row_per_number_of_cells_with_time_and_both_labs(tmp_path):
    base = tmp_path / "base"
    names = []
    for k, karyotype in enumerate(["46,XY", "46,XX", "46,XY", "46,XX"]):
        cell = generate_cell(karyotype, seed=700 + k, name=f"b{k}")
        write_cell(cell, base / "cells" / cell.name)
        names.append(cell.name)
    (base / "splits").mkdir()
    (base / "splits" / "train.txt").write_text("\n".join(names[:3]) + "\n")
    (base / "splits" / "test.txt").write_text(names[3] + "\n")
    lab = write_annotated_metaphases(tmp_path / "lab", 6, seed=4)
    parent = tmp_path / "parent"
    assert trainer(["train", "--data", str(base), "--train-cells",
                    str(base / "splits/train.txt"), "--output", str(parent), *TINY,
                    "--epochs", "1", "--steps-per-epoch", "2"]) == 0
    spec = importlib.util.spec_from_file_location("bench_new_lab_curve", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "curve.json"
    code = bench.main([
        "--lab", str(lab), "--base", str(base), "--model", str(parent / "best.safetensors"),
        "--cells", "1", "2", "--work", str(tmp_path / "work"), "--json", str(out),
        "--device", "cpu", "--trainer-options", "--steps-per-epoch 2 --epochs 1 --threads 2",
    ])  # fmt: skip
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["cells"] for row in rows] == [0, 1, 2]
    for row in rows:
        for side in ("lab", "base"):
            assert 0 <= row[side]["crop_accuracy"] <= 1
    assert rows[2]["minutes"] > 0 and rows[2]["crops"] > rows[1]["crops"]
    assert "crop_accuracy_gain" in rows[2]["dialog_comparison"]
