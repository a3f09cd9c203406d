"""MER workbench app: `python app.py` -> http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT).

Image tab: faces boxed and labelled, per-face probabilities, Grad-CAM overlay, table + JSON.
Video tab: mer.video.analyze_video + mer.report (the batch tool's code path): H.264 preview,
timeline, intervals, per-frame CSV. Named API endpoints: /predict_image and /analyze_video.
Settings are environment variables (see AppSettings). The model is loaded once at start-up.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import atexit
import copy
import functools
import logging
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mer.checkpoint import CheckpointError, ModelCard
from mer.images import ImageError, read_image
from mer.predict import Predictor
from mer.render import draw_predictions

log = logging.getLogger("mer.app")
ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"


def _env(name: str, default, cast=str):
    v = os.environ.get(name)
    return default if v in (None, "") else cast(v)


@dataclass
class AppSettings:
    checkpoint: str | None = field(default_factory=lambda: _env("MER_CHECKPOINT", None))
    device: str = field(default_factory=lambda: _env("MER_DEVICE", "auto"))
    max_file_size: str = field(default_factory=lambda: _env("MER_MAX_FILE_SIZE", "100mb"))
    max_video_mb: float = field(default_factory=lambda: _env("MER_MAX_VIDEO_MB", 50.0, float))
    max_video_s: float = field(default_factory=lambda: _env("MER_MAX_VIDEO_S", 60.0, float))
    max_video_side: int = field(default_factory=lambda: _env("MER_MAX_VIDEO_SIDE", 1920, int))
    detect_every: int = field(default_factory=lambda: _env("MER_DETECT_EVERY", 3, int))
    preview_side: int = field(default_factory=lambda: _env("MER_PREVIEW_SIDE", 640, int))
    max_display_side: int = 1600    # the annotated image is shrunk to this for the browser
    concurrency: int = field(default_factory=lambda: _env("MER_CONCURRENCY", 2, int))
    queue_size: int = field(default_factory=lambda: _env("MER_QUEUE_SIZE", 32, int))
    server_name: str = field(default_factory=lambda: _env("GRADIO_SERVER_NAME", "127.0.0.1"))
    server_port: int = field(default_factory=lambda: _env("GRADIO_SERVER_PORT", 7860, int))


class Model:
    """A Predictor plus a private copy of its network for Grad-CAM (its hooks must never see a
    concurrent plain forward pass), used under a lock."""

    def __init__(self, predictor: Predictor, name: str):
        self.predictor, self.name = predictor, name
        self.cam = copy.copy(predictor)
        self.cam.model = copy.deepcopy(predictor.model)
        self.cam_lock = threading.Lock()

    def predict(self, img: np.ndarray, gradcam: bool):
        faces = self.predictor.detector.detect([img])[0]
        if not gradcam:
            return self.predictor.predict_faces([img], [faces])[0]
        with self.cam_lock:
            return self.cam.predict_faces([img], [faces], gradcam=True)[0]


def path_image(**kw) -> gr.Image:
    """gr.Image (filepath) that hands over the uploaded file's path even when PIL cannot open it,
    so mer.images.read_image can say exactly what is wrong (corrupt, empty, too large, ...).
    The instance's preprocess is wrapped (a subclass would make gradio write an app.pyi stub)."""
    img = gr.Image(type="filepath", image_mode=None, **kw)
    base = img.preprocess

    def preprocess(payload):
        try:
            return base(payload)
        except gr.Error:
            raise
        except Exception:
            if payload is not None and getattr(payload, "path", None):
                return str(payload.path)
            raise gr.Error("The image could not be received; try uploading it again.") from None
    img.preprocess = preprocess
    return img


# ---------------------------------------------------------------- helpers

def _friendly(e: Exception, *paths) -> str:
    """An exception's message with temp-folder paths cut down to file names."""
    msg = str(e)
    for p in paths:
        if p:
            msg = msg.replace(str(Path(p).parent) + os.sep, "").replace(str(p), Path(p).name)
    return msg


