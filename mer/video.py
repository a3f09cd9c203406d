"""Video analysis: one code path for the app's video tab and the batch tool.

    result = analyze_video("clip.mp4", Predictor(), VideoSettings(detect_every=2))
    result.frames      # DataFrame, one row per frame x face (FRAME_COLUMNS + one p_<class> per class)
    result.intervals   # DataFrame of spotted intervals (mer.spotting)
    result.info        # n_frames, fps, duration_s, width, height, n_faces, dominant_class, partial, ...
    result.thumbnails  # (frame, face_id, aligned RGB crop) at the apex of the strongest intervals

One forward pass through a chain of small stages, each passing typed records (FrameRecord with its
FaceRecords) to the next; memory stays flat in the video's length (a chunk of frames, a few crops
per face and the per-row table):

    decode    mer.decode: chunks of frames with their real timestamps, numbered as players do
    detect    MTCNN on every `detect_every`-th frame (downscaled to `detect_max_side`)
    track     stable face ids (mer.tracking), faces interpolated between keyframes
    crop      aligned face crop per face (Predictor.crop)
    classify  class probabilities for all crops of a chunk in one batch
    mesh      face mesh, 52 blendshapes, head pose, AU proxies for the faces of a chunk, batched
              (mer.landmarker.MeshStage; VideoSettings.aus, on by default; every frame, or every
              mesh_every-th with the faces between interpolated); runs with rows and
              motion on one background thread beside the next chunk's decode/detect/classify
    rows      the per-row table (each face row's motion cell waits for its score) and
              (optionally) annotated preview frames
    motion    per-face motion scores: one mer.spotting.MotionScorer per scorer the settings run
              (ECC and flow for the default "auto"; streaming: a frame's score is known
              `window_s` later, an ended track's `span_s` after its last frame) go into its row
              then, and the frame's crops (held meanwhile) to that scorer's thumbnail and apex
              stores; each finished track keeps the scorer mer.spotting.choose_method picks
              (`motion_by`); "auto" stops a face's ECC scorer once its first 3 s of ECC scores
              already choose flow (Motion._check)
    spot      one function over the finished table: micro and macro intervals (spot_intervals),
              then recognised: micro by the micro-expression model from the apex crop, macro by
              the per-frame probabilities (mer.spotting.recognize, column recognized_by)

A frame without a face still gives one row (face columns empty), so the row count is the decoded
frame count plus extra faces. A file that decodes only in part (e.g. cut short) is analysed as far
as it decodes and `info["partial"]` says why (None when the whole file was analysed).
"""
from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .decode import FrameChunk, VideoError, check_file, clean_error, diagnose, open_source
from .faces import DetectorConfig, Face, FaceDetector
from .spotting import (DEFAULT_METHOD, INTERVAL_COLUMNS, MotionScorer, SpotConfig, choose_method, recognize,
                       smooth_time, spot, track_config)
from .tracking import IoUTracker, TrackerConfig, interpolate
from .aus import add_mesh_columns, label_intervals, mesh_vector, recognize_micro_by_aus
from .landmarker import MeshStage

__all__ = ["FRAME_COLUMNS", "FaceRecord", "FrameRecord", "VideoError", "VideoResult",
           "VideoSettings", "analyze_video", "open_video", "recognize_intervals", "spot_intervals"]

LANDMARK_COLUMNS = ["le_x", "le_y", "re_x", "re_y", "nose_x", "nose_y", "ml_x", "ml_y", "mr_x", "mr_y"]
FRAME_COLUMNS = ["video", "frame", "time_s", "face_id", "x1", "y1", "x2", "y2", "det_prob",
                 *LANDMARK_COLUMNS]  # then p_<class> per class, top_class, top_prob, motion, motion_by, detected
TAIL_COLUMNS = ["top_class", "top_prob", "motion", "motion_by", "detected"]
APEX_GAP_S = 0.2   # kept thumbnail / apex crops are at least this far apart (in frames at the video's rate)
APEX_KEEP = 400    # micro-model crops kept per face (the highest-scoring moments) for the apexes
MICRO_BY = ("aus", "micro_model")  # what may classify a spotted micro interval (VideoSettings.micro_by)


