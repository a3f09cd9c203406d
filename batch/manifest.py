"""OUT_DIR/manifest.json: per video (relative path) its status, reason, settings hash and outputs.

Written atomically after every change, only by the driver. A video is skipped on a re-run when it
is `done` (or `partial`: analysed as far as it decodes) with the same settings hash and its outputs
exist; `failed` with the same hash is kept unless --retry-failed; anything else (pending,
interrupted, other settings) is redone. File names that are not valid UTF-8 are kept exactly (as
JSON escapes of Python's surrogate escapes), so a re-run finds them again."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mer.provenance import code_hash, file_sha256  # noqa: F401  (file_sha256: the CLI's import)

VERSION = 1


def settings_hash(settings: dict, checkpoint_sha256: str, device: str, card: str = "",
                  micro_sha256: str = "", micro_card: str = "") -> str:
    """Hash of everything that changes a video's outputs: settings, the weights' SHA-256, the model
    card in effect (classes, mean/std, input size...), the same two of the micro-expression model
    that classifies spotted micro intervals ("" when none is installed), device, and the hash of
    `mer`'s code (a changed decoder, detector or scorer redoes every video; `mer.__version__` alone
    does not change)."""
    blob = json.dumps({"settings": settings, "checkpoint": checkpoint_sha256, "card": card, "device": device,
                       "micro": [micro_sha256, micro_card], "mer": code_hash(), "manifest": VERSION},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Manifest:
    def __init__(self, path: Path, videos: dict | None = None):
        self.path, self.videos = Path(path), videos or {}

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        path = Path(path)
        if not path.is_file():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            videos = data["videos"] if isinstance(data, dict) and isinstance(data.get("videos"), dict) else None
        except (ValueError, OSError):
            videos = None
        if videos is None:
            raise ValueError(f"{path} is not a manifest written by this tool; delete it or choose another --out")
        return cls(path, videos)

    def save(self) -> None:
        text = json.dumps({"version": VERSION, "videos": self.videos}, indent=1, sort_keys=True, ensure_ascii=False)
        # a surrogate (a non-UTF-8 byte of a file name) can only sit inside a JSON string, where
        # backslashreplace writes it as the JSON escape \udcXX, which json.loads reads back exactly
        from mer.files import atomic_write
        atomic_write(self.path, (text + "\n").encode("utf-8", "backslashreplace"))

    def needs_run(self, rel: str, h: str, out_dir: Path, retry_failed: bool) -> bool:
        e = self.videos.get(rel)
        if not e or e.get("hash") != h:
            return True
        if e.get("status") in ("done", "partial"):
            return not all((out_dir / p).is_file() for p in e.get("outputs", {}).values())
        if e.get("status") == "failed":
            return retry_failed
        return True

    def set(self, rel: str, **entry) -> None:
        self.videos[rel] = entry
        self.save()
