"""The second look: crops the model is unsure of are classified again upside down."""

import numpy as np
import pytest
import torch

from trainer.evaluation import predict
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_and_crops():
    torch.manual_seed(0)
    net = ChromosomeNet("resnet10t", embedding_dim=16).eval()
    with torch.no_grad():  # spread the logits so that margins vary from crop to crop
        net.head.weight.mul_(40)
    rng = np.random.default_rng(0)
    canvases = rng.integers(0, 256, size=(40, 64, 32), dtype=np.uint8)
    canvases[:, :20] //= 4  # top and bottom differ, so the upside-down look differs
    return net, canvases, Preprocessing(height=64, width=32)


def margins(probabilities):
    ranked = np.sort(probabilities, axis=1)
    return ranked[:, -1] - ranked[:, -2]


def test_only_unsure_crops_get_the_mean_of_both_looks(model_and_crops):
    net, canvases, preprocessing = model_and_crops
    first = predict(net, canvases, preprocessing, CPU, second_look=0)
    upside_down = predict(net, canvases[:, ::-1].copy(), preprocessing, CPU, second_look=0)
    threshold = float(np.median(margins(first.probabilities)))
    unsure = margins(first.probabilities) < threshold
    assert 0 < unsure.sum() < len(canvases)

    looked = predict(net, canvases, preprocessing, CPU, batch_size=7, second_look=threshold)

    expected = np.where(
        unsure[:, None],
        (first.probabilities + upside_down.probabilities) / 2,
        first.probabilities,
    )
    np.testing.assert_allclose(looked.probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(looked.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(looked.probabilities[unsure], first.probabilities[unsure])
    # the embedding (t-SNE, similarity) stays the first look's
    np.testing.assert_allclose(looked.embeddings, first.embeddings, atol=1e-6)


def test_a_model_sure_of_every_crop_is_not_run_twice(model_and_crops, monkeypatch):
    net, canvases, preprocessing = model_and_crops
    calls = []
    forward = net.forward
    monkeypatch.setattr(net, "forward", lambda x: calls.append(len(x)) or forward(x))

    predict(net, canvases, preprocessing, CPU, second_look=1e-9)
    assert sum(calls) == len(canvases)
    calls.clear()
    predict(net, canvases, preprocessing, CPU, second_look=1.01)
    assert sum(calls) == 2 * len(canvases)


def test_no_crops_give_empty_predictions(model_and_crops):
    net, canvases, preprocessing = model_and_crops
    empty = predict(net, canvases[:0], preprocessing, CPU)
    assert empty.probabilities.shape == (0, 24)
