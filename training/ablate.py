"""Ablation: archs x initialisations x protocols x seeds, one table of mean +- sd and per-seed
paired comparisons.

    python -m training.ablate --dataset-path runs/synth_ablate --out runs/ablate
    python -m training.ablate --dataset-path runs/synth --archs mini_xception,mini_xception_cbam \\
           --inits scratch,fer2013 --protocols loso --input apex --seeds 0,1,2,3,4 --out runs/ablate_fer

Every cell is an ordinary `python -m training` run folder under --out (resumable: re-running the
command reuses finished folds); the tables go to OUT/ablation.md, .json, and ablation.csv,
runs.csv, paired.csv (escaped against formula injection, written atomically).

Paired comparisons: two variants that differ in one thing (the arch, e.g. with and without CBAM,
or the initialisation), under the same protocol, run with the same seeds on the same folds; per
seed the difference in UF1/UAR, then its mean +- sd, on how many seeds the second is better, and a
paired t-test.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import shlex
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import ttest_rel

from mer.files import atomic_write, write_csv

from .protocols import LEAKY
from .train import TrainConfig, run

KEYS = ["arch", "init", "protocol"]


def table(rows: pd.DataFrame) -> pd.DataFrame:
    g = rows.groupby(KEYS, sort=False)
    out = g[["uf1", "uar", "acc"]].agg(["mean", "std"]).round(4)
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["seeds"] = g.size()
    return out.reset_index()


def paired(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per pair, per-seed differences) for every pair of variants that differ in exactly
    one of arch / init, under the same protocol, over the seeds both have."""
    variants = list(dict.fromkeys(zip(rows.arch, rows.init)))
    summary, per_seed = [], []
    for proto in rows.protocol.unique():
        r = rows[rows.protocol == proto].set_index(["arch", "init", "seed"]).sort_index()
        for a, b in itertools.combinations(variants, 2):
            if (a[0] == b[0]) == (a[1] == b[1]):
                continue  # identical, or differing in both
            try:
                ra, rb = r.loc[a], r.loc[b]
            except KeyError:
                continue
            seeds = sorted(set(ra.index) & set(rb.index))
            if not seeds:
                continue
            what = "arch" if a[0] != b[0] else "init"
            name_a, name_b = f"{a[0]} ({a[1]})", f"{b[0]} ({b[1]})"
            d = {k: rb.loc[seeds, k].to_numpy() - ra.loc[seeds, k].to_numpy() for k in ("uf1", "uar")}
            for i, s in enumerate(seeds):
                per_seed.append({"protocol": proto, "a": name_a, "b": name_b, "seed": s,
                                 "uf1_a": ra.loc[s, "uf1"], "uf1_b": rb.loc[s, "uf1"], "uf1_diff": d["uf1"][i],
                                 "uar_a": ra.loc[s, "uar"], "uar_b": rb.loc[s, "uar"], "uar_diff": d["uar"][i]})
            n = len(seeds)
            p = float(ttest_rel(rb.loc[seeds, "uf1"], ra.loc[seeds, "uf1"]).pvalue) if n > 1 and d["uf1"].std() > 0 else float("nan")
            summary.append({"protocol": proto, "differs_in": what, "a": name_a, "b": name_b, "seeds": n,
                            "uf1_diff_mean": d["uf1"].mean(), "uf1_diff_sd": d["uf1"].std(ddof=1) if n > 1 else 0.0,
                            "uar_diff_mean": d["uar"].mean(), "uar_diff_sd": d["uar"].std(ddof=1) if n > 1 else 0.0,
                            "b_better_seeds": int((d["uf1"] > 0).sum()), "uf1_t_test_p": p})
    return pd.DataFrame(summary).round(4), pd.DataFrame(per_seed).round(4)


