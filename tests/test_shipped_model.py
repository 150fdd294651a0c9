"""The model shipped in resources/: loads on CPU, is small, and knows the example cells."""

from pathlib import Path

import numpy as np
import pytest
import torch

from karyo_gui.core.synthetic import EXAMPLE_KARYOTYPES, generate_cell
from trainer.checkpoint import load_checkpoint
from trainer.data import crops_of_cells, load_dataset_crops
from trainer.evaluation import predict

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "resources" / "karyo-default.safetensors"
GBAND612 = ROOT.parent / "shared" / "data" / "gband612"


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(SHIPPED, "cpu")


def test_the_shipped_model_is_small_and_describes_itself(shipped):
    _, header = shipped
    assert SHIPPED.stat().st_size <= 25 * 2**20
    assert header.arch and len(header.class_names) == 24
    assert header.training_data["train"]["n_crops"] > 10_000
    assert 0.9 < header.metrics["test"]["crop_accuracy"] <= 1


def test_the_shipped_model_classifies_unseen_generated_cells(shipped):
    net, header = shipped
    # seeds far from the generated cells it was trained on (0..39)
    cells = [generate_cell(k, seed=5000 + i) for i, k in enumerate(EXAMPLE_KARYOTYPES)]
    crops = crops_of_cells(cells, header.input_preprocessing)
    predictions = predict(net, crops.images, header.input_preprocessing, torch.device("cpu"))
    accuracy = float((predictions.probabilities.argmax(1) == crops.labels).mean())
    assert accuracy > 0.95


@pytest.mark.shared_data
@pytest.mark.skipif(not GBAND612.is_dir(), reason="../shared/data/gband612 is not here")
def test_the_shipped_model_on_real_test_cells(shipped):
    net, header = shipped
    names = (GBAND612 / "splits" / "test.txt").read_text().split()[:10]
    crops = load_dataset_crops(GBAND612, names, header.input_preprocessing)
    predictions = predict(net, crops.images, header.input_preprocessing, torch.device("cpu"))
    accuracy = np.mean(predictions.probabilities.argmax(1) == crops.labels)
    # ten cells are a small sample: allow for that, but not for broken loading or input
    assert accuracy > header.metrics["test"]["crop_accuracy"] - 0.08
