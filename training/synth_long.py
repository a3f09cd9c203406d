"""Long synthetic videos with spotting ground truth:
`python -m training.synth_long --faces DIR --out DIR [--videos N --seconds S --seed K]`, or planted
into real clips: `python -m training.synth_long --background CLIP[@START-END] ... --out DIR` (see
training.backgrounds: warps placed from each frame's tracked landmarks, natural.csv).

Each video is one real face photo (found by MTCNN) animated frame by frame at 30 fps and encoded
as H.264 (imageio-ffmpeg's bundled ffmpeg). Planted in it, never overlapping and at least
`gap_s` apart: micro-expressions (0.2-0.5 s) and macro-expressions (0.6-4 s) made of FACS
action-unit warps (training.synth's AU table) at varied amplitudes, each with an onset -> apex ->
(hold) -> offset time course. Distractors that are not expressions: blinks, slow head sway
(translation, rotation, scale), quick head shifts, lighting drift, sensor noise and the H.264
compression itself.

Output (OUT/):
    videos/<subject>_<k>.mp4
    truth.csv, truth.xlsx     one row per planted expression (SAMM-LV style columns, below)
    distractors.csv           blinks and head shifts (for diagnosing false positives)

Truth columns: Subject, Filename (the video's stem), Onset, Apex, Offset (0-based frame indexes
of the decoded video, inclusive), Duration (frames), Type ("Micro - 1/2" or "Macro", as in
SAMM-LV), Action Units, Estimated Emotion, Amplitude (pixels at apex), onset_s, apex_s, offset_s
(the frames' start times; offset_s is the offset frame's end).
"""
from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mer.faces import FaceDetector
from mer.images import read_image
from mer.files import atomic_path, atomic_write

from .synth import EMOTIONS

TRUTH_COLUMNS = ["Subject", "Filename", "Onset", "Apex", "Offset", "Duration", "Type", "Action Units",
                 "Estimated Emotion", "Amplitude", "onset_s", "apex_s", "offset_s"]
MICRO_TYPE, MACRO_TYPE = "Micro - 1/2", "Macro"


@dataclass
class LongConfig:
    videos: int = 6
    seconds: float = 60.0
    fps: float = 30.0
    width: int = 480
    height: int = 360
    face_px: tuple = (150.0, 190.0)    # face box width in the frame
    micro_per_min: int = 8
    macro_per_min: int = 4
    blinks_per_min: int = 10
    shifts_per_min: int = 3            # quick head shifts (translation + a little rotation)
    micro_s: tuple = (0.2, 0.5)
    macro_s: tuple = (0.6, 4.0)
    micro_amp: tuple = (2.0, 4.0)      # pixels at apex
    macro_amp: tuple = (3.0, 7.0)
    gap_s: float = 1.5                 # min gap between planted expressions
    noise: float = 2.0                 # sensor noise (grey levels, std)
    crf: int = 23                      # H.264 quality
    seed: int = 0
    busy_gap_s: float = 0.3            # background clips: planted expressions keep this far from natural ones
    scale: float = 1.0                 # background clips: frames resized by this factor


@dataclass
class Event:
    kind: str          # "micro" | "macro" | "blink" | "shift"
    t0: float          # onset, seconds
    t1: float          # offset, seconds
    apex: float        # apex time (for shifts: the end of the move)
    amp: float         # pixels (shift: pixels of translation)
    emotion: str = ""
    aus: tuple = ()
    extra: dict = field(default_factory=dict)

    def level(self, t: float) -> float:
        """0..1 intensity at time t (raised-cosine rise to apex, hold, raised-cosine fall)."""
        if t <= self.t0 or t >= self.t1:
            return 0.0 if self.kind != "shift" or t <= self.t0 else 1.0
        if self.kind == "shift":
            return 0.5 - 0.5 * math.cos(math.pi * (t - self.t0) / (self.t1 - self.t0))
        hold_end = self.extra.get("hold_end", self.apex)
        if t < self.apex:
            x = (t - self.t0) / (self.apex - self.t0)
        elif t <= hold_end:
            return 1.0
        else:
            x = (self.t1 - t) / (self.t1 - hold_end)
        return 0.5 - 0.5 * math.cos(math.pi * x)


