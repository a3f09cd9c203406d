"""Face mesh + blendshapes (MediaPipe Face Landmarker's networks ported to PyTorch) and the AU proxies:
exact against the TFLite models' own outputs (tests/data/face_landmarker_reference.npz, made by
bench/aus_agreement.py reference-outputs with the LiteRT interpreter), right on real photos."""
from __future__ import annotations

import numpy as np
import pandas as pd
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
    n = torch.get_num_threads()
    try:
        for threads in {n, 1}:  # one thread: mer.video's mesh thread (the first stages face by face)
            torch.set_num_threads(threads)
            m = compare_reference(landmarker.model, REFERENCE)
            assert m["port_max_abs_dlandmark_normalised"] <= 1e-3
            assert m["port_max_abs_dblendshape"] <= 1e-3
            assert m["port_max_abs_dpresence_logit"] <= 1e-2
    finally:
        torch.set_num_threads(n)


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


def test_cpu_mesh_runs_in_small_batches_with_the_same_results(media, detector, landmarker):
    """A chunk's faces go through the mesh net CPU_BATCH at a time on the CPU (a 64-face pass spent
    more CPU time on page faults than on the net: docs/aus.md, Speed); the split changes nothing."""
    from mer.images import read_image
    from mer.landmarker import CPU_BATCH
    img = read_image(media / "single_face.jpg")
    face = detector.detect([img])[0][0]
    sizes = []
    hook = landmarker.model.mesh.register_forward_hook(lambda m, i, o: sizes.append(len(i[0])))
    try:
        out = landmarker.run([img] * 20, [face] * 20)
    finally:
        hook.remove()
    assert landmarker.batch_size == CPU_BATCH <= 16 and max(sizes) == CPU_BATCH and sum(sizes) == 20
    whole = Landmarker(device="cpu", batch_size=64)
    whole.model = landmarker.model
    ref = whole.run([img] * 20, [face] * 20)
    for a, b in zip(out, ref):
        assert np.abs(a.landmarks - b.landmarks).max() < 1e-3 and np.abs(a.blendshapes - b.blendshapes).max() < 1e-5


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


def test_a_small_rise_on_a_quiet_track_is_named_and_noise_alone_is_not():
    """A micro-expression's proxies often rise by only 0.03-0.1 (docs/aus.md): on a quiet track such a
    rise is named; windows of the same track's noise name nothing."""
    rng = np.random.default_rng(1)
    j = AU_NAMES.index("au01")
    for trial in range(20):
        track = 0.1 + rng.normal(0, 0.003, (40, len(AU_NAMES))).astype(np.float32)
        assert interval_labels(track, 30, 38)["aus"] == "", trial
        track[15:25, j] += np.hanning(10) * 0.042
        assert interval_labels(track, 14, 20)["aus"] == "AU1", trial


def test_one_noisy_onset_frame_neither_hides_nor_makes_a_rise():
    """An interval's onset level is the median of the proxies over the BASELINE_S seconds up to its
    onset row, not that one row: a single frame that happens to be high at the onset does not hide
    the rise after it, and one that happens to be low does not turn noise into a rise."""
    from mer.aus import BASELINE_S
    rng = np.random.default_rng(2)
    j = AU_NAMES.index("au04")
    times = np.arange(40) / 30.0
    assert BASELINE_S >= 2 / 30  # at least the two frames before the onset at 30 fps
    for trial in range(20):
        track = 0.1 + rng.normal(0, 0.002, (40, len(AU_NAMES))).astype(np.float32)
        track[15:25, j] += np.hanning(10) * 0.06
        track[14, j] += 0.045                   # a high onset frame: the rise over it is only ~0.013
        assert interval_labels(track, 14, 20, times=times)["aus"] == "AU4", trial
        quiet = 0.1 + rng.normal(0, 0.002, (40, len(AU_NAMES))).astype(np.float32)
        quiet[30, j] -= 0.04                    # a low onset frame before a still stretch
        assert interval_labels(quiet, 30, 36, times=times)["aus"] == "", trial