@dataclass
class VideoSettings:
    detect_every: int = 1              # run MTCNN on every Nth frame, track/interpolate in between
    detect_max_side: int | None = 320  # downscale frames to this longer side for detection (None: as given)
    min_face_size: int = 20            # pixels in the downscaled detection frame
    min_prob: float = 0.9              # detection probability floor
    chunk_size: int = 64               # frames decoded at a time
    max_frames: int | None = None      # refuse longer videos (VideoError)
    max_duration_s: float | None = None
    max_side: int | None = None        # refuse videos whose longer side is over this (pixels)
    n_thumbnails: int = 6
    aus: bool = True                   # face mesh + blendshapes + AU proxies + head pose per face and frame
    mesh_every: int = 2                # run the face mesh on every Nth frame, interpolate in between (MeshStage;
                                       # 1 = measured on every frame; docs/aus.md, "Every second frame")
    micro_by: str = "aus"              # micro intervals' class: "aus" (their AU proxies, mer.aus; the micro model
                                       # where no AU rose) or "micro_model" (apex crop; docs/aus.md)
    landmarks: bool = False            # keep the 478 landmarks per face and frame (VideoResult.landmarks)
    isolate_decoder: bool = False      # decode in a child process (a decoder crash cannot end this one)
    decoder_memory_mb: int | None = 2048   # the child's memory for decoding (beyond its libraries)
    decoder_timeout_s: float | None = 60.0  # the child's longest silence before it is killed
    folder_fps: float = 30.0           # a folder of frame images: its frame rate (SAMM-LV 200, CAS(ME)^2 30)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    spotting: SpotConfig = field(default_factory=lambda: SpotConfig.for_method(DEFAULT_METHOD))

    def __post_init__(self):
        if self.micro_by not in MICRO_BY:
            raise ValueError(f"micro_by must be one of {', '.join(MICRO_BY)}, not {self.micro_by!r}")

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
    landmarks: dict | None = None  # frame, face_id, landmarks (K, 478, 3) when VideoSettings.landmarks
    apexes: "Thumbnails | None" = None  # the kept micro-model crops: apexes.nearest(frame, face_id)


# ---------------------------------------------------------------- records passed between stages

@dataclass
class FaceRecord:
    """One face in one frame, filled in stage by stage."""
    face_id: int
    face: Face
    detected: bool                      # detected on this frame (False: interpolated or held)
    crop: np.ndarray | None = None      # aligned RGB crop (crop stage)
    probs: np.ndarray | None = None     # class probabilities (classify stage)
    mesh: object = None                 # mer.landmarker.MeshResult (mesh stage)


@dataclass
class FrameRecord:
    index: int                          # frame number, from 0, as players number them
    start_s: float                      # presentation time
    end_s: float                        # presentation time of the next frame
    image: np.ndarray                   # RGB uint8
    detections: list[Face] | None = None  # detect stage, keyframes only (None: not a keyframe)
    faces: list[FaceRecord] = field(default_factory=list)  # track stage, sorted by face_id


def frame_records(chunk: FrameChunk) -> list[FrameRecord]:
    return [FrameRecord(int(i), float(a), float(b), img)
            for i, a, b, img in zip(chunk.index, chunk.start_s, chunk.end_s, chunk.frames)]


# ---------------------------------------------------------------- stages

class Detect:
    """MTCNN on keyframes: every `every`-th frame and the last one the file announces."""

    def __init__(self, detector: FaceDetector, every: int, n_frames: int):
        self.detector, self.every, self.last = detector, max(1, int(every)), n_frames - 1

    def __call__(self, frames: list[FrameRecord]) -> list[FrameRecord]:
        keys = [f for f in frames if f.index % self.every == 0 or f.index == self.last]
        for f, faces in zip(keys, self.detector.detect([f.image for f in keys]) if keys else []):
            f.detections = faces
        return frames


