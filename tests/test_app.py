"""The real app (`python app.py`) in a subprocess, driven over HTTP by gradio_client: real photos,
real clips, bad inputs (each a specific message, the server keeps serving), per-session
checkpoints, 8 concurrent clients."""
from __future__ import annotations

import concurrent.futures as cf
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(checkpoint: Path, tmp: Path, **env) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port; returns (process, url) once the page answers."""
    port = free_port()
    e = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
         "MER_CHECKPOINT": str(checkpoint), "MER_DEVICE": "cpu", "GRADIO_TEMP_DIR": str(tmp / "gradio"),
         "TMPDIR": str(tmp), **{k: str(v) for k, v in env.items()}}
    log = open(tmp / "app.log", "wb")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=e, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{(tmp / 'app.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("app.py did not answer within 120 s")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)  # a loaded CI machine may take a while to shut gradio down
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def app_checkpoint(request) -> Path:
    """The shipped default once it exists; until then a random-init checkpoint (plumbing only)."""
    from mer.predict import DEFAULT_CHECKPOINT
    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT
    return request.getfixturevalue("untrained_checkpoint")


@pytest.fixture(scope="module")
def served(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    proc, url = start_app(app_checkpoint(request), tmp, MER_MAX_VIDEO_MB=1, MER_MAX_VIDEO_S=10,
                          MER_MAX_VIDEO_SIDE=1280, MER_DETECT_EVERY=2, MER_MAX_FILE_SIZE="3mb",
                          MER_LIVE_CONCURRENCY=1, MER_LIVE_TIME_LIMIT=30, MER_LIVE_EVERY=0.1)
    yield url, tmp / "app.log"
    stop_app(proc)
    assert not list(tmp.glob("mer-app-*")), "the app's temp folder was not removed at exit"


@pytest.fixture(scope="module")
def server(served):
    return served[0]


class LogWatch:
    """What the server logged since the watch started (its stdout + stderr)."""

    def __init__(self, path: Path):
        self.path, self.pos = path, path.stat().st_size

    def lines(self, settle: float = 0.3) -> list[str]:
        time.sleep(settle)
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            text = f.read().decode("utf-8", "replace")
        self.pos += len(text.encode("utf-8"))
        return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture
def app_log(served):
    return LogWatch(served[1])


def assert_one_log_line(watch: LogWatch, name: str) -> None:
    """An expected user error is logged as exactly one line naming the file, without a trace
    (videos are decoded in a child process, so FFmpeg's own messages do not reach the log)."""
    lines = watch.lines()
    assert not any("Traceback" in ln for ln in lines), "\n".join(lines)
    assert len(lines) == 1 and "refused" in lines[0] and name in lines[0], (name, lines)
    assert "/" not in lines[0].split("refused", 1)[1], lines[0]  # no paths


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server, verbose=False)


def predict(client, path, gradcam=False):
    from gradio_client import handle_file
    return client.predict(handle_file(str(path)), gradcam, api_name="/predict_image")


def analyze(client, path, spot_method=None):
    """The video tab's endpoint; without `spot_method` the radio's default (MER_SPOT_METHOD) is used."""
    from gradio_client import handle_file
    extra = () if spot_method is None else (spot_method,)
    return client.predict(handle_file(str(path)), *extra, api_name="/analyze_video")


def error_of(fn, *a) -> str:
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as e:
        fn(*a)
    return str(e.value)


# ---------------------------------------------------------------- images

@pytest.mark.parametrize("name,n", [("single_face.jpg", 1), ("multi_face.jpg", 5), ("no-faces.jpg", 0)])
def test_photos(client, media, name, n):
    img, msg, plot, table, js = predict(client, media / name)
    assert js["n_faces"] == n and len(js["faces"]) == n and len(table["data"]) == n
    assert msg.startswith(f"**{n} face") if n else "No face found" in msg
    assert Image.open(img).size == (js["width"], js["height"])  # under the display limit: full size
    assert plot["type"] == "plotly" and plot["plot"].count('"name":"face #') == n
    for f in js["faces"]:
        assert abs(sum(f["probs"].values()) - 1) < 1e-4 and f["top_class"] in js["classes"]


