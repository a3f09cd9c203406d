"""App speed, measured through the real server (python app.py in a subprocess + gradio_client):

    python bench/app.py [--n 30] [--photo PATH] [--seconds 10]

Prints start-up time (process start -> page served), p50/p95 latency of /predict_image with and
without Grad-CAM and of /live_frame (the webcam tab's per-frame step, one client), and /analyze_video wall time as a multiple of the clip's duration for a generated
640x360 25 fps clip of the public-domain astronaut (target: a 10 s clip in under 10 s on CPU,
i.e. ratio < 1), plus the ratio with the in-process mer.video.analyze_video alone (no upload,
preview encoding or CSV) in the same run."""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_clip(path: Path, seconds: float, fps: float = 25.0, size=(640, 360)) -> Path:
    from mer.encode import write_h264
    from mer.images import read_image
    img = read_image(ROOT / "examples" / "astronaut.jpg")
    tile = cv2.resize(img, (size[1], size[1]))

    def frames():
        for i in range(int(seconds * fps)):
            canvas = np.full((size[1], size[0], 3), 40, np.uint8)
            dx = int(size[0] / 2 - size[1] / 2 + 20 * np.sin(i / fps))
            canvas[:, dx:dx + size[1]] = tile
            yield canvas
    return write_h264(frames(), path, fps)


def checkpoint(tmp: Path) -> Path:
    from mer.predict import DEFAULT_CHECKPOINT
    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT
    import torch
    import mer
    torch.manual_seed(0)
    card = mer.ModelCard(arch="mernet_cbam", classes=list(mer.CLASSES), input_size=(128, 128),
                         input_mode="gray", trained_on="nothing (random init, bench only)")
    print("default checkpoint missing: timing a random-init mernet_cbam (same cost)")
    return mer.save_checkpoint(mer.create_model("mernet_cbam"), card, tmp / "untrained.safetensors")


def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="requests per image setting")
    ap.add_argument("--photo", default=str(ROOT / "examples" / "astronaut.jpg"))
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    from gradio_client import Client, handle_file

    tmp = Path(tempfile.mkdtemp(prefix="mer-bench-app-"))
    ckpt = checkpoint(tmp)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "MER_CHECKPOINT": str(ckpt),
           "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 180:
                    raise SystemExit("app.py did not start")
                time.sleep(0.2)
        startup = time.perf_counter() - t0
        print(f"start-up (python app.py -> page served): {startup:.1f} s")
        c = Client(url, verbose=False)
        for cam in (False, True):
            c.predict(handle_file(args.photo), cam, api_name="/predict_image")  # warm-up
            lat = []
            for _ in range(args.n):
                t = time.perf_counter()
                c.predict(handle_file(args.photo), cam, api_name="/predict_image")
                lat.append(time.perf_counter() - t)
            print(f"/predict_image gradcam={cam!s:5}: p50 {pct(lat, 50):6.0f} ms  p95 {pct(lat, 95):6.0f} ms"
                  f"  (n={args.n}, {Path(args.photo).name})")
        lat = []
        for k in range(args.n + 1):
            t = time.perf_counter()
            c.predict(handle_file(args.photo), api_name="/live_frame")
            if k:  # the first call builds the live detector
                lat.append(time.perf_counter() - t)
        print(f"/live_frame                 : p50 {pct(lat, 50):6.0f} ms  p95 {pct(lat, 95):6.0f} ms"
              f"  (n={args.n}, {Path(args.photo).name}; a webcam stream sends one every MER_LIVE_EVERY s)")
        clip = make_clip(tmp / "clip10s.mp4", args.seconds)
        t = time.perf_counter()
        summary = c.predict(handle_file(str(clip)), api_name="/analyze_video")[0]
        api_s = time.perf_counter() - t
        print(f"/analyze_video {args.seconds:g} s 640x360 clip: {api_s:.1f} s = {api_s / args.seconds:.2f} x "
              f"clip duration (upload + analysis + H.264 preview + CSV) [{summary.split(';')[0]}]")
    finally:
        proc.terminate()
        proc.wait(30)
    from mer.predict import Predictor
    from mer.video import analyze_video
    from app import AppSettings
    vs = AppSettings().video_settings()  # as the app: detect_every, limits, isolated decoder child
    pred = Predictor(ckpt)
    # Run it in a worker thread, as gradio does: on a busy 2-core machine the main thread's 2-way
    # OpenMP pool was measured ~10x slower than a worker thread's (spin-wait contention).
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as ex:
        ex.submit(analyze_video, clip, pred, vs).result()  # warm-up
        t = time.perf_counter()
        ex.submit(analyze_video, clip, pred, vs).result()
        core_s = time.perf_counter() - t
    print(f"mer.video.analyze_video alone (detect_every={vs.detect_every}, isolated decoder, as the app): "
          f"{core_s:.1f} s = {core_s / args.seconds:.2f} x clip duration")

if __name__ == "__main__":
    main()