class Track:
    """Face ids on keyframes (IoU tracker); frames in between wait for the next keyframe and are
    interpolated; `flush` holds the last keyframe's faces for frames after it (a stream cut short)."""

    def __init__(self, config: TrackerConfig):
        self.tracker = IoUTracker(config)
        self.prev: tuple[int, dict[int, Face]] | None = None
        self.pending: list[FrameRecord] = []

    def __call__(self, frames: list[FrameRecord]) -> list[FrameRecord]:
        ready = []
        for f in frames:
            if f.detections is None:
                f.image = f.image.copy()  # a waiting frame must not keep its whole chunk alive
                self.pending.append(f)
                continue
            cur = dict(zip(self.tracker.update(f.detections), f.detections))
            a, fa = self.prev if self.prev else (f.index, {})
            for p in self.pending:
                faces = interpolate(fa, cur, (p.index - a) / max(1, f.index - a))
                p.faces = [FaceRecord(i, face, False) for i, face in faces.items()]
            ready += self.pending
            self.pending = []
            f.faces = [FaceRecord(i, cur[i], True) for i in sorted(cur)]
            ready.append(f)
            self.prev = (f.index, cur)
        return ready

    def flush(self) -> list[FrameRecord]:
        held = self.prev[1] if self.prev else {}
        for p in self.pending:
            p.faces = [FaceRecord(i, held[i], False) for i in sorted(held)]
        out, self.pending = self.pending, []
        return out


class Crop:
    def __init__(self, predictor):
        self.predictor = predictor

    def __call__(self, frames: list[FrameRecord]) -> list[FrameRecord]:
        for f in frames:
            for r in f.faces:
                r.crop = self.predictor.crop(f.image, r.face)
        return frames


class Classify:
    """All crops of a group of frames in one batch through the Predictor."""

    def __init__(self, predictor):
        self.predictor = predictor

    def __call__(self, frames: list[FrameRecord]) -> list[FrameRecord]:
        recs = [r for f in frames for r in f.faces]
        if recs:
            probs = self.predictor.classify([r.crop for r in recs])[0]
            for r, p in zip(recs, probs):
                r.probs = p
        return frames


