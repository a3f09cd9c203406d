"""CASME II: CASME2-coding-*.xlsx (header on row 1) + <top>/sub01/EP02_01f/img46.jpg (or cropped reg_img46.jpg).

<top> is the root itself or any of its immediate subfolders (CASME2_RAW_selected, CASME2_RAW, Cropped, ...).
Raw img<N>.jpg frames are used when all are there, otherwise reg_img<N>.jpg. See docs/datasets.md.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .base import Clip, apex_index, as_int, as_text, find_sheet, read_sheet, subdirs
from .labels import canonical_emotion

log = logging.getLogger(__name__)

SHEET = "CASME2-coding-*.xlsx"
HEADER_ROW = 0
REQUIRED = {"subject": "Subject", "filename": "Filename", "onsetframe": "OnsetFrame", "apexframe": "ApexFrame",
            "offsetframe": "OffsetFrame", "estimatedemotion": "Estimated Emotion"}
PREFIXES = ("img", "reg_img")  # preference order


def casme2_subject(v) -> str:
    """1, 1.0, "1", "01", "sub01", "Sub1" -> "sub01"; any other text is kept as it is."""
    n = as_int(v)
    if n is None:
        m = re.fullmatch(r"sub[_ ]?(\d+)", as_text(v), re.IGNORECASE)
        n = int(m.group(1)) if m else None
    return f"sub{n:02d}" if n is not None else as_text(v)


def _frames(bases, subj, name, on, off):
    """(folder, frame names, missing count): the first complete raw set, else the first complete reg_img
    set, else the candidate with the fewest missing frames."""
    folders = [b / subj / name for b in bases if (b / subj / name).is_dir()]
    listings = [set(os.listdir(f)) for f in folders]
    best = (None, [], off - on + 1)
    for prefix in PREFIXES:
        names = [f"{prefix}{i}.jpg" for i in range(on, off + 1)]
        for folder, present in zip(folders, listings):
            missing = sum(n not in present for n in names)
            if missing == 0:
                return folder, names, 0
            if missing < best[2] or best[0] is None:
                best = (folder, names, missing)
    return best


def read_casme2(root) -> list[Clip]:
    """Every clip of the CASME II sheet whose frames are all on disk, in sheet order."""
    root = Path(root)
    sheet = find_sheet(root, SHEET, "CASME II")
    rows = read_sheet(sheet, HEADER_ROW, REQUIRED, log)
    bases = [root] + subdirs(root)
    clips, skipped = [], 0
    for r in rows:
        if as_text(r["subject"]) == "" or as_text(r["filename"]) == "":
            continue
        subj, name = casme2_subject(r["subject"]), as_text(r["filename"])
        on, off = as_int(r["onsetframe"]), as_int(r["offsetframe"])
        if on is None or off is None or off < on:
            log.warning("skipping CASME II clip %s/%s: onset %r / offset %r unusable", subj, name,
                        r["onsetframe"], r["offsetframe"])
            skipped += 1
            continue
        emotion = as_text(r["estimatedemotion"])
        if not emotion:
            log.warning("skipping CASME II clip %s/%s: no Estimated Emotion", subj, name)
            skipped += 1
            continue
        folder, names, missing = _frames(bases, subj, name, on, off)
        if folder is None:
            log.warning("skipping CASME II clip %s/%s: frames folder not found under %s or its subfolders "
                        "(%d of %d frames missing)", subj, name, root, off - on + 1, off - on + 1)
            skipped += 1
            continue
        if missing:
            log.warning("skipping CASME II clip %s/%s: %d of %d frames missing in %s", subj, name, missing,
                        len(names), folder)
            skipped += 1
            continue
        apex = apex_index(log, "CASME II", f"{subj}/{name}", r["apexframe"], on, off)
        clips.append(Clip("casme2", subj, name, canonical_emotion(emotion), [folder / n for n in names], apex))
    log.info("CASME II %s: %d clips read, %d skipped (sheet %s)", root, len(clips), skipped, sheet.name)
    return clips
