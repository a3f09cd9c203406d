"""Spotting: a per-frame motion score per face track -> micro- and macro-expression intervals.

Score (`MotionScorer`, streaming, memory flat in video length). For each face, every frame's
aligned face crop (gray, `crop` px, blurred) is compared with the crops `window_s` seconds before
and after it, found by the frames' real timestamps (right on variable frame rate video):

0. the crop is cut from the face's box and landmarks smoothed by a running median over
   `geometry_s` (a bad detection does not throw it);
1. each reference crop is registered onto frame t (OpenCV ECC, affine, on the face ellipse), so
   head translation, rotation, scale and detection jitter do not count as movement; frames 3-5 s
   apart are each other's references, so each pair is registered once and its warp is applied
   the other way round for the other frame;
2. crops are normalised (mean/std over the face ellipse), so lighting drift does not count;
3. the absolute difference is masked at the eyes (blinks are not expressions) and outside the face
   ellipse, averaged in `block`-px blocks, and the mean of the top `top` fraction of blocks is
   taken (expressions are local: one action unit moves a few blocks);
4. score(t) = the min of the differences to the references at t -/+ `ref_frac` x window_s (3, 4 and
   5 s before and after): high only while the face differs from BOTH sides, so an expression
   shorter than the nearest reference gives one plateau over its own frames (no side lobes), a
   lasting change (a new head pose) gives nothing, and a reference that falls inside another
   expression does not make a still frame score (another reference on that side is still).
   Near the start and end of a track the track's first / last frame stands in for a reference
   that does not exist (when at least `min_ref_s` away), otherwise only the other side is used.

The scorer keeps only the crops of the last 2 * window_s seconds per track, and a track that has
had no frame for `span_s` seconds of the stream (the farthest a reference can be: max(ref_frac) x
window_s + the 0.25 x window_s a reference may be off its target) has ended: it is scored as
`flush` would score it and released, so the crops held stay bounded by the live tracks (a face id
that comes back later starts a new buffer: its old frames are too far to be anyone's reference).

Spotting (`spot`), per track: the score is smoothed over `smooth_s` seconds (real timestamps);
two thresholds relative to the track's own noise (hysteresis): an interval is where the score
stays above median + max(extent_c * 1.4826 * MAD, extent_min_rise) around a peak that reaches
median + max(c * 1.4826 * MAD, min_rise) (robust; the `min_rise` floor: a still or merely talking
face yields nothing). So a weak expression is found by its peak but measured by its whole rise
and fall, while noise that only crosses the lower level is not an interval. Runs (merged across
gaps under `merge_s`) are cut down around their peak to where the score stays at or above `rel` x
peak, bridging dips shorter than `merge_s` (one expression often scores two lobes); a core shorter than `min_s` is a blip, and a core that runs into the track's first or
last frame (`drop_cut`: only one side of it is seen) is dropped; the core is padded by `pad_s` on
both sides; the duration from the real timestamps gives the type: up to `micro_max_s` (0.5 s) a
micro-expression, up to `macro_max_s` a macro-expression, longer runs are dropped. `score` is the
apex's robust z-score (peak - median) / (1.4826 MAD).

Recognition (`recognize`): each micro interval is classified by the micro-expression model from
its apex crop, each macro interval by the mean per-frame probabilities over its frames; the
`recognized_by` column says which (and why a micro interval fell back to the per-frame model).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

import cv2
import numpy as np
import pandas as pd

INTERVAL_COLUMNS = ["face_id", "type", "onset_frame", "apex_frame", "offset_frame", "onset_s", "apex_s",
                    "offset_s", "class", "prob", "score", "recognized_by"]
TYPES = ("micro", "macro")
METHODS = ("auto", "ecc", "flow")  # SpotConfig.method: the motion scorer (see SpotConfig.for_method)
DEFAULT_METHOD = "auto"    # what mer.video.VideoSettings, python -m batch and the app use unless told
# chosen for the flow scorer on the real-clip dev split (no hysteresis: its extent level is its detection level)
FLOW_THRESHOLDS = {"c": 4.0, "min_rise": 0.0, "pad_s": 0.05, "extent_c": None, "extent_min_rise": None}
REF_TOL = 0.25  # a reference frame may be this fraction of window_s off its target time
# What each scorer was measured to find, as docs/spotting.md ("Results") reports it with the shipped
# defaults (MEGC: IoU >= 0.5, same type); the app and the HTML report show it beside the intervals.
MEASURED = {
    "ecc": "on photo-animated videos with planted expressions (eval seed 2026): micro-expression F1 0.194, "
           "macro-expression F1 0.727",
    "flow": "on real clips with planted expressions (eval seed 2027): 1 of 16 micro- and 0 of 5 "
            "macro-expressions found, at 18.5 intervals a minute, most of them on the face's own movements",
}


@dataclass
class SpotConfig:
    """Defaults: c, min_rise, rel, pad_s, merge_s and min_s chosen with training.spot's grid on 10
    generated 60-s dev videos of 9 subjects (training.synth_long --seed 7 and --seed 8), never on
    the videos the figures in docs/spotting.md are measured on. With today's FACS-local warps the
    grid prefers a lower floor (min_rise 0.01, c 2: GroupKFold F1 0.584 vs 0.495 on dev), but that
    turns a 0.36-s planted micro-expression into a macro interval and finds intervals in a loud
    face's noise (tests/test_spotting.py). So the lower level measures an interval's extent only
    (extent_c, extent_min_rise: hysteresis), with pad_s 0.05: dev overall F1 0.436 -> 0.489 with
    the tests kept (docs/spotting.md)."""
    window_s: float = 5.0       # references: the crops up to this many seconds before and after ...
    ref_frac: tuple = (0.6, 0.8, 1.0)  # ... at these fractions of window_s (3, 4, 5 s) on each side
    min_ref_s: float = 0.75     # near a track's ends: its first/last frame, if at least this far
    geometry_s: float = 0.3     # crop from the median face box/landmarks of the last this-many seconds
    crop: int = 96              # side of the gray aligned crop the score uses
    margin: float = 0.1         # crop margin around the face box (fraction of the box)
    block: int = 8              # block side (px) for local differences
    top: float = 0.15           # fraction of blocks (the most changed) averaged
    eye_mask: bool = True       # leave the eyes out (blinks)
    smooth_s: float = 0.1       # moving average before thresholding
    c: float = 3.0              # detection: a peak above median + c * 1.4826 * MAD ...
    min_rise: float = 0.02      # ... and above median + min_rise
    extent_c: float | None = 2.0          # extent: where the score stays above median + extent_c * 1.4826 * MAD ...
    extent_min_rise: float | None = 0.01  # ... and above median + extent_min_rise (None: the detection level)
    rel: float = 0.3            # an interval is where the score stays >= rel * its peak
    pad_s: float = 0.05         # widen each interval by this much on both sides
    merge_s: float = 0.1        # gaps between runs (and dips inside an interval) shorter than this are bridged
    min_s: float = 0.06         # shorter cores (before padding) are noise
    drop_cut: bool = True       # drop intervals cut by the track's first or last frame
    micro_max_s: float = 0.5    # longest micro-expression
    macro_max_s: float = 4.0    # longest macro-expression (longer runs are dropped)
    method: str = "ecc"         # "ecc": registered differences to references 3-5 s away; "flow": optical
    flow_k_s: float = 0.3       # flow between t and t -/+ flow_k_s (real clips; see FLOW and the docstring)
    flow_top: float = 0.1       # flow: fraction of blocks (the most moved) averaged
    auto_ecc_median: float = 0.25  # "auto": a track whose median ECC score is above this is scored by flow
    auto_settle_s: float | None = 3.0  # "auto": a track whose first this-many seconds of ECC scores already have
    #   a median over auto_ecc_median is settled on flow there and its ECC scorer stops (None: both run to the end)

    @classmethod
    def flow(cls, **kw) -> "SpotConfig":
        """The optical-flow scorer with the threshold settings chosen for it on the real-clip dev split
        (docs/spotting.md): threshold median + 4 MAD, no absolute floor, 0.05 s padding."""
        return cls(**{"method": "flow", **FLOW_THRESHOLDS, **kw})

    @classmethod
    def for_method(cls, method: str, **kw) -> "SpotConfig":
        """The shipped settings of a scorer: "ecc" -> SpotConfig(), "flow" -> SpotConfig.flow(),
        "auto" -> both scorers run, each track is spotted with one (`choose_method`; a track
        whose first auto_settle_s seconds of ECC scores already choose flow stops its ECC scorer:
        mer.video.Motion)."""
        if method not in METHODS:
            raise ValueError(f"unknown spotting method {method!r}: choose one of {', '.join(METHODS)}")
        return cls.flow(**kw) if method == "flow" else cls(**{"method": method, **kw})

    def scorers(self) -> tuple[str, ...]:
        """The scorers this config runs: both for "auto", else its own."""
        return ("ecc", "flow") if self.method == "auto" else (self.method,)

    def resolved(self, method: str) -> "SpotConfig":
        """The settings a track scored by `method` is spotted with: this config itself, or for
        "auto" its ECC settings as they are and, for flow, FLOW_THRESHOLDS over the rest."""
        if self.method != "auto":
            return self
        return replace(self, method=method, **(FLOW_THRESHOLDS if method == "flow" else {}))


def track_config(config: SpotConfig, track) -> SpotConfig:
    """The settings one face track's rows (a frames table's, with `motion_by`) are spotted with."""
    by = track["motion_by"].dropna() if "motion_by" in track else ()
    return config.resolved(str(by.iloc[0])) if len(by) else config


def choose_method(config: SpotConfig, ecc_scores) -> str:
    """The scorer a track is spotted with. "auto": ECC's references 3-5 s away only compare like with
    like while the face keeps one appearance (a photo, a still sitter); on a real face that turns,
    talks, cries and laughs, its score saturates and its threshold then rises above everything, so a
    track whose median raw ECC score is over `auto_ecc_median` is spotted by the short-window flow
    scorer instead. Medians measured (docs/spotting.md): photo-animated subjects 0.02-0.04, a small
    background face of a group photo 0.21, single_face.mp4 played back and forth 0.06;
    WolfgangLanger_Pexels.mp4 0.58 (its 9-14.5 s at half size: 0.29)."""
    if config.method != "auto":
        return config.method
    v = np.asarray(ecc_scores, np.float64)
    v = v[np.isfinite(v)]
    return "flow" if len(v) and float(np.median(v)) > config.auto_ecc_median else "ecc"


# ---------------------------------------------------------------------------------------- the score

class MotionScorer:
    """Streaming score, one buffer per face track.

        scorer = MotionScorer(SpotConfig())
        for each decoded frame, for each face:  out += scorer.push(face_id, frame, t, image, face)
        out += scorer.flush()          # -> [(face_id, frame, score), ...] (any order)

    Scores come as the stream advances: a frame's `window_s` later, an ended track's `span_s` after
    its last frame (`advance(t)` moves the stream on for a frame without faces; `push` does it too).

    `push` may also take a ready crop: `push(face_id, frame, t, crop=gray_or_rgb, eyes=(2, 2))`
    (eye centres in crop pixels, optional)."""

    def __init__(self, config: SpotConfig | None = None):
        self.config = c = config or SpotConfig()
        s = c.crop
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        self._xx, self._yy = xx, yy
        self.face = (((xx - s / 2) / (0.42 * s)) ** 2 + ((yy - s * 0.55) / (0.5 * s)) ** 2 < 1).astype(np.float32)
        self._face8 = (self.face > 0).astype(np.uint8)
        self._crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 1e-3)
        self.tracks: dict[int, dict] = {}
        self._geometry: dict[int, list] = {}
        self._now = -np.inf
        if c.method not in ("ecc", "flow"):
            raise ValueError(f"a MotionScorer runs 'ecc' or 'flow', not {c.method!r} (for 'auto': one scorer "
                             "per SpotConfig.scorers(), each with SpotConfig.resolved(name))")
        # how far a score looks ahead (and back): the references' farthest distance
        self.horizon = c.flow_k_s if c.method == "flow" else c.window_s
        reach = 1.0 if c.method == "flow" else max(c.ref_frac)
        self.span_s = (reach + REF_TOL) * self.horizon  # a track unseen this long has ended
        fy, fx = self._yy[self.face > 0], self._xx[self.face > 0]
        self._fit = np.linalg.pinv(np.c_[fx, fy, np.ones_like(fx)])  # affine least squares on the face
        self._design = np.stack([xx, yy, np.ones_like(xx)], -1)

    @property
    def held(self) -> int:
        """Crops held, all tracks together."""
        return sum(len(tr["g"]) for tr in self.tracks.values())

    # -- inputs
    def steady(self, face_id: int, t: float, face):
        """The face with box and landmarks replaced by their medians over the track's last
        `geometry_s` seconds: one bad detection (a keyframe's box too small, landmarks off) does
        not throw the crop; what lag is left, the registration absorbs."""
        from .faces import Face
        hist = self._geometry.setdefault(int(face_id), [])
        hist.append((float(t), np.r_[np.asarray(face.box, np.float64), np.asarray(face.landmarks, np.float64).ravel()]))
        while hist and hist[0][0] < t - self.config.geometry_s:
            hist.pop(0)
        m = np.median(np.stack([g for _, g in hist]), axis=0)
        return Face(m[:4].astype(np.float32), face.prob, m[4:].reshape(5, 2).astype(np.float32))

    def prepare(self, image: np.ndarray, face) -> tuple[np.ndarray, np.ndarray | None]:
        """Aligned gray crop (float32, blurred) and the eye centres in crop pixels."""
        from .faces import align_matrix
        c = self.config
        m = align_matrix(face, c.crop, c.margin)
        crop = cv2.warpAffine(image, m, (c.crop, c.crop), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        eyes = np.c_[np.asarray(face.landmarks, np.float64)[:2], np.ones(2)] @ m.T
        return self._gray(crop), eyes

    def _gray(self, crop: np.ndarray) -> np.ndarray:
        s = self.config.crop
        g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
        if g.shape != (s, s):
            g = cv2.resize(g, (s, s), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(g.astype(np.float32), (0, 0), 1.0)

    def mask(self, eyes) -> np.ndarray:
        m = self.face.copy()
        if self.config.eye_mask and eyes is not None:
            d = float(np.linalg.norm(eyes[1] - eyes[0]))
            for ex, ey in eyes:
                m[((self._xx - ex) / (0.35 * d)) ** 2 + ((self._yy - ey) / (0.22 * d)) ** 2 < 1] = 0
        return m

    # -- streaming
    def advance(self, t: float) -> list[tuple[int, int, float]]:
        """The stream has reached time t: tracks with no frame in the last `span_s` seconds have
        ended; their remaining frames are scored (exactly as `flush` would) and their crops released."""
        self._now = max(self._now, float(t))
        out = []
        for fid in [f for f, tr in self.tracks.items() if tr["t"][-1] < self._now - self.span_s]:
            out += self._drain(fid, final=True)
            del self.tracks[fid]
            self._geometry.pop(fid, None)
        return out

    def drop(self, face_id: int) -> list[int]:
        """Stop scoring a face: its crops and geometry are released at once; returns the frames it
        was given but had not scored yet (they never will be)."""
        tr = self.tracks.pop(int(face_id), None)
        self._geometry.pop(int(face_id), None)
        return [] if tr is None else list(tr["f"][tr["next"]:])

    def push(self, face_id: int, frame: int, t: float, image: np.ndarray | None = None, face=None,
             crop: np.ndarray | None = None, eyes=None) -> list[tuple[int, int, float]]:
        ended = self.advance(t)
        if crop is None:
            g, eyes = self.prepare(image, self.steady(face_id, t, face) if self.config.geometry_s > 0 else face)
        else:
            g = self._gray(crop)
        tr = self.tracks.setdefault(int(face_id), {"t": [], "f": [], "g": [], "eyes": [], "next": 0, "warps": {}})
        tr["t"].append(float(t))
        tr["f"].append(int(frame))
        tr["g"].append(g)
        tr["eyes"].append(None if eyes is None else np.asarray(eyes, np.float64))
        return ended + self._drain(int(face_id), final=False)

    def flush(self) -> list[tuple[int, int, float]]:
        out = []
        for fid in list(self.tracks):
            out += self._drain(fid, final=True)
            del self.tracks[fid]
        self._geometry.clear()
        return out

    def _drain(self, fid: int, final: bool) -> list[tuple[int, int, float]]:
        tr, k = self.tracks[fid], self.horizon
        out = []
        while tr["next"] < len(tr["t"]):
            i = tr["next"]
            if not final and tr["t"][-1] < tr["t"][i] + k:
                break
            out.append((fid, tr["f"][i], self._score(tr, i, k, final)))
            tr["next"] += 1
        # drop what no later centre can need: frames more than k before the next centre
        nxt = tr["t"][min(tr["next"], len(tr["t"]) - 1)]
        keep = max(0, bisect.bisect_left(tr["t"], nxt - k) - 1)
        if keep > 0:
            for key in ("t", "f", "g", "eyes"):
                del tr[key][:keep]
            tr["next"] -= keep
            first = tr["f"][0]  # warps with a frame no longer kept can never be asked for again
            tr["warps"] = {p: w for p, w in tr["warps"].items() if min(p) >= first}
        return out

    def _ref(self, times: list[float], i: int, target: float, final: bool) -> int | None:
        """The frame nearest to `target`; past the track's first (or, at the end, last) frame that
        frame, when it is at least min_ref_s away."""
        k, ti = self.horizon, times[i]
        if self.config.method == "flow":  # short references: none past the track's ends
            j = bisect.bisect_left(times, target)
            near = [c for c in (j - 1, j) if 0 <= c < len(times)]
            best = min(near, key=lambda c: abs(times[c] - target)) if near else None
            return best if best is not None and abs(times[best] - target) <= REF_TOL * k else None
        if target < times[0] - REF_TOL * k or (target > times[-1] + REF_TOL * k and final):
            j = 0 if target < times[0] else len(times) - 1
            return j if abs(times[j] - ti) >= self.config.min_ref_s else None
        j = bisect.bisect_left(times, target)
        best = min((c for c in (j - 1, j) if 0 <= c < len(times)), key=lambda c: abs(times[c] - target))
        return best if abs(times[best] - target) <= REF_TOL * k else None

    def _score(self, tr: dict, i: int, k: float, final: bool) -> float:
        if self.config.method == "flow":
            return self._flow_score(tr, i, k, final)
        times, ti = tr["t"], tr["t"][i]
        targets = [ti + sign * f * k for sign in (-1, 1) for f in self.config.ref_frac]
        refs = {self._ref(times, i, x, final) for x in targets}
        refs = sorted(r for r in refs if r is not None and r != i)
        if not refs:
            return 0.0  # no reference far enough away (a track under min_ref_s): no measurable motion
        m = self.mask(tr["eyes"][i])
        ni = self._norm(tr["g"][i])
        return float(min(self._diff(ni, self._registered(tr, r, i), m) for r in refs))

    def _flow_score(self, tr: dict, i: int, k: float, final: bool) -> float:
        """Non-rigid motion of frame i against both its neighbours k seconds away, less what moved
        between those neighbours: per block, max(0, min(|flow(i, i-k)|, |flow(i, i+k)|) -
        |flow(i-k, i+k)|), the mean of the top `flow_top` blocks. An expression shorter than 2k
        that comes back scores over its frames; a drift, a turn of the head, or an expression that
        stays (onset of a lasting change) moves the neighbours apart too and scores little."""
        a, b = (self._ref(tr["t"], i, tr["t"][i] + sign * k, final) for sign in (-1, 1))
        a, b = (None if r == i else r for r in (a, b))
        if a is None and b is None:
            return 0.0
        m = self.mask(tr["eyes"][i])
        sides = [self._moved(tr["g"][i], tr["g"][r], m) for r in (a, b) if r is not None]
        moved = np.minimum(*sides) if len(sides) == 2 else sides[0]
        if a is not None and b is not None:
            moved = np.maximum(0.0, moved - self._moved(tr["g"][a], tr["g"][b], m))
        v = moved.ravel()
        n = max(1, int(round(len(v) * self.config.flow_top)))
        return float(np.partition(v, len(v) - n)[-n:].mean())

    def _moved(self, g0: np.ndarray, g1: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per block, the mean length of the optical flow (OpenCV Farneback) from g0 to g1 after
        the affine motion that best fits the whole face (least squares) is taken out: what is
        left is non-rigid (expressions, speech), not the head's pose or the crop's jitter."""
        u8 = [np.clip(g, 0, 255).astype(np.uint8) for g in (g0, g1)]
        fl = cv2.calcOpticalFlowFarneback(u8[0], u8[1], None, 0.5, 3, 9, 3, 5, 1.1, 0)
        on = self.face > 0
        params = self._fit @ fl[on]                      # (3, 2): affine fit of (u, v)
        fl = fl - self._design @ params
        d = np.hypot(fl[..., 0], fl[..., 1]) * mask
        b, s = self.config.block, (self.config.crop // self.config.block) * self.config.block
        return d[:s, :s].reshape(s // b, b, s // b, b).mean((1, 3))

    def _registered(self, tr: dict, r: int, i: int) -> np.ndarray:
        """Crop r registered onto crop i (OpenCV ECC, affine, on the face ellipse). One ECC per pair
        of frames: frames 3-5 s apart are each other's references, so the warp found while scoring
        one is kept and applied the other way round when the other is scored (half the ECC runs)."""
        key = (tr["f"][i], tr["f"][r])
        w = tr["warps"].pop(key[::-1], False)  # found when r was scored with i as its reference
        if w is not False:
            return tr["g"][r] if w is None else self._warp(tr["g"][r], w, inverse=False)
        w = np.eye(2, 3, dtype=np.float32)
        try:
            _, w = cv2.findTransformECC(tr["g"][i], tr["g"][r], w, cv2.MOTION_AFFINE, self._crit, self._face8, 1)
        except cv2.error:  # did not converge: compared unregistered (both ways)
            w = None
        tr["warps"][key] = w
        return tr["g"][r] if w is None else self._warp(tr["g"][r], w, inverse=True)

    def _warp(self, src: np.ndarray, w: np.ndarray, inverse: bool) -> np.ndarray:
        s = self.config.crop
        return cv2.warpAffine(src, w, (s, s), flags=cv2.INTER_LINEAR + (cv2.WARP_INVERSE_MAP if inverse else 0),
                              borderMode=cv2.BORDER_REPLICATE)

    def _norm(self, g: np.ndarray) -> np.ndarray:
        v = g[self._face8 > 0]
        return (g - v.mean()) / (v.std() + 1e-6)

    def _diff(self, ni: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
        c = self.config
        d = np.abs(ni - self._norm(ref)) * mask
        b = c.block
        s = (c.crop // b) * b
        blocks = d[:s, :s].reshape(s // b, b, s // b, b).mean((1, 3)).ravel()
        n = max(1, int(round(len(blocks) * c.top)))
        return float(np.partition(blocks, len(blocks) - n)[-n:].mean())


# ------------------------------------------------------------------------------------- spotting

def smooth_time(score: np.ndarray, t: np.ndarray, window_s: float) -> np.ndarray:
    """Centred moving average over window_s seconds of real time (variable frame rate safe)."""
    s = pd.Series(np.asarray(score, np.float64), index=pd.to_timedelta(np.asarray(t, np.float64), unit="s"))
    if window_s <= 0 or len(s) < 2 or not s.index.is_monotonic_increasing:
        return s.to_numpy()
    return s.rolling(pd.Timedelta(seconds=window_s), center=True, min_periods=1).mean().to_numpy()


def noise_level(score: np.ndarray) -> tuple[float, float]:
    """(median, robust sigma = 1.4826 * MAD) of the finite scores."""
    v = np.asarray(score, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med)))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1))


def _nearest(times: np.ndarray, target: float, i0: int, i1: int, side: str) -> int:
    """The index in [i0, i1] whose time is nearest to target; a tie goes outwards, away from the
    core: to the lower index on the "onset" side, to the higher on the "offset" side."""
    d = np.abs(times[i0:i1 + 1] - target)
    best = np.flatnonzero(d <= d.min() + 1e-6)
    return i0 + int(best[0] if side == "onset" else best[-1])


def spot(frames: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, score: np.ndarray, face_id: int = 0,
         config: SpotConfig | None = None, smoothed: bool = False) -> list[dict]:
    """One face track (rows sorted by time): raw score -> interval dicts (INTERVAL_COLUMNS; class
    and prob empty until `recognize`)."""
    c = config or SpotConfig()
    frames, start_s, end_s = (np.asarray(a) for a in (frames, start_s, end_s))
    score = np.asarray(score, np.float64)
    if not smoothed:
        score = smooth_time(score, start_s, c.smooth_s)
    ok = np.isfinite(score)
    if ok.sum() < 3:
        return []
    med, sigma = noise_level(score)
    peak_thr = med + max(c.c * sigma, c.min_rise)
    ext_c = c.c if c.extent_c is None else c.extent_c
    ext_rise = c.min_rise if c.extent_min_rise is None else c.extent_min_rise
    thr = min(peak_thr, med + max(ext_c * sigma, ext_rise))
    above = np.where(ok, score, -np.inf) > thr
    merged: list[list[int]] = []
    for a, b in _runs(above):
        if merged and start_s[a] - end_s[merged[-1][1]] < c.merge_s:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out = []
    n = len(score)
    for a, b in merged:
        apex = a + int(np.nanargmax(score[a:b + 1]))
        if not score[apex] > peak_thr:
            continue  # rises above the extent level only: noise
        cut = max(thr, c.rel * score[apex])
        runs = [(r0 + a, r1 + a) for r0, r1 in _runs(score[a:b + 1] >= cut)]
        k0 = k1 = next(k for k, (r0, r1) in enumerate(runs) if r0 <= apex <= r1)
        while k0 > 0 and start_s[runs[k0][0]] - end_s[runs[k0 - 1][1]] < c.merge_s:
            k0 -= 1  # dips under the cut shorter than merge_s do not end the interval
        while k1 < len(runs) - 1 and start_s[runs[k1 + 1][0]] - end_s[runs[k1][1]] < c.merge_s:
            k1 += 1
        lo, hi = runs[k0][0], runs[k1][1]
        core = float(end_s[hi] - start_s[lo])
        if core < c.min_s - 1e-9:
            continue  # a blip: shorter than any expression before padding
        if c.drop_cut and (lo == 0 or hi == n - 1):
            continue  # runs into the track's start or end: one side unseen, onset or offset unknown
        t0, t1 = start_s[lo] - c.pad_s, end_s[hi] + c.pad_s
        lo = _nearest(start_s, t0, 0, lo, "onset")     # the frames nearest the padded times
        hi = _nearest(end_s, t1, hi, n - 1, "offset")  # (variable frame rate: a tie goes outwards)
        dur = float(end_s[hi] - start_s[lo])
        if dur > c.macro_max_s + 1e-9:
            continue
        kind = "micro" if dur <= c.micro_max_s + 1e-9 else "macro"
        z = (score[apex] - med) / sigma if sigma > 0 else float("inf")
        out.append({"face_id": int(face_id), "type": kind, "onset_frame": int(frames[lo]),
                    "apex_frame": int(frames[apex]), "offset_frame": int(frames[hi]),
                    "onset_s": round(float(start_s[lo]), 6), "apex_s": round(float(start_s[apex]), 6),
                    "offset_s": round(float(end_s[hi]), 6), "class": "", "prob": float("nan"),
                    "score": round(float(z), 3), "recognized_by": ""})
    return out


def recognize(intervals: pd.DataFrame, frames: pd.DataFrame, classes: list[str], apex_crop=None,
              micro=None) -> pd.DataFrame:
    """Fill `class`, `prob` and `recognized_by`: a micro interval by the micro-expression model
    `micro` (a mer.Predictor) from its apex crop, `apex_crop(frame, face_id) -> RGB image crop or
    None` ("micro_model"); a macro interval by the per-frame probabilities p_<class> of `frames`
    averaged over its frames ("frame_model"). A micro interval without a micro model or without an
    apex crop is classified like a macro one and says why ("frame_model: no micro model" /
    "frame_model: no apex crop")."""
    out = intervals.copy()
    if not len(out):
        return out
    out["recognized_by"] = ""
    cols = [f"p_{c}" for c in classes]
    micro_rows = [k for k, r in out.iterrows() if r["type"] == "micro"] if micro and apex_crop else []
    crops = {k: apex_crop(int(out.at[k, "apex_frame"]), int(out.at[k, "face_id"])) for k in micro_rows}
    crops = {k: v for k, v in crops.items() if v is not None}
    if crops:
        probs = micro.classify(list(crops.values()))[0]
        for k, p in zip(crops, probs):
            out.at[k, "class"] = micro.classes[int(p.argmax())]
            out.at[k, "prob"] = round(float(p.max()), 6)
            out.at[k, "recognized_by"] = "micro_model"
    fid = frames["face_id"]
    for k, r in out.iterrows():
        if k in crops or not cols:
            continue
        sel = frames[(fid == r["face_id"]) & (frames["frame"] >= r["onset_frame"]) & (frames["frame"] <= r["offset_frame"])]
        p = sel[cols].to_numpy(np.float64)
        p = p[np.isfinite(p).all(1)] if len(p) else p
        if len(p):
            m = p.mean(0)
            out.at[k, "class"] = classes[int(m.argmax())]
            out.at[k, "prob"] = round(float(m.max()), 6)
            out.at[k, "recognized_by"] = "frame_model" + (
                "" if r["type"] != "micro" else ": no apex crop" if k in micro_rows else ": no micro model")
    return out


# ----------------------------------------------------------------------------------- evaluation

def iou(a0: float, a1: float, b0: float, b1: float) -> float:
    """Temporal IoU of [a0, a1] and [b0, b1] (inclusive frame indexes or seconds)."""
    inter = min(a1, b1) - max(a0, b0)
    union = max(a1, b1) - min(a0, b0)
    return max(0.0, inter) / union if union > 0 else 0.0


def match(spotted: list[tuple[float, float]], truth: list[tuple[float, float]], min_iou: float = 0.5
          ) -> list[tuple[int, int, float]]:
    """MEGC rule: a spotted interval is a true positive when IoU >= min_iou with a truth interval;
    each truth is matched at most once (greedy by IoU, highest first). Intervals are inclusive
    frame ranges (onset, offset); returns (spotted index, truth index, IoU) pairs."""
    pairs = []
    for i, (s0, s1) in enumerate(spotted):
        for j, (g0, g1) in enumerate(truth):
            v = iou(s0, s1 + 1, g0, g1 + 1)
            if v >= min_iou:
                pairs.append((v, i, j))
    used_s, used_t, out = set(), set(), []
    for v, i, j in sorted(pairs, reverse=True):
        if i not in used_s and j not in used_t:
            used_s.add(i)
            used_t.add(j)
            out.append((i, j, v))
    return out


def prf(tp: int, n_spotted: int, n_true: int) -> dict:
    p = tp / n_spotted if n_spotted else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"TP": int(tp), "n_spotted": int(n_spotted), "n_true": int(n_true), "precision": round(p, 4),
            "recall": round(r, 4), "F1": round(f, 4)}
