"""The classifier service and ``karyo classify`` with the shipped model on generated cells."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from karyo_gui.cli import main
from karyo_gui.core.case import CellStatus, Chromosome, Flag
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import write_cell
from karyo_gui.core.synthetic import generate_cell
from karyo_gui.inference.classifier import CellPrediction, Classifier, assign_with_case
from trainer.checkpoint import SHIPPED_MODEL, CheckpointError, default_checkpoint
from trainer.config import SECOND_LOOK_MARGIN

pytestmark = pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped model")

# seeds far from the ones the shipped model was trained and tested on
UNSEEN = 9001


@pytest.fixture(scope="module")
def classifier():
    return Classifier(device="cpu")


@pytest.mark.parametrize("karyotype", ["46,XX", "47,XY,+21", "45,X", "47,XXY", "47,XX,+18"])
def test_a_generated_cell_is_classified_to_its_karyotype(classifier, karyotype):
    cell = generate_cell(karyotype, seed=UNSEEN)
    result = classifier.classify(cell)
    assert result.karyotype == karyotype
    assert all(c.assigned is c.given for c in cell.chromosomes)
    assert all(c.probabilities.shape == (24,) for c in cell.chromosomes)
    assert cell.model_id == classifier.model_id
    # the crops the assignment changed are exactly those whose argmax was another type
    moved = {c.id for c in cell.chromosomes if c.predicted is not c.assigned}
    assert set(result.moved) == moved
    assert all(Flag.MOVED_BY_ASSIGNMENT in cell.chromosome(i).flags for i in moved)


def test_q_banded_and_larger_crops_give_the_same_karyotype(classifier):
    """Another lab: bright bands on a dark background, photographed 1.7 times larger."""
    cell = generate_cell("47,XY,+21", seed=UNSEEN + 1)
    for chromosome in cell.chromosomes:
        larger = cv2.resize(chromosome.image, None, fx=1.7, fy=1.7)
        chromosome.image = 255 - larger
    assert classifier.classify(cell).karyotype == "47,XY,+21"


def test_manual_labels_are_kept_and_missing_pictures_are_skipped(classifier):
    cell = generate_cell("46,XY", seed=UNSEEN + 2)
    first, debris, missing = cell.chromosomes[:3]
    cell.set_manual_label(first.id, ChromosomeType.autosome(22), by="reviewer")
    cell.set_manual_label(debris.id, ChromosomeType.UNCLASSIFIED, by="reviewer")
    missing.image = None

    result = classifier.classify(cell)

    assert first.label is ChromosomeType.autosome(22)
    assert debris.label is ChromosomeType.UNCLASSIFIED and debris.assigned is None
    assert missing.assigned is None and missing.probabilities is None
    assert result.assignment.count == len(cell) - 2
    assert first.id not in result.moved


def test_a_faint_candidate_is_kept_where_it_fills_a_free_place_and_dropped_elsewhere(classifier):
    """The finder's faint candidates (found below its threshold): a chromosome the finder
    nearly missed, whose homolog is there alone, is kept and counted; a copy of a type
    already present twice (a piece, debris read as a 4) leaves the cell."""
    cell = generate_cell("46,XY", seed=UNSEEN + 12)
    seven = next(c for c in cell.chromosomes if c.given is ChromosomeType.autosome(7))
    seven.id, seven.found_score = "m900", 0.2
    seven.flags = {Flag.CANDIDATE, Flag.FINDER_UNSURE}
    four = next(c for c in cell.chromosomes if c.given is ChromosomeType.autosome(4))
    piece = Chromosome(id="m901", image=four.image.copy(), found_score=0.2,
                       flags={Flag.CANDIDATE, Flag.FINDER_UNSURE})
    cell.chromosomes.append(piece)

    result = classifier.classify(cell)

    assert result.dropped == ["m901"] and piece not in cell.chromosomes
    assert seven in cell.chromosomes and seven.label is ChromosomeType.autosome(7)
    assert seven.counted and seven.flags & {Flag.CANDIDATE, Flag.SET_ASIDE} == set()
    assert Flag.FINDER_UNSURE in seven.flags  # still a finder's doubt for the reviewer
    assert cell.karyotype == "46,XY" and len(cell) == 46
    # classified again (after an edit), nothing more leaves the cell
    assert classifier.classify(cell).dropped == [] and len(cell) == 46


def test_faint_candidates_do_not_change_how_the_other_chromosomes_are_read(classifier):
    """The cell's common scale comes from its chromosomes, not from specks the finder found
    faintly: with or without them, every other chromosome gets the same probabilities."""
    alone = generate_cell("46,XX", seed=UNSEEN + 13)
    classifier.classify(alone)
    cell = generate_cell("46,XX", seed=UNSEEN + 13)
    for k, chromosome in enumerate(cell.chromosomes[:3]):  # short pieces of the first three
        piece = chromosome.image[: max(4, chromosome.image.shape[0] // 4)].copy()
        cell.chromosomes.append(Chromosome(id=f"m9{k:02d}", image=piece, found_score=0.2,
                                           flags={Flag.CANDIDATE, Flag.FINDER_UNSURE}))
    classifier.classify(cell)
    for before, after in zip(alone.chromosomes, cell.chromosomes):
        np.testing.assert_allclose(after.probabilities, before.probabilities, atol=1e-5)


def test_an_object_the_finder_doubts_that_fits_no_place_is_set_aside(classifier):
    """A metaphase's doubtful object (a speck or a piece, found with a low score) read as a
    third 4 is set aside, not counted; the same object found surely counts."""
    for score, doubted in ((0.38, True), (0.95, False)):
        cell = generate_cell("46,XY", seed=UNSEEN + 11)
        four = next(c for c in cell.chromosomes if c.given is ChromosomeType.autosome(4))
        extra = Chromosome(id="m999", image=four.image.copy(), found_score=score,
                           flags={Flag.FINDER_UNSURE} if doubted else set())
        cell.chromosomes.append(extra)
        classifier.classify(cell)
        if doubted:
            assert Flag.SET_ASIDE in extra.flags and not extra.counted
            assert extra.label is ChromosomeType.UNCLASSIFIED
            assert extra.predicted is ChromosomeType.autosome(4)
            assert cell.karyotype == "46,XY"
        else:
            assert Flag.SET_ASIDE not in extra.flags and extra.counted
            assert cell.karyotype.startswith("47,XY")


def test_the_assignment_weighs_the_calibrated_probabilities_unless_told_otherwise(classifier):
    """A 22 read as a 21 beyond reason (its own type at 1e-5, the other crops sure of
    theirs): weighed as calibrated (the app) the cell reads 46,XY,+21,-22; weighed at a
    softer temperature (the bench's --assignment-temperature) the karyotype's prior wins.
    The probabilities shown are the calibrated ones either way."""
    assert classifier.assignment_temperature is None
    cell = generate_cell("46,XY", seed=UNSEEN + 40)
    classifier.classify(cell)
    assert cell.karyotype == "46,XY"

    def sure(of: ChromosomeType) -> np.ndarray:  # every other type at 1e-7
        row = np.full(24, 1e-7, np.float32)
        row[of.value] = 1.0
        return row / row.sum()

    for chromosome in cell.chromosomes:
        chromosome.probabilities = sure(chromosome.given)
    twenty_two = next(c for c in cell.chromosomes if c.given is ChromosomeType.autosome(22))
    twenty_two.probabilities = sure(ChromosomeType.autosome(21))
    twenty_two.probabilities[ChromosomeType.autosome(22).value] = 1e-5  # 11.5 nats: more
    pictured = list(range(len(cell)))  # than a +21 and a -22 cost
    rows = np.stack([c.probabilities for c in cell.chromosomes])
    karyotypes = []
    for weighed in (None, 2 * classifier.temperature):
        classifier.assignment_temperature = weighed
        try:
            classifier.assign(cell, CellPrediction(pictured, rows, None))
        finally:
            classifier.assignment_temperature = None
        karyotypes.append(cell.karyotype)
        np.testing.assert_allclose(np.stack([c.probabilities for c in cell.chromosomes]), rows)
    assert karyotypes == ["46,XY,+21,-22", "46,XY"]
    assert twenty_two.assigned is ChromosomeType.autosome(22)


def _sex_in_doubt(cell, classifier):
    """The cell's Y read as torn between a Y and an X (0.4 / 0.6), assigned again: alone
    the cell reads 46,XX."""
    y = next(c for c in cell.chromosomes if c.given is ChromosomeType.Y)
    y.probabilities = np.full(24, 1e-4, np.float32)
    y.probabilities[[ChromosomeType.Y.value, ChromosomeType.X.value]] = (0.4, 0.6)
    pictured = list(range(len(cell)))
    rows = np.stack([c.probabilities for c in cell.chromosomes])
    classifier.assign(cell, CellPrediction(pictured, rows, None))


def test_a_cell_in_doubt_about_its_sex_reads_it_with_the_cases_other_cells(classifier):
    cells = [generate_cell("46,XY", seed=UNSEEN + 20 + k) for k in range(3)]
    for cell in cells:
        classifier.classify(cell)
    doubtful = cells[2]
    _sex_in_doubt(doubtful, classifier)
    assert doubtful.karyotype == "46,XX" and doubtful.sex_evidence > 0
    reviewed = generate_cell("46,XY", seed=UNSEEN + 20)
    classifier.classify(reviewed)
    _sex_in_doubt(reviewed, classifier)
    reviewed.status = CellStatus.REVIEWED

    results = assign_with_case(classifier, [*cells, reviewed])
    assert [r.cell for r in results] == [doubtful] and results[0].sex_from_case
    assert doubtful.karyotype == "46,XY"
    # still in doubt by its own chromosomes: its X and Y wait for a person
    assert all(Flag.SEX_UNCERTAIN in c.flags for c in doubtful.chromosomes
               if c.assigned in (ChromosomeType.X, ChromosomeType.Y))
    assert reviewed.karyotype == "46,XX"  # a reviewed cell keeps its types
    assert assign_with_case(classifier, [*cells, reviewed]) == []  # nothing turns twice
    # a cell alone, or one whose own chromosomes are sure, keeps its own sex
    assert assign_with_case(classifier, [reviewed]) == []
    sure_xx = generate_cell("46,XX", seed=UNSEEN + 30)
    classifier.classify(sure_xx)
    assert assign_with_case(classifier, [*cells, sure_xx]) == []
    assert sure_xx.karyotype == "46,XX"


def test_a_chromosome_is_read_together_with_its_other_cuts(classifier):
    cell = generate_cell("46,XY", seed=UNSEEN + 7)
    alone = classifier.predict_cell(cell)
    first = cell.chromosomes[0]
    other = next(k for k, c in enumerate(cell.chromosomes) if c.given is not first.given)
    # cut three other ways, it shows another type: those cuts outvote its own crop
    first.other_cuts = [cell.chromosomes[other].image] * 3
    together = classifier.predict_cell(cell)
    assert together.probabilities[0].argmax() == alone.probabilities[other].argmax()
    assert together.probabilities[0].argmax() != alone.probabilities[0].argmax()
    assert together.probabilities[1:] == pytest.approx(alone.probabilities[1:], abs=1e-5)
    # what it looks like (homologs compared) and which way up it stands: its own crop's
    assert together.embeddings[0] == pytest.approx(alone.embeddings[0], abs=1e-5)
    assert len(together.probabilities) == len(cell.chromosomes)


def test_a_cell_without_pictures_is_left_as_it_is(classifier):
    cell = generate_cell("46,XX", seed=UNSEEN + 3)
    for chromosome in cell.chromosomes:
        chromosome.image = None
    result = classifier.classify(cell)
    assert result.assignment is None
    assert all(c.assigned is None for c in cell.chromosomes)


def test_attention_of_a_chromosome_is_a_map_over_its_crop(classifier):
    cell = generate_cell("46,XY", seed=UNSEEN + 4)
    chromosome = cell.chromosomes[5]
    classifier.classify(cell)
    attention = classifier.attention(cell, chromosome.id)
    assert attention.crop_map.shape == chromosome.image.shape
    assert attention.target == chromosome.predicted.value
    other = classifier.attention(cell, chromosome.id, ChromosomeType.Y)
    assert other.target == ChromosomeType.Y.value
    assert not np.allclose(other.crop_map, attention.crop_map)


def test_the_model_to_use_can_be_chosen_and_a_missing_one_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("KARYO_MODEL", str(tmp_path / "gone.safetensors"))
    with pytest.raises(CheckpointError, match=r"gone\.safetensors"):
        default_checkpoint()
    monkeypatch.delenv("KARYO_MODEL")
    assert default_checkpoint() == SHIPPED_MODEL


# ------------------------------------------------------------------ karyo classify
@pytest.fixture(scope="module")
def trisomy_folder(tmp_path_factory):
    cell = generate_cell("47,XX,+21", seed=UNSEEN + 5, name="patient-7")
    return write_cell(cell, tmp_path_factory.mktemp("cells") / "patient-7", labelled=False)


def test_classify_writes_the_cell_as_json_with_a_karyogram(trisomy_folder, tmp_path, capsys):
    out = tmp_path / "out" / "result.json"
    png = tmp_path / "karyogram.png"

    assert main(["classify", str(trisomy_folder), "--device", "cpu",
                 "--json", str(out), "--png", str(png)]) == 0  # fmt: skip

    document = json.loads(out.read_text(encoding="utf-8"))
    [cell] = document["cells"]
    assert cell["karyotype"] == "47,XX,+21"
    assert cell["count"] == 47 and cell["sex"] == "XX"
    assert cell["sex_evidence"] > 0 and cell["sex_from_case"] is False  # alone: its own word
    assert document["model"]["model_id"] and document["device"] == "cpu"
    files = sorted(path.name for path in trisomy_folder.iterdir())
    assert sorted(c["file"] for c in cell["chromosomes"]) == files
    for chromosome in cell["chromosomes"]:
        assert len(chromosome["top"]) == 3
        assert chromosome["top"][0]["type"] == chromosome["predicted"]
        assert chromosome["assigned"] == chromosome["type"]
    assert sum(c["type"] == "21" for c in cell["chromosomes"]) == 3
    picture = cv2.imread(str(png))
    assert picture is not None and picture.shape[1] > 1000
    assert "47,XX,+21" in capsys.readouterr().out


@pytest.mark.parametrize("good", [True, False], ids=["cell", "missing folder"])
def test_the_karyo_command_leaves_its_output_and_status_complete(trisomy_folder, tmp_path, good):
    """``karyo classify`` ends its process without the interpreter's teardown: what it
    printed to a pipe, the JSON and the exit status must all survive that."""
    out = tmp_path / "r.json"
    folder = trisomy_folder if good else tmp_path / "no-such-cell"
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    finished = subprocess.run(
        [sys.executable, "-m", "karyo_gui", "classify", str(folder), "--json", str(out),
         "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=buffered,
    )  # fmt: skip
    if good:
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert finished.stdout.splitlines()[-1] == f"wrote {out}"
        assert json.loads(out.read_text(encoding="utf-8"))["cells"][0]["count"] == 47
    else:
        assert finished.returncode == 2
        assert "no such file or folder" in finished.stderr and "Traceback" not in finished.stderr
        assert not out.exists()


def test_classify_writes_one_attention_map_per_chromosome(trisomy_folder, tmp_path):
    cams = tmp_path / "cams"
    assert main(["classify", str(trisomy_folder), "--json", str(tmp_path / "r.json"),
                 "--cam-dir", str(cams), "--device", "cpu"]) == 0  # fmt: skip
    written = sorted(cams.iterdir())
    assert len(written) == 47
    overlay = cv2.imread(str(written[0]))
    assert overlay is not None and overlay.ndim == 3


def test_classify_a_case_file_of_a_signed_off_cell_keeps_its_labels(tmp_path):
    from karyo_gui.core.case import Case
    from karyo_gui.core.case_file import save_case

    cell = generate_cell("46,XY", seed=UNSEEN + 6)
    cell.set_manual_label(cell.chromosomes[0].id, ChromosomeType.autosome(4), by="reviewer")
    cell.set_status(CellStatus.SIGNED_OFF, by="reviewer")
    write_cell(cell, tmp_path / "crops", labelled=False)
    case_path = tmp_path / "case.karyo.json"
    save_case(Case("c1", [cell]), case_path)
    out = tmp_path / "r.json"
    assert main(["classify", str(case_path), "--json", str(out), "--device", "cpu"]) == 0
    [reported] = json.loads(out.read_text(encoding="utf-8"))["cells"]
    assert reported["chromosomes"][0]["manual"] == "4"
    assert reported["chromosomes"][0]["type"] == "4"


def test_classify_a_case_gives_the_case_karyotype_by_the_clonality_rules(tmp_path):
    """Three cells of a case file: two 47,XY,+21 and one 46,XY; a cell counted only, one
    analysed, one karyogrammed: the JSON's case object says the mosaic and the tally."""
    from karyo_gui.core.case import Case, CellRole
    from karyo_gui.core.case_file import save_case

    cells = [generate_cell(k, seed=UNSEEN + 20 + i, name=f"cell {i}") for i, k in
             enumerate(["47,XY,+21", "47,XY,+21", "46,XY"])]
    for cell, role in zip(cells, [CellRole.COUNTED, CellRole.ANALYSED, CellRole.KARYOGRAMMED]):
        cell.set_role(role, True, by="ann")
        write_cell(cell, tmp_path / cell.name.replace(" ", "-"), labelled=False)
    case_path = tmp_path / "case.karyo.json"
    save_case(Case("c1", cells), case_path)
    out = tmp_path / "r.json"
    assert main(["classify", str(case_path), "--json", str(out), "--device", "cpu"]) == 0
    case = json.loads(out.read_text(encoding="utf-8"))["case"]
    assert case["karyotype"] == "mos 47,XY,+21[2]/46,XY[1]"
    assert (case["cells_counted"], case["cells_analysed"], case["cells_karyogrammed"]) == (
        1, 1, 1)
    assert case["clones"] == [{"karyotype": "47,XY,+21[2]", "cells": 2},
                              {"karyotype": "46,XY[1]", "cells": 1}]
    assert case["single_cell_findings"] == []
    assert not case["final"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["MISSING", "--json", "OUT"], "no such file or folder"),
        (["EMPTY", "--json", "OUT"], "no chromosome images"),
        (["CELL", "--json", "OUT", "--checkpoint", "BROKEN"], "not a safetensors model file"),
        (["CELL", "--json", "OUT", "--checkpoint", "MISSING"], "model file not found"),
        (["CELL", "--json", "OUT", "--device", "tpu"], "unknown device"),
        (["CELL", "--json", "OUT", "--doubt", "3"], "--doubt"),
    ],
)
def test_classify_mistakes_are_one_line_messages(
    arguments, message, trisomy_folder, tmp_path, capsys
):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.safetensors").write_text("not a model")
    places = {
        "MISSING": str(tmp_path / "missing"),
        "EMPTY": str(tmp_path / "empty"),
        "CELL": str(trisomy_folder),
        "BROKEN": str(tmp_path / "broken.safetensors"),
        "OUT": str(tmp_path / "out.json"),
    }
    status = main(["classify", *[places.get(argument, argument) for argument in arguments]])
    error = capsys.readouterr().err
    assert status == 2
    assert message in error
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert not (tmp_path / "out.json").exists()


