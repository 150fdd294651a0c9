"""Temperature scaling: fitted on labelled cells by ``trainer export --calibrate``, kept in
the model header, applied by the app to every probability it shows."""

import numpy as np
import pytest
import torch

from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.inference.classifier import Classifier
from trainer.calibration import expected_calibration_error, fit_temperature
from trainer.checkpoint import (
    CheckpointError,
    ModelHeader,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from trainer.cli import main as trainer
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing

PREP = Preprocessing(height=64, width=32)


def test_the_fitted_temperature_undoes_an_over_or_under_confident_model():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 24))
    truth = np.exp(logits - logits.max(1, keepdims=True))
    truth /= truth.sum(1, keepdims=True)
    # each label drawn from softmax(logits): those logits are calibrated by construction
    labels = np.array([rng.choice(24, p=row) for row in truth])
    for true_t in (0.5, 2.0):  # the model's logits scaled by 1 / true_t: mis-calibrated
        scaled = logits / true_t
        probabilities = np.exp(scaled - scaled.max(1, keepdims=True))
        probabilities /= probabilities.sum(1, keepdims=True)
        fitted = fit_temperature(probabilities, labels)
        assert fitted == pytest.approx(1 / true_t, rel=0.1)
        fixed = np.exp(np.log(probabilities) / fitted)
        fixed /= fixed.sum(1, keepdims=True)
        right = fixed.argmax(1) == labels
        assert expected_calibration_error(fixed.max(1), right) < 0.5 * expected_calibration_error(
            probabilities.max(1), right)


def test_export_calibrates_on_labelled_cells_and_the_classifier_applies_it(tmp_path, capsys):
    names = []
    for seed in range(3):
        cell = generate_cell("46,XY", seed=seed)
        cell.name = f"case{seed}.1"
        write_cell(cell, tmp_path / "data" / "cells" / cell.name)
        names.append(cell.name)
    (tmp_path / "cells.txt").write_text("\n".join(names) + "\n")
    torch.manual_seed(0)
    net = ChromosomeNet("resnet10t", embedding_dim=32).eval()
    header = ModelHeader(arch="resnet10t", embedding_dim=32, preprocessing=PREP.to_dict())
    plain = save_checkpoint(tmp_path / "plain.safetensors", net, header)
    calibrated = tmp_path / "calibrated.safetensors"
    source = f"{tmp_path / 'data'}={tmp_path / 'cells.txt'}"

    assert trainer(["export", "--checkpoint", str(plain), "--out", str(calibrated),
                    "--calibrate", str(tmp_path / "data")]) == 2  # fmt: skip
    assert "write DATA=LIST" in capsys.readouterr().err and not calibrated.exists()
    assert trainer(["export", "--checkpoint", str(plain), "--out", str(calibrated),
                    "--calibrate", source]) == 0  # fmt: skip
    assert "fitted on data:cells.txt (138 crops)" in capsys.readouterr().out
    stored = read_header(calibrated)
    assert stored.model_id == read_header(plain).model_id  # the same weights
    temperature = stored.calibration["temperature"]
    assert 0.05 <= temperature <= 20 and temperature != 1
    assert stored.calibration["ece_after"] <= stored.calibration["ece_before"]

    cell = generate_cell("46,XY", seed=7)
    raw = Classifier(plain, device="cpu").predict_cell(cell).probabilities
    shown = Classifier(calibrated, device="cpu").predict_cell(cell).probabilities
    np.testing.assert_array_equal(raw.argmax(1), shown.argmax(1))
    assert not np.allclose(raw, shown)
    np.testing.assert_allclose(shown.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("calibration", [{"temperature": 0}, {"temperature": "hot"}, [1.5],
                                         {"temperature": float("nan")}])
def test_a_header_with_an_impossible_temperature_is_refused(tmp_path, calibration):
    torch.manual_seed(0)
    net = ChromosomeNet("resnet10t", embedding_dim=32).eval()
    header = ModelHeader(arch="resnet10t", embedding_dim=32, preprocessing=PREP.to_dict(),
                         calibration=calibration)
    path = save_checkpoint(tmp_path / "m.safetensors", net, header)
    with pytest.raises(CheckpointError, match="calibration"):
        load_checkpoint(path)
