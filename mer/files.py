"""Files in and out: which names are videos, atomic writes, escaped CSVs.

- VIDEO_EXTS: the video file extensions every tool accepts (the batch tool's folder search, the
  `python -m mer` check that an argument is a video, ...), lower case.
- atomic_path / atomic_write: every output (reports, CSVs, manifests, checkpoints, converted models)
  is written to a temporary name beside its target, fsynced and `os.replace`d, so a crash never
  leaves a half-written file under the final name. The one atomic writer of the project.
- write_csv: the one CSV writer. Text cells that start with = + - @, tab or CR are prefixed with a
  single quote (spreadsheet formula injection).

Only the standard library at import time (pandas loads on the first write_csv), so the batch
driver can use it before any heavy import.
"""
from __future__ import annotations

import csv
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    import pandas as pd

VIDEO_EXTS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".flv", ".mpg", ".mpeg", ".3gp"})
_INJECT = ("=", "+", "-", "@", "\t", "\r")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on leaving the block without an error it is
    fsynced, made world-readable and os.replace'd onto `path`, otherwise removed.

        with atomic_path("out/clip.mp4") as tmp:
            some_library.save(tmp)       # any writer that takes a file name (name ends .mer-tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".", suffix=".mer-tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], object]) -> Path:
    """Write `data` (text as UTF-8, bytes, or a callback that writes the temporary path it is given)
    to a temp file in the same folder, fsync, then os.replace onto `path`. The one atomic writer."""
    with atomic_path(path) as tmp:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else bytes(data))
    return Path(path)


def escape_cell(v):
    """'=1+1' -> \"'=1+1\": a text cell a spreadsheet would run as a formula is made literal. Cells
    starting with = + - @, or with a tab or carriage return (which spreadsheets skip before
    reading a formula), get a leading single quote (OWASP's CSV-injection rule)."""
    return "'" + v if isinstance(v, str) and v.startswith(_INJECT) else v


def write_csv(df: pd.DataFrame, path: str | Path, **to_csv) -> Path:
    """Atomic CSV (UTF-8, '\\n' line ends, empty cells for missing values, no index), text cells and
    column names escaped (escape_cell). The one CSV writer: extra keywords go to DataFrame.to_csv."""
    import pandas as pd
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c].dtype):
            out[c] = out[c].map(escape_cell, na_action="ignore")
    out.columns = [escape_cell(c) for c in out.columns]
    to_csv = {"index": False, "lineterminator": "\n", **to_csv}
    text = [c for c in out.columns if out[c].dtype == object or pd.api.types.is_string_dtype(out[c].dtype)]
    if any(out[c].astype("string").str.contains("\r", regex=False).any() for c in text):
        to_csv.setdefault("quoting", csv.QUOTE_NONNUMERIC)  # 3.11's csv leaves a bare CR unquoted
    return atomic_write(path, out.to_csv(**to_csv))
