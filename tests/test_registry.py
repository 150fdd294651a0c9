"""The model registry: the shipped model plus trained models copied into the user's folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from karyo_gui.inference.registry import (
    ModelRegistry,
    RegisteredModel,
    RegistryError,
    default_folder,
)
from trainer.checkpoint import (
    HEADER_KEY,
    SHIPPED_MODEL,
    ModelHeader,
    read_header,
    save_checkpoint,
)
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing

PREP = Preprocessing(height=48, width=32)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return ChromosomeNet("resnet10t", embedding_dim=16).eval()


@pytest.fixture
def make(net, tmp_path):
    """Save a tiny model with its own weights (so its own model_id) under tmp_path/runs."""

    def make(name, created="2025-01-01T10:00:00+00:00", parent=None):
        with torch.no_grad():
            net.head.bias += 1  # new weights, new model_id
        header = ModelHeader(
            arch="resnet10t",
            embedding_dim=16,
            preprocessing=PREP.to_dict(),
            name=name,
            created=created,
            parent=None
            if parent is None
            else {"name": parent.name, "model_id": parent.model_id, "path": "best.safetensors"},
        )
        where = tmp_path / "runs" / name / "best.safetensors"
        return save_checkpoint(where, net, header, dtype=torch.float16)

    return make


@pytest.fixture
def shipped(make, tmp_path):
    """A stand-in for resources/karyo-default.safetensors: the real one is never touched."""
    path = make("shipped", created="2024-06-01T00:00:00+00:00")
    return path.rename(tmp_path / "karyo-default.safetensors")


@pytest.fixture
def registry(tmp_path, shipped):
    return ModelRegistry(tmp_path / "models", shipped=shipped)


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


def test_add_copies_the_file_under_its_name_and_id(registry, make):
    source = make("lab A")
    added = registry.add(source)
    model_id = read_header(source).model_id
    assert added.path == registry.folder / f"lab_A-{model_id}.safetensors"
    assert added.path.read_bytes() == source.read_bytes() and source.exists()
    assert added.model_id == model_id and read_header(added.path).model_id == model_id
    assert not added.shipped and added.name == "lab A"
    assert registry.find(model_id) == added
    assert files(registry.folder) == [added.path.name]  # no temporary file left behind


def test_the_name_given_is_only_used_for_the_file_name(registry, make):
    added = registry.add(make("lab A"), name="../tuned: v2")
    assert added.path.parent == registry.folder
    assert added.path.name == f"tuned_v2-{added.model_id}.safetensors"
    assert added.name == "lab A"


def test_adding_twice_keeps_one_file(registry, make, tmp_path):
    source = make("lab A")
    first = registry.add(source)
    copy = tmp_path / "elsewhere" / "renamed.safetensors"
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes())
    assert registry.add(source) == first
    assert registry.add(copy, name="other") == first
    assert registry.add(first.path) == first
    assert files(registry.folder) == [first.path.name]


def test_adding_the_shipped_model_returns_it(registry, shipped):
    again = registry.add(shipped)
    assert again.shipped and again.path == shipped
    assert files(registry.folder) == []


def test_models_lists_the_shipped_model_first_then_oldest_first(registry, make):
    newest = registry.add(make("newest", created="2025-03-01T09:00:00+00:00"))
    oldest = registry.add(make("oldest", created="2023-01-01T09:00:00+00:00"))
    middle = registry.add(make("middle", created="2025-02-01T09:00:00Z"))
    listed = registry.models()
    assert listed[0].shipped and listed[0].name == "shipped"
    assert [m.name for m in listed[1:]] == ["oldest", "middle", "newest"]
    assert [m.shipped for m in listed] == [True, False, False, False]
    assert listed[1:] == [oldest, middle, newest]
    assert registry.problems == []


def test_models_without_a_shipped_model_or_folder(tmp_path, make):
    assert ModelRegistry(tmp_path / "none", shipped=None).models() == []
    missing = ModelRegistry(tmp_path / "none", shipped=tmp_path / "absent.safetensors")
    assert missing.models() == [] and missing.problems == []
    assert not (tmp_path / "none").exists()  # listing creates nothing


def test_a_corrupt_file_in_the_folder_is_skipped_and_named(registry, make):
    good = registry.add(make("good"))
    (registry.folder / "broken.safetensors").write_bytes(b"not a model at all")
    (registry.folder / "notes.txt").write_text("ignored")
    listed = registry.models()
    assert [m.path for m in listed if not m.shipped] == [good.path]
    assert len(registry.problems) == 1 and "broken.safetensors" in registry.problems[0]
    registry.models()
    assert len(registry.problems) == 1  # problems are those of the last listing


def test_adding_a_non_model_file_names_it_and_leaves_nothing(registry, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(RegistryError, match=r"junk\.safetensors"):
        registry.add(junk)
    with pytest.raises(RegistryError, match=r"missing\.safetensors.*not found"):
        registry.add(tmp_path / "missing.safetensors")
    assert files(registry.folder) == []


def test_lineage_follows_parents_through_the_registry(registry, make, shipped):
    base = registry.models()[0]
    child = registry.add(make("child", parent=base))
    grandchild = registry.add(make("grandchild", parent=child))
    assert registry.lineage(grandchild) == [grandchild, child, base]
    assert registry.lineage(base) == [base]
    assert grandchild.describe() == (
        f"grandchild (resnet10t, {grandchild.model_id}), created 2025-01-01 10:00, from child"
    )
    assert base.describe() == f"shipped (resnet10t, {base.model_id}), created 2024-06-01 00:00"


def set_parent(model, parent):
    """Rewrite a model file's parent, keeping its weights and so its model_id."""
    header = read_header(model.path)
    header.parent = {"name": parent.name, "model_id": parent.model_id, "path": ""}
    save_file(load_file(model.path), model.path, metadata={HEADER_KEY: header.to_json()})


