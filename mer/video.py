"""Video analysis: one code path for the app's video tab and the batch tool.

    result = analyze_video("clip.mp4", Predictor(), VideoSettings(detect_every=2))
    result.frames      # DataFrame, one row per frame x face (FRAME_COLUMNS + one p_<Class> per class)
    result.intervals   # DataFrame of spotted micro-expression intervals (mer.spotting)
    result.info        # n_frames, fps, duration_s, width, height, n_faces, dominant_class, ...

Decoding is decord in chunks of `chunk_size` frames with the real per-frame timestamps (variable
frame rate is kept; decoders may give negative start times, which are kept too), so memory does not
grow with the video's length beyond the small per-row table. Faces are detected on frames scaled
down to `detect_max_side`, every `detect_every` frames; `mer.tracking` gives stable face ids and
interpolates faces in between; every face in every frame is classified in batches by the
Predictor. A frame without a face still gives one row (face columns empty), so the row count is
the decoded frame count plus extra faces. The motion score and spotting are in mer.spotting.
"""
from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from .faces import DetectorConfig, Face, FaceDetector
from .spotting import INTERVAL_COLUMNS, MotionScorer, SpotConfig, recognize, smooth_time, spot
from .tracking import IoUTracker, TrackerConfig, interpolate

LANDMARK_COLUMNS = ["le_x", "le_y", "re_x", "re_y", "nose_x", "nose_y", "ml_x", "ml_y", "mr_x", "mr_y"]
FRAME_COLUMNS = ["video", "frame", "time_s", "face_id", "x1", "y1", "x2", "y2", "det_prob",
                 *LANDMARK_COLUMNS]  # then p_<Class> per class, top_class, top_prob, motion, detected
TAIL_COLUMNS = ["top_class", "top_prob", "motion", "detected"]


class VideoError(ValueError):
    """The video cannot be analysed (unreadable, empty, over a limit); the message says why."""


@dataclass
class VideoSettings:
    detect_every: int = 1              # run MTCNN on every Nth frame, track/interpolate in between
    detect_max_side: int | None = 320  # downscale frames to this longer side for detection (None: as given)
    min_face_size: int = 20            # pixels in the downscaled detection frame
    min_prob: float = 0.9              # detection probability floor
    chunk_size: int = 64               # frames decoded at a time
    max_frames: int | None = None      # refuse longer videos (VideoError)
    max_duration_s: float | None = None
    n_thumbnails: int = 6
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    spotting: SpotConfig = field(default_factory=SpotConfig)

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(min_face_size=self.min_face_size, min_prob=self.min_prob,
                              max_side=self.detect_max_side or 0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VideoResult:
    path: str
    frames: pd.DataFrame
    intervals: pd.DataFrame
    info: dict
    thumbnails: list = field(default_factory=list)  # (frame, face_id, RGB crop)
    classes: list = field(default_factory=list)


_detectors: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _detector_for(predictor, settings: VideoSettings) -> FaceDetector:
    cfg = settings.detector_config()
    cache = _detectors.setdefault(predictor, {})
    key = (cfg.min_face_size, cfg.min_prob, cfg.max_side)
    if key not in cache:
        cache[key] = FaceDetector(cfg, device=predictor.device)
    return cache[key]


def open_video(path: str | Path):
    """decord VideoReader with a clear VideoError for missing, empty or undecodable files."""
    import decord
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p.name}: no such file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p.name}: empty file (0 bytes)")
    try:
        vr = decord.VideoReader(str(p), ctx=decord.cpu(0), num_threads=1)
    except Exception as e:  # decord raises DECORDError (a RuntimeError) with ffmpeg's words
        raise VideoError(f"{p.name}: not a readable video ({_clean(e, p)})") from None
    if len(vr) == 0:
        raise VideoError(f"{p.name}: the video has no decodable frames")
    return vr


def _clean(e: Exception, path: Path) -> str:
    """decord's message without its clock time, source location or the absolute path."""
    import re
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = re.sub(r"\[\d\d:\d\d:\d\d\]\s*", "", msg)
    msg = re.sub(r"\S+\.(cc|cpp|h):\d+:\s*", "", msg)
    return msg.replace(str(path), path.name)[:200]