class Motion:
    """The motion stage: one mer.spotting.MotionScorer per scorer the settings run
    (SpotConfig.scorers(): both ECC and flow for "auto") over each frame and face. A frame's score
    is known `window_s` later (an ended track's, `span_s` after its last frame), so scores are handed
    on as they come: to `scored(name, [(face_id, frame, score), ...])` (the rows), and with the
    frame's crops (held until every scorer has scored the frame) to that scorer's thumbnail store
    and store of micro-model crops, from which the apex of each micro interval is recognised.
    `use(chosen)` then says which scorer each face track is spotted with (mer.spotting.choose_method)."""

    def __init__(self, config: SpotConfig, scored: Callable[[str, list], None], n_thumbnails: int, gap: int,
                 apex_keep: int, micro=None):
        self.config = config
        self.scorers = {m: MotionScorer(config.resolved(m)) for m in config.scorers()}
        self.settling = config.method == "auto" and config.auto_settle_s is not None
        self.first: dict[int, dict | None] = {}  # "auto": a face's first ECC scores until looked at (_check), then None
        self.settled: set[int] = set()            # the faces settled on flow there (their ECC scorer stopped)
        self.scored, self.micro = scored, micro
        self.thumbs = {m: Thumbnails(n_thumbnails, gap) for m in self.scorers}
        self.apexes = {m: Thumbnails(0, gap, apex_keep) for m in self.scorers}
        self.pending: dict[tuple[int, int], list] = {}   # (frame, face_id) -> [crop, micro crop, scorers left]
        self.chosen: dict[int, str] = {}
        self._apex_store: Thumbnails | None = None  # the merged apex store, built once by `use`

    def __call__(self, frames: list[FrameRecord]) -> list[FrameRecord]:
        for f in frames:
            for m, sc in self.scorers.items():
                self._take(m, sc.advance(f.start_s))  # tracks that ended: scored, crops released
            for r in f.faces:
                mc = self.micro.crop(f.image, r.face) if self.micro else None
                self.pending[(f.index, r.face_id)] = [r.crop, mc, len(self.scorers)]
                if r.face_id in self.settled:  # "auto" settled this face on flow: ECC scores nothing more
                    self._take("ecc", [(r.face_id, f.index, math.nan)])
                elif self.settling and self.first.setdefault(r.face_id, {"t0": f.start_s, "t": {}, "s": []}):
                    self.first[r.face_id]["t"][f.index] = f.start_s
                for m, sc in self.scorers.items():
                    if not (m == "ecc" and r.face_id in self.settled):
                        self._take(m, sc.push(r.face_id, f.index, f.start_s, f.image, r.face))
        return frames

    def flush(self) -> None:
        for m, sc in self.scorers.items():
            self._take(m, sc.flush())

    def _take(self, method: str, out) -> None:
        if not out:
            return
        self.scored(method, out)
        for fid, frame, score in out:
            held = self.pending.get((frame, fid))
            if held is None:
                continue
            crop, mc, left = held
            if crop is not None and np.isfinite(score):
                self.thumbs[method].offer(fid, frame, score, crop)
            if mc is not None and np.isfinite(score):
                self.apexes[method].offer(fid, frame, score, mc)
            held[2] = left - 1
            if held[2] <= 0:
                del self.pending[(frame, fid)]
        if method == "ecc" and self.settling:
            self._check(out)

    def _check(self, out) -> None:
        """"auto": once a face has `auto_settle_s` seconds of ECC scores, look at them once:
        when they already choose flow (mer.spotting.choose_method: median over auto_ecc_median), the
        face is a real, moving one, settled on flow: its ECC scorer is stopped and the frames that
        scorer held get no ECC score (NaN). Otherwise both scorers run on and the whole track's
        median decides."""
        for fid, frame, score in out:
            e = self.first.get(fid)
            if e is None or frame not in e["t"]:
                continue
            e["s"].append(score)
            if e["t"].pop(frame) - e["t0"] < self.config.auto_settle_s:
                continue
            self.first[fid] = None  # looked at
            if choose_method(self.config, e["s"]) == "flow":
                self.settled.add(fid)
                left = self.scorers["ecc"].drop(fid)
                self._take("ecc", [(fid, f, math.nan) for f in left])

    def use(self, chosen: dict[int, str]) -> None:
        """The scorer each face track is spotted with: its thumbnails and apex crops are used (the
        apex crops merged here once, not per interval recognised)."""
        self.chosen = dict(chosen)
        self._apex_store = self._merged(self.apexes)

    def _merged(self, stores: dict) -> "Thumbnails":
        """One store: each face's kept crops from the scorer that face was spotted with."""
        first = next(iter(stores.values()))
        out = Thumbnails(first.k, first.gap, first.keep)
        default = next(iter(stores))
        faces = sorted({f for store in stores.values() for f in store.kept})
        out.kept = {f: stores.get(self.chosen.get(int(f)), stores[default]).kept.get(f, []) for f in faces}
        return out

    def apex_crop(self, frame: int, fid: int):
        """The kept micro-model crop nearest to `frame` (Thumbnails.nearest), or None."""
        return self.chosen_apexes().nearest(frame, fid)

    def chosen_apexes(self) -> "Thumbnails":
        """The micro-model crops kept, each face's from the scorer it was spotted with."""
        return self._apex_store if self._apex_store is not None else self._merged(self.apexes)

    def pick(self, intervals: pd.DataFrame) -> list[tuple[int, int, np.ndarray]]:
        """The thumbnails (Thumbnails.pick), each face's from the scorer it was spotted with."""
        return self._merged(self.thumbs).pick(intervals)


