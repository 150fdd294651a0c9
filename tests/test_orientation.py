"""The p-arm-up guess: the orientation head, how its guess reaches the karyogram, and the
reviewer's word over it."""

import numpy as np
import pytest
import torch

from karyo_gui.core.case import Cell, Chromosome, Flag, Orientation
from karyo_gui.core.orientation import UNSURE_MARGIN, apply_orientation_guess
from karyo_gui.inference.classifier import Classifier
from trainer.checkpoint import ModelHeader, read_header, save_checkpoint
from trainer.evaluation import predict
from trainer.model import ChromosomeNet
from trainer.orientation import fit_orientation
from trainer.preprocessing import Preprocessing, prepare_cell

PREP = Preprocessing(height=64, width=32)
CPU = torch.device("cpu")


def crop(rng: np.random.Generator) -> np.ndarray:
    """A G-banded stand-in with a top and a bottom: dark at its top end, fading downwards
    (the same from left and right, so a 180-degree turn is the same as a flip)."""
    height, width = int(rng.integers(24, 44)), int(rng.integers(8, 13))
    image = np.full((height + 8, width + 8), 255, np.uint8)
    shades = np.linspace(40, 190, height)[:, None] + rng.normal(0, 6, (height, width))
    image[4:-4, 4:-4] = np.clip(shades, 0, 255).astype(np.uint8)
    return image