def test_lineage_stops_at_an_unknown_parent_and_at_a_cycle(registry, make):
    gone = make("gone")
    unknown = RegisteredModel(gone, read_header(gone), False)
    orphan = registry.add(make("orphan", parent=unknown))
    assert registry.lineage(orphan) == [orphan]
    # two models naming each other as parent (hand-edited headers): no endless loop
    a = registry.add(make("a"))
    b = registry.add(make("b", parent=a))
    set_parent(a, b)
    a, b = registry.find(a.model_id), registry.find(b.model_id)
    assert a.header.parent["model_id"] == b.model_id
    assert registry.lineage(b) == [b, a]
    assert registry.lineage(a) == [a, b]


def test_remove_deletes_the_file_and_refuses_the_shipped_model(registry, make, shipped):
    added = registry.add(make("temporary"))
    registry.remove(added)
    assert not added.path.exists() and registry.find(added.model_id) is None
    base = registry.models()[0]
    with pytest.raises(RegistryError, match=r"karyo-default\.safetensors.*shipped"):
        registry.remove(base)
    faked = RegisteredModel(shipped, base.header, shipped=False)
    with pytest.raises(RegistryError, match="shipped"):
        registry.remove(faked)
    assert shipped.exists()


def test_remove_refuses_a_file_outside_the_folder(registry, make):
    outside = make("outside")
    with pytest.raises(RegistryError, match="not a model in"):
        registry.remove(RegisteredModel(outside, read_header(outside), False))
    assert outside.exists()


def test_the_default_folder_is_the_users_data_folder():
    assert default_folder().name == "models"
    assert Path(os.environ["XDG_DATA_HOME"]) in default_folder().parents
    assert ModelRegistry().folder == default_folder()
    assert not default_folder().exists()


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped model in resources/")
def test_the_real_shipped_model_is_listed_as_shipped(tmp_path):
    before = SHIPPED_MODEL.stat()
    listed = ModelRegistry(tmp_path / "models").models()
    assert len(listed) == 1 and listed[0].shipped and listed[0].path == SHIPPED_MODEL
    assert listed[0].name == read_header(SHIPPED_MODEL).name and listed[0].name
    assert listed[0].describe().startswith(f"{listed[0].name} (")
    after = SHIPPED_MODEL.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
