"""Micro-expression spotting: a per-frame motion score per face -> onset/apex/offset intervals.

Score (computed while the video streams, see mer.video): the aligned face crop is turned to
grayscale at 64x64 and compared with the crop of the same face `ref_s` seconds earlier (a sliding
reference, as in MEGC's frame-difference baselines): the mean absolute difference in [0, 1].
The aligned crop removes most head translation/rotation, so what is left is facial movement.

Spotting (`spot`), per face track:
1. smooth the score with a centred moving average over `smooth_s` seconds;
2. threshold = mean + k * (max - mean) (the MEGC spotting threshold; k = `k`, default 0.5);
3. runs of frames above the threshold, merged when the gap between them is under 1/25 s, become
   candidate intervals: onset = first frame, offset = last frame, apex = frame of maximum score;
4. a candidate is kept when its duration (from the real frame timestamps, offset end - onset start)
   lies within [min_s, max_s] = [1/25 s, 1/2 s]: shorter is noise, longer is a macro-expression.
The interval's class is the class with the highest mean probability over its frames; its score is
the smoothed motion at the apex.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

INTERVAL_COLUMNS = ["face_id", "onset_frame", "apex_frame", "offset_frame", "onset_s", "apex_s",
                    "offset_s", "class", "score"]


@dataclass
class SpotConfig:
    ref_s: float = 0.2        # sliding reference: compare with the crop this many seconds back
    smooth_s: float = 0.12    # moving-average window
    k: float = 0.5            # threshold = mean + k * (max - mean)
    min_s: float = 1 / 25     # shortest interval kept
    max_s: float = 1 / 2      # longest interval kept (longer = macro-expression)
    crop: int = 64            # grayscale crop side used for the score


def smooth(score: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average (window frames, edges use what is there)."""
    s = pd.Series(np.asarray(score, np.float64))
    return s.rolling(max(1, int(window)), center=True, min_periods=1).mean().to_numpy()


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of True runs."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1))


def spot(frames: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, score: np.ndarray,
         probs: np.ndarray, classes: list[str], face_id: int,
         config: SpotConfig | None = None) -> list[dict]:
    """One face track (rows sorted by frame) -> list of interval dicts (INTERVAL_COLUMNS).

    `score` is the already smoothed motion score; `probs` (N, classes) the class probabilities."""
    c = config or SpotConfig()
    score = np.asarray(score, np.float64)
    ok = np.isfinite(score)
    if ok.sum() < 3:
        return []
    mean, top = float(score[ok].mean()), float(score[ok].max())
    if top - mean <= 1e-9:
        return []
    thr = mean + c.k * (top - mean)
    runs = _runs(np.where(ok, score, -np.inf) > thr)
    merged: list[list[int]] = []
    for a, b in runs:  # merge runs separated by less than min_s
        if merged and start_s[a] - end_s[merged[-1][1]] < c.min_s:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out = []
    for a, b in merged:
        dur = float(end_s[b] - start_s[a])
        if not (c.min_s - 1e-6 <= dur <= c.max_s + 1e-6):
            continue
        apex = a + int(np.argmax(score[a:b + 1]))
        cls = classes[int(np.nanmean(probs[a:b + 1], axis=0).argmax())] if len(classes) else ""
        out.append({"face_id": int(face_id), "onset_frame": int(frames[a]), "apex_frame": int(frames[apex]),
                    "offset_frame": int(frames[b]), "onset_s": round(float(start_s[a]), 6),
                    "apex_s": round(float(start_s[apex]), 6), "offset_s": round(float(end_s[b]), 6),
                    "class": cls, "score": round(float(score[apex]), 6)})
    return out