def test_classify_into_an_unwritable_place_says_so(trisomy_folder, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["classify", str(trisomy_folder), "--json", str(blocker / "out.json")]) == 1
    assert "file" in capsys.readouterr().err


def test_karyo_evaluate_scores_whole_cells_with_the_shipped_model(tmp_path, capsys):
    karyotypes = ["46,XX", "47,XY,+21", "45,X"]
    for number, karyotype in enumerate(karyotypes):
        cell = generate_cell(karyotype, seed=UNSEEN + 10 + number, name=f"cell{number}")
        write_cell(cell, tmp_path / "data" / f"cell{number}", labelled=True)
    out = tmp_path / "eval.json"

    assert main(["evaluate", "--data", str(tmp_path / "data"), "--json", str(out),
                 "--device", "cpu"]) == 0  # fmt: skip

    metrics = json.loads(out.read_text(encoding="utf-8"))
    assert metrics["n_cells"] == 3 and metrics["n_crops"] == 46 + 47 + 45
    missed = [c for c in metrics["cells_not_exact"] if c["karyotype"] != c["assigned"]]
    assert metrics["iscn_exact"] == pytest.approx(1 - len(missed) / 3)
    assert metrics["iscn_exact"] >= 2 / 3  # the model is right on most generated cells
    assert metrics["assigned_accuracy"] >= metrics["crop_accuracy"]
    assert metrics["crops_per_second"] > 0 and metrics["device"] == "cpu"
    assert f"ISCN exact {metrics['iscn_exact']:.3f}" in capsys.readouterr().out
    assert metrics["second_look"] == SECOND_LOOK_MARGIN

    # one look only, as asked; an impossible margin is a one-line mistake
    assert main(["evaluate", "--data", str(tmp_path / "data"), "--json", str(out),
                 "--device", "cpu", "--second-look", "0"]) == 0  # fmt: skip
    assert json.loads(out.read_text(encoding="utf-8"))["second_look"] == 0
    capsys.readouterr()
    assert main(["evaluate", "--data", str(tmp_path / "data"), "--json", str(out),
                 "--second-look", "-1"]) == 2  # fmt: skip
    assert "--second-look -1.0 must lie between 0 and 1" in capsys.readouterr().err
