"""Face tracking: a stable `face_id` per person across video frames.

A plain IoU tracker: faces detected on a (key)frame are matched to the live tracks by box overlap
(Hungarian assignment, scipy), unmatched faces open new tracks, and a track that has not been seen
for `max_missed` updates is closed (a face that comes back after that gets a new id). Ids count
up from 0 in order of first appearance (left to right within a frame), so the same video always gives the same ids.

Between keyframes (detection every N frames) `interpolate` fills in boxes and landmarks linearly
for tracks seen on both keyframes; a face seen on only one of them is held to the nearer keyframe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .faces import Face


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (N, 4) and b (M, 4), x1 y1 x2 y2 -> (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: np.clip(r[:, 2] - r[:, 0], 0, None) * np.clip(r[:, 3] - r[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class TrackerConfig:
    min_iou: float = 0.3     # below this overlap a face is not the same track
    max_missed: int = 25     # updates (keyframes) a track may go unseen before it is closed


class IoUTracker:
    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self.next_id = 0
        self.tracks: dict[int, tuple[np.ndarray, int]] = {}  # id -> (last box, missed updates)

    def update(self, faces: list[Face]) -> list[int]:
        """Faces of one keyframe -> their track ids (same order)."""
        ids = [-1] * len(faces)
        live = sorted(self.tracks)
        if faces and live:
            overlap = iou(np.stack([f.box for f in faces]), np.stack([self.tracks[t][0] for t in live]))
            rows, cols = linear_sum_assignment(-overlap)
            for r, c in zip(rows, cols):
                if overlap[r, c] >= self.config.min_iou:
                    ids[r] = live[c]
        for i in sorted(range(len(faces)), key=lambda i: (float(faces[i].box[0]), float(faces[i].box[1]))):
            if ids[i] < 0:  # new faces are numbered left to right
                ids[i], self.next_id = self.next_id, self.next_id + 1
        seen = set(ids)
        for t in live:
            if t not in seen:
                box, missed = self.tracks[t]
                if missed + 1 > self.config.max_missed:
                    del self.tracks[t]
                else:
                    self.tracks[t] = (box, missed + 1)
        for i, f in zip(ids, faces):
            self.tracks[i] = (np.asarray(f.box, np.float64), 0)
        return ids


def interpolate(a: dict[int, Face], b: dict[int, Face], t: float) -> dict[int, Face]:
    """Faces between keyframe a (t=0) and keyframe b (t=1), both given as {face_id: Face}."""
    out = {}
    for i in sorted(set(a) | set(b)):
        if i in a and i in b:
            fa, fb = a[i], b[i]
            out[i] = Face((1 - t) * fa.box + t * fb.box, (1 - t) * fa.prob + t * fb.prob,
                          (1 - t) * fa.landmarks + t * fb.landmarks)
        elif i in a and t < 0.5:
            out[i] = a[i]
        elif i in b and t >= 0.5:
            out[i] = b[i]
    return out
