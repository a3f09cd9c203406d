"""Synthetic micro-expressions in the SAMM layout: `python -m training.synth --faces DIR --out runs/synth`.

Faces come from a folder of photos (MTCNN finds them) or scikit-image's public-domain astronaut.
Emotions are FACS action units applied as small smooth local warps placed by the landmarks, with an
onset->apex->offset time course at 200 fps, plus head jitter, blink, noise and lighting drift.
"""
import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mer.faces import FaceDetector, align_crop, align_matrix
from mer.files import atomic_write
from mer.images import read_image

# AU -> list of (anchor, offset in eye-distance units, displacement direction)
# anchors: le, re (eyes, image left/right), nose, ml, mr (mouth corners), mc (mouth centre)
AUS = {
    1: [("le", (0.15, -0.35), (0, -1)), ("re", (-0.15, -0.35), (0, -1))],
    2: [("le", (-0.2, -0.35), (0, -1)), ("re", (0.2, -0.35), (0, -1))],
    4: [("le", (0.2, -0.3), (0.6, 0.8)), ("re", (-0.2, -0.3), (-0.6, 0.8))],
    5: [("le", (0, -0.12), (0, -0.6)), ("re", (0, -0.12), (0, -0.6))],
    6: [("le", (0, 0.3), (0, -1)), ("re", (0, 0.3), (0, -1))],
    7: [("le", (0, 0.12), (0, -0.6)), ("re", (0, 0.12), (0, -0.6))],
    9: [("nose", (-0.15, -0.15), (0, -1)), ("nose", (0.15, -0.15), (0, -1))],
    10: [("mc", (0, -0.15), (0, -1))],
    12: [("ml", (0, 0), (-0.7, -0.7)), ("mr", (0, 0), (0.7, -0.7))],
    15: [("ml", (0, 0), (0, 1)), ("mr", (0, 0), (0, 1))],
    20: [("ml", (0, 0), (-1, 0)), ("mr", (0, 0), (1, 0))],
    23: [("ml", (0, 0), (0.8, 0)), ("mr", (0, 0), (-0.8, 0))],
    26: [("mc", (0, 0.25), (0, 1))],
}
EMOTIONS = {"Happiness": (6, 12), "Surprise": (1, 2, 5, 26), "Anger": (4, 7, 23),
            "Sadness": (1, 4, 15), "Disgust": (9, 10), "Fear": (1, 2, 4, 20)}


@dataclass
class SynthConfig:
    subjects: int = 8
    clips_per_class: int = 3
    size: int = 160
    frames: int = 24          # onset..offset at 200 fps
    amplitude: float = 4.0    # pixels at apex
    confound: float = 0.0     # per-subject class-dependent lighting (0 = off)
    seed: int = 0


