"""AU-based recognition of spotted intervals vs the shipped synthetic micro-expression model, on
generated long videos (training.synth_long: its truth has AUs and emotions).

    python -m training.synth_long --faces ../shared/media --out runs/long_eval --videos 6 --seconds 60 --seed 100
    python -m training.spot --dataset synth --dataset-path runs/long_eval --out runs/spot_eval --detect-every 3
    python bench/aus_eval.py runs/long_eval --detect-every 3 --cache runs/spot_eval/cache --out runs/aus_eval_60.json

Every video goes once through the shipped pipeline (mer.video.analyze_video, defaults: MTCNN,
FER2013 per-frame model, micro model, face mesh + AU proxies) by training.spot's own cached
analysis (training.spot.analysis, same settings, same cache key): with `--cache` set to a
training.spot run's OUT/cache on the same videos, nothing is analysed twice (default: a `cache`
folder beside `--out`). As in training.spot, only the subject's face is scored
(training.spot.subject_track), spotted with the shipped defaults (mer.video.VideoSettings().spotting) and
recognised as analyze_video does (mer.spotting.recognize, then mer.aus.label_intervals for `aus`,
`objective_class`, `emotion`); matched to the truth by the MEGC rule (training.spot.evaluate: IoU
>= 0.5, same type). Over the true positives: AU detection F1 (the interval's `aus` vs the planted
AUs that have a proxy, pooled over intervals), the share with at least one planted AU in `aus`,
objective-class accuracy (truth class = mer.aus.objective_class of the planted AUs) and
recognition F1 (macro over the truth's emotions) of (a) the AU-based `emotion` and (b) the
interval's `class` from the models alone (micro intervals by the synthetic micro model from the apex
crop, micro_by="micro_model", whatever the default; macro ones by the per-frame model); STRS =
spotting F1 x recognition F1, per type.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    """Macro F1 over the truth's emotions (names folded by training.spot.canonical_emotion)."""
    from sklearn.metrics import f1_score
    from training.spot import canonical_emotion
    if not pairs:
        return 0.0
    t, p = zip(*((canonical_emotion(a), canonical_emotion(b)) for a, b in pairs))
    return float(f1_score(t, p, labels=sorted(set(t)), average="macro", zero_division=0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--detect-every", type=int, default=3)
    ap.add_argument("--mesh-every", type=int, default=None,
                    help="face mesh every N frames, interpolated between (default: VideoSettings' default)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None,
                    help="analysis cache (training.spot's OUT/cache to reuse its analyses; default: cache/ beside --out)")
    a = ap.parse_args()
    from mer.aus import AU_NAMES, objective_class
    from mer.predict import Predictor, micro_checkpoint
    from mer.spotting import prf
    from mer.video import VideoSettings, recognize_intervals
    from training.datasets.longvideo import read_long
    from training.spot import analysis, cache_key, evaluate, spot_table, subject_track
    videos = read_long("synth", a.root)
    pred = Predictor(device="cpu")
    micro = Predictor(micro_checkpoint(), device="cpu")
    settings = VideoSettings(detect_every=a.detect_every)  # the shipped spotting defaults, as training.spot
    if a.mesh_every is not None:
        settings = replace(settings, mesh_every=a.mesh_every)
    cache = (a.cache or ((a.out.parent if a.out else Path("runs")) / "cache")) / cache_key(
        settings, [pred.checkpoint, micro.checkpoint])
    proxied = {int(n[2:]) for n in AU_NAMES}
    spotted = []
    for v in videos:
        frames, info, apexes = analysis(v, pred, micro, settings, cache)
        t = subject_track(frames, (info["width"], info["height"]))
        spotted.append(recognize_intervals(spot_table(t, settings.spotting), t, pred.classes, apexes.nearest, micro,
                                           "micro_model"))  # (b): the models' class, against (a) the AUs' emotion
        print(v.name, "done", file=sys.stderr)
    res, matches = evaluate(spotted, videos)
    au_tp = au_fp = au_fn = 0
    rows = []
    for iv, v, ms in zip(spotted, videos, matches):
        for m in ms:
            e, s = v.expressions[m["truth"]], iv.iloc[m["spotted"]]
            planted = {int(x) for x in e.aus.split("+") if x.strip()}
            got = {int(x[2:]) for x in str(s["aus"]).split("+") if x.startswith("AU")}
            want = planted & proxied
            au_tp += len(got & want)
            au_fp += len(got - want)
            au_fn += len(want - got)
            rows.append({"video": v.name, "type": e.type, "truth_emotion": e.emotion,
                         "planted": "+".join(map(str, sorted(planted))), "aus": s["aus"], "iou": m["iou"],
                         "hit": bool(got & want), "truth_class": objective_class(planted),
                         "objective_class": s["objective_class"], "au_emotion": s["emotion"],
                         "model_class": s["class"], "recognized_by": s["recognized_by"]})
    df = pd.DataFrame(rows)
    out = {"videos": len(videos), "cache": str(cache), "spot_config": f"shipped defaults (method {settings.spotting.method})",
           "spotting": {t: res[t] for t in ("micro", "macro", "overall")},
           "au_detection": prf(au_tp, au_tp + au_fp, au_tp + au_fn)}
    for typ in ("micro", "macro", "all"):
        d = df if typ == "all" or df.empty else df[df["type"] == typ]
        if d.empty:
            continue
        spot_f1 = res["overall" if typ == "all" else typ]["F1"]
        rec_au = macro_f1(list(zip(d["truth_emotion"], d["au_emotion"])))
        rec_model = macro_f1(list(zip(d["truth_emotion"], d["model_class"])))
        out[typ] = {"true_positives": int(len(d)), "planted_au_in_aus": round(float(d["hit"].mean()), 4),
                    "objective_class_accuracy": round(float((d["truth_class"] == d["objective_class"]).mean()), 4),
                    "recognition_F1_aus": round(rec_au, 4), "recognition_F1_model": round(rec_model, 4),
                    "STRS_aus": round(spot_f1 * rec_au, 4), "STRS_model": round(spot_f1 * rec_model, 4)}
    print(json.dumps(out, indent=1))
    print(df.to_string())
    if a.out:
        from mer.files import atomic_write
        atomic_write(a.out, json.dumps(out, indent=1) + "\n")
        atomic_write(a.out.with_suffix(".csv"), df.to_csv(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
