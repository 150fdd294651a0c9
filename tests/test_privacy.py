"""Files that travel (model files, exported reports, case folders handed on) do not carry
the folder names of the machine that wrote them."""

import json

import pytest

from karyo_gui.core.case import Case
from karyo_gui.core.case_file import SUFFIX, save_case
from karyo_gui.core.loaders import load_cell, write_cell
from karyo_gui.core.privacy import shareable_path, without_private_paths
from karyo_gui.core.synthetic import generate_cell


@pytest.mark.parametrize(
    ("path", "shared"),
    [
        ("/home/alice/cases/case17.karyo.json", "…/case17.karyo.json"),
        ("C:\\Users\\alice\\cases\\case17.karyo.json", "…/case17.karyo.json"),
        ("~/data/gband612", "…/gband612"),
        ("../shared/data/gband612/splits/train.txt", "../shared/data/gband612/splits/train.txt"),
        ("runs/stage2", "runs/stage2"),
        ("resnet18", "resnet18"),
        ("/", "…"),
    ],
)
def test_absolute_paths_keep_only_their_name(path, shared):
    assert shareable_path(path) == shared


def test_nested_values_are_cleaned_and_other_values_kept():
    value = {"files": ["/home/bob/a.karyo.json", "b.karyo.json"], "lr": 2e-4, "n": [1, None]}
    assert without_private_paths(value) == {
        "files": ["…/a.karyo.json", "b.karyo.json"], "lr": 2e-4, "n": [1, None],
    }


def test_a_model_file_names_its_training_files_without_their_folders(tmp_path):
    from trainer.checkpoint import ModelHeader, read_header, save_checkpoint
    from trainer.model import ChromosomeNet
    from trainer.preprocessing import Preprocessing

    private = tmp_path / "home" / "alice"
    header = ModelHeader(
        arch="resnet10t", embedding_dim=16,
        preprocessing=Preprocessing(height=48, width=32).to_dict(),
        training_data={"train": {"sources": [str(private / "case17.karyo.json")]}},
        config={"case_files": [str(private / "case17.karyo.json")],
                "init_checkpoint": str(private / "models" / "parent.safetensors"),
                "output": "runs/lab"},
        metrics={"test": {"cells": str(private / "test.txt"), "crop_accuracy": 0.9}},
        parent={"name": "parent", "model_id": "abc", "path": "parent.safetensors"},
    )  # fmt: skip
    path = save_checkpoint(tmp_path / "model.safetensors", ChromosomeNet("resnet10t", 16), header)
    stored = read_header(path)
    text = stored.to_json()
    assert str(tmp_path) not in text and "alice" not in text
    assert stored.config["case_files"] == ["…/case17.karyo.json"]
    assert stored.config["init_checkpoint"] == "…/parent.safetensors"
    assert stored.config["output"] == "runs/lab"
    assert stored.metrics["test"] == {"cells": "…/test.txt", "crop_accuracy": 0.9}


def test_the_shipped_model_names_no_folder_of_the_machine_that_trained_it():
    from trainer.checkpoint import SHIPPED_MODEL, read_header

    if not SHIPPED_MODEL.is_file():
        pytest.skip("no shipped model in resources/")
    text = read_header(SHIPPED_MODEL).to_json()
    for value in json.loads(text).values():
        assert without_private_paths(value) == value


def test_a_case_folder_handed_on_names_no_folder_above_it(tmp_path):
    folder = tmp_path / "home" / "alice" / "P3"
    write_cell(generate_cell("46,XX", seed=1), folder / "cell1")
    cell = load_cell(folder / "cell1")
    save_case(Case(case_id="P3", cells=[cell]), folder / f"P3{SUFFIX}")
    text = (folder / f"P3{SUFFIX}").read_text(encoding="utf-8")
    assert str(tmp_path) not in text and "alice" not in text
    chromosomes = json.loads(text)["case"]["cells"][0]["chromosomes"]
    assert all(c["source_path"].startswith("cell1/") for c in chromosomes)


def test_exported_reports_name_no_folder(qtbot, tmp_path):
    from karyo_gui.qt.export import ReportInfo, export_karyogram_png, export_report_pdf

    private = tmp_path / "home" / "alice"
    cell = load_cell(write_cell(generate_cell("47,XY,+21", seed=2), private / "P4.1.tiff"))
    info = ReportInfo("P4", "karyo-default (resnet18, 0123456789ab)", reviewer="A. Reviewer")
    pdf = export_report_pdf(cell, tmp_path / "report.pdf", info).read_bytes()
    png = export_karyogram_png(cell, tmp_path / "karyogram.png").read_bytes()
    for data in (pdf, png):
        assert b"alice" not in data and str(tmp_path).encode() not in data