class Rows:
    """The per-row table, one row per frame x face (one row for a frame without faces)."""

    def __init__(self, n_classes: int, scorers: tuple[str, ...] = ("ecc",)):
        self.frame: list[int] = []
        self.start: list[float] = []
        self.end: list[float] = []
        self.face_id: list = []
        self.detected: list = []
        self.motion: dict[str, list[float]] = {m: [] for m in scorers}  # scorer -> one score per row (NaN until known)
        self.num: list[np.ndarray] = []   # box 4, det_prob 1, landmarks 10, probs: one float32 vector per row
        self.width = 15 + n_classes
        self.waiting: dict[tuple[int, int], list] = {}  # (frame, face_id) -> [row, scorers still to score it]
        self.mesh: list[np.ndarray] = []  # mesh columns per row (mer.aus.mesh_vector), when the stage ran
        self.with_mesh = False

    def add(self, frames: list[FrameRecord]) -> None:
        for f in frames:
            for r in f.faces or [None]:
                self.frame.append(f.index)
                self.start.append(f.start_s)
                self.end.append(f.end_s)
                self.mesh.append(mesh_vector(r.mesh if r is not None else None))
                self.with_mesh |= r is not None and r.mesh is not None
                if r is None:
                    self.face_id.append(None)
                    self.detected.append(None)
                    self.num.append(np.full(self.width, np.nan, np.float32))
                    continue
                self.waiting[(f.index, r.face_id)] = [len(self.face_id), len(self.motion)]
                self.face_id.append(r.face_id)
                self.detected.append(1 if r.detected else 0)
                self.num.append(np.concatenate([np.asarray(r.face.box, np.float64), [r.face.prob],
                                                np.asarray(r.face.landmarks, np.float64).reshape(-1),
                                                np.asarray(r.probs, np.float64)]))

    def scored(self, method: str, out: list[tuple[int, int, float]]) -> None:
        """Motion scores as a scorer hands them on: (face_id, frame, score) into their rows."""
        col = self.motion[method]
        if len(col) < len(self.face_id):
            col.extend([math.nan] * (len(self.face_id) - len(col)))
        for fid, frame, score in out:
            w = self.waiting[(frame, fid)]
            col[w[0]] = score
            w[1] -= 1
            if w[1] <= 0:
                del self.waiting[(frame, fid)]

    def table(self, video_name: str, classes: list[str], config: SpotConfig,
              settled=frozenset()) -> tuple[pd.DataFrame, np.ndarray]:
        """(frames DataFrame, end time of each row's frame); per face track, `motion_by` is the scorer
        it is spotted with (mer.spotting.choose_method; flow for a face `settled` on it early, whatever
        ECC scores it has) and `motion` that scorer's score smoothed over
        config.smooth_s seconds of real time (what mer.spotting.spot thresholds)."""
        k = len(self.frame)
        m = np.stack(self.num).astype(np.float64) if k else np.zeros((0, self.width))
        box, det, lm, p = m[:, :4], m[:, 4], m[:, 5:15], m[:, 15:]
        df = pd.DataFrame({"video": video_name, "frame": np.asarray(self.frame, np.int64),
                           "time_s": np.round(np.asarray(self.start, np.float64), 6),
                           "face_id": pd.array(self.face_id, dtype="Int64")})
        for c, v in zip(["x1", "y1", "x2", "y2"], box.T):
            df[c] = np.round(v, 2)
        df["det_prob"] = np.round(det, 6)
        for c, v in zip(LANDMARK_COLUMNS, lm.T):
            df[c] = np.round(v, 2)
        for c, v in zip(classes, p.T):
            df[f"p_{c}"] = np.round(v, 6)
        has = ~np.isnan(p[:, 0]) if k and len(classes) else np.zeros(k, bool)
        top = np.nan_to_num(p, nan=-1).argmax(1) if k and len(classes) else np.zeros(k, int)
        df["top_class"] = pd.array([classes[t] if h else None for t, h in zip(top, has)], dtype="string")
        df["top_prob"] = np.round(np.where(has, np.nan_to_num(p, nan=0).max(1) if k and len(classes) else 0,
                                           np.nan), 6)
        scores = {m: np.r_[np.asarray(self.motion.get(m, []), np.float64), np.full(k, np.nan)][:k]
                  for m in config.scorers()}
        motion, by = np.full(k, np.nan), np.full(k, None, object)
        for fid, g in df[df["face_id"].notna()].groupby("face_id", sort=True):
            m = "flow" if int(fid) in settled else choose_method(config, scores["ecc"][g.index] if "ecc" in scores else [])
            motion[g.index] = smooth_time(scores[m][g.index], g["time_s"].to_numpy(), config.smooth_s)
            by[g.index] = m
        df["motion"] = np.round(motion, 6)
        df["motion_by"] = pd.array(by, dtype="string")
        df["detected"] = pd.array(self.detected, dtype="Int64")
        if self.with_mesh:
            add_mesh_columns(df, self.mesh)
        return df, np.asarray(self.end, np.float64)


