"""What produced an output: a hash of the code and of the files it read.

`code_hash()` is the sha256 of every `.py` file under `mer/` and of the shipped model cards
(`mer/weights/*.json`, which carry their weights' fingerprint), path and bytes in path order, so a
changed decoder, detector, scorer, report or shipped model (the face mesh too) changes every cache
key and settings hash built on it, even when `mer.__version__` stays the same. `file_sha256` hashes a file (a checkpoint) in blocks.
Neither imports torch: the batch driver and training's caches call them before any model loads.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def code_hash() -> str:
    """sha256 (first 16 hex digits) over mer/**/*.py and mer/weights/*.json: relative path and
    contents, sorted by path."""
    h = hashlib.sha256()
    for path in sorted([*PACKAGE.rglob("*.py"), *(PACKAGE / "weights").glob("*.json")]):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
