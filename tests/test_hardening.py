"""Second round of hardening (issue 25): saving never replaces what a path points at,
crafted case files and model files are refused in one line, trainer options are checked
and a diverging run writes nothing, and TIFF crops that Pillow calls truncated but libtiff
reads open."""

from __future__ import annotations

import copy
import io
import json
import os
import resource
import stat
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from karyo_gui.cli import main as karyo
from karyo_gui.core.case import Case, Cell, Chromosome, Orientation
from karyo_gui.core.case_file import (
    SCHEMA_VERSION,
    CaseFileError,
    SaveTargetError,
    load_case,
    save_case,
    write_atomically,
)
from karyo_gui.core.images import CropReadError, decode_crop, read_crop
from karyo_gui.core.labels import ChromosomeType
from karyo_gui.core.loaders import load_cell, write_png
from karyo_gui.inference.registry import ModelRegistry
from trainer import checkpoint
from trainer.checkpoint import (
    CLASS_NAMES,
    HEADER_KEY,
    SHIPPED_MODEL,
    CheckpointError,
    ModelHeader,
    load_checkpoint,
    read_header,
    save_checkpoint,
    verify_checkpoint,
    weights_id,
)
from trainer.cli import main as trainer
from trainer.config import TrainConfig
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing

T = ChromosomeType