def load_faces(faces_dir, size, detector=None):
    """Aligned face crops + their 5 landmarks in crop coordinates."""
    if faces_dir:
        paths = sorted(p for p in Path(faces_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        images = [read_image(p) for p in paths]
    else:
        from skimage import data
        paths, images = ["astronaut"], [data.astronaut()]
    det = detector or FaceDetector(device="cpu")
    out = []
    for img, found in zip(images, det.detect(images)):
        for f in found:
            if f.box[2] - f.box[0] < 60:
                continue
            m = align_matrix(f, size, 0.15)
            lm = np.c_[f.landmarks, np.ones(5)] @ m.T
            out.append((align_crop(img, f, size, 0.15), lm.astype(np.float32)))
    if not out:
        raise SystemExit(f"no usable faces (>=60 px) found in {faces_dir or 'astronaut'}")
    return out


def flow_field(lm, aus, size, amp):
    le, re, nose, ml, mr = lm
    anchors = {"le": le, "re": re, "nose": nose, "ml": ml, "mr": mr, "mc": (ml + mr) / 2}
    d = np.linalg.norm(re - le)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    fx, fy = np.zeros_like(xx), np.zeros_like(yy)
    sigma = 0.18 * d
    for au in aus:
        for name, (ox, oy), (dx, dy) in AUS[au]:
            cx, cy = anchors[name] + np.array([ox, oy]) * d
            g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
            fx += amp * dx * g
            fy += amp * dy * g
    return fx, fy


def make_subject(face, lm, rng, size):
    """Per-subject appearance change: flip, gamma, contrast, blur, small scale/shift."""
    img = face.astype(np.float32)
    if rng.random() < 0.5:
        img = img[:, ::-1].copy()
        lm = lm.copy(); lm[:, 0] = size - 1 - lm[:, 0]
        lm = lm[[1, 0, 2, 4, 3]]
    img = 255 * (img / 255) ** rng.uniform(0.7, 1.4)
    img = (img - img.mean()) * rng.uniform(0.7, 1.3) + img.mean() + rng.uniform(-25, 25)
    s, tx, ty = rng.uniform(0.92, 1.08), rng.uniform(-5, 5), rng.uniform(-5, 5)
    m = np.float32([[s, 0, (1 - s) * size / 2 + tx], [0, s, (1 - s) * size / 2 + ty]])
    img = cv2.warpAffine(np.clip(img, 0, 255).astype(np.uint8), m, (size, size), borderMode=cv2.BORDER_REPLICATE)
    lm = np.c_[lm, np.ones(5)] @ m.T
    return img, lm.astype(np.float32)


def render_clip(img, lm, aus, cfg, rng, light=0.0):
    n, size = cfg.frames, cfg.size
    onset, offset = 0, n - 1
    apex = int(rng.integers(n // 3, 2 * n // 3))
    amp = cfg.amplitude * rng.uniform(0.8, 1.2)
    fx, fy = flow_field(lm, aus, size, amp)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    blink = int(rng.integers(0, n)) if rng.random() < 0.3 else -10
    frames = []
    drift = rng.uniform(-6, 6)
    for t in range(n):
        a = t / apex if t <= apex else max(0.0, (offset - t) / (offset - apex))
        a = 0.5 - 0.5 * np.cos(np.pi * a)  # smooth
        jx, jy = rng.normal(0, 0.4, 2)
        mx, my = xx - a * fx - jx, yy - a * fy - jy
        if abs(t - blink) <= 2:  # blink: squash rows around the eyes
            for e in lm[:2]:
                mask = np.exp(-((xx - e[0]) ** 2 + (yy - e[1]) ** 2) / (2 * (0.1 * size) ** 2))
                my += mask * 3 * (1 - abs(t - blink) / 3) * np.sign(yy - e[1])
        f = cv2.remap(img, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        f += drift * t / n + light + rng.normal(0, 2.0, f.shape)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames, onset, apex, offset


def write_sheet(rows, path):
    """The SAMM spreadsheet: 13 preamble rows, the header on row 14."""
    df = pd.DataFrame(rows)

    def write(tmp):
        with pd.ExcelWriter(tmp, engine="openpyxl") as w:
            pd.DataFrame({"SAMM": ["Synthetic micro-expressions generated by training.synth"] + [""] * 11}).to_excel(
                w, index=False, startrow=0)
            df.to_excel(w, index=False, startrow=13)
    atomic_write(path, write)


def generate(out, faces_dir=None, cfg=SynthConfig(), detector=None):
    out = Path(out)
    rng = np.random.default_rng(cfg.seed)
    faces = load_faces(faces_dir, cfg.size, detector)
    rows, classes = [], list(EMOTIONS)
    for s in range(cfg.subjects):
        subj = f"{s + 1:03d}"
        face, lm = faces[s % len(faces)]
        img, lm = make_subject(face, lm, rng, cfg.size)
        light = {c: cfg.confound * rng.uniform(-30, 30) for c in classes}  # class-dependent lighting per subject
        k = 0
        for c in classes:
            for _ in range(cfg.clips_per_class):
                k += 1
                clip = f"{subj}_{k // 10 + 1}_{k % 10}"
                frames, on, ap, off = render_clip(img, lm, EMOTIONS[c], cfg, rng, light[c])
                d = out / "SAMM" / subj / clip
                d.mkdir(parents=True, exist_ok=True)
                first = 1000 + int(rng.integers(0, 500))
                for i, f in enumerate(frames):
                    cv2.imwrite(str(d / f"{subj}_{first + i:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 95])
                rows.append({"Subject": subj, "Filename": clip, "Inducement Code": 1, "Onset Frame": first + on,
                             "Apex Frame": first + ap, "Offset Frame": first + off, "Duration": off - on + 1,
                             "Type": "Micro - 1/2", "Action Units": "+".join(map(str, EMOTIONS[c])),
                             "Estimated Emotion": c, "Objective Classes": 0, "Notes": "synthetic"})
    write_sheet(rows, out / "SAMM_Micro_FACS_Codes_v2.xlsx")
    return out, len(faces)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.synth", description=__doc__)
    p.add_argument("--faces", default=None, help="folder of face photos (default: skimage astronaut)")
    p.add_argument("--out", required=True)
    for k, v in vars(SynthConfig()).items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    a = p.parse_args(argv)
    cfg = SynthConfig(**{k: getattr(a, k) for k in vars(SynthConfig())})
    out, n = generate(a.out, a.faces, cfg)
    print(f"wrote {cfg.subjects} subjects x {len(EMOTIONS)} classes x {cfg.clips_per_class} clips "
          f"from {n} faces to {out}")


if __name__ == "__main__":
    main()
