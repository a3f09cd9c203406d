"""mer.video / tracking / spotting / report on real clips (real decord, real MTCNN, real model)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer.faces import Face
from mer.spotting import SpotConfig, spot
from mer.tracking import IoUTracker, interpolate, iou


@pytest.fixture(scope="module")
def predictor(untrained_checkpoint):
    from mer.predict import Predictor
    return Predictor(untrained_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def two_face_clip(tmp_path_factory, media):
    from batch.synth import make_face_clip
    return make_face_clip(tmp_path_factory.mktemp("clip") / "two.mp4",
                          [media / "single_face.jpg", media / "obama.jpg"], seconds=2.0, fps=25)


def test_iou_and_tracker_keep_ids():
    assert iou([0, 0, 10, 10], [5, 0, 15, 10])[0, 0] == pytest.approx(50 / 150)
    f = lambda x: Face(np.array([x, 0, x + 10, 10], float), 0.99, np.zeros((5, 2)))  # noqa: E731
    t = IoUTracker()
    assert t.update([f(0), f(100)]) == [0, 1]
    assert t.update([f(101), f(1)]) == [1, 0]           # order of detections does not matter
    assert t.update([f(300)]) == [2]                     # a new face gets a new id
    mid = interpolate({0: f(0)}, {0: f(10), 5: f(50)}, 0.5)
    assert mid[0].box[0] == pytest.approx(5) and 5 in mid  # face only on b appears from t >= 0.5


def test_spot_finds_a_short_bump_and_rejects_a_long_one():
    n, fps = 150, 25.0
    t = np.arange(n) / fps
    score = np.full(n, 0.01) + 0.001 * np.sin(np.arange(n))
    score[40:45] = 0.2                                   # 0.2 s: a micro-expression
    score[70:95] = 0.25                                  # 1.0 s: a macro-expression, over 1/2 s
    out = spot(np.arange(n), t, t + 1 / fps, score, 3, SpotConfig(pad_s=0, smooth_s=0))
    assert [(o["type"], o["onset_frame"], o["offset_frame"]) for o in out] == [("micro", 40, 44), ("macro", 70, 94)]
    assert out[0]["face_id"] == 3 and 40 <= out[0]["apex_frame"] <= 44
    assert spot(np.arange(n), t, t, np.zeros(n), 0) == []   # flat: nothing


def test_analyze_single_face_clip(media, predictor):
    from mer.video import analyze_video
    calls = []
    r = analyze_video(media / "single_face.mp4", predictor, progress=lambda d, n: calls.append((d, n)))
    df = r.frames
    assert len(df) == r.info["n_frames"] == 72 and df["frame"].tolist() == list(range(72))
    assert df["face_id"].dropna().unique().tolist() == [0]
    assert np.all(np.diff(df["time_s"]) > 0) and r.info["fps"] == pytest.approx(30, rel=1e-3)
    assert calls[0] == (0, 72) and calls[-1] == (72, 72)
    pcols = [f"p_{c}" for c in predictor.classes]
    assert np.allclose(df[pcols].sum(axis=1), 1, atol=1e-4)
    assert (df["top_class"] == df[pcols].idxmax(axis=1).str[2:]).all()
    assert set(r.intervals.columns) >= {"onset_frame", "apex_frame", "offset_frame", "class", "score"}
    assert r.thumbnails and r.thumbnails[0][2].shape == (128, 128, 3)


def test_no_face_clip_keeps_every_decoded_frame(media, predictor):
    from mer.video import analyze_video
    r = analyze_video(media / "no_face.mp4", predictor)
    df = r.frames
    assert len(df) == 98 and df["face_id"].isna().all() and df["x1"].isna().all()
    assert (df["time_s"].iloc[:3] < 0).all()            # decoder's negative start times are kept
    assert r.info["n_faces"] == 0 and len(r.intervals) == 0 and r.thumbnails == []


def test_two_faces_every_n_frames_with_tracking(two_face_clip, predictor):
    from mer.video import VideoSettings, analyze_video
    full = analyze_video(two_face_clip, predictor, VideoSettings(detect_every=1))
    sparse = analyze_video(two_face_clip, predictor, VideoSettings(detect_every=4, chunk_size=10))
    for r in (full, sparse):
        assert len(r.frames) == 2 * 50 and r.frames.groupby("face_id").size().to_dict() == {0: 50, 1: 50}
    # face 0 is the left one in every frame
    left = sparse.frames[sparse.frames["face_id"] == 0]["x1"].to_numpy()
    right = sparse.frames[sparse.frames["face_id"] == 1]["x1"].to_numpy()
    assert (left < 320).all() and (right >= 320).all()
    det = sparse.frames.groupby("frame")["detected"].first()
    assert det[det == 1].index.tolist() == [*range(0, 50, 4), 49]   # detection only on keyframes
    gap = np.abs(sparse.frames["x1"].to_numpy() - full.frames["x1"].to_numpy())
    assert np.median(gap) < 4                              # interpolated boxes stay on the faces


def test_bad_videos_raise_clear_errors(tmp_path, media, predictor):
    from mer.video import VideoError, VideoSettings, analyze_video
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("just text")
    with pytest.raises(VideoError, match="empty file"):
        analyze_video(tmp_path / "zero.mp4", predictor)
    with pytest.raises(VideoError, match="not a readable video"):
        analyze_video(tmp_path / "text.mp4", predictor)
    with pytest.raises(VideoError, match="over the limit of 10"):
        analyze_video(media / "single_face.mp4", predictor, VideoSettings(max_frames=10))


def test_reports_escape_atomic_deterministic(tmp_path, media, predictor):
    from mer import report
    from mer.video import analyze_video
    r = analyze_video(media / "single_face.mp4", predictor, name="=HYPERLINK(1)")
    a = report.write_video_report(r, tmp_path / "a", "clip")
    b = report.write_video_report(r, tmp_path / "b", "clip", plotlyjs="../plotly.min.js")
    for k in ("frames", "intervals"):
        assert a[k].read_bytes() == b[k].read_bytes()
    df = pd.read_csv(a["frames"])
    assert len(df) == 72 and (df["video"] == "'=HYPERLINK(1)").all()
    page = a["html"].read_text()
    assert "Plotly.newPlot" in page and 'id="timeline"' in page and "data:image/png;base64," in page
    assert len(page) > 1_000_000 and '<script src="' not in page                    # plotly.js inline
    assert '<script src="../plotly.min.js">' in b["html"].read_text()
    again = report.write_video_report(r, tmp_path / "a", "clip")
    assert again["html"].read_bytes() == page.encode()                               # deterministic
    assert not list(tmp_path.rglob("*.mer-tmp"))


def test_one_frame_video(tmp_path, media, predictor):
    from batch.synth import make_face_clip
    from mer.video import analyze_video
    clip = make_face_clip(tmp_path / "one.mp4", [media / "single_face.jpg"], seconds=0.04, fps=25)
    r = analyze_video(clip, predictor)
    assert r.info["n_frames"] == 1 and len(r.frames) == 1 and r.frames["face_id"].tolist() == [0]
    assert len(r.intervals) == 0 and r.frames["motion"].tolist() == [0.0]
