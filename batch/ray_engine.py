"""The Ray engine: one persistent Ray actor per worker slot takes video after video; same
outputs, manifest, resume and exit codes as the local engine.

    python -m batch INPUT_DIR --out OUT_DIR --engine ray [--address auto|HOST:PORT] [--gpus-per-video F]

- The driver alone writes the manifest; actors write the per-video reports (atomically) straight
  into OUT_DIR, which must be on storage every node sees at the same path (as must INPUT_DIR and
  this project, importable on every node).
- The checkpoint's weights and its model card (the one the driver validated), and those of the
  micro-expression model, go into the object store once; each actor writes each pair into a temp
  folder on its node and loads the Predictors once, then analyses one video at a time. There are as many actors as task slots (`--workers`
  for a local instance; the cluster's CPUs, or GPUs / --gpus-per-video, with --address).
- A video is handed to an idle, loaded actor, so `--timeout-per-video` counts from the video's
  start: queued videos never time out. A video over the limit has its actor killed and replaced.
- A video that raises (unreadable, ...) fails with the reason. An actor or node dying mid-video
  makes the driver run that video again on another actor (up to MAX_RETRIES times); outputs are
  written atomically and deterministically, so a retried video never duplicates or loses rows.
- Without --address a local Ray instance is started for this run.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path

from .manifest import Manifest
from .runner import Job, Progress, load_predictor, record

MAX_RETRIES = 3
ROOT = Path(__file__).resolve().parents[1]


def materialize(blob: dict) -> Path:
    """Weights + card ({"weights": bytes, "card": str}) from the object store as a checkpoint pair in
    this node's temp folder (written once per node into a fresh folder, then renamed into place:
    never half a pair)."""
    key = hashlib.sha256(blob["weights"] + blob["card"].encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"mer-ray-{key}"
    path = folder / "model.safetensors"
    if not path.is_file():
        from mer.files import atomic_write
        tmp = Path(tempfile.mkdtemp(prefix=f".mer-ray-{key}.", dir=folder.parent))
        atomic_write(tmp / "model.safetensors", blob["weights"])
        atomic_write(tmp / "model.json", blob["card"] + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:  # another worker on this node was first
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
    return path


class VideoWorker:
    """A Ray actor: loads the model once, then analyses one video per `run` call."""

    def __init__(self, job: Job, blob: dict):
        self.job = job
        micro = str(materialize(blob["micro"])) if blob["micro"] else None
        self.predictor = load_predictor(job, str(materialize(blob["model"])), micro)

    def ready(self) -> bool:
        return True

    def run(self, video: str, rel: str, out_dir: str):
        """-> ("done", summary, seconds) or ("failed", reason, seconds)."""
        from mer.video import VideoError
        from .runner import analyze_one
        t = time.monotonic()
        try:
            return "done", analyze_one(video, rel, out_dir, self.job, predictor=self.predictor), \
                round(time.monotonic() - t, 2)
        except VideoError as e:
            return "failed", str(e), round(time.monotonic() - t, 2)


def _slots(ray, local_cpus: int | None, address: str | None, gpus_per_video: float) -> int:
    if not address:
        return max(1, local_cpus or 1)
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1))
    if gpus_per_video:
        n = min(n, int(res.get("GPU", 0) / gpus_per_video))
    return max(1, n)


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def run_ray(input_dir: Path, out_dir: Path, videos: list[str], todo: list[str], manifest: Manifest,
            job: Job, address: str | None, gpus_per_video: float, local_cpus: int | None = None, on_done=None) -> None:
    import ray
    from ray.exceptions import RayActorError
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}}
    kw = dict(runtime_env=env, log_to_driver=False, configure_logging=False)
    if address:
        ray.init(address=address, **kw)
    else:  # a local instance for this run, as many slots as --workers
        ray.init(num_cpus=local_cpus, include_dashboard=False, **kw)
    progress = Progress(len(videos), len(videos) - len(todo))
    try:
        Worker = ray.remote(VideoWorker).options(num_cpus=1, num_gpus=gpus_per_video, max_restarts=0,
                                                 max_task_retries=0)
        blob = ray.put({"model": {"weights": Path(job.checkpoint).read_bytes(), "card": job.extra["card"]},
                        "micro": {"weights": Path(job.micro_checkpoint).read_bytes(), "card": job.extra["micro_card"]}
                        if job.micro_checkpoint else None})
        queue, attempts = deque(todo), Counter()
        starting: dict = {}   # ready ref -> actor (loading the model)
        idle: list = []
        running: dict = {}    # run ref -> (actor, rel, start)
        init_failures, init_error = 0, ""

        def add_actor():
            a = Worker.remote(job, blob)
            starting[a.ready.remote()] = a

        for _ in range(min(len(queue), _slots(ray, local_cpus, address, gpus_per_video))):
            add_actor()

        def finish(rel, status, payload, secs):
            stored = record(manifest, rel, job, status, payload, secs)
            progress.finished(rel, rel, stored, payload if stored == "failed" else manifest.videos[rel].get("reason", ""), secs)
            if on_done:
                on_done()

        while queue or running:
            if not starting and not idle and not running:  # every actor failed to start
                for rel in queue:
                    finish(rel, "failed", f"no Ray worker could load the model: {init_error}", 0.0)
                break
            while idle and queue:
                actor, rel = idle.pop(), queue.popleft()
                manifest.set(rel, status="pending", hash=job.settings_hash)
                running[actor.run.remote(str(input_dir / rel), rel, str(out_dir))] = (actor, rel, time.monotonic())
                progress.started(rel, rel)
            ready, _ = ray.wait(list(starting) + list(running), num_returns=1, timeout=0.5)
            for ref in ready:
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        ray.get(ref)
                        idle.append(actor)
                    except Exception as e:  # could not load the model on that node
                        init_failures, init_error = init_failures + 1, _first_line(e)
                        if init_failures < MAX_RETRIES * max(1, len(todo)):
                            add_actor()
                    continue
                actor, rel, t0 = running.pop(ref)
                try:
                    status, payload, secs = ray.get(ref)  # secs: time in the actor itself
                    idle.append(actor)
                except RayActorError as e:  # the worker process or its node died mid-video
                    attempts[rel] += 1
                    add_actor()
                    if attempts[rel] <= MAX_RETRIES:
                        queue.appendleft(rel)
                        continue
                    status, payload, secs = "failed", f"worker died {attempts[rel]} times: {_first_line(e)}", \
                        round(time.monotonic() - t0, 2)
                except Exception as e:  # the analysis raised something other than a VideoError
                    idle.append(actor)
                    status, payload, secs = "failed", _first_line(e), round(time.monotonic() - t0, 2)
                finish(rel, status, payload, secs)
            if job.timeout:
                now = time.monotonic()
                for ref, (actor, rel, t0) in list(running.items()):
                    if now - t0 > job.timeout:
                        running.pop(ref)
                        ray.kill(actor, no_restart=True)
                        add_actor()
                        finish(rel, "failed", f"timed out after {job.timeout:g} s (worker killed)", round(now - t0, 2))
    finally:
        progress.close()
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
