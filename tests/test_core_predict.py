import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import mer
from mer.checkpoint import CheckpointError
from mer.predict import Predictor

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor(untrained_checkpoint, detector):
    return Predictor(untrained_checkpoint, device="cpu", detector=detector)


def test_predictor_returns_one_result_per_face_with_all_classes(predictor, media):
    preds = predictor.predict(media / "multi_face.jpg")
    assert len(preds) == 5
    for p in preds:
        assert list(p.probs) == list(mer.CLASSES)
        assert abs(sum(p.probs.values()) - 1) < 1e-5
        assert p.top_class == max(p.probs, key=p.probs.get) and p.top_prob == max(p.probs.values())
        assert p.crop.shape == (128, 128, 3) and p.heatmap is None
        d = p.to_dict()
        assert set(d) >= {"box", "det_prob", "landmarks", "probs", "top_class", "top_prob"}
    assert predictor.predict(media / "no-faces.jpg") == []


def test_softmax_is_applied_exactly_once(predictor, media):
    p = predictor.predict(media / "single_face.jpg")[0]
    x = predictor.preprocess([p.crop])
    with torch.no_grad():
        logits = predictor.model(x)
    once = torch.softmax(logits, 1)[0].numpy()
    twice = torch.softmax(torch.softmax(logits, 1), 1)[0].numpy()
    got = np.array(list(p.probs.values()))
    assert np.allclose(got, once, atol=1e-5)
    assert not np.allclose(got, twice, atol=1e-4)


def test_gradcam_through_the_predictor(predictor, media):
    preds = predictor.predict(media / "two_people.jpg", gradcam=True)
    assert len(preds) == 2
    for p in preds:
        assert p.heatmap.shape == (128, 128) and 0 <= p.heatmap.min() and p.heatmap.max() <= 1
    from mer.render import draw_predictions
    img = mer.read_image(media / "two_people.jpg")
    out = draw_predictions(img, preds, gradcam=True)
    assert out.shape == img.shape and (out != img).any()


def test_batched_classification_matches_one_by_one(predictor, media):
    img = mer.read_image(media / "multi_face.jpg")
    faces = predictor.detector.detect(img)[0]
    crops = [predictor.crop(img, f) for f in faces]
    together, _ = predictor.classify(crops)
    alone = np.concatenate([predictor.classify([c])[0] for c in crops])
    assert np.allclose(together, alone, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_predictor_on_cuda(untrained_checkpoint, media):
    p = Predictor(untrained_checkpoint, device="cuda")
    assert p.device.type == "cuda"
    assert len(p.predict(media / "multi_face.jpg", gradcam=True)) == 5


def test_device_setting_and_env_override(untrained_checkpoint, monkeypatch):
    monkeypatch.setenv("MER_DEVICE", "cpu")
    assert Predictor(untrained_checkpoint).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            Predictor(untrained_checkpoint, device="cuda")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Predictor(tmp_path / "nope.safetensors", device="cpu")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mer", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_prints_one_json_object_per_face_and_writes_gradcam(untrained_checkpoint, media, tmp_path):
    out = tmp_path / "cam.png"
    r = run_cli("predict", media / "two_people.jpg", "--checkpoint", untrained_checkpoint, "--json",
                "--gradcam", out)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2 and all(set(mer.CLASSES) == set(row["probs"]) for row in rows)
    assert mer.read_image(out).shape == mer.read_image(media / "two_people.jpg").shape


def test_cli_errors_are_clear(untrained_checkpoint, tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    r = run_cli("predict", tmp_path / "z.jpg", "--checkpoint", untrained_checkpoint)
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("predict", tmp_path / "z.jpg", "--checkpoint", tmp_path / "missing.safetensors")
    assert r.returncode == 2 and "no such checkpoint" in r.stderr
