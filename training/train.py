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
from safetensors.torch import load_file
from tqdm.auto import tqdm

import mer
from mer.checkpoint import ModelCard, library_versions, save_checkpoint
from mer.faces import resolve_device
from mer.models import create_model
from mer.predict import Predictor
from mer.files import atomic_write

from . import report
from .datasets import LABEL_SETS, classes_of, load_dataset
from .inputs import build_inputs, clips_fingerprint
from .metrics import pooled_metrics
from .protocols import LEAKY, splits, validation_split

log = logging.getLogger("training")

# the original's settings for its own network; sensible ones for the others
ARCH_DEFAULTS = {
    "seed_cbam": dict(size=256, lr=1e-4, weight_decay=1e-4, batch_size=16, epochs=15, schedule="constant"),
    "seed_cnn": dict(size=256, lr=1e-4, weight_decay=1e-4, batch_size=16, epochs=15, schedule="constant"),
    "mernet_cbam": dict(size=128, lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=30, schedule="cosine"),
    "mernet": dict(size=128, lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=30, schedule="cosine"),
    "mini_xception": dict(size=64, lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=30, schedule="cosine"),
    "mini_xception_cbam": dict(size=64, lr=1e-3, weight_decay=1e-4, batch_size=32, epochs=30, schedule="cosine"),
    "vit_tiny": dict(size=128, lr=3e-4, weight_decay=0.05, batch_size=32, epochs=30, schedule="cosine"),
}
ARCH_IN_CHANS = {"mini_xception": 1, "mini_xception_cbam": 1}  # one gray channel (the FER2013 contract)
INIT_WEIGHTS = {"fer2013": Path(mer.__file__).resolve().parent / "weights" / "fer2013_mini_xception.safetensors"}
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
    init: str = "scratch"           # scratch | fer2013 | a .safetensors checkpoint: backbone weights, new head
    class_weights: bool = False     # inverse-frequency class weights in the loss
    augment: bool = True
    early_stopping: int = 0         # patience in epochs; 0 = fixed epochs
    final: bool = True              # train the final model on all data and save it
    device: str = "auto"
    amp: bool = True                # mixed precision on CUDA
    deterministic: bool = False     # cudnn deterministic instead of benchmark
    threads: int = 0                # torch CPU threads; 0 = all cores
    cache_dir: str = ""             # model inputs cache; default OUT/cache (runs of one dataset may share one)
    trained_on: str = ""            # text for the model card; default describes the data
    notes: str = ""
    progress: bool = True
    command: str = ""

    def resolve(self) -> "TrainConfig":
        d = ARCH_DEFAULTS.get(self.arch, FALLBACK)
        return dataclasses.replace(self, **{k: v for k, v in d.items() if getattr(self, k) is None})

    def key(self) -> dict:
        """What must match for a run folder to be resumed."""
        skip = {"out", "progress", "command", "final", "trained_on", "notes", "device", "threads", "cache_dir"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def init_source(init: str) -> Path | None:
    """--init -> the checkpoint whose backbone starts the model (None: random initialisation)."""
    if init in ("", "scratch"):
        return None
    path = INIT_WEIGHTS.get(init, Path(init))
    if not path.is_file():
        raise FileNotFoundError(f"--init {init}: no weights at {path}" + (
            "" if init in INIT_WEIGHTS else f" (use scratch, {', '.join(INIT_WEIGHTS)} or a .safetensors file)"))
    return path


def load_backbone(model: torch.nn.Module, card: ModelCard, source: Path) -> dict:
    """Copy every tensor of `source` whose name and shape match `model`, except the classifier:
    the tensors whose shape depends on the number of classes start fresh, and so does anything
    the source does not have (CBAM). Returns what was loaded."""
    own = model.state_dict()
    wider = create_model(card.arch, num_classes=len(card.classes) + 1, in_chans=card.in_chans, **card.arch_kwargs)
    head = {k for k, v in wider.state_dict().items() if k in own and v.shape != own[k].shape}
    state = load_file(str(source))
    take = {k: v for k, v in state.items() if k in own and k not in head and v.shape == own[k].shape
            and not k.endswith("num_batches_tracked")}  # a step counter, not a weight
    if not take:
        raise ValueError(f"--init: no tensor of {source.name} fits {card.arch} (in_chans {card.in_chans}); "
                         f"it holds weights of another architecture")
    model.load_state_dict(take, strict=False)
    return {"loaded": sorted(take), "fresh": sorted(k for k in own if k not in take), "head": sorted(head),
            "unused": sorted(k for k in state if k not in take)}


def seed_everything(seed: int) -> None:
    random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)