def rod(height: int = 60, width: int = 24, level: int = 40) -> np.ndarray:
    crop = np.full((height, width), 255, np.uint8)
    crop[4 : height - 4, width // 2 - 4 : width // 2 + 4] = level
    crop[height // 2, :] = 200
    return crop


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# ------------------------------------------------------------------ item 2: save targets
@pytest.fixture
def small_case(tmp_path) -> Case:
    crops = tmp_path / "shared" / "crops"
    crops.mkdir(parents=True)
    first = crops / "a.png"
    write_png(first, rod(60))
    cell = Cell(name="cell 1", chromosomes=[
        Chromosome(id="a.png", image=rod(60), source_path=str(first)),
        Chromosome(id="generated", image=rod(40, level=90)),
    ])
    return Case(case_id="P-1", cells=[cell])


def test_a_symlinked_case_file_is_written_through_and_stays_a_link(small_case, tmp_path):
    """A case file linked into a reviewer's folder: Save must reach the shared file."""
    shared = tmp_path / "shared" / "patient.karyo.json"
    save_case(small_case, shared)
    mine = tmp_path / "reviewer" / "patient.karyo.json"
    mine.parent.mkdir()
    mine.symlink_to(shared)
    small_case.cells[0].set_orientation("a.png", Orientation(180), by="dr.b")
    save_case(small_case, mine)
    assert mine.is_symlink() and os.readlink(mine) == str(shared)
    assert load_case(shared).cells[0].chromosome("a.png").orientation == Orientation(180)
    # crop paths are relative to the real file, so both ways of opening find the crops
    stored = json.loads(shared.read_text())["case"]["cells"][0]["chromosomes"][0]
    assert stored["source_path"] == "crops/a.png"
    reopened = load_case(mine).cells[0]
    assert reopened.problems == [] and reopened.chromosome("a.png").image is not None
    assert sorted(p.name for p in mine.parent.iterdir()) == ["patient.karyo.json"]


def test_write_atomically_follows_a_chain_of_links(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    (tmp_path / "one").symlink_to(real)
    (tmp_path / "two").symlink_to(tmp_path / "one")
    write_atomically(tmp_path / "two", "new")
    assert real.read_text() == "new" and (tmp_path / "two").is_symlink()
    write_atomically(tmp_path / "bytes", b"\x89PNG")
    assert (tmp_path / "bytes").read_bytes() == b"\x89PNG"


def _fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    return fifo


@pytest.mark.parametrize("kind", ["fifo", "folder", "link to a fifo", "link loop",
                                  "missing folder"])
def test_a_target_that_is_not_a_regular_file_is_refused_in_one_line(tmp_path, kind):
    if kind == "fifo":
        target = _fifo(tmp_path)
    elif kind == "folder":
        target = tmp_path / "folder"
        target.mkdir()
    elif kind == "link to a fifo":
        target = tmp_path / "link"
        target.symlink_to(_fifo(tmp_path))
    elif kind == "link loop":
        target = tmp_path / "loop"
        target.symlink_to(tmp_path / "loop")
    else:
        target = tmp_path / "no such folder" / "out.json"
    with pytest.raises(SaveTargetError) as refused:
        write_atomically(target, "{}")  # a FIFO would block here if it were opened
    assert one_line(str(refused.value)) and target.name in str(refused.value)
    assert isinstance(refused.value, OSError)  # what the callers already turn into a message
    if kind in ("fifo", "link to a fifo"):
        assert stat.S_ISFIFO(os.stat(target).st_mode)  # still a FIFO, not a file
    assert not list(tmp_path.glob("**/.*.tmp"))


@pytest.mark.parametrize("option", ["--json", "--png"])
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_classify_refuses_an_output_that_is_not_a_file_before_any_work(
    tmp_path, capsys, option, kind
):
    cell = tmp_path / "cell"
    cell.mkdir()
    write_png(cell / "a.png", rod())
    if kind == "fifo":
        target = _fifo(tmp_path)
    else:
        target = tmp_path / "folder"
        target.mkdir()
    outputs = {"--json": str(tmp_path / "r.json"), "--png": None, option: str(target)}
    arguments = ["classify", str(cell), "--json", outputs["--json"]]
    if outputs["--png"]:
        arguments += ["--png", outputs["--png"]]
    started = time.monotonic()
    assert karyo(arguments) == 2
    error = capsys.readouterr().err
    assert one_line(error) and "not a regular file" in error and target.name in error
    assert time.monotonic() - started < 10  # no model was loaded, nothing classified
    assert stat.S_ISFIFO(os.stat(target).st_mode) if kind == "fifo" else target.is_dir()


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped model")
def test_classify_writes_its_json_and_png_through_symlinks(tmp_path):
    from karyo_gui.core.loaders import write_cell
    from karyo_gui.core.synthetic import generate_cell

    folder = write_cell(generate_cell("45,X", seed=9101, name="p"), tmp_path / "p",
                        labelled=False)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "r.json").write_text("old")
    (shared / "k.png").write_bytes(b"old")
    (tmp_path / "r.json").symlink_to(shared / "r.json")
    (tmp_path / "k.png").symlink_to(shared / "k.png")
    assert karyo(["classify", str(folder), "--device", "cpu", "--json",
                  str(tmp_path / "r.json"), "--png", str(tmp_path / "k.png")]) == 0
    assert (tmp_path / "r.json").is_symlink() and (tmp_path / "k.png").is_symlink()
    assert json.loads((shared / "r.json").read_text())["cells"][0]["count"] == 45
    assert (shared / "k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_file_is_written_through_a_link_and_never_over_a_fifo(
    model_file, tmp_path, capsys
):
    shared = tmp_path / "shared.safetensors"
    shared.write_bytes(b"old")
    (tmp_path / "link.safetensors").symlink_to(shared)
    assert trainer(["export", "--half", "--checkpoint", str(model_file), "--out",
                    str(tmp_path / "link.safetensors")]) == 0  # float16 as it was: same id
    assert (tmp_path / "link.safetensors").is_symlink()
    assert read_header(shared).model_id == read_header(model_file).model_id
    fifo = _fifo(tmp_path)
    capsys.readouterr()
    assert trainer(["export", "--checkpoint", str(model_file), "--out", str(fifo)]) == 2
    error = capsys.readouterr().err
    assert one_line(error) and "not a regular file" in error
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# ------------------------------------------------------------------ items 5, 6: case files
@pytest.fixture
def saved(tmp_path) -> tuple[Path, str]:
    cell = Cell(name="c", chromosomes=[
        Chromosome(id="c001", image=rod(60), predicted=T.CHR1,
                   probabilities=np.full(24, 1 / 24, np.float32)),
        Chromosome(id="c002", image=rod(50, level=80)),
        Chromosome(id="c003", image=rod(40, level=120)),
    ])
    cell.set_manual_label("c001", T.CHR2, by="dr.a")
    path = tmp_path / "crafted.karyo.json"
    save_case(Case(case_id="x", cells=[cell], notes="n"), path)
    return path, path.read_text()


ROTATION = '"rotation":0'


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda t: t.replace(ROTATION, '"rotation":Infinity', 1), "Infinity"),
        (lambda t: t.replace(ROTATION, '"rotation":-Infinity', 1), "Infinity"),
        (lambda t: t.replace(ROTATION, '"rotation":NaN', 1), "NaN"),
        (lambda t: t.replace(ROTATION, '"rotation":1e400', 1), "out of range"),
        (lambda t: t.replace(ROTATION, '"rotation":' + "9" * 5000, 1), "5,000 digits"),
        (lambda t: "[" * 200_000 + "]" * 200_000, "nested too deeply"),
        (lambda t: t.replace('"notes":"n"', '"notes":' + "[" * 200_000 + "]" * 200_000),
         "nested too deeply"),
        (lambda t: t.replace(ROTATION, '"rotation":90.5', 1), "whole number of degrees"),
        (lambda t: t.replace(ROTATION, '"rotation":"90"', 1), "whole number of degrees"),
        (lambda t: t.replace('"id":"c002"', '"id":["c002"]'), "'id' must be text"),
        (lambda t: t.replace('"content_hash":null', '"content_hash":5', 1), "content_hash"),
        (lambda t: t.replace('"model_id":null', '"model_id":{}', 1), "model_id"),
        (lambda t: t.replace('"flipped":false', '"flipped":"no"', 1), "flipped"),
        (lambda t: t.replace(f'"schema_version":{SCHEMA_VERSION}', '"schema_version":true'),
             "schema_version"),
    ],
    ids=["inf", "-inf", "nan", "1e400", "5000-digits", "nested", "nested-inside",
         "rotation-float", "rotation-text", "id-list", "hash-number", "model-id-object",
         "flipped-text", "schema-bool"],
)
def test_a_crafted_case_file_is_a_one_line_case_file_error(saved, edit, reason):
    path, text = saved
    path.write_text(edit(text))
    with pytest.raises(CaseFileError) as refused:
        load_case(path)
    message = str(refused.value)
    assert message.startswith(str(path)) and reason in message and one_line(message)


