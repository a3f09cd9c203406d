import json
import os
import pickle
from pathlib import Path

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


# --- the card is checked against the weights before anything is built (issue 13, items 2, 3, 9) ---

MICRO_WEIGHTS = mer.MICRO_CHECKPOINT


def micro_with_card(tmp_path, **changes):
    """The shipped micro weights beside an edited copy of their card."""
    import shutil
    dst = tmp_path / "m.safetensors"
    shutil.copyfile(MICRO_WEIGHTS, dst)
    good = json.loads(MICRO_WEIGHTS.with_suffix(".json").read_text())
    dst.with_suffix(".json").write_text(json.dumps({**good, **changes}))
    return dst


MEMORY_PROBE = r"""
import json, resource, sys
import mer
from mer.checkpoint import CheckpointError, load_checkpoint
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# a safety net, so that a regression fails this test instead of taking the machine's memory
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 1536 * 2 ** 20, hard))
before = peak_mb()
out = []
for path in sys.argv[1:]:
    try:
        load_checkpoint(path)
        out.append("loaded")
    except CheckpointError as e:
        out.append("CheckpointError: " + str(e))
    except BaseException as e:
        out.append(type(e).__name__ + ": " + str(e)[:200])
print(json.dumps({"grew_mb": peak_mb() - before, "results": out}))
"""


def test_a_small_card_cannot_make_the_loader_allocate_a_huge_network(tmp_path):
    """2 KB cards describing 0.18 G and 0.9 G values beside 0.3 M values of weights: refused from the
    header, with the process's peak memory growing by less than 100 MB (building either network
    would take 0.7 to 3.7 GB)."""
    import subprocess
    import sys
    paths = []
    for i, widths in enumerate(([1800, 1800, 1800], [4096, 4096, 4096])):
        d = tmp_path / str(i)
        d.mkdir()
        paths.append(micro_with_card(d, arch_kwargs={"input_size": 64, "widths": widths}))
        assert paths[-1].with_suffix(".json").stat().st_size < 4096
    r = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *map(str, paths)], capture_output=True,
                       text=True, timeout=300, cwd=str(Path(mer.__file__).parents[1]))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    assert all(x.startswith("CheckpointError") for x in res["results"]), res
    assert "the file holds" in res["results"][0] and "values" in res["results"][0]
    assert "limit" in res["results"][1]
    assert res["grew_mb"] < 100, res


