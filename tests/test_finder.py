"""The chromosome finder: its training, its model file, and whole metaphases through the CLI."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from karyo_gui.cli import main
from karyo_gui.core.case import Flag
from karyo_gui.core.metaphase import MetaphaseImage, box_iou_matrix, match_boxes
from karyo_gui.core.metaphase_edits import split_chromosome
from karyo_gui.core.synthetic import generate_metaphase, metaphase_cell, write_annotated_metaphases
from karyo_gui.inference.finder import (
    CANDIDATE_THRESHOLD,
    DUPLICATE_IOU,
    ChromosomeFinder,
    NoChromosomesFound,
    chromosomes_from,
)
from trainer.cli import main as trainer_main
from trainer.finder import (
    SHIPPED_FINDER,
    FinderError,
    FinderHeader,
    FinderNet,
    load_finder,
    read_finder_header,
    save_finder,
)


@pytest.fixture(scope="module")
def finder():
    return ChromosomeFinder(device="cpu")


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    return write_annotated_metaphases(tmp_path_factory.mktemp("metaphases"), 3, seed=4,
                                      karyotypes=["46,XY", "47,XX,+21", "45,X"])  # fmt: skip


def test_train_finder_learns_from_annotated_metaphases_and_resumes(annotated, tmp_path, capsys):
    out = tmp_path / "run"
    train = str(annotated / "splits" / "train.txt")
    common = ["train-finder", "--data", str(annotated), "--out", str(out), "--arch",
              "resnet10t", "--channels", "16", "--crop", "128", "--batch-size", "2",
              "--threads", "1", "--train-cells", train]  # fmt: skip
    assert trainer_main([*common, "--epochs", "1"]) == 0
    _, header = load_finder(out / "best.safetensors")
    assert header.arch == "resnet10t" and header.training_data["n_train"] >= 1
    assert "detection_recall" in header.metrics["val"]
    assert trainer_main([*common, "--epochs", "2", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "resumed after epoch 1" in printed and "epoch 2:" in printed
    events = (out / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in events] == [1, 2]

    # exported at half size with measured figures in its header, it loads back as float32
    figures = tmp_path / "eval.json"
    figures.write_text(json.dumps({"detection_recall": 0.5, "problems": ["x"]}))
    half = tmp_path / "half.safetensors"
    assert trainer_main(["export-finder", "--checkpoint", str(out / "best.safetensors"),
                         "--out", str(half), "--half", "--threshold", "0.4", "--flip-test", "on",
                         "--metrics", f"test={figures}"]) == 0  # fmt: skip
    net, exported = load_finder(half)
    assert exported.score_threshold == 0.4 and exported.flip_test
    assert exported.metrics["test"] == {"detection_recall": 0.5}
    assert next(net.parameters()).dtype == torch.float32
    stored = {t.dtype for t in load_file(str(half)).values() if t.is_floating_point()}
    assert stored == {torch.float16}
    # looking upside down too: the same weights, so another model id (other boxes)
    three = tmp_path / "three.safetensors"
    assert trainer_main(["export-finder", "--checkpoint", str(half), "--out", str(three),
                         "--half", "--flip-test", "both"]) == 0  # fmt: skip
    _, looks = load_finder(three)
    assert looks.flip_test and looks.flip_vertical and looks.model_id != exported.model_id

    # --init trains a finder further from a model file's weights and architecture
    further = tmp_path / "further"
    assert trainer_main(["train-finder", "--data", str(annotated), "--out", str(further),
                         "--init", str(half), "--crop", "128", "--batch-size", "2",
                         "--threads", "1", "--train-cells", train, "--epochs", "1",
                         "--lr", "1e-4"]) == 0  # fmt: skip
    assert f"starting from half.safetensors (resnet10t, {exported.model_id})" in \
        capsys.readouterr().out
    _, continued = load_finder(further / "last.safetensors")
    assert continued.arch == "resnet10t" and continued.channels == 16
    assert continued.training_data["init"]["model_id"] == exported.model_id
    assert trainer_main(["train-finder", "--data", str(annotated), "--out", str(further),
                         "--init", str(tmp_path / "none.safetensors")]) == 2


@pytest.mark.parametrize(
    "option, value",
    [("--lr", "0"), ("--lr", "nan"), ("--crop", "100"), ("--epochs", "0"), ("--threads", "-1"),
     ("--box-loss", "-1"), ("--box-loss", "nan")],
)
def test_train_finder_refuses_bad_options_in_one_line(annotated, tmp_path, capsys, option, value):
    status = trainer_main(["train-finder", "--data", str(annotated), "--out", str(tmp_path),
                           option, value])  # fmt: skip
    assert status == 2
    assert option in capsys.readouterr().err


def _answer(target: dict) -> dict:
    """The finder's output that gives every box-learning cell exactly its target box."""
    box, height, width = target["box"], *target["heatmap"].shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    size = np.log(np.maximum(np.stack([box[2] - box[0], box[3] - box[1]]), 1e-3))
    offset = np.stack([(box[0] + box[2]) / 2 - xs, (box[1] + box[3]) / 2 - ys])
    zeros = torch.zeros(1, 1, height, width)
    return {"heatmap": zeros, "foreground": zeros, "size": torch.from_numpy(size)[None],
            "offset": torch.from_numpy(offset)[None]}  # fmt: skip


