"""MER workbench app: `python app.py` -> http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT).

A thin shell over `mer`: one small builder per tab, handlers that call mer and turn its results
and its errors into what gradio shows. Image: mer.predict (+ Grad-CAM, thread-safe in
mer.gradcam) and mer.render. Video: mer.video + mer.report + mer.encode (the batch tool's code
path; what differs from the batch tool's defaults is said in the tab, video_note). Live: mer.live (webcam stream, state per viewer). Named API endpoints: /predict_image,
/analyze_video, /live_frame, /live_stream (the browser's webcam stream) and /load_checkpoint.
Settings are environment variables (see AppSettings). The models are loaded once at start-up.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import atexit
import functools
import logging
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mer.checkpoint import CheckpointError, ModelCard
from mer.images import ImageError, read_image
from mer.live import LiveConfig, LiveSession
from mer.memory import limit_arenas, release_memory
from mer.predict import Predictor
from mer.render import draw_predictions
from mer.spotting import DEFAULT_METHOD, METHODS
from mer.video import VideoSettings

log = logging.getLogger("mer.app")
ROOT = Path(__file__).resolve().parent
SPOT_METHOD_INFO = ("auto: per face, ecc, or flow where the face moves too much for ecc; flow: optical flow against the frames 0.3 s before and after (real video: head motion, "
                    "speech, hands); ecc: registered differences to the frames 3-5 s away (a steady head). "
                    "docs/spotting.md has what each was measured on.")
EXAMPLES = ROOT / "examples"


def _env(name: str, default, cast=str):
    v = os.environ.get(name)
    return default if v in (None, "") else cast(v)


@dataclass
class AppSettings:
    checkpoint: str | None = field(default_factory=lambda: _env("MER_CHECKPOINT", None))
    micro_checkpoint: str | None = field(default_factory=lambda: _env("MER_MICRO_CHECKPOINT", None))
    device: str = field(default_factory=lambda: _env("MER_DEVICE", "auto"))
    max_file_size: str = field(default_factory=lambda: _env("MER_MAX_FILE_SIZE", "100mb"))
    max_video_mb: float = field(default_factory=lambda: _env("MER_MAX_VIDEO_MB", 50.0, float))
    max_video_s: float = field(default_factory=lambda: _env("MER_MAX_VIDEO_S", 60.0, float))
    max_video_side: int = field(default_factory=lambda: _env("MER_MAX_VIDEO_SIDE", 1920, int))
    detect_every: int = field(default_factory=lambda: _env("MER_DETECT_EVERY", 3, int))
    mesh_every: int = field(default_factory=lambda: _env("MER_MESH_EVERY", VideoSettings.mesh_every, int))
    spot_method: str = field(default_factory=lambda: _env("MER_SPOT_METHOD", DEFAULT_METHOD))
    preview_side: int = field(default_factory=lambda: _env("MER_PREVIEW_SIDE", 640, int))
    max_display_side: int = 1600    # the annotated image is shrunk to this for the browser
    concurrency: int = field(default_factory=lambda: _env("MER_CONCURRENCY", 2, int))
    queue_size: int = field(default_factory=lambda: _env("MER_QUEUE_SIZE", 32, int))
    live_every: float = field(default_factory=lambda: _env("MER_LIVE_EVERY", 0.25, float))
    live_time_limit: int = field(default_factory=lambda: _env("MER_LIVE_TIME_LIMIT", 120, int))
    live_concurrency: int = field(default_factory=lambda: _env("MER_LIVE_CONCURRENCY", 2, int))
    decoder_memory_mb: int = field(default_factory=lambda: _env("MER_DECODER_MEMORY_MB", 2048, int))
    decoder_timeout_s: float = field(default_factory=lambda: _env("MER_DECODER_TIMEOUT_S", 60.0, float))
    server_name: str = field(default_factory=lambda: _env("GRADIO_SERVER_NAME", "127.0.0.1"))
    server_port: int = field(default_factory=lambda: _env("GRADIO_SERVER_PORT", 7860, int))

    def __post_init__(self):
        if self.spot_method not in METHODS:
            raise ValueError(f"MER_SPOT_METHOD={self.spot_method!r}: choose one of {', '.join(METHODS)}")
        for name, v in (("MER_DETECT_EVERY", self.detect_every), ("MER_MESH_EVERY", self.mesh_every)):
            if v < 1:
                raise ValueError(f"{name}={v}: must be 1 or more frames")

    def video_settings(self, spot_method: str | None = None):
        """Uploads are decoded in a child process (memory cap, timeout): a decoder crash or hang
        ends the child, not the server. `spot_method`: the visitor's choice of motion scorer
        (default: MER_SPOT_METHOD)."""
        from mer.spotting import SpotConfig
        return VideoSettings(detect_every=self.detect_every, mesh_every=self.mesh_every, max_duration_s=self.max_video_s,
                             spotting=SpotConfig.for_method(spot_method or self.spot_method),
                             max_side=self.max_video_side, isolate_decoder=True,
                             decoder_memory_mb=self.decoder_memory_mb, decoder_timeout_s=self.decoder_timeout_s)


@dataclass
class Model:
    """A Predictor and the name shown for it: the default, or one a visitor loaded for a session."""
    predictor: Predictor
    name: str


# ---------------------------------------------------------------- errors

class Refused(Exception):
    """An expected user error: shown as the message, logged as one line."""


_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\s'\"()\[\]{}<>,;:\\/]+[\\/])+([^\s'\"()\[\]{}<>,;:\\/]*)")


def scrub_paths(msg: str) -> str:
    """Absolute paths in a message cut down to their file names."""
    return _PATH.sub(lambda m: m.group(1) or "…", msg)


def user_errors(what: str):
    """Refused (the handlers turn mer's ImageError/VideoError/CheckpointError into it) -> gr.Error
    with the message and ONE log line; anything else -> logged with its trace, a sentence without
    paths for the user. gradio prints no trace of its own for either (print_exception=False)."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapped(*a, **kw):
            try:
                return fn(*a, **kw)
            except Refused as e:
                msg = scrub_paths(str(e))
                log.warning("%s refused: %s", what, msg)
            except gr.Error as e:  # from gradio itself (e.g. a failed upload)
                msg = scrub_paths(str(e.message))
                log.warning("%s refused: %s", what, msg)
            except MemoryError:
                msg = f"{what}: out of memory; try a smaller input"
                log.warning("%s: out of memory", what)
            except Exception as e:
                log.exception("%s failed", what)
                msg = f"{what} failed unexpectedly ({type(e).__name__}: {scrub_paths(str(e))[:200]})"
            finally:
                release_memory()  # freed buffers back to the system: flat memory under load
            raise gr.Error(msg, print_exception=False)
        return wrapped
    return deco


def quiet(component, raw_path: bool = False):
    """Wrap an input component's preprocess: gradio's own refusals (wrong file type, ...) become one
    log line instead of a traceback; with raw_path, a file gradio cannot open is handed over as its
    path, so mer can say exactly what is wrong with it (corrupt, empty, too large, ...). The
    instance is wrapped (a subclass would make gradio write an app.pyi stub)."""
    base = component.preprocess

    def preprocess(payload):
        try:
            return base(payload)
        except gr.Error as e:
            msg = scrub_paths(str(e.message))
            log.warning("upload refused: %s", msg)
            raise gr.Error(msg, print_exception=False) from None
        except Exception:
            if raw_path and payload is not None and getattr(payload, "path", None):
                return str(payload.path)
            log.warning("upload refused: %s could not be received", type(component).__name__)
            raise gr.Error("The file could not be received; try uploading it again.",
                           print_exception=False) from None
    component.preprocess = preprocess
    return component


def path_image(**kw) -> gr.Image:
    """gr.Image (filepath) that hands over the uploaded file's path even when PIL cannot open it."""
    return quiet(gr.Image(type="filepath", image_mode=None, **kw), raw_path=True)


# ---------------------------------------------------------------- presentation helpers

# A card's metric keys in words ({v}: the value); keys not listed are shown with spaces for "_".
METRIC_WORDS = {
    "uf1": "UF1 (unweighted F1) {v}", "uar": "UAR (unweighted average recall) {v}", "acc": "accuracy {v}",
    "folds": "{v} folds", "n_test_samples": "{v} test samples", "n_test_clips": "{v} test clips",
    "unit": "scored per {v}",
    "authors_reported_test_accuracy": "test accuracy {v}, as reported by the original authors",
}
# ... and those that check a converted model against its original (not a score on data)
PORT_WORDS = {"port_max_abs_dprob_vs_keras": "probabilities within {v} of the original Keras model",
              "port_reference_inputs": "on {v} reference inputs"}


def _scores(d: dict, words: dict, others: bool = True):
    """A card's top-level metrics in words (per-class breakdowns stay in the card)."""
    for k, v in (d or {}).items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (k not in words and not others):
            continue
        shown = f"{v:.3g}" if isinstance(v, float) else str(v)
        yield words.get(k, k.replace("_", " ") + " {v}").format(v=shown)


def model_markdown(role: str, name: str, card: ModelCard) -> str:
    """What the model is, what it was trained on, what was measured: read from its card, in words."""
    h, w = card.input_size
    metrics = {k: v for k, v in (card.metrics or {}).items() if k not in PORT_WORDS}
    measured = ", ".join(list(_scores(metrics, METRIC_WORDS))[:10])
    if measured and card.protocol:
        measured += f" (protocol: {card.protocol})"
    port = " ".join(_scores(card.metrics, PORT_WORDS, others=False))
    return (f"**{role}:** `{name}` — {card.arch}, {card.input_mode} {h}×{w} face crops → "
            f"{len(card.classes)} classes ({', '.join(card.classes)})  \n"
            f"**Trained on:** {card.trained_on}  \n"
            f"**Measured:** {measured or 'nothing reported in its card'}"
            + (f"  \n**Conversion check:** {port}" if port else ""))


def frame_banner(m: Model, own: bool = False) -> str:
    return model_markdown("Per-frame model" + (" (your session only)" if own else ""), m.name, m.predictor.card)


def micro_banner(m: Model | None, error: str | None = None) -> str:
    if error:
        return (f"**Micro-expression model: could not be loaded** ({scrub_paths(error)}). Videos are refused "
                "until it is fixed; MER_MICRO_CHECKPOINT=none runs without one (spotted micro intervals are "
                "then classified by the per-frame model).")
    if m is None:
        return ("**Micro-expression model:** none (MER_MICRO_CHECKPOINT=none): spotted micro intervals are "
                "classified by the per-frame model")
    return model_markdown("Micro-expression model (classifies spotted micro intervals whose AU proxies did not rise)",
                          m.name, m.predictor.card)


def faces_table(preds, classes) -> pd.DataFrame:
    rows = [{"face": i, "top_class": p.top_class, "top_prob": round(p.top_prob, 4),
             "det_prob": round(float(p.face.prob), 4), "box": ", ".join(f"{v:.0f}" for v in p.face.box),
             **{c: round(p.probs[c], 4) for c in classes}} for i, p in enumerate(preds)]
    return pd.DataFrame(rows, columns=["face", "top_class", "top_prob", "det_prob", "box", *classes])


def _shrink(img: np.ndarray, side: int) -> np.ndarray:
    import cv2
    h, w = img.shape[:2]
    s = side / max(h, w)
    return img if s >= 1 else cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


class Workdir:
    """Per-request output folders under one temp root, the root removed at exit. gradio copies what
    a handler returns into its own cache (gr.Blocks delete_cache) as the handler returns, so a
    folder is only needed for a moment: folders older than max_age_s are removed on the next
    request (bounded disk and no growth over a long run)."""

    def __init__(self, max_age_s: float = 600):
        self.root = Path(tempfile.mkdtemp(prefix="mer-app-"))
        self.max_age_s = max_age_s
        self.pruned = 0.0  # last prune (the live tab asks for a folder every frame: prune once a minute)
        atexit.register(shutil.rmtree, self.root, True)

    def new(self) -> Path:
        now = time.time()
        if now - self.pruned < min(60.0, self.max_age_s / 10):
            return Path(tempfile.mkdtemp(dir=self.root))
        self.pruned = now
        for d in self.root.iterdir():
            try:
                if now - d.stat().st_mtime > self.max_age_s:
                    shutil.rmtree(d, ignore_errors=True)
            except FileNotFoundError:  # removed by a concurrent request
                pass
        return Path(tempfile.mkdtemp(dir=self.root))

    def image(self, img: np.ndarray, name: str = "faces.jpg") -> str:
        """An RGB image written as a JPEG to a new per-request folder, atomically (a temporary name,
        then renamed): the path handed to gradio is complete and no other request writes it.
        (Returning the array instead makes gradio write it to a path named by the hash of its
        bytes, truncating and rewriting that file while it may be served for an identical
        result of another request: that visitor got an empty picture.)"""
        import cv2
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("the annotated image could not be encoded")
        dst = self.new() / name
        tmp = dst.with_name(f".{name}.part")
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, dst)
        return str(dst)