WRONG = [None, -1, 1.5, float("inf"), "x", [], {}, [1], True, 10**25]


def _places(value, where=()):
    yield where
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):
            yield from _places(item, (*where, index))


def test_any_json_of_the_wrong_shape_loads_or_is_a_case_file_error(saved, tmp_path):
    """Every value of a case file replaced by each wrong kind (or deleted): the file loads,
    and saves again, or it is refused with CaseFileError; nothing else escapes."""
    path, text = saved
    document = json.loads(text)
    tried = 0
    for where in list(_places(document))[1:]:
        if where[-1] == "image_png":
            continue  # base64 text of a crop; its damage is test_case_file's
        for value in [*WRONG, "DELETE"]:
            if value == "DELETE" and not isinstance(where[-1], str):
                continue
            edited = copy.deepcopy(document)
            parent = edited
            for key in where[:-1]:
                parent = parent[key]
            if value == "DELETE":
                del parent[where[-1]]
            else:
                parent[where[-1]] = value
            path.write_text(json.dumps(edited))
            tried += 1
            try:
                case = load_case(path)
            except CaseFileError as error:
                assert one_line(str(error))
                continue
            save_case(case, tmp_path / "again.karyo.json")
    assert tried > 500


def test_duplicate_chromosome_ids_are_renamed_and_listed(saved, tmp_path):
    path, text = saved
    path.write_text(text.replace('"id":"c002"', '"id":"c001"').replace(
        '"id":"c003"', '"id":"c001"'))
    cell = load_case(path).cells[0]
    assert [c.id for c in cell.chromosomes] == ["c001", "c001 (2)", "c001 (3)"]
    assert len({id(cell.chromosome(c.id)) for c in cell.chromosomes}) == 3  # each found
    [problem] = cell.problems
    assert "c001 -> c001 (2)" in problem and "c001 -> c001 (3)" in problem
    # an edit of the second one hits the second one, not the first
    cell.set_manual_label("c001 (2)", T.CHR5, by="dr.b")
    assert cell.chromosomes[1].manual.label is T.CHR5
    assert cell.chromosomes[0].manual.label is T.CHR2
    again = tmp_path / "again.karyo.json"
    save_case(Case(case_id="x", cells=[cell]), again)
    reloaded = load_case(again).cells[0]
    assert [c.id for c in reloaded.chromosomes] == ["c001", "c001 (2)", "c001 (3)"]
    assert reloaded.problems == []


