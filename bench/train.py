"""Training throughput, measured in one run on this machine (ratios are what to compare).

    python bench/train.py [--device cpu|cuda|all] [--samples 128] [--epochs 1] [--big-batch 128]

Runs the real training loop (training.train.fit: feed, augmentation, Adam, cross-entropy; on CUDA
AMP, channels_last, pinned non-blocking copies) on random uint8 crops and prints training samples/s
with the whole-batch augmentation on the device (the loop now) against the same loop with the
per-sample torchvision augmentation on the CPU (the loop before), and their ratio; then the
augmentation alone, and the recipe's batch (16 for the seed nets) against --big-batch. Models: the
original seed_cbam (256x256), the micro model mernet_cbam (64x64) and, when registered, the FER2013
mini_xception (64x64 gray).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mer.models import list_models  # noqa: E402
from training.train import BatchAugment, TrainConfig, fit, make_card  # noqa: E402

MODELS = [("seed_cbam", 256), ("mernet_cbam", 64)] + [("mini_xception", 64)] * ("mini_xception" in list_models())


class PerSampleV2:
    """The loop before: torchvision v2 transforms, sample by sample, on the CPU."""

    def __init__(self):
        self.t = v2.Compose([v2.RandomHorizontalFlip(),
                             v2.RandomAffine(degrees=4, translate=(0.03, 0.03), scale=(0.97, 1.03)),
                             v2.ColorJitter(brightness=0.15, contrast=0.15)])

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.t(v) for v in xb.cpu()]).to(xb.device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def samples_per_s(arch, size, device, n, epochs, aug=None, batch_size=None) -> float:
    cfg = TrainConfig(arch=arch, size=size, epochs=1, batch_size=batch_size, progress=False).resolve()
    card = make_card(cfg, [str(i) for i in range(6)], (0.5,) * 3, (0.5,) * 3)
    x = torch.randint(0, 256, (n, card.in_chans, size, size), dtype=torch.uint8)
    y = np.random.default_rng(0).integers(0, 6, n)
    fit(x[:32], y[:32], np.arange(32), cfg, card, device, aug=aug)  # warm-up (cudnn autotune, allocator)
    cfg.epochs = epochs
    sync(device)
    t = time.perf_counter()
    fit(x, y, np.arange(n), cfg, card, device, aug=aug)
    sync(device)
    return n * epochs / (time.perf_counter() - t)


def augment_per_s(size, device, n) -> tuple[float, float]:
    x = torch.rand(n, 3, size, size, device=device)
    res = []
    for aug in (BatchAugment("apex"), PerSampleV2()):
        aug(x[:16])
        sync(device)
        t = time.perf_counter()
        for s in range(0, n, 16):
            aug(x[s:s + 16])
        sync(device)
        res.append(n / (time.perf_counter() - t))
    return res[0], res[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="all", help="cpu, cuda or all (cpu and, when present, cuda)")
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--big-batch", type=int, default=128, help="the larger batch of the batch-size trade-off (0: skip)")
    p.add_argument("--models", default=",".join(f"{a}:{s}" for a, s in MODELS), help="arch:size,...")
    a = p.parse_args()
    models = [(m.split(":")[0], int(m.split(":")[1])) for m in a.models.split(",")]
    devices = ["cpu", "cuda"] if a.device == "all" else [a.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("cuda: no CUDA device on this machine, skipped")
        devices.remove("cuda")
    recipe: dict[tuple[str, str], float] = {}
    for dev in devices:
        d = torch.device(dev)
        name = torch.cuda.get_device_name(0) if dev == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        print(f"== {dev}: {name}; {a.samples} samples x {a.epochs} epoch(s), each arch's recipe batch")
        for arch, size in models:
            new = recipe[dev, arch] = samples_per_s(arch, size, d, a.samples, a.epochs)
            old = samples_per_s(arch, size, d, a.samples, a.epochs, aug=PerSampleV2())
            print(f"{arch:14s} {size}x{size}: batch augmentation on {dev} {new:8.1f} samples/s, per-sample CPU "
                  f"augmentation {old:8.1f} samples/s: ratio {new / old:.2f}x")
            if a.big_batch:
                big = samples_per_s(arch, size, d, a.samples, a.epochs, batch_size=a.big_batch)
                print(f"{'':14s} batch {a.big_batch}: {big:8.1f} samples/s = {big / new:.2f}x the recipe's batch "
                      f"(a different recipe: fewer, larger steps)")
        for size in sorted({s for _, s in models}):
            b, o = augment_per_s(size, d, max(64, a.samples))
            print(f"augmentation alone {size}x{size}: batched {b:9.1f} samples/s, per-sample {o:8.1f}: ratio {b / o:.1f}x")

    if len(devices) == 2:  # issue 12's GPU target: seed_cbam 256x256 >= 15x its CPU samples/s
        for arch, size in models:
            print(f"{arch:14s} {size}x{size}: cuda / cpu = {recipe['cuda', arch] / recipe['cpu', arch]:.1f}x"
                  + ("  (target >= 15)" if arch == "seed_cbam" else ""))


if __name__ == "__main__":
    main()