# ---------------------------------------------------------------- handlers (each a call into mer)

class Workbench:
    def __init__(self, model: Model, settings: AppSettings, micro: Model | None = None,
                 micro_error: str | None = None):
        self.model, self.micro, self.settings = model, micro, settings
        self.micro_error = micro_error  # the micro model was asked for but could not be loaded
        self.work = Workdir()
        self.live_config = LiveConfig()

    def current(self, session: Model | None) -> Model:
        return session if session is not None else self.model

    @user_errors("Image prediction")
    def predict_image(self, image, gradcam: bool, session: Model | None):
        if image is None:
            raise Refused("No image: upload, paste or take a webcam photo first.")
        m = self.current(session)
        try:
            img = read_image(image)
        except ImageError as e:
            raise Refused(f"Cannot use this image: {e}") from None
        preds = m.predictor.predict(img, gradcam=bool(gradcam))
        classes = m.predictor.classes
        shown = self.work.image(_shrink(draw_predictions(img, preds, gradcam=bool(gradcam)),
                                        self.settings.max_display_side))
        msg = (f"**{len(preds)} face{'s' if len(preds) != 1 else ''}** found ({img.shape[1]}×{img.shape[0]} px)"
               if preds else f"**No face found** in this {img.shape[1]}×{img.shape[0]} image "
                             "(faces smaller than about 20 px or turned away are not detected).")
        result = {"checkpoint": m.name, "classes": classes, "n_faces": len(preds), "width": img.shape[1],
                  "height": img.shape[0], "faces": [p.to_dict() for p in preds]}
        from mer.report import au_bars_figure
        return shown, msg, au_bars_figure(preds, classes), faces_table(preds, classes), result

    def toggle_cam(self, image, gradcam: bool, session: Model | None):
        """The Grad-CAM checkbox re-runs the prediction when there is an image."""
        if image is None:
            return [gr.skip()] * 5
        return self.predict_image(image, gradcam, session)

    @user_errors("Video analysis")
    def analyze_video(self, video, spot_method: str | None, session: Model | None, progress=gr.Progress()):
        from mer.encode import PreviewWriter
        from mer.report import au_heatmap_figure, timeline_figure, write_csv
        from mer.video import VideoError, analyze_video
        s = self.settings
        if video is None:
            raise Refused("No video: upload a clip first.")
        if self.micro_error:
            raise Refused(f"Videos cannot be analysed: the micro-expression model could not be loaded "
                          f"({self.micro_error}); the server's operator can fix it or set MER_MICRO_CHECKPOINT=none.")
        m, path = self.current(session), Path(video)
        mb = path.stat().st_size / 2**20
        if mb > s.max_video_mb:
            raise Refused(f"{path.name}: the clip is {mb:.1f} MB; this app accepts clips up to "
                          f"{s.max_video_mb:g} MB (MER_MAX_VIDEO_MB).")
        progress(0, desc="decoding")
        out = self.work.new()
        preview = PreviewWriter(out / f"{path.stem}.preview.mp4", s.preview_side)  # written on the way
        try:  # decoded in a child process with a memory cap and a timeout (mer.decode)
            res = analyze_video(path, m.predictor, s.video_settings(spot_method), preview=preview,
                                micro_predictor=self.micro.predictor if self.micro else False,
                                progress=lambda d, t: progress((d, t), desc="analysing", unit="frames"))
        except VideoError as e:
            raise Refused(f"Cannot analyse this clip: {limits_named(str(e), s)}") from None
        progress(1.0, desc="writing the CSV")
        csv = write_csv(res.frames, out / f"{path.stem}.frames.csv")
        return (video_summary(res.info, m.name), str(preview.path), timeline_figure(res), res.intervals, str(csv),
                au_heatmap_figure(res))

    @user_errors("Live analysis")
    def live_frame(self, frame, live: LiveSession | None, session: Model | None):
        """One webcam frame (or an uploaded image, for API clients) -> annotated frame, JSON, state."""
        if frame is None:
            raise Refused("No frame: start the webcam (or send an image).")
        live = live if isinstance(live, LiveSession) else LiveSession(self.live_config)
        m = self.current(session)
        try:
            out = live.step(frame, m.predictor)
        except ImageError as e:
            raise Refused(f"Cannot use this frame: {e}") from None
        return self.work.image(out.image, "live.jpg"), {"checkpoint": m.name, **out.to_dict()}, live

    @user_errors("Loading the checkpoint")
    def load_checkpoint(self, weights, card_file):
        if weights is None:
            raise Refused("Choose a .safetensors weights file first.")
        w = Path(weights)
        if w.suffix.lower() != ".safetensors":
            raise Refused(f"{w.name}: expected a .safetensors file (pickled .pt/.pth files are not "
                          "accepted from uploads)")
        d = self.work.new()
        dst = d / "uploaded.safetensors"
        shutil.copyfile(w, dst)
        if card_file is not None:
            shutil.copyfile(card_file, d / "uploaded.json")
        base = self.model.predictor
        try:
            pred = Predictor(dst, device=base.device, detector=base.detector)
        except CheckpointError as e:
            msg = str(e).replace(str(dst), w.name).replace(str(d / "uploaded.json"),
                                                          Path(card_file).name if card_file else "card")
            raise Refused(f"Checkpoint refused: {msg}") from None
        if pred.card.input_mode == "flow":
            raise Refused(f"Checkpoint refused: {w.name} classifies optical flow between frames, "
                          "not single face images; this app needs an rgb or gray model")
        own = Model(pred, w.name)
        return own, frame_banner(own, own=True)

    def reset_model(self):
        return None, frame_banner(self.model)


