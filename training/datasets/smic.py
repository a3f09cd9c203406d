"""SMIC-HS: HS/s1/micro/negative/s1_ne_01/image0123456.bmp (root = the folder holding HS, or HS itself).

A clip is all the frames of its folder (onset..offset), sorted by the integers in their names; SMIC gives
no apex, so the apex is the middle frame (the usual convention, no warning). See docs/datasets.md.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from .base import Clip, image_files, subdirs
from .labels import canonical_emotion

log = logging.getLogger(__name__)

SUBJECT = re.compile(r"s(\d+)", re.IGNORECASE)


def smic_root(root) -> Path:
    """The HS folder: root/HS, or root itself when it holds s<N> subject folders."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"SMIC root not found: {root}")
    if (root / "HS").is_dir():
        return root / "HS"
    if any(SUBJECT.fullmatch(d.name) for d in subdirs(root)):
        return root
    raise FileNotFoundError(f"no SMIC-HS layout in {root}: expected {root / 'HS'} or s1/, s2/... subject folders")


def read_smic(root) -> list[Clip]:
    """Every SMIC-HS micro-expression clip (HS/s<N>/micro/<emotion>/<clip>/) that holds frames."""
    hs = smic_root(root)
    clips, skipped = [], 0
    for sdir in subdirs(hs):
        m = SUBJECT.fullmatch(sdir.name)
        if not m:
            continue
        subj = f"s{int(m.group(1))}"
        micro = sdir / "micro"
        if not micro.is_dir():
            log.warning("SMIC subject %s has no micro/ folder, skipped: %s", sdir.name, micro)
            continue
        for edir in subdirs(micro):
            emotion = canonical_emotion(edir.name)
            for cdir in subdirs(edir):
                frames = image_files(cdir)
                if not frames:
                    log.warning("skipping SMIC clip %s: no frames in %s", cdir.name, cdir)
                    skipped += 1
                    continue
                clips.append(Clip("smic", subj, cdir.name, emotion, frames, (len(frames) - 1) // 2))
    log.info("SMIC-HS %s: %d clips read, %d skipped", hs, len(clips), skipped)
    return clips