class Thumbnails:
    """Keeps, per face, the `keep` (default 2k) crops of highest motion score at least `gap` frames
    apart; `pick` takes those nearest the apex of the k strongest intervals (or, without
    intervals, each face's strongest moment)."""

    def __init__(self, k: int, gap: int, keep: int | None = None):
        self.k, self.gap = max(0, int(k)), max(1, int(gap))
        self.keep = 2 * self.k if keep is None else max(0, int(keep))
        self.kept: dict[int, list[tuple[float, int, np.ndarray]]] = {}

    def nearest(self, index: int, face_id: int):
        """The kept crop nearest to frame `index`, within the kept crops' spacing (`gap` frames:
        APEX_GAP_S at the video's rate), or None."""
        near = [e for e in self.kept.get(int(face_id), []) if abs(e[1] - index) <= self.gap]
        return min(near, key=lambda e: (abs(e[1] - index), e[1]))[2] if near else None

    def offer(self, face_id: int, index: int, score: float, crop: np.ndarray) -> None:
        if not self.keep:
            return
        score = score if np.isfinite(score) else -1.0
        kept = self.kept.setdefault(face_id, [])
        near = [e for e in kept if abs(e[1] - index) < self.gap]
        if near:
            if score <= max(e[0] for e in near):
                return
            kept[:] = [e for e in kept if abs(e[1] - index) >= self.gap]
        elif len(kept) >= self.keep:
            low = min(range(len(kept)), key=lambda j: kept[j][0])
            if score <= kept[low][0]:
                return
            del kept[low]
        kept.append((score, index, crop.copy()))

    def pick(self, intervals: pd.DataFrame) -> list[tuple[int, int, np.ndarray]]:
        if not self.k:
            return []
        out: dict[tuple[int, int], np.ndarray] = {}
        for iv in intervals.sort_values(["score", "apex_frame"], ascending=[False, True]).itertuples():
            cands = [e for e in self.kept.get(int(iv.face_id), []) if iv.onset_frame <= e[1] <= iv.offset_frame]
            if cands and len(out) < self.k:
                e = min(cands, key=lambda e: (abs(e[1] - iv.apex_frame), e[1]))
                out[(e[1], int(iv.face_id))] = e[2]
        if len(intervals) == 0:  # no interval: each face's strongest moment
            for fid in sorted(self.kept)[:self.k]:
                e = max(self.kept[fid], key=lambda e: (e[0], -e[1]))
                out[(e[1], fid)] = e[2]
        return [(fr, fid, crop) for (fr, fid), crop in sorted(out.items())]


class Preview:
    """Hands annotated frames to a preview writer (mer.encode.PreviewWriter): box, id, top class."""

    def __init__(self, writer, classes: list[str]):
        self.writer, self.classes = writer, classes

    def add(self, frames: list[FrameRecord]) -> None:
        for f in frames:
            faces = []
            for r in f.faces:
                top = int(np.argmax(r.probs)) if r.probs is not None and len(self.classes) else None
                label = f"{r.face_id}" + (f" {self.classes[top]} {float(r.probs[top]):.2f}" if top is not None else "")
                faces.append((r.face.box, r.detected, label))
            self.writer.add(f.image, faces)


def spot_intervals(frames: pd.DataFrame, end_s: np.ndarray, cfg: SpotConfig) -> pd.DataFrame:
    """The spotting stage, once over the finished table (not changed): the intervals of each face's
    `motion` column, taken as smoothed (Rows.table smooths it over cfg.smooth_s), spotted with the
    settings of the scorer in its `motion_by` column (SpotConfig.resolved), with `end_s` the end
    time of each row's frame (mer.spotting.INTERVAL_COLUMNS; class, prob and recognized_by are
    filled by mer.spotting.recognize)."""
    out = []
    for fid, g in frames[frames["face_id"].notna()].groupby("face_id", sort=True):
        out += spot(g["frame"].to_numpy(), g["time_s"].to_numpy(), end_s[g.index.to_numpy()],
                    g["motion"].to_numpy(np.float64), int(fid), track_config(cfg, g), smoothed=True)
    return pd.DataFrame(out, columns=INTERVAL_COLUMNS)


_micro_models: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def micro_model_for(predictor):
    """The shipped micro-expression model (mer.predict.micro_checkpoint()) on the predictor's device,
    loaded once per predictor. A missing or unusable one is a CheckpointError that says so: micro
    intervals fall back to the per-frame model only when asked (analyze_video(micro_predictor=False)),
    never silently."""
    if predictor not in _micro_models:
        from .checkpoint import CheckpointError
        from .predict import Predictor, micro_checkpoint
        try:
            _micro_models[predictor] = Predictor(micro_checkpoint(), device=predictor.device)
        except CheckpointError as e:
            raise CheckpointError(f"the micro-expression model cannot be used: {e} (to classify micro "
                                  "intervals with the per-frame model instead, pass micro_predictor=False)") from None
    return _micro_models[predictor]