def test_classify_on_a_crafted_case_file_is_one_line(saved, tmp_path, capsys):
    path, text = saved
    path.write_text(text.replace(ROTATION, '"rotation":Infinity', 1))
    assert karyo(["classify", str(path), "--json", str(tmp_path / "r.json")]) == 2
    error = capsys.readouterr().err
    assert one_line(error) and path.name in error and "Infinity" in error


# ------------------------------------------------------------------ items 7, 8: model files
PREP = Preprocessing(height=48, width=32)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = ChromosomeNet("resnet10t", embedding_dim=16).eval()
    header = ModelHeader(arch="resnet10t", embedding_dim=16, preprocessing=PREP.to_dict(),
                         name="lab model")
    folder = tmp_path_factory.mktemp("model")
    return save_checkpoint(folder / "model.safetensors", net, header, dtype=torch.float16)


def _rewrite(source: Path, target: Path, change_state=None, change_header=None,
             keep_id: bool = False) -> Path:
    """A copy of a model file with its weights and/or header changed; unless ``keep_id``,
    the header's model_id is recomputed so that only the change itself is wrong."""
    state = load_file(str(source))
    header = read_header(source)
    if change_state:
        change_state(state)
    if change_header:
        change_header(header)
    if not keep_id:
        header.model_id = weights_id(state, header.input_preprocessing)
    save_file(state, str(target), metadata={HEADER_KEY: header.to_json()})
    return target


def _swap_types_1_and_2(state):
    for name in ("head.weight", "head.bias"):
        state[name] = state[name][[1, 0, *range(2, 24)]].contiguous()


def test_the_id_covers_float16_weights_and_straightening_as_saved(model_file):
    header = verify_checkpoint(model_file)
    assert header.model_id == weights_id(load_file(str(model_file)), header.input_preprocessing)
    assert load_checkpoint(model_file)[1].model_id == header.model_id


def test_weights_replaced_under_the_same_header_are_refused(model_file, tmp_path):
    swapped = _rewrite(model_file, tmp_path / "model.safetensors", _swap_types_1_and_2,
                       keep_id=True)
    assert read_header(swapped).model_id == read_header(model_file).model_id
    for check in (load_checkpoint, verify_checkpoint):
        with pytest.raises(CheckpointError, match=r"model\.safetensors: the weights are not"):
            check(swapped)


def test_a_replaced_model_is_not_listed_as_the_shipped_one(model_file, tmp_path):
    shipped = _rewrite(model_file, tmp_path / "karyo-default.safetensors",
                       _swap_types_1_and_2, keep_id=True)
    registry = ModelRegistry(tmp_path / "models", shipped=shipped)
    assert registry.models() == []
    assert "karyo-default.safetensors" in registry.problems[0]
    good = ModelRegistry(tmp_path / "models", shipped=model_file)
    assert [m.model_id for m in good.models()] == [read_header(model_file).model_id]


