"""python -m training --dataset samm --dataset-path PATH --arch mernet_cbam --protocol loso --out runs/NAME"""
import argparse, json, os, shlex, sys
from dataclasses import dataclass, asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score

from mer.checkpoint import ModelCard, save_checkpoint, library_versions
from mer.models import CLASSES, create_model
from training.datasets.samm import read_samm


@dataclass
class TrainConfig:
    arch: str = "mernet_cbam"
    size: int = 128
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 16
    seed: int = 0


def load_apex(clips, size, classes):
    x = np.stack([cv2.resize(cv2.imread(str(c.frames[c.apex]), cv2.IMREAD_GRAYSCALE), (size, size)) for c in clips])
    x = torch.from_numpy(x).float().div(255).sub(0.5).div(0.5)[:, None].repeat(1, 3, 1, 1)
    y = torch.tensor([classes.index(c.label) for c in clips])
    return x, y


def augment(x):
    flip = torch.rand(len(x)) < 0.5
    x = x.clone(); x[flip] = x[flip].flip(-1)
    return x * (1 + 0.2 * (torch.rand(len(x), 1, 1, 1) - 0.5)) + 0.2 * (torch.rand(len(x), 1, 1, 1) - 0.5)


def train(x, y, cfg, n_classes):
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch, num_classes=n_classes, input_size=cfg.size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for ep in range(cfg.epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(cfg.batch_size):
            loss = torch.nn.functional.cross_entropy(model(augment(x[idx])), y[idx])
            opt.zero_grad(); loss.backward(); opt.step()
    return model.eval()


def metrics(y, p, n):
    cm = confusion_matrix(y, p, labels=range(n))
    rec = [cm[i, i] / cm[i].sum() for i in range(n) if cm[i].sum()]
    return {"uf1": float(f1_score(y, p, labels=range(n), average="macro", zero_division=0)),
            "uar": float(np.mean(rec)), "acc": float((np.array(y) == np.array(p)).mean()),
            "confusion": cm.tolist()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training")
    p.add_argument("--dataset", default="samm")
    p.add_argument("--dataset-path", "--dataset_path", dest="dataset_path", required=True)
    p.add_argument("--protocol", default="loso", choices=["loso"])
    p.add_argument("--out", required=True)
    p.add_argument("--trained-on", default="")
    for k, v in asdict(TrainConfig()).items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    a = p.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(a, k) for k in asdict(TrainConfig())})
    torch.set_num_threads(2)
    classes = list(CLASSES)
    clips = [c for c in read_samm(a.dataset_path) if c.label in classes]
    x, y = load_apex(clips, cfg.size, classes)
    subj = np.array([c.subject for c in clips])
    ys, ps = [], []
    for s in sorted(set(subj)):
        te = torch.from_numpy(subj == s)
        m = train(x[~te], y[~te], cfg, len(classes))
        with torch.no_grad():
            ps += m(x[te]).argmax(1).tolist()
        ys += y[te].tolist()
        print(f"fold {s}: acc so far {np.mean(np.array(ys) == np.array(ps)):.3f}", flush=True)
    res = metrics(ys, ps, len(classes))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"protocol": "loso", **res}, indent=1))
    final = train(x, y, cfg, len(classes))
    cmd = "python -m training " + shlex.join(sys.argv[1:] if argv is None else argv)
    card = ModelCard(arch=cfg.arch, classes=classes, input_size=(cfg.size, cfg.size), input_mode="gray",
                     trained_on=a.trained_on or f"{a.dataset} at {a.dataset_path}", protocol="loso",
                     metrics={k: round(v, 4) for k, v in res.items() if k != "confusion"},
                     training_command=cmd, versions=library_versions(),
                     notes="A demo, not a clinical or forensic tool.")
    save_checkpoint(final, card, out / "model.safetensors")
    print(json.dumps({k: v for k, v in res.items() if k != "confusion"}))


if __name__ == "__main__":
    main()