def analyze_video(path: str | Path, predictor, settings: VideoSettings | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  name: str | None = None, micro_predictor=None) -> VideoResult:
    """Decode, detect, track, classify and spot one video; see the module docstring.

    `progress(done_frames, total_frames)` is called after every chunk. `name` is the value of the
    `video` column (default: the file name). `micro_predictor` classifies micro intervals from their
    apex crop (default: the shipped micro-expression model, mer.predict.micro_checkpoint())."""
    s = settings or VideoSettings()
    path = Path(path)
    vr = open_video(path)
    n = len(vr)
    try:
        ts = np.asarray(vr.get_frame_timestamp(list(range(n))), np.float64).reshape(n, 2)
        fps = float(vr.get_avg_fps())
        h, w = vr[0].shape[:2]
    except Exception as e:
        raise VideoError(f"{path.name}: cannot read frame timing ({_clean(e, path)})") from None
    duration = float(ts[-1, 1] - ts[0, 0]) if n else 0.0
    if s.max_frames and n > s.max_frames:
        raise VideoError(f"{path.name}: {n} frames is over the limit of {s.max_frames}")
    if s.max_duration_s and duration > s.max_duration_s:
        raise VideoError(f"{path.name}: {duration:.1f} s is over the limit of {s.max_duration_s:g} s")
    if progress:
        progress(0, n)

    detector = _detector_for(predictor, s)
    classes = list(predictor.classes)
    every = max(1, int(s.detect_every))
    chunk = max(every, (max(1, s.chunk_size) // every) * every)
    is_key = lambda i: i % every == 0 or i == n - 1  # noqa: E731
    tracker = IoUTracker(s.tracker)
    scorer = MotionScorer(s.spotting)       # streaming motion score per face track (mer.spotting)
    motion: dict[tuple[int, int], float] = {}
    rows: list[tuple] = []                  # (frame, face_id or None, Face or None, detected, motion)
    probs_out: list[np.ndarray] = []
    prev_key: tuple[int, dict[int, Face]] | None = None
    pending: list[tuple[int, np.ndarray]] = []

    def emit(items: list[tuple[int, np.ndarray, dict[int, Face], bool]]) -> None:
        crops = []
        for i, frame, faces, detected in items:
            if not faces:
                rows.append((i, None, None, False, np.nan))
                continue
            for fid, face in faces.items():
                crop = predictor.crop(frame, face)
                for f_id, f_i, score in scorer.push(fid, i, ts[i, 0], frame, face):
                    motion[(f_i, f_id)] = score
                rows.append((i, fid, face, detected, np.nan))
                crops.append(crop)
        if crops:
            probs_out.append(predictor.classify(crops)[0])

    for start in range(0, n, chunk):
        idx = list(range(start, min(n, start + chunk)))
        try:
            frames = vr.get_batch(idx).asnumpy()
        except Exception as e:
            raise VideoError(f"{path.name}: decoding failed in frames {idx[0]}-{idx[-1]} ({_clean(e, path)})") from None
        keys = [i for i in idx if is_key(i)]
        dets = dict(zip(keys, detector.detect(frames[[i - start for i in keys]]))) if keys else {}
        items = []
        for i in idx:
            frame = frames[i - start]
            if i not in dets:
                pending.append((i, frame))
                continue
            faces = dets[i]
            cur = dict(zip(tracker.update(faces), faces))
            if pending:
                a, fa = prev_key if prev_key else (i, {})
                for j, fr in pending:
                    items.append((j, fr, interpolate(fa, cur, (j - a) / max(1, i - a)), False))
                pending = []
            items.append((i, frame, dict(sorted(cur.items())), True))
            prev_key = (i, cur)
        emit(items)
        if progress:
            progress(idx[-1] + 1, n)

    for f_id, f_i, score in scorer.flush():
        motion[(f_i, f_id)] = score
    rows = [(i, fid, face, det, motion.get((i, fid), np.nan)) for i, fid, face, det, _ in rows]
    probs = np.concatenate(probs_out) if probs_out else np.zeros((0, len(classes)), np.float32)
    frames_df = _frames_table(rows, probs, ts, classes, name or path.name)
    intervals = _spot_all(frames_df, ts, s.spotting)
    micro = micro_predictor if micro_predictor is not None else _micro_for(predictor)
    intervals = recognize(intervals, frames_df, classes, _apex_crops(vr, frames_df, micro), micro)
    info = {"n_frames": n, "fps": round(fps, 6),
            "fps_measured": round((n - 1) / float(ts[-1, 0] - ts[0, 0]), 6) if n > 1 and ts[-1, 0] > ts[0, 0] else round(fps, 6),
            "duration_s": round(duration, 6), "width": int(w), "height": int(h),
            "n_faces": int(frames_df["face_id"].nunique()), "n_intervals": len(intervals),
            "n_frames_with_face": int(frames_df.loc[frames_df["face_id"].notna(), "frame"].nunique()),
            "dominant_class": (frames_df["top_class"].dropna().mode().iloc[0]
                               if frames_df["top_class"].notna().any() else ""),
            "classes": classes, "checkpoint": str(getattr(predictor, "checkpoint", "")),
            "settings": s.to_dict()}
    result = VideoResult(str(path), frames_df, intervals, info, [], classes)
    result.thumbnails = _thumbnails(vr, result, predictor, s.n_thumbnails)
    return result


def _frames_table(rows, probs, ts, classes, video_name) -> pd.DataFrame:
    k = len(rows)
    box = np.full((k, 4), np.nan)
    lm = np.full((k, 10), np.nan)
    det = np.full(k, np.nan)
    p = np.full((k, len(classes)), np.nan)
    j = 0
    for r, (i, fid, face, _, _) in enumerate(rows):
        if face is not None:
            box[r], lm[r], det[r] = face.box, np.asarray(face.landmarks).reshape(-1), face.prob
            p[r] = probs[j]
            j += 1
    frame_idx = np.array([r[0] for r in rows], np.int64)
    df = pd.DataFrame({"video": video_name, "frame": frame_idx,
                       "time_s": np.round(ts[frame_idx, 0], 6) if k else [],
                       "face_id": pd.array([r[1] for r in rows], dtype="Int64")})
    for c, v in zip(["x1", "y1", "x2", "y2"], box.T):
        df[c] = np.round(v, 2)
    df["det_prob"] = np.round(det, 6)
    for c, v in zip(LANDMARK_COLUMNS, lm.T):
        df[c] = np.round(v, 2)
    for c, v in zip(classes, p.T):
        df[f"p_{c}"] = np.round(v, 6)
    has = ~np.isnan(p[:, 0]) if k else np.zeros(0, bool)
    top = np.where(has, np.nan_to_num(p, nan=-1).argmax(1), 0) if k else np.zeros(0, int)
    df["top_class"] = pd.array([classes[t] if hh else None for t, hh in zip(top, has)], dtype="string")
    df["top_prob"] = np.round(np.where(has, np.nan_to_num(p, nan=0).max(1) if k else 0, np.nan), 6)
    df["motion"] = np.array([r[4] for r in rows], np.float64)
    df["detected"] = pd.array([(1 if r[3] else 0) if r[1] is not None else None for r in rows], dtype="Int64")
    return df


def _spot_all(df: pd.DataFrame, ts: np.ndarray, cfg: SpotConfig) -> pd.DataFrame:
    """Smooth the motion column per face in place (real timestamps) and spot intervals per face."""
    out = []
    for fid, g in df[df["face_id"].notna()].groupby("face_id", sort=True):
        fr = g["frame"].to_numpy()
        sm = smooth_time(g["motion"].to_numpy(), ts[fr, 0], cfg.smooth_s)
        df.loc[g.index, "motion"] = sm
        out += spot(fr, ts[fr, 0], ts[fr, 1], sm, int(fid), cfg, smoothed=True)
    df["motion"] = df["motion"].round(6)
    return pd.DataFrame(out, columns=INTERVAL_COLUMNS)


_micro_models: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _micro_for(predictor):
    """The shipped micro-expression model (mer.predict.micro_checkpoint()) on the predictor's
    device, loaded once per predictor; None when it is not installed (micro intervals are then
    classified like macro ones, by the per-frame model)."""
    if predictor not in _micro_models:
        from .predict import Predictor, micro_checkpoint
        try:
            _micro_models[predictor] = Predictor(micro_checkpoint(), device=predictor.device)
        except Exception:  # no micro model shipped: fall back to the per-frame model
            _micro_models[predictor] = None
    return _micro_models[predictor]


def _apex_crops(vr, frames: pd.DataFrame, micro):
    """apex_crop(frame, face_id) for recognize: the micro model's aligned crop of that face."""
    def crop(frame: int, fid: int):
        if not micro:
            return None
        row = frames[(frames["frame"] == frame) & (frames["face_id"] == fid)]
        if not len(row):
            return None
        row = row.iloc[0]
        face = Face(row[["x1", "y1", "x2", "y2"]].to_numpy(np.float32), float(row["det_prob"]),
                    row[LANDMARK_COLUMNS].to_numpy(np.float32).reshape(5, 2))
        return micro.crop(vr[frame].asnumpy(), face)
    return crop


def _thumbnails(vr, result: VideoResult, predictor, k: int) -> list:
    """Aligned crops at the apex of the strongest intervals (or each face's peak motion frame)."""
    if k <= 0:
        return []
    iv = result.intervals.sort_values(["score", "apex_frame"], ascending=[False, True]).head(k)
    picks = [(int(r.apex_frame), int(r.face_id)) for r in iv.itertuples()]
    if not picks:
        df = result.frames[result.frames["face_id"].notna()]
        for fid, g in df.groupby("face_id", sort=True):
            picks.append((int(g.loc[g["motion"].idxmax(), "frame"]), int(fid)))
        picks = picks[:k]
    out = []
    for frame, fid in sorted(picks):
        row = result.frames[(result.frames["frame"] == frame) & (result.frames["face_id"] == fid)].iloc[0]
        face = Face(row[["x1", "y1", "x2", "y2"]].to_numpy(np.float32), float(row["det_prob"]),
                    row[LANDMARK_COLUMNS].to_numpy(np.float32).reshape(5, 2))
        try:
            img = vr[frame].asnumpy()
        except Exception:
            continue
        out.append((frame, fid, predictor.crop(img, face)))
    return out