def test_the_box_term_judges_the_boxes_cells_near_a_centre_predict():
    from trainer.finder_training import losses, targets

    # two touching chromosomes, in input pixels (the targets are at stride 4)
    truth = np.array([[40, 60, 80, 200], [70, 100, 120, 150]], np.float32)
    target = targets(truth, (320, 320))
    learning = target["box_weight"] > 0
    assert learning.sum() > 2 * target["where"].sum()  # more cells than the two centres
    owners = {tuple(target["box"][:, y, x]) for y, x in zip(*np.nonzero(learning))}
    assert owners == {tuple(b) for b in truth / 4}  # each cell learns one of the two boxes
    batch = {k: torch.from_numpy(v)[None] for k, v in target.items()}
    batch["foreground"] = torch.zeros(1, *target["heatmap"].shape)
    output = _answer(target)
    assert float(losses(output, batch, box_weight=1.0)["box"]) == pytest.approx(0, abs=1e-5)
    output["size"] = output["size"] + 0.3  # every box a third too large
    wrong = losses(output, batch, box_weight=1.0)
    assert float(wrong["box"]) > 0.3
    assert "box" not in losses(output, batch, box_weight=0.0)  # off: the earlier finder's loss


def test_train_finder_on_a_folder_without_annotations_says_so(tmp_path, capsys):
    assert trainer_main(["train-finder", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "annotations" in capsys.readouterr().err


def _small_finder(path):
    net = FinderNet("resnet10t", 16)
    return save_finder(path, net, FinderHeader(arch="resnet10t", channels=16, name="small"))


def test_a_finder_file_is_checked_before_it_is_used(tmp_path):
    good = _small_finder(tmp_path / "good.safetensors")
    _, header = load_finder(good)
    assert header.name == "small" and len(header.model_id) == 12

    text = tmp_path / "notes.safetensors"
    text.write_text("not a model")
    with pytest.raises(FinderError, match=r"notes\.safetensors"):
        load_finder(text)

    # the same file with other weights under the same header: the id no longer fits
    state = load_file(str(good))
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first] + 1.0
    swapped = tmp_path / "swapped.safetensors"
    metadata = {"karyo": read_finder_header(good).to_json()}
    save_file(state, str(swapped), metadata=metadata)
    with pytest.raises(FinderError, match="weights changed"):
        load_finder(swapped)

    # a header that claims another architecture than the weights
    other = json.loads(metadata["karyo"])
    other["arch"] = "resnet18"
    save_file(load_file(str(good)), str(tmp_path / "other.safetensors"),
              metadata={"karyo": json.dumps(other)})  # fmt: skip
    with pytest.raises(FinderError, match="do not fit"):
        load_finder(tmp_path / "other.safetensors")

    absurd = json.loads(metadata["karyo"])
    absurd["channels"] = 100000
    save_file(load_file(str(good)), str(tmp_path / "absurd.safetensors"),
              metadata={"karyo": json.dumps(absurd)})  # fmt: skip
    with pytest.raises(FinderError, match="channels"):
        load_finder(tmp_path / "absurd.safetensors")

    # a classifier's model file is not a finder
    from trainer.checkpoint import SHIPPED_MODEL

    with pytest.raises(FinderError, match="not a karyo chromosome-finder"):
        load_finder(SHIPPED_MODEL)


def test_the_shipped_finder_finds_the_chromosomes_of_a_generated_metaphase(finder):
    assert SHIPPED_FINDER.is_file()
    generated = generate_metaphase("46,XX", seed=11)
    result = finder.find(generated.image())
    boxes = np.array([item.box for item in result.found])
    matched = match_boxes(boxes, generated.boxes())
    assert len(matched) >= 0.85 * len(generated.chromosomes)
    assert len(result.found) <= len(generated.chromosomes) + 5  # nuclei and specks are not
    truth = [region.full_mask(generated.pixels.shape) for _, region in generated.chromosomes]
    ious = []
    for found_index, true_index in matched:
        mask = result.found[found_index].region.full_mask(generated.pixels.shape)
        ious.append((mask & truth[true_index]).sum() / (mask | truth[true_index]).sum())
    assert np.median(ious) > 0.6  # each found chromosome's mask is its own pixels
    # one whose box meets no other box is cut one way; touching ones are cut other ways too
    among = box_iou_matrix(boxes, boxes)
    np.fill_diagonal(among, 0)
    assert not any(result.found[k].other_regions for k in np.flatnonzero(among.max(axis=1) == 0))
    assert any(item.other_regions for item in result.found)
    chromosomes = chromosomes_from(generated.image(), result.found)
    assert [len(c.other_cuts) for c in chromosomes] == [len(f.other_regions) for f in result.found]


def test_faint_objects_come_apart_as_candidates_for_the_assignment(finder):
    """Below the threshold, down to CANDIDATE_THRESHOLD, the finder gives candidates beside
    what it found: flagged, none a second box of a found chromosome, and the found ones just
    as they are without candidates; the cell gets both (the first assignment decides)."""
    image = generate_metaphase("46,XX", seed=11).image()
    threshold = 0.7  # high, so that this generated spread has objects below it
    result = finder.find(image, threshold=threshold)
    assert result.found and result.candidates
    assert all(item.score >= threshold for item in result.found)
    for item in result.candidates:
        assert CANDIDATE_THRESHOLD <= item.score < threshold
        assert {Flag.CANDIDATE, Flag.FINDER_UNSURE} <= item.flags
    found_boxes = np.array([item.box for item in result.found])
    candidate_boxes = np.array([item.box for item in result.candidates])
    assert box_iou_matrix(candidate_boxes, found_boxes).max() < DUPLICATE_IOU
    finder.candidate_threshold = None
    try:
        alone = finder.find(image, threshold=threshold)
    finally:
        finder.candidate_threshold = CANDIDATE_THRESHOLD
    assert not alone.candidates
    assert np.array_equal(np.array([item.box for item in alone.found]), found_boxes)

    cell = metaphase_cell(generate_metaphase("46,XX", seed=11))
    finder.find_cell(cell, threshold=threshold)
    assert len(cell) == len(result.found) + len(result.candidates)
    assert sum(Flag.CANDIDATE in c.flags for c in cell.chromosomes) == len(result.candidates)


def test_an_image_without_chromosomes_says_so(finder):
    cell = metaphase_cell(generate_metaphase("46,XY", seed=1))
    cell.metaphase = MetaphaseImage(np.full((400, 500), 240, np.uint8))
    with pytest.raises(NoChromosomesFound, match="no chromosomes found"):
        finder.find_cell(cell)


def test_classify_a_metaphase_image_lists_each_chromosome_with_its_box(tmp_path, capsys):
    generated = generate_metaphase("46,XY", seed=5)
    image = tmp_path / "spread.png"
    image.write_bytes(generated.png_bytes())
    out = tmp_path / "out.json"
    assert main(["classify", str(image), "--json", str(out), "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    cell = report["cells"][0]
    assert cell["metaphase"]["width"] == generated.pixels.shape[1]
    assert abs(cell["count"] - 46) <= 4
    first = cell["chromosomes"][0]
    assert set(first["box"]) == {"x", "y", "width", "height"} and "flags" in first
    assert first["type"] and first["found_score"] is not None
    assert "chromosomes found" in capsys.readouterr().out


def test_evaluate_on_annotated_metaphases_writes_the_metaphase_keys(annotated, tmp_path):
    out = tmp_path / "eval.json"
    test = str(annotated / "splits" / "test.txt")
    status = main(["evaluate", "--data", str(annotated), "--cells", test, "--json", str(out),
                   "--device", "cpu"])  # fmt: skip
    assert status == 0
    metrics = json.loads(out.read_text())
    for key in ("detection_recall", "detection_precision", "count_exact", "counted_exact",
                "typed_accuracy", "karyotype_exact", "seconds_per_metaphase"):  # fmt: skip
        assert 0 <= metrics[key] <= (1 if key != "seconds_per_metaphase" else 60), key
    assert metrics["detection_recall"] >= 0.8
    assert metrics["n_metaphases"] == 1
    # faint candidates: those kept are among those found, those matching among those kept
    assert 0 <= metrics["n_candidates_matched"] <= metrics["n_candidates_kept"]
    assert metrics["n_candidates_kept"] <= metrics["n_candidates"]
    assert metrics["n_sex_from_case"] == 0  # each metaphase read alone


def test_evaluate_reports_the_normal_and_the_abnormal_metaphases_apart(annotated, tmp_path,
                                                                       capsys):
    """A trisomy and a 45,X are judged apart from the 46,XY: a change that gets more normal
    cells exact can cost the abnormal ones, and the figures must show it."""
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--data", str(annotated), "--json", str(out),
                 "--device", "cpu"]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    groups = metrics["by_karyotype"]
    assert {name: group["n_metaphases"] for name, group in groups.items()} == {
        "46,XX or 46,XY": 1, "other karyotypes": 2}
    wrong = {m["annotated_karyotype"] for m in metrics["metaphases_wrong"]}
    assert groups["46,XX or 46,XY"]["karyotype_exact"] == float("46,XY" not in wrong)
    assert groups["other karyotypes"]["karyotype_exact"] == (
        2 - len(wrong & {"47,XX,+21", "45,X"})) / 2
    header = capsys.readouterr().out.splitlines()[0]
    assert "46,XX or 46,XY" in header and "other karyotypes" in header


def test_evaluate_refuses_a_case_pattern_that_is_no_regular_expression(annotated, tmp_path,
                                                                       capsys):
    status = main(["evaluate", "--data", str(annotated), "--json", str(tmp_path / "e.json"),
                   "--case-pattern", "(.*", "--device", "cpu"])  # fmt: skip
    assert status == 2
    assert "--case-pattern '(.*' is not a regular expression" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_an_edit_reclassifies_only_the_new_chromosomes():
    from karyo_gui.inference.classifier import Classifier

    classifier = Classifier(device="cpu")
    generated = generate_metaphase("46,XY", seed=2)
    cell = metaphase_cell(generated, with_truth=True)
    classifier.classify(cell)
    longest = max(cell.chromosomes, key=lambda c: c.region.area)
    before = {c.id: c.probabilities.copy() for c in cell.chromosomes if c is not longest}
    x0, y0 = longest.region.box[:2]
    mask = longest.region.mask
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    # a cut across the middle, square to the long axis
    vy, vx = np.linalg.eigh(np.cov(np.stack([ys - cy, xs - cx])))[1][:, -1]
    line = [(x0 + cx - 40 * vy, y0 + cy + 40 * vx), (x0 + cx + 40 * vy, y0 + cy - 40 * vx)]
    edit = split_chromosome(cell, longest.id, line, by="tester")
    edit.apply()
    calls = []
    original = classifier.net.forward

    def counting(x):
        calls.append(len(x))
        return original(x)

    classifier.net.forward = counting
    with torch.no_grad():
        classifier.classify_changed(cell)
    assert sum(calls) <= 2 * len(edit.changed)  # the new pieces (and a second look), no more
    assert len(cell.chromosomes) == 47
    for chromosome in cell.chromosomes:
        assert chromosome.probabilities is not None
        if chromosome.id in before:
            assert np.array_equal(chromosome.probabilities, before[chromosome.id])
    assert all(Flag.IMAGE_MISSING not in c.flags for c in cell.chromosomes)


def test_the_classifier_trainer_takes_crops_cut_from_annotated_boxes(annotated):
    from trainer.checkpoint import SHIPPED_MODEL, read_header
    from trainer.data import load_dataset_crops

    preprocessing = read_header(SHIPPED_MODEL).input_preprocessing
    crops = load_dataset_crops(annotated, annotated / "splits" / "train.txt", preprocessing)
    names = (annotated / "splits" / "train.txt").read_text().split()
    expected = sum(
        len(ET.parse(annotated / "annotations" / f"{name}.xml").getroot().findall("object"))
        for name in names
    )
    assert len(crops) == expected  # one crop per annotated chromosome
    assert crops.summary()["n_cells"] == len(names)
    # the 21s of the 47,XX,+21 metaphase are there with their type
    assert crops.class_counts()[20] >= 2


def test_the_extra_looks_are_turned_back_before_they_are_averaged():
    from trainer.finder_file import detect_with

    grey = np.full((200, 240), 230, np.uint8)
    grey[40:120, 150:162] = 60  # one dark bar, away from every middle line
    looked = []

    def forward(x: np.ndarray) -> dict:
        """A stand-in net: one broad peak at the dark bar's middle, boxes 4 x 20 cells."""
        looked.append(x.copy())
        small = x[:, :, ::4, ::4]
        ys, xs = np.nonzero(small[0, 0] > 0.5)
        rows, cols = np.mgrid[0 : small.shape[2], 0 : small.shape[3]]
        heat = 4 - 0.05 * ((rows - ys.mean() - 0.3) ** 2 + (cols - xs.mean() - 0.3) ** 2)
        size = np.log(np.stack([np.full(rows.shape, 4.0), np.full(rows.shape, 20.0)]))
        return {"heatmap": heat[None, None], "size": size[None],
                "offset": np.zeros((1, 2, *rows.shape)), "foreground": small}  # fmt: skip

    one = detect_with(forward, grey, FinderHeader())[0]
    assert len(looked) == 1 and len(one) == 1
    three = detect_with(forward, grey, FinderHeader(flip_test=True, flip_vertical=True))[0]
    assert len(looked) == 4
    plain, mirrored, upside_down = looked[1:]
    assert np.array_equal(mirrored, plain[..., ::-1])
    assert np.array_equal(upside_down, plain[..., ::-1, :])
    # the flipped looks' peaks land where the plain look's is (within a stride-4 cell)
    assert len(three) == 1
    cell = 4 * 12 / 10  # a cell of the net's input, in image pixels (width 12 -> 10 px)
    assert np.allclose(three[0].box, one[0].box, atol=cell)
    x0, y0, x1, y1 = three[0].box
    assert 140 < (x0 + x1) / 2 < 172 and 60 < (y0 + y1) / 2 < 100  # on the bar


def test_a_large_input_looked_at_in_tiles_gives_what_one_look_gives():
    from trainer.finder_file import in_tiles

    def local_net(x: np.ndarray) -> dict:
        """A stand-in net that sees a few pixels around each output cell (as a real one,
        less far than the tiles' context): a 3 x 3 box blur, then every fourth pixel."""
        plane = x[0, 0]
        padded = np.pad(plane, 1)
        blurred = sum(padded[dy : dy + plane.shape[0], dx : dx + plane.shape[1]]
                      for dy in range(3) for dx in range(3)) / 9  # fmt: skip
        small = blurred[::4, ::4]
        return {"heatmap": small[None, None], "size": np.stack([small, 2 * small])[None]}

    rng = np.random.default_rng(3)
    tensor = rng.random((1, 1, 1184, 2080)).astype(np.float32)  # a multiple of 32 each way
    whole = local_net(tensor)
    looked = []
    tiled = in_tiles(lambda t: looked.append(t.shape) or local_net(t), tensor, side=640, context=64)
    assert len(looked) > 4 and max(max(shape[-2:]) for shape in looked) <= 640
    for key in whole:
        assert tiled[key].shape == whole[key].shape
        np.testing.assert_allclose(tiled[key], whole[key], atol=1e-6)
    # an input that fits is looked at whole, once
    looked.clear()
    in_tiles(lambda t: looked.append(t.shape) or local_net(t), tensor[..., :640, :608], side=640)
    assert looked == [(1, 1, 640, 608)]


def test_a_small_spread_on_a_large_scan_is_found_where_it_lies(finder):
    generated = generate_metaphase("46,XY", seed=11)
    spread = generated.pixels
    scan = np.full((4000, 4096), int(np.median(spread)), np.uint8)  # as large as one opens
    top, left = 2900, 3100  # the spread lies in a corner of a mostly empty frame
    scan[top : top + spread.shape[0], left : left + spread.shape[1]] = spread
    found = finder.find(MetaphaseImage(scan)).found
    truth = generated.boxes() + np.array([left, top, left, top])
    boxes = np.array([item.box for item in found])
    assert len(match_boxes(boxes, truth)) >= 0.85 * len(generated.chromosomes)
    # each region's pixels are where the box is, on the scan
    x0, y0, x1, y1 = found[0].region.box
    assert x0 >= left - 5 and y0 >= top - 5
    assert scan[y0:y1, x0:x1][found[0].region.mask].mean() < np.median(spread) - 30


def test_two_chromosomes_crossing_at_their_middles_found_as_one_are_both_given(
    finder, monkeypatch
):
    """The net gives one box for an X (the two share a centre); the app makes it two
    chromosomes, each cut alone, sharing the crossing and flagged for a look."""
    import cv2

    from karyo_gui.inference import finder as finding
    from trainer.finder_file import Detection, FinderInput

    grey = np.full((300, 360), 235, np.uint8)
    bars = [((40, 40), (180, 180)), ((40, 180), (180, 40)), ((260, 40), (280, 240))]
    for start, end in bars:
        cv2.line(grey, start, end, 70, 14)
    lone_box = (253.0, 33.0, 287.0, 247.0)

    def one_box_for_the_x(forward, pixels, header, threshold=None):
        prepared = FinderInput(np.zeros((320, 384), np.float32), 1.0, 14.0, pixels.shape)
        found = [Detection((33.0, 33.0, 187.0, 187.0), 0.9), Detection(lone_box, 0.9)]
        return found, np.ones((80, 96), np.float32), prepared

    monkeypatch.setattr(finding, "detect_with", one_box_for_the_x)
    result = finder.find(MetaphaseImage(grey))
    assert len(result.found) == 3
    crossing = [item for item in result.found if item.box != lone_box]
    truth = []
    for start, end in bars[:2]:
        mask = np.zeros(grey.shape, np.uint8)
        cv2.line(mask, start, end, 1, 14)
        truth.append(mask.astype(bool))
    for item in crossing:
        mask = item.region.full_mask(grey.shape)
        assert max((mask & t).sum() / (mask | t).sum() for t in truth) > 0.8
        assert Flag.OVERLAP in item.flags
        assert item.other_regions == []  # each cut alone: its own pixels are known
    masks = [item.region.full_mask(grey.shape) for item in crossing]
    assert (masks[0] & masks[1]).any()
