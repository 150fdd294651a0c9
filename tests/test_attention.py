"""Grad-CAM maps: over the crop as stored, in [0, 1], for the asked type, without side effects."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from karyo_gui.core.synthetic import generate_cell
from karyo_gui.inference.attention import (
    AttentionError,
    attention_map,
    reshape_transform,
    target_layer,
)
from trainer.batches import normalise
from trainer.checkpoint import load_checkpoint
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing, cell_scale, is_lying, place_crop, placement

SHIPPED = Path(__file__).resolve().parents[1] / "resources" / "karyo-default.safetensors"
PREP = Preprocessing()  # 128 x 64


@pytest.fixture(scope="module")
def cell():
    return generate_cell("46,XY", seed=5001)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return ChromosomeNet("resnet18", embedding_dim=32).eval()


def long_crop(cell) -> np.ndarray:
    return max((c.image for c in cell.chromosomes), key=lambda image: image.shape[0])


def lying_crop_with_blob(cell) -> tuple[np.ndarray, np.ndarray]:
    """The longest chromosome lying on its side with a dark (bright to the model) blob at
    its left end, and where the blob is."""
    image = np.rot90(long_crop(cell)).copy()
    blob = np.zeros(image.shape, np.uint8)
    height = image.shape[0]
    cv2.circle(blob, (height // 2, height // 2), height // 3, 1, -1)
    image[blob > 0] = 0
    assert is_lying(*image.shape)
    return image, blob > 0


def placed(image, cell):
    scale = cell_scale([c.image for c in cell.chromosomes], PREP)
    return place_crop(image, scale, PREP), placement(image, scale, PREP)


@pytest.mark.parametrize("lying", [False, True], ids=["upright", "lying"])
def test_placement_maps_the_canvas_back_onto_the_crop(cell, lying):
    image, blob = lying_crop_with_blob(cell) if lying else (long_crop(cell), None)
    canvas, where = placed(image, cell)
    assert where.turned == lying
    # the canvas itself, mapped back, is the crop (inverted to bright on black)
    back = where.to_crop(canvas / 255.0)
    assert back.shape == image.shape
    expected = (255 - image.astype(np.float32)) / 255
    assert np.corrcoef(back.ravel(), expected.ravel())[0, 1] > 0.9
    if lying:  # the blob comes back at the crop's left end, not turned to its right one
        assert back[blob].mean() > 0.9
        assert back[np.rot90(blob, 2)].mean() < 0.7


def test_the_map_covers_an_upright_crop(net, cell):
    image = long_crop(cell)
    canvas, where = placed(image, cell)
    result = attention_map(net, canvas, PREP, where)
    assert result.crop_map.shape == image.shape and result.crop_map.dtype == np.float32
    assert result.canvas_map.shape == (PREP.height, PREP.width)
    for values in (result.crop_map, result.canvas_map):
        assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    assert result.canvas_map.max() == pytest.approx(1, abs=1e-3)


def test_the_map_of_a_lying_crop_is_turned_back(net, cell):
    image, _ = lying_crop_with_blob(cell)
    canvas, where = placed(image, cell)
    result = attention_map(net, canvas, PREP, where)
    assert result.crop_map.shape == image.shape
    np.testing.assert_allclose(result.crop_map, where.to_crop(result.canvas_map), atol=1e-6)


def test_the_map_of_a_straightened_chromosome_covers_the_bent_crop(net, cell):
    import dataclasses

    from test_straightening import bow

    image = 255 - bow(255 - long_crop(cell), 2.4)[0]
    straightening = dataclasses.replace(PREP, straighten_bend=0.5)
    scale = cell_scale([c.image for c in cell.chromosomes], straightening)
    canvas, where = place_crop(image, scale, straightening), placement(image, scale, straightening)
    assert where.straightened is not None
    result = attention_map(net, canvas, straightening, where)
    assert result.crop_map.shape == image.shape
    assert np.isfinite(result.crop_map).all()
    assert 0 <= result.crop_map.min() <= result.crop_map.max() <= 1
    np.testing.assert_allclose(result.crop_map, where.to_crop(result.canvas_map), atol=1e-6)


def grad_cam_by_hand(net, canvas, target):
    """Grad-CAM written out: the ReLU of the gradient-weighted last feature stage."""
    x = normalise(torch.from_numpy(canvas)[None], PREP)
    features = {}
    handle = net.encoder.layer4.register_forward_hook(lambda m, i, out: features.update(a=out))
    try:
        logit = net(x).logits[0, target]
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(logit, features["a"])
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * features["a"]).sum(1))[0]
    cam = cv2.resize(cam.detach().numpy(), (PREP.width, PREP.height))
    cam -= cam.min()
    return cam / (cam.max() + 1e-7)


def test_target_chooses_the_type_explained(net, cell):
    image = long_crop(cell)
    canvas, where = placed(image, cell)
    with torch.no_grad():
        logits = net(normalise(torch.from_numpy(canvas)[None], PREP)).logits[0]
    probabilities = torch.softmax(logits, 0)
    predicted = attention_map(net, canvas, PREP, where)
    assert predicted.target == int(logits.argmax())
    others = [t for t in range(24) if t != predicted.target][:2]
    maps = []
    for target in [predicted.target, *others]:
        result = attention_map(net, canvas, PREP, where, target=target)
        assert result.target == target
        assert result.probability == pytest.approx(float(probabilities[target]), rel=1e-4)
        np.testing.assert_allclose(
            result.canvas_map, grad_cam_by_hand(net, canvas, target), atol=1e-4
        )
        maps.append(result.canvas_map)
    assert not np.allclose(maps[1], maps[2])
    with pytest.raises(ValueError, match="target"):
        attention_map(net, canvas, PREP, where, target=24)
    with pytest.raises(ValueError, match="model is on cpu"):
        attention_map(net, canvas, PREP, where, device="cuda")


def test_the_net_is_left_as_it_was(net, cell):
    canvas, where = placed(long_crop(cell), cell)
    net.train()
    net.encoder.conv1.weight.requires_grad_(False)
    net.head.weight.grad = torch.zeros_like(net.head.weight)
    attention_map(net, canvas, PREP, where)
    assert not any(module.training for module in net.modules())
    for module in net.modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            assert not getattr(module, hooks), f"{hooks} left on {type(module).__name__}"
    for name, parameter in net.named_parameters():
        assert parameter.requires_grad == (name != "encoder.conv1.weight"), name
        if name == "head.weight":
            assert parameter.grad is not None and not parameter.grad.any()
        else:
            assert parameter.grad is None, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_the_map_on_the_gpu_is_the_map_on_the_cpu(net, cell):
    canvas, where = placed(long_crop(cell), cell)
    on_cpu = attention_map(net, canvas, PREP, where)
    on_gpu = attention_map(net.to("cuda"), canvas, PREP, where, device="cuda")
    assert on_gpu.target == on_cpu.target
    np.testing.assert_allclose(on_gpu.crop_map, on_cpu.crop_map, atol=1e-2)


def test_a_model_without_a_layer_to_explain_is_named(net):
    del net.encoder.feature_info
    with pytest.raises(AttentionError, match="resnet18"):
        target_layer(net)


@pytest.mark.parametrize(
    ("arch", "kwargs", "grid"),
    [
        ("vit_tiny_patch16_224", {"img_size": (128, 64)}, (8, 4)),
        (
            "swin_tiny_patch4_window7_224",
            {"img_size": (128, 64), "embed_dim": 24, "depths": (1, 1, 1, 1)},
            (4, 2),
        ),
    ],
    ids=["vit", "swin"],
)
def test_transformers_give_a_map_of_the_crop(cell, arch, kwargs, grid):
    torch.manual_seed(0)
    net = ChromosomeNet(arch, embedding_dim=32, **kwargs).eval()
    canvas, where = placed(long_crop(cell), cell)
    features = {}
    handle = target_layer(net).register_forward_hook(lambda m, i, out: features.update(a=out))
    with torch.no_grad():
        net(normalise(torch.from_numpy(canvas)[None], PREP))
    handle.remove()
    assert reshape_transform(net)(features["a"]).shape[2:] == grid
    result = attention_map(net, canvas, PREP, where)
    assert result.crop_map.shape == where.to_crop(canvas).shape == long_crop(cell).shape
    assert np.isfinite(result.crop_map).all()
    assert result.crop_map.min() >= 0 and result.crop_map.max() <= 1


@pytest.mark.skipif(not SHIPPED.is_file(), reason="resources/karyo-default.safetensors is absent")
def test_the_shipped_model_looks_at_the_chromosome(cell):
    net, header = load_checkpoint(SHIPPED, "cpu")
    prep = header.input_preprocessing
    images = [c.image for c in cell.chromosomes]
    scale = cell_scale(images, prep)
    images = images[:16]  # enough to tell, quick on two cores
    chromosome, background, wins = [], [], 0
    for image in images:
        canvas = place_crop(image, scale, prep)
        result = attention_map(net, canvas, prep, placement(image, scale, prep))
        chromosome.append(result.canvas_map[canvas > 0].mean())
        background.append(result.canvas_map[canvas == 0].mean())
        wins += chromosome[-1] > background[-1]
    # the maps are coarse (4 x 2 cells), so a single crop may miss; the cell may not
    assert np.mean(chromosome) > np.mean(background) + 0.03
    assert wins > 2 / 3 * len(images)
