"""Spotting evaluation on long videos, MEGC style:
`python -m training.spot --dataset synth|samm-lv|casme2-lv|video --dataset-path P [P ...] --out runs/NAME`.

1. Every video goes through the shipped pipeline once, mer.video.analyze_video (a SAMM-LV /
   CAS(ME)^2 frame folder through mer.decode's FolderSource at the dataset's frame rate). Its
   per-frame table (motion score, class probabilities) and the micro-model apex crops it kept are
   cached in OUT/cache/<key>, the key a hash of mer's code (mer.provenance.code_hash), the video
   settings and both checkpoints (sha256): a changed scorer, setting or model is analysed afresh.
2. Spotting parameters (threshold c and min_rise, cut level rel, padding pad_s, bridging merge_s,
   shortest core min_s) are chosen by subject-grouped cross-validation (sklearn GroupKFold): for
   each fold, the grid point with the best overall F1 on the other subjects' videos spots the
   fold's videos. No video is spotted with parameters chosen on it. The shipped defaults
   (mer.spotting.SpotConfig) are scored too, as they are. With truth, only the subject's face is
   scored: the long track nearest the centre of the frame.
3. MEGC rule: a spotted interval is a true positive when its IoU with a truth interval of the same
   type is >= 0.5, each truth matched at most once; counts are summed over all videos, for micro,
   macro and overall (both types together).
4. Spot-then-recognize: micro intervals are classified by the micro-expression model from the apex
   crop the pipeline kept (mer.video's Thumbnails.nearest, as analyze_video does), macro intervals by the per-frame model; where the truth has emotions, recognition F1
   (macro-averaged over the emotions of the true positives) and STRS = spotting F1 x recognition F1.

Outputs (atomic): OUT/metrics.json, OUT/report.md, OUT/videos/<video>.intervals.csv (spotted, with
`tp`, `iou` and the matched truth) and OUT/videos/<video>.truth.csv (truth, with `spotted`).
Generated sets on real clips (training.synth_long --background) carry natural.csv, the clips' own
expressions: reported apart (a spotted interval on one is not a false positive). `--method flow`
scores with the optical-flow scorer (mer.spotting.SpotConfig.flow()).
`--dataset video` spots plain videos (a file or a folder of them) with no truth and reports the
intervals per minute.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mer.files import VIDEO_EXTS, atomic_write, write_csv
from mer.spotting import DEFAULT_METHOD, INTERVAL_COLUMNS, METHODS, SpotConfig, TYPES, match, prf, spot, track_config

from .datasets.longvideo import LongVideo, read_long

log = logging.getLogger("training.spot")

GRID = {"c": [2.0, 2.5, 3.0, 4.0, 5.0], "min_rise": [0.01, 0.02, 0.03], "rel": [0.2, 0.3, 0.5],
        "pad_s": [0.05, 0.1, 0.15], "merge_s": [0.1, 0.2, 0.3], "min_s": [0.06, 0.1]}
EMOTION_KEYS = {"happy": "happiness", "angry": "anger", "sad": "sadness", "surprised": "surprise",
                "disgusted": "disgust", "fearful": "fear", "positive": "happiness"}


def canonical_emotion(v: str) -> str:
    v = str(v or "").strip().lower()
    return EMOTION_KEYS.get(v, v)


# ---------------------------------------------------------------------------------------- scoring

def cache_key(settings, checkpoints) -> str:
    """What a cached analysis depends on: mer's code (mer.provenance.code_hash), the video settings
    (the scorer's included) and each checkpoint's bytes and card (sha256; None: no model)."""
    from mer.provenance import code_hash, file_sha256
    h = hashlib.sha256(code_hash().encode())
    h.update(json.dumps(settings.to_dict(), sort_keys=True, default=str).encode())
    for ck in checkpoints:
        if ck is None:
            h.update(b"-")
            continue
        for f in (Path(ck), Path(ck).with_suffix(".json")):
            h.update(file_sha256(f).encode() if f.is_file() else b"-")
    return h.hexdigest()[:16]


def analysis(v: LongVideo, predictor, micro, settings, cache: Path):
    """(frames table, info, kept micro-model apex crops) of one video through the shipped
    mer.video.analyze_video (a frame folder through mer.decode's FolderSource at the dataset's
    frame rate), cached in `cache` (a folder named by cache_key)."""
    from mer.video import analyze_video
    hit = load_analysis(cache, v.name)
    if hit is not None:
        return hit
    t0 = time.time()
    if v.video is not None:
        src, s = v.video, settings
    else:
        from mer.decode import frame_files
        src, s = v.frames[0].parent, replace(settings, folder_fps=v.fps)
        if [f.name for f in frame_files(src)] != [f.name for f in v.frames]:
            raise ValueError(f"{v.name}: the frames the sheet indexes are not the folder's images in natural order")
    r = analyze_video(src, predictor, s, name=v.name, micro_predictor=micro or False)
    save_analysis(r, cache, v.name)
    log.info("%s: %d frames in %.0f s", v.name, len(r.frames), time.time() - t0)
    return load_analysis(cache, v.name)


def save_analysis(r, cache: Path, name: str) -> None:
    """A mer.video.VideoResult's frames table, size and kept apex crops, into the cache (atomic)."""
    info = {k: r.info[k] for k in ("width", "height", "fps", "n_frames")}
    info["apex_gap"] = r.apexes.gap
    kept = [(fid, *e) for fid, es in r.apexes.kept.items() for e in es]
    atomic_write(cache / f"{name}.apex.npz", _npz(
        face_id=np.array([e[0] for e in kept], np.int64), score=np.array([e[1] for e in kept], np.float64),
        frame=np.array([e[2] for e in kept], np.int64),
        crop=np.stack([e[3] for e in kept]) if kept else np.zeros((0, 1, 1, 3), np.uint8)))
    write_csv(r.frames, cache / f"{name}.frames.csv")
    atomic_write(cache / f"{name}.info.json", json.dumps(info) + "\n")  # last: marks the entry complete


def load_analysis(cache: Path, name: str):
    from mer.video import Thumbnails
    table, meta, crops = (cache / f"{name}.{x}" for x in ("frames.csv", "info.json", "apex.npz"))
    if not (table.is_file() and meta.is_file() and crops.is_file()):
        return None
    info = json.loads(meta.read_text())
    apexes = Thumbnails(0, info["apex_gap"], 1)
    with np.load(crops) as z:
        for fid, fr, sc, cr in zip(z["face_id"], z["frame"], z["score"], z["crop"]):
            apexes.kept.setdefault(int(fid), []).append((float(sc), int(fr), cr))
    return pd.read_csv(table), info, apexes


def _npz(**arrays) -> bytes:
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def subject_track(df: pd.DataFrame, size: tuple[int, int] | None = None) -> pd.DataFrame:
    """The rows of the subject's face. The long-video sets film one subject, framed in the middle;
    other faces (a bystander, a face in a picture behind) are not scored. Among the tracks seen in
    at least 95 % of the longest track's frames: the one whose median box centre is nearest to the
    centre of the frame (size = (width, height)); without a size, the most confidently detected."""
    faces = df[df["face_id"].notna()]
    if faces["face_id"].nunique() <= 1:
        return faces
    g = faces.groupby("face_id")
    n = g.size()
    long = n.index[n >= 0.95 * n.max()]
    if size is not None:
        cx, cy = (g["x1"].median() + g["x2"].median()) / 2, (g["y1"].median() + g["y2"].median()) / 2
        off = ((cx / size[0] - 0.5) ** 2 + (cy / size[1] - 0.5) ** 2)
        best = min(long, key=lambda f: float(off[f]))
    else:
        prob = g["det_prob"].median()
        best = max(long, key=lambda f: float(prob[f]))
    return faces[faces["face_id"] == best]


def spot_table(df: pd.DataFrame, cfg: SpotConfig, subject_only: bool = True) -> pd.DataFrame:
    """Intervals from a frames table's (smoothed) motion column, one face track at a time (only the
    subject's track when subject_only)."""
    out = []
    df = subject_track(df) if subject_only else df
    for fid, g in df[df["face_id"].notna()].groupby("face_id", sort=True):
        g = g.sort_values("frame")
        start = g["time_s"].to_numpy(np.float64)
        dt = float(np.median(np.diff(start))) if len(start) > 1 else 1 / 30
        end = np.r_[start[1:], start[-1] + dt] if len(start) else start
        out += spot(g["frame"].to_numpy(), start, end, g["motion"].to_numpy(np.float64), int(fid),
                    track_config(cfg, g), smoothed=True)
    return pd.DataFrame(out, columns=INTERVAL_COLUMNS)


# -------------------------------------------------------------------------------------- evaluation

def evaluate(spotted: list[pd.DataFrame], videos: list[LongVideo]) -> tuple[dict, list[list[dict]]]:
    """MEGC counts per type and overall; also the matches per video."""
    counts = {t: [0, 0, 0] for t in TYPES}
    matches = []
    for iv, v in zip(spotted, videos):
        per = []
        for t in TYPES:
            s_idx = [k for k in range(len(iv)) if iv["type"].iloc[k] == t]
            t_idx = [k for k, e in enumerate(v.expressions) if e.type == t]
            S = [(int(iv["onset_frame"].iloc[k]), int(iv["offset_frame"].iloc[k])) for k in s_idx]
            T = [(v.expressions[k].onset, v.expressions[k].offset) for k in t_idx]
            m = match(S, T)
            counts[t][0] += len(m)
            counts[t][1] += len(S)
            counts[t][2] += len(T)
            per += [{"spotted": s_idx[i], "truth": t_idx[j], "iou": round(u, 4)} for i, j, u in m]
        matches.append(per)
    res = {t: prf(*counts[t]) for t in TYPES}
    res["overall"] = prf(*(sum(counts[t][k] for t in TYPES) for k in range(3)))
    return res, matches


def choose(tables: list[pd.DataFrame], videos: list[LongVideo], base: SpotConfig) -> tuple[SpotConfig, float]:
    """The grid point with the best overall F1 (then micro F1) on these videos."""
    best, key = base, (-1.0, -1.0)
    for values in itertools.product(*GRID.values()):
        cfg = replace(base, **dict(zip(GRID, values)))
        res, _ = evaluate([spot_table(t, cfg) for t in tables], videos)
        k = (res["overall"]["F1"], res["micro"]["F1"])
        if k > key:
            best, key = cfg, k
    return best, key[0]


def recognition(spotted, videos, matches) -> dict:
    """Recognition F1 over true positives whose truth has an emotion, and STRS, per type and overall."""
    from sklearn.metrics import f1_score
    out = {}
    pairs = {t: [] for t in TYPES}
    for iv, v, ms in zip(spotted, videos, matches):
        for m in ms:
            e = v.expressions[m["truth"]]
            if e.emotion:
                pairs[e.type].append((canonical_emotion(e.emotion), canonical_emotion(iv["class"].iloc[m["spotted"]])))
    pairs["overall"] = pairs["micro"] + pairs["macro"]
    for t, ps in pairs.items():
        if not ps:
            out[t] = {"n": 0, "recognition_F1": None}
            continue
        y, p = zip(*ps)
        f = f1_score(y, p, labels=sorted(set(y)), average="macro", zero_division=0)
        out[t] = {"n": len(ps), "recognition_F1": round(float(f), 4), "accuracy": round(float(np.mean(np.array(y) == np.array(p))), 4)}
    return out


# ------------------------------------------------------------------------------------------- main

def load_videos(dataset: str, path: str) -> list[LongVideo]:
    if dataset == "video":
        p = Path(path)
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTS)
        if not files:
            raise FileNotFoundError(f"no video files at {p}")
        return [LongVideo("video", f.stem, f.stem, [], video=f) for f in files]
    return read_long(dataset, path)


