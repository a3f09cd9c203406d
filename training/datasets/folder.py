"""A plain folder layout: root/<class>/<subject>_<clip>/*.jpg|png|bmp.

Frames are sorted naturally by the integers in their names; the apex is the middle frame unless the clip
folder has an apex.txt holding a frame's file name. See docs/datasets.md.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .base import Clip, image_files, subdirs

log = logging.getLogger(__name__)

APEX_FILE = "apex.txt"


def _apex(frames: list[Path], cdir: Path) -> int:
    middle = (len(frames) - 1) // 2
    f = cdir / APEX_FILE
    if not f.is_file():
        return middle
    want = f.read_text(errors="replace").strip()
    names = [p.name for p in frames]
    for cand in (want, Path(want).name):
        if cand in names:
            return names.index(cand)
    lower = [n.lower() for n in names]
    if Path(want).name.lower() in lower:
        return lower.index(Path(want).name.lower())
    log.warning("folder clip %s: %s names %r, not a frame of the clip; using the middle frame %s", cdir.name,
                APEX_FILE, want, names[middle])
    return middle


def read_folder(root) -> list[Clip]:
    """Every clip folder root/<class>/<clip>/ that holds image frames; emotion = the class folder's name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder dataset root not found: {root}")
    clips, skipped = [], 0
    for kdir in subdirs(root):
        cdirs = subdirs(kdir)
        if not cdirs:
            log.warning("folder class %s has no clip folders (expected %s/<subject>_<clip>/frames)", kdir.name,
                        kdir)
            continue
        for cdir in cdirs:
            frames = image_files(cdir)
            if not frames:
                log.warning("skipping folder clip %s/%s: no .jpg/.png/.bmp frames", kdir.name, cdir.name)
                skipped += 1
                continue
            if "_" in cdir.name:
                subj = cdir.name.split("_", 1)[0]
            else:
                subj = cdir.name
                log.warning("folder clip %s/%s: no '_' in the name, so its subject is the whole name; LOSO needs "
                            "<subject>_<clip> names", kdir.name, cdir.name)
            clips.append(Clip("folder", subj, cdir.name, kdir.name.strip(), frames, _apex(frames, cdir)))
    log.info("folder %s: %d clips read, %d skipped", root, len(clips), skipped)
    return clips
