"""Batch speed and memory, measured in one run on this machine (compare the ratios).

    python bench/batch.py [--device cpu|cuda] [--checkpoint P] [--detect-every 1] [--long-minutes 10]
                          [--repeat 2] [--fer-python /tmp/tfvenv/bin/python] [--skip-fps] [--skip-memory]
                          [--ray] [--skip-devices]

The issue's three targets, each a ratio of two whole measurements taken in this run (alternated
--repeat times on a shared machine; the best of each is compared):
- start-up: the whole `python -m batch` on 12 generated 72-frame clips vs one 864-frame clip
  (the same frames): target <= 1.25.
- vs the peer `fer` package: the whole `python -m batch` on WolfgangLanger_Pexels.mp4 vs fer's
  Video.analyze (FER(mtcnn=True), no frame/video saving) in its own Python (--fer-python, a venv
  with fer==25.10.3 + tensorflow-cpu + 'setuptools<81'; skipped with a note if absent), both as
  frames per second of the whole process: target >= 2.
- peak memory (ru_maxrss of a fresh process set up as a batch worker) of a 10-minute vs a
  10-second generated clip: target <= 1.2.
- face mesh + AU proxies (VideoSettings.aus, on by default): the full pipeline's fps with them
  on vs off on the first clip: target >= 0.75; and the mesh nets' crops/s.
- where CUDA is available: the whole `python -m batch` on 3 copies of WolfgangLanger_Pexels.mp4
  with --device cuda vs --device cpu on the same machine: target >= 8.

On the real 472-frame WolfgangLanger clip (../shared/media) and a generated 640x360 clip it prints:
decode-only fps (the pipeline's decode path, mer.decode.open_source: decord's index, OpenCV's
frames), decode + face detection fps (downscaled, as the pipeline does it), the full
pipeline fps (mer.video.analyze_video: decode, detect, track, classify, motion, spotting), and a
naive baseline measured in the same run: full-size MTCNN on one frame at a time plus per-face
classification (what the `fer` package's Video.analyze does). Targets: full / (decode + detection)
>= 0.60; full >= 2x the naive baseline. --ray adds throughput with 1 vs 2 Ray workers.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEDIA = Path(os.environ.get("MER_MEDIA", ROOT.parent / "shared" / "media"))  # as the tests


def predictor_for(checkpoint: str | None, device: str, tmp: Path):
    from mer.predict import DEFAULT_CHECKPOINT, Predictor
    if checkpoint is None and not DEFAULT_CHECKPOINT.is_file():
        import torch
        import mer
        torch.manual_seed(0)
        print("(no default checkpoint yet: timing a random-init mernet_cbam, the default's architecture)")
        card = mer.ModelCard(arch="mernet_cbam", classes=list(mer.CLASSES), input_size=(128, 128), input_mode="gray")
        checkpoint = mer.save_checkpoint(mer.create_model("mernet_cbam"), card, tmp / "bench.safetensors")
    return Predictor(checkpoint, device=device)


def decode_only(path, chunk) -> float:
    """The pipeline's own decode path (mer.decode.open_source: decord's index, OpenCV's frames, in
    this process as the batch workers run it), nothing else."""
    from mer.decode import open_source
    t, n = time.perf_counter(), 0
    with open_source(path, chunk) as src:
        for c in src.chunks():
            n += len(c.index)
    return n / (time.perf_counter() - t)


def decode_detect(path, detector, every: int, chunk) -> float:
    """The same decode, plus MTCNN on every `every`-th frame (and the last), as mer.video.Detect."""
    from mer.decode import open_source
    t, n = time.perf_counter(), 0
    with open_source(path, chunk) as src:
        last = src.info.n_frames - 1
        for c in src.chunks():
            keep = [k for k, i in enumerate(c.index) if i % every == 0 or i == last]
            detector.detect(c.frames[keep])
            n += len(c.index)
    return n / (time.perf_counter() - t)


def naive(path, predictor, max_frames=120) -> float:
    """fer-style: every frame decoded, full-size MTCNN on it alone, its faces classified."""
    from mer.faces import DetectorConfig, FaceDetector
    from mer.video import open_video
    det = FaceDetector(DetectorConfig(max_side=0), device=predictor.device)
    vr = open_video(path)
    n = min(len(vr), max_frames)
    t = time.perf_counter()
    for i in range(n):
        frame = vr[i].asnumpy()
        faces = det.detect([frame])[0]
        predictor.classify([predictor.crop(frame, f) for f in faces])
    return n / (time.perf_counter() - t)


def timed(path, predictor, settings) -> tuple[float, float, float]:
    """Whole analyze_video: (fps, process CPU ms per frame (user + system), of it system)."""
    from mer.video import analyze_video
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    n = analyze_video(path, predictor, settings).info["n_frames"]
    w, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return n / w, 1000 * cpu / n, 1000 * (r1.ru_stime - r0.ru_stime) / n


def full(path, predictor, settings) -> float:
    return timed(path, predictor, settings)[0]


def mem_child(path: str, checkpoint: str, device: str, every: int, chunk: int) -> None:
    """What a batch worker does for one video (load, analyse, write the reports)."""
    from dataclasses import asdict
    from batch.runner import Job, analyze_one
    from mer.video import VideoSettings
    out = tempfile.mkdtemp(prefix="mer-bench-mem-")
    job = Job(checkpoint=checkpoint, device=device, settings=asdict(VideoSettings(detect_every=every, chunk_size=chunk)),
              settings_hash="", threads=0)
    import torch
    job.threads = torch.get_num_threads()
    row = analyze_one(path, Path(path).name, out, job)
    print(json.dumps({"frames": row["frames"], "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_memory(path: Path, checkpoint: str, device: str, every: int, chunk: int = 64) -> dict:
    import os
    from batch.runner import WORKER_ENV
    env = {**WORKER_ENV, **os.environ}  # as the batch workers
    out = subprocess.run([sys.executable, __file__, "--mem-child", str(path), "--checkpoint", checkpoint,
                          "--device", device, "--detect-every", str(every), "--chunk-size", str(chunk)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_batch_cli(folder: Path, out: Path, checkpoint: str | None, device: str, every: int) -> float:
    """Seconds for the whole `python -m batch` command (start-up included), fresh OUT."""
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "batch", str(folder), "--out", str(out), "--device", device,
           "--detect-every", str(every)] + (["--checkpoint", checkpoint] if checkpoint else [])
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    secs = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"python -m batch failed (exit {r.returncode}): {r.stderr[-800:]}")
    return secs


def startup_ratio(tmp: Path, photo: Path, checkpoint, device, every, repeat) -> None:
    from batch.synth import make_face_clip
    many, one = tmp / "12x72", tmp / "1x864"
    many.mkdir(exist_ok=True)
    one.mkdir(exist_ok=True)
    for k in range(12):  # 72 frames at 25 fps each, the same generator as the long clip
        make_face_clip(many / f"clip{k:02d}.mp4", [photo], 72 / 25)
    make_face_clip(one / "long.mp4", [photo], 864 / 25)
    t_many, t_one = [], []
    for _ in range(repeat):  # alternated: both see the same machine load
        t_one.append(run_batch_cli(one, tmp / "out-1x864", checkpoint, device, every))
        t_many.append(run_batch_cli(many, tmp / "out-12x72", checkpoint, device, every))
    print(f"\nstart-up: whole `python -m batch`, 12 x 72-frame clips {min(t_many):.1f} s vs one 864-frame clip "
          f"{min(t_one):.1f} s (best of {repeat}; all: {[round(x, 1) for x in t_many]} / {[round(x, 1) for x in t_one]})")
    print(f"  12 x 72 / 1 x 864 = {min(t_many) / min(t_one):.2f}  (target <= 1.25)")


FER_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
sys.modules["triton"] = None  # torch without triton: loading triton after TensorFlow segfaults (fer needs neither)
from fer.classes import Video
from fer.fer import FER
det = FER(mtcnn=True)
t1 = time.perf_counter()
res = Video(sys.argv[1], outdir=sys.argv[2]).analyze(det, display=False, output="pandas", save_frames=False,
                                                     save_video=False, annotate_frames=False, zip_images=False)
t2 = time.perf_counter()
print(json.dumps({"rows": len(res), "load_s": t1 - t0, "analyze_s": t2 - t1}))
"""


