"""Training and honest evaluation: folds by protocol, fixed epochs (or early stopping on a
validation split by subject), pooled metrics, artefacts, a final checkpoint with its card."""
from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from tqdm.auto import tqdm

from mer.checkpoint import ModelCard, library_versions, save_checkpoint
from mer.faces import resolve_device
from mer.models import create_model
from mer.report import atomic_write

from . import report
from .datasets import LABEL_SETS, classes_of, load_dataset
from .inputs import build_inputs
from .metrics import pooled_metrics
from .protocols import LEAKY, splits, validation_split

log = logging.getLogger("training")

# the original's settings for its own network; sensible ones for the others
ARCH_DEFAULTS = {
    "seed_cbam": dict(size=256, lr=1e-4, weight_decay=1e-4, batch_size=16, epochs=15, schedule="constant"),
    "seed_cnn": dict(size=256, lr=1e-4, weight_decay=1e-4, batch_size=16, epochs=15, schedule="constant"),
    "mernet_cbam": dict(size=128, lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=30, schedule="cosine"),
    "mernet": dict(size=128, lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=30, schedule="cosine"),
    "vit_tiny": dict(size=128, lr=3e-4, weight_decay=0.05, batch_size=32, epochs=30, schedule="cosine"),
}
FALLBACK = dict(size=128, lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=30, schedule="cosine")


@dataclass
class TrainConfig:
    dataset: str = "samm"
    dataset_path: str = ""
    labels: str = "seed6"
    input: str = "apex"             # apex | frames | flow
    arch: str = "seed_cbam"
    protocol: str = "loso"          # loso | kfold-subject | random-frames (leaky)
    out: str = "runs/run"
    epochs: int | None = None       # None: the arch's default (ARCH_DEFAULTS)
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    size: int | None = None
    schedule: str | None = None     # constant | cosine (per step, to 0)
    color: str = "gray"             # gray | rgb (apex and frames inputs)
    frame_step: int = 1             # frames input: every n-th frame
    flow_third: str = "magnitude"   # flow input: magnitude | strain
    folds: int = 5                  # kfold-subject
    test_size: float = 0.2          # random-frames
    seed: int = 0
    class_weights: bool = False     # inverse-frequency class weights in the loss
    augment: bool = True
    early_stopping: int = 0         # patience in epochs; 0 = fixed epochs
    final: bool = True              # train the final model on all data and save it
    device: str = "auto"
    amp: bool = True                # mixed precision on CUDA
    deterministic: bool = False     # cudnn deterministic instead of benchmark
    threads: int = 0                # torch CPU threads; 0 = all cores
    trained_on: str = ""            # text for the model card; default describes the data
    notes: str = ""
    progress: bool = True
    command: str = ""

    def resolve(self) -> "TrainConfig":
        d = ARCH_DEFAULTS.get(self.arch, FALLBACK)
        return dataclasses.replace(self, **{k: v for k, v in d.items() if getattr(self, k) is None})

    def key(self) -> dict:
        """What must match for a run folder to be resumed."""
        skip = {"out", "progress", "command", "final", "trained_on", "notes", "device", "threads"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def seed_everything(seed: int) -> None:
    random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)


def augmenter(input: str):
    if input == "flow":
        def flow_aug(x):
            if torch.rand(()) < 0.5:
                x = x.flip(-1); x[0] = -x[0]  # mirrored flow: horizontal component changes sign
            dx, dy = (torch.randint(-3, 4, (2,))).tolist()
            return torch.roll(x, (dy, dx), (-2, -1))
        return flow_aug
    t = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=4, translate=(0.03, 0.03), scale=(0.97, 1.03)),
                    v2.ColorJitter(brightness=0.15, contrast=0.15)])
    return t


class Normalizer:
    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def batches(x, idx, bs, aug=None):
    for s in range(0, len(idx), bs):
        xb = x[idx[s:s + bs]]
        if aug is not None:
            xb = xb.float() / 255.0 if xb.dtype == torch.uint8 else xb.clone()
            xb = torch.stack([aug(v) for v in xb])
        yield s, xb


