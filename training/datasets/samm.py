"""SAMM: SAMM_Micro_FACS_Codes*.xlsx (header on row 14) + SAMM/<subject>/<clip>/<subject>_<frame:05d>.jpg.

Subject folders may also sit directly under the root (root/006/006_1_2/...). See docs/datasets.md.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .base import Clip, apex_index, as_int, as_text, find_sheet, read_sheet
from .labels import canonical_emotion

log = logging.getLogger(__name__)

SHEET = "SAMM_Micro_FACS_Codes*.xlsx"
HEADER_ROW = 13  # 0-based: the header is the sheet's 14th row
REQUIRED = {"subject": "Subject", "filename": "Filename", "onsetframe": "Onset Frame",
            "apexframe": "Apex Frame", "offsetframe": "Offset Frame", "estimatedemotion": "Estimated Emotion"}


def samm_subject(v) -> str:
    """6, 6.0, "6", "006" -> "006"; any other text is kept as it is."""
    n = as_int(v)
    return f"{n:03d}" if n is not None else as_text(v)


def read_samm(root) -> list[Clip]:
    """Every clip of the SAMM sheet whose frames are all on disk, in sheet order."""
    root = Path(root)
    sheet = find_sheet(root, SHEET, "SAMM")
    rows = read_sheet(sheet, HEADER_ROW, REQUIRED, log)
    bases = [root / "SAMM", root]
    clips, skipped = [], 0
    for r in rows:
        if as_text(r["subject"]) == "" or as_text(r["filename"]) == "":
            continue  # blank (trailing) rows
        subj, name = samm_subject(r["subject"]), as_text(r["filename"])
        on, off = as_int(r["onsetframe"]), as_int(r["offsetframe"])
        if on is None or off is None or off < on:
            log.warning("skipping SAMM clip %s: onset %r / offset %r unusable", name, r["onsetframe"],
                        r["offsetframe"])
            skipped += 1
            continue
        emotion = as_text(r["estimatedemotion"])
        if not emotion:
            log.warning("skipping SAMM clip %s: no Estimated Emotion", name)
            skipped += 1
            continue
        names = [f"{subj}_{i:05d}.jpg" for i in range(on, off + 1)]
        folder = next((b / subj / name for b in bases if (b / subj / name).is_dir()), None)
        if folder is None:
            log.warning("skipping SAMM clip %s: frames folder not found (%d of %d frames missing; looked in %s)",
                        name, len(names), len(names), " and ".join(str(b / subj / name) for b in bases))
            skipped += 1
            continue
        present = set(os.listdir(folder))
        missing = [n for n in names if n not in present]
        if missing:
            log.warning("skipping SAMM clip %s: %d of %d frames missing in %s (first: %s)", name, len(missing),
                        len(names), folder, missing[0])
            skipped += 1
            continue
        apex = apex_index(log, "SAMM", name, r["apexframe"], on, off)
        clips.append(Clip("samm", subj, name, canonical_emotion(emotion), [folder / n for n in names], apex))
    log.info("SAMM %s: %d clips read, %d skipped (sheet %s)", root, len(clips), skipped, sheet.name)
    return clips