def linked_folder(folder: Path, clip: Path, names: list[str]) -> int:
    """A folder of symlinks to `clip` under `names` (for whole `python -m batch` runs) -> the
    number of frames in it."""
    import cv2
    folder.mkdir(exist_ok=True)
    for name in names:
        if not (folder / name).exists():
            (folder / name).symlink_to(clip)
    cap = cv2.VideoCapture(str(clip))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n * len(names)


def fer_ratio(tmp: Path, clip: Path, fer_python: str | None, checkpoint, device, every, repeat) -> None:
    folder = tmp / "wolf"
    n = linked_folder(folder, clip, [clip.name])
    if not fer_python or not Path(fer_python).is_file():
        ours = n / run_batch_cli(folder, tmp / "out-wolf", checkpoint, device, every)
        print(f"\nvs fer: skipped (no Python with fer==25.10.3 + tensorflow-cpu at {fer_python}; make one with "
              f"python3.11 -m venv /tmp/ferenv && /tmp/ferenv/bin/pip install fer==25.10.3 tensorflow-cpu "
              f"'setuptools<81' and pass --fer-python /tmp/ferenv/bin/python); whole `python -m batch` {ours:.1f} fps")
        return
    script = tmp / "fer_run.py"
    script.write_text(FER_SCRIPT)
    ours, theirs, inner = [], [], []
    for _ in range(repeat):
        ours.append(n / run_batch_cli(folder, tmp / "out-wolf", checkpoint, device, every))
        t = time.perf_counter()
        r = subprocess.run([fer_python, str(script), str(clip), str(tmp / "fer-out")], cwd=tmp, capture_output=True,
                           text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "" if device == "cpu" else "0",
                                           "TF_CPP_MIN_LOG_LEVEL": "2"})
        secs = time.perf_counter() - t
        if r.returncode != 0:
            print(f"\nvs fer: fer failed (exit {r.returncode}): {r.stderr[-600:]}")
            return
        theirs.append(n / secs)
        inner.append(n / json.loads(r.stdout.strip().splitlines()[-1])["analyze_s"])
    print(f"\nvs fer on {clip.name} ({n} frames), frames per second of the whole process (best of {repeat}):")
    print(f"  python -m batch {max(ours):.1f} fps {[round(x, 1) for x in ours]}; fer {max(theirs):.1f} fps "
          f"{[round(x, 1) for x in theirs]} (fer's analyze() alone, without its start-up: {max(inner):.1f} fps)")
    print(f"  batch / fer = {max(ours) / max(theirs):.2f}  (target >= 2); vs fer's analyze() alone "
          f"{max(ours) / max(inner):.2f}")


