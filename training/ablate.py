"""CNN vs CNN+CBAM x leaky random-frames vs LOSO x seeds, one table of mean +- sd.

    python -m training.ablate --dataset-path runs/synth_ablate --out runs/ablate

Every cell is an ordinary `python -m training` run folder under --out (resumable: re-running the
command reuses finished folds); the table goes to OUT/ablation.md, .csv and .json.
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

from .protocols import LEAKY
from .train import TrainConfig, run


def table(rows: pd.DataFrame) -> pd.DataFrame:
    g = rows.groupby(["arch", "protocol"], sort=False)
    out = g[["uf1", "uar", "acc"]].agg(["mean", "std"]).round(4)
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["seeds"] = g.size()
    return out.reset_index()


def markdown(t: pd.DataFrame, gaps: dict, command: str, data: str) -> str:
    lines = ["| model | protocol | UF1 | UAR | accuracy | seeds |", "|---|---|---|---|---|---|"]
    for r in t.itertuples():
        p = f"{r.protocol} (LEAKY)" if r.protocol in LEAKY else f"{r.protocol} (pooled)"
        lines.append(f"| {r.arch} | {p} | {r.uf1_mean:.3f} ± {r.uf1_std:.3f} | {r.uar_mean:.3f} ± {r.uar_std:.3f} "
                     f"| {r.acc_mean:.3f} ± {r.acc_std:.3f} | {r.seeds} |")
    lines += ["", "Leakage gap (random-frames minus LOSO, mean over seeds):", ""]
    lines += [f"- {a}: UF1 {g['uf1']:+.3f}, UAR {g['uar']:+.3f}, accuracy {g['acc']:+.3f}" for a, g in gaps.items()]
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
    p.add_argument("--protocols", default="random-frames,loso")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--input", default="frames", help="frames: the original's setting (default)")
    p.add_argument("--frame-step", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="override the archs' default learning rate")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = "python -m training.ablate " + shlex.join(argv)
    out = Path(a.out)
    rows, data = [], ""
    combos = list(itertools.product(a.archs.split(","), a.protocols.split(","), [int(s) for s in a.seeds.split(",")]))
    for i, (arch, proto, seed) in enumerate(combos, 1):
        print(f"[{i}/{len(combos)}] {arch} {proto} seed {seed}", flush=True)
        cfg = TrainConfig(dataset=a.dataset, dataset_path=a.dataset_path, labels=a.labels, input=a.input,
                          arch=arch, protocol=proto, seed=seed, epochs=a.epochs, size=a.size,
                          frame_step=a.frame_step, lr=a.lr, threads=a.threads, final=False, progress=a.progress,
                          out=str(out / f"{arch}-{proto}-s{seed}"), command=command)
        m = run(cfg)
        data = m["data"]
        rows.append({"arch": arch, "protocol": proto, "seed": seed, "uf1": m["uf1"], "uar": m["uar"],
                     "acc": m["acc"], "leaky": m["leaky"], "seconds": m["seconds"]})
        pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
    runs = pd.DataFrame(rows)
    t = table(runs)
    gaps = {}
    for arch in runs.arch.unique():
        r = runs[runs.arch == arch].groupby("protocol")[["uf1", "uar", "acc"]].mean()
        if {"random-frames", "loso"} <= set(r.index):
            gaps[arch] = (r.loc["random-frames"] - r.loc["loso"]).round(4).to_dict()
    t.to_csv(out / "ablation.csv", index=False)
    (out / "ablation.json").write_text(json.dumps({"command": command, "data": data, "table": t.to_dict("records"),
                                                   "leakage_gap": gaps, "runs": rows}, indent=1))
    md = markdown(t, gaps, command, data)
    (out / "ablation.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