def video_note(s: AppSettings) -> str:
    """How this tab's analysis relates to the batch tool's: the same pipeline, models and CSV
    columns; the settings that can differ are how often faces are detected and meshed."""
    batch = VideoSettings.mesh_every
    mesh = (f" The face mesh (AU proxies) runs on 1 frame in {s.mesh_every} (MER_MESH_EVERY={s.mesh_every}), where "
            f"the batch tool meshes 1 frame in {batch} by default; `--mesh-every {s.mesh_every}` gives this tab's values."
            if s.mesh_every != batch else "")
    if s.detect_every == 1:
        return ("The batch tool's analysis and CSV (`python -m batch`, same settings: faces detected on "
                "every frame)." + mesh)
    return (f"The batch tool's pipeline, models and CSV columns, with one difference: faces are detected on "
            f"1 frame in {s.detect_every} and tracked in between (MER_DETECT_EVERY={s.detect_every}, for a "
            f"faster answer), where `python -m batch` detects on every frame by default; "
            f"`python -m batch --detect-every {s.detect_every}` gives this tab's CSV." + mesh)


def limits_named(msg: str, s: AppSettings) -> str:
    """mer.video's limit messages with the setting that changes each limit."""
    return (msg.replace(f"limit of {s.max_video_s:g} s", f"limit of {s.max_video_s:g} s (MER_MAX_VIDEO_S)")
            .replace(f"limit of {s.max_video_side} px on the longer side",
                     f"limit of {s.max_video_side} px on the longer side (MER_MAX_VIDEO_SIDE); downscale it first")
            .replace(f"(its limit is {s.decoder_memory_mb} MB)", f"(its limit is {s.decoder_memory_mb} MB, "
                     "MER_DECODER_MEMORY_MB)"))