@pytest.mark.parametrize("changes,message", [
    ({"arch_kwargs": {"input_size": 64, "bogus": 1}}, "bogus"),
    ({"mean": 5}, "mean must be a list"),
    ({"std": ["wide", "wide", "wide"]}, "std must be a list"),
    ({"mean": [0.5, 0.5]}, "mean needs 3 values"),
    ({"input_size": "64"}, "input_size must be"),
    ({"input_size": [64, 64.5]}, "input_size must be"),
    ({"in_chans": "3"}, "in_chans"),
    ({"classes": 6}, "classes must be"),
    ({"arch": ["mernet"]}, "unknown arch"),
    ({"crop_margin": "wide"}, "crop_margin"),
    ({"arch_kwargs": {"input_size": 64, "widths": {"a": 1}}}, "widths"),
    ({"arch_kwargs": {"input_size": 64, "widths": [10 ** 9]}}, "limit"),
    ({"metrics": [1, 2]}, "metrics must be an object"),
    ({"mean": [float("nan")] * 3}, "mean must be a list"),
    ({"in_chans": 10 ** 400}, "in_chans"),
])
def test_card_values_of_the_wrong_type_are_checkpoint_errors(tmp_path, changes, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(micro_with_card(tmp_path, **changes))


@pytest.mark.parametrize("changes,message", [
    ({"input_size": [32, 32]}, r"input_size 32x32 contradicts the network \(mernet_cbam built for 64x64"),
    ({"input_size": [96, 96]}, "input_size 96x96 contradicts"),
    ({"input_size": [48, 48], "arch_kwargs": {}}, "below mernet_cbam's minimum 64x64"),
])
def test_input_size_is_checked_against_the_network(tmp_path, changes, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(micro_with_card(tmp_path, **changes))


def test_bad_card_through_the_cli_is_exit_2_without_traceback(tmp_path):
    import subprocess
    import sys
    from PIL import Image
    Image.new("RGB", (80, 80)).save(tmp_path / "x.png")
    ck = micro_with_card(tmp_path, arch_kwargs={"bogus": 1})
    r = subprocess.run([sys.executable, "-m", "mer", "predict", str(tmp_path / "x.png"), "--checkpoint", str(ck)],
                       capture_output=True, text=True, timeout=120, cwd=str(Path(mer.__file__).parents[1]))
    assert r.returncode == 2 and "bogus" in r.stderr and "Traceback" not in r.stderr


def test_wrong_dtypes_in_the_header_are_refused(tmp_path):
    from safetensors.torch import save_file
    m = mer.create_model("mernet")
    save_file({k: v.to(torch.int32) if v.is_floating_point() else v for k, v in m.state_dict().items()},
              str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError, match="unusable type.*I32"):
        load_checkpoint(tmp_path / "m.safetensors", card=card(arch="mernet", input_size=(128, 128)))


def test_a_card_left_beside_other_weights_is_refused(tmp_path):
    """A crash between the two writes of save_checkpoint leaves new weights beside the old card
    (reproduced by saving elsewhere and moving the weights only): refused, never paired silently."""
    import shutil
    torch.manual_seed(0)
    old = save_checkpoint(mer.create_model("mernet"), card(arch="mernet", input_size=(128, 128),
                                                           trained_on="run A"), tmp_path / "m.safetensors")
    torch.manual_seed(1)
    (tmp_path / "new").mkdir()
    new = save_checkpoint(mer.create_model("mernet"), card(arch="mernet", input_size=(128, 128),
                                                           trained_on="run B"), tmp_path / "new" / "m.safetensors")
    shutil.copyfile(new, old)  # the weights were replaced, the card was not
    with pytest.raises(CheckpointError, match="saved with other weights"):
        load_checkpoint(old)
    old.with_suffix(".json").unlink()  # the message's advice: the embedded card is always right
    assert load_checkpoint(old)[1].trained_on == "run B"


def test_a_hand_edited_card_still_loads(tmp_path):
    """Editing the card's text or class names keeps it paired with its weights."""
    path = save_checkpoint(mer.create_model("mernet"), card(arch="mernet", input_size=(128, 128)),
                           tmp_path / "m.safetensors")
    cj = path.with_suffix(".json")
    edited = {**json.loads(cj.read_text()), "notes": "mine", "classes": list("abcdef")}
    cj.write_text(json.dumps(edited))
    _, c = load_checkpoint(path)
    assert c.notes == "mine" and c.classes == list("abcdef")


def test_oversized_card_files_are_refused_unread(tmp_path):
    path = micro_with_card(tmp_path)
    path.with_suffix(".json").write_text(" " * (2 ** 20 + 1) + "{}")
    with pytest.raises(CheckpointError, match="cards are a few KB"):
        load_checkpoint(path)


def test_bad_card_in_the_batch_tool_is_a_configuration_error(tmp_path):
    """batch documents exit 2 for configuration errors; a card of the wrong type was exit 1."""
    import subprocess
    import sys
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "clip.mp4").write_bytes(b"not analysed: the card is refused first")
    ck = micro_with_card(tmp_path, mean=5)
    r = subprocess.run([sys.executable, "-m", "batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                        "--checkpoint", str(ck)], capture_output=True, text=True, timeout=120,
                       cwd=str(Path(mer.__file__).parents[1]))
    assert r.returncode == 2 and "mean must be a list" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