class Overlap:
    """Runs `fn(item)` for each submitted item on one background thread, in order, at most one
    item in flight: `submit` waits for the previous item first (and re-raises its error there).
    `torch_threads`: that thread's own number of torch CPU threads (others keep theirs)."""

    def __init__(self, fn: Callable, torch_threads: int | None = None):
        from concurrent.futures import ThreadPoolExecutor
        self.fn, self.pool, self.pending = fn, ThreadPoolExecutor(1, thread_name_prefix="mer-score"), None
        if torch_threads:
            import torch
            # torch.set_num_threads sets the calling thread's OpenMP team size and a process-wide
            # default that a thread reads when it first uses torch (get_num_threads does): on the
            # background thread, first use then set; then put the default back from this thread
            # (whose own count stays as it is)
            mine = torch.get_num_threads()
            self.pool.submit(lambda: (torch.get_num_threads(), torch.set_num_threads(int(torch_threads)))).result()
            torch.set_num_threads(mine)

    def submit(self, item) -> None:
        self._wait()
        self.pending = self.pool.submit(self.fn, item)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def close(self, wait_error: bool = True) -> None:
        """Wait for the last item (raising its error unless wait_error is False) and stop the thread."""
        try:
            if wait_error:
                self._wait()
            elif self.pending is not None:
                self.pending.exception()
        finally:
            self.pool.shutdown(wait=True)


# ---------------------------------------------------------------- the pipeline

def recognize_intervals(intervals, frames, classes, apex_crop, micro, micro_by: str = "micro_model"):
    """Spotted intervals -> recognised (class, prob, recognized_by: mer.spotting.recognize) and
    AU-labelled (aus, objective_class, emotion: mer.aus.label_intervals); with micro_by="aus" micro
    intervals take their AU-based emotion as class. What analyze_video and training.spot both do."""
    intervals = label_intervals(recognize(intervals, frames, classes, apex_crop, micro), frames)
    return recognize_micro_by_aus(intervals) if micro_by == "aus" else intervals


