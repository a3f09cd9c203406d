"""The Clip record and helpers shared by the dataset readers (sheets, integers, frames, apex)."""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from mer.decode import natural_key  # noqa: F401 - one natural order for frame files (readers and decode)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
APEX_MISSING = ("", "-", "/", "nan", "none", "n/a", "na")


@dataclass
class Clip:
    dataset: str          # "samm" | "casme2" | "smic" | "folder"
    subject: str          # SAMM "006", CASME II "sub01", SMIC "s1", folder: the part before the first "_"
    clip: str             # clip name: "006_1_2", "EP02_01f", "s1_ne_01"
    emotion: str          # the source's emotion label, spelling normalised
    frames: list[Path]    # every frame from onset to offset inclusive, in temporal order
    apex: int             # index into frames
    label: str | None = None  # class name after mapping to a label set (set by load_dataset)

    @property
    def group(self) -> str:
        """Leave-one-subject-out group key; keeps equal subject ids of different datasets apart."""
        return f"{self.dataset}/{self.subject}"


def blank(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    try:
        import pandas as pd
        if v is pd.NaT or v is pd.NA:
            return True
    except ImportError:  # pragma: no cover
        pass
    return str(v).strip() == ""


def as_int(v) -> int | None:
    """An integer cell (6, 6.0, "6", " 006 ") or None (blank, "/", "-", 6.5, text)."""
    if isinstance(v, bool) or blank(v):
        return None
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    try:
        import numpy as np
        if isinstance(v, np.integer):
            return int(v)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, int):
        return v
    s = str(v).strip()
    if re.fullmatch(r"[+-]?\d+(\.0*)?", s):
        return int(float(s))
    return None


def as_text(v) -> str:
    """A cell as stripped text; whole floats lose their ".0" (a name typed as a number)."""
    if blank(v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return " ".join(str(v).split())


def image_files(folder: Path) -> list[Path]:
    """Image files of a folder (not hidden), in natural order of their names."""
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS]
    return sorted(files, key=lambda p: natural_key(p.name))


def subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def apex_index(log: logging.Logger, dataset: str, clip: str, raw, onset: int, offset: int) -> int:
    """Index of the apex in onset..offset; a missing or out-of-range apex -> the middle frame, with a WARNING."""
    middle = (offset - onset) // 2
    a = as_int(raw)
    if a is None:
        shown = "" if blank(raw) else str(raw).strip()
        log.warning("%s clip %s: apex %r missing, using the middle frame %d", dataset, clip, shown,
                    onset + middle)
        return middle
    if not onset <= a <= offset:
        log.warning("%s clip %s: apex %d outside [%d, %d], using the middle frame %d", dataset, clip, a,
                    onset, offset, onset + middle)
        return middle
    return a - onset


def norm_col(name) -> str:
    """Column key: "Onset Frame", "OnsetFrame", " onset_frame " -> "onsetframe"."""
    return re.sub(r"[\s_]+", "", str(name)).lower()


def find_sheet(root: Path, pattern: str, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} root not found: {root}")
    sheets = sorted(p for p in root.glob(pattern) if not p.name.startswith("~$"))
    if not sheets:
        raise FileNotFoundError(f"no {pattern} in {root} (the {what} coding spreadsheet)")
    if len(sheets) > 1:
        logging.getLogger(__name__).warning("several %s sheets in %s, using %s", what, root, sheets[-1].name)
    return sheets[-1]


def read_sheet(path: Path, header_row: int, required: dict[str, str], log: logging.Logger) -> list[dict]:
    """Rows of an .xlsx as dicts keyed by norm_col(column). The header is expected on 0-based row
    `header_row`; when the required columns are not there, the first 40 rows are searched for them
    (WARNING). `required` maps keys to the display names used in the error."""
    import pandas as pd

    def load(h):
        df = pd.read_excel(path, header=h, dtype=object)
        df.columns = [norm_col(c) for c in df.columns]
        return df

    try:
        df = load(header_row)
        columns = list(df.columns)
    except ValueError:  # the sheet is shorter than the header row
        df, columns = None, []
    missing = [k for k in required if k not in columns]
    if missing:
        raw = pd.read_excel(path, header=None, dtype=object, nrows=40)
        for i, row in raw.iterrows():
            keys = {norm_col(v) for v in row.tolist() if not blank(v)}
            if all(k in keys for k in required):
                log.warning("%s: header found on row %d, expected row %d", path.name, i + 1, header_row + 1)
                df, missing = load(i), []
                break
    if missing:
        raise ValueError(f"{path}: columns {', '.join(required[k] for k in missing)} not found "
                         f"(header expected on row {header_row + 1}; columns there: "
                         f"{', '.join(map(str, columns)) or 'none'})")
    return df.to_dict("records")
