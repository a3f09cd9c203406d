"""The Ray engine: each video is a Ray task; same outputs, manifest, resume and exit codes.

    python -m batch INPUT_DIR --out OUT_DIR --engine ray [--address auto|HOST:PORT] [--gpus-per-video F]

- The driver alone writes the manifest; tasks write the per-video reports (atomically) straight
  into OUT_DIR, which must be on storage every node sees at the same path (as must INPUT_DIR and
  this project, importable on every node).
- The checkpoint's bytes go into the object store once; each worker process loads the Predictor
  once and keeps it for every later video it runs (not per video, not per frame chunk).
- A task that raises (unreadable video, ...) fails that video with the reason. A worker process or
  node dying mid-video makes Ray run the task again (max_retries); outputs are written atomically
  and deterministically, so a retried video never duplicates or loses rows.
- Without --address a local Ray instance is started for this run.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from .manifest import Manifest
from .runner import Job, outputs_for

MAX_RETRIES = 3
ROOT = Path(__file__).resolve().parents[1]
_cache: dict = {}  # per worker process: checkpoint sha -> Predictor


def _predictor(ckpt_bytes: bytes, job: Job):
    key = hashlib.sha256(ckpt_bytes).hexdigest()
    if key not in _cache:
        import torch
        from mer.predict import Predictor
        torch.set_num_threads(max(1, job.threads))
        path = Path(tempfile.gettempdir()) / f"mer-ray-{key[:16]}.safetensors"
        if not path.is_file():
            from mer.report import atomic_write
            atomic_write(path, ckpt_bytes)
        _cache[key] = Predictor(path, device=job.device)
    return _cache[key]


def video_task(video: str, rel: str, out_dir: str, job: Job, ckpt_bytes: bytes):
    """One video on a Ray worker -> ("done", summary, seconds) or ("failed", reason, seconds)."""
    from mer.video import VideoError
    from .runner import analyze_one
    t = time.monotonic()
    try:
        return "done", analyze_one(video, rel, out_dir, job, predictor=_predictor(ckpt_bytes, job)), \
            round(time.monotonic() - t, 2)
    except VideoError as e:
        return "failed", str(e), round(time.monotonic() - t, 2)


def run_ray(input_dir: Path, out_dir: Path, videos: list[str], todo: list[str], manifest: Manifest,
            job: Job, address: str | None, gpus_per_video: float, local_cpus: int | None = None, on_done=None) -> None:
    import ray
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}}
    kw = dict(runtime_env=env, log_to_driver=False, configure_logging=False)
    if address:
        ray.init(address=address, **kw)
    else:  # a local instance for this run, as many task slots as --workers
        ray.init(num_cpus=local_cpus, include_dashboard=False, **kw)
    try:
        task = ray.remote(video_task).options(num_cpus=1, num_gpus=gpus_per_video, max_retries=MAX_RETRIES,
                                              retry_exceptions=False)
        ckpt_ref = ray.put(Path(job.checkpoint).read_bytes())
        refs = {}
        for rel in todo:
            manifest.videos[rel] = {"status": "pending", "hash": job.settings_hash}
        manifest.save()
        for rel in todo:
            ref = task.remote(str(input_dir / rel), rel, str(out_dir), job, ckpt_ref)
            refs[ref] = (rel, time.monotonic())
        bar = tqdm(total=len(videos), initial=len(videos) - len(todo), desc="videos", unit="video")
        failed, bar.postfix_running = 0, -1
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            now = time.monotonic()
            for ref in ready:
                rel, t0 = refs.pop(ref)
                try:
                    status, payload, secs = ray.get(ref)  # secs: time in the task itself
                except Exception as e:  # the task crashed (after retries) or raised
                    status, payload = "failed", f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                    secs = round(now - t0, 2)
                if status == "done":
                    manifest.set(rel, status="done", hash=job.settings_hash, outputs=outputs_for(rel),
                                 summary=payload, seconds=secs)
                else:
                    failed += 1
                    manifest.set(rel, status="failed", hash=job.settings_hash, reason=payload, seconds=secs)
                    tqdm.write(f"FAILED {rel}: {payload}")
                bar.update(1)
                if on_done:
                    on_done()
            if job.timeout:
                for ref, (rel, t0) in list(refs.items()):
                    if now - t0 > job.timeout:
                        ray.cancel(ref, force=True)
                        refs.pop(ref)
                        failed += 1
                        manifest.set(rel, status="failed", hash=job.settings_hash,
                                     reason=f"timed out after {job.timeout:g} s (task cancelled)",
                                     seconds=round(now - t0, 2))
                        bar.update(1)
            if ready or len(refs) != bar.postfix_running:
                bar.postfix_running = len(refs)
                bar.set_postfix(running=len(refs), failed=failed)
        bar.close()
    finally:
        ray.shutdown()


def bench_workers(tmp: Path, checkpoint: str, clips: list[Path]) -> None:
    """bench/batch.py --ray: videos/s through the Ray engine (a local instance, 4 copies of each clip,
    Ray start-up included) with 1 vs 2 workers."""
    import subprocess
    src = tmp / "ray-in"
    src.mkdir(exist_ok=True)
    for k in range(4):
        for c in clips:
            link = src / f"{k}_{c.name}"
            if not link.exists():
                link.symlink_to(c)
    rates = {}
    for n in (1, 2):
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "batch", str(src), "--out", str(tmp / f"ray-out-{n}"), "--engine",
                        "ray", "--checkpoint", checkpoint, "--workers", str(n)], cwd=ROOT, check=False,
                       capture_output=True)
        if r.returncode != 0:
            print(f"Ray engine, {n} worker(s): failed (exit {r.returncode}): {r.stderr[-500:]}")
            return
        rates[n] = len(list(src.iterdir())) / (time.perf_counter() - t)
        print(f"Ray engine, {n} worker(s): {rates[n]:.3f} videos/s")
    print(f"  2 / 1 workers = {rates[2] / rates[1]:.2f}")
