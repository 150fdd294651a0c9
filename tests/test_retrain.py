"""Retraining from the app, for real: a tiny model fine-tuned on generated corrected cells
through the dialog, in a trainer process of its own; a killed run loses nothing."""

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from karyo_gui.core.case import Case, CellStatus
from karyo_gui.core.case_file import SUFFIX, save_case
from karyo_gui.core.labels import ChromosomeType as T
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.inference.registry import ModelRegistry
from karyo_gui.qt.main_window import MainWindow
from karyo_gui.qt.retrain import RetrainPlan, comparison_text, reviewed_case_files
from trainer.checkpoint import read_header
from trainer.cli import main as trainer
from trainer.finetune import (
    LAB_WEIGHT,
    MAX_STEPS,
    MIN_STEPS,
    estimate_seconds,
    paired_difference,
    recipe_for,
)  # fmt: skip

TINY = ["--arch", "resnet10t", "--embedding-dim", "32", "--input-height", "64",
        "--input-width", "32", "--threads", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small model trained on generated cells: the 'model in use' that gets fine-tuned."""
    run = tmp_path_factory.mktemp("parent")
    args = ["train", "--output", str(run), *TINY, "--epochs", "1", "--steps-per-epoch", "2",
            "--generated-cells", "3", "--val-fraction", "0.34", "--name", "tiny"]  # fmt: skip
    assert trainer(args) == 0
    return run / "best.safetensors"


@pytest.fixture
def lab_case(tmp_path):
    """A saved case of four reviewed cells, one of them with a reviewer's correction."""
    cells = [generate_cell(k, seed=60 + n, name=f"lab{n}")
             for n, k in enumerate(["46,XX", "46,XY", "47,XY,+21", "46,XX"])]
    for cell in cells:
        cell.set_status(CellStatus.REVIEWED, by="ann")
    cells[0].set_manual_label(cells[0].chromosomes[0].id, T.CHR2, by="ann")
    path = tmp_path / f"lab{SUFFIX}"
    save_case(Case(case_id="lab", cells=cells), path)
    return path


def make_window(qtbot, model):
    window = MainWindow(load_model=True, model=model)
    window.ask_on_close = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.service.classifier is not None, timeout=60000)
    return window


def start_run(qtbot, window, lab_case, epochs=2, steps=2):
    window.settings.add_recent(lab_case)
    dialog = window.open_retrain()
    assert dialog.chosen_case_files() == [str(lab_case.resolve())]
    dialog.epochs_spin.setValue(epochs)
    dialog.steps_spin.setValue(steps)
    dialog.device_combo.setCurrentText("cpu")
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert dialog.running()
    return dialog


def test_a_retraining_runs_through_the_dialog_and_the_new_model_can_be_used_and_rolled_back(
    qtbot, tiny_model, lab_case
):
    parent = ModelRegistry().add(tiny_model)
    window = make_window(qtbot, tiny_model)
    dialog = start_run(qtbot, window, lab_case)
    qtbot.waitUntil(lambda: not dialog.running(), timeout=240000)
    assert dialog.failure is None, dialog.failure

    steps, losses = dialog.contrastive_curve.getData()
    assert len(steps) >= 2 and all(loss > 0 for loss in losses)  # the events were plotted
    assert len(dialog.accuracy_curve.getData()[0]) == 2  # one point per epoch
    assert dialog.progress.value() == dialog.progress.maximum()

    new = dialog.new_model
    assert new is not None and new.path.parent == ModelRegistry().folder
    assert [m.model_id for m in ModelRegistry().lineage(new)] == [new.model_id, parent.model_id]
    held_out = new.header.training_data["val"]
    assert held_out["sources"] == [f"case:{lab_case.name}"] and held_out["n_cells"] == 1
    assert not dialog.comparison_table.isHidden()
    assert set(dialog.comparison) >= {"parent", "new"}

    qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.service.classifier.model_id == new.model_id, timeout=60000)
    assert window.settings.model_path == str(new.path)

    history = window.show_model_history()
    history.choose(next(m for m in history.models if m.model_id == parent.model_id))
    qtbot.waitUntil(lambda: window.service.classifier.model_id == parent.model_id, timeout=60000)
    assert read_header(tiny_model).model_id == parent.model_id  # nothing overwritten


