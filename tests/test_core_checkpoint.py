import json
import os
import pickle

import pytest
import torch

import mer
from mer.checkpoint import CheckpointError, ModelCard, load_checkpoint, save_checkpoint


def card(**kw):
    base = dict(arch="mernet_cbam", classes=list(mer.CLASSES), input_size=(96, 96), input_mode="gray",
                trained_on="random init", protocol="none", training_command="pytest")
    return ModelCard(**{**base, **kw})


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    m = mer.create_model("mernet_cbam").eval()
    path = save_checkpoint(m, card(metrics={"uf1": 0.5}), tmp_path / "m.safetensors")
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    m2, c2 = load_checkpoint(path)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert c2.classes == list(mer.CLASSES) and c2.metrics == {"uf1": 0.5}
    assert c2.input_size == (96, 96) and "torch" in c2.versions
    saved = json.loads(path.with_suffix(".json").read_text())
    for key in ("arch", "arch_kwargs", "classes", "input_size", "input_mode", "mean", "std",
                "trained_on", "protocol", "metrics", "training_command", "versions"):
        assert key in saved


def test_card_embedded_in_safetensors_is_enough(tmp_path):
    path = save_checkpoint(mer.create_model("mernet"), card(arch="mernet"), tmp_path / "m.safetensors")
    path.with_suffix(".json").unlink()
    _, c = load_checkpoint(path)
    assert c.arch == "mernet"


def test_wrong_shapes_and_bad_cards_say_exactly_what_is_wrong(tmp_path):
    path = save_checkpoint(mer.create_model("mernet_cbam"), card(), tmp_path / "m.safetensors")
    cj = path.with_suffix(".json")
    good = json.loads(cj.read_text())
    cj.write_text(json.dumps({**good, "classes": ["a", "b", "c"]}))
    with pytest.raises(CheckpointError, match="shape mismatch.*head"):
        load_checkpoint(path)
    cj.write_text(json.dumps({**good, "arch": "mernet"}))
    with pytest.raises(CheckpointError, match="unexpected tensor"):
        load_checkpoint(path)
    cj.write_text(json.dumps({**good, "arch": "resnet999"}))
    with pytest.raises(CheckpointError, match="unknown arch 'resnet999'"):
        load_checkpoint(path)
    cj.write_text(json.dumps({**good, "input_mode": "infrared"}))
    with pytest.raises(CheckpointError, match="input_mode"):
        load_checkpoint(path)
    cj.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    cj.write_text(json.dumps({"classes": ["a", "b"]}))
    with pytest.raises(CheckpointError, match="arch"):
        load_checkpoint(path)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(tmp_path / "bad.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.safetensors")


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"weights": Exploit(marker)}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil, card=card())
    assert not marker.exists()
    # and the same payload inside a torch.save zip archive
    torch.save({"state_dict": Exploit(marker)}, tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil2.pth", card=card())
    assert not marker.exists()


def test_plain_state_dict_pt_loads_with_weights_only(tmp_path):
    m = mer.create_model("mernet_cbam")
    torch.save(m.state_dict(), tmp_path / "w.pt")
    m2, c = load_checkpoint(tmp_path / "w.pt", card=card())
    assert c.arch == "mernet_cbam"
    with pytest.raises(CheckpointError, match="no model card"):
        load_checkpoint(tmp_path / "w.pt")