def load_all(dataset: str, paths) -> list[LongVideo]:
    """The videos of one or more dataset folders (e.g. two generated sets); names must be unique,
    as the per-frame cache is keyed by name."""
    videos = [v for p in ([paths] if isinstance(paths, (str, Path)) else paths) for v in load_videos(dataset, p)]
    names = [v.name for v in videos]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"video names occur twice across the dataset paths: {', '.join(dup[:5])}")
    return videos


def natural(spotted: list[pd.DataFrame], videos: list[LongVideo], matches) -> dict:
    """The background clips' own (hand-labelled) expressions, apart: spotted intervals that are not
    true positives but overlap a natural stretch are not false positives; a natural stretch is hit
    when such an interval has IoU >= 0.5 with it (any type). Also F1 with them counted as truth."""
    n_nat = sum(len(v.natural) for v in videos)
    if not n_nat:
        return {}
    on, hits, tp, n_sp, n_true = 0, 0, 0, 0, 0
    for iv, v, ms in zip(spotted, videos, matches):
        used = {m["spotted"] for m in ms}
        rest = [(int(r.onset_frame), int(r.offset_frame)) for k, r in enumerate(iv.itertuples()) if k not in used]
        on += sum(any(min(b, d) >= max(a, c) for c, d in v.natural) for a, b in rest)
        hits += len(match(rest, v.natural))
        tp, n_sp, n_true = tp + len(ms), n_sp + len(iv), n_true + len(v.expressions)
    return {"n_natural": n_nat, "natural_hit": hits, "spotted_on_natural": on,
            "planted_precision_without_natural": round(tp / (n_sp - on), 4) if n_sp > on else 0.0,
            "with_natural_as_truth": prf(tp + hits, n_sp, n_true + n_nat)}


