"""Core speed figures, measured in one run on this machine (ratios are what to compare).

    python bench/core.py [--device cpu|cuda] [--frames 48]

Prints: MTCNN fps on 640x360 frames at full size and downscaled (ratio), classifier crops/s for
seed_cbam (256x256) and the default mernet_cbam (128x128) (ratio), Grad-CAM overhead (ratio).
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
from mer.models import create_model  # noqa: E402

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
    for arch, size in (("seed_cbam", 256), ("mernet_cbam", 128)):
        m = create_model(arch).to(dev).eval()
        x = torch.randn(64, 3, size, size, device=dev)
        with torch.inference_mode():
            sec = timed(lambda: m(x), 3)
        rates[arch] = 64 / sec
        print(f"classifier {arch} @{size}: {rates[arch]:8.0f} crops/s")
        if arch == "mernet_cbam":
            with GradCAM(m) as cam:
                sec_cam = timed(lambda: cam(x), 3)
            print(f"  Grad-CAM: {64 / sec_cam:8.0f} crops/s; overhead {sec_cam / sec:.2f}x the plain forward")
    print(f"  default / seed_cbam throughput: {rates['mernet_cbam'] / rates['seed_cbam']:.2f}x")


if __name__ == "__main__":
    main()