def test_gradcam_changes_the_picture(client, media):
    plain = np.asarray(Image.open(predict(client, media / "single_face.jpg")[0]), np.float32)
    cam, _, _, _, js = predict(client, media / "single_face.jpg", True)
    cam = np.asarray(Image.open(cam), np.float32)
    x1, y1, x2, y2 = (int(v) for v in js["faces"][0]["box"])
    inside = np.abs(plain[y1:y2, x1:x2] - cam[y1:y2, x1:x2]).mean()
    assert inside > 10, "Grad-CAM overlay not drawn on the face"
    assert np.abs(plain[:20, :20] - cam[:20, :20]).mean() < 3, "overlay spilled outside the face"


def _bad_images(tmp: Path, media: Path) -> dict:
    good = Image.open(media / "single_face.jpg").convert("RGB")
    (tmp / "corrupt.jpg").write_bytes(b"this is not an image at all" * 20)
    (tmp / "truncated.jpg").write_bytes((media / "single_face.jpg").read_bytes()[:3000])
    (tmp / "empty.png").write_bytes(b"")
    Image.new("1", (20000, 20000), 1).save(tmp / "huge.png")
    return {"corrupt.jpg": "not a readable image", "truncated.jpg": "corrupt or truncated",
            "empty.png": "empty", "huge.png": "too large"}, good


def test_bad_images_specific_messages(client, media, tmp_path, app_log):
    bad, _ = _bad_images(tmp_path, media)
    for name, words in bad.items():
        msg = error_of(predict, client, tmp_path / name)
        assert words in msg and name in msg, (name, msg)
        print(name, "->", msg)
        assert "Traceback" not in msg and "/" not in msg
        assert_one_log_line(app_log, name)
    assert predict(client, media / "single_face.jpg")[4]["n_faces"] == 1  # still serving