def video_summary(info: dict, name: str) -> str:
    from mer.report import spot_caveat, spot_method
    notes = []
    if info.get("partial"):
        notes.append(f"**Partly analysed:** {info['partial']}")
    if info["n_faces"] == 0:
        notes.append(f"**No face found** in any of the {info['n_frames']} frames: nothing to classify "
                     "(the CSV still has one row per frame).")
    if info["n_frames"] < 2:
        notes.append("**Only one frame:** there is no motion to spot intervals in; the frame is "
                     "classified on its own.")
    elif info["n_faces"] and (caveat := spot_caveat(info)):
        notes.append(f"**How far to trust the intervals:** {caveat}")
    return (f"**{info['n_frames']} frames**, {info['duration_s']:.2f} s at {info['fps']:.2f} fps, "
            f"{info['width']}×{info['height']}; **{info['n_faces']} face track(s)**, "
            f"dominant class: {info['dominant_class'] or '—'}; "
            f"**{info['n_intervals']} spotted interval(s)** (`{spot_method(info)}` motion scorer). Model: `{name}`.\n\n" + "\n\n".join(notes))


# ---------------------------------------------------------------- one builder per tab

def image_tab(wb: Workbench, session: gr.State) -> None:
    with gr.Tab("Image", id="image"):
        with gr.Row():
            with gr.Column(scale=1):
                img_in = path_image(sources=["upload", "clipboard", "webcam"],
                                    label="Photo (upload, paste or webcam)", elem_id="image-input")
                cam = gr.Checkbox(label="Grad-CAM overlay (where the network looked)", value=False)
                btn = gr.Button("Predict", variant="primary", elem_id="predict-image")
            with gr.Column(scale=1):
                img_out = gr.Image(label="Faces", type="numpy", format="jpeg", elem_id="image-output")
                msg = gr.Markdown(elem_id="image-message")
        plot = gr.Plot(label="Class probabilities and AU proxies per face", elem_id="image-plot")
        table = gr.Dataframe(label="Per-face results", interactive=False)
        js = gr.JSON(label="JSON")
        ex = sorted(EXAMPLES.glob("*.jpg"))
        if ex:
            gr.Examples([[str(p), False] for p in ex], [img_in, cam])
        outs = [img_out, msg, plot, table, js]
        btn.click(wb.predict_image, [img_in, cam, session], outs, api_name="predict_image")
        cam.change(wb.toggle_cam, [img_in, cam, session], outs, api_name=False)