def test_a_killed_run_leaves_the_model_and_the_cases_as_they_were(qtbot, tiny_model, lab_case):
    before = lab_case.read_bytes()
    window = make_window(qtbot, tiny_model)
    in_use = window.service.classifier.model_id
    dialog = start_run(qtbot, window, lab_case, epochs=50, steps=50)
    qtbot.waitUntil(lambda: any(e["event"] == "start" for e in dialog.run.events), timeout=60000)
    dialog.run.process.kill()  # as if the system killed it (out of memory...)
    qtbot.waitUntil(lambda: dialog.failure is not None, timeout=30000)
    assert "killed" in dialog.failure and "unchanged" in dialog.failure
    assert not dialog.log_view.isHidden()
    assert dialog.new_model is None
    assert [m for m in ModelRegistry().models() if not m.shipped] == []
    assert window.service.classifier.model_id == in_use
    assert lab_case.read_bytes() == before


def test_a_cancelled_run_stops_cleanly(qtbot, tiny_model, lab_case):
    window = make_window(qtbot, tiny_model)
    dialog = start_run(qtbot, window, lab_case, epochs=50, steps=50)
    qtbot.waitUntil(lambda: any(e["event"] == "start" for e in dialog.run.events), timeout=60000)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.failure is not None, timeout=60000)
    assert dialog.failure.startswith("cancelled")
    assert any(e["event"] == "interrupted" for e in dialog.run.events)  # stopped between steps


def test_a_run_that_fails_shows_the_trainers_message(qtbot, tiny_model, lab_case, tmp_path):
    window = make_window(qtbot, tiny_model)
    window.settings.add_recent(lab_case)
    dialog = window.open_retrain()
    dialog.replay_check.setChecked(True)
    dialog.base_edit.setText(str(tmp_path))  # a folder, but no dataset in it
    dialog.device_combo.setCurrentText("cpu")
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.failure is not None, timeout=120000)
    assert "exit status" in dialog.failure
    assert "no cell folders" in dialog.log_view.toPlainText()  # the trainer's own words


def test_the_dialog_offers_only_reviewed_case_files_and_refuses_an_empty_choice(
    qtbot, tiny_model, lab_case, tmp_path
):
    unreviewed = tmp_path / f"new{SUFFIX}"
    save_case(Case(case_id="new", cells=[generate_cell("46,XY", seed=1)]), unreviewed)
    assert reviewed_case_files([str(unreviewed), str(lab_case), "nowhere.karyo.json"]) == [
        str(lab_case)
    ]
    window = make_window(qtbot, tiny_model)
    dialog = window.open_retrain()
    assert dialog.chosen_case_files() == []
    assert not dialog.start()
    assert "case file" in dialog.status_label.text()


def test_the_plan_is_the_trainers_command_line(tmp_path):
    data = tmp_path / "gband"
    (data / "splits").mkdir(parents=True)
    (data / "splits" / "train.txt").write_text("a\n")
    plan = RetrainPlan(parent=tmp_path / "m.safetensors", case_files=["a.karyo.json"],
                       name="lab", base_data=str(data), output=tmp_path / "run")
    command = plan.command()
    assert command[1:4] == ["-m", "trainer", "train"]
    assert command[command.index("--init-checkpoint") + 1] == str(tmp_path / "m.safetensors")
    assert command[command.index("--train-cells") + 1] == str(data / "splits" / "train.txt")
    assert "--events" in command and "jsonl" in command


