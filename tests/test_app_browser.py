"""The real app page in Debian's headless Chromium (driven by playwright's python package; no
browser download): the tabs render, an example photo is predicted, the result shows up, and the
Live tab streams a camera: Chromium's fake camera, fed with the frames of a real clip."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from test_app import app_checkpoint, start_app, stop_app

CHROMIUM = os.environ.get("MER_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.timeout(240)


def fake_camera(path: Path, n: int = 40) -> list[str]:
    """Chromium flags for a camera that plays the first frames of ../shared/media/single_face.mp4
    (a Y4M file, looped); none when the media is absent."""
    from conftest import MEDIA
    clip = MEDIA / "single_face.mp4"
    if not clip.is_file():
        return []
    import cv2
    import decord
    vr = decord.VideoReader(str(clip), num_threads=1)
    h, w = vr[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(min(n, len(vr))):
            f.write(b"FRAME\n" + cv2.cvtColor(vr[i].asnumpy(), cv2.COLOR_RGB2YUV_I420).tobytes())
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={path}"]


@pytest.fixture(scope="module")
def browser_page(request, tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium; .ci/run does)")
    pw_api = pytest.importorskip("playwright.sync_api", reason="playwright (requirements-test.txt) not installed")
    tmp = tmp_path_factory.mktemp("browser")
    proc, url = start_app(app_checkpoint(request), tmp, MER_LIVE_EVERY=0.3)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)  # a fresh profile
    camera = fake_camera(tmp / "camera.y4m")
    try:
        with pw_api.sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                        args=FLAGS + camera, viewport={"width": 1280, "height": 1400})
            try:
                page = ctx.new_page()
                page.goto(url, wait_until="load", timeout=60_000)
                yield page
            finally:
                ctx.close()
    finally:
        stop_app(proc)
        shutil.rmtree(profile, ignore_errors=True)


def test_tabs_render_and_prediction_shows_up(browser_page, tmp_path):
    page = browser_page
    page.get_by_text("Not a clinical").first.wait_for(timeout=30_000)  # the model-card banner
    page.get_by_role("tab", name="Image").wait_for()
    page.locator("#image-input input[type=file]").set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
    page.locator("#predict-image").click()
    msg = page.locator("#image-message")
    msg.get_by_text("1 face").wait_for(timeout=60_000)
    assert page.locator("#image-output img").count() == 1
    page.locator("#image-plot .js-plotly-plot").first.wait_for(timeout=30_000)  # the bar chart
    shot = tmp_path / "image_tab.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 20_000
    if os.environ.get("MER_SCREENSHOT"):  # refresh docs/screenshot_app.png
        shutil.copyfile(shot, os.environ["MER_SCREENSHOT"])

    page.get_by_role("tab", name="Video").click()
    page.locator("#analyze-video").wait_for(timeout=10_000)
    assert page.locator("#video-input").is_visible()
    assert "MB" in page.get_by_text("Clips up to").first.inner_text()
    page.locator("#video-input input[type=file]").set_input_files(str(ROOT / "examples" / "astronaut.mp4"))
    page.locator("#analyze-video").click()
    page.locator("#video-message").get_by_text("100 frames").wait_for(timeout=90_000)
    page.locator("#video-plot .js-plotly-plot").first.wait_for(timeout=30_000)  # the timeline
    video = page.locator("#video-output video")
    video.wait_for(timeout=30_000)
    page.wait_for_function("() => { const v = document.querySelector('#video-output video');"
                           " return v && v.readyState >= 1 && v.videoWidth > 0; }", timeout=30_000)
    w, h = video.evaluate("v => [v.videoWidth, v.videoHeight]")
    assert (w, h) == (320, 240), "the H.264 preview did not decode in Chromium"


def test_live_tab_streams_the_camera(browser_page, media):
    """Start the webcam stream: the JSON below the picture counts frames and shows the tracked
    face with its class and motion scores, then Stop ends the stream."""
    page = browser_page
    page.get_by_role("tab", name="Live").click(timeout=30_000)
    page.locator("#live-input").get_by_text("Click to Access Webcam").click(timeout=30_000)
    page.locator("#live-input button", has_text="Record").click(timeout=30_000)
    page.wait_for_function(  # the JSON viewer puts keys and values on lines of their own
        """() => { const t = (document.querySelector('#live-json')?.innerText || '').replace(/\\s+/g, '');
                   const m = t.match(/"frame":(\\d+)/);
                   return m && +m[1] >= 3 && t.includes('"face_id":0') && t.includes('"motion_rolling"'); }""",
        timeout=90_000)
    import re
    text = re.sub(r"\s+", "", page.locator("#live-json").inner_text())
    assert '"n_faces":1' in text and '"top_class":' in text, text
    assert page.locator("#live-output img").count() == 1
    page.locator("#live-input button", has_text="Stop").click(timeout=30_000)