@pytest.mark.parametrize(
    ("change_state", "change_header", "message"),
    [
        (lambda s: s.update({"head.weight": (s["head.weight"] * 100).to(torch.int8)}), None,
         "floating-point"),
        (lambda s: s["head.bias"].__setitem__(3, float("nan")), None, "non-finite"),
        (lambda s: s["projection.weight"].__setitem__((0, 0), float("inf")), None,
         "non-finite"),
        (None, lambda h: setattr(h, "class_names", [CLASS_NAMES[1], CLASS_NAMES[0],
                                                    *CLASS_NAMES[2:]]), "karyo's order"),
        (None, lambda h: setattr(h, "class_names", CLASS_NAMES[:23]), "23 classes"),
    ],
    ids=["int8", "nan", "inf", "class-order", "class-count"],
)
def test_weights_and_classes_that_cannot_be_right_are_refused(
    model_file, tmp_path, change_state, change_header, message
):
    bad = _rewrite(model_file, tmp_path / "bad.safetensors", change_state, change_header)
    with pytest.raises(CheckpointError, match=message) as refused:
        load_checkpoint(bad)
    assert str(refused.value).startswith("bad.safetensors:") and one_line(str(refused.value))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: setattr(h, "embedding_dim", 2_000_000), "embedding_dim 2000000"),
        (lambda h: setattr(h, "arch", "vit_giant_patch14_224"), "parameters"),
        (lambda h: (setattr(h, "arch", "vit_base_patch16_224"),
                    setattr(h, "model_kwargs", {"embed_dim": 12000, "depth": 40})),
         "embed_dim=12000"),
        (lambda h: setattr(h, "model_kwargs", {"checkpoint_path": "weights.pth"}),
         "not allowed"),
        (lambda h: h.preprocessing.update(height=100_000), "height 100000"),
        (lambda h: h.preprocessing.update(width=0), "width 0"),
        (lambda h: h.preprocessing.update(height=64.5), "height 64.5"),
        (lambda h: h.preprocessing.update(std=0), "std 0"),
        (lambda h: h.preprocessing.update(mean=float("nan")), "mean nan"),
        (lambda h: h.preprocessing.update(median_length="big"), "median_length"),
        (lambda h: h.preprocessing.update(straighten_bend=1e9), "straighten_bend"),
    ],
    ids=["embedding-2M", "vit-giant", "vit-12000-wide", "checkpoint-path", "height-100000",
         "width-0", "height-float", "std-0", "mean-nan", "median-text", "bend-huge"],
)
def test_a_header_cannot_drive_allocations_or_crash_preprocessing(
    model_file, tmp_path, capsys, change, message
):
    bad = _rewrite(model_file, tmp_path / "big.safetensors",
                   change_header=lambda h: change(h), keep_id=True)
    before, started = _peak_rss_mb(), time.monotonic()
    with pytest.raises(CheckpointError, match=message) as refused:
        load_checkpoint(bad)
    assert time.monotonic() - started < 10 and _peak_rss_mb() - before < 1000
    assert str(refused.value).startswith("big.safetensors:") and one_line(str(refused.value))
    # and at the command line: exit 2, one line
    cell = tmp_path / "cell"
    cell.mkdir()
    write_png(cell / "a.png", rod())
    assert karyo(["classify", str(cell), "--json", str(tmp_path / "r.json"),
                  "--checkpoint", str(bad), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert one_line(error) and "big.safetensors" in error


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped model")
def test_the_shipped_model_passes_every_check_and_keeps_its_id():
    stored = read_header(SHIPPED_MODEL).model_id
    net, header = load_checkpoint(SHIPPED_MODEL)
    assert header.model_id == stored == verify_checkpoint(SHIPPED_MODEL).model_id
    assert header.input_preprocessing.straighten_bend > 0  # the id covers the threshold
    assert sum(p.numel() for p in net.parameters()) < checkpoint.MAX_PARAMETERS
    [listed] = ModelRegistry(Path("/nonexistent/karyo-models"), shipped=SHIPPED_MODEL).models()
    assert listed.shipped and listed.model_id == stored


def test_non_finite_weights_are_never_written(tmp_path):
    net = ChromosomeNet("resnet10t", embedding_dim=16)
    with torch.no_grad():
        net.head.bias[0] = float("inf")
    header = ModelHeader(arch="resnet10t", embedding_dim=16, preprocessing=PREP.to_dict())
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path / "m.safetensors", net, header)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ item 10: trainer options
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--lr", "inf"], "--lr inf"),
        (["--lr", "nan"], "--lr nan"),
        (["--lr", "1e9"], "--lr 1000000000.0"),
        (["--lr", "0"], "--lr 0.0"),
        (["--temperature", "0"], "--temperature 0.0"),
        (["--threads", "-1"], "--threads -1"),
        (["--weight-decay", "-5"], "--weight-decay -5.0"),
        (["--grad-clip", "nan"], "--grad-clip nan"),
        (["--input-height", "100000"], "--input-height"),
        (["--model-kwargs", "{{checkpoint_path: x.pth}}"], "'checkpoint_path' is not allowed"),
        (["--config", "{tmp}/text.yaml"], "--lr 'fast' is not a number"),
    ],
)
def test_training_options_that_cannot_work_are_one_line_refusals(
    tmp_path, capsys, options, message
):
    (tmp_path / "text.yaml").write_text("lr: fast\n")
    options = [o.format(tmp=tmp_path) for o in options]
    status = trainer(["train", "--generated-cells", "2", "--output", str(tmp_path / "r"),
                      *options])
    error = capsys.readouterr().err
    assert status == 2 and message in error and one_line(error)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("size", ["0", "-3"])