@pytest.fixture(scope="module")
def au12_clip(media, detector, tmp_path_factory):
    """3 s of neutral.jpeg (training.synth_long) with one planted micro-expression: AU1+AU2+AU12,
    5 px at apex, 0.4 s (the brows make the motion spotter fire; the AU proxies must name AU12)."""
    from training.synth_long import Event, LongConfig, load_faces, render_video
    face = load_faces(media / "neutral.jpeg", detector)[0]
    ev = [Event("micro", 1.0, 1.4, 1.2, 5.0, "Happiness", (1, 2, 12))]
    return render_video(tmp_path_factory.mktemp("au") / "au12.mp4", face, ev, LongConfig(seconds=3.0, fps=30.0),
                        np.random.default_rng(1))


def test_video_rows_and_intervals_carry_aus(au12_clip, tmp_path):
    from mer.aus import mesh_columns
    from mer.predict import Predictor
    from mer.report import write_video_report
    from mer.video import VideoSettings, analyze_video
    res = analyze_video(au12_clip, Predictor(device="cpu"), VideoSettings(detect_every=3, landmarks=True))
    paths = write_video_report(res, tmp_path, "au12")
    frames = pd.read_csv(paths["frames"])
    cols = mesh_columns()
    assert len(cols) == 2 + 52 + 3 + 16 and set(cols) <= set(frames.columns)
    assert {"mesh_presence", "bs_mouthSmileLeft", "yaw", "pitch", "roll", "au01", "au12", "au45"} <= set(frames.columns)
    face_rows = frames[frames["face_id"].notna()]
    assert (face_rows["mesh_presence"] >= 0.5).all() and frames.loc[frames["face_id"].isna(), "mesh_presence"].isna().all()
    # the default meshes every second frame (and each chunk's last) and says which rows are interpolated
    assert set(face_rows["mesh_interpolated"]) == {0, 1}
    assert (face_rows.loc[face_rows["frame"] % 2 == 0, "mesh_interpolated"] == 0).all()
    assert face_rows["au12"].notna().all() and face_rows["au12"].max() > face_rows["au12"].median() + 0.15
    iv = pd.read_csv(paths["intervals"], keep_default_na=False)
    assert {"aus", "objective_class", "emotion"} <= set(iv.columns)
    from mer.spotting import iou
    planted = [i for i, r in iv.iterrows() if r["type"] == "micro" and iou(r["onset_s"], r["offset_s"], 1.0, 1.4) >= 0.5]
    assert len(planted) == 1, iv  # the planted micro-expression is spotted (MEGC IoU >= 0.5)
    r = iv.loc[planted[0]]
    assert "AU12" in r["aus"].split("+") and r["objective_class"] in ("I", "II", "V", "VI", "VII")
    assert r["emotion"] in ("Happiness", "Surprise", "Sadness", "Fear", "Others")
    # by default a micro interval whose AUs rose is classified by them (micro_by="aus")
    assert r["recognized_by"] == "aus" and r["class"] == r["emotion"]
    lm = np.load(paths["landmarks"])
    assert lm["landmarks"].shape == (len(face_rows), 478, 3) and len(lm["frame"]) == len(face_rows)
    assert np.allclose(np.sort(lm["presence"]), np.sort(face_rows["mesh_presence"]), atol=1e-3)
    assert lm["interpolated"].sum() == face_rows["mesh_interpolated"].sum()
    assert "AU proxies over time" in paths["html"].read_text()


