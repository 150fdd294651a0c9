"""The case file: everything a reviewer did survives save and load, and bad files fail well."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import cv2
import numpy as np
import pytest

from karyo_gui.core import case_file
from karyo_gui.core.case import Case, Cell, CellStatus, Chromosome, Flag, Orientation
from karyo_gui.core.case_file import SCHEMA_VERSION, CaseFileError, load_case, save_case
from karyo_gui.core.images import read_crop_and_hash
from karyo_gui.core.labels import ChromosomeType

T = ChromosomeType


def rod_crop(height: int, width: int = 24, level: int = 40) -> np.ndarray:
    crop = np.full((height, width), 255, np.uint8)
    crop[4 : height - 4, width // 2 - 4 : width // 2 + 4] = level
    crop[height // 2, :] = 200  # a band across
    return crop


def write_png(path: pathlib.Path, image: np.ndarray) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def file_chromosome(path: pathlib.Path, chromosome_id: str, **labels) -> Chromosome:
    image, digest = read_crop_and_hash(path)
    return Chromosome(
        id=chromosome_id, image=image, source_path=str(path.resolve()), content_hash=digest,
        **labels,
    )


def probabilities(top: ChromosomeType, confidence: float) -> np.ndarray:
    values = np.full(24, (1.0 - confidence) / 23, np.float32)
    values[top.value] = confidence
    return values


@pytest.fixture
def case_dir(tmp_path) -> pathlib.Path:
    folder = tmp_path / "case folder"
    folder.mkdir()
    return folder.resolve()


@pytest.fixture
def case(case_dir) -> Case:
    crops = case_dir / "crops"
    a1 = write_png(crops / "A" / "clase1" / "a1.png", rod_crop(90, level=30))
    a2 = write_png(crops / "A" / "clase1" / "a2.png", rod_crop(88, level=35))
    a3 = write_png(crops / "A" / "X" / "a3.png", rod_crop(60, level=50))
    cell_a = Cell(
        name="A.tiff",
        source=str((crops / "A").resolve()),
        model_id="resnet18-gband612-v3",
        chromosomes=[
            file_chromosome(a1, "clase1/a1.png", given=T.CHR1, predicted=T.CHR1,
                            probabilities=probabilities(T.CHR1, 0.9), assigned=T.CHR1),
            file_chromosome(a2, "clase1/a2.png", given=T.CHR1, predicted=T.CHR2,
                            probabilities=probabilities(T.CHR2, 0.4), assigned=T.CHR1,
                            flags={Flag.LOW_CONFIDENCE, Flag.MOVED_BY_ASSIGNMENT}),
            file_chromosome(a3, "X/a3.png", given=T.X, predicted=T.CHR7,
                            probabilities=probabilities(T.CHR7, 0.55)),
        ],
    )
    cell_a.set_manual_label("X/a3.png", T.X, by="dr.ada")
    cell_a.set_orientation("clase1/a1.png", Orientation(180, True), by="dr.ada")
    cell_a.set_status(CellStatus.REVIEWED, by="dr.ada")

    b1 = write_png(crops / "B" / "b1.png", rod_crop(70, level=20))
    cell_b = Cell(
        name="B.tiff",
        source=str((crops / "B").resolve()),
        chromosomes=[
            file_chromosome(b1, "b1.png", predicted=T.CHR21,
                            probabilities=probabilities(T.CHR21, 0.8),
                            orientation=Orientation(90)),
            # a generated crop with no file of its own: embedded in the case file
            Chromosome(id="generated-0", image=rod_crop(50, 18, level=77), predicted=T.Y,
                       flags={Flag.ORIENTATION_UNSURE}),
        ],
    )
    cell_b.set_manual_label("b1.png", T.UNCLASSIFIED, by="dr.bob")
    cell_b.set_status(CellStatus.SIGNED_OFF, by="dr.bob")
    return Case(case_id="P-2024-017", cells=[cell_a, cell_b], notes="amniocentesis, 2 cells")


def assert_same_case(loaded: Case, original: Case, moved_to: pathlib.Path | None = None,
                     moved_from: pathlib.Path | None = None) -> None:
    assert loaded.case_id == original.case_id
    assert loaded.notes == original.notes
    assert loaded.created == original.created
    assert [cell.name for cell in loaded.cells] == [cell.name for cell in original.cells]
    for cell, expected_cell in zip(loaded.cells, original.cells):
        assert cell.problems == []
        assert cell.status is expected_cell.status
        assert cell.model_id == expected_cell.model_id
        assert cell.audit == expected_cell.audit
        assert len(cell) == len(expected_cell)
        for chromosome, expected in zip(cell.chromosomes, expected_cell.chromosomes):
            assert chromosome.id == expected.id
            for field in ("content_hash", "given", "predicted", "assigned", "manual",
                          "orientation", "flags"):
                assert getattr(chromosome, field) == getattr(expected, field), field
            assert chromosome.label is expected.label
            if expected.probabilities is None:
                assert chromosome.probabilities is None
            else:
                np.testing.assert_allclose(chromosome.probabilities, expected.probabilities,
                                           atol=1e-6)
            np.testing.assert_array_equal(chromosome.image, expected.image)
            if expected.source_path is None:
                assert chromosome.source_path is None
            elif moved_to is None:
                assert chromosome.source_path == expected.source_path
            else:
                relative = pathlib.Path(expected.source_path).relative_to(moved_from)
                assert pathlib.Path(chromosome.source_path) == moved_to / relative


def test_round_trip_keeps_everything(case, case_dir):
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    loaded = load_case(path)
    assert_same_case(loaded, case)
    # what the reviewer sees is what was saved
    assert [cell.karyotype for cell in loaded.cells] == [cell.karyotype for cell in case.cells]
    a3 = loaded.cells[0].chromosome("X/a3.png")
    assert a3.manual.label is T.X and a3.manual.by == "dr.ada"
    assert loaded.cells[0].chromosome("clase1/a1.png").orientation == Orientation(180, True)
    assert [entry.action for entry in loaded.cells[0].audit] == ["label", "orientation",
                                                                 "status"]


def test_embedded_image_round_trips_exactly(case, case_dir):
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    generated = load_case(path).cells[1].chromosome("generated-0")
    assert generated.source_path is None
    np.testing.assert_array_equal(generated.image, case.cells[1].chromosome("generated-0").image)


def test_crop_paths_are_stored_relative_to_the_case_file(case, case_dir):
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    text = path.read_text(encoding="utf-8")
    assert str(case_dir) not in text
    document = json.loads(text)
    assert document["format"] == "karyo-case"
    assert document["schema_version"] == SCHEMA_VERSION
    stored = [c["source_path"] for cell in document["case"]["cells"]
              for c in cell["chromosomes"] if c["source_path"] is not None]
    assert stored == ["crops/A/clase1/a1.png", "crops/A/clase1/a2.png", "crops/A/X/a3.png",
                      "crops/B/b1.png"]


def test_a_moved_case_folder_still_opens_with_its_images(case, case_dir, tmp_path):
    save_case(case, case_dir / "patient.karyo.json")
    moved = tmp_path / "archive" / "2024" / "moved case"
    shutil.copytree(case_dir, moved)
    shutil.rmtree(case_dir)
    loaded = load_case(moved / "patient.karyo.json")
    assert_same_case(loaded, case, moved_to=moved.resolve(), moved_from=case_dir)
    assert all(Flag.IMAGE_MISSING not in c.flags for cell in loaded.cells
               for c in cell.chromosomes)


def test_crops_outside_the_case_folder_are_stored_absolute(case, case_dir, tmp_path):
    outside = write_png(tmp_path / "elsewhere" / "c.png", rod_crop(40))
    case.cells[0].chromosomes.append(file_chromosome(outside, "c.png", given=T.CHR22))
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    assert str(outside.resolve()) in path.read_text(encoding="utf-8")
    assert_same_case(load_case(path), case)


# --------------------------------------------------------------------------- atomic write


def test_saving_leaves_no_temporary_files(case, case_dir):
    path = case_dir / "patient.karyo.json"
    before = set(os.listdir(case_dir))
    save_case(case, path)
    save_case(case, path)  # overwriting too
    assert set(os.listdir(case_dir)) == before | {"patient.karyo.json"}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saving_keeps_the_permissions_a_lab_gave_the_case_file(case, case_dir):
    path = case_dir / "patient.karyo.json"
    previous = os.umask(0o022)
    try:
        save_case(case, path)
        assert path.stat().st_mode & 0o777 == 0o644  # a new file: what the umask gives
        path.chmod(0o664)  # shared with the lab's group
        save_case(case, path)
        assert path.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(previous)


def test_a_failed_save_keeps_the_old_file(case, case_dir, monkeypatch):
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    old_text = path.read_text(encoding="utf-8")
    case.notes = "changed after the first save"

    def broken_replace(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(case_file.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_case(case, path)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == old_text
    assert sorted(os.listdir(case_dir)) == ["crops", "patient.karyo.json"]
    assert load_case(path).notes == "amniocentesis, 2 cells"


# --------------------------------------------------------------------------- errors


def load_error(path: pathlib.Path) -> str:
    with pytest.raises(CaseFileError) as info:
        load_case(path)
    message = str(info.value)
    assert path.name in message
    return message


def saved_document(case: Case, path: pathlib.Path) -> dict:
    save_case(case, path)
    return json.loads(path.read_text(encoding="utf-8"))


def test_truncated_case_file(case, case_dir):
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    assert "broken" in load_error(path)


def test_not_json(case_dir):
    path = case_dir / "notes.karyo.json"
    path.write_text("Dear colleague, please find the case attached.", encoding="utf-8")
    assert "broken" in load_error(path)


def test_binary_file(case_dir):
    path = case_dir / "image.karyo.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    assert "not a karyo case file" in load_error(path)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"type": "FeatureCollection", "features": []}, "not a karyo case file"),
        ([1, 2, 3], "not a karyo case file"),
        ("karyo-case", "not a karyo case file"),
        ({"format": "karyo-case"}, "no valid schema_version"),
        ({"format": "karyo-case", "schema_version": "1", "case": {}}, "no valid schema_version"),
        ({"format": "karyo-case", "schema_version": 0, "case": {}}, "no valid schema_version"),
    ],
)
def test_json_of_another_format(case_dir, document, expected):
    path = case_dir / "other.karyo.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert expected in load_error(path)


def test_newer_schema_asks_for_an_update(case, case_dir):
    path = case_dir / "future.karyo.json"
    document = saved_document(case, path)
    document["schema_version"] = SCHEMA_VERSION + 1
    document["written_by"] = "karyo 9.0"
    path.write_text(json.dumps(document), encoding="utf-8")
    message = load_error(path)
    assert "newer" in message
    assert "Update" in message or "update" in message
    assert "karyo 9.0" in message


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(document):
        target = document["case"]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _delete(*keys):
    def edit(document):
        target = document["case"]
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        _set("cells", 0, "chromosomes", 0, "given", "banana"),
        _set("cells", 5),
        _set("cells", {}),
        _set("cells", "not a list"),
        _set("cells", 0, "chromosomes", 0, "given", 7),
        _set("cells", 0, "chromosomes", 2, "manual", "label", "banana"),
        _set("cells", 0, "chromosomes", 0, "orientation", "rotation", 45),
        _set("cells", 0, "chromosomes", 0, "flags", ["looks odd"]),
        _set("cells", 0, "chromosomes", 0, "probabilities", [0.5, 0.5]),
        _set("cells", 0, "status", "approved"),
        _set("cells", 0, "audit", 3),
        _set("created", "yesterday"),
        _delete("case_id"),
        _delete("cells", 0, "chromosomes", 0, "id"),
    ],
    ids=[
        "label-banana", "cells-int", "cells-dict", "cells-str", "label-int", "manual-banana",
        "rotation-45",
        "unknown-flag", "short-probabilities", "unknown-status", "audit-int", "bad-date",
        "no-case-id", "no-chromosome-id",
    ],
)
def test_hand_edited_wrong_values(case, case_dir, edit):
    path = case_dir / "edited.karyo.json"
    document = saved_document(case, path)
    edit(document)
    path.write_text(json.dumps(document), encoding="utf-8")
    assert "damaged or hand-edited" in load_error(path)


def test_missing_case_file(case_dir):
    assert "not found" in load_error(case_dir / "nowhere.karyo.json")


# --------------------------------------------------------------------------- crops on disk


def test_a_deleted_crop_is_flagged_and_the_case_still_opens(case, case_dir):
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    (case_dir / "crops" / "A" / "clase1" / "a2.png").unlink()
    loaded = load_case(path)
    cell = loaded.cells[0]
    missing = cell.chromosome("clase1/a2.png")
    assert Flag.IMAGE_MISSING in missing.flags
    assert missing.image is None
    assert missing.label is T.CHR1  # the labels are kept
    assert len(cell.problems) == 1 and "a2.png" in cell.problems[0]
    others = [c for c in cell.chromosomes if c is not missing] + loaded.cells[1].chromosomes
    assert all(c.image is not None and Flag.IMAGE_MISSING not in c.flags for c in others)
    assert loaded.cells[1].problems == []


def test_a_changed_crop_is_flagged(case, case_dir):
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    changed = rod_crop(90, level=99)
    write_png(case_dir / "crops" / "A" / "clase1" / "a1.png", changed)
    cell = load_case(path).cells[0]
    chromosome = cell.chromosome("clase1/a1.png")
    assert Flag.IMAGE_CHANGED in chromosome.flags
    np.testing.assert_array_equal(chromosome.image, changed)
    assert len(cell.problems) == 1 and "a1.png" in cell.problems[0]
    assert Flag.IMAGE_CHANGED not in cell.chromosome("clase1/a2.png").flags


def test_stale_image_flags_are_rechecked_on_load(case, case_dir):
    case.cells[0].chromosomes[0].flags.add(Flag.IMAGE_MISSING)
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    flags = load_case(path).cells[0].chromosomes[0].flags
    assert Flag.IMAGE_MISSING not in flags  # the file is there now


# --------------------------------------------------------------------------- versions


def test_an_old_version_is_upgraded_by_its_migration(case, case_dir, monkeypatch):
    path = case_dir / "old.karyo.json"
    save_case(case, path)  # written at the current version
    current = SCHEMA_VERSION
    assert json.loads(path.read_text(encoding="utf-8"))["schema_version"] == current
    seen = []

    def upgrade(document):
        seen.append(document["schema_version"])
        document["case"]["notes"] = "upgraded: " + document["case"]["notes"]
        return document

    monkeypatch.setattr(case_file, "SCHEMA_VERSION", current + 1)
    monkeypatch.setattr(case_file, "MIGRATIONS", {**case_file.MIGRATIONS, current: upgrade})
    loaded = load_case(path)
    assert seen == [current]
    assert loaded.notes == "upgraded: amniocentesis, 2 cells"
    assert_same_case(loaded, Case(case.case_id, case.cells, case.created, loaded.notes))

    # a file written at the newer version needs no migration
    save_case(loaded, path)
    assert json.loads(path.read_text(encoding="utf-8"))["schema_version"] == current + 1
    assert load_case(path).notes == loaded.notes
    assert seen == [current]


# --------------------------------------------------------------------------- sign-off


def test_a_signed_off_cell_refuses_edits(case, case_dir):
    signed = case.cells[1]
    assert signed.status is CellStatus.SIGNED_OFF
    with pytest.raises(PermissionError, match="signed off"):
        signed.set_manual_label("b1.png", T.CHR21)
    with pytest.raises(PermissionError):
        signed.set_orientation("b1.png", Orientation(180))
    path = case_dir / "patient.karyo.json"
    save_case(case, path)
    reloaded = load_case(path).cells[1]
    with pytest.raises(PermissionError):
        reloaded.set_manual_label("b1.png", T.CHR21)
    assert reloaded.chromosome("b1.png").label is T.UNCLASSIFIED
    # reopening makes it editable again, and the trail records both steps
    reloaded.set_status(CellStatus.REVIEWED, by="dr.bob")
    reloaded.set_manual_label("b1.png", T.CHR21, by="dr.bob")
    assert reloaded.chromosome("b1.png").label is T.CHR21
    assert [entry.action for entry in reloaded.audit][-2:] == ["status", "label"]


@pytest.mark.parametrize("migrations", [{}, {SCHEMA_VERSION: lambda document: document["x"]}],
                         ids=["no-migration", "migration-fails"])
def test_an_upgrade_that_cannot_run_is_a_clear_error(case, case_dir, monkeypatch, migrations):
    path = case_dir / "old.karyo.json"
    save_case(case, path)
    monkeypatch.setattr(case_file, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(case_file, "MIGRATIONS", migrations)
    message = load_error(path)
    assert "old.karyo.json" in message and "cannot upgrade" in message
    assert f"schema {SCHEMA_VERSION}" in message


def test_a_damaged_embedded_image_flags_only_that_chromosome(case_dir):
    image = rod_crop(60)
    cell = Cell("generated", [Chromosome("g1", image.copy(), given=T.CHR5),
                              Chromosome("g2", image.copy(), given=T.CHR6)])
    path = case_dir / "generated.karyo.json"
    save_case(Case("gen", [cell]), path)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["case"]["cells"][0]["chromosomes"][0]["image_png"] = "%%% not base64 %%%"
    path.write_text(json.dumps(document), encoding="utf-8")
    loaded = load_case(path).cells[0]
    assert Flag.IMAGE_MISSING in loaded.chromosome("g1").flags
    assert loaded.chromosome("g1").label is T.CHR5
    np.testing.assert_array_equal(loaded.chromosome("g2").image, image)
    assert any("g1" in problem for problem in loaded.problems)
