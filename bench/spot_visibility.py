"""How much does a planted expression move the flow scorer's crop, against the face's own movement?

    python -m training.synth_long --background CLIP ... --out runs/planted --seed K [options]
    python -m training.synth_long --background CLIP ... --out runs/clean --seed K [same options] \\
        --micro-amp 0 0 --macro-amp 0 0
    python bench/spot_visibility.py runs/planted runs/clean [--out runs/visibility.csv]

The two sets come from one command and seed, the second with the warps' amplitudes at 0: the same
truth, the same background frames, no warp. For every planted expression, at its apex frame, on the
flow scorer's own aligned crop (mer.spotting.MotionScorer.prepare; one geometry for all the crops of
an event: MTCNN on the planted apex frame) and with its own measure (MotionScorer._moved: Farneback
flow, the face's affine motion removed, eyes masked, mean per block; the mean of the top `flow_top`
blocks, as the score takes them):

- planted: the clean twin's apex frame -> the planted apex frame: the warp alone;
- natural: the planted apex frame -> the frames `flow_k_s` before and after it (per block the
  smaller of the two, as the score's min term): what the face's own movement adds at the same moment;
- planted_roi, natural_roi: the same two over only the blocks the warp moves most (its top
  `flow_top` blocks): where the expression acts, as a detector that knew where to look would see it.

Prints the medians per background clip and type and the ratios planted / natural (ratio, roi ratio).
Under 1, a planted expression moves the crop less than the face itself does over the scorer's
window (roi ratio: even where the expression acts), so no threshold on this measure can find most
of them without finding the face's own movement first.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def frames_around(path: Path, apexes: list[int], k_s: float | None) -> tuple[dict[int, np.ndarray], int]:
    """One pass over a video: its frames at each apex and, with k_s, k frames before and after it
    (k = k_s in frames, from the first chunk's frame interval). RGB, by decoded index."""
    from mer.decode import open_source
    out, k, wanted = {}, 0, None
    with open_source(path) as src:
        for ch in src.chunks():
            if wanted is None:
                if k_s is not None:
                    k = max(1, round(k_s / float(np.median(ch.end_s - ch.start_s))))
                wanted = {a + d for a in apexes for d in ((-k, 0, k) if k else (0,))}
            for i, f in zip(ch.index.tolist(), ch.frames):
                if i in wanted:
                    out[i] = f
    return out, k


def measure(planted: Path, clean: Path, k_s: float | None = None) -> pd.DataFrame:
    from mer.faces import FaceDetector
    from mer.spotting import MotionScorer, SpotConfig
    from training.datasets.longvideo import read_long
    scorer, detector = MotionScorer(SpotConfig.flow()), FaceDetector(device="cpu")
    k_s = scorer.config.flow_k_s if k_s is None else k_s
    twins = {v.name: v for v in read_long("synth", clean)}
    rows = []
    for v in read_long("synth", planted):
        twin = twins.get(v.name)
        if twin is None or [(e.onset, e.apex, e.offset) for e in twin.expressions] != \
                [(e.onset, e.apex, e.offset) for e in v.expressions]:
            raise SystemExit(f"{clean} is not the clean twin of {planted}: {v.name} is missing or its truth differs "
                             "(make it with the same command and seed, and --micro-amp 0 0 --macro-amp 0 0)")
        apexes = [e.apex for e in v.expressions]
        got, k = frames_around(v.video, apexes, k_s)
        bare, _ = frames_around(twin.video, apexes, None)
        for e in v.expressions:
            if not {e.apex - k, e.apex, e.apex + k} <= got.keys() or e.apex not in bare:
                continue
            faces = detector.detect([got[e.apex]])[0]
            if not faces:
                continue
            face = max(faces, key=lambda f: float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
            crops = {}
            for key, img in (("apex", got[e.apex]), ("bare", bare[e.apex]), ("before", got[e.apex - k]),
                             ("after", got[e.apex + k])):
                crops[key], eyes = scorer.prepare(img, face)
            mask = scorer.mask(eyes)

            warp = scorer._moved(crops["bare"], crops["apex"], mask).ravel()
            before, after = (scorer._moved(crops["apex"], crops[r], mask).ravel() for r in ("before", "after"))
            n = max(1, int(round(warp.size * scorer.config.flow_top)))

            def top(blocks):
                return float(np.sort(blocks)[-n:].mean())
            own = np.minimum(before, after)  # per block, as the score's min term
            roi = np.argsort(warp)[-n:]  # the blocks the warp moves most: where it acts (an oracle region)
            rows.append({"video": v.name, "background": v.subject, "type": e.type, "aus": e.aus,
                         "apex_frame": e.apex, "planted": top(warp), "natural": top(own),
                         "planted_roi": float(warp[roi].mean()), "natural_roi": float(own[roi].mean())})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("planted", type=Path, help="a training.synth_long output folder (--background or --faces)")
    p.add_argument("clean", type=Path, help="the same command and seed with --micro-amp 0 0 --macro-amp 0 0")
    p.add_argument("--k-s", type=float, help="the face's own movement over this many seconds (default: the flow "
                   "scorer's flow_k_s, 0.3; a macro-expression spans 1-2.5 s)")
    p.add_argument("--out", type=Path, help="write the per-expression table here (CSV)")
    a = p.parse_args(argv)
    for d in (a.planted, a.clean):
        if not (d / "truth.csv").is_file():
            p.error(f"{d} has no truth.csv: not a training.synth_long output folder")
    if a.k_s is not None and not 0 < a.k_s <= 5:
        p.error(f"--k-s {a.k_s}: give seconds in (0, 5]")
    df = measure(a.planted, a.clean, a.k_s)
    if df.empty:
        print("no planted expression could be measured (no face found at the apexes)", file=sys.stderr)
        return 1
    if a.out:
        from mer.files import write_csv
        write_csv(df, a.out)
    g = df.groupby(["background", "type"])[["planted", "natural", "planted_roi", "natural_roi"]].median()
    g["n"] = df.groupby(["background", "type"]).size()
    g["ratio"] = g["planted"] / g["natural"]
    g["roi ratio"] = g["planted_roi"] / g["natural_roi"]
    print("median over the planted expressions, px on the scorer's crop (top blocks):")
    print(g.round(2).to_string())
    print(f"all: planted / natural = {df.planted.median() / df.natural.median():.2f} "
          f"(planted over natural in {int((df.planted > df.natural).sum())} of {len(df)} expressions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
