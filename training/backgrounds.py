"""Real clips as backgrounds for training.synth_long:
`python -m training.synth_long --background CLIP[@START-END] [CLIP ...] --out DIR [--videos N --seconds S --seed K]`.

The same FACS-like action-unit warps as the photo-animated videos (training.synth_long.au_field)
are planted into a real video. Every frame's warp is placed from that frame's own landmarks
(MTCNN's 5 points via mer.faces, a missed frame interpolated, smoothed over time with a
Savitzky-Golay filter), so a planted expression moves, turns and scales with the real head; its
amplitude is scaled with the face (the photo set's pixels at a 170-px face). A clip shorter
than the video is played forward, then backward, then forward again (ping-pong), so motion stays
continuous. `CLIP@START-END` uses only the seconds START..END of the clip (a split by background
segment). No blink, head shift, light drift or noise is added: the clip has its own.

The clips' own expressions are real but not planted: `training/natural.csv` labels them by hand
in clip seconds. Each video's stretches that show one (forward or backward) go to OUT/natural.csv
(Filename, label, Type, Onset, Offset, onset_s, offset_s): a spotted interval there is a natural
expression found, not a false positive (training.spot reports them apart).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

NATURAL_LABELS = Path(__file__).with_name("natural.csv")
NATURAL_COLUMNS = ["Filename", "label", "Type", "Onset", "Offset", "onset_s", "offset_s"]
REF_FACE_PX = 170.0   # the photo set's mean face width: amplitudes are pixels at this size


@dataclass
class Clip:
    name: str                 # the clip's file name (the key into natural.csv)
    frames: list              # RGB uint8, resized by the config's scale
    times: np.ndarray         # (n,) real start time of each frame, seconds
    boxes: np.ndarray         # (n, 4) smoothed face boxes
    landmarks: np.ndarray     # (n, 5, 2) smoothed landmarks
    fps: float


def parse_background(spec: str) -> tuple[Path, float | None, float | None]:
    """'clip.mp4' or 'clip.mp4@2.5-9' -> (path, start_s, end_s)."""
    path, _, rng = str(spec).partition("@")
    if not rng:
        return Path(path), None, None
    try:
        a, b = (float(v) for v in rng.split("-"))
    except ValueError:
        raise SystemExit(f"--background {spec}: expected CLIP or CLIP@START-END (seconds)") from None
    if b <= a:
        raise SystemExit(f"--background {spec}: END must be after START")
    return Path(path), a, b


def load_clip(spec: str, scale: float = 1.0, detector=None) -> Clip:
    """Decode the clip (mer.decode, real timestamps), keep START..END, detect the face on every
    frame (the most probable one; a frame without a face gets its neighbours' interpolation) and
    smooth the geometry over time."""
    from scipy.signal import savgol_filter

    from mer.decode import open_source
    from mer.faces import DetectorConfig, FaceDetector
    path, t0, t1 = parse_background(spec)
    if not path.is_file():
        raise SystemExit(f"--background {path}: no such file")
    frames, times = [], []
    with open_source(path, 32) as src:
        fps = float(src.info.fps) or 25.0
        for ch in src.chunks():
            for t, img in zip(ch.start_s, ch.frames):
                if (t0 is not None and t < t0) or (t1 is not None and t >= t1):
                    continue
                if scale != 1.0:
                    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                frames.append(np.ascontiguousarray(img))
                times.append(float(t))
    if len(frames) < 8:
        raise SystemExit(f"--background {spec}: only {len(frames)} frames in the chosen range")
    det = detector or FaceDetector(DetectorConfig(max_side=640), device="cpu")
    geo = np.full((len(frames), 14), np.nan)
    for s in range(0, len(frames), 16):
        for k, faces in enumerate(det.detect(frames[s:s + 16])):
            if faces:
                f = faces[0]
                geo[s + k] = np.r_[np.asarray(f.box, np.float64), np.asarray(f.landmarks, np.float64).ravel()]
    ok = np.isfinite(geo[:, 0])
    if ok.sum() < 0.8 * len(frames):
        raise SystemExit(f"--background {spec}: a face was found in only {ok.sum()} of {len(frames)} frames")
    idx = np.arange(len(frames))
    geo = np.stack([np.interp(idx, idx[ok], geo[ok, c]) for c in range(geo.shape[1])], 1)
    win = min(len(frames) - (1 - len(frames) % 2), max(5, int(round(0.3 * fps)) | 1))
    geo = savgol_filter(geo, win, 2, axis=0, mode="interp")
    return Clip(path.name, frames, np.asarray(times), geo[:, :4].astype(np.float32),
                geo[:, 4:].reshape(-1, 5, 2).astype(np.float32), fps)


def ping_pong(n_clip: int, n_out: int) -> np.ndarray:
    """Clip frame shown at each output frame: 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ..."""
    period = max(1, 2 * (n_clip - 1))
    k = np.arange(n_out) % period
    return np.where(k < n_clip, k, period - k)


def natural_rows(clip: Clip, order: np.ndarray, name: str, fps: float, labels: pd.DataFrame) -> list[dict]:
    """The output frames that show each hand-labelled natural expression of the clip, as runs."""
    out = []
    for _, r in labels[labels["clip"] == clip.name].iterrows():
        inside = (clip.times >= r["onset_s"]) & (clip.times <= r["offset_s"])
        if not inside.any():
            continue
        shown = np.r_[False, inside[order], False].astype(np.int8)
        d = np.diff(shown)
        for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1):
            out.append({"Filename": name, "label": r["label"], "Type": r["type"], "Onset": int(a), "Offset": int(b),
                        "onset_s": round(a / fps, 6), "offset_s": round((b + 1) / fps, 6)})
    return out


class ClipRenderer:
    """Output frame i: clip frame order[i] with the active events' AU warps placed from its landmarks."""

    def __init__(self, clip: Clip, order: np.ndarray, events, fps: float):
        self.clip, self.order, self.events, self.fps = clip, order, events, fps

    def frame(self, i: int) -> np.ndarray:
        from .synth_long import au_field
        j = int(self.order[i])
        img = self.clip.frames[j]
        t = i / self.fps
        active = [e for e in self.events if e.kind in ("micro", "macro") and e.t0 < t < e.t1]
        if not active:
            return img
        box, lm = self.clip.boxes[j], self.clip.landmarks[j]
        fw = float(box[2] - box[0])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        h, w = img.shape[:2]
        x0, y0 = int(max(0, cx - 0.9 * fw)), int(max(0, cy - 0.9 * fw))
        x1, y1 = int(min(w, cx + 0.9 * fw)), int(min(h, cy + 0.9 * fw))
        fx = fy = 0.0
        for e in active:
            ux, uy = au_field(lm, e.aus, x0, y0, x1 - x0, y1 - y0)
            a = e.level(t) * e.amp * fw / REF_FACE_PX
            fx, fy = fx + a * ux, fy + a * uy
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        out = img.copy()
        out[y0:y1, x0:x1] = cv2.remap(img, xx - fx, yy - fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out


def render_on_clip(path, clip: Clip, events, seconds: float, crf: int = 23) -> Path:
    """One video of `seconds` from `clip` (ping-pong) with `events` planted; H.264 at the clip's rate."""
    from mer.encode import write_h264
    n = int(round(seconds * clip.fps))
    r = ClipRenderer(clip, ping_pong(len(clip.frames), n), events, clip.fps)
    return write_h264((r.frame(i) for i in range(n)), path, clip.fps, crf=crf)


def generate_on_clips(out, specs: list[str], cfg, log=print) -> pd.DataFrame:
    """cfg.videos videos, round-robin over the background clips: OUT/videos, truth.csv/.xlsx,
    natural.csv and distractors.csv (empty: nothing is added but the planted expressions)."""
    from mer.files import atomic_write

    from .synth_long import TRUTH_COLUMNS, plan_events, truth_rows, write_truth
    out = Path(out)
    rng = np.random.default_rng(cfg.seed)
    labels = pd.read_csv(NATURAL_LABELS)
    clips = [load_clip(s, cfg.scale) for s in specs]
    truth, natural = [], []
    for v in range(cfg.videos):
        ci = v % len(clips)
        clip = clips[ci]
        fps = clip.fps
        vcfg = replace(cfg, fps=fps, blinks_per_min=0, shifts_per_min=0)
        n = int(round(cfg.seconds * fps))
        order = ping_pong(len(clip.frames), n)
        subject = Path(clip.name).stem.split("_")[0].lower()
        name = f"{subject}_{cfg.seed}_{v:03d}"
        nat = natural_rows(clip, order, name, fps, labels)
        busy = [(r["onset_s"], r["offset_s"]) for r in nat]
        events = plan_events(vcfg, rng, busy)
        render_on_clip(out / "videos" / f"{name}.mp4", clip, events, cfg.seconds, cfg.crf)
        truth += truth_rows(events, subject, name, fps)
        natural += nat
        fw = float(np.median(clip.boxes[:, 2] - clip.boxes[:, 0]))
        log(f"{name}: {specs[ci]} ({len(clip.frames)} frames, face ~{fw:.0f} px), "
            f"{sum(e.kind == 'micro' for e in events)} micro, {sum(e.kind == 'macro' for e in events)} macro, "
            f"{len(nat)} natural stretches")
    df = pd.DataFrame(truth, columns=TRUTH_COLUMNS)
    write_truth(df, out)
    atomic_write(out / "natural.csv", pd.DataFrame(natural, columns=NATURAL_COLUMNS).to_csv(index=False, lineterminator="\n"))
    atomic_write(out / "distractors.csv", "Filename,kind,onset_s,offset_s,amplitude\n")
    return df