# ---------------------------------------------------------------------------------------------- faces

def load_faces(faces_dir, detector=None, min_px: int = 80) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """(image, box, 5 landmarks, name) of every face >= min_px wide in the photos of faces_dir (a
    folder, or one photo)."""
    faces_dir = Path(faces_dir)
    paths = [faces_dir] if faces_dir.is_file() else sorted(
        p for p in faces_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    det = detector or FaceDetector(device="cpu")
    out = []
    for p in paths:
        img = read_image(p)
        for k, f in enumerate(det.detect([img])[0]):
            if f.box[2] - f.box[0] >= min_px:
                out.append((img, np.asarray(f.box, np.float32), np.asarray(f.landmarks, np.float32), f"{p.stem}#{k}"))
    if not out:
        raise SystemExit(f"no usable faces (>= {min_px} px) found in {faces_dir}")
    return out


def place_face(img, box, lm, cfg: LongConfig, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The video's base frame (float32 RGB) with the face scaled to face_px near the centre, and the
    face's box and landmarks in frame pixels. A mirror image, gamma and contrast vary the subject."""
    if rng.random() < 0.5:
        w = img.shape[1]
        img = img[:, ::-1]
        box = np.float32([w - 1 - box[2], box[1], w - 1 - box[0], box[3]])
        lm = lm.copy()
        lm[:, 0] = w - 1 - lm[:, 0]
        lm = lm[[1, 0, 2, 4, 3]]  # left/right eye and mouth corner swap places
    s = rng.uniform(*cfg.face_px) / float(box[2] - box[0])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    tx = cfg.width / 2 + rng.uniform(-0.1, 0.1) * cfg.width - s * cx
    ty = cfg.height / 2 + rng.uniform(-0.05, 0.05) * cfg.height - s * cy
    m = np.float32([[s, 0, tx], [0, s, ty]])
    base = cv2.warpAffine(np.ascontiguousarray(img), m, (cfg.width, cfg.height),
                          flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    base = base.astype(np.float32)
    base = 255 * (base / 255) ** rng.uniform(0.8, 1.25)
    base = (base - base.mean()) * rng.uniform(0.85, 1.15) + base.mean()
    box_f = np.float32([box[0] * s + tx, box[1] * s + ty, box[2] * s + tx, box[3] * s + ty])
    lm_f = np.c_[lm, np.ones(5)] @ m.T
    return np.clip(base, 0, 255), box_f, lm_f.astype(np.float32)


# --------------------------------------------------------------------------------------------- events

def _free(t0, t1, taken, gap) -> bool:
    return all(t1 + gap <= a or t0 >= b + gap for a, b in taken)


def expression(kind: str, t0: float, dur: float, amp: float, emotion: str, rng) -> Event:
    """A micro- or macro-expression starting at t0 lasting dur seconds."""
    t1 = t0 + dur
    if kind == "micro":
        return Event(kind, t0, t1, t0 + rng.uniform(0.35, 0.55) * dur, amp, emotion, EMOTIONS[emotion])
    rise, fall = max(0.15, rng.uniform(0.2, 0.35) * dur), max(0.2, rng.uniform(0.25, 0.4) * dur)
    return Event(kind, t0, t1, t0 + rise, amp, emotion, EMOTIONS[emotion], {"hold_end": t1 - fall})


def plan_events(cfg: LongConfig, rng, busy=()) -> list[Event]:
    """Random non-overlapping expressions (kept `busy_gap_s` away from the `busy` (t0, t1)
    intervals: a background clip's own expressions), then blinks and head shifts away from them."""
    dur, minutes = cfg.seconds, cfg.seconds / 60.0
    kinds = ["micro"] * round(cfg.micro_per_min * minutes) + ["macro"] * round(cfg.macro_per_min * minutes)
    rng.shuffle(kinds)
    events, taken = [], []
    for kind in kinds:
        lo, hi = cfg.micro_s if kind == "micro" else cfg.macro_s
        amp_lo, amp_hi = cfg.micro_amp if kind == "micro" else cfg.macro_amp
        for _ in range(200):
            d = rng.uniform(lo, hi)
            t0 = rng.uniform(1.0, dur - 1.0 - d)
            if _free(t0, t0 + d, taken, cfg.gap_s) and _free(t0, t0 + d, busy, cfg.busy_gap_s):
                events.append(expression(kind, t0, d, rng.uniform(amp_lo, amp_hi), str(rng.choice(list(EMOTIONS))), rng))
                taken.append((t0, t0 + d))
                break
    others = []
    for kind, n, (lo, hi), away in (("blink", cfg.blinks_per_min, (0.1, 0.3), 0.4),
                                     ("shift", cfg.shifts_per_min, (0.3, 0.8), 0.3)):
        for _ in range(round(n * minutes)):
            for _ in range(200):
                d = rng.uniform(lo, hi)
                t0 = rng.uniform(0.3, dur - 0.3 - d)
                if _free(t0, t0 + d, taken, away) and _free(t0, t0 + d, [(e.t0, e.t1) for e in others], 0.2):
                    amp = rng.uniform(0.8, 1.0) if kind == "blink" else rng.uniform(4, 10)
                    ev = Event(kind, t0, t0 + d, t0 + d / 2, amp)
                    if kind == "shift":
                        a = rng.uniform(0, 2 * np.pi)
                        ev.extra = {"dir": (math.cos(a), math.sin(a)), "rot": rng.uniform(-2.5, 2.5)}
                    others.append(ev)
                    break
    return sorted(events + others, key=lambda e: e.t0)


# ---------------------------------------------------------------------------------------------- render

# FACS-like action units for the face mesh to see: each AU moves its own part of the face, gated so
# the features next to it stay put (brows move without the eyes, lids without the brows, lips
# without the nose). Per AU: (anchor, centre offset, spread x/y, displacement direction, gate), in
# eye distances; anchors le/re (eyes, image left/right), nose, ml/mr (mouth corners), mc (mouth
# centre); "in" points towards the face's midline; gate (side, anchor row, offset): only rows above
# ("up") or below ("down") the anchor's row + offset move (a soft edge of 0.05 eye distances).
FACS_WARPS = {
    1: [("le", (0.12, -0.32), (0.13, 0.10), ("in", 0.0, -1.0), ("up", "eye", -0.17))],
    2: [("le", (-0.22, -0.28), (0.13, 0.10), ("in", 0.0, -1.0), ("up", "eye", -0.15))],
    4: [("le", (0.10, -0.28), (0.16, 0.10), ("in", 0.5, 0.85), ("up", "eye", -0.15))],
    5: [("le", (0.0, -0.08), (0.14, 0.05), ("in", 0.0, -1.0), ("up", "eye", 0.0))],
    6: [("le", (0.0, 0.34), (0.20, 0.12), ("in", 0.0, -1.0), ("down", "eye", 0.12))],
    7: [("le", (0.0, 0.08), (0.14, 0.05), ("in", 0.0, -1.0), ("down", "eye", 0.0))],
    9: [("nose", (0.12, -0.18), (0.10, 0.12), ("in", 0.0, -1.0), ("down", "eye", 0.15))],
    10: [("mc", (0.0, -0.10), (0.30, 0.08), ("in", 0.0, -1.0), ("up", "mouth", -0.02))],
    12: [("ml", (0.0, 0.0), (0.12, 0.10), ("in", -0.7, -0.7), None)],
    14: [("ml", (0.0, 0.0), (0.08, 0.08), ("in", 0.6, 0.0), None)],
    15: [("ml", (0.0, 0.0), (0.12, 0.10), ("in", 0.0, 1.0), None)],
    17: [("mc", (0.0, 0.32), (0.22, 0.12), ("in", 0.0, -1.0), ("down", "mouth", 0.04))],
    20: [("ml", (0.0, 0.0), (0.12, 0.08), ("in", -1.0, 0.0), None)],
    23: [("ml", (0.0, 0.0), (0.12, 0.08), ("in", 0.8, 0.0), None)],
    24: [("mc", (0.0, -0.07), (0.30, 0.05), ("in", 0.0, 0.6), ("up", "mouth", 0.0)),
         ("mc", (0.0, 0.07), (0.30, 0.05), ("in", 0.0, -0.6), ("down", "mouth", 0.0))],
    26: [("mc", (0.0, 0.40), (0.50, 0.30), ("in", 0.0, 1.0), ("down", "mouth", 0.02))],
}
_MIRROR = {"le": "re", "ml": "mr"}   # paired anchors: the table gives the image-left one


def au_field(lm: np.ndarray, aus, x0: int, y0: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-amplitude displacement (fx, fy) of action units on the ROI [x0, x0+w) x [y0, y0+h):
    FACS_WARPS, each bump mirrored onto the other side of the face (an AU without a warp moves
    nothing). Displacements are at most 1 (times the event's amplitude in pixels)."""
    le, re, nose, ml, mr = (np.asarray(p, np.float64) for p in lm)
    d = float(np.linalg.norm(re - le))
    anchors = {"le": le, "re": re, "nose": nose, "ml": ml, "mr": mr, "mc": (ml + mr) / 2}
    rows = {"eye": (le[1] + re[1]) / 2, "mouth": (ml[1] + mr[1]) / 2}
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    fx, fy = np.zeros_like(xx), np.zeros_like(yy)
    for au in aus:
        for name, (ox, oy), (sx, sy), (_, dx, dy), gate in FACS_WARPS.get(au, []):
            if name in _MIRROR:      # image-left feature (midline at +x) and its mirror
                copies = [(anchors[name], ox, 1.0), (anchors[_MIRROR[name]], -ox, -1.0)]
            elif name == "nose":     # both sides of the nose
                copies = [(nose, -ox, 1.0), (nose, ox, -1.0)]
            else:
                copies = [(anchors[name], ox, 1.0)]
            for a, off_x, inward in copies:
                cx, cy = a[0] + off_x * d, a[1] + oy * d
                g = np.exp(-((xx - cx) ** 2 / (2 * (sx * d) ** 2) + (yy - cy) ** 2 / (2 * (sy * d) ** 2)))
                if gate is not None:
                    where, row, off = gate
                    t = (yy - (rows[row] + off * d)) / (0.05 * d)
                    g = g / (1 + np.exp(np.clip(t if where == "up" else -t, -50, 50)))
                fx += inward * dx * g
                fy += dy * g
    return fx, fy


def blink_field(lm: np.ndarray, x0: int, y0: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit blink: rows around each eye are pulled towards the eye line (lids closing)."""
    d = float(np.linalg.norm(lm[1] - lm[0]))
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    fy = np.zeros_like(yy)
    for ex, ey in lm[:2]:
        g = np.exp(-((xx - ex) ** 2 / (2 * (0.22 * d) ** 2) + (yy - ey) ** 2 / (2 * (0.1 * d) ** 2)))
        fy += -0.12 * d * g * np.tanh((yy - ey) / (0.04 * d))  # sample from further out: lids move in
    return np.zeros_like(fy), fy


class Renderer:
    """Frame t (seconds) of one video: AU and blink warps on the face ROI, head pose, light, noise."""

    def __init__(self, base, box, lm, events, cfg: LongConfig, rng):
        self.base, self.lm, self.events, self.cfg = base, lm, events, cfg
        fw = box[2] - box[0]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        self.center = (float(cx), float(cy))
        self.x0, self.y0 = int(max(0, cx - 0.9 * fw)), int(max(0, cy - 0.9 * fw))
        self.w = int(min(cfg.width, cx + 0.9 * fw)) - self.x0
        self.h = int(min(cfg.height, cy + 0.9 * fw)) - self.y0
        yy, xx = np.mgrid[self.y0:self.y0 + self.h, self.x0:self.x0 + self.w].astype(np.float32)
        self.gx, self.gy = xx, yy
        self._fields: dict[int, tuple] = {}
        self.sway = [(rng.uniform(1, 4), rng.uniform(4, 12), rng.uniform(0, 2 * np.pi)) for _ in range(6)]
        self.light = (rng.uniform(-0.12, 0.12), rng.uniform(20, 60), rng.uniform(0, 2 * np.pi),
                      rng.uniform(-15, 15))
        self.ramp = np.linspace(-1, 1, cfg.width, dtype=np.float32)[None, :, None]
        self.noise = np.empty((cfg.height, cfg.width, 3), np.float32)
        self.rng = rng

    def _field(self, ev: Event):
        key = id(ev)
        if key not in self._fields:
            if ev.kind == "blink":
                self._fields[key] = blink_field(self.lm, self.x0, self.y0, self.w, self.h)
            else:
                self._fields[key] = au_field(self.lm, ev.aus, self.x0, self.y0, self.w, self.h)
        return self._fields[key]

    def pose(self, t: float) -> np.ndarray:
        s = lambda k, scale: sum(a * math.sin(2 * math.pi * t / p + ph + k) for a, p, ph in self.sway[k::3]) * scale  # noqa: E731
        tx, ty, rot = s(0, 1.0), s(1, 0.7), s(2, 0.4)
        scale = 1 + 0.004 * s(0, 1.0) * math.sin(t / 7)
        for ev in self.events:
            if ev.kind == "shift":
                lv = ev.level(t)
                tx += lv * ev.amp * ev.extra["dir"][0]
                ty += lv * ev.amp * ev.extra["dir"][1] * 0.5
                rot += lv * ev.extra["rot"]
        m = cv2.getRotationMatrix2D(self.center, rot, scale)
        m[:, 2] += (tx, ty)
        return m

    def frame(self, t: float) -> np.ndarray:
        fx = fy = None
        for ev in self.events:
            if ev.kind in ("micro", "macro", "blink") and ev.t0 < t < ev.t1:
                a = ev.level(t) * ev.amp
                ux, uy = self._field(ev)
                fx = a * ux if fx is None else fx + a * ux
                fy = a * uy if fy is None else fy + a * uy
            elif ev.t1 < t - 1 and id(ev) in self._fields:
                del self._fields[id(ev)]  # memory stays flat in video length
        img = self.base
        if fx is not None:
            img = img.copy()
            img[self.y0:self.y0 + self.h, self.x0:self.x0 + self.w] = cv2.remap(
                self.base, self.gx - fx, self.gy - fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        img = cv2.warpAffine(img, self.pose(t), (self.cfg.width, self.cfg.height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        amp, period, ph, grad = self.light
        gain = 1 + amp * math.sin(2 * math.pi * t / period + ph)
        img = img * gain + (grad * math.sin(2 * math.pi * t / (1.7 * period))) * self.ramp
        cv2.randn(self.noise, 0, self.cfg.noise)
        return np.clip(img + self.noise, 0, 255).astype(np.uint8)


def write_video(path: Path, frames, cfg: LongConfig) -> Path:
    """H.264 (yuv420p, crf) via mer.encode.write_h264 (imageio-ffmpeg's ffmpeg), written atomically."""
    from mer.encode import write_h264
    return write_h264(frames, path, cfg.fps, crf=cfg.crf)


def to_vfr(src: Path, dst: Path, keep: str = "not(eq(mod(n,4),1))*not(eq(mod(n,7),3))") -> Path:
    """A variable-frame-rate twin of `src`: frames dropped by an ffmpeg select expression, the kept
    frames keep their original timestamps (so the same content sits at the same seconds)."""
    import subprocess
    import imageio_ffmpeg
    with atomic_path(dst) as tmp:
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src),
                        "-vf", f"select='{keep}'", "-fps_mode", "passthrough", "-c:v", "libx264", "-crf", "18",
                        "-preset", "veryfast", "-f", "mp4", str(tmp)], check=True)
    return Path(dst)


def truth_rows(events, subject: str, name: str, fps: float) -> list[dict]:
    rows = []
    for e in events:
        if e.kind not in ("micro", "macro"):
            continue
        on, off = math.floor(e.t0 * fps) + 1, math.ceil(e.t1 * fps) - 1
        apex = min(max(round(e.apex * fps), on), off)
        rows.append({"Subject": subject, "Filename": name, "Onset": on, "Apex": apex, "Offset": off,
                     "Duration": off - on + 1, "Type": MICRO_TYPE if e.kind == "micro" else MACRO_TYPE,
                     "Action Units": "+".join(map(str, e.aus)), "Estimated Emotion": e.emotion,
                     "Amplitude": round(e.amp, 3), "onset_s": round(on / fps, 6), "apex_s": round(apex / fps, 6),
                     "offset_s": round((off + 1) / fps, 6)})
    return rows


def render_video(path, face, events, cfg: LongConfig, rng) -> Path:
    """One video from one face (image, box, landmarks, name) and its events."""
    img, box, lm, _ = face
    base, box_f, lm_f = place_face(img, box, lm, cfg, rng)
    r = Renderer(base, box_f, lm_f, events, cfg, rng)
    n = int(round(cfg.seconds * cfg.fps))
    return write_video(path, (r.frame(i / cfg.fps) for i in range(n)), cfg)


def generate(out, faces_dir, cfg: LongConfig = LongConfig(), detector=None, log=print) -> pd.DataFrame:
    """cfg.videos videos in OUT/videos plus truth.csv/.xlsx and distractors.csv; returns the truth."""
    out = Path(out)
    rng = np.random.default_rng(cfg.seed)
    faces = load_faces(faces_dir, detector)
    order = rng.permutation(len(faces))
    truth, distract = [], []
    for v in range(cfg.videos):
        face = faces[order[v % len(faces)]]
        subject = f"s{order[v % len(faces)]:02d}"  # one subject per face photo
        name = f"{subject}_{v:03d}"
        events = plan_events(cfg, rng)
        render_video(out / "videos" / f"{name}.mp4", face, events, cfg, rng)
        truth += truth_rows(events, subject, name, cfg.fps)
        distract += [{"Filename": name, "kind": e.kind, "onset_s": round(e.t0, 4), "offset_s": round(e.t1, 4),
                      "amplitude": round(e.amp, 3)} for e in events if e.kind in ("blink", "shift")]
        log(f"{name}: {face[3]}, {sum(e.kind == 'micro' for e in events)} micro, "
            f"{sum(e.kind == 'macro' for e in events)} macro, {sum(e.kind == 'blink' for e in events)} blinks, "
            f"{sum(e.kind == 'shift' for e in events)} head shifts")
    df = pd.DataFrame(truth, columns=TRUTH_COLUMNS)
    write_truth(df, out)
    atomic_write(out / "distractors.csv", pd.DataFrame(distract).to_csv(index=False, lineterminator="\n"))
    return df


def write_truth(df: pd.DataFrame, out: Path) -> None:
    atomic_write(out / "truth.csv", df.to_csv(index=False, lineterminator="\n"))
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as w:
        df.to_excel(w, index=False, sheet_name="truth")
    atomic_write(out / "truth.xlsx", buf.getvalue())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.synth_long", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--faces", help="folder of face photos (each face >= 80 px is one subject)")
    src.add_argument("--background", nargs="+", metavar="CLIP[@START-END]",
                     help="real clips to plant the expressions into (training.backgrounds)")
    p.add_argument("--out", required=True)
    for f in fields(LongConfig):
        if f.type in ("int", "float", int, float):
            p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
        elif f.type in ("tuple", tuple):
            p.add_argument("--" + f.name.replace("_", "-"), type=float, nargs=2, default=f.default,
                           metavar=("LO", "HI"))
    a = p.parse_args(argv)
    if a.faces and not Path(a.faces).exists():
        p.error(f"--faces {a.faces}: no such folder or photo")
    cfg = LongConfig(**{f.name: (tuple(getattr(a, f.name)) if isinstance(f.default, tuple) else getattr(a, f.name))
                        for f in fields(LongConfig) if hasattr(a, f.name)})
    if cfg.seconds < 5 or cfg.videos < 1:
        p.error("--seconds must be >= 5 and --videos >= 1")
    if a.background:
        from .backgrounds import generate_on_clips
        df = generate_on_clips(a.out, a.background, cfg)
    else:
        df = generate(a.out, a.faces, cfg)
    print(f"wrote {cfg.videos} videos ({cfg.seconds:g} s) with {len(df)} planted expressions "
          f"({(df['Type'] == MICRO_TYPE).sum()} micro) to {a.out}")


if __name__ == "__main__":
    main()