class BatchAugment:
    """Whole-batch augmentation where the batch is (the GPU when training on CUDA): one
    `grid_sample` for the whole batch, each sample with its own random draw.

    Images (float 0..1): horizontal flip, small affine (rotation 4 degrees, translation 3 %,
    scale 0.97..1.03, black fill), brightness and contrast 0.85..1.15.
    Flow: mirror, which also negates the horizontal component u, and shifts of up to 3 pixels."""

    def __init__(self, input: str):
        self.flow = input == "flow"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device
        if n == 0:
            return x.float()

        def uniform(a):
            return (torch.rand(n, device=dev) * 2 - 1) * a

        flip = torch.rand(n, device=dev) < 0.5
        f = 1.0 - 2.0 * flip.float()
        theta = torch.zeros(n, 2, 3, device=dev)
        if self.flow:
            shift = torch.randint(-3, 4, (n, 2), device=dev).float()
            theta[:, 0, 0], theta[:, 1, 1] = f, 1.0
            theta[:, 0, 2], theta[:, 1, 2] = 2 * shift[:, 0] / w, 2 * shift[:, 1] / h  # whole pixels
        else:
            a = uniform(4.0) * torch.pi / 180
            s = 1.0 + uniform(0.03)
            cos, sin = torch.cos(a) / s, torch.sin(a) / s
            theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos * f, -sin, sin * f, cos
            theta[:, 0, 2], theta[:, 1, 2] = uniform(0.06), uniform(0.06)  # 3 % of the side, in [-1, 1] units
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.flow:
            return torch.cat([x[:, :1] * f.view(-1, 1, 1, 1), x[:, 1:]], 1)  # mirrored: u changes sign
        x = (x * (1.0 + uniform(0.15)).view(-1, 1, 1, 1)).clamp(0, 1)
        m = x.mean((1, 2, 3), keepdim=True)
        return ((x - m) * (1.0 + uniform(0.15)).view(-1, 1, 1, 1) + m).clamp(0, 1)


class Feeder:
    """Batches of samples on the device. On CUDA the whole (uint8) set is moved once when it is
    small; otherwise each batch is gathered on the CPU into pinned memory and copied without
    blocking."""

    def __init__(self, x: torch.Tensor, device: torch.device, resident_bytes: int = 2 << 30):
        self.device, self.cuda = device, device.type == "cuda"
        self.resident = self.cuda and x.numel() * x.element_size() <= resident_bytes
        self.x = x.to(device) if self.resident else x

    def __call__(self, idx) -> torch.Tensor:
        if self.resident:
            return self.x[torch.as_tensor(idx, device=self.device)]
        xb = self.x[torch.as_tensor(idx)]
        return xb.pin_memory().to(self.device, non_blocking=True) if self.cuda else xb


def as_float(xb: torch.Tensor) -> torch.Tensor:
    return xb.float() / 255.0 if xb.dtype == torch.uint8 else xb.float()


@torch.no_grad()
def predict_probs(predictor: Predictor, x: torch.Tensor, bs: int = 128) -> np.ndarray:
    """Class probabilities through mer.Predictor: the card's normalization and the one softmax."""
    out = [predictor.classify_tensor(predictor.normalize(x[s:s + bs]))[0] for s in range(0, len(x), bs)]
    return np.concatenate(out) if out else np.zeros((0, len(predictor.classes)), np.float32)