@torch.no_grad()
def predict_probs(model, x, norm, device, bs=128) -> np.ndarray:
    model.eval()
    out = [torch.softmax(model(norm(xb.to(device))).float(), 1).cpu() for _, xb in batches(x, np.arange(len(x)), bs)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def fit(x, y, train_idx, cfg: TrainConfig, n_classes: int, norm, device, val_idx=None, desc="train"):
    model = create_model(cfg.arch, num_classes=n_classes, input_size=cfg.size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(train_idx) // cfg.batch_size)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps)) if cfg.schedule == "cosine"
             else None)
    weight = None
    if cfg.class_weights:
        counts = np.bincount(y[train_idx], minlength=n_classes).astype(float)
        weight = torch.tensor(np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0),
                              dtype=torch.float32, device=device)
    cuda = device.type == "cuda"
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp and amp_dtype == torch.float16)
    aug = augmenter(cfg.input) if cfg.augment else None
    yt = torch.from_numpy(y)
    best, best_state, bad = -1.0, None, 0
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", leave=False, disable=not cfg.progress)
    for epoch in bar:
        model.train()
        perm = train_idx[torch.randperm(len(train_idx)).numpy()]
        total = 0.0
        for s, xb in batches(x, perm, cfg.batch_size, aug):
            if len(xb) < 2:  # BatchNorm cannot train on a single sample
                continue
            yb = yt[perm[s:s + cfg.batch_size]].to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=cuda and cfg.amp):
                loss = F.cross_entropy(model(norm(xb.to(device, non_blocking=True))), yb, weight=weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt); scaler.update()
            if sched is not None:
                sched.step()
            total += loss.item() * len(xb)
        post = {"loss": f"{total / max(1, len(train_idx)):.3f}"}
        if val_idx is not None and len(val_idx):
            p = predict_probs(model, x[val_idx], norm, device).argmax(1)
            score = pooled_metrics(y[val_idx], p, list(range(n_classes)))["uf1"]
            post["val_uf1"] = f"{score:.3f}"
            if score > best:
                best, bad = score, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.early_stopping:
                    break
        bar.set_postfix(post)
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        recalibrate_bn(model, x, train_idx, norm, device, cfg.batch_size)
    return model.eval()


def recalibrate_bn(model, x, idx, norm, device, bs) -> None:
    """BatchNorm running statistics recomputed as an exact average over the (un-augmented)
    training samples with the final weights: the running averages lag behind weights that moved
    a lot in a short training run."""
    loader = (norm(xb) for _, xb in batches(x, idx, max(bs, 32)) if len(xb) > 1)
    torch.optim.swa_utils.update_bn(loader, model, device)