def mesh_threads(predictor) -> int | None:
    """Torch CPU threads for the mesh on the scoring thread: half of this thread's (at least one),
    so that the two threads' torch work does not ask for more cores than there are; None on CUDA."""
    import torch
    if getattr(predictor, "device", None) is None or torch.device(predictor.device).type != "cpu":
        return None
    return max(1, torch.get_num_threads() // 2)


def open_video(path: str | Path):
    """decord VideoReader with a clear VideoError for missing, empty or undecodable files."""
    import decord
    p = check_file(path)
    try:
        vr = decord.VideoReader(str(p), ctx=decord.cpu(0), num_threads=1)
    except Exception as e:  # decord raises DECORDError (a RuntimeError) with ffmpeg's words
        raise VideoError(f"{p.name}: not a readable video ({diagnose(p, e)})") from None
    if len(vr) == 0:
        raise VideoError(f"{p.name}: the video has no decodable frames")
    return vr



def _check_limits(path: Path, info, s: VideoSettings) -> None:
    if s.max_frames and info.n_frames > s.max_frames:
        raise VideoError(f"{path.name}: {info.n_frames} frames is over the limit of {s.max_frames}")
    if s.max_duration_s and info.duration_s > s.max_duration_s:
        raise VideoError(f"{path.name}: {info.duration_s:.1f} s is over the limit of {s.max_duration_s:g} s")
    if s.max_side and max(info.width, info.height) > s.max_side:
        raise VideoError(f"{path.name}: {info.width}×{info.height} is over the limit of {s.max_side} px "
                         "on the longer side")


def analyze_video(path: str | Path, predictor, settings: VideoSettings | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  name: str | None = None, preview=None, micro_predictor=None) -> VideoResult:
    """Decode, detect, track, classify and spot one video in one pass; see the module docstring.

    `progress(done_frames, total_frames)` is called after every chunk. `name` is the value of the
    `video` column (default: the file name). `preview`: a mer.encode.PreviewWriter that receives
    the annotated frames on the way (written when the analysis succeeds, removed when it fails).
    `micro_predictor` recognises micro intervals from their apex crop (default: the shipped
    micro-expression model, a CheckpointError when it is missing or broken; False: the per-frame
    model's mean over the interval instead)."""
    s = settings or VideoSettings()
    path = Path(path)
    classes = list(predictor.classes)
    with open_source(path, max(1, s.chunk_size), s.isolate_decoder, s.decoder_memory_mb,
                     s.decoder_timeout_s, s.folder_fps) as src:
        info = src.info
        _check_limits(path, info, s)
        if progress:
            progress(0, info.n_frames)
        detect = Detect(predictor.detector_for(s.detector_config()), s.detect_every, info.n_frames)
        track, crop, classify = Track(s.tracker), Crop(predictor), Classify(predictor)
        rows = Rows(len(classes), s.spotting.scorers())
        gap = max(1, round(APEX_GAP_S * (info.fps or 25)))
        micro = micro_predictor if micro_predictor is not None else micro_model_for(predictor)
        motion = Motion(s.spotting, rows.scored, s.n_thumbnails, gap, APEX_KEEP if micro else 0, micro or None)
        shown = Preview(preview, classes) if preview is not None else None
        mesh = MeshStage(predictor.landmarker if s.aus else None, s.landmarks, s.mesh_every)

        def score(frames: list[FrameRecord]) -> None:
            mesh(frames)
            rows.add(frames)
            motion(frames)
            if shown:
                shown.add(frames)

        # the face mesh (torch) and the motion score (OpenCV) of a chunk run on one background
        # thread beside the next chunk's decoding, detection and classification (torch): one chunk
        # in flight, in order; on the CPU that thread's torch gets half the threads (docs/aus.md)
        scoring = Overlap(score, mesh_threads(predictor) if mesh.landmarker is not None else None)
        try:
            if preview is not None:
                preview.open(info.width, info.height, info.fps)
            done = 0
            chunks = src.chunks()
            while (chunk := next(chunks, None)) is not None:
                scoring.submit(classify(crop(track(detect(frame_records(chunk))))))
                done = int(chunk.index[-1]) + 1
                del chunk  # memory: the chunk being decoded and the one being scored
                if progress:
                    progress(done, info.n_frames)
            scoring.submit(classify(crop(track.flush())))
            scoring.close()
            if not rows.frame:
                raise VideoError(f"{path.name}: the video has no decodable frames")
            motion.flush()
            frames_df, end_s = rows.table(name or path.name, classes, s.spotting, motion.settled)
            motion_by = {int(k): str(v) for k, v in
                         frames_df.dropna(subset=["motion_by"]).groupby("face_id")["motion_by"].first().items()}
            motion.use(motion_by)
            intervals = spot_intervals(frames_df, end_s, s.spotting)
            intervals = recognize_intervals(intervals, frames_df, classes, motion.apex_crop, micro or None, s.micro_by)
            if preview is not None:
                preview.close()
        except BaseException:
            scoring.close(wait_error=False)
            if preview is not None:
                preview.abort()
            raise
        if progress and info.partial:
            progress(done, done)
    n, t0, t1 = int(frames_df["frame"].nunique()), rows.start[0], rows.start[-1]
    duration = float(end_s.max() - t0)
    out = {"n_frames": n, "fps": round(info.fps, 6),
           "fps_measured": round((n - 1) / (t1 - t0), 6) if n > 1 and t1 > t0 else round(info.fps, 6),
           "duration_s": round(duration, 6), "width": info.width, "height": info.height,
           "n_faces": int(frames_df["face_id"].nunique()), "n_intervals": len(intervals),
           "n_frames_with_face": int(frames_df.loc[frames_df["face_id"].notna(), "frame"].nunique()),
           "dominant_class": (frames_df["top_class"].dropna().mode().iloc[0]
                              if frames_df["top_class"].notna().any() else ""),
           "partial": info.partial, "decoder": info.backend, "hidden_frames": info.hidden,
           "classes": classes, "checkpoint": str(getattr(predictor, "checkpoint", "")),
           "motion_by": {str(k): v for k, v in motion_by.items()}, "settings": s.to_dict()}
    return VideoResult(str(path), frames_df, intervals, out, motion.pick(intervals), classes, mesh.arrays(),
                       motion.chosen_apexes())
