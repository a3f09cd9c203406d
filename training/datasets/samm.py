"""SAMM: SAMM_Micro_FACS_Codes_v2.xlsx (header on row 14) + SAMM/<subject>/<clip>/<subject>_<frame>.jpg."""
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class Clip:
    subject: str
    clip: str
    label: str
    frames: list  # paths, onset..offset
    apex: int     # index into frames


def read_samm(root):
    root = Path(root)
    sheets = sorted(root.glob("SAMM_Micro_FACS_Codes*.xlsx"))
    if not sheets:
        raise FileNotFoundError(f"no SAMM_Micro_FACS_Codes*.xlsx in {root}")
    df = pd.read_excel(sheets[0], header=13)
    clips = []
    df.columns = [str(c).strip().replace(" ", "_") for c in df.columns]
    for r in df.to_dict("records"):
        subj = f"{int(r['Subject']):03d}"
        name = str(r["Filename"])
        on, off = int(r["Onset_Frame"]), int(r["Offset_Frame"])
        label = str(r["Estimated_Emotion"]).strip()
        label = "Other" if label.lower() in ("other", "others") else label
        d = root / "SAMM" / subj / name
        frames = [d / f"{subj}_{i:05d}.jpg" for i in range(on, off + 1)]
        missing = [f for f in frames if not f.exists()]
        if missing:
            log.warning("skipping SAMM clip %s: %d of %d frames missing (first %s)", name, len(missing),
                        len(frames), missing[0].name)
            continue
        try:
            apex = int(r["Apex_Frame"])
        except (TypeError, ValueError):
            apex = -1
        if not on <= apex <= off:
            log.warning("SAMM clip %s: apex %r outside [%d, %d], using the middle frame", name, r["Apex_Frame"], on, off)
            apex = (on + off) // 2
        clips.append(Clip(subj, name, label, frames, apex - on))
    return clips