def test_unusual_modes_are_handled(client, media, tmp_path):
    """16-bit, RGBA and CMYK are real images: converted, and the face is still found."""
    rgb = Image.open(media / "single_face.jpg").convert("RGB")
    gray16 = (np.asarray(rgb.convert("L"), np.uint16) * 257)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    rgb.convert("RGBA").save(tmp_path / "rgba.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name in ("gray16.png", "rgba.png", "cmyk.jpg"):
        js = predict(client, tmp_path / name)[4]
        assert js["n_faces"] == 1, name


def test_eight_concurrent_clients_match_a_serial_run(server, client, media):
    """Plain and Grad-CAM requests at once on one network: every face's box, probabilities and the
    drawn picture (overlays included) equal what the same request gives alone."""
    from gradio_client import Client
    cases = [(media / ("single_face.jpg" if i % 2 else "multi_face.jpg"), i % 4 == 0) for i in range(8)]
    serial = {case: predict(client, *case) for case in dict.fromkeys(cases)}

    def one(case):
        return predict(Client(server, verbose=False), *case)

    with cf.ThreadPoolExecutor(8) as ex:
        got = list(ex.map(one, cases))
    assert [g[4]["n_faces"] for g in got] == [5, 1] * 4
    for case, g in zip(cases, got):
        ref = serial[case]
        for f, r in zip(g[4]["faces"], ref[4]["faces"]):
            assert f["box"] == r["box"] and f["top_class"] == r["top_class"], case
            assert max(abs(f["probs"][k] - r["probs"][k]) for k in r["probs"]) < 1e-5, case
        a, b = (np.asarray(Image.open(x[0]), np.float32) for x in (g, ref))
        assert a.shape == b.shape and np.abs(a - b).mean() < 0.5, case


def test_identical_results_at_once_are_whole_pictures(server, media):
    """Many visitors sending the same photo at the same moment: every annotated picture that comes
    back is whole and decodes. (gradio wrote an array result to a file named by the hash of its
    bytes, truncating it while it was served for an identical result: an empty picture or a cut
    download. The app now hands gradio a finished file of its own per request.)"""
    from gradio_client import Client, handle_file
    clients = [Client(server, verbose=False) for _ in range(12)]
    photo = handle_file(str(media / "no-faces.jpg"))  # no face: fast, so results land together

    def one(i):
        try:
            out = clients[i % len(clients)].predict(photo, False, api_name="/predict_image")[0]
        except Exception as e:  # a cut download (httpx: "peer closed connection ... received 0 bytes")
            return f"{type(e).__name__}: {e}"
        if Path(out).stat().st_size == 0:
            return "empty file"
        try:
            Image.open(out).load()
        except Exception as e:
            return f"does not decode: {e}"
        return None

    with cf.ThreadPoolExecutor(12) as ex:
        problems = [p for p in ex.map(one, range(72)) if p]
    assert not problems, problems[:3]


# ---------------------------------------------------------------- videos

def _clip(path: Path, frames: int, size=(160, 120), fps=10.0, photo=None) -> Path:
    from mer.encode import write_h264
    base = np.full((size[1], size[0], 3), 90, np.uint8)
    if photo is not None:
        import cv2
        base = cv2.resize(photo, size)
    return write_h264((np.roll(base, i, axis=1) for i in range(frames)), path, fps)


def test_real_clip_csv_rows_equal_decoded_frames(client, media):
    import decord
    summary, preview, plot, iv, csv = analyze(client, media / "single_face.mp4")
    n = presented_frames(media / "single_face.mp4")
    df = pd.read_csv(csv)
    assert len(df) == n == df["frame"].nunique() and df["face_id"].notna().all()
    assert f"**{n} frames**" in summary and "1 face track" in summary
    from mer.aus import INTERVAL_AU_COLUMNS
    from mer.spotting import INTERVAL_COLUMNS
    assert list(iv["headers"]) == INTERVAL_COLUMNS + INTERVAL_AU_COLUMNS  # the batch tool's intervals.csv columns
    assert {"type", "class", "prob"} <= set(iv["headers"])
    assert plot["type"] == "plotly" and "face 0" in plot["plot"]
    pv = decord.VideoReader(preview)
    assert len(pv) == n
    probe = subprocess.run([_ffmpeg(), "-hide_banner", "-i", preview], capture_output=True, text=True).stderr
    assert "h264" in probe and "yuv420p" in probe, probe


def test_video_tab_says_how_it_differs_from_the_batch_tool_and_that_is_true(server, client, media, tmp_path):
    """The tab names the one setting in which it differs from `python -m batch` (detection on 1 frame
    in MER_DETECT_EVERY, 2 here) and the command that gives its CSV; that command's analysis
    (mer.video.analyze_video with detect_every=2, the shipped micro model) gives the same table."""
    from mer.predict import Predictor
    from mer.video import VideoSettings, analyze_video
    with urllib.request.urlopen(server, timeout=10) as r:
        page = r.read().decode()
    assert "detected on 1 frame in 2" in page and "python -m batch --detect-every 2" in page
    assert "Same analysis and CSV as the batch tool" not in page
    clip = _clip(tmp_path / "two.mp4", 12, size=(320, 240), photo=np.asarray(Image.open(media / "two_people.jpg")))
    got = pd.read_csv(analyze(client, clip)[4])
    res = analyze_video(clip, Predictor(app_checkpoint_path(), device="cpu"), VideoSettings(detect_every=2))
    want = res.frames.reset_index(drop=True)
    assert list(got.columns) == list(want.columns) and len(got) == len(want) and got["face_id"].notna().any()
    num = [c for c in want.columns if c not in ("video", "top_class", "motion_by")]
    assert np.allclose(got[num].to_numpy(float), want[num].to_numpy(float), atol=1e-4, equal_nan=True)
    for c in ("top_class", "motion_by"):
        assert (got[c].fillna("") == want[c].fillna("")).all(), c


def test_video_tab_spots_with_the_motion_scorer_chosen(client, media):
    """The video tab's radio picks the spotting motion scorer (mer.spotting.METHODS; default
    mer.spotting.DEFAULT_METHOD, "auto": each face track gets the one mer.spotting.choose_method
    picks): the summary names it, the CSV's motion column is what analyze_video gives with that
    setting, and the ECC and flow scorers give different scores."""
    from mer.predict import Predictor
    from mer.spotting import DEFAULT_METHOD, MEASURED, METHODS, SpotConfig
    from mer.video import VideoSettings, analyze_video
    clip = media / "single_face.mp4"
    pred = Predictor(app_checkpoint_path(), device="cpu")
    motion = {}
    for method in METHODS:
        summary, _, _, iv, csv = analyze(client, clip, method)
        got = pd.read_csv(csv)
        by = got["motion_by"].dropna().unique().tolist()
        assert by == ([method] if method != "auto" else by) and len(by) == 1, by
        named = method if method != "auto" else f"auto: face 0 {by[0]}"
        assert f"(`{named}` motion scorer)" in summary, summary
        assert MEASURED[by[0]] in summary and MEASURED[({"ecc", "flow"} - {by[0]}).pop()] not in summary
        want = analyze_video(clip, pred, VideoSettings(detect_every=2, spotting=SpotConfig.for_method(method)),
                             micro_predictor=False).frames
        assert np.allclose(got["motion"].to_numpy(float), want["motion"].to_numpy(float), atol=1e-4, equal_nan=True)
        motion[method] = got["motion"].to_numpy(float)
    assert not np.allclose(motion["ecc"], motion["flow"], atol=1e-3, equal_nan=True)
    assert f"(`{DEFAULT_METHOD}" in analyze(client, clip)[0]


def app_checkpoint_path() -> Path:
    from mer.predict import DEFAULT_CHECKPOINT
    return DEFAULT_CHECKPOINT


def _ffmpeg() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def test_bad_videos_specific_messages(client, media, tmp_path, app_log):
    (tmp_path / "notes.mp4").write_text("this is a text file, not a video\n" * 50)
    data = (media / "single_face.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[:len(data) // 3])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "big.mp4").write_bytes(os.urandom(2 * 2**20))
    _clip(tmp_path / "long.mp4", 110, (64, 48), fps=10)           # 11 s > MER_MAX_VIDEO_S=10
    _clip(tmp_path / "wide.mp4", 2, (1400, 64), fps=10)            # 1400 px > MER_MAX_VIDEO_SIDE=1280
    cases = {"notes.mp4": "not a readable video", "truncated.mp4": "truncated.mp4",
             "empty.mp4": "empty", "big.mp4": "up to 1 MB", "long.mp4": "over the limit of 10 s",
             "wide.mp4": "over the limit of 1280 px"}
    for name, words in cases.items():
        msg = error_of(analyze, client, tmp_path / name)
        assert words in msg, (name, msg)
        print(name, "->", msg)
        assert "Traceback" not in msg and "/" not in msg, msg
        assert_one_log_line(app_log, name)
    assert predict(client, media / "single_face.jpg")[4]["n_faces"] == 1  # still serving


def test_decoder_runs_in_a_child_with_the_apps_memory_cap(media, tmp_path, request):
    """A second server whose decoder may use 1 MB: the decoding child dies, the upload gets a
    sentence naming the limit, one log line, and the server keeps serving."""
    from gradio_client import Client
    proc, url = start_app(app_checkpoint(request), tmp_path, MER_DECODER_MEMORY_MB=1)
    try:
        c, watch = Client(url, verbose=False), LogWatch(tmp_path / "app.log")
        msg = error_of(analyze, c, media / "single_face.mp4")
        assert "decoder ran out of memory" in msg and "MER_DECODER_MEMORY_MB" in msg, msg
        assert_one_log_line(watch, "single_face.mp4")
        assert predict(c, media / "single_face.jpg")[4]["n_faces"] == 1  # still serving
    finally:
        stop_app(proc)


def presented_frames(path: Path) -> int:
    """Frames a player shows (FFmpeg honours the edit list; decord's count includes hidden ones)."""
    import imageio_ffmpeg
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def test_spotted_micro_expression_shown_by_type_and_class(client, media, detector, tmp_path):
    """A 5-s clip of a real photo with one planted micro-expression (training.synth_long): the
    intervals table shows it as `micro`, classified by the AU proxies that rose (the default
    micro_by="aus": class = their emotion, no probability, recognized_by `aus`), and the timeline
    labels it the same way."""
    from training.synth_long import Event, LongConfig, expression, load_faces, render_video
    from mer.aus import CLASS_EMOTIONS
    face = load_faces(media / "single_face.jpg", detector)[0]
    rng = np.random.default_rng(3)
    events = [expression("micro", 2.0, 0.36, 4.0, "Surprise", rng), Event("blink", 3.6, 3.8, 3.7, 1.0)]
    clip = render_video(tmp_path / "micro.mp4", face, events, LongConfig(seconds=5.0, fps=30.0),
                        np.random.default_rng(1))
    summary, preview, plot, iv, csv = analyze(client, clip)
    rows = [dict(zip(iv["headers"], r)) for r in iv["data"]]
    assert len(rows) == 1, rows
    r = rows[0]
    assert r["type"] == "micro" and r["recognized_by"] == "aus" and r["aus"], r
    assert r["class"] == r["emotion"] and r["class"] in CLASS_EMOTIONS.values() and r["prob"] in (None, ""), r
    assert f"micro {r['class']}" in plot["plot"]  # the timeline's label for the interval
    assert "**1 spotted interval(s)**" in summary


def test_no_face_and_one_frame_clips(client, media, tmp_path):
    summary, preview, plot, iv, csv = analyze(client, media / "no_face.mp4")
    assert "No face found" in summary
    df = pd.read_csv(csv)
    assert len(df) == presented_frames(media / "no_face.mp4") and df["face_id"].isna().all()
    assert df["frame"].tolist() == list(range(len(df))) and df["time_s"].iloc[0] == 0
    assert iv["data"] == [] or len(iv["data"]) == 0
    photo = np.asarray(Image.open(media / "single_face.jpg").convert("RGB"))
    _clip(tmp_path / "one.mp4", 1, (320, 240), photo=photo)
    summary, preview, plot, iv, csv = analyze(client, tmp_path / "one.mp4")
    assert "Only one frame" in summary and len(pd.read_csv(csv)) == 1


# ---------------------------------------------------------------- own checkpoint, per session

def test_own_checkpoint_is_validated_and_per_session(server, media, tmp_path, untrained_checkpoint, app_log):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    mine, other = Client(server, verbose=False), Client(server, verbose=False)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(AppError, match="Checkpoint refused: junk.safetensors: not a valid safetensors"):
        mine.predict(handle_file(str(tmp_path / "junk.safetensors")), None, api_name="/load_checkpoint")
    assert_one_log_line(app_log, "junk.safetensors")
    (tmp_path / "evil.pt").write_bytes(b"pickle")
    with pytest.raises(AppError, match=r"\.safetensors"):  # gradio checks file_types first
        mine.predict(handle_file(str(tmp_path / "evil.pt")), None, api_name="/load_checkpoint")
    lines = app_log.lines()  # gradio's own refusal: one line too
    assert len(lines) == 1 and "upload refused" in lines[0] and "Traceback" not in lines[0], lines
    import shutil
    shutil.copyfile(untrained_checkpoint, tmp_path / "mine.safetensors")
    shutil.copyfile(untrained_checkpoint.with_suffix(".json"), tmp_path / "mine.json")
    banner = mine.predict(handle_file(str(tmp_path / "mine.safetensors")),
                          handle_file(str(tmp_path / "mine.json")), api_name="/load_checkpoint")
    assert "(your session only):** `mine.safetensors`" in banner and "random init" in banner
    assert predict(mine, media / "single_face.jpg")[4]["checkpoint"] == "mine.safetensors"
    default = predict(other, media / "single_face.jpg")[4]["checkpoint"]
    assert default == app_checkpoint_name()


def app_checkpoint_name() -> str:
    from mer.predict import DEFAULT_CHECKPOINT
    return DEFAULT_CHECKPOINT.name if DEFAULT_CHECKPOINT.is_file() else "untrained.safetensors"


def test_page_has_banner_and_no_share_link(server):
    with urllib.request.urlopen(server, timeout=10) as r:
        page = r.read().decode()
    assert "Per-frame model:" in page and "Trained on:" in page and "Measured:" in page
    from mer.predict import Predictor
    card = Predictor(app_checkpoint_path(), device="cpu").card
    for key in card.metrics or {}:  # the card's metrics in words, not its internal keys
        assert "_" not in key or key not in page, key
    if "port_max_abs_dprob_vs_keras" in (card.metrics or {}):
        assert "of the original Keras model on 19 reference inputs" in page
    assert "Not a clinical" in page and "predict_image" in page
    assert "gradio.live" not in page


def test_named_endpoints(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == {"/predict_image", "/analyze_video", "/live_frame", "/live_stream", "/load_checkpoint"}, named


def test_upload_size_limit_enforced_by_the_server(server, client, media, tmp_path):
    import httpx
    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(4 * 2**20))                        # > MER_MAX_FILE_SIZE=3mb
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks first
        predict(client, big)
    with open(big, "rb") as f:                                     # a raw upload is refused by the server
        r = httpx.post(server + "gradio_api/upload", files={"files": ("big.jpg", f)}, timeout=30)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert predict(client, media / "single_face.jpg")[4]["n_faces"] == 1  # still serving


def test_unusable_checkpoint_stops_start_up_with_the_reason(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"")
    r = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MER_CHECKPOINT": str(tmp_path / "x.safetensors"),
                            "GRADIO_SERVER_PORT": str(free_port())})
    assert r.returncode == 1 and "cannot load the model" in r.stderr and "empty (0 bytes)" in r.stderr
    assert "Traceback" not in r.stderr


