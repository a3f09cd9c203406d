"""mer.live: the webcam tab's per-frame logic, fed with the frames of real clips (decord) at their
real timestamps (a test machine has no camera). The app's endpoints are tested in test_app.py."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def predictor():
    from mer.predict import Predictor
    return Predictor(device="cpu")


def clip_frames(path, n, step=1):
    import decord
    vr = decord.VideoReader(str(path), num_threads=1)
    idx = list(range(0, min(len(vr), n * step), step))
    ts = vr.get_frame_timestamp(idx)[:, 0]
    return vr.get_batch(idx).asnumpy(), ts


def test_real_clip_gives_one_tracked_face_with_motion(media, predictor):
    from mer.live import LiveConfig, LiveSession
    frames, ts = clip_frames(media / "single_face.mp4", 16, step=2)   # 15 fps, 1 s
    cfg = LiveConfig(window_s=0.5)
    live = LiveSession(cfg)
    outs = [live.step(f, predictor, t=t) for f, t in zip(frames, ts)]
    assert [o.index for o in outs] == list(range(len(frames)))
    assert all(len(o.faces) == 1 and o.faces[0].face_id == 0 for o in outs), [len(o.faces) for o in outs]
    motion = np.array([o.faces[0].motion for o in outs])
    assert motion[0] == 0 and (motion[1:] > 0).all()            # a talking face moves
    t = np.array([o.t for o in outs])
    assert np.allclose(t, ts - ts[0], atol=1e-6)
    for k, o in enumerate(outs):                                  # rolling = mean over window_s
        inside = (t <= t[k]) & (t >= t[k] - cfg.window_s)
        assert o.faces[0].rolling == pytest.approx(motion[inside].mean(), abs=1e-6)
        p = o.faces[0].prediction
        assert abs(sum(p.probs.values()) - 1) < 1e-4 and p.top_class in predictor.classes
    d = outs[-1].to_dict()
    assert d["n_faces"] == 1 and d["faces"][0]["face_id"] == 0 and "motion_rolling" in d["faces"][0]
    assert outs[-1].image.shape == frames[-1].shape and not (outs[-1].image == frames[-1]).all()


def test_still_face_has_zero_motion_and_a_pause_restarts_the_tracks(media, predictor):
    from mer.live import LiveSession
    frames, _ = clip_frames(media / "single_face.mp4", 1)
    live = LiveSession()
    outs = [live.step(frames[0], predictor, t=k * 0.25) for k in range(5)]
    assert [o.faces[0].motion for o in outs] == [0.0] * 5 and outs[-1].faces[0].rolling == 0
    after = live.step(frames[0], predictor, t=30.0)              # a pause over max_gap_s: a new start
    assert after.t == 0 and after.faces[0].face_id == 0 and after.index == 5


def test_frames_without_a_face(media, predictor):
    from mer.live import LiveSession
    frames, ts = clip_frames(media / "no_face.mp4", 3, step=10)
    live = LiveSession()
    outs = [live.step(f, predictor, t=t) for f, t in zip(frames, ts)]
    assert all(o.faces == [] and o.to_dict()["n_faces"] == 0 for o in outs)
    assert all((o.image == f).all() for o, f in zip(outs, frames))   # nothing drawn


def test_large_frames_are_downscaled(predictor, media):
    from mer.images import read_image
    from mer.live import LiveConfig, LiveSession
    img = read_image(media / "single_face.jpg")
    out = LiveSession(LiveConfig(max_side=400)).step(img, predictor, t=0)
    assert max(out.image.shape[:2]) == 400 and len(out.faces) == 1