def _norm_stats(cfg: TrainConfig, x: torch.Tensor):
    if cfg.input == "flow":
        s = float(x.float().std()) or 1.0
        return (0.0, 0.0, 0.0), (s, s, s)
    return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def run(cfg: TrainConfig) -> dict:
    cfg = cfg.resolve()
    if cfg.labels not in LABEL_SETS and cfg.dataset != "folder":
        raise ValueError(f"--labels must be one of {', '.join(LABEL_SETS)}, got {cfg.labels!r}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "folds").mkdir(exist_ok=True)
    cfg_file = out / "config.json"
    if cfg_file.is_file():
        old = json.loads(cfg_file.read_text()).get("key")
        if old != json.loads(json.dumps(cfg.key())):
            raise SystemExit(f"{out} holds a run with other settings; use a new --out (or delete it). "
                             f"Differences: {sorted(k for k in cfg.key() if old is None or old.get(k) != cfg.key()[k])}")
    atomic_write(cfg_file, json.dumps({"key": cfg.key(), "config": dataclasses.asdict(cfg)}, indent=1))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cudnn.deterministic = cfg.deterministic

    label_set = cfg.labels if cfg.labels in LABEL_SETS else None  # folder sets may keep their own names
    clips = load_dataset(cfg.dataset, cfg.dataset_path, label_set)
    classes = classes_of(clips, label_set)
    present = sorted({c.label for c in clips}, key=classes.index)
    log.info("%d clips, %d subjects, classes present: %s", len(clips), len({c.group for c in clips}), ", ".join(present))
    samples = build_inputs(clips, classes, cfg.input, cfg.size, cfg.color, cfg.frame_step, cfg.flow_third,
                           cache_dir=out / "cache", progress=cfg.progress)
    mean, std = _norm_stats(cfg, samples.x)
    norm = Normalizer(mean, std)
    folds = splits(cfg.protocol, samples.groups, cfg.folds, cfg.seed, cfg.test_size)
    rows, fold_summ = [], []
    t0 = time.time()
    for k, (name, tr, te) in enumerate(tqdm(folds, desc=f"{cfg.protocol} folds", unit="fold", disable=not cfg.progress)):
        f = out / "folds" / f"{k:03d}.csv"
        if f.is_file():  # resumable: a finished fold is kept
            df = pd.read_csv(f, dtype={"fold": str, "subject": str})
        else:
            seed_everything(cfg.seed * 1000 + k)
            val = None
            fit_idx = tr
            if cfg.early_stopping:
                fit_idx, val = validation_split(tr, samples.groups, cfg.protocol, seed=cfg.seed)
            model = fit(samples.x, samples.y, fit_idx, cfg, len(classes), norm, device, val, desc=f"fold {name}")
            p = predict_probs(model, samples.x[te], norm, device)
            df = pd.DataFrame({"fold": name, "dataset": [clips[i].dataset for i in samples.clip[te]],
                               "subject": [clips[i].subject for i in samples.clip[te]],
                               "clip": [clips[i].clip for i in samples.clip[te]], "frame": samples.frame[te],
                               "true": [classes[i] for i in samples.y[te]],
                               "pred": [classes[i] for i in p.argmax(1)]})
            for j, c in enumerate(classes):
                df[f"p_{c}"] = p[:, j].round(5)
            atomic_write(f, df.to_csv(index=False))
        rows.append(df)
        fold_summ.append({"fold": name, "n": len(df), "acc": float((df.true == df.pred).mean()) if len(df) else 0.0})
    pred = pd.concat(rows, ignore_index=True)
    report.write_predictions(pred, out / "predictions.csv")
    yi = pred.true.map(classes.index).to_numpy(); pi = pred.pred.map(classes.index).to_numpy()
    m = pooled_metrics(yi, pi, classes)
    if cfg.input == "frames":  # also per clip: mean of its frames' probabilities
        g = pred.groupby(["dataset", "subject", "clip"])
        probs = g[[f"p_{c}" for c in classes]].mean().to_numpy()
        truth = g.true.first().map(classes.index).to_numpy()
        cv = pooled_metrics(truth, probs.argmax(1), classes)
        m["clip_vote"] = {k: cv[k] for k in ("uf1", "uar", "acc", "n")}
    leaky = cfg.protocol in LEAKY
    subjects = sorted({c.group for c in clips})
    data_line = (f"{cfg.dataset} ({cfg.dataset_path}): {len(clips)} clips, {len(subjects)} subjects, "
                 f"{len(samples)} samples ({cfg.input})" + (f", {samples.no_face} clips without a detected face" if samples.no_face else ""))
    metrics = {"protocol": cfg.protocol, "protocol_description": report.protocol_line(cfg.protocol, len(folds)),
               "leaky": leaky, "pooled": True, "folds": fold_summ, "classes": classes, "data": data_line,
               "seconds": round(time.time() - t0, 1), **m}
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=1))
    title = f"{cfg.arch} {cfg.input} - {cfg.protocol}{' (LEAKY)' if leaky else ''}: UF1 {m['uf1']:.3f} UAR {m['uar']:.3f}"
    report.confusion_png(m["confusion"], classes, out / "confusion.png", title)
    report.confusion_html(m["confusion"], classes, out / "confusion.html", title)
    d = dataclasses.asdict(cfg)
    report.write_markdown(out / "report.md", d, m, fold_summ, classes, data_line, cfg.command)
    if cfg.final:
        seed_everything(cfg.seed)
        model = fit(samples.x, samples.y, np.arange(len(samples)), cfg, len(classes), norm, device, desc="final model")
        mode = "flow" if cfg.input == "flow" else cfg.color
        summary = {"uf1": round(m["uf1"], 4), "uar": round(m["uar"], 4), "acc": round(m["acc"], 4),
                   "per_class_f1": m["per_class_f1"], "n_test_samples": m["n"], "folds": len(folds)}
        notes = "A demo, not a clinical or forensic tool."
        if leaky:
            notes += " Metrics come from the LEAKY random-frames split and overstate accuracy on new people."
        card = ModelCard(arch=cfg.arch, classes=classes, input_size=(cfg.size, cfg.size), input_mode=mode,
                         mean=mean, std=std, arch_kwargs={"input_size": cfg.size}, in_chans=3,
                         trained_on=cfg.trained_on or data_line,
                         protocol=report.protocol_line(cfg.protocol, len(folds)), metrics=summary,
                         training_command=cfg.command, notes=(notes + " " + cfg.notes).strip(),
                         versions=library_versions())
        save_checkpoint(model.cpu(), card, out / "model.safetensors")
    return metrics