@dataclass
class FitInfo:
    epochs: int          # epochs whose weights were kept (the best epoch with early stopping)
    stopped_early: bool = False


def fit(x, y, train_idx, cfg: TrainConfig, card: ModelCard, device, val_idx=None, desc="train",
        aug=None) -> tuple[torch.nn.Module, FitInfo]:
    """Train a fresh model (per `card`: arch, classes, normalization) on x[train_idx]. `aug`:
    a batch -> batch augmentation (default BatchAugment when cfg.augment)."""
    n_classes = len(card.classes)
    cuda = device.type == "cuda"
    model = card.build()
    source = init_source(cfg.init)
    if source is not None:
        load_backbone(model, card, source)
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    predictor = Predictor.from_model(model, card, device=str(device))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(train_idx) // cfg.batch_size)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps)) if cfg.schedule == "cosine"
             else None)
    weight = None
    if cfg.class_weights:
        counts = np.bincount(y[train_idx], minlength=n_classes).astype(float)
        weight = torch.tensor(np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0),
                              dtype=torch.float32, device=device)
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp and amp_dtype == torch.float16)
    if aug is None and cfg.augment:
        aug = BatchAugment(cfg.input)
    feed = Feeder(x, device)
    yt = torch.from_numpy(y).to(device)
    best, best_state, best_epoch, bad = -1.0, None, cfg.epochs, 0
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", leave=False, disable=not cfg.progress)
    for epoch in bar:
        model.train()
        perm = train_idx[torch.randperm(len(train_idx)).numpy()]
        total = torch.zeros((), device=device)
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single sample
                continue
            xb = as_float(feed(idx))
            if aug is not None:
                xb = aug(xb)
            xb = predictor.normalize(xb)
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = yt[torch.as_tensor(idx, device=device)]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=cuda and cfg.amp):
                loss = F.cross_entropy(model(xb), yb, weight=weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt); scaler.update()
            if sched is not None:
                sched.step()
            total += loss.detach().float() * len(idx)
        post = {"loss": f"{float(total) / max(1, len(train_idx)):.3f}"}  # one sync per epoch
        if val_idx is not None and len(val_idx):
            p = predict_probs(predictor, x[val_idx]).argmax(1)
            score = pooled_metrics(y[val_idx], p, list(range(n_classes)))["uf1"]
            post["val_uf1"] = f"{score:.3f}"
            if score > best:
                best, bad, best_epoch = score, 0, epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.early_stopping:
                    break
        bar.set_postfix(post)
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        recalibrate_bn(model, x, train_idx, predictor, device, cfg.batch_size)
    return model.eval(), FitInfo(best_epoch, best_state is not None)


def recalibrate_bn(model, x, idx, predictor: Predictor, device, bs) -> None:
    """BatchNorm running statistics recomputed as an exact average over the (un-augmented)
    training samples with the final weights: the running averages lag behind weights that moved
    a lot in a short training run."""
    bs = max(bs, 32)
    loader = (predictor.normalize(x[idx[s:s + bs]]) for s in range(0, len(idx), bs) if len(idx[s:s + bs]) > 1)
    torch.optim.swa_utils.update_bn(loader, model, device)


def norm_stats(cfg: TrainConfig, x: torch.Tensor, channels: int = 3):
    """Input normalization. Images: 0.5/0.5. Flow: mean 0 and the std of `x`, which must hold the
    training samples of the fold only (the test subjects' flow never enters it)."""
    if cfg.input == "flow":
        s = (round(float(x.float().std()), 6) if len(x) > 1 else 0.0) or 1.0
        return (0.0,) * channels, (s,) * channels
    return (0.5,) * channels, (0.5,) * channels


