"""Dataset readers: each returns a list of Clip records; load_dataset maps them to a label set.

    from training.datasets import load_dataset, classes_of
    clips = load_dataset("samm,casme2", "/data/SAMM,/data/CASME2", "composite3")

See docs/datasets.md for the layouts, the label mapping table and the apex / missing-frame rules.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from .base import Clip
from .casme2 import read_casme2
from .folder import read_folder
from .labels import LABEL_SETS, MAPPING, canonical_emotion, check_label_set, classes_of, map_label
from .samm import read_samm
from .smic import read_smic

__all__ = ["Clip", "read_samm", "read_casme2", "read_smic", "read_folder", "READERS", "LABEL_SETS", "MAPPING",
           "map_label", "classes_of", "canonical_emotion", "load_dataset", "discover_composite"]

log = logging.getLogger(__name__)

READERS = {"samm": read_samm, "casme2": read_casme2, "smic": read_smic, "folder": read_folder}
NAMES = {"samm": "SAMM", "casme2": "CASME II", "smic": "SMIC-HS", "folder": "folder"}


def _split(v) -> list:
    if isinstance(v, (str, Path)):
        return [s.strip() for s in str(v).split(",")] if isinstance(v, str) else [v]
    return list(v)


def _candidates(root: Path, depth: int = 2) -> list[Path]:
    """root and its folders up to `depth` levels below, shallowest first, each level sorted."""
    out, level = [root], [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                nxt += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
        out += nxt
        level = nxt
    return out


def discover_composite(root) -> dict[str, Path]:
    """Find the MEGC composite parts under root (root itself and up to 2 levels below): SAMM = the folder
    holding SAMM_Micro_FACS_Codes*.xlsx, CASME II = the folder holding CASME2-coding-*.xlsx (both
    required), SMIC-HS = a folder named HS (optional). Logs what it found; FileNotFoundError if SAMM or
    CASME II is missing."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"composite root not found: {root}")
    dirs = _candidates(root)
    tests = {"samm": lambda d: any(d.glob("SAMM_Micro_FACS_Codes*.xlsx")),
             "casme2": lambda d: any(d.glob("CASME2-coding-*.xlsx")),
             "smic": lambda d: d.name == "HS"}
    found = {}
    for name, test in tests.items():
        hits = [d for d in dirs if test(d)]
        if hits:
            found[name] = hits[0]
            if len(hits) > 1:
                log.warning("composite: several %s folders under %s, using %s (also: %s)", NAMES[name], root,
                            hits[0], ", ".join(map(str, hits[1:])))
    parts = [f"{NAMES[n]} at {found[n]}" if n in found else f"{NAMES[n]} not found" for n in tests]
    log.info("composite under %s: %s", root, "; ".join(parts))
    missing = [n for n in ("samm", "casme2") if n not in found]
    if missing:
        want = {"samm": "SAMM (a folder holding SAMM_Micro_FACS_Codes*.xlsx)",
                "casme2": "CASME II (a folder holding CASME2-coding-*.xlsx)"}
        raise FileNotFoundError(f"composite under {root} (searched 2 levels deep): found "
                                f"{', '.join(f'{NAMES[n]} at {p}' for n, p in found.items()) or 'nothing'}; "
                                f"missing {' and '.join(want[n] for n in missing)}")
    return found


def _summary(name, root, clips, label_set, total) -> str:
    kept = Counter((c.emotion, c.label) for c in clips if c.label is not None)
    dropped = Counter(c.emotion for c in clips if c.label is None)
    k = ", ".join(f"{e}->{lab} {n}" if e != lab else f"{e} {n}" for (e, lab), n in sorted(kept.items()))
    d = ", ".join(f"{e} {n}" for e, n in sorted(dropped.items()))
    return (f"{NAMES[name]} {root}: {total} clips, kept {sum(kept.values())} for label set {label_set} "
            f"[{k or 'none'}], dropped {sum(dropped.values())} [{d or 'none'}]")


def load_dataset(datasets, paths, label_set: str | None = "seed6") -> list[Clip]:
    """Read one or more datasets and map their emotions to `label_set` (one of LABEL_SETS, or None to keep
    the source's own labels, e.g. a folder set's class names).

    datasets / paths: comma-separated strings or lists of the same length ("samm,casme2", "/a,/b"). The
    name "composite" (alone, with one root) discovers SAMM, CASME II and optionally SMIC-HS under it.
    Sets clip.label, drops clips whose emotion is not in the label set, logs one INFO line per dataset."""
    names = [str(n).strip().lower() for n in _split(datasets)]
    roots = [Path(p) for p in _split(paths)]
    check_label_set(label_set)
    if not names or any(n == "" for n in names):
        raise ValueError(f"empty dataset name in {datasets!r}")
    if "composite" in names:
        if len(names) != 1 or len(roots) != 1:
            raise ValueError(f"'composite' takes one root and no other dataset (got datasets {datasets!r}, "
                             f"paths {paths!r})")
        found = discover_composite(roots[0])
        names, roots = list(found), list(found.values())
    unknown = [n for n in names if n not in READERS]
    if unknown:
        raise ValueError(f"unknown dataset {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(READERS)}, composite")
    if len(names) != len(roots):
        raise ValueError(f"{len(names)} dataset(s) ({', '.join(names)}) but {len(roots)} path(s) "
                         f"({', '.join(map(str, roots))}): give one path per dataset, comma-separated")
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"dataset path not found: {root}")
    out = []
    for name, root in zip(names, roots):
        clips = READERS[name](root)
        for c in clips:
            c.label = map_label(name, c.emotion, label_set)
        log.info("%s", _summary(name, root, clips, label_set, len(clips)))
        kept = [c for c in clips if c.label is not None]
        if not kept:
            raise ValueError(f"{NAMES[name]} at {root}: no clip left for label set {label_set} "
                             f"({len(clips)} clips read; emotions: "
                             f"{', '.join(sorted({c.emotion for c in clips})) or 'none'})")
        out += kept
    return out