def run(dataset: str, path, out: Path, detect_every: int = 2, folds: int = 5, device: str = "cpu",
        max_videos: int | None = None, command: str = "", method: str = DEFAULT_METHOD) -> dict:
    from mer.predict import Predictor, micro_checkpoint
    from mer.video import VideoSettings, recognize_intervals
    from sklearn.model_selection import GroupKFold
    out = Path(out)
    videos = load_all(dataset, path)[:max_videos or None]
    if not videos:
        raise ValueError(f"no videos found for {dataset} at {path}")
    base = SpotConfig.for_method(method)
    settings = VideoSettings(detect_every=detect_every, spotting=base)
    predictor = Predictor(device=device)
    micro = Predictor(micro_checkpoint(), device=device)  # a missing or broken micro model is an error
    key = cache_key(settings, [predictor.checkpoint, micro.checkpoint])
    analysed = [analysis(v, predictor, micro, settings, out / "cache" / key) for v in videos]
    tables = all_tables = [a[0] for a in analysed]
    has_truth = any(v.expressions for v in videos)
    if has_truth:  # only the subject's face is scored against the truth
        tables = [subject_track(t, (a[1]["width"], a[1]["height"])) for t, a in zip(tables, analysed)]
    groups = [v.group for v in videos]
    n_groups = len(set(groups))
    spotted: list = [None] * len(videos)
    fold_info = []
    if has_truth and n_groups >= 2:
        k = min(folds, n_groups)
        for f, (tr, te) in enumerate(GroupKFold(n_splits=k).split(videos, groups=groups)):
            cfg, f1 = choose([tables[i] for i in tr], [videos[i] for i in tr], base)
            for i in te:
                spotted[i] = spot_table(tables[i], cfg)
            fold_info.append({"fold": f, "test_subjects": sorted({groups[i] for i in te}),
                              "params": {g: getattr(cfg, g) for g in GRID}, "train_overall_F1": f1})
        protocol = f"GroupKFold({k}) by subject: parameters {list(GRID)} chosen on the other subjects' videos"
    else:
        spotted = [spot_table(t, base, subject_only=has_truth) for t in tables]
        protocol = (f"defaults (mer.spotting.SpotConfig.for_method({method!r})); no cross-validation: "
                    + ("no truth" if not has_truth else "a single subject"))
    spotted = [recognize_intervals(iv, t, predictor.classes, a[2].nearest, micro, settings.micro_by)
               for iv, t, a in zip(spotted, tables, analysed)]
    res, matches = evaluate(spotted, videos)
    defaults, _ = evaluate([spot_table(t, base) for t in tables], videos)
    minutes = sum(float(t["time_s"].max() - t["time_s"].min()) for t in all_tables) / 60 or float("nan")
    per_min = {t: round(sum(int((iv["type"] == t).sum()) for iv in spotted) / minutes, 3) for t in TYPES}
    rec = recognition(spotted, videos, matches) if has_truth else {}
    strs = {t: (round(res[t]["F1"] * rec[t]["recognition_F1"], 4) if rec.get(t, {}).get("recognition_F1") is not None
                else None) for t in (*TYPES, "overall")} if rec else {}
    metrics = {"command": command, "dataset": dataset, "dataset_path": str(path) if isinstance(path, (str, Path)) else " ".join(map(str, path)), "videos": len(videos), "subjects": n_groups,
               "minutes": round(minutes, 3), "protocol": protocol, "rule": "MEGC: IoU >= 0.5 with a truth of the same type, each truth matched once",
               **{t: res[t] for t in (*TYPES, "overall")}, "defaults": defaults, "folds": fold_info,
               "intervals_per_minute": per_min, "recognition": rec, "STRS": strs,
               "natural": natural(spotted, videos, matches), "cache_key": key,
               "spot_config": asdict(base), "detect_every": detect_every, "grid": GRID}
    for iv, v, ms in zip(spotted, videos, matches):
        iv = iv.copy()
        iv["tp"], iv["iou"], iv["truth_onset"], iv["truth_offset"] = 0, np.nan, pd.NA, pd.NA
        tr = pd.DataFrame([asdict(e) for e in v.expressions], columns=["type", "onset", "apex", "offset", "emotion", "aus"])
        tr["spotted"] = 0
        for m in ms:
            e = v.expressions[m["truth"]]
            iv.loc[iv.index[m["spotted"]], ["tp", "iou", "truth_onset", "truth_offset"]] = [1, m["iou"], e.onset, e.offset]
            tr.loc[m["truth"], "spotted"] = 1
        write_csv(iv, out / "videos" / f"{v.name}.intervals.csv")
        if len(v.expressions) or has_truth:
            write_csv(tr, out / "videos" / f"{v.name}.truth.csv")
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    atomic_write(out / "report.md", report_md(metrics))
    return metrics


