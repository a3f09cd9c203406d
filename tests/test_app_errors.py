"""app.py's error policy, on real exceptions: expected user errors -> the message and one log line
without a trace; unexpected ones -> a trace in the log, a message without paths for the user."""
from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="module")
def app():
    import app
    return app


def test_paths_are_cut_to_file_names(app):
    assert app.scrub_paths("cannot open /tmp/gradio/ab12/secret clip.mp4") == "cannot open secret clip.mp4"
    assert app.scrub_paths("x (/srv/a/b/c.json): bad; C:\\Users\\me\\w.safetensors") == "x (c.json): bad; w.safetensors"
    assert app.scrub_paths("25 fps, 1/25 s, 3.5/10") == "25 fps, 1/25 s, 3.5/10"


def test_unexpected_error_reaches_the_user_without_paths(app, tmp_path, caplog):
    import gradio as gr
    missing = tmp_path / "deep" / "inside" / "weights.bin"

    @app.user_errors("Reading")
    def read():
        return open(missing, "rb").read()   # a real FileNotFoundError carrying the full path

    with caplog.at_level(logging.INFO, logger="mer.app"), pytest.raises(gr.Error) as e:
        read()
    msg = e.value.message
    assert "Reading failed unexpectedly (FileNotFoundError" in msg and "weights.bin" in msg
    assert str(tmp_path) not in msg and "/" not in msg, msg
    assert not e.value.print_exception            # gradio does not print a second trace
    assert len(caplog.records) == 1 and caplog.records[0].exc_info  # the server log keeps the trace


def test_expected_error_is_one_log_line(app, caplog):
    import gradio as gr

    @app.user_errors("Image prediction")
    def refuse():
        raise app.Refused("x.jpg: not a readable image")

    with caplog.at_level(logging.INFO, logger="mer.app"), pytest.raises(gr.Error, match="x.jpg: not a readable"):
        refuse()
    (rec,) = caplog.records
    assert rec.exc_info is None and rec.getMessage() == "Image prediction refused: x.jpg: not a readable image"


def test_mesh_every_setting_reaches_the_video_analysis_and_is_checked(app, monkeypatch):
    monkeypatch.setenv("MER_MESH_EVERY", "3")
    s = app.AppSettings()
    assert s.video_settings().mesh_every == 3 and "MER_MESH_EVERY=3" in app.video_note(s)
    monkeypatch.setenv("MER_MESH_EVERY", "0")
    with pytest.raises(ValueError, match="MER_MESH_EVERY=0"):
        app.AppSettings()
    monkeypatch.delenv("MER_MESH_EVERY")
    s = app.AppSettings()  # the default, as the batch tool's: nothing to say
    assert s.video_settings().mesh_every == 2 and "MER_MESH_EVERY" not in app.video_note(s)
    monkeypatch.setenv("MER_MESH_EVERY", "1")
    s = app.AppSettings()
    assert s.video_settings().mesh_every == 1 and "MER_MESH_EVERY=1" in app.video_note(s)