def video_tab(wb: Workbench, session: gr.State) -> None:
    s = wb.settings
    with gr.Tab("Video", id="video"):
        gr.Markdown(f"Clips up to {s.max_video_mb:g} MB, {s.max_video_s:g} s and {s.max_video_side} px on the "
                    f"longer side. {video_note(s)}", elem_id="video-note")
        with gr.Row():
            with gr.Column(scale=1):
                vid_in = quiet(gr.Video(sources=["upload"], label="Clip", elem_id="video-input"))
                method = gr.Radio(list(METHODS), value=s.spot_method, label="Spotting: motion scorer",
                                  info=SPOT_METHOD_INFO, elem_id="spot-method")
                btn = gr.Button("Analyse", variant="primary", elem_id="analyze-video")
            with gr.Column(scale=1):
                vid_out = gr.Video(label="Annotated preview (H.264)", elem_id="video-output")
        msg = gr.Markdown(elem_id="video-message")
        plot = gr.Plot(label="Timeline per face (spotted intervals by type and class)", elem_id="video-plot")
        au_plot = gr.Plot(label="AU proxies over time (spotted intervals and their AUs marked)", elem_id="video-aus")
        au_fig = gr.State(None)  # the AU heat map travels through a state: the API's outputs stay as they were
        iv = gr.Dataframe(label="Spotted intervals", interactive=False, elem_id="video-intervals")
        csv = gr.File(label="Per-frame CSV")
        exv = sorted(EXAMPLES.glob("*.mp4"))
        if exv:
            gr.Examples([[str(p)] for p in exv], [vid_in])
        btn.click(wb.analyze_video, [vid_in, method, session], [msg, vid_out, plot, iv, csv, au_fig],
                  api_name="analyze_video").then(lambda f: f, au_fig, au_plot, api_name=False)