def cell_crops(seed: int, n: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [crop(rng) for _ in range(n)]


def untrained_net() -> ChromosomeNet:
    torch.manual_seed(0)
    return ChromosomeNet("resnet10t", embedding_dim=32).eval()


def training_canvases(seeds, upside_down_share: float = 0.0) -> np.ndarray:
    """Prepared canvases of several cells; a share of the crops stored upside down."""
    rng = np.random.default_rng(7)
    canvases = []
    for seed in seeds:
        images = [
            np.rot90(image, 2) if rng.random() < upside_down_share else image
            for image in cell_crops(seed)
        ]
        canvases.append(prepare_cell(images, PREP))
    return np.concatenate(canvases)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A model whose head was fitted on crops that all stand the same way up."""
    net = untrained_net()
    report = fit_orientation(net, training_canvases(range(6)), PREP, CPU)
    assert report["kept"] and report["held_out_accuracy"] > 0.9
    header = ModelHeader(
        arch="resnet10t", embedding_dim=32, preprocessing=PREP.to_dict(), orientation=report
    )
    return save_checkpoint(tmp_path_factory.mktemp("model") / "m.safetensors", net, header)


def test_the_fitted_head_tells_up_from_down_on_crops_it_never_saw(model_file):
    from trainer.checkpoint import load_checkpoint

    net, header = load_checkpoint(model_file)
    assert header.orientation["held_out_crops"] > 0
    canvases = training_canvases([100, 101])
    standing = predict(net, canvases, PREP, CPU, second_look=0).upside_down
    flipped = predict(
        net, np.ascontiguousarray(canvases[:, ::-1]), PREP, CPU, second_look=0
    ).upside_down
    assert (standing < 0.5).mean() > 0.9 and (flipped > 0.5).mean() > 0.9


def test_crops_that_do_not_agree_on_up_give_no_head():
    net = untrained_net()
    report = fit_orientation(net, training_canvases(range(6), upside_down_share=0.5), PREP, CPU)
    assert not report["kept"] and "do not agree" in report["reason"]
    assert net.orientation is None
    # such a model is saved and loaded without a head, and predicts no orientation
    canvases = training_canvases([100])
    assert predict(net, canvases, PREP, CPU).upside_down is None


def cell_of(images) -> Cell:
    return Cell("c", [Chromosome(f"c{k}", image) for k, image in enumerate(images)])


def test_classifying_stands_upside_down_and_lying_chromosomes_p_arm_up(model_file):
    upright = cell_crops(200)
    images = list(upright)
    images[1] = np.rot90(upright[1], 2)  # upside down
    images[2] = np.rot90(upright[2], -1)  # lying on its side, p-arm to the right
    images[3] = np.rot90(upright[3], 1)  # lying on its side, p-arm to the left
    cell = cell_of(images)
    result = Classifier(model_file, device="cpu").classify(cell)

    shown = [np.array_equal(c.displayed_image(), up) for c, up in zip(cell.chromosomes, upright)]
    assert shown[:4] == [True] * 4 and np.mean(shown) > 0.9
    assert [cell.chromosomes[k].orientation.rotation for k in range(4)] == [0, 180, 90, 270]
    assert {"c1", "c2", "c3"} <= set(result.turned) and "c0" not in result.turned


def test_a_reviewers_turn_survives_classifying_again(model_file):
    upright = cell_crops(201)
    cell = cell_of([np.rot90(upright[0], 2), *upright[1:]])
    classifier = Classifier(model_file, device="cpu")
    classifier.classify(cell)
    assert cell.chromosomes[0].orientation == Orientation(180)
    cell.set_orientation("c0", Orientation(0, flipped=True), by="reviewer")
    result = classifier.classify(cell)
    assert cell.chromosomes[0].orientation == Orientation(0, flipped=True)
    assert "c0" not in result.turned
    assert Flag.ORIENTATION_UNSURE not in cell.chromosomes[0].flags


def test_a_guess_near_even_is_flagged_and_the_flag_goes_when_the_guess_is_sure():
    rng = np.random.default_rng(3)
    cell = cell_of([crop(rng) for _ in range(3)])
    unsure = 0.5 + UNSURE_MARGIN / 2
    apply_orientation_guess(cell, [0, 1, 2], np.array([0.02, unsure, 0.97]))
    assert [c.orientation.rotation for c in cell.chromosomes] == [0, 180, 180]
    assert [Flag.ORIENTATION_UNSURE in c.flags for c in cell.chromosomes] == [False, True, False]
    turned = apply_orientation_guess(cell, [0, 1, 2], np.array([0.02, 0.02, 0.02]))
    assert turned == ["c1", "c2"]
    assert all(c.orientation.rotation == 0 and not c.flags for c in cell.chromosomes)


def test_a_model_without_a_head_leaves_orientation_alone(tmp_path):
    net = untrained_net()
    header = ModelHeader(arch="resnet10t", embedding_dim=32, preprocessing=PREP.to_dict())
    path = save_checkpoint(tmp_path / "plain.safetensors", net, header)
    assert read_header(path).orientation is None
    upright = cell_crops(202)
    cell = cell_of([np.rot90(upright[0], 2), *upright[1:]])
    result = Classifier(path, device="cpu").classify(cell)
    assert result.turned == []
    assert all(c.orientation == Orientation() for c in cell.chromosomes)
    assert not any(Flag.ORIENTATION_UNSURE in c.flags for c in cell.chromosomes)


def test_export_gives_an_older_model_its_head_and_names_what_is_missing(tmp_path, capsys):
    from karyo_gui.core.labels import ChromosomeType
    from karyo_gui.core.loaders import write_cell
    from trainer.cli import main as trainer

    names = []
    for seed in range(6):
        cell = cell_of(cell_crops(300 + seed))
        for chromosome in cell.chromosomes:
            chromosome.given = ChromosomeType.CHR1
        cell.name = f"case{seed}.1"
        write_cell(cell, tmp_path / "data" / "cells" / cell.name)
        names.append(cell.name)
    cells = tmp_path / "cells.txt"
    cells.write_text("\n".join(names) + "\n")
    header = ModelHeader(arch="resnet10t", embedding_dim=32, preprocessing=PREP.to_dict())
    old = save_checkpoint(tmp_path / "old.safetensors", untrained_net(), header)
    new = tmp_path / "new.safetensors"
    export = ["export", "--checkpoint", str(old), "--out", str(new)]

    assert trainer([*export, "--orientation-cells", str(cells)]) == 2
    assert "needs --data" in capsys.readouterr().err and not new.exists()

    data = ["--data", str(tmp_path / "data")]
    assert trainer([*export, "--orientation-cells", str(cells), *data]) == 0
    assert "orientation head fitted on 240 crops" in capsys.readouterr().out
    assert read_header(new).orientation["held_out_accuracy"] > 0.9
    assert read_header(old).orientation is None