def test_video_progress_is_reported(client):
    """The progress bar is fed from analyze_video's callback: frames done out of frames total."""
    from gradio_client import handle_file
    job = client.submit(handle_file(str(ROOT / "examples" / "astronaut.mp4")), api_name="/analyze_video")
    seen = set()
    while not job.done():
        st = job.status()
        for u in st.progress_data or []:
            seen.add((u.unit, u.length, u.desc))
        time.sleep(0.05)
    assert job.result()[0].startswith("**100 frames**")
    assert ("frames", 100, "analysing") in seen, seen


# ---------------------------------------------------------------- live (webcam) tab

def _clip_pngs(media: Path, tmp: Path, n: int, step: int = 3) -> list[Path]:
    """Frames of a real clip as PNG files: what a webcam would send."""
    import decord
    vr = decord.VideoReader(str(media / "single_face.mp4"), num_threads=1)
    out = []
    for k, i in enumerate(range(0, n * step, step)):
        out.append(tmp / f"frame{k}.png")
        Image.fromarray(vr[i].asnumpy()).save(out[-1])
    return out


def test_live_frame_endpoint_keeps_state_per_client(server, media, tmp_path):
    from gradio_client import Client, handle_file
    pngs = _clip_pngs(media, tmp_path, 5)
    mine, other = Client(server, verbose=False), Client(server, verbose=False)
    outs = [mine.predict(handle_file(str(p)), api_name="/live_frame") for p in pngs]
    js = [o[1] for o in outs]
    assert [j["frame"] for j in js] == list(range(5))
    assert all(j["n_faces"] == 1 and j["faces"][0]["face_id"] == 0 for j in js), js
    motion = [j["faces"][0]["motion"] for j in js]
    assert motion[0] == 0 and all(m > 0 for m in motion[1:]), motion  # a talking face moves
    assert js[-1]["faces"][0]["motion_rolling"] > 0 and js[-1]["t_s"] > js[0]["t_s"]
    assert Image.open(outs[-1][0]).size == (js[-1]["width"], js[-1]["height"])
    assert other.predict(handle_file(str(pngs[0])), api_name="/live_frame")[1]["frame"] == 0  # own state
    from gradio_client.exceptions import AppError
    (tmp_path / "bad.png").write_bytes(b"not a frame" * 10)
    with pytest.raises(AppError, match="Cannot use this frame: bad.png"):
        mine.predict(handle_file(str(tmp_path / "bad.png")), api_name="/live_frame")


