"""Issue 24, item 5: a bright-on-dark (Q-banded, fluorescent) cell is recognised, its crops
reach the model in the model's polarity, and the reviewer is told plainly when the model
was never trained on such cells, in the JSON, on the command line and in the window."""

from __future__ import annotations

import json

import pytest

from karyo_gui.core.case import Cell
from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell, generate_metaphase, metaphase_cell
from trainer.checkpoint import SHIPPED_MODEL
from trainer.data import CropSet, crops_of_cells
from trainer.preprocessing import Preprocessing


def bright_on_dark(cell: Cell) -> Cell:
    """The same cell as a fluorescence microscope shows it: bright chromosomes on black."""
    for chromosome in cell.chromosomes:
        chromosome.image = 255 - chromosome.image
    return cell


def test_a_cell_tells_its_stain_from_its_crops_or_its_metaphase():
    assert not generate_cell("46,XY", seed=3).bright_on_dark
    assert bright_on_dark(generate_cell("46,XY", seed=3)).bright_on_dark
    mixed = generate_cell("46,XX", seed=4)
    for chromosome in mixed.chromosomes[:10]:  # a few odd crops do not make the cell
        chromosome.image = 255 - chromosome.image
    assert not mixed.bright_on_dark
    spread = metaphase_cell(generate_metaphase("46,XY", seed=1))
    assert not spread.bright_on_dark
    spread.metaphase.inverted = True  # read from a bright-on-dark file and inverted
    assert spread.bright_on_dark


def test_the_training_data_counts_its_bright_on_dark_cells_through_every_split():
    preprocessing = Preprocessing()
    cells = [generate_cell("46,XY", seed=s, name=f"g{s}") for s in range(3)]
    cells += [bright_on_dark(generate_cell("46,XX", seed=s, name=f"q{s}")) for s in range(2)]
    crops = crops_of_cells(cells, preprocessing, source="lab")
    assert crops.bright_on_dark_cells == 2
    assert crops.summary()["bright_on_dark_cells"] == 2
    both = CropSet.concatenate([crops, crops_of_cells(cells[3:], preprocessing, "other")])
    assert both.bright_on_dark_cells == 4
    assert both.lab_subset("other").bright_on_dark_cells == 2
    assert both.lab_subset("lab").cell_bright == [False, False, False, True, True]


needs_model = pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped model")


@pytest.fixture(scope="module")
def classifier():
    from karyo_gui.inference.classifier import Classifier

    return Classifier(device="cpu")


@needs_model
def test_the_shipped_model_says_it_was_not_trained_for_a_bright_on_dark_cell(classifier):
    from karyo_gui.inference.report import cell_report

    assert not classifier.trained_on_bright_on_dark  # both its labs are G-banded
    plain = classifier.classify(generate_cell("46,XY", seed=11))
    assert plain.stain_warning is None
    assert cell_report(plain)["stain"] == "dark-on-light"
    assert cell_report(plain)["warnings"] == []
    result = classifier.classify(bright_on_dark(generate_cell("46,XY", seed=11)))
    assert "G-banded" in result.stain_warning and "bright-on-dark" in result.stain_warning
    report = cell_report(result)
    assert report["stain"] == "bright-on-dark"
    assert report["warnings"] == [result.stain_warning]
    # the crops were turned to the model's polarity: the cell is still read, not garbage
    assert result.karyotype == plain.karyotype


@needs_model
def test_a_model_trained_on_bright_on_dark_cells_does_not_warn(classifier, monkeypatch):
    train = dict(classifier.header.training_data.get("train") or {}, bright_on_dark_cells=12)
    monkeypatch.setitem(classifier.header.training_data, "train", train)
    assert classifier.trained_on_bright_on_dark
    assert classifier.classify(bright_on_dark(generate_cell("45,X", seed=2))).stain_warning is None


@needs_model
def test_classify_on_the_command_line_warns_about_a_bright_on_dark_cell(tmp_path, capsys):
    from karyo_gui.cli import main

    folder = write_cell(bright_on_dark(generate_cell("46,XX", seed=5)), tmp_path / "Q1")
    out = tmp_path / "q.json"
    assert main(["classify", str(folder), "--device", "cpu", "--json", str(out)]) == 0
    assert "trained on G-banded cells only" in capsys.readouterr().out
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["stain"] == "bright-on-dark" and len(cell["warnings"]) == 1


@needs_model
def test_the_window_shows_that_the_model_was_not_trained_for_the_stain(qtbot, tmp_path):
    from karyo_gui.qt.main_window import MainWindow

    window = MainWindow(load_model=True)
    window.ask_on_close = False
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.service.classifier is not None, timeout=60000)
    assert window.open_path(write_cell(generate_cell("46,XY", seed=6), tmp_path / "G1"))
    assert window.stain_label.text() == ""
    folder = write_cell(bright_on_dark(generate_cell("46,XY", seed=6)), tmp_path / "Q1")
    assert window.open_path(folder)
    cell = window.current_cell
    qtbot.waitUntil(lambda: all(c.probabilities is not None for c in cell.chromosomes),
                    timeout=60000)
    assert "not G-banded" in window.stain_label.text()
    assert "trained on G-banded cells only" in window.stain_label.toolTip()
