"""A missing or broken micro-expression model is an error that says so, in mer and in the app; only
an explicit choice (micro_predictor=False, MER_MICRO_CHECKPOINT=none) classifies micro intervals
with the per-frame model instead (issue 19, item 4: it used to fall back silently)."""
from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from test_app import _clip, start_app, stop_app

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def broken_micro(tmp_path, monkeypatch) -> Path:
    """The shipped micro checkpoint's place holds a file that is not a checkpoint (a bad install)."""
    import mer.predict
    bad = tmp_path / "micro_synth.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    monkeypatch.setattr(mer.predict, "MICRO_CHECKPOINT", bad)
    return bad


def test_broken_shipped_micro_model_is_an_error_not_a_fallback(broken_micro, tmp_path, untrained_checkpoint):
    from mer.checkpoint import CheckpointError
    from mer.predict import Predictor
    from mer.video import analyze_video
    clip = _clip(tmp_path / "clip.mp4", 6)
    predictor = Predictor(untrained_checkpoint, device="cpu")  # fresh: no micro model cached for it
    with pytest.raises(CheckpointError, match="micro-expression model cannot be used.*micro_synth.safetensors"):
        analyze_video(clip, predictor)
    res = analyze_video(clip, predictor, micro_predictor=False)  # the explicit choice
    assert res.info["n_frames"] == 6


def test_app_with_a_broken_micro_model_says_so_and_keeps_serving(tmp_path, media, default_checkpoint):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    bad = tmp_path / "micro.safetensors"
    bad.write_bytes(b"")
    proc, url = start_app(default_checkpoint, tmp_path, MER_MICRO_CHECKPOINT=bad)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            page = r.read().decode()
        assert "Micro-expression model: could not be loaded" in page and "micro.safetensors" in page
        assert str(bad) not in page  # the file name only
        c = Client(url, verbose=False)
        with pytest.raises(AppError, match="micro-expression model could not be loaded"):
            c.predict(handle_file(str(_clip(tmp_path / "clip.mp4", 6))), api_name="/analyze_video")
        assert c.predict(handle_file(str(media / "single_face.jpg")), False,
                         api_name="/predict_image")[4]["n_faces"] == 1  # the server keeps serving
    finally:
        stop_app(proc)
    log = (tmp_path / "app.log").read_text()
    assert "the micro-expression model could not be loaded" in log and "Traceback" not in log