def live_tab(wb: Workbench, session: gr.State) -> None:
    s, c = wb.settings, wb.live_config
    with gr.Tab("Live", id="live"):
        gr.Markdown(f"Your webcam, a frame every {s.live_every:g} s: faces, class and a rolling motion score "
                    f"(mean over {c.window_s:g} s of each face's change against {c.ref_s:g} s earlier). "
                    f"A stream runs up to {s.live_time_limit} s; {s.live_concurrency} streams at once, "
                    "later ones wait in the queue. Frames are analysed in memory and not kept.")
        live = gr.State(None, time_to_live=600)
        with gr.Row():
            cam = gr.Image(sources=["webcam"], type="numpy", streaming=True, label="Webcam", elem_id="live-input")
            out = gr.Image(label="Faces", type="numpy", format="jpeg", elem_id="live-output")
        js = gr.JSON(label="This frame", elem_id="live-json")
        limits = dict(concurrency_limit=s.live_concurrency, concurrency_id="live")
        cam.stream(wb.live_frame, [cam, live, session], [out, js, live], stream_every=s.live_every,
                   time_limit=s.live_time_limit, show_progress="hidden", api_name="live_stream", **limits)
        # the same step for API clients, one frame per call (gradio_client cannot read a stream);
        # the state (tracks, rolling score) lives in the client's session
        frame = path_image(visible=False)
        gr.Button(visible=False).click(wb.live_frame, [frame, live, session], [out, js, live],
                                       api_name="live_frame", **limits)


