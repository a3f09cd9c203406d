"""Core speed figures, measured in one run on this machine (ratios are what to compare).

    python bench/core.py [--device cpu|cuda] [--frames 48]

Prints: MTCNN fps on 640x360 frames at full size and downscaled (ratio); classifier crops/s for
seed_cbam (256x256, the baseline), mernet_cbam (128x128), the shipped micro model (mernet_cbam 64x64)
and the default FER2013 macro model (mini_xception 64x64 gray), each as a ratio to seed_cbam;
Grad-CAM overhead (ratio).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mer.faces import DetectorConfig, FaceDetector, resolve_device  # noqa: E402
from mer.gradcam import GradCAM  # noqa: E402
from mer.checkpoint import load_checkpoint  # noqa: E402
from mer.models import create_model  # noqa: E402
from mer.predict import default_checkpoint, micro_checkpoint  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def frames_640x360(n: int) -> np.ndarray:
    clip = MEDIA / "WolfgangLanger_Pexels.mp4"
    if clip.is_file():
        import decord
        vr = decord.VideoReader(str(clip))
        return vr.get_batch(list(range(0, min(n * 3, len(vr)), 3))[:n]).asnumpy()
    print("(no ../shared/media: using synthetic frames without faces)")
    return np.random.default_rng(0).integers(0, 255, (n, 360, 640, 3), dtype=np.uint8)


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--frames", type=int, default=48)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(f"device: {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    frames = frames_640x360(args.frames)
    fps = {}
    for side in (640, 320):
        det = FaceDetector(DetectorConfig(max_side=side), device=dev)
        sec = timed(lambda: det.detect(frames), 1)
        fps[side] = len(frames) / sec
        print(f"MTCNN {'full size 640x360' if side == 640 else 'downscaled to 320x180'}: {fps[side]:7.1f} fps")
    print(f"  downscaled / full-size speed-up: {fps[320] / fps[640]:.2f}x")

    rates = {}
    models = [("seed_cbam", create_model("seed_cbam"), 3, 256),
              ("mernet_cbam", create_model("mernet_cbam"), 3, 128)]
    for label, path in (("micro model", micro_checkpoint()), ("default (FER2013 macro)", default_checkpoint())):
        m, card = load_checkpoint(path)
        models.append((f"{label} {card.arch}", m, card.in_chans, card.input_size[0]))
    for name, m, chans, size in models:
        m = m.to(dev).eval()
        x = torch.randn(64, chans, size, size, device=dev)
        with torch.inference_mode():
            sec = timed(lambda: m(x), 3)
        rates[name] = 64 / sec
        print(f"classifier {name} @{size}: {rates[name]:8.0f} crops/s "
              f"({rates[name] / rates['seed_cbam']:.2f}x seed_cbam)")
        if name in ("mernet_cbam", models[-1][0]):
            with GradCAM(m) as cam:
                sec_cam = timed(lambda: cam(x), 3)
            print(f"  Grad-CAM: {64 / sec_cam:8.0f} crops/s; overhead {sec_cam / sec:.2f}x the plain forward")
    print(f"  mernet_cbam / seed_cbam throughput: {rates['mernet_cbam'] / rates['seed_cbam']:.2f}x")
    print(f"  default macro / micro model throughput: {rates[models[-1][0]] / rates[models[-2][0]]:.2f}x")

if __name__ == "__main__":
    main()