def test_mesh_every_second_frame_interpolates_between_its_own_meshes(au12_clip):
    """mesh_every=2: the mesh runs on about half the face rows (even frames and each chunk's last),
    the rows between get values between their neighbours', close to their own, and the planted
    AU12 micro-expression is still labelled AU12."""
    import dataclasses
    from mer.aus import mesh_columns
    from mer.predict import Predictor
    from mer.video import VideoSettings, analyze_video
    p = Predictor(device="cpu")
    crops = []
    hook = p.landmarker.model.mesh.register_forward_hook(lambda m, i, o: crops.append(len(i[0])))
    s = VideoSettings(detect_every=3, chunk_size=16, mesh_every=1)
    try:
        full = analyze_video(au12_clip, p, s)
        n_full, crops[:] = sum(crops), []
        half = analyze_video(au12_clip, p, dataclasses.replace(s, mesh_every=2))
        n_half = sum(crops)
    finally:
        hook.remove()
    a, b = (r.frames[r.frames["face_id"].notna()].set_index("frame") for r in (full, half))
    assert n_full == len(a) and n_half <= 0.7 * len(a)  # half, and each group's last frame
    assert (a["mesh_interpolated"] == 0).all() and (b["mesh_interpolated"] == 0).sum() == n_half  # the rows say which
    cols = [c for c in mesh_columns() if c.startswith(("bs_", "au"))]
    assert b[cols].notna().all().all()
    even = b.index[b.index % 2 == 0]
    assert np.abs(b.loc[even, cols] - a.loc[even, cols]).max().max() < 1e-3  # meshed: the same values
    # the rows that differ from the every-frame run are interpolated: odd frames, between their neighbours
    moved = [f for f in b.index if np.abs(b.loc[f, cols] - a.loc[f, cols]).max() > 1e-3]
    assert len(moved) >= len(b) // 4 and all(f % 2 for f in moved) and (b.loc[moved, "mesh_interpolated"] == 1).all()
    lo = np.minimum(b.loc[[f - 1 for f in moved], cols].to_numpy(), b.loc[[f + 1 for f in moved], cols].to_numpy())
    hi = np.maximum(b.loc[[f - 1 for f in moved], cols].to_numpy(), b.loc[[f + 1 for f in moved], cols].to_numpy())
    v = b.loc[moved, cols].to_numpy()
    assert ((v >= lo - 2e-4) & (v <= hi + 2e-4)).all()
    assert np.median(np.abs(v - a.loc[moved, cols].to_numpy())) < 0.02  # and close to their own mesh
    iv = half.intervals
    assert any("AU12" in str(x).split("+") for x in iv.loc[iv["type"] == "micro", "aus"])


def test_mesh_every_weights_by_real_time(media, detector, landmarker):
    """A frame between two meshed ones gets the mesh weighted by its timestamp (variable frame
    rate), here 0.9 of the way from a smiling face to a neutral one."""
    from mer.images import read_image
    from mer.landmarker import MeshStage
    from mer.video import FaceRecord, FrameRecord
    smile, neutral = read_image(media / "obama.jpg"), read_image(media / "neutral.jpeg")
    fs, fn = detector.detect([smile])[0][0], detector.detect([neutral])[0][0]
    frames = [FrameRecord(i, t, t + 0.05, img, faces=[FaceRecord(0, f, True)])
              for i, (t, img, f) in enumerate(((0.0, smile, fs), (0.9, smile, fs), (1.0, neutral, fn)))]
    MeshStage(landmarker, every=2)(frames)
    a, m, b = (f.faces[0].mesh.blendshapes for f in frames)
    assert np.abs(a - b).max() > 0.3  # the two meshed faces differ (the smile)
    assert np.allclose(m, 0.1 * a + 0.9 * b, atol=1e-5)


