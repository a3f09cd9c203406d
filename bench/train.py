"""Training throughput, measured in one run on this machine (ratios are what to compare).

    python bench/train.py [--device cpu|cuda|all] [--samples 256] [--epochs 2]

Runs the real training loop (training.train.fit: augmentation, Adam, cross-entropy; AMP on CUDA)
on random uint8 crops and prints training samples/s for the original seed_cbam (256x256) and the
shipped micro model (mer/weights/micro_synth.json: mernet_cbam, 64x64), and their ratio; on every device asked for that is present.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.train import Normalizer, TrainConfig, fit  # noqa: E402

DEFAULT_CARD = json.loads((Path(__file__).resolve().parents[1] / "mer" / "weights" / "micro_synth.json").read_text())
MODELS = [("seed_cbam", 256), (DEFAULT_CARD["arch"], DEFAULT_CARD["input_size"][0])]  # the original vs the shipped micro model


def samples_per_s(arch: str, size: int, device: torch.device, n: int, epochs: int) -> float:
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    y = np.random.default_rng(0).integers(0, 6, n)
    cfg = TrainConfig(arch=arch, size=size, epochs=1, progress=False).resolve()
    norm = Normalizer((0.5,) * 3, (0.5,) * 3)
    fit(x[:64], y[:64], np.arange(64), cfg, 6, norm, device)  # warm-up (cudnn autotune, allocator)
    cfg.epochs = epochs
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fit(x, y, np.arange(n), cfg, 6, norm, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n * epochs / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="all", help="cpu, cuda or all (cpu and, when present, cuda)")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    devices = ["cpu", "cuda"] if a.device == "all" else [a.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("cuda: no CUDA device on this machine, skipped")
        devices.remove("cuda")
    for dev in devices:
        d = torch.device(dev)
        name = torch.cuda.get_device_name(0) if dev == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        res = {arch: samples_per_s(arch, size, d, a.samples, a.epochs) for arch, size in MODELS}
        for arch, size in MODELS:
            print(f"{dev:4s} {name}: {arch:12s} {size}x{size}  {res[arch]:8.1f} training samples/s")
        (a0, _), (a1, _) = MODELS
        print(f"{dev:4s} ratio default ({a1}) / {a0}: {res[a1] / res[a0]:.2f}x")


if __name__ == "__main__":
    main()