def report_md(m: dict) -> str:
    head = "| | TP | spotted | true | precision | recall | F1 |\n|---|---|---|---|---|---|---|\n"
    row = lambda name, r: f"| {name} | {r['TP']} | {r['n_spotted']} | {r['n_true']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['F1']:.3f} |\n"  # noqa: E731
    s = [f"# Spotting: {m['dataset']} ({m['videos']} videos, {m['subjects']} subjects, {m['minutes']:.1f} min)\n\n",
         f"Command: `{m.get('command', '')}`\n\n",
         f"Rule: {m['rule']}. Protocol: {m['protocol']}.\n\n"]
    if not m["overall"]["n_true"]:  # no truth: what was spotted, per minute
        return "".join(s) + f"No truth: intervals per minute {m['intervals_per_minute']} (shipped defaults).\n"
    s += ["## Cross-validated parameters\n\n", head]
    s += [row(t, m[t]) for t in ("micro", "macro", "overall")]
    s += ["\n## Shipped defaults (no tuning)\n\n", head] + [row(t, m["defaults"][t]) for t in ("micro", "macro", "overall")]
    s.append(f"\nIntervals per minute: {m['intervals_per_minute']}\n")
    if m.get("natural"):
        n = m["natural"]
        s.append(f"\nNatural expressions of the background clips (hand-labelled, apart): {n['natural_hit']} of "
                 f"{n['n_natural']} stretches hit (IoU >= 0.5, any type); {n['spotted_on_natural']} spotted intervals "
                 f"lie on one (not counted as false positives: planted precision {n['planted_precision_without_natural']}); "
                 f"with them counted as truth: F1 {n['with_natural_as_truth']['F1']}.\n")
    if m["folds"]:
        s.append("\n## Folds\n\n| fold | test subjects | params | train overall F1 |\n|---|---|---|---|\n")
        s += [f"| {f['fold']} | {', '.join(f['test_subjects'])} | {f['params']} | {f['train_overall_F1']:.3f} |\n" for f in m["folds"]]
    if m["recognition"]:
        s.append("\n## Spot-then-recognize\n\n| | true positives with an emotion | recognition F1 | STRS |\n|---|---|---|---|\n")
        s += [f"| {t} | {r['n']} | {r['recognition_F1']} | {m['STRS'].get(t)} |\n" for t, r in m["recognition"].items()]
    return "".join(s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.spot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=["synth", "samm-lv", "casme2-lv", "video"])
    p.add_argument("--dataset-path", required=True, nargs="+", help="one or more folders (or a video file)")
    p.add_argument("--out", required=True)
    p.add_argument("--detect-every", type=int, default=2, help="MTCNN every N frames, interpolated between")
    p.add_argument("--folds", type=int, default=5, help="GroupKFold splits (at most the number of subjects)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-videos", type=int, default=None)
    p.add_argument("--method", choices=list(METHODS), default=DEFAULT_METHOD,
                   help="the motion scorer (mer.spotting.SpotConfig.method; flow: SpotConfig.flow())")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cmd = "python -m training.spot " + " ".join(sys.argv[1:] if argv is None else argv)
        m = run(a.dataset, a.dataset_path, Path(a.out), a.detect_every, a.folds, a.device, a.max_videos, cmd, a.method)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report_md(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