def user_errors(what: str):
    """Any exception -> gr.Error with a message (gradio then never shows a trace or a blank)."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapped(*a, **kw):
            try:
                return fn(*a, **kw)
            except gr.Error:
                raise
            except MemoryError:
                raise gr.Error(f"{what}: out of memory; try a smaller input") from None
            except Exception as e:  # logged with its trace on the server, a sentence for the user
                log.exception("%s failed", what)
                raise gr.Error(f"{what} failed unexpectedly ({type(e).__name__}: {str(e)[:200]})") from None
        return wrapped
    return deco


def card_markdown(card: ModelCard, name: str) -> str:
    synthetic = "synthetic" in (card.trained_on or "").lower()
    def flat(d, pre=""):
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                yield from flat(v, f"{pre}{k}.")
            elif isinstance(v, (int, float, str)):
                yield f"{pre}{k} = {v:.3f}" if isinstance(v, float) else f"{pre}{k} = {v}"
    metrics = ", ".join(list(flat(card.metrics))[:12]) or "none reported"
    warn = ("**Trained on SYNTHETIC data: a demo of the pipeline, not a lie detector.** "
            if synthetic else "")
    return (f"### Model: `{name}` ({card.arch}, {card.input_mode} {card.input_size[0]}×{card.input_size[1]})\n"
            f"{warn}Not a clinical, forensic or lie-detection tool.\n\n"
            f"- **Classes:** {', '.join(card.classes)}\n"
            f"- **Trained on:** {card.trained_on}\n"
            f"- **Protocol:** {card.protocol or 'not stated'}\n"
            f"- **Measured scores:** {metrics}\n")


def bar_figure(preds, classes) -> go.Figure:
    fig = go.Figure()
    for i, p in enumerate(preds):
        fig.add_trace(go.Bar(x=list(classes), y=[p.probs[c] for c in classes], name=f"face #{i}"))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], title="probability"), height=320,
                      margin=dict(l=40, r=10, t=30, b=30), template="plotly_white",
                      title="no faces" if not preds else "class probabilities per face")
    return fig


def _shrink(img: np.ndarray, side: int) -> np.ndarray:
    import cv2
    h, w = img.shape[:2]
    s = side / max(h, w)
    return img if s >= 1 else cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


class Workdir:
    """Per-request output folders under one temp root; old ones pruned, the root removed at exit."""

    def __init__(self, max_age_s: float = 3600):
        self.root = Path(tempfile.mkdtemp(prefix="mer-app-"))
        self.max_age_s = max_age_s
        atexit.register(shutil.rmtree, self.root, True)

    def new(self) -> Path:
        now = time.time()
        for d in self.root.iterdir():
            if now - d.stat().st_mtime > self.max_age_s:
                shutil.rmtree(d, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.root))


# ---------------------------------------------------------------- the app

def build_app(model: Model, settings: AppSettings) -> gr.Blocks:
    from mer.encode import PreviewWriter
    from mer.report import timeline_figure, write_csv
    from mer.video import VideoError, VideoSettings, analyze_video, open_video
    work = Workdir()

    def current(session: Model | None) -> Model:
        return session if session is not None else model

    @user_errors("Image prediction")
    def predict_image(image, gradcam: bool, session: Model | None):
        if image is None:
            raise gr.Error("No image: upload, paste or take a webcam photo first.")
        m = current(session)
        try:
            img = read_image(image)
        except ImageError as e:
            raise gr.Error(f"Cannot use this image: {_friendly(e, image)}") from None
        preds = m.predict(img, bool(gradcam))
        classes = m.predictor.classes
        shown = _shrink(draw_predictions(img, preds, gradcam=bool(gradcam)), settings.max_display_side)
        rows = [{"face": i, "top_class": p.top_class, "top_prob": round(p.top_prob, 4),
                 "det_prob": round(float(p.face.prob), 4),
                 "box": ", ".join(f"{v:.0f}" for v in p.face.box),
                 **{c: round(p.probs[c], 4) for c in classes}} for i, p in enumerate(preds)]
        table = pd.DataFrame(rows, columns=["face", "top_class", "top_prob", "det_prob", "box", *classes])
        msg = (f"**{len(preds)} face{'s' if len(preds) != 1 else ''}** found ({img.shape[1]}×{img.shape[0]} px)"
               if preds else f"**No face found** in this {img.shape[1]}×{img.shape[0]} image "
                             "(faces smaller than about 20 px or turned away are not detected).")
        result = {"checkpoint": m.name, "classes": classes, "n_faces": len(preds), "width": img.shape[1],
                  "height": img.shape[0], "faces": [p.to_dict() for p in preds]}
        return shown, msg, bar_figure(preds, classes), table, result

    @user_errors("Video analysis")
    def analyze(video, session: Model | None, progress=gr.Progress()):
        if video is None:
            raise gr.Error("No video: upload a clip first.")
        m, path = current(session), Path(video)
        mb = path.stat().st_size / 2**20
        if mb > settings.max_video_mb:
            raise gr.Error(f"The clip is {mb:.1f} MB; this app accepts clips up to "
                           f"{settings.max_video_mb:g} MB (MER_MAX_VIDEO_MB).")
        try:
            vr = open_video(path)
            h, w = vr[0].shape[:2]
        except VideoError as e:
            raise gr.Error(f"Cannot analyse this clip: {e}") from None
        except Exception as e:
            raise gr.Error(f"Cannot analyse this clip: {path.name}: the first frame cannot be decoded "
                           f"({_friendly(e, path)[:160]})") from None
        if max(h, w) > settings.max_video_side:
            raise gr.Error(f"The clip is {w}×{h}; this app accepts up to {settings.max_video_side} px on "
                           f"the longer side (MER_MAX_VIDEO_SIDE). Downscale it first.")
        del vr
        vs = VideoSettings(detect_every=settings.detect_every, max_duration_s=settings.max_video_s)
        progress(0, desc="decoding")
        out = work.new()
        preview = out / f"{path.stem}.preview.mp4"  # written during the analysis (one decode)
        try:
            res = analyze_video(path, m.predictor, vs, preview=PreviewWriter(preview, settings.preview_side),
                                progress=lambda d, t: progress((d, t), desc="analysing", unit="frames"))
        except VideoError as e:
            msg = str(e).replace(f"limit of {settings.max_video_s:g} s",
                                 f"limit of {settings.max_video_s:g} s (MER_MAX_VIDEO_S)")
            raise gr.Error(f"Cannot analyse this clip: {msg}") from None
        progress(1.0, desc="writing the CSV")
        csv = write_csv(res.frames, out / f"{path.stem}.frames.csv")
        info = res.info
        notes = []
        if info["n_faces"] == 0:
            notes.append(f"**No face found** in any of the {info['n_frames']} frames: nothing to classify "
                         "(the CSV still has one row per frame).")
        if info["n_frames"] < 2:
            notes.append("**Only one frame:** there is no motion to spot intervals in; the frame is "
                         "classified on its own.")
        summary = (f"**{info['n_frames']} frames**, {info['duration_s']:.2f} s at {info['fps']:.2f} fps, "
                   f"{info['width']}×{info['height']}; **{info['n_faces']} face track(s)**, "
                   f"dominant class: {info['dominant_class'] or '—'}; "
                   f"**{info['n_intervals']} spotted interval(s)**. Model: `{m.name}`.\n\n" + "\n\n".join(notes))
        iv = res.intervals.copy()
        return summary, str(preview), timeline_figure(res), iv, str(csv)

    @user_errors("Loading the checkpoint")
    def load_own(weights, card_file):
        if weights is None:
            raise gr.Error("Choose a .safetensors weights file first.")
        w = Path(weights)
        if w.suffix.lower() != ".safetensors":
            raise gr.Error(f"{w.name}: expected a .safetensors file (pickled .pt/.pth files are not "
                           "accepted from uploads)")
        d = work.new()
        dst = d / "uploaded.safetensors"
        shutil.copyfile(w, dst)
        if card_file is not None:
            shutil.copyfile(card_file, d / "uploaded.json")
        try:
            pred = Predictor(dst, device=model.predictor.device, detector=model.predictor.detector)
        except CheckpointError as e:
            msg = str(e).replace(str(dst), w.name).replace(str(d / "uploaded.json"),
                                                          Path(card_file).name if card_file else "card")
            raise gr.Error(f"Checkpoint refused: {msg}") from None
        if pred.card.input_mode == "flow":
            raise gr.Error(f"Checkpoint refused: {w.name} classifies optical flow between frames, "
                           "not single face images; this app needs an rgb or gray model")
        own = Model(pred, w.name)
        return own, card_markdown(pred.card, f"{w.name} (your session only)")

    def toggle_cam(image, gradcam: bool, session: Model | None):
        """The Grad-CAM checkbox re-runs the prediction when there is an image."""
        if image is None:
            return [gr.skip()] * 5
        return predict_image(image, gradcam, session)

    def reset_own():
        return None, card_markdown(model.predictor.card, model.name)

    with gr.Blocks(title="MER workbench", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        session = gr.State(None, time_to_live=3600)  # an uploaded model lives 1 h without use
        gr.Markdown("# MER workbench: micro-expression recognition demo")
        banner = gr.Markdown(card_markdown(model.predictor.card, model.name), elem_id="model-card")
        with gr.Tabs():
            with gr.Tab("Image", id="image"):
                with gr.Row():
                    with gr.Column(scale=1):
                        img_in = path_image(sources=["upload", "clipboard", "webcam"],
                                          label="Photo (upload, paste or webcam)", elem_id="image-input")
                        cam = gr.Checkbox(label="Grad-CAM overlay (where the network looked)", value=False)
                        img_btn = gr.Button("Predict", variant="primary", elem_id="predict-image")
                    with gr.Column(scale=1):
                        img_out = gr.Image(label="Faces", type="numpy", format="jpeg", elem_id="image-output")
                        img_msg = gr.Markdown(elem_id="image-message")
                img_plot = gr.Plot(label="Class probabilities per face", elem_id="image-plot")
                img_table = gr.Dataframe(label="Per-face results", interactive=False)
                img_json = gr.JSON(label="JSON")
                ex = sorted(EXAMPLES.glob("*.jpg"))
                if ex:
                    gr.Examples([[str(p), False] for p in ex], [img_in, cam])
                img_btn.click(predict_image, [img_in, cam, session],
                              [img_out, img_msg, img_plot, img_table, img_json], api_name="predict_image")
                cam.change(toggle_cam, [img_in, cam, session], [img_out, img_msg, img_plot, img_table, img_json],
                           api_name=False)
            with gr.Tab("Video", id="video"):
                gr.Markdown(f"Clips up to {settings.max_video_mb:g} MB, {settings.max_video_s:g} s and "
                            f"{settings.max_video_side} px on the longer side. Same analysis and CSV as "
                            "the batch tool (`python -m batch`).")
                with gr.Row():
                    with gr.Column(scale=1):
                        vid_in = gr.Video(sources=["upload"], label="Clip", elem_id="video-input")
                        vid_btn = gr.Button("Analyse", variant="primary", elem_id="analyze-video")
                    with gr.Column(scale=1):
                        vid_out = gr.Video(label="Annotated preview (H.264)", elem_id="video-output")
                vid_msg = gr.Markdown(elem_id="video-message")
                vid_plot = gr.Plot(label="Timeline per face (spotted intervals shaded)", elem_id="video-plot")
                vid_iv = gr.Dataframe(label="Spotted intervals", interactive=False)
                vid_csv = gr.File(label="Per-frame CSV")
                exv = sorted(EXAMPLES.glob("*.mp4"))
                if exv:
                    gr.Examples([[str(p)] for p in exv], [vid_in])
                vid_btn.click(analyze, [vid_in, session], [vid_msg, vid_out, vid_plot, vid_iv, vid_csv],
                              api_name="analyze_video")
            with gr.Tab("Model", id="model"):
                gr.Markdown("Load your own checkpoint for **this browser session only** (`.safetensors` "
                            "written by `mer.save_checkpoint`, plus its `.json` model card if the card is "
                            "not embedded). It is validated; a wrong file is refused with the reason.")
                w_in = gr.File(label="weights (.safetensors)", file_types=[".safetensors"], type="filepath")
                c_in = gr.File(label="model card (.json, optional)", file_types=[".json"], type="filepath")
                with gr.Row():
                    load_btn = gr.Button("Load for my session", variant="primary")
                    reset_btn = gr.Button("Back to the default model")
                load_btn.click(load_own, [w_in, c_in], [session, banner], api_name="load_checkpoint")
                reset_btn.click(reset_own, None, [session, banner], api_name=False)
    return demo


def main() -> None:
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so atexit clean-up runs on `kill`
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = AppSettings()
    t0 = time.perf_counter()
    try:
        predictor = Predictor(s.checkpoint, device=s.device)
    except CheckpointError as e:
        sys.exit(f"app.py: cannot load the model: {e}\n(set MER_CHECKPOINT to a .safetensors checkpoint)")
    predictor.detector  # build MTCNN now, not on the first request
    name = Path(predictor.checkpoint).name
    demo = build_app(Model(predictor, name), s)
    demo.queue(max_size=s.queue_size, default_concurrency_limit=s.concurrency)
    log.info("model %s on %s loaded in %.1f s", name, predictor.device, time.perf_counter() - t0)
    demo.launch(server_name=s.server_name, server_port=s.server_port, share=False, show_error=False,
                max_file_size=s.max_file_size, ssr_mode=False, footer_links=["api"],
                state_session_capacity=200)  # bounded memory for per-session models


if __name__ == "__main__":
    main()
