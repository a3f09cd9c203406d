"""Clips -> model inputs, through the same face alignment and crops_to_input as prediction.

    apex    the aligned face crop of the apex frame (the original's setting)
    frames  every `frame_step`-th frame from onset to offset, each labelled with the clip's emotion
            (the original's setting, kept only to reproduce it)
    flow    onset->apex optical flow (u, v, magnitude or strain) on the aligned face

The face is found once per clip, on its apex frame, and the same alignment is used for every frame
of the clip. A clip where MTCNN finds no face falls back to the whole frame (counted and logged).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from mer.faces import FaceDetector, align_crop
from mer.flow import flow_input
from mer.images import read_image
from mer.predict import crops_to_input
from mer.files import atomic_write

log = logging.getLogger(__name__)
INPUTS = ("apex", "frames", "flow")


@dataclass
class Samples:
    x: torch.Tensor       # uint8 (N, C, H, W) for apex/frames, float32 for flow
    y: np.ndarray         # class index per sample
    clip: np.ndarray      # index into the clip list per sample
    frame: np.ndarray     # frame index within its clip
    groups: np.ndarray    # the clip's subject group (dataset/subject) per sample
    no_face: int = 0      # clips that fell back to the whole frame

    def __len__(self) -> int:
        return len(self.y)


def _crop(img, face, size):
    if face is None:
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return align_crop(img, face, size)


def _to_uint8(crops, mode, size):
    return crops_to_input(crops, "gray" if mode == "gray" else "rgb", (size, size)).mul(255).round().to(torch.uint8)


def cache_key(clips, input, size, color, frame_step, flow_third) -> str:
    h = hashlib.sha1(json.dumps([input, size, color, frame_step, flow_third]).encode())
    for c in clips:
        h.update(f"{c.group}|{c.clip}|{c.apex}|{len(c.frames)}|{c.frames[0]}".encode())
    return h.hexdigest()[:16]


def clips_fingerprint(clips) -> dict:
    """What a run folder's finished folds depend on: every clip's subject, name, label, apex and
    frames (names and byte sizes). Any change in the dataset changes `sha1`."""
    h = hashlib.sha1()
    for c in clips:
        h.update(json.dumps([c.group, c.clip, c.label, c.apex]).encode())
        for f in c.frames:
            h.update(f"{Path(f).name}:{Path(f).stat().st_size}".encode())
    return {"sha1": h.hexdigest(), "n": len(clips), "subjects": len({c.group for c in clips})}


def build_inputs(clips, classes, input: str = "apex", size: int = 128, color: str = "gray",
                 frame_step: int = 1, flow_third: str = "magnitude", detector: FaceDetector | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True) -> Samples:
    if input not in INPUTS:
        raise ValueError(f"--input must be one of {', '.join(INPUTS)}, got {input!r}")
    cache = None
    if cache_dir:
        cache = Path(cache_dir) / f"inputs-{cache_key(clips, input, size, color, frame_step, flow_third)}.pt"
        if cache.is_file():
            d = torch.load(cache, weights_only=True)
            return Samples(d["x"], d["y"].numpy(), d["clip"].numpy(), d["frame"].numpy(),
                           np.array([clips[i].group for i in d["clip"].numpy()]), int(d["no_face"]))
    det = detector or FaceDetector(device="cpu")
    xs, ys, ci, fi, no_face = [], [], [], [], 0
    for k, c in enumerate(tqdm(clips, desc=f"{input} inputs", unit="clip", disable=not progress)):
        apex = read_image(c.frames[c.apex])
        found = det.detect([apex])[0]
        face = max(found, key=lambda f: f.prob) if found else None
        if face is None:
            no_face += 1
            log.warning("no face found in %s/%s (apex %s): using the whole frame", c.group, c.clip,
                        Path(c.frames[c.apex]).name)
        y = classes.index(c.label)
        if input == "apex":
            xs.append(_to_uint8([_crop(apex, face, size)], color, size)); idx = [c.apex]
        elif input == "frames":
            idx = list(range(0, len(c.frames), max(1, frame_step)))
            crops = [_crop(read_image(c.frames[i]), face, size) for i in idx]
            xs.append(_to_uint8(crops, color, size))
        else:
            onset = _crop(read_image(c.frames[0]), face, size)
            xs.append(torch.from_numpy(flow_input(onset, _crop(apex, face, size), flow_third))[None])
            idx = [c.apex]
        ys += [y] * len(idx); ci += [k] * len(idx); fi += idx
    if no_face:
        log.warning("%d of %d clips had no detectable face and used the whole frame", no_face, len(clips))
    s = Samples(torch.cat(xs), np.array(ys), np.array(ci), np.array(fi),
                np.array([clips[i].group for i in ci]), no_face)
    if cache is not None:
        buf = io.BytesIO()
        torch.save({"x": s.x, "y": torch.from_numpy(s.y), "clip": torch.from_numpy(s.clip),
                    "frame": torch.from_numpy(s.frame), "no_face": no_face}, buf)
        atomic_write(cache, buf.getvalue())
    return s