def test_video_mesh_runs_beside_detection_with_its_own_threads(au12_clip):
    """The mesh runs on the scoring thread (beside the next chunk's detection) with half the torch
    threads on the CPU; the caller's torch threads, and those a new thread starts with, stay."""
    import threading
    from mer.predict import Predictor
    from mer.video import VideoSettings, analyze_video
    p = Predictor(device="cpu")
    n = torch.get_num_threads()
    seen = []
    hook = p.landmarker.model.mesh.register_forward_hook(
        lambda m, i, o: seen.append((threading.current_thread().name, torch.get_num_threads())))
    try:
        res = analyze_video(au12_clip, p, VideoSettings(detect_every=3, chunk_size=16))
    finally:
        hook.remove()
    assert res.frames["au12"].notna().any() and seen
    assert {name.split("_")[0] for name, _ in seen} == {"mer-score"}, seen
    assert {k for _, k in seen} == {max(1, n // 2)}
    fresh = []
    t = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert torch.get_num_threads() == n and fresh == [n]


def test_cli_json_has_blendshapes_aus_and_pose(media):
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "mer", "predict", str(media / "obama.jpg"), "--json",
                          "--device", "cpu"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout.splitlines()[0])
    assert len(d["blendshapes"]) == 52 and set(d["aus"]) == set(AU_NAMES) and set(d["pose"]) == {"yaw", "pitch", "roll"}
    assert d["aus"]["au12"] >= 0.5 and d["mesh_presence"] >= 0.5


def test_mesh_reports_no_aus_for_what_is_not_a_face(media):
    """A box MTCNN might put on something that is not a face (here: squares of a photo without
    faces, with eye points where eyes would be): the mesh's presence is under MIN_PRESENCE, so the
    prediction carries that presence and no blendshapes, pose or AU proxies; a real face keeps them."""
    from mer.aus import mesh_vector
    from mer.faces import Face
    from mer.images import read_image
    from mer.landmarker import MIN_PRESENCE
    from mer.predict import Predictor
    p = Predictor(device="cpu")
    img = read_image(media / "no-faces.jpg")
    h, w = img.shape[:2]
    fakes = []
    for fx, fy, fs in ((0.1, 0.1, 0.3), (0.5, 0.4, 0.25), (0.3, 0.6, 0.2)):
        s = fs * min(h, w)
        x, y = fx * w, fy * h
        pts = np.array([[.3, .4], [.7, .4], [.5, .6], [.35, .8], [.65, .8]], np.float32) * s + [x, y]
        fakes.append(Face(np.array([x, y, x + s, y + s], np.float32), 0.95, pts))
    real = read_image(media / "obama.jpg")
    preds = p.predict_faces([img, real], [fakes, p.detector.detect([real])[0]])
    for fp in preds[0]:
        assert fp.mesh is not None and fp.mesh.presence < MIN_PRESENCE and not fp.mesh.found
        d = fp.to_dict()
        assert d["mesh_presence"] < MIN_PRESENCE and d["blendshapes"] is None and d["aus"] is None and d["pose"] is None
        assert fp.aus == {}
        v = mesh_vector(fp.mesh)
        assert v[0] == pytest.approx(fp.mesh.presence) and v[1] == 0 and np.isnan(v[2:]).all()
    (face,) = preds[1]
    assert face.mesh.found and face.aus["au12"] >= 0.5 and not np.isnan(mesh_vector(face.mesh)).any()
    from mer.report import au_bars_figure  # the image tab: bars for the real face, a note for the others
    fig = au_bars_figure([preds[1][0], preds[0][0]], p.classes)
    assert len([t for t in fig.data if t.name and t.name.startswith("AU proxies")]) == 1
    assert "face #1: no face to the face mesh" in " ".join(a.text or "" for a in fig.layout.annotations)


def test_synth_warps_move_each_aus_own_feature_only():
    """training.synth_long's AU warps: brows move without the eyes, lids without the brows, lip
    corners without the eyes (FACS), so a face mesh sees the AU (the old broad bumps moved the eyes
    with the brows by 10 % of the brows' displacement)."""
    from training.synth_long import au_field
    lm = np.array([[100, 100], [160, 100], [130, 135], [108, 165], [152, 165]], np.float32)  # eyes, nose, mouth
    d = 60.0

    def at(aus, x, y):
        fx, fy = au_field(lm, aus, 0, 0, 260, 260)
        return float(fx[int(y), int(x)]), float(fy[int(y), int(x)])
    for au in (1, 2, 4):
        brow = max(abs(at((au,), x, 100 - 0.3 * d)[1]) for x in (100 + dx * d for dx in (-0.2, 0, 0.12, 0.2)))
        assert brow > 0.3, (au, brow)
        for ex, ey in lm[:2]:
            assert np.hypot(*at((au,), ex, ey)) < 0.02, au                 # the eyes stay put
    assert at((1,), 100 + 0.12 * d, 100 - 0.32 * d)[1] < -0.9                # inner brow up
    assert at((5,), 100, 100 - 0.08 * d)[1] < -0.5 and abs(at((5,), 100, 100 - 0.3 * d)[1]) < 0.05  # lid, not brow
    fx, fy = at((12,), 108, 165)
    assert fx < -0.5 and fy < -0.5 and np.hypot(*at((12,), 100, 100)) < 0.01  # corners up and out, eyes still
    assert at((15,), 152, 165)[1] > 0.9 and at((26,), 130, 165 + 0.4 * d)[1] > 0.5