def markdown(t: pd.DataFrame, gaps: dict, pairs: pd.DataFrame, per_seed: pd.DataFrame, command: str, data: str) -> str:
    lines = ["| model | init | protocol | UF1 | UAR | accuracy | seeds |", "|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        p = f"{r.protocol} (LEAKY)" if r.protocol in LEAKY else f"{r.protocol} (pooled)"
        lines.append(f"| {r.arch} | {r.init} | {p} | {r.uf1_mean:.3f} ± {r.uf1_std:.3f} | {r.uar_mean:.3f} ± {r.uar_std:.3f} "
                     f"| {r.acc_mean:.3f} ± {r.acc_std:.3f} | {r.seeds} |")
    if gaps:
        lines += ["", "Leakage gap (random-frames minus LOSO, mean over seeds):", ""]
        lines += [f"- {a}: UF1 {g['uf1']:+.3f}, UAR {g['uar']:+.3f}, accuracy {g['acc']:+.3f}" for a, g in gaps.items()]
    if len(pairs):
        lines += ["", "Paired by seed (B minus A, same seeds and folds):", "",
                  "| protocol | A | B | UF1 B−A | UAR B−A | B better (seeds) | paired t-test p (UF1) |",
                  "|---|---|---|---|---|---|---|"]
        for r in pairs.itertuples():
            lines.append(f"| {r.protocol} | {r.a} | {r.b} | {r.uf1_diff_mean:+.3f} ± {r.uf1_diff_sd:.3f} | "
                         f"{r.uar_diff_mean:+.3f} ± {r.uar_diff_sd:.3f} | {r.b_better_seeds} of {r.seeds} | "
                         f"{r.uf1_t_test_p:.3f} |")
        lines += ["", "Per seed (UF1):", "", "| protocol | A | B | seed | A | B | B−A |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.protocol} | {r.a} | {r.b} | {r.seed} | {r.uf1_a:.3f} | {r.uf1_b:.3f} | {r.uf1_diff:+.3f} |"
                  for r in per_seed.itertuples()]
    lines += ["", f"Data: {data}", "", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m training.ablate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="samm")
    p.add_argument("--dataset-path", "--dataset_path", dest="dataset_path", required=True)
    p.add_argument("--labels", default="seed6")
    p.add_argument("--archs", default="seed_cnn,seed_cbam")
    p.add_argument("--inits", "--init", dest="inits", default="scratch",
                   help="comma list of initialisations (see python -m training --help: scratch, fer2013, a checkpoint)")
    p.add_argument("--protocols", default="random-frames,loso")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--input", default="frames", help="frames: the original's setting (default)")
    p.add_argument("--frame-step", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="override the archs' default learning rate")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = "python -m training.ablate " + shlex.join(argv)
    out = Path(a.out)
    rows, data = [], ""
    combos = list(itertools.product(a.archs.split(","), a.inits.split(","), a.protocols.split(","),
                                    [int(s) for s in a.seeds.split(",")]))
    try:
        for i, (arch, init, proto, seed) in enumerate(combos, 1):
            print(f"[{i}/{len(combos)}] {arch} {init} {proto} seed {seed}", flush=True)
            cfg = TrainConfig(dataset=a.dataset, dataset_path=a.dataset_path, labels=a.labels, input=a.input,
                              arch=arch, init=init, protocol=proto, seed=seed, epochs=a.epochs, size=a.size,
                              frame_step=a.frame_step, lr=a.lr, batch_size=a.batch_size, threads=a.threads,
                              final=False, progress=a.progress, command=command, cache_dir=str(out / "cache"),
                              out=str(out / f"{arch}-{init}-{proto}-s{seed}"))
            m = run(cfg)
            data = m["data"]
            rows.append({"arch": arch, "init": init, "protocol": proto, "seed": seed, "uf1": m["uf1"], "uar": m["uar"],
                         "acc": m["acc"], "unit": m["unit"], "leaky": m["leaky"], "seconds": m["seconds"]})
            write_csv(pd.DataFrame(rows), out / "runs.csv")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs = pd.DataFrame(rows)
    t = table(runs)
    gaps = {}
    for (arch, init), g in runs.groupby(["arch", "init"], sort=False):
        r = g.groupby("protocol")[["uf1", "uar", "acc"]].mean()
        if {"random-frames", "loso"} <= set(r.index):
            gaps[arch if len(runs.init.unique()) == 1 else f"{arch} ({init})"] = (
                r.loc["random-frames"] - r.loc["loso"]).round(4).to_dict()
    pairs, per_seed = paired(runs)
    write_csv(t, out / "ablation.csv")
    write_csv(pairs, out / "paired.csv")
    def records(df):  # NaN -> null
        return json.loads(df.to_json(orient="records"))
    atomic_write(out / "ablation.json", json.dumps(
        {"command": command, "data": data, "table": records(t), "leakage_gap": gaps,
         "paired": records(pairs), "paired_per_seed": records(per_seed), "runs": rows}, indent=1))
    md = markdown(t, gaps, pairs, per_seed, command, data)
    atomic_write(out / "ablation.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
