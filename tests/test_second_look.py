"""The second look: crops the model is unsure of are classified again upside down."""

import numpy as np
import pytest
import torch

from trainer.evaluation import predict
from trainer.looking import read_together
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


def test_a_chromosome_read_from_several_cuts_takes_the_type_that_fits_them_all():
    probabilities = np.full((3, 24), 0.01, np.float32)
    probabilities[:, [0, 1]] = [[0.6, 0.18], [0.5, 0.28], [0.2, 0.58]]
    others = np.full((2, 24), 0.01, np.float32)
    others[:, [0, 1]] = [[0.05, 0.73], [0.3, 0.48]]  # crop 0's other cuts
    together = read_together(probabilities, others, np.array([0, 0]))
    assert together.sum(axis=1) == pytest.approx(1, abs=1e-5)
    # crop 0: type 0 won its own cut, but type 1 fits all three cuts better
    assert together[0].argmax() == 1
    expected = np.exp(np.log(np.stack([probabilities[0], *others])).mean(axis=0))
    assert together[0] == pytest.approx(expected / expected.sum(), rel=1e-4)
    assert together[1:] == pytest.approx(probabilities[1:], abs=1e-6)  # no other cuts: theirs
    assert read_together(probabilities, others[:0], np.zeros(0)) is probabilities
