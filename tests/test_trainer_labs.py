"""Training on several labs at once: a mix of datasets, each lab drawn as often as the mix
says, the model selected on every lab's validation cells, the labs recorded in the header."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from karyo_gui.core.labels import N_TYPES
from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell, write_annotated_metaphases
from trainer.batches import PairwiseClassBalancedSampler
from trainer.checkpoint import read_header
from trainer.cli import main as trainer
from trainer.config import ConfigError, resolve
from trainer.data import CropSet, DataError, crops_of_cells
from trainer.engine import lab_accuracies, load_training_data, split_cells
from trainer.preprocessing import Preprocessing

TINY = [
    "--arch", "resnet10t", "--embedding-dim", "32", "--input-height", "64",
    "--input-width", "32", "--threads", "2", "--log-every", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    """Two generated labs: crop folders (like gband612) and annotated metaphases (like cil24)."""
    root = tmp_path_factory.mktemp("labs")
    crops = root / "crops_lab"
    names = []
    for k, karyotype in enumerate(["46,XY", "46,XX", "46,XY", "46,XX"]):
        cell = generate_cell(karyotype, seed=300 + k, name=f"c{k}.1")
        write_cell(cell, crops / "cells" / cell.name)
        names.append(cell.name)
    (crops / "splits").mkdir()
    (crops / "splits" / "train.txt").write_text("\n".join(names[:3]) + "\n")
    (crops / "splits" / "val.txt").write_text(names[3] + "\n")
    spreads = write_annotated_metaphases(root / "spread_lab", 4, seed=7)
    return crops, spreads


def test_a_mix_draws_each_lab_as_often_as_it_says_however_few_crops_it_has():
    labels = np.tile(np.arange(N_TYPES), 20)  # 480 crops: 20 of each type
    groups = np.zeros(len(labels), np.int64)
    groups[: 2 * N_TYPES] = 1  # the small lab: two crops of each type (a tenth of the crops)
    sampler = PairwiseClassBalancedSampler(labels, 2, seed=0, groups=groups, weights=[1, 1])
    drawn = np.concatenate([np.concatenate(sampler.draw()[:2]) for _ in range(200)])
    assert 0.4 < (groups[drawn] == 1).mean() < 0.55  # a pair's two views differ
    first, second, types = sampler.draw()
    assert (labels[first] == types).all() and (labels[second] == types).all()
    assert (first != second).all()  # the two views of a pair are different crops
    unmixed = PairwiseClassBalancedSampler(labels, 2, seed=0)
    drawn = np.concatenate([np.concatenate(unmixed.draw()[:2]) for _ in range(200)])
    assert (groups[drawn] == 1).mean() < 0.2


def test_a_lab_weighted_zero_is_never_drawn_unless_it_alone_holds_a_type():
    labels = np.asarray([0, 0, 1, 1, 2, 2])
    groups = np.asarray([0, 1, 0, 1, 1, 1])  # type 2 only in lab 1
    sampler = PairwiseClassBalancedSampler(labels, 1, seed=1, groups=groups, weights=[1, 0])
    for _ in range(50):
        first, second, types = sampler.draw()
        picked = np.concatenate([first, second])
        typed = np.concatenate([types, types])
        assert (groups[picked[typed != 2]] == 0).all()
        assert (labels[picked] == typed).all()


def test_datasets_of_both_kinds_load_with_their_labs_and_validation(labs):
    crops, spreads = labs
    config = resolve(None, {
        "data": str(crops), "train_cells": str(crops / "splits/train.txt"),
        "val_cells": str(crops / "splits/val.txt"), "datasets": [str(spreads)],
        "mix": {"crops_lab": 1, "spread_lab": 2},
    })  # fmt: skip
    training, validation = load_training_data(config, Preprocessing(height=64, width=32))
    assert training.labs == ["crops_lab", "spread_lab"]
    assert validation.labs == ["crops_lab", "spread_lab"]
    lab_of = training.lab_of()
    train_spreads = (spreads / "splits/train.txt").read_text().split()
    assert len(set(training.cell_of[lab_of == 1].tolist())) == len(train_spreads)
    # each lab's crops keep their own cells
    one = validation.lab_subset("spread_lab")
    assert len(one) == (validation.lab_of() == 1).sum() and one.labs == ["spread_lab"]
    assert max(one.cell_of) == len(one.cell_names) - 1


def test_other_cuts_judge_the_model_only_and_stay_with_their_crops(labs):
    _, spreads = labs
    config = resolve(None, {"datasets": [str(spreads)]})
    training, validation = load_training_data(config, Preprocessing(height=64, width=32))
    assert len(training.other_of) == 0  # training reads each crop as it was cut
    assert len(validation.other_of) > 0  # touching chromosomes are read their other ways too
    # the bookkeeping: cells whose other cuts are copies of their crops, through every
    # way a crop set is split and joined, still point at their own crops
    cells = [generate_cell("46,XY", seed=320 + k, name=f"d{k}") for k in range(4)]
    for cell in cells:
        for chromosome in cell.chromosomes[::3]:
            chromosome.other_cuts = [chromosome.image, chromosome.image]
    preprocessing = Preprocessing(height=64, width=32)
    first = crops_of_cells(cells[:2], preprocessing, source="one")
    second = crops_of_cells(cells[2:], preprocessing, source="two")
    both = CropSet.concatenate([first, second])
    kept, held = split_cells(both, 0.5, seed=0)
    for part in (first, second, both, both.lab_subset("two"), kept, held):
        assert len(part.other_of) == 2 * sum(len(c.chromosomes[::3]) for c in cells) * len(
            part.cell_names) // len(cells)
        assert (part.other_images == part.images[part.other_of]).all()
    assert len(crops_of_cells(cells, preprocessing, other_cuts=False).other_of) == 0


def test_selection_is_the_mean_of_the_labs_so_a_big_lab_cannot_outvote_a_small_one():
    labels = np.zeros(110, np.int64)
    crops = CropSet(np.zeros((110, 8, 4), np.uint8), labels, np.zeros(110, np.int64), ["a"],
                    sources=["big:x", "small:y"],
                    source_of=np.r_[np.zeros(100, np.int64), np.ones(10, np.int64)])
    probabilities = np.zeros((110, N_TYPES))
    probabilities[:100, 0] = 1  # the big lab all right
    probabilities[100:, 1] = 1  # the small lab all wrong
    result = lab_accuracies(crops, probabilities)
    assert result["big_crop_accuracy"] == 1 and result["small_crop_accuracy"] == 0
    assert result["selection"] == pytest.approx(0.5)


@pytest.mark.parametrize("mix, message", [
    ("{gband612: -1}", "--mix"),
    ("{a: 0, b: 0}", "above 0"),
    ("{a: .nan}", "--mix"),
])  # fmt: skip
def test_a_bad_mix_is_refused_in_one_line(mix, message, tmp_path, capsys):
    code = trainer(["train", "--generated-cells", "2", "--output", str(tmp_path / "r"),
                    "--mix", mix, *TINY])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_mix_naming_a_lab_that_is_not_there_is_refused(labs, tmp_path):
    crops, _ = labs
    config = resolve(None, {"data": str(crops), "mix": {"crop_lab": 1}})  # a typo
    with pytest.raises(DataError, match=r"crop_lab.*crops_lab"):
        load_training_data(config, Preprocessing(height=64, width=32))
    with pytest.raises(ConfigError):
        resolve(None, {"mix": {"a": "much"}})


def test_a_run_on_two_labs_records_both_in_the_model_header(labs, tmp_path):
    crops, spreads = labs
    run = tmp_path / "run"
    code = trainer([
        "train", "--data", str(crops), "--train-cells", str(crops / "splits/train.txt"),
        "--val-cells", str(crops / "splits/val.txt"), "--datasets", str(spreads),
        "--mix", "{crops_lab: 1, spread_lab: 1}", "--output", str(run),
        "--epochs", "1", "--steps-per-epoch", "2", *TINY,
    ])  # fmt: skip
    assert code == 0
    header = read_header(Path(run / "best.safetensors"))
    seen = header.training_data["train"]["labs"]
    assert set(seen) == {"crops_lab", "spread_lab"} and all(seen.values())
    val = header.metrics["val"]
    assert {"crops_lab_crop_accuracy", "spread_lab_crop_accuracy"} <= set(val)
    assert header.config["mix"] == {"crops_lab": 1, "spread_lab": 1}


def test_a_run_resumed_with_fewer_epochs_lets_the_learning_rate_fall_smoothly_to_the_floor():
    from trainer.engine import LearningRate

    config = resolve(None, {"epochs": 9, "warmup_epochs": 0.3, "min_lr_ratio": 0.01})
    schedule = LearningRate(config, total_steps=3600, steps_per_epoch=400)
    before = schedule(400)
    schedule.retarget(done=400, total_steps=2000)  # resumed after epoch 1 with --epochs 5
    assert schedule(400) == pytest.approx(before)  # no jump
    factors = [schedule(step) for step in range(400, 2001, 100)]
    assert all(a >= b for a, b in itertools.pairwise(factors))
    assert schedule(2000) == pytest.approx(0.01)
    unchanged = LearningRate(config, total_steps=3600, steps_per_epoch=400)
    unchanged.retarget(done=400, total_steps=3600)  # the same length: the same schedule
    assert unchanged(1800) == pytest.approx(LearningRate(config, 3600, 400)(1800))