def in_chans_of(cfg: TrainConfig) -> int:
    return ARCH_IN_CHANS.get(cfg.arch, 3)


def make_card(cfg: TrainConfig, classes: list[str], mean, std, **kw) -> ModelCard:
    mode = "flow" if cfg.input == "flow" else cfg.color
    c = in_chans_of(cfg)
    return ModelCard(arch=cfg.arch, classes=list(classes), input_size=(cfg.size, cfg.size), input_mode=mode,
                     mean=tuple(mean)[:c], std=tuple(std)[:c], arch_kwargs={"input_size": cfg.size}, in_chans=c, **kw)


def clip_level(pred: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Frame predictions -> one row per clip: the mean of its frames' probabilities, argmax."""
    cols = [f"p_{c}" for c in classes]
    g = pred.groupby(["fold", "dataset", "subject", "clip"], sort=False)
    out = g[cols].mean().round(5).reset_index()
    out.insert(4, "frames", g.size().to_numpy())
    out.insert(5, "true", g.true.first().to_numpy())
    out.insert(6, "pred", [classes[i] for i in out[cols].to_numpy().argmax(1)])
    return out


def evaluate(pred: pd.DataFrame, classes: list[str], input: str) -> tuple[dict, pd.DataFrame | None]:
    """Pooled metrics over all folds, always per clip (the headline). For `frames` input the
    frames' probabilities are averaged per clip first; frame-level scores go beside, labelled."""
    def score(df):
        return pooled_metrics(df.true.map(classes.index).to_numpy(), df.pred.map(classes.index).to_numpy(), classes)
    if input != "frames":
        return {"unit": "clip", **score(pred)}, None
    clips = clip_level(pred, classes)
    fm = score(pred)
    frame_level = {k: fm[k] for k in ("uf1", "uar", "acc", "n", "per_class_f1")}
    return {"unit": "clip", **score(clips), "frame_level": frame_level}, clips


def check_run_folder(out: Path, cfg: TrainConfig, fingerprint: dict) -> None:
    """A run folder is resumed only with the same settings and the same clips."""
    cfg_file = out / "config.json"
    if not cfg_file.is_file():
        return
    saved = json.loads(cfg_file.read_text())
    old = saved.get("key")
    if old != json.loads(json.dumps(cfg.key())):
        raise ValueError(f"{out} holds a run with other settings; use a new --out (or delete it). "
                         f"Differences: {sorted(k for k in cfg.key() if old is None or old.get(k) != cfg.key()[k])}")
    was = saved.get("clips")
    if was and was["sha1"] != fingerprint["sha1"] and any((out / "folds").glob("*.csv")):
        raise ValueError(f"the dataset changed since {out} was started ({was['n']} clips of {was['subjects']} "
                         f"subjects then, {fingerprint['n']} of {fingerprint['subjects']} now, or their frames "
                         f"changed): its finished folds are of the old clips. Use a new --out, or delete "
                         f"{out / 'folds'} to redo every fold.")


def final_recipe(cfg: TrainConfig, infos: list[dict]) -> tuple[TrainConfig, str]:
    """The final model's recipe: the folds' one; with early stopping (which needs a validation
    split the final model does not have), fixed epochs = the median of the folds' best epochs."""
    if not cfg.early_stopping:
        return cfg, f"the same recipe as the folds ({cfg.epochs} epochs)"
    best = [int(i["epochs"]) for i in infos if i.get("epochs")]
    n = max(1, int(np.median(best))) if best else cfg.epochs
    recipe = (f"not the folds' recipe: the folds stopped early on a validation split by subject "
              f"(best epochs {', '.join(map(str, best))}); these weights were trained for a fixed {n} epochs "
              f"(their median) on all the data, without a validation split")
    return dataclasses.replace(cfg, epochs=n, early_stopping=0), recipe


def run(cfg: TrainConfig) -> dict:
    cfg = cfg.resolve()
    if cfg.labels not in LABEL_SETS and cfg.dataset != "folder":
        raise ValueError(f"--labels must be one of {', '.join(LABEL_SETS)}, got {cfg.labels!r}")
    if in_chans_of(cfg) == 1 and (cfg.input == "flow" or cfg.color != "gray"):
        raise ValueError(f"{cfg.arch} takes one gray channel: use --input apex or frames with --color gray")
    init_source(cfg.init)  # a missing --init file is reported before any work
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cudnn.deterministic = cfg.deterministic

    label_set = cfg.labels if cfg.labels in LABEL_SETS else None  # folder sets may keep their own names
    clips = load_dataset(cfg.dataset, cfg.dataset_path, label_set)
    fingerprint = clips_fingerprint(clips)
    check_run_folder(out, cfg, fingerprint)
    (out / "folds").mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.json", json.dumps({"key": cfg.key(), "clips": fingerprint,
                                                  "config": dataclasses.asdict(cfg)}, indent=1))
    classes = classes_of(clips, label_set)
    present = sorted({c.label for c in clips}, key=classes.index)
    if init_source(cfg.init) is not None:  # an --init that does not fit the arch fails before any work
        probe = make_card(cfg, classes, (0.5,) * 3, (0.5,) * 3)
        got = load_backbone(probe.build(), probe, init_source(cfg.init))
        log.info("--init %s: %d tensors loaded, %d fresh (classifier: %s)", cfg.init, len(got["loaded"]),
                 len(got["fresh"]), ", ".join(got["head"]))
    log.info("%d clips, %d subjects, classes present: %s", len(clips), len({c.group for c in clips}), ", ".join(present))
    samples = build_inputs(clips, classes, cfg.input, cfg.size, cfg.color, cfg.frame_step, cfg.flow_third,
                           cache_dir=cfg.cache_dir or out / "cache", progress=cfg.progress)
    if in_chans_of(cfg) < samples.x.shape[1]:  # gray replicated to 3 channels -> the model's one
        samples.x = samples.x[:, :in_chans_of(cfg)].contiguous()
    folds = splits(cfg.protocol, samples.groups, cfg.folds, cfg.seed, cfg.test_size)
    rows, fold_summ, infos = [], [], []
    t0 = time.time()
    for k, (name, tr, te) in enumerate(tqdm(folds, desc=f"{cfg.protocol} folds", unit="fold", disable=not cfg.progress)):
        f, fj = out / "folds" / f"{k:03d}.csv", out / "folds" / f"{k:03d}.json"
        if f.is_file():  # resumable: a finished fold is kept
            df = pd.read_csv(f, dtype={"fold": str, "subject": str, "clip": str})
            info = json.loads(fj.read_text()) if fj.is_file() else {}
        else:
            seed_everything(cfg.seed * 1000 + k)
            val = None
            fit_idx = tr
            if cfg.early_stopping:
                fit_idx, val = validation_split(tr, samples.groups, cfg.protocol, seed=cfg.seed)
            mean, std = norm_stats(cfg, samples.x[tr])  # this fold's training subjects only
            card = make_card(cfg, classes, mean, std)
            model, fi = fit(samples.x, samples.y, fit_idx, cfg, card, device, val, desc=f"fold {name}")
            p = predict_probs(Predictor.from_model(model, card, device=str(device)), samples.x[te])
            df = pd.DataFrame({"fold": name, "dataset": [clips[i].dataset for i in samples.clip[te]],
                               "subject": [clips[i].subject for i in samples.clip[te]],
                               "clip": [clips[i].clip for i in samples.clip[te]], "frame": samples.frame[te],
                               "true": [classes[i] for i in samples.y[te]],
                               "pred": [classes[i] for i in p.argmax(1)]})
            for j, c in enumerate(classes):
                df[f"p_{c}"] = p[:, j].round(5)
            info = {"fold": name, "train_samples": len(fit_idx), "epochs": fi.epochs,
                    "stopped_early": fi.stopped_early, "mean": list(mean), "std": list(std)}
            atomic_write(fj, json.dumps(info, indent=1))
            atomic_write(f, df.to_csv(index=False))  # last: its presence marks the fold finished
        rows.append(df)
        infos.append(info)
        fold_summ.append({"fold": name, "n": len(df), "acc": float((df.true == df.pred).mean()) if len(df) else 0.0,
                          **{k: info[k] for k in ("epochs", "std") if k in info}})
    pred = pd.concat(rows, ignore_index=True)
    report.write_predictions(pred, out / "predictions.csv")
    m, per_clip = evaluate(pred, classes, cfg.input)
    if per_clip is not None:
        report.write_predictions(per_clip, out / "clip_predictions.csv")
    leaky = cfg.protocol in LEAKY
    subjects = sorted({c.group for c in clips})
    data_line = (f"{cfg.dataset} ({cfg.dataset_path}): {len(clips)} clips, {len(subjects)} subjects, "
                 f"{len(samples)} samples ({cfg.input})" + (f", {samples.no_face} clips without a detected face" if samples.no_face else ""))
    metrics = {"protocol": cfg.protocol, "protocol_description": report.protocol_line(cfg.protocol, len(folds)),
               "leaky": leaky, "pooled": True, "folds": fold_summ, "classes": classes, "data": data_line,
               "seconds": round(time.time() - t0, 1), **m}
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=1))
    title = (f"{cfg.arch} {cfg.input} - {cfg.protocol}{' (LEAKY)' if leaky else ''}: UF1 {m['uf1']:.3f} "
             f"UAR {m['uar']:.3f}{' per clip' if cfg.input == 'frames' else ''}")
    report.confusion_png(m["confusion"], classes, out / "confusion.png", title)
    report.confusion_html(m["confusion"], classes, out / "confusion.html", title)
    d = dataclasses.asdict(cfg)
    report.write_markdown(out / "report.md", d, m, fold_summ, classes, data_line, cfg.command)
    if cfg.final:
        fcfg, recipe = final_recipe(cfg, infos)
        seed_everything(cfg.seed)
        mean, std = norm_stats(cfg, samples.x)
        summary = {"uf1": round(m["uf1"], 4), "uar": round(m["uar"], 4), "acc": round(m["acc"], 4),
                   "per_class_f1": m["per_class_f1"], "unit": m["unit"], "n_test_clips": m["n"], "folds": len(folds)}
        if "frame_level" in m:
            summary["frame_level"] = {k: round(m["frame_level"][k], 4) for k in ("uf1", "uar", "acc")}
        notes = "A demo, not a clinical or forensic tool."
        if init_source(cfg.init) is not None:
            notes += (f" Started from the {cfg.init} weights ({init_source(cfg.init).name}): every backbone tensor "
                      f"that fits, a new classifier for these classes (fresh CBAM where the source has none).")
        if leaky:
            notes += " Metrics come from the LEAKY random-frames split and overstate accuracy on new people."
        where = (f"These weights were trained on all {len(subjects)} subjects ({len(clips)} clips) after the "
                 f"evaluation, with {recipe}. The metrics are of the {len(folds)} fold models, each tested "
                 f"on samples it was not trained on; no test score exists for these weights themselves.")
        card = make_card(cfg, classes, mean, std, trained_on=cfg.trained_on or data_line,
                         protocol=report.protocol_line(cfg.protocol, len(folds)), metrics=summary,
                         training_command=cfg.command, notes=" ".join(t for t in (notes, where, cfg.notes) if t),
                         versions=library_versions())
        model, _ = fit(samples.x, samples.y, np.arange(len(samples)), fcfg, card, device, desc="final model")
        save_checkpoint(model.cpu().to(memory_format=torch.contiguous_format), card, out / "model.safetensors")
    return metrics
