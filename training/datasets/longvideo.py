"""Long videos with spotting ground truth: generated (training.synth_long), SAMM-LV and CAS(ME)^2.

    from training.datasets.longvideo import read_long
    videos = read_long("samm-lv", "/data/SAMM-LV")      # list of LongVideo

Every reader gives each expression's onset/apex/offset as 0-based indexes into the video's own
frames (decoded frames for a video file, the sorted frame files for a frame folder), whatever
the sheet's numbering. Layouts, sheet columns and the assumptions made are in docs/spotting.md.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .base import as_int, as_text, blank, image_files, natural_key, read_sheet, subdirs

log = logging.getLogger(__name__)

SAMM_LV_FPS = 200.0
CASME2_LV_FPS = 30.0


@dataclass
class Expression:
    type: str                 # "micro" | "macro"
    onset: int                # 0-based frame indexes into the video's frames, inclusive
    apex: int
    offset: int
    emotion: str = ""         # empty when the sheet has none
    aus: str = ""


@dataclass
class LongVideo:
    dataset: str              # "synth" | "samm-lv" | "casme2-lv"
    subject: str
    name: str
    expressions: list[Expression]
    video: Path | None = None          # a video file (decoded with real timestamps) ...
    frames: list[Path] = field(default_factory=list)  # ... or its frames, in order
    fps: float = 0.0                   # frame folders: the dataset's frame rate
    natural: list = field(default_factory=list)  # (onset, offset) frames of the background's own expressions

    @property
    def group(self) -> str:
        return f"{self.dataset}/{self.subject}"


def expression_type(v) -> str | None:
    """'Micro - 1/2', 'micro-expression', 'Macro', 'macro-expression' -> 'micro' / 'macro'."""
    t = as_text(v).lower()
    return "micro" if "micro" in t else "macro" if "macro" in t else None


def _frame_numbers(files: list[Path]) -> dict[int, int]:
    """Frame number in the file name (its last integer) -> index in the sorted list."""
    out = {}
    for i, p in enumerate(files):
        nums = re.findall(r"\d+", p.stem)
        if nums:
            out.setdefault(int(nums[-1]), i)
    return out


def _to_index(numbers: dict[int, int], what: str, on, apex, off) -> tuple[int, int, int] | None:
    idx = [numbers.get(v) if v is not None else None for v in (on, apex, off)]
    if idx[0] is None or idx[2] is None or idx[2] < idx[0]:
        log.warning("skipping %s: onset %r / offset %r not among the frames", what, on, off)
        return None
    if idx[1] is None or not idx[0] <= idx[1] <= idx[2]:
        log.warning("%s: apex %r missing or outside [onset, offset], using the middle frame", what, apex)
        idx[1] = (idx[0] + idx[2]) // 2
    return idx[0], idx[1], idx[2]


# ------------------------------------------------------------------------------------------- synth

def read_synth_long(root) -> list[LongVideo]:
    """training.synth_long output: truth.csv + videos/<Filename>.mp4 (frames already 0-based), and
    natural.csv (real background clips: their own expressions, reported apart) when there."""
    root = Path(root)
    sheet = root / "truth.csv"
    if not sheet.is_file():
        raise FileNotFoundError(f"no truth.csv in {root} (make one with python -m training.synth_long)")
    truth = pd.read_csv(sheet, dtype={"Subject": str, "Filename": str})
    videos = sorted((root / "videos").glob("*.mp4"))
    if not videos:
        raise FileNotFoundError(f"no videos/*.mp4 in {root}")
    nat = pd.read_csv(root / "natural.csv", dtype={"Filename": str}) if (root / "natural.csv").is_file() else None
    out = []
    for v in videos:
        rows = truth[truth["Filename"] == v.stem]
        subject = rows["Subject"].iloc[0] if len(rows) else v.stem.split("_")[0]
        exps = [Expression(expression_type(r["Type"]), int(r["Onset"]), int(r["Apex"]), int(r["Offset"]),
                           as_text(r.get("Estimated Emotion", "")), as_text(r.get("Action Units", "")))
                for _, r in rows.iterrows()]
        natural = ([(int(a), int(b)) for a, b in nat.loc[nat["Filename"] == v.stem, ["Onset", "Offset"]].to_numpy()]
                   if nat is not None else [])
        out.append(LongVideo("synth", str(subject), v.stem, exps, video=v, natural=natural))
    return out


# ------------------------------------------------------------------------------------------ SAMM-LV

SAMM_LV_REQUIRED = {"filename": "Filename", "onset": "Onset", "apex": "Apex", "offset": "Offset", "type": "Type"}


def read_samm_lv(root) -> list[LongVideo]:
    """SAMM_LongVideos_*.xlsx (header on row 10; the first 40 rows are searched) + SAMM_longvideos/<video>/*.jpg.

    Filename is the expression's id ("006_1_2"); its video is the first two parts ("006_1"), its
    subject the first ("006"). Frame numbers are the last integer in the frame file names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"SAMM-LV root not found: {root}")
    sheets = sorted(p for p in root.glob("*.xlsx") if "samm" in p.name.lower() and "long" in p.name.lower()
                    and not p.name.startswith("~$"))
    if not sheets:
        raise FileNotFoundError(f"no SAMM_LongVideos*.xlsx in {root} (the SAMM-LV coding spreadsheet)")
    rows = read_sheet(sheets[-1], 9, SAMM_LV_REQUIRED, log)
    base = next((b for b in (root / "SAMM_longvideos", root / "SAMM_LongVideos", root) if b.is_dir()), root)
    by_video: dict[str, list] = {}
    for r in rows:
        name = as_text(r["filename"])
        if not name:
            continue
        parts = name.split("_")
        by_video.setdefault("_".join(parts[:2]), []).append(r)
    out = []
    for video, rs in by_video.items():
        folder = base / video
        if not folder.is_dir():
            log.warning("skipping SAMM-LV video %s: no folder %s (%d expressions)", video, folder, len(rs))
            continue
        files = image_files(folder)
        numbers = _frame_numbers(files)
        exps = []
        for r in rs:
            typ = expression_type(r["type"])
            idx = _to_index(numbers, f"SAMM-LV {as_text(r['filename'])}", as_int(r["onset"]), as_int(r["apex"]),
                            as_int(r["offset"])) if typ else None
            if idx is None:
                if typ is None:
                    log.warning("skipping SAMM-LV %s: type %r is neither micro nor macro", as_text(r["filename"]), r["type"])
                continue
            emo = next((as_text(r[k]) for k in ("estimatedemotion", "emotion") if k in r and not blank(r[k])), "")
            exps.append(Expression(typ, *idx, emo, as_text(r.get("actionunits", ""))))
        subject = as_text(rs[0].get("subject", "")) or video.split("_")[0]
        subject = f"{as_int(subject):03d}" if as_int(subject) is not None else subject
        out.append(LongVideo("samm-lv", subject, video, exps, frames=files, fps=SAMM_LV_FPS))
    log.info("SAMM-LV %s: %d videos, %d expressions (sheet %s)", root, len(out),
             sum(len(v.expressions) for v in out), sheets[-1].name)
    return out


# ------------------------------------------------------------------------------------------ CAS(ME)^2

def read_casme2_lv(root) -> list[LongVideo]:
    """CAS(ME)^2: *code_final*.xlsx + rawpic/s15/15_0101disgustingteeth/img1.jpg.

    The coding sheet (first worksheet, no header) has, by position: subject, video name
    ("disgust1_1"), onset, apex, offset, action units, emotion, type ("micro-expression" /
    "macro-expression"). Its 2nd worksheet maps the sheet's subject number (3rd column) to the
    folder's subject number (2nd column); its 3rd maps a video code ("0101", 1st column) to the
    name ("disgust1", 2nd column). Without those worksheets the subject number is the folder's
    and the video column must hold the code. Frames are img<N>.jpg, N as in the sheet."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CAS(ME)^2 root not found: {root}")
    sheets = sorted(p for p in root.glob("*.xlsx") if "code_final" in p.name.lower() and not p.name.startswith("~$"))
    if not sheets:
        raise FileNotFoundError(f"no *code_final*.xlsx in {root} (the CAS(ME)^2 coding spreadsheet)")
    book = pd.read_excel(sheets[-1], sheet_name=None, header=None, dtype=object)
    pages = list(book.values())
    code = pages[0]
    if code.shape[1] < 8:
        raise ValueError(f"{sheets[-1]}: expected 8+ columns (subject, video, onset, apex, offset, AUs, emotion, "
                         f"type), found {code.shape[1]}")
    subj_map = {as_int(a): b for a, b in zip(pages[1].iloc[:, 2], pages[1].iloc[:, 1])} if len(pages) > 1 and pages[1].shape[1] > 2 else {}
    name_map = {as_text(b).lower(): as_text(a).zfill(4) for a, b in zip(pages[2].iloc[:, 0], pages[2].iloc[:, 1])} \
        if len(pages) > 2 and pages[2].shape[1] > 1 else {}
    rawpic = root / "rawpic" if (root / "rawpic").is_dir() else root
    videos: dict[Path, list] = {}
    for r in code.itertuples(index=False):
        subj, vname = as_int(r[0]), as_text(r[1])
        typ = expression_type(r[7])
        if subj is None or not vname or typ is None:
            continue  # header-like or blank rows
        folder_subj = subj_map.get(subj, subj)
        n = as_int(folder_subj)
        sdir = rawpic / (f"s{n:02d}" if n is not None else as_text(folder_subj))
        key = vname.split("_")[0].lower()
        vcode = name_map.get(key, key if key.isdigit() else None)
        cands = [d for d in subdirs(sdir) if vcode and d.name.split("_", 1)[-1].startswith(vcode)] if sdir.is_dir() else []
        if not cands:
            log.warning("skipping CAS(ME)^2 %s of subject %s: no folder %s/<n>_%s* (video code %s)", vname, subj, sdir,
                        vcode or "?", vcode or "unknown: no naming worksheet")
            continue
        on, apex, off = as_int(r[2]), as_int(r[3]), as_int(r[4])
        if off in (None, 0) and apex:
            log.warning("CAS(ME)^2 %s: offset %r missing, using the apex %s", vname, r[4], apex)
            off = apex
        videos.setdefault(cands[0], []).append((typ, on, apex, off, as_text(r[6]), as_text(r[5]), vname))
    out = []
    for folder, items in sorted(videos.items(), key=lambda kv: natural_key(str(kv[0]))):
        files = [p for p in image_files(folder) if p.name.lower().startswith("img")] or image_files(folder)
        numbers = _frame_numbers(files)
        exps = []
        for typ, on, apex, off, emo, aus, vname in items:
            idx = _to_index(numbers, f"CAS(ME)^2 {folder.name} {vname}", on, apex, off)
            if idx:
                exps.append(Expression(typ, *idx, emo, aus))
        out.append(LongVideo("casme2-lv", folder.parent.name, folder.name, exps, frames=files, fps=CASME2_LV_FPS))
    log.info("CAS(ME)^2 %s: %d videos, %d expressions (sheet %s)", root, len(out),
             sum(len(v.expressions) for v in out), sheets[-1].name)
    return out


LONG_READERS = {"synth": read_synth_long, "samm-lv": read_samm_lv, "casme2-lv": read_casme2_lv}


def read_long(dataset: str, root) -> list[LongVideo]:
    if dataset not in LONG_READERS:
        raise ValueError(f"unknown long-video dataset {dataset!r}; known: {', '.join(LONG_READERS)}")
    if not Path(root).exists():
        raise FileNotFoundError(f"dataset path not found: {root}")
    return LONG_READERS[dataset](root)
