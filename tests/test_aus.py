"""Face mesh + blendshapes (MediaPipe Face Landmarker's networks ported to PyTorch) and the AU proxies:
exact against the TFLite models' own outputs (tests/data/face_landmarker_reference.npz, made by
bench/aus_agreement.py reference-outputs with the LiteRT interpreter), right on real photos."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mer.aus import (AU_NAMES, aus_from_blendshapes, emotion_from_aus, format_aus, interval_labels,
                     objective_class)
from mer.convert_landmarker import compare_reference
from mer.landmarker import DEFAULT_LANDMARKER, Landmarker
from mer.models.facemesh import BLENDSHAPE_NAMES

from conftest import ROOT

REFERENCE = ROOT / "tests" / "data" / "face_landmarker_reference.npz"


@pytest.fixture(scope="module")
def landmarker() -> Landmarker:
    return Landmarker(device="cpu")


def test_port_matches_the_tflite_models(landmarker):
    with np.load(REFERENCE) as z:
        assert len(z["crops"]) >= 4 and len(z["bs_input"]) >= 10
        assert z["landmarks"].shape == (len(z["crops"]), 478, 3)
    m = compare_reference(landmarker.model, REFERENCE)
    assert m["port_max_abs_dlandmark_normalised"] <= 1e-3
    assert m["port_max_abs_dblendshape"] <= 1e-3
    assert m["port_max_abs_dpresence_logit"] <= 1e-2


def test_card_says_where_the_weights_come_from(landmarker):
    card = landmarker.card
    assert DEFAULT_LANDMARKER.is_file() and card.arch == "face_landmarker"
    assert tuple(card.classes) == BLENDSHAPE_NAMES and card.input_size == (256, 256)
    assert "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff" in card.source
    assert "Apache-2.0" in card.license and "NOTICE" in card.license
    assert card.metrics["port_max_abs_dblendshape"] <= 1e-3


@pytest.fixture(scope="module")
def photo_aus(media, detector, landmarker):
    from mer.images import read_image
    out = {}
    for name in ("justin.jpg", "single_face.jpg", "obama.jpg", "neutral.jpeg", "happy-baby.jpeg", "sad-baby.jpeg"):
        img = read_image(media / name)
        face = detector.detect([img])[0][0]
        r = landmarker.run([img], [face])[0]
        assert r.landmarks.shape == (478, 3) and r.presence > 0.9 and r.blendshapes.shape == (52,)
        out[name] = (aus_from_blendshapes(r.blendshapes), r)
    return out


def test_au12_on_real_smiles_and_a_neutral_face(photo_aus):
    for name in ("justin.jpg", "single_face.jpg", "obama.jpg"):
        assert photo_aus[name][0]["au12"] >= 0.5, name
    neutral = photo_aus["neutral.jpeg"][0]
    assert neutral["au12"] < 0.3
    assert photo_aus["happy-baby.jpeg"][0]["au12"] > neutral["au12"]
    sad = photo_aus["sad-baby.jpeg"][0]
    assert sad["au15"] > neutral["au15"] or sad["au01"] > neutral["au01"]


def test_head_pose_of_frontal_photos_is_small(photo_aus):
    for name in ("neutral.jpeg", "justin.jpg"):
        yaw, pitch, roll = photo_aus[name][1].pose
        assert abs(yaw) < 25 and abs(roll) < 25, (name, yaw, pitch, roll)


def test_landmarks_lie_on_the_face(photo_aus, media, detector):
    from mer.images import read_image
    img = read_image(media / "justin.jpg")
    face = detector.detect([img])[0][0]
    lm = photo_aus["justin.jpg"][1].landmarks
    eye_mid = face.landmarks[:2].mean(0)
    mesh_eyes = (lm[33, :2] + lm[263, :2]) / 2
    assert np.linalg.norm(eye_mid - mesh_eyes) < 0.15 * (face.box[2] - face.box[0])


def test_batched_faces_give_the_same_results_as_one_at_a_time(media, detector, landmarker):
    from mer.images import read_image
    img = read_image(media / "two_people.jpg")
    faces = detector.detect([img])[0]
    assert len(faces) >= 2
    together = landmarker.run([img] * len(faces), faces)
    for f, t in zip(faces, together):
        alone = landmarker.run([img], [f])[0]
        assert np.abs(alone.blendshapes - t.blendshapes).max() < 1e-4


def test_objective_classes_and_emotions():
    assert objective_class({"au06", "au12"}) == "I" and emotion_from_aus({"au12"}) == "Happiness"
    assert objective_class({"au01", "au02"}) == "II"
    assert objective_class({"au01", "au02", "au04"}) == "VI"
    assert objective_class({"au04", "au07"}) == "III"
    assert objective_class({"au09"}) == "IV" and objective_class({"au15"}) == "V"
    assert objective_class(set()) == "VII" and emotion_from_aus({"au45"}) == "Others"
    assert format_aus(["au12", "au06"]) == "AU6+AU12"


def test_interval_labels_pick_the_au_that_rose():
    rng = np.random.default_rng(0)
    track = 0.1 + rng.normal(0, 0.005, (40, len(AU_NAMES))).astype(np.float32)
    j = AU_NAMES.index("au12")
    track[15:25, j] += np.hanning(10) * 0.3
    lab = interval_labels(track, 14, 20)
    assert lab["aus"] == "AU12" and lab["objective_class"] == "I" and lab["emotion"] == "Happiness"
    assert interval_labels(track, 30, 38)["aus"] == ""
