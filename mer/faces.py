"""Faces: facenet-pytorch MTCNN behind one call, plus aligned crops.

    detector = FaceDetector()
    faces_per_frame = detector.detect([frame1, frame2])   # list (per frame) of lists of Face

A frame with no face gives an empty list and never breaks the batch (upstream MTCNN.detect crashes
on mixed batches, facenet-pytorch #224, so we call its detect_face and unpack per frame ourselves).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .images import read_image


@dataclass
class Face:
    box: np.ndarray          # (4,) x1, y1, x2, y2 in frame pixels (may run past the border)
    prob: float              # MTCNN detection probability
    landmarks: np.ndarray    # (5, 2): left eye, right eye, nose, mouth left, mouth right

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "det_prob": round(float(self.prob), 4),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]}


@dataclass
class DetectorConfig:
    min_face_size: int = 20                       # pixels, in the (downscaled) detection image
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN's three stages
    min_prob: float = 0.9                          # drop weaker faces (removes obama.jpg's 0.82 false face)
    max_side: int = 640                            # downscale frames whose longer side exceeds this
    factor: float = 0.709
    batch_size: int = 16


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> $MER_DEVICE if set, else CUDA when present, else CPU."""
    import os
    if device is None or str(device) == "auto":
        device = os.environ.get("MER_DEVICE", "auto")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available")
    return dev


class FaceDetector:
    def __init__(self, config: DetectorConfig | None = None, device: str | torch.device | None = "auto"):
        from facenet_pytorch import MTCNN  # weights ship inside the facenet-pytorch wheel
        self.config = config or DetectorConfig()
        self.device = resolve_device(device)
        m = MTCNN(keep_all=True, device=self.device)
        self._nets = (m.pnet, m.rnet, m.onet)

    def _prepare(self, frame) -> tuple[np.ndarray, float]:
        img = read_image(frame)
        h, w = img.shape[:2]
        scale = min(1.0, self.config.max_side / max(h, w)) if self.config.max_side else 1.0
        if scale < 1.0:
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        return img, scale

    def _run(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from facenet_pytorch.models.utils.detect_face import detect_face
        c = self.config
        with torch.no_grad():
            try:
                boxes, points = detect_face(batch, c.min_face_size, *self._nets, list(c.thresholds),
                                            c.factor, self.device)
            except RuntimeError as e:  # torch.cat on an empty candidate list: no face anywhere
                if "expected a non-empty list" not in str(e):
                    raise
                return [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32))] * len(batch)
        return [(np.asarray(b, np.float32).reshape(-1, 5), np.asarray(p, np.float32).reshape(-1, 5, 2))
                for b, p in zip(boxes, points)]

    def detect(self, frames) -> list[list[Face]]:
        """Frames (paths, arrays or PIL images; any size) -> per frame, faces sorted by probability."""
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            frames = list(frames)
        elif not isinstance(frames, (list, tuple)):
            frames = [frames]
        prepared = [self._prepare(f) for f in frames]
        results: list[list[Face]] = [[] for _ in frames]
        groups: dict[tuple, list[int]] = {}
        for i, (img, _) in enumerate(prepared):
            groups.setdefault(img.shape, []).append(i)
        bs = max(1, self.config.batch_size)
        for idx in groups.values():
            for s in range(0, len(idx), bs):
                chunk = idx[s:s + bs]
                batch = np.stack([prepared[i][0] for i in chunk])
                for i, (boxes, pts) in zip(chunk, self._run(batch)):
                    scale = prepared[i][1]
                    faces = [Face(b[:4] / scale, float(b[4]), p / scale)
                             for b, p in zip(boxes, pts) if b[4] >= self.config.min_prob]
                    results[i] = sorted(faces, key=lambda f: -f.prob)
        return results

    def __call__(self, frames) -> list[list[Face]]:
        return self.detect(frames)


def align_matrix(face: Face, size: int | tuple[int, int] = 128, margin: float = 0.15) -> np.ndarray:
    """2x3 affine: rotate so the eye line is level, scale a square around the face padded by
    `margin` (a fraction of the face size on each side) onto a `size` crop."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x1, y1, x2, y2 = (float(v) for v in face.box)
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    angle = math.degrees(math.atan2(ry - ly, rx - lx))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    m = cv2.getRotationMatrix2D((cx, cy), angle, min(out_w, out_h) / side)
    m[0, 2] += out_w / 2 - cx
    m[1, 2] += out_h / 2 - cy
    return m


def align_crop(image: np.ndarray, face: Face, size: int | tuple[int, int] = 128,
               margin: float = 0.15) -> np.ndarray:
    """The aligned face crop (HxWx3 uint8) of `face` in `image`; see align_matrix."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    return cv2.warpAffine(image, align_matrix(face, size, margin), (out_w, out_h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
