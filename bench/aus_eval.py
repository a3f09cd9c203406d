"""AU-based recognition of spotted intervals vs the shipped synthetic micro-expression model, on
generated long videos (training.synth_long: its truth has AUs and emotions).

    python -m training.synth_long --faces ../shared/media --out runs/long_au --videos 4 --seconds 20 \
        --micro-per-min 15 --macro-per-min 3 --seed 100
    python bench/aus_eval.py runs/long_au [--detect-every 3] [--out runs/aus_eval.json]

Every video goes once through mer.video.analyze_video (defaults: MTCNN, FER2013 per-frame model,
micro model, face mesh + AU proxies). Only the subject's face (the longest track) is scored.
Spotted intervals are matched to the truth by the MEGC rule (IoU >= 0.5, same type). Over the true
positives: AU detection F1 (the interval's `aus` vs the planted AUs that have a proxy, pooled over
intervals), the share with at least one planted AU in `aus`, objective-class accuracy (truth class
= mer.aus.objective_class of the planted AUs) and recognition F1 (macro over emotions) of (a) the
AU-based `emotion` and (b) the interval's `class` from the shipped models; STRS = spotting F1 x
recognition F1, per type.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FOLD = {"happy": "Happiness", "happiness": "Happiness", "surprise": "Surprise", "angry": "Anger",
        "anger": "Anger", "fear": "Fear", "sad": "Sadness", "sadness": "Sadness", "disgust": "Disgust",
        "neutral": "Others", "others": "Others"}


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    from sklearn.metrics import f1_score
    if not pairs:
        return 0.0
    t, p = zip(*pairs)
    return float(f1_score(t, p, labels=sorted(set(t)), average="macro", zero_division=0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--detect-every", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    from mer.aus import AU_NAMES, objective_class
    from mer.predict import Predictor
    from mer.spotting import match, prf
    from mer.video import VideoSettings, analyze_video
    truth = pd.read_csv(a.root / "truth.csv")
    pred = Predictor(device="cpu")
    proxied = {int(n[2:]) for n in AU_NAMES}
    counts = {t: [0, 0, 0] for t in ("micro", "macro")}
    au_tp = au_fp = au_fn = 0
    rows = []
    for name, tv in truth.groupby("Filename"):
        res = analyze_video(a.root / "videos" / f"{name}.mp4", pred, VideoSettings(detect_every=a.detect_every))
        iv = res.intervals
        if len(iv):
            main_face = res.frames["face_id"].value_counts().idxmax()
            iv = iv[iv["face_id"] == main_face].reset_index(drop=True)
        for typ, ttype in (("micro", "Micro - 1/2"), ("macro", "Macro")):
            s = iv[iv["type"] == typ].reset_index(drop=True)
            t = tv[tv["Type"] == ttype].reset_index(drop=True)
            m = match(list(zip(s["onset_frame"], s["offset_frame"])), list(zip(t["Onset"], t["Offset"])))
            counts[typ][0] += len(m)
            counts[typ][1] += len(s)
            counts[typ][2] += len(t)
            for si, ti, _ in m:
                planted = {int(x) for x in str(t.loc[ti, "Action Units"]).split("+")}
                got = {int(x[2:]) for x in str(s.loc[si, "aus"]).split("+") if x.startswith("AU")}
                want = planted & proxied
                au_tp += len(got & want)
                au_fp += len(got - want)
                au_fn += len(want - got)
                rows.append({"video": name, "type": typ, "truth_emotion": t.loc[ti, "Estimated Emotion"],
                             "planted": "+".join(map(str, sorted(planted))), "aus": s.loc[si, "aus"],
                             "hit": bool(got & want), "truth_class": objective_class(planted),
                             "objective_class": s.loc[si, "objective_class"], "au_emotion": s.loc[si, "emotion"],
                             "model_class": FOLD.get(str(s.loc[si, "class"]).lower(), str(s.loc[si, "class"]))})
        print(name, "done", file=sys.stderr)
    df = pd.DataFrame(rows)
    out = {"videos": int(truth["Filename"].nunique()), "spotting": {t: prf(*c) for t, c in counts.items()},
           "au_detection": prf(au_tp, au_tp + au_fp, au_tp + au_fn)}
    for typ in ("micro", "macro", "all"):
        d = df if typ == "all" or df.empty else df[df["type"] == typ]
        if d.empty:
            continue
        spot_f1 = prf(*[sum(counts[t][k] for t in counts) for k in range(3)])["F1"] if typ == "all" else \
            out["spotting"][typ]["F1"]
        rec_au = macro_f1(list(zip(d["truth_emotion"], d["au_emotion"])))
        rec_model = macro_f1(list(zip(d["truth_emotion"], d["model_class"])))
        out[typ] = {"true_positives": int(len(d)), "planted_au_in_aus": round(float(d["hit"].mean()), 4),
                    "objective_class_accuracy": round(float((d["truth_class"] == d["objective_class"]).mean()), 4),
                    "recognition_F1_aus": round(rec_au, 4), "recognition_F1_model": round(rec_model, 4),
                    "STRS_aus": round(spot_f1 * rec_au, 4), "STRS_model": round(spot_f1 * rec_model, 4)}
    print(json.dumps(out, indent=1))
    print(df.to_string())
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=1) + "\n")
        df.to_csv(a.out.with_suffix(".csv"), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