def device_ratio(tmp: Path, clip: Path, checkpoint, every, repeat, copies: int = 3) -> None:
    """The whole `python -m batch` on `copies` copies of the clip with --device cpu vs --device
    cuda on this machine (issue 12's GPU target: >= 8x)."""
    folder = tmp / "copies"
    n = linked_folder(folder, clip, [f"copy{k}{clip.suffix}" for k in range(copies)])
    t = {"cpu": [], "cuda": []}
    for _ in range(repeat):
        for dev in t:
            t[dev].append(run_batch_cli(folder, tmp / f"out-copies-{dev}", checkpoint, dev, every))
    cpu, cuda = min(t["cpu"]), min(t["cuda"])
    print(f"\ncpu vs cuda: whole `python -m batch` on {copies} copies of {clip.name} ({n} frames), best of {repeat}: "
          f"cpu {cpu:.1f} s ({n / cpu:.1f} fps), cuda {cuda:.1f} s ({n / cuda:.1f} fps)")
    print(f"  cuda / cpu = {cpu / cuda:.2f}  (target >= 8)")


def aus_ratio(clip: Path, p, settings, repeat: int) -> None:
    """Whole analyze_video fps with the face mesh + AU proxies on vs off (alternated, best of each;
    target on/off >= 0.75) with the process's CPU time per frame (user + system: less sensitive to
    other jobs on the machine than wall time), the load average, and the mesh + blendshape nets
    alone in crops/s (the Landmarker's batch size: CPU_BATCH on the CPU), and on the CPU the CPU time per
    face crop with one torch thread, as mer.video's mesh thread runs it."""
    import dataclasses
    import torch
    from mer.faces import FaceDetector
    from mer.images import read_image
    on, off = [], []
    for _ in range(repeat):
        off.append(timed(clip, p, dataclasses.replace(settings, aus=False)))
        on.append(timed(clip, p, dataclasses.replace(settings, aus=True)))
    best_on, best_off = max(on), max(off)
    print(f"\nAU proxies ({clip.name}): full pipeline {best_off[0]:.1f} fps without, {best_on[0]:.1f} fps with "
          f"the face mesh (on 1 frame in {settings.mesh_every}); with / without = {best_on[0] / best_off[0]:.2f}  (target >= 0.75); load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"  all runs fps without {[round(x[0], 1) for x in off]}, with {[round(x[0], 1) for x in on]}; process CPU "
          f"ms/frame (of it system) without {[f'{x[1]:.0f} ({x[2]:.0f})' for x in off]}, with "
          f"{[f'{x[1]:.0f} ({x[2]:.0f})' for x in on]}")
    lmk = p.landmarker
    img = read_image(MEDIA / "single_face.jpg")
    face = FaceDetector(device="cpu").detect([img])[0][0]
    imgs, faces = [img] * 32, [face] * 32
    lmk.run(imgs[:4], faces[:4])  # warm-up
    t = time.perf_counter()
    for _ in range(2):
        lmk.run(imgs, faces)
    rate = 64 / (time.perf_counter() - t)
    b = lmk.batch_size
    x = torch.rand(b, 3, 256, 256, device=lmk.device)
    if lmk.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        lmk.model.mesh(x)
        t = time.perf_counter()
        for _ in range(max(1, 32 // b)):
            lmk.model.mesh(x)
        net = max(1, 32 // b) * b / (time.perf_counter() - t)
    print(f"  mesh + blendshapes + pose per face crop (crop, nets, projection; 32 faces in batches of {b}): "
          f"{rate:.1f} crops/s; mesh net alone {net:.1f} crops/s at batch {b} on {lmk.device} "
          f"({torch.get_num_threads()} threads); load average {os.getloadavg()[0]:.1f}")
    if lmk.device.type == "cpu":  # as mer.video runs it: one torch thread (its CPU time: fair on a busy machine)
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            cpu = []
            for _ in range(3):
                c = time.thread_time()
                lmk.run(imgs, faces)
                cpu.append((time.thread_time() - c) / len(faces))
        finally:
            torch.set_num_threads(n)
        print(f"  one thread (mer.video's mesh thread): {1000 * min(cpu):.2f} ms CPU per face crop (crop, nets, "
              f"projection, pose; best of 3 passes of {len(faces)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--detect-every", type=int, default=1)
    ap.add_argument("--detect-max-side", type=int, default=320)
    ap.add_argument("--long-seconds", type=float, default=60, help="generated clip for the fps figures")
    ap.add_argument("--long-minutes", type=float, default=10, help="generated clip for the memory figure")
    ap.add_argument("--mem-every", type=int, default=5, help="--detect-every for the (slow) memory runs")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-fps", action="store_true", help="skip the per-stage fps table")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--skip-aus", action="store_true", help="skip the AU on/off comparison")
    ap.add_argument("--skip-fer", action="store_true")
    ap.add_argument("--skip-devices", action="store_true", help="skip cpu vs cuda (run only where CUDA is)")
    ap.add_argument("--repeat", type=int, default=2, help="alternated repetitions of the whole-command runs")
    ap.add_argument("--fer-python", default=next((p for p in ("/tmp/tfvenv/bin/python", "/tmp/h5fer/bin/python")
                                                  if Path(p).is_file()), None),
                    help="a Python with fer==25.10.3 installed (for the fer comparison)")
    ap.add_argument("--ray", action="store_true", help="also measure Ray throughput with 1 vs 2 workers")
    ap.add_argument("--chunk-size", type=int, default=64, help="frames decoded at a time (VideoSettings.chunk_size)")
    ap.add_argument("--mesh-every", type=int, default=None,
                    help="face mesh every N frames (default: VideoSettings' default, as the batch tool)")
    ap.add_argument("--mem-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child:
        return mem_child(args.mem_child, args.checkpoint, args.device, args.detect_every, args.chunk_size)

    from batch.runner import WORKER_ENV
    for k, v in WORKER_ENV.items():  # measured as the batch workers run (set before torch loads)
        os.environ.setdefault(k, v)
    from mer.faces import resolve_device
    dev = str(resolve_device(args.device))
    tmp = Path(tempfile.mkdtemp(prefix="mer-bench-"))  # generated clips, checkpoints: removed at the end
    try:
        measure(args, tmp, dev)
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args, tmp: Path, dev: str) -> None:
    """Every figure main() asks for; generated files go to tmp."""
    import torch
    from batch.synth import make_face_clip
    from mer.video import VideoSettings
    p = predictor_for(args.checkpoint, dev, tmp)
    ckpt = str(p.checkpoint)
    if args.mesh_every is None:
        args.mesh_every = VideoSettings().mesh_every
    settings = VideoSettings(detect_every=args.detect_every, detect_max_side=args.detect_max_side,
                             chunk_size=args.chunk_size, mesh_every=args.mesh_every)
    det = p.detector_for(settings.detector_config())
    print(f"device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}, detect_every "
          f"{args.detect_every}, detect_max_side {args.detect_max_side}, mesh_every {args.mesh_every}, "
          f"checkpoint {Path(ckpt).name}")
    clips = []
    wolf = MEDIA / "WolfgangLanger_Pexels.mp4"
    if wolf.is_file():
        clips.append(("WolfgangLanger 640x360, 472 frames", wolf))
    photo = MEDIA / "single_face.jpg"
    if not args.skip_fps:
        if photo.is_file():
            long = make_face_clip(tmp / "long.mp4", [photo], args.long_seconds)
            clips.append((f"generated 640x360, {args.long_seconds:g} s", long))
        full(clips[0][1], p, settings)  # warm-up (model, MTCNN, allocator)
        for name, path in clips:
            r = {"decode": decode_only(path, args.chunk_size),
                 "detect": decode_detect(path, det, args.detect_every, args.chunk_size),
                 "full": full(path, p, settings), "naive": naive(path, p)}
            print(f"\n{name}")
            print(f"  decode only              {r['decode']:8.1f} fps")
            print(f"  decode + detection       {r['detect']:8.1f} fps")
            print(f"  full pipeline            {r['full']:8.1f} fps")
            print(f"  naive full-size per frame{r['naive']:8.1f} fps (fer-style baseline, same run)")
            print(f"  full / (decode+detect) = {r['full'] / r['detect']:.2f}  (target >= 0.60)")
            print(f"  full / naive           = {r['full'] / r['naive']:.2f}  (target >= 2)")
    if not args.skip_aus and clips:
        aus_ratio(clips[0][1], p, settings, args.repeat)
    if not args.skip_startup and photo.is_file():
        startup_ratio(tmp, photo, args.checkpoint, dev, args.detect_every, args.repeat)
    if not args.skip_fer and wolf.is_file():
        fer_ratio(tmp, wolf, args.fer_python, args.checkpoint, dev, args.detect_every, args.repeat)
    if torch.cuda.is_available() and not args.skip_devices and wolf.is_file():
        device_ratio(tmp, wolf, args.checkpoint, args.detect_every, args.repeat)
    if not args.skip_memory and photo.is_file():
        short = make_face_clip(tmp / "10s.mp4", [photo], 10)
        longm = make_face_clip(tmp / "10min.mp4", [photo], args.long_minutes * 60)
        a = peak_memory(short, ckpt, dev, args.mem_every, args.chunk_size)
        b = peak_memory(longm, ckpt, dev, args.mem_every, args.chunk_size)
        print(f"\npeak memory (ru_maxrss, detect_every {args.mem_every}): 10 s clip ({a['frames']} frames) "
              f"{a['maxrss_mb']:.0f} MB, {args.long_minutes:g} min clip ({b['frames']} frames) {b['maxrss_mb']:.0f} MB"
              f", ratio {b['maxrss_mb'] / a['maxrss_mb']:.2f} (target <= 1.2)")
    if args.ray:
        from batch.ray_engine import bench_workers
        bench_workers(tmp, ckpt, [clips[0][1]])


if __name__ == "__main__":
    main()
