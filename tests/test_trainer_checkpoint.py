"""The model file: safetensors + JSON header, refused cleanly when wrong, never unpickled."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from trainer import checkpoint
from trainer.checkpoint import (
    CheckpointError,
    ModelHeader,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from trainer.model import ChromosomeNet
from trainer.preprocessing import Preprocessing

PREP = Preprocessing(height=48, width=32)


def tiny(arch="resnet10t", dim=16):
    torch.manual_seed(0)
    return ChromosomeNet(arch, embedding_dim=dim)


def header(arch="resnet10t", dim=16, **extra):
    return ModelHeader(arch=arch, embedding_dim=dim, preprocessing=PREP.to_dict(), **extra)


def test_round_trip_gives_the_same_model_and_header(tmp_path):
    net = tiny().eval()
    path = save_checkpoint(
        tmp_path / "m.safetensors", net, header(name="lab A", metrics={"crop_accuracy": 0.9})
    )
    loaded, stored = load_checkpoint(path)
    x = torch.randn(3, 1, PREP.height, PREP.width)
    with torch.no_grad():
        assert torch.allclose(net(x).logits, loaded(x).logits, atol=1e-6)
    assert stored.name == "lab A" and stored.metrics == {"crop_accuracy": 0.9}
    assert stored.input_preprocessing == PREP
    assert stored.class_names[:3] == ["1", "2", "3"] and stored.class_names[-2:] == ["X", "Y"]
    assert len(stored.model_id) == 12 and read_header(path).model_id == stored.model_id


def test_the_model_id_follows_the_weights(tmp_path):
    first = save_checkpoint(tmp_path / "a.safetensors", tiny(), header())
    with torch.no_grad():
        changed = tiny()
        changed.head.bias += 1
    second = save_checkpoint(tmp_path / "b.safetensors", changed, header())
    assert read_header(first).model_id != read_header(second).model_id


def test_a_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match=r"evil\.safetensors"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.save({"model": tiny().state_dict()}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="not a safetensors model file"):
        load_checkpoint(tmp_path / "old.pt")


def test_truncated_and_missing_files_name_the_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny(), header())
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
        load_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.safetensors"):
        load_checkpoint(tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "mixed.safetensors"
    save_checkpoint(path, tiny("resnet10t"), header("resnet10t"))
    state = {k: v.contiguous() for k, v in tiny("resnet14t").state_dict().items()}
    save_file(state, str(path), metadata={checkpoint.HEADER_KEY: header("resnet10t").to_json()})
    with pytest.raises(CheckpointError, match="do not fit resnet10t"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "without a karyo model header"),
        ({"karyo": "{not json"}, "not valid JSON"),
        ({"karyo": json.dumps({"format": "something-else"})}, "not a karyo model file"),
        ({"karyo": "NEWER"}, "newer than this karyo"),
        ({"karyo": "UNKNOWN_ARCH"}, "not known to this timm"),
    ],
)
def test_headers_that_cannot_be_used_are_refused(tmp_path, metadata, message):
    if metadata.get("karyo") == "NEWER":
        metadata = {
            "karyo": header().to_json().replace(
                f'"format_version": {checkpoint.FORMAT_VERSION}', '"format_version": 99'
            )
        }
    if metadata.get("karyo") == "UNKNOWN_ARCH":
        metadata = {"karyo": header(arch="no_such_net_v9").to_json()}
    path = tmp_path / "odd.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_failed_save_keeps_the_good_model(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny(), header(name="good"))
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)  # as the writer imports it
    with pytest.raises(OSError):
        save_checkpoint(path, tiny(), header(name="new"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_a_half_size_export_loads_as_the_same_model(tmp_path):
    from trainer.cli import main

    net = tiny().eval()
    full = save_checkpoint(tmp_path / "full.safetensors", net, header(name="full"))
    half = tmp_path / "half.safetensors"
    assert main(["export", "--half", "--checkpoint", str(full), "--out", str(half)]) == 0
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(4, 1, PREP.height, PREP.width)
    with torch.no_grad():
        assert torch.allclose(net(x).logits, loaded(x).logits, atol=1e-2)


def test_straightening_switched_on_at_export_gives_the_model_a_new_id(tmp_path):
    from trainer.cli import main

    net = tiny().eval()
    plain = save_checkpoint(tmp_path / "plain.safetensors", net, header(name="plain"))
    again, straightened = tmp_path / "again.safetensors", tmp_path / "straight.safetensors"
    export = ["export", "--checkpoint", str(plain)]
    assert main([*export, "--out", str(again)]) == 0
    assert main([*export, "--out", str(straightened), "--straighten-bend", "0.5"]) == 0
    plain_id = read_header(plain).model_id
    assert read_header(again).model_id == plain_id  # the same model keeps its id
    changed = read_header(straightened)
    assert changed.model_id != plain_id  # the same weights now answer otherwise
    assert changed.input_preprocessing.straighten_bend == 0.5
    assert load_checkpoint(straightened)[1].input_preprocessing.straighten_bend == 0.5