def test_a_run_with_replay_draws_the_lab_as_often_as_the_base_and_says_how_sure_it_is(
    tmp_path, tiny_model, lab_case
):
    from dataclasses import replace

    from karyo_gui.core.loaders import write_cell

    base = tmp_path / "base lab"  # a name that needs quoting in the --mix mapping
    names = []
    for k, karyotype in enumerate(["46,XY", "46,XX", "46,XY"]):
        cell = generate_cell(karyotype, seed=500 + k, name=f"b{k}")
        write_cell(cell, base / "cells" / cell.name)
        names.append(cell.name)
    (base / "splits").mkdir()
    (base / "splits" / "train.txt").write_text("\n".join(names) + "\n")
    plan = RetrainPlan(parent=tiny_model, case_files=[str(lab_case)], name="lab",
                       base_data=str(base), output=tmp_path / "run", device="cpu")
    plan = replace(plan.for_cells(4), epochs=1, steps_per_epoch=2)
    command = plan.command()
    assert trainer([*command[3:], "--threads", "2"]) == 0
    header = read_header(tmp_path / "run" / "best.safetensors")
    assert header.config["mix"] == {"case": 1.0, "base lab": 1}
    assert set(header.training_data["train"]["labs"]) == {"case", "base lab"}
    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    gain = comparison["crop_accuracy_gain"]
    assert gain["n_cells"] == comparison["n_cells"] == 1 and gain["ci95"] is None
    text = comparison_text(comparison)
    assert "1 held-out cell (" in text and "hint, not a measurement" in text


def test_the_recipe_grows_with_the_cells_and_the_estimate_follows_the_device():
    few, many = recipe_for(3), recipe_for(20)
    assert few.steps <= recipe_for(10).steps <= many.steps <= MAX_STEPS
    assert few.steps >= MIN_STEPS and few.lab_weight == many.lab_weight == LAB_WEIGHT
    cpu = estimate_seconds(many.steps, 20 + 339, "cpu", threads=2)
    assert estimate_seconds(many.steps, 20 + 339, "cuda", threads=2) < cpu / 5
    assert estimate_seconds(many.steps, 20 + 339, "cpu", threads=8) < cpu


def test_the_comparison_interval_comes_from_the_cells_and_narrows_with_more_of_them():
    rng = np.random.default_rng(0)

    def interval(n_cells):
        cell_of = np.repeat(np.arange(n_cells), 40)
        parent = rng.random(len(cell_of)) < 0.6
        new = parent | (rng.random(len(cell_of)) < 0.3)  # the new model fixes some crops
        result = paired_difference(parent, new, cell_of)
        assert result["difference"] == pytest.approx(new.mean() - parent.mean())
        low, high = result["ci95"]
        assert low <= result["difference"] <= high
        return high - low

    assert interval(40) < interval(3)
    same = np.ones(80, bool)
    assert paired_difference(same, same, np.repeat([0, 1], 40))["ci95"] == [0.0, 0.0]
    text = comparison_text({"n_cells": 12, "n_crops": 540, "crop_accuracy_gain": {
        "difference": 0.05, "ci95": [-0.01, 0.11]}})
    assert "+5.0 points" in text and "12 held-out cells (540 crops)" in text
    assert "may be no better" in text and "hint" not in text


def test_the_dialog_fills_the_run_from_the_number_of_reviewed_cells(qtbot, tiny_model, lab_case):
    window = make_window(qtbot, tiny_model)
    window.settings.add_recent(lab_case)
    dialog = window.open_retrain()
    recipe = recipe_for(4)  # the lab case holds four reviewed cells
    assert dialog.steps_spin.value() == recipe.steps_per_epoch
    assert dialog.epochs_spin.value() == recipe.epochs
    assert "4 reviewed cells" in dialog.recipe_label.text()
    assert "about" in dialog.recipe_label.text()  # a time estimate
    # four cells: the measured curve says that is too few for a gain on a new lab
    assert "Fewer than 5 reviewed cells" in dialog.recipe_label.text()
    assert dialog.plan().lr == recipe.lr
    dialog.case_list.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert "0 reviewed cells" in dialog.recipe_label.text() or "Choose" in \
        dialog.recipe_label.text()


def test_the_curve_note_warns_below_five_cells_and_gives_the_measured_gains():
    from trainer.finetune import FEW_CELLS, NEW_LAB_CURVE, curve_note

    few, enough = curve_note(FEW_CELLS - 1), curve_note(FEW_CELLS)
    assert "no gain" in few and "review more cells" in few
    assert "no gain" not in enough
    gain_20 = 100 * (NEW_LAB_CURVE[20][0] - NEW_LAB_CURVE[0][0])
    assert f"20 cells {gain_20:+.1f}" in enough
