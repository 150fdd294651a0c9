"""The karyo command line."""

import pytest

from karyo_gui.cli import main
from karyo_gui.core.loaders import load_cell


def test_example_writes_a_cell_that_opens_with_its_karyotype(tmp_path, capsys):
    assert main(["example", str(tmp_path / "cell"), "--karyotype", "47,XY,+21", "--seed", "3"]) == 0
    assert "47 crops" in capsys.readouterr().out
    cell = load_cell(tmp_path / "cell")
    assert cell.karyotype == "47,XY,+21" and not cell.problems


def test_example_unlabelled_is_a_flat_folder(tmp_path):
    assert main(["example", str(tmp_path / "flat"), "--unlabelled"]) == 0
    cell = load_cell(tmp_path / "flat")
    assert len(cell) == 46 and all(c.given is None for c in cell.chromosomes)


def test_a_wrong_karyotype_is_one_line_and_exit_status_2(tmp_path, capsys):
    assert main(["example", str(tmp_path / "x"), "--karyotype", "46,XY,+21"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("karyo:") and "46,XY,+21" in error and "Traceback" not in error


def test_gui_without_a_display_says_so(monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main(["gui"]) == 1
    assert "no display" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
