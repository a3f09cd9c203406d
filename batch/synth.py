"""Generated test/bench clips: face photos on a canvas with small motion, written with OpenCV
(mp4v). Nothing is committed; clips are made in temp folders when needed."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_face_clip(out: str | Path, photos: list, seconds: float, fps: float = 25.0,
                   size: tuple[int, int] = (640, 360), amplitude: float = 3.0) -> Path:
    """Side-by-side tiles of the given RGB photos (arrays or paths), each drifting a few pixels
    (sinusoid), with a brief larger jolt every ~3 s (something for the spotter to find)."""
    from mer.images import read_image
    w, h = size
    tiles = []
    for k, p in enumerate(photos):
        img = read_image(p)
        tw = w // len(photos)
        s = min(tw / img.shape[1], h / img.shape[0]) * 0.9
        tiles.append(cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))),
                                interpolation=cv2.INTER_AREA))
    out = Path(out)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {out}")
    n = max(1, int(round(seconds * fps)))
    try:
        for i in range(n):
            canvas = np.full((h, w, 3), 40, np.uint8)
            jolt = 6.0 if (i % int(3 * fps)) in range(int(fps * 0.1)) else 0.0
            for k, t in enumerate(tiles):
                dx = int(round(amplitude * np.sin(i / fps * 2 + k) + jolt))
                dy = int(round(amplitude * np.cos(i / fps * 1.3 + k)))
                x0 = k * (w // len(tiles)) + (w // len(tiles) - t.shape[1]) // 2 + dx
                y0 = (h - t.shape[0]) // 2 + dy
                xa, ya = max(0, x0), max(0, y0)
                xb, yb = min(w, x0 + t.shape[1]), min(h, y0 + t.shape[0])
                canvas[ya:yb, xa:xb] = t[ya - y0:yb - y0, xa - x0:xb - x0]
            writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return out