class Stream:
    """The browser's side of a gradio stream event (gradio_client cannot read one): join the queue,
    send a chunk each time the server asks for one, read its outputs from the SSE channel."""

    def __init__(self, url: str, api_name: str, frames: list[Path]):
        import httpx
        import uuid
        self.http, self.url = httpx.Client(base_url=url + "gradio_api/", timeout=60), url
        cfg = self.http.get(url + "config").json()
        dep = next(d for d in cfg["dependencies"] if d.get("api_name") == api_name)
        self.fn_index, self.trigger = dep["id"], dep["targets"][0][0]
        self.n_inputs = len(dep["inputs"])
        self.frames = [self._upload(p) for p in frames]
        self.session = uuid.uuid4().hex
        self.outputs, self.messages, self.times = [], [], {}

    def _upload(self, path: Path) -> dict:
        with open(path, "rb") as f:
            name = self.http.post("upload", files={"files": (path.name, f, "image/png")}).json()[0]
        return {"path": name, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def _body(self, k: int) -> dict:
        return {"data": [self.frames[k]] + [None] * (self.n_inputs - 1), "fn_index": self.fn_index,
                "session_hash": self.session, "event_data": None, "trigger_id": self.trigger}

    def start(self) -> "Stream":
        self.event_id = self.http.post("queue/join", json=self._body(0)).json()["event_id"]
        return self

    def run(self) -> list[dict]:
        """Send every frame (one per streamed response), then close; returns the JSON outputs."""
        import json
        sent = 1
        with self.http.stream("GET", "queue/data", params={"session_hash": self.session}) as r:
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                self.messages.append(msg["msg"])
                self.times.setdefault(msg["msg"], time.monotonic())
                if msg["msg"] == "process_streaming":
                    self.outputs.append(msg["output"]["data"][1])
                    if sent < len(self.frames):
                        self.http.post(f"stream/{self.event_id}", json={**self._body(sent), "event_id": self.event_id})
                        sent += 1
                    else:
                        self.times["close_sent"] = time.monotonic()
                        self.http.post(f"stream/{self.event_id}/close")
                elif msg["msg"] == "process_completed":
                    assert msg["success"], msg
                    return self.outputs
        raise AssertionError(f"the stream ended without completing: {self.messages}")


def test_webcam_stream_keeps_state_and_concurrency_is_bounded(server, media, tmp_path):
    """Two viewers stream real clip frames through /live_stream (the webcam tab's event); with
    MER_LIVE_CONCURRENCY=1 the second waits in the queue until the first stream is closed."""
    pngs = _clip_pngs(media, tmp_path, 4)
    first, second = Stream(server, "live_stream", pngs).start(), Stream(server, "live_stream", pngs[:2])
    time.sleep(1.0)
    second.start()
    with cf.ThreadPoolExecutor(2) as ex:
        a, b = ex.submit(first.run), ex.submit(second.run)
        out_a, out_b = a.result(timeout=120), b.result(timeout=120)
    assert [o["frame"] for o in out_a] == [0, 1, 2, 3] and [o["frame"] for o in out_b] == [0, 1]
    assert all(o["n_faces"] == 1 and o["faces"][0]["face_id"] == 0 for o in out_a + out_b)
    assert out_a[0]["faces"][0]["motion"] == 0 and all(o["faces"][0]["motion"] > 0 for o in out_a[1:])
    assert second.times["process_starts"] > first.times["close_sent"], (first.times, second.times)


def test_server_log_has_no_traceback(served):
    """Runs last: every bad input above left one line in the log, and nothing left a traceback."""
    text = served[1].read_text()
    assert "Traceback" not in text, text[text.index("Traceback") - 300:][:3000]