def model_tab(wb: Workbench, session: gr.State, banner: gr.Markdown) -> None:
    with gr.Tab("Model", id="model"):
        gr.Markdown("Load your own per-frame checkpoint for **this browser session only** (`.safetensors` "
                    "written by `mer.save_checkpoint`, plus its `.json` model card if the card is not "
                    "embedded). It is validated; a wrong file is refused with the reason.")
        w_in = quiet(gr.File(label="weights (.safetensors)", file_types=[".safetensors"], type="filepath"))
        c_in = quiet(gr.File(label="model card (.json, optional)", file_types=[".json"], type="filepath"))
        with gr.Row():
            load = gr.Button("Load for my session", variant="primary")
            reset = gr.Button("Back to the default model")
        load.click(wb.load_checkpoint, [w_in, c_in], [session, banner], api_name="load_checkpoint")
        reset.click(wb.reset_model, None, [session, banner], api_name=False)


def build_app(model: Model, settings: AppSettings, micro: Model | None = None,
              micro_error: str | None = None) -> gr.Blocks:
    wb = Workbench(model, settings, micro, micro_error)
    with gr.Blocks(title="MER workbench", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        session = gr.State(None, time_to_live=3600)  # an uploaded model lives 1 h without use
        gr.Markdown("# MER workbench: micro-expression recognition demo\n"
                    "Not a clinical, forensic or lie-detection tool.")
        with gr.Row(equal_height=False):
            banner = gr.Markdown(frame_banner(model), elem_id="model-card")
            gr.Markdown(micro_banner(micro, micro_error), elem_id="micro-model-card")
        with gr.Tabs():
            image_tab(wb, session)
            video_tab(wb, session)
            live_tab(wb, session)
            model_tab(wb, session, banner)
    return demo


def load_models(s: AppSettings) -> tuple[Model, Model | None, str | None]:
    """The per-frame model (MER_CHECKPOINT or the shipped default; one that cannot be loaded stops
    start-up) and the micro-expression model (MER_MICRO_CHECKPOINT or the shipped one;
    MER_MICRO_CHECKPOINT=none: none, by choice). A micro model that cannot be loaded is not
    replaced silently: its reason is returned third, shown in the banner and given for each video
    (the image and live tabs keep working)."""
    from mer.predict import micro_checkpoint
    predictor = Predictor(s.checkpoint, device=s.device)
    predictor.detector  # build MTCNN now, not on the first request
    model = Model(predictor, Path(predictor.checkpoint).name)
    if (s.micro_checkpoint or "").strip().lower() == "none":
        return model, None, None
    try:
        mp = Predictor(s.micro_checkpoint or micro_checkpoint(), device=predictor.device,
                       detector=predictor.detector)
    except CheckpointError as e:
        log.error("the micro-expression model could not be loaded: %s", e)
        return model, None, str(e)
    return model, Model(mp, Path(mp.checkpoint).name), None


def main() -> None:
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so atexit clean-up runs on `kill`
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_arenas(2)  # before gradio's worker threads start: one malloc arena each would hold GBs
    s = AppSettings()
    t0 = time.perf_counter()
    try:
        model, micro, micro_error = load_models(s)
    except CheckpointError as e:
        sys.exit(f"app.py: cannot load the model: {e}\n(set MER_CHECKPOINT / MER_MICRO_CHECKPOINT to a "
                 ".safetensors checkpoint)")
    demo = build_app(model, s, micro, micro_error)
    demo.queue(max_size=s.queue_size, default_concurrency_limit=s.concurrency)
    log.info("model %s%s on %s loaded in %.1f s", model.name, f" + {micro.name}" if micro else "",
             model.predictor.device, time.perf_counter() - t0)
    demo.launch(server_name=s.server_name, server_port=s.server_port, share=False, show_error=False,
                max_file_size=s.max_file_size, ssr_mode=False, footer_links=["api"],
                state_session_capacity=200)  # bounded memory for per-session models


if __name__ == "__main__":
    main()
