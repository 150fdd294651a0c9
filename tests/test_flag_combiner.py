"""bench/flag_combiner.py: the flag figures it reports, and a run end to end on generated cells
with the shipped model."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def _bench():
    sys.path.insert(0, str(BENCH_DIR))  # its siblings (flag_quality, size_check) import so
    try:
        spec = importlib.util.spec_from_file_location("bench_flag_combiner",
                                                      BENCH_DIR / "flag_combiner.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(BENCH_DIR))
    return bench


def test_flag_rates_count_caught_errors_and_flags_on_cells_the_model_got_right():
    bench = _bench()
    cell_of = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    wrong = np.array([1, 0, 0, 0, 0, 0, 0, 1], bool)
    flagged = np.array([1, 1, 0, 1, 1, 0, 0, 0], bool)
    rates = bench.flag_rates(cell_of, wrong, flagged)
    assert rates["wrong"] == 2
    assert rates["flag_recall"] == 0.5  # cell 0's error is flagged, cell 2's is not
    assert rates["correct_cells"] == 1  # only cell 1 is all right...
    assert rates["flags_per_correct_cell"] == [2.0, 2.0, 2]  # ...and it carries 2 flags


def test_the_bench_scores_every_rule_on_generated_cells_with_label_errors(tmp_path):
    root = tmp_path / "lab"
    names = []
    for k, karyotype in enumerate(["46,XY", "46,XX"] * 3):
        cell = generate_cell(karyotype, seed=900 + k, name=f"c{k}")
        first, second = cell.chromosomes[0], cell.chromosomes[-3]
        first.given, second.given = second.given, first.given  # a swapped pair: 2 errors
        write_cell(cell, root / "cells" / cell.name)
        names.append(cell.name)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "flags.json"
    code = _bench().main(["--labs", f"generated={root}", "--folds", "3",
                          "--scores", "0.05", "0.2", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    rows = report["labs"]["generated"]
    rules = [row["rule"] for row in rows]
    assert rules[0] == "shipped"
    for what in ("doubt alone", "logistic", "boosted trees"):
        assert f"{what} > 0.05" in rules and f"{what} > 0.2" in rules
    for row in rows:
        assert row["wrong"] >= 12  # every swapped label is an error the model cannot share
        assert 0.0 <= row["flag_recall"] <= 1.0
        assert row["correct_cells"] == 0  # no cell is all right: each holds a swapped pair
    # a lower threshold never flags fewer errors than a higher one
    by_rule = {row["rule"]: row for row in rows}
    for what in ("doubt alone", "logistic", "boosted trees"):
        assert by_rule[f"{what} > 0.05"]["flag_recall"] >= by_rule[f"{what} > 0.2"]["flag_recall"]