def test_evaluate_refuses_a_batch_size_below_one(tmp_path, capsys, size):
    assert karyo(["evaluate", "--data", str(tmp_path), "--json", str(tmp_path / "e.json"),
                  "--batch-size", size]) == 2
    error = capsys.readouterr().err
    assert f"--batch-size {size}" in error and one_line(error)


@pytest.mark.parametrize("steps", [1, 2])
def test_a_diverging_run_stops_at_once_and_writes_no_weights(tmp_path, steps):
    """--lr inf gets past no option check, so it is set here directly: the first step's
    update makes the weights infinite, the second step's loss is NaN."""
    from trainer.engine import TrainingDiverged, train

    output = tmp_path / "run"
    config = TrainConfig(
        generated_cells=2, arch="resnet10t", embedding_dim=16, input_height=48,
        input_width=32, epochs=1, steps_per_epoch=steps, lr=float("inf"), output=str(output),
        log_every=1,
    )
    with pytest.raises(TrainingDiverged, match=f"training diverged at step {steps} "):
        train(config)
    assert not list(output.glob("*.safetensors")) and not (output / "state.pt").exists()
    events = [json.loads(line) for line in (output / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "diverged" and events[-1]["step"] == steps


# ------------------------------------------------------------------ item 11: TIFF crops
def exporter_tiff(crop: np.ndarray) -> bytes:
    """An uncompressed TIFF as some export tools write it: five strips listed in
    StripOffsets while RowsPerStrip says one strip for the whole image and StripByteCounts
    say 1 byte each, and an ImageDescription without its terminating NUL. Pillow reads from
    the last strip and calls it truncated; libtiff calls the byte counts bogus, works them
    out from the image size and reads the pixels right."""
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="TIFF",
                               tiffinfo={278: crop.shape[0] // 5, 270: "exported by tool"})
    data = bytearray(buffer.getvalue())
    first = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[first : first + 2])[0]):
        entry = first + 2 + 12 * k
        tag, _kind, count = struct.unpack("<HHI", data[entry : entry + 8])
        where = struct.unpack("<I", data[entry + 8 : entry + 12])[0]
        if tag == 278:  # RowsPerStrip
            data[entry + 8 : entry + 12] = struct.pack("<I", crop.shape[0])
        elif tag == 279:  # StripByteCounts
            assert count == 5
            data[where : where + 20] = struct.pack("<5I", 1, 1, 1, 1, 1)
        elif tag == 270:  # ASCII: drop the NUL from the count
            data[entry + 4 : entry + 8] = struct.pack("<I", count - 1)
    return bytes(data)


def test_a_tiff_pillow_calls_truncated_but_libtiff_reads_opens(tmp_path):
    crop = rod(120, 40)
    crop[20:100, 16:24] = np.arange(80, dtype=np.uint8)[:, None]  # every row its own value
    data = exporter_tiff(crop)
    with pytest.raises(OSError, match="truncated"), Image.open(io.BytesIO(data)) as pillow:
        pillow.load()  # Pillow alone refuses it
    path = tmp_path / "cell" / "chr1" / "exported.tif"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    np.testing.assert_array_equal(read_crop(path), crop)
    cell = load_cell(tmp_path / "cell")
    assert cell.problems == [] and len(cell) == 1
    np.testing.assert_array_equal(cell.chromosomes[0].image, crop)


def test_a_really_truncated_tiff_is_still_refused(tmp_path):
    data = exporter_tiff(rod(120, 40))
    for cut in (len(data) - 400, len(data) // 2):
        with pytest.raises(CropReadError, match="corrupt or truncated"):
            decode_crop(data[:cut], "cut.tif")
