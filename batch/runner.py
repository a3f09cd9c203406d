"""The local engine: each video in its own (spawned) worker process with a timeout.

A decoder segfault, a hang past --timeout-per-video or an out-of-memory kill ends that worker
only; the driver records the video as failed with the reason and goes on. Workers die with the
driver (PR_SET_PDEATHSIG), so `kill -9` of the driver leaves nothing running; temporary files of an
interrupted run are removed at the start of the next one.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from urllib.parse import quote

from tqdm import tqdm

from mer import report

from .manifest import Manifest

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
OUTPUT_SUFFIXES = {"frames": ".frames.csv", "intervals": ".intervals.csv", "html": ".html"}


@dataclass
class Job:
    checkpoint: str
    device: str
    settings: dict                      # mer.video.VideoSettings as a dict
    settings_hash: str
    threads: int = 1
    timeout: float | None = None
    extra: dict = field(default_factory=dict)


def find_videos(input_dir: Path, out_dir: Path | None = None) -> list[str]:
    """Relative POSIX paths of video files under input_dir (any case of extension), sorted."""
    found = []
    skip = out_dir.resolve() if out_dir else None
    for root, dirs, files in os.walk(input_dir, followlinks=False):
        if skip and Path(root).resolve() == skip:
            dirs[:] = []
            continue
        dirs.sort()
        for f in files:
            p = Path(root) / f
            if p.suffix.lower() in VIDEO_EXTS and not f.startswith("."):
                found.append(p.relative_to(input_dir).as_posix())
    return sorted(found)


def outputs_for(rel: str) -> dict[str, str]:
    """Output paths (relative to OUT_DIR) of one video: the input tree mirrored, full file name kept
    (so clip.mp4 and clip.mov do not collide)."""
    return {k: rel + s for k, s in OUTPUT_SUFFIXES.items()}


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent:  # the driver died before the line above ran
        os._exit(1)


def analyze_one(video: str, rel: str, out_dir: str, job: Job, progress=None, predictor=None) -> dict:
    """Analyse one video and write its reports; returns the summary fields. Raises on failure.
    Shared by the local worker and the Ray engine."""
    import torch
    from mer.predict import Predictor
    from mer.spotting import SpotConfig
    from mer.tracking import TrackerConfig
    from mer.video import VideoSettings, analyze_video
    torch.set_num_threads(max(1, job.threads))
    s = dict(job.settings)
    settings = VideoSettings(**{**s, "tracker": TrackerConfig(**s["tracker"]), "spotting": SpotConfig(**s["spotting"])})
    predictor = predictor or Predictor(job.checkpoint, device=job.device)
    res = analyze_video(video, predictor, settings, progress=progress, name=rel)
    out = Path(out_dir)
    target = out / rel
    js = os.path.relpath(out / report.PLOTLY_JS, target.parent)
    report.write_video_report(res, target.parent, target.name, plotlyjs=Path(js).as_posix())
    i = res.info
    return {"duration_s": i["duration_s"], "frames": i["n_frames"], "fps": i["fps"], "faces": i["n_faces"],
            "dominant_class": i["dominant_class"], "intervals": i["n_intervals"]}


def _worker(conn, video: str, rel: str, out_dir: str, job: Job, parent: int) -> None:
    _die_with_parent(parent)
    from mer.video import VideoError
    try:
        row = analyze_one(video, rel, out_dir, job, progress=lambda d, t: conn.send(("progress", d, t)))
        conn.send(("done", row))
    except VideoError as e:
        conn.send(("failed", str(e)))
    except MemoryError:
        conn.send(("failed", "out of memory"))
    except Exception as e:  # any other error fails this video only, with its reason
        conn.send(("failed", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _death_reason(code: int | None, timeout: float | None, timed_out: bool) -> str:
    if timed_out:
        return f"timed out after {timeout:g} s (worker killed)"
    if code is not None and code < 0:
        sig = signal.Signals(-code).name
        hint = {"SIGSEGV": "decoder crash", "SIGKILL": "killed, likely out of memory",
                "SIGBUS": "decoder crash", "SIGABRT": "aborted"}.get(sig, "")
        return f"worker died with {sig}" + (f" ({hint})" if hint else "")
    return f"worker exited with code {code} without a result"


def summary_row(rel: str, entry: dict | None) -> dict:
    e = entry or {"status": "pending"}
    row = {"video": rel, "status": e.get("status", "pending"), "error": e.get("reason", ""),
           "seconds": e.get("seconds", "")}
    row.update(e.get("summary", {}))
    if e.get("status") == "done":
        row["report"] = quote(e["outputs"]["html"])
    return row


def run_local(input_dir: Path, out_dir: Path, videos: list[str], todo: list[str], manifest: Manifest,
              job: Job, workers: int, on_done=None) -> None:
    """Run the `todo` videos, `workers` at a time, updating the manifest as each ends (then
    calling on_done(), e.g. to refresh index.html)."""
    ctx = mp.get_context("spawn")
    queue = list(todo)
    running: dict = {}  # conn -> [rel, process, start, bar, result, bar position]
    overall = tqdm(total=len(videos), initial=len(videos) - len(todo), desc="videos", unit="video",
                   position=0, dynamic_ncols=True)
    free_pos = list(range(1, workers + 1))

    def finish(conn, state):
        rel, proc, t0, bar, result, pos = state
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        timed_out = state[4] == "timeout"
        secs = round(time.monotonic() - t0, 2)
        if isinstance(result, tuple) and result[0] == "done":
            manifest.set(rel, status="done", hash=job.settings_hash, outputs=outputs_for(rel),
                         summary=result[1], seconds=secs)
        else:
            reason = result[1] if isinstance(result, tuple) else _death_reason(proc.exitcode, job.timeout, timed_out)
            manifest.set(rel, status="failed", hash=job.settings_hash, reason=reason, seconds=secs)
            tqdm.write(f"FAILED {rel}: {reason}")
        bar.close()
        if on_done:
            on_done()
        free_pos.append(pos)
        overall.update(1)
        conn.close()
        del running[conn]

    try:
        while queue or running:
            while queue and len(running) < workers:
                rel = queue.pop(0)
                manifest.set(rel, status="pending", hash=job.settings_hash)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(child, str(input_dir / rel), rel, str(out_dir), job, os.getpid()),
                                   daemon=True)
                proc.start()
                child.close()
                pos = min(free_pos)
                free_pos.remove(pos)
                bar = tqdm(total=0, desc=rel[-40:], unit="frame", position=pos, leave=False, dynamic_ncols=True)
                running[parent] = [rel, proc, time.monotonic(), bar, None, pos]
            for conn in wait(list(running), timeout=0.5):
                state = running[conn]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):  # worker gone: crashed, killed or finished
                    finish(conn, state)
                    continue
                if msg[0] == "progress":
                    state[3].total = msg[2]
                    state[3].n = msg[1]
                    state[3].refresh()
                else:
                    state[4] = msg
            now = time.monotonic()
            for conn, state in list(running.items()):
                if job.timeout and now - state[2] > job.timeout and state[4] is None:
                    state[1].kill()
                    state[4] = "timeout"
                    finish(conn, state)
    finally:
        for conn, state in list(running.items()):
            state[1].kill()
        overall.close()
