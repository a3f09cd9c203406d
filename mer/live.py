"""Live (webcam) analysis, one frame at a time, with a small state per viewer.

    live = LiveSession()                       # one per viewer (the app keeps it in gr.State)
    out = live.step(frame, predictor)          # RGB uint8 frame -> LiveFrame
    out.image                                  # boxes, class labels and motion scores drawn
    out.faces[0].face_id, .top_class, .motion, .rolling

Per frame: MTCNN on a downscaled copy, `mer.tracking.IoUTracker` for a stable face id, the
Predictor classifies the aligned crops. The motion score is causal, so it is known at once: the
aligned crop in grayscale at `crop` px against the same face `ref_s` seconds earlier (found by the
frames' times), mean absolute difference in [0, 1] (MEGC's frame-difference baseline; the video
pipeline's spotting score, `mer.spotting`, also looks ahead and so comes seconds late). `rolling`
is its mean over the last `window_s` seconds. Times are the frames' own (a video's timestamps) or
the arrival time (webcam). A pause longer than `max_gap_s` starts the tracks afresh. The state
holds only a few small grayscale crops per face.
"""
from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from .aus import au_code, top_aus
from .faces import DetectorConfig, Face
from .images import read_image
from .render import draw_predictions
from .tracking import IoUTracker, TrackerConfig


@dataclass
class LiveConfig:
    detect_max_side: int = 320   # MTCNN runs on a copy downscaled to this longer side
    min_face_size: int = 20      # pixels in that copy
    min_prob: float = 0.9        # detection probability floor
    max_side: int = 960          # larger incoming frames are downscaled first
    ref_s: float = 0.2           # motion: against the same face this many seconds earlier
    crop: int = 64               # grayscale crop side for the motion score
    window_s: float = 2.0        # rolling motion score: mean over this many seconds
    max_gap_s: float = 10.0      # a longer pause between frames restarts the tracks
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(max_missed=5))

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(min_face_size=self.min_face_size, min_prob=self.min_prob,
                              max_side=self.detect_max_side)


@dataclass
class LiveFace:
    face_id: int
    prediction: object            # mer.predict.FacePrediction
    motion: float                 # against the same face ref_s earlier (0 on its first frame)
    rolling: float                # mean motion over the last window_s seconds

    def to_dict(self) -> dict:
        d = {"face_id": self.face_id, **self.prediction.to_dict(), "motion": round(self.motion, 6),
             "motion_rolling": round(self.rolling, 6)}
        if self.prediction.mesh is not None:
            d["top_aus"] = {f"AU{au_code(n)}": round(v, 3) for n, v in self.top_aus}
        return d

    @functools.cached_property
    def top_aus(self) -> list[tuple[str, float]]:
        """The face's three strongest AU proxies (mer.aus.top_aus), empty without a mesh (or where
        the mesh sees no face: FacePrediction.aus)."""
        return top_aus(self.prediction.aus) if self.prediction.mesh is not None else []


@dataclass
class LiveFrame:
    index: int                    # frames seen by this session
    t: float                      # seconds since the session's first frame
    image: np.ndarray             # annotated RGB uint8 copy of the (downscaled) frame
    faces: list[LiveFace]

    def to_dict(self) -> dict:
        return {"frame": self.index, "t_s": round(self.t, 4), "width": int(self.image.shape[1]),
                "height": int(self.image.shape[0]), "n_faces": len(self.faces),
                "faces": [f.to_dict() for f in self.faces]}


class MotionTrack:
    """One face's recent crops and scores: motion against `ref_s` earlier, and its rolling mean."""

    def __init__(self, ref_s: float, window_s: float, side: int):
        self.ref_s, self.window_s, self.side = ref_s, window_s, side
        self.crops: deque[tuple[float, np.ndarray]] = deque()
        self.scores: deque[tuple[float, float]] = deque()

    def update(self, t: float, crop: np.ndarray) -> tuple[float, float]:
        g = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (self.side, self.side),
                       interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        while len(self.crops) > 1 and self.crops[1][0] <= t - self.ref_s:
            self.crops.popleft()  # the reference: the newest crop at least ref_s old (else the oldest)
        motion = float(np.abs(g - self.crops[0][1]).mean()) if self.crops else 0.0
        self.crops.append((t, g))
        self.scores.append((t, motion))
        while self.scores[0][0] < t - self.window_s:
            self.scores.popleft()
        return motion, float(np.mean([s for _, s in self.scores]))


class LiveSession:
    def __init__(self, config: LiveConfig | None = None):
        self.config = config or LiveConfig()
        self.frames = 0
        self._reset()

    def _reset(self) -> None:
        self.tracker = IoUTracker(self.config.tracker)
        self.tracks: dict[int, MotionTrack] = {}
        self.t0: float | None = None
        self.last_t: float | None = None

    def step(self, frame, predictor, t: float | None = None) -> LiveFrame:
        """One frame (RGB array, path, PIL ...) -> faces with class, motion and rolling score.
        `t`: the frame's time in seconds (default: now)."""
        c = self.config
        img = read_image(frame)
        h, w = img.shape[:2]
        if max(h, w) > c.max_side:
            s = c.max_side / max(h, w)
            img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        now = time.monotonic() if t is None else float(t)
        if self.last_t is not None and not (0 <= now - self.last_t <= c.max_gap_s):
            self._reset()  # a pause (or time going backwards): old tracks say nothing about now
        if self.t0 is None:
            self.t0 = now
        self.last_t = now
        faces: list[Face] = predictor.detector_for(c.detector_config()).detect([img])[0]
        ids = self.tracker.update(faces)
        preds = predictor.predict_faces([img], [faces])[0]
        out = []
        t = now - self.t0
        for fid, p in sorted(zip(ids, preds), key=lambda x: x[0]):
            track = self.tracks.setdefault(fid, MotionTrack(c.ref_s, c.window_s, c.crop))
            out.append(LiveFace(fid, p, *track.update(t, p.crop)))
        for fid in [f for f in self.tracks if f not in self.tracker.tracks]:
            del self.tracks[fid]  # closed by the tracker
        self.frames += 1
        return LiveFrame(self.frames - 1, t, draw_live(img, out), out)


def draw_live(img: np.ndarray, faces: list[LiveFace]) -> np.ndarray:
    """Boxes and class labels (mer.render.draw_faces), each face's id, rolling motion and top AU
    proxies under its box."""
    return draw_predictions(img, [f.prediction for f in faces],
                            notes=[f"id {f.face_id} motion {f.rolling:.3f}" + "".join(
                                f" AU{au_code(n)} {v:.2f}" for n, v in f.top_aus) for f in faces])
