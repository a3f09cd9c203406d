"""`python -m batch INPUT_DIR --out OUT_DIR ...`: parse, validate, run, summarise."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mer.files import VIDEO_EXTS  # these import the standard library only: usage errors answer at once

from .runner import MAX_VIDEOS_PER_WORKER, STARTUP_LIMIT_S

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SPOT_METHODS = ("auto", "ecc", "flow")  # mer.spotting.METHODS, not imported here (OpenCV, pandas): a test keeps them equal
SPOT_METHOD = "auto"            # mer.spotting.DEFAULT_METHOD (the same test)
MICRO_BY = ("aus", "micro_model")  # mer.video.MICRO_BY, not imported here: a test keeps them equal
EXTS = ", ".join(sorted(e.lstrip(".") for e in VIDEO_EXTS))

EPILOG = """\
outputs (per video, mirroring the input tree): NAME.frames.csv, NAME.intervals.csv, NAME.html;
OUT_DIR/index.html (failed and partial videos first, sortable and filterable, a folder overview),
OUT_DIR/summary.csv, OUT_DIR/manifest.json, OUT_DIR/plotly.min.js.
Re-running the same command skips videos already done with the same settings, checkpoint and
micro checkpoint (weights and cards) and the same code of `mer`. Videos run on --workers persistent
worker processes; a worker that crashes, times out or passes --max-memory-per-worker is replaced
and only its video fails; a worker is replaced after --max-videos-per-worker videos.

exit codes:
  0  every video succeeded (now or in an earlier run); a partially decodable video counts as
     done, with status `partial` and the reason in summary.csv
  1  some videos failed (see summary.csv / manifest.json for the reasons); the others are complete
  2  usage or configuration error (bad folder, checkpoint, device, options); nothing was run
"""


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m batch", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="Annotate a folder of videos: per-frame emotion timelines, "
                                             "spotted micro-expression intervals, Plotly reports.")
    ap.add_argument("input_dir", type=Path, help=f"folder searched recursively for videos ({EXTS})")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="model checkpoint (.safetensors); default: the shipped mer/weights/fer2013_mini_xception.safetensors")
    ap.add_argument("--micro-checkpoint", type=Path, default=None,
                    help="micro-expression model that classifies spotted micro intervals; default: the shipped "
                         "mer/weights/micro_synth.safetensors (synthetic training data)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--detect-every", type=int, default=1, metavar="N",
                    help="run face detection every N frames, track in between (default 1)")
    ap.add_argument("--detect-max-side", type=int, default=320, metavar="PX",
                    help="downscale frames to this longer side for detection (default 320; 0 = full size)")
    ap.add_argument("--no-aus", action="store_true",
                    help="skip the face mesh: no mesh_presence/mesh_interpolated/bs_*/yaw/pitch/roll/au* columns, no interval AUs")
    ap.add_argument("--mesh-every", type=int, default=2, metavar="N",
                    help="run the face mesh every N frames and interpolate its values in between, each face between "
                         "its own two meshes (default 2; 1 = measured on every frame, about 1.3x the CPU time of a "
                         "run; column mesh_interpolated marks the interpolated rows; docs/aus.md)")
    ap.add_argument("--micro-by", default="aus", choices=list(MICRO_BY),
                    help="what classifies a spotted micro-expression: 'aus' = the emotion of the AU proxies that "
                         "rose (the micro model where none did), 'micro_model' = the micro-expression model on the "
                         "apex crop (default %(default)s; docs/aus.md has the figures of both)")
    ap.add_argument("--spot-method", default=SPOT_METHOD, choices=list(SPOT_METHODS),
                    help="motion scorer for spotting (mer.spotting.SpotConfig.for_method): 'flow' = optical flow "
                         "against frames 0.3 s before and after, for real video (head motion, speech); 'ecc' = "
                         "registered differences to frames 3-5 s away, for a steady head (default %(default)s; "
                         "docs/spotting.md has the figures of both)")
    ap.add_argument("--landmarks", action="store_true",
                    help="also write NAME.landmarks.npz (478 face-mesh landmarks per face and frame)")
    ap.add_argument("--workers", type=int, default=1, metavar="N", help="videos processed at once (default 1)")
    ap.add_argument("--timeout-per-video", type=float, default=3600.0, metavar="S",
                    help="kill and fail a video S seconds after its analysis started (default 3600; 0 = no limit)")
    ap.add_argument("--max-memory-per-worker", type=float, default=0.0, metavar="MB",
                    help="kill a worker whose resident memory passes MB while it analyses a video and "
                         "fail that video (default 0 = no limit; local engine)")
    ap.add_argument("--max-videos-per-worker", type=int, default=MAX_VIDEOS_PER_WORKER, metavar="N",
                    help=f"replace a worker by a fresh one after N videos, against slow leaks in native "
                         f"libraries (default {MAX_VIDEOS_PER_WORKER}; 0 = never; local engine)")
    ap.add_argument("--startup-timeout", type=float, default=STARTUP_LIMIT_S, metavar="S",
                    help=f"fail a worker (and its video) that has not loaded the model S seconds after it was "
                         f"started (default {STARTUP_LIMIT_S:g}; local engine)")
    ap.add_argument("--retry-failed", action="store_true", help="retry videos that failed in an earlier run")
    ap.add_argument("--engine", default="local", choices=["local", "ray"], help="local processes (default) or Ray")
    ap.add_argument("--address", default=None, help="Ray cluster address (auto or HOST:PORT; engine ray)")
    ap.add_argument("--gpus-per-video", type=float, default=0.0, metavar="F",
                    help="GPUs per video task (engine ray; fractions allowed)")
    return ap.parse_args(argv)


def checkpoint_problem(path: Path) -> str | None:
    """What is plainly wrong with a checkpoint file, found without importing torch (the full check
    follows): missing, empty, or a .safetensors whose header is not one."""
    import json
    import struct
    if not path.is_file():
        return f"checkpoint {path} not found"
    size = path.stat().st_size
    if size == 0:
        return f"checkpoint {path} is empty (0 bytes)"
    if path.suffix == ".safetensors":
        with open(path, "rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            try:
                ok = 0 < n <= size - 8 and isinstance(json.loads(f.read(n)), dict)
            except ValueError:
                ok = False
        if not ok:
            return f"checkpoint {path} is not a valid safetensors file (bad header)"
    return None


def usage_error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def main(argv=None) -> int:
    args = parse_args(argv)
    # checks that need no heavy imports come first: a usage error answers at once
    inp = args.input_dir
    if not inp.is_dir():
        return usage_error(f"input folder {inp} does not exist or is not a folder")
    for name, v, lo in (("--detect-every", args.detect_every, 1), ("--mesh-every", args.mesh_every, 1),
                        ("--workers", args.workers, 1),
                        ("--detect-max-side", args.detect_max_side, 0),
                        ("--max-videos-per-worker", args.max_videos_per_worker, 0)):
        if v < lo:
            return usage_error(f"{name} must be at least {lo}, got {v}")
    if min(args.timeout_per_video, args.gpus_per_video, args.max_memory_per_worker) < 0:
        return usage_error("--timeout-per-video, --gpus-per-video and --max-memory-per-worker must not be negative")
    if not args.startup_timeout > 0:
        return usage_error(f"--startup-timeout must be more than 0, got {args.startup_timeout:g}")
    for flag, path in (("--checkpoint", args.checkpoint), ("--micro-checkpoint", args.micro_checkpoint)):
        problem = checkpoint_problem(path) if path is not None else None
        if problem:
            return usage_error(f"{flag}: {problem}" if flag != "--checkpoint" else problem)
    out = args.out
    if out.exists() and not out.is_dir():
        return usage_error(f"--out {out} exists and is not a folder")

    from .manifest import Manifest
    from .runner import WORKER_ENV, WorkerPool, find_videos
    videos = find_videos(inp, out)
    if not videos:  # nothing is created
        return usage_error(f"no videos ({EXTS}) found under {inp}")
    try:
        manifest = Manifest.load(out / "manifest.json")
    except (OSError, ValueError) as e:
        return usage_error(str(e))
    for k, v in WORKER_ENV.items():  # inherited by the workers (flat memory over long videos)
        os.environ.setdefault(k, v)
    pool = None
    if args.engine == "local":  # workers start importing now, in parallel with the checks below
        pool = WorkerPool(min(args.workers, len(videos)))
    try:
        return _run(args, inp, out, videos, manifest, pool)
    finally:
        if pool:
            pool.close()


def _run(args, inp: Path, out: Path, videos: list[str], manifest, pool) -> int:
    from .manifest import file_sha256, settings_hash
    from .runner import Job, precheck, record, summary_row
    job = Job(checkpoint=str(args.checkpoint or ""), device=args.device, settings=settings_from_args(args),
              settings_hash="", threads=1 if args.address else max(1, (os.cpu_count() or 1) // args.workers),
              timeout=args.timeout_per_video or None, max_memory_mb=args.max_memory_per_worker or None,
              micro_checkpoint=str(args.micro_checkpoint or ""), startup_limit=args.startup_timeout,
              max_videos=args.max_videos_per_worker)
    if pool:  # the first worker loads and validates the model (the driver itself never imports torch)
        info = pool.handshake(out, job)
    else:
        info = describe_here(args, job)
    if "error" in info:  # CheckpointError, a card that does not fit, no CUDA, ...
        return usage_error(info["error"])
    job.device, job.checkpoint, job.settings = info["device"], info["checkpoint"], info["settings"]
    job.micro_checkpoint = info["micro_checkpoint"]  # "" when none is installed
    job.settings_hash = settings_hash(job.settings, file_sha256(job.checkpoint), job.device, info["card"],
                                      file_sha256(job.micro_checkpoint) if job.micro_checkpoint else "",
                                      info["micro_card"])
    job.extra = {"card": info["card"], "micro_card": info["micro_card"]}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return usage_error(f"cannot create --out {out}: {e}")
    for tmp in out.rglob("*.mer-tmp"):  # left by a run that was killed mid-write
        tmp.unlink(missing_ok=True)
    from mer.report import write_index, write_plotly_js
    write_plotly_js(out)
    todo = [v for v in videos if manifest.needs_run(v, job.settings_hash, out, args.retry_failed)]
    print(f"{len(videos)} videos under {inp}: {len(videos) - len(todo)} already done or failed with these "
          f"settings, {len(todo)} to run (engine {args.engine}, device {job.device})", file=sys.stderr)
    t0 = time.monotonic()
    for rel in list(todo):  # empty or vanished files fail here, without a worker
        reason = precheck(inp / rel)
        if reason:
            record(manifest, rel, job, "failed", reason, 0.0)
            print(f"FAILED {display(rel)}: {reason}", file=sys.stderr)
            todo.remove(rel)

    def refresh_index():  # keeps OUT_DIR/index.html current while a long run goes on
        write_index([summary_row(v, manifest.videos.get(v)) for v in videos], out)

    try:
        if args.engine == "ray":
            refresh_index()
            from .ray_engine import run_ray
            run_ray(inp, out, videos, todo, manifest, job, args.address, args.gpus_per_video, args.workers, refresh_index)
        else:
            from .runner import run_local
            run_local(inp, out, videos, todo, manifest, job, args.workers, refresh_index, pool)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except ImportError as e:
        return usage_error(f"engine {args.engine} is not available: {e}")
    for tmp in out.rglob("*.mer-tmp"):  # of workers killed mid-write (all writers are done now)
        tmp.unlink(missing_ok=True)
    rows = [summary_row(v, manifest.videos.get(v)) for v in videos]
    write_index(rows, out)
    failed = [r for r in rows if r["status"] not in ("done", "partial")]
    partial = [r for r in rows if r["status"] == "partial"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} videos done"
          + (f" ({len(partial)} partially decodable)" if partial else "")
          + f", {len(failed)} failed ({time.monotonic() - t0:.1f} s); report: {out / 'index.html'}", file=sys.stderr)
    for r in partial:
        print(f"  PARTIAL {r['video']}: {r['error']}", file=sys.stderr)
    for r in failed:
        print(f"  FAILED {r['video']}: {r['error']}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def settings_from_args(args) -> dict:
    """The VideoSettings fields the command line sets, as a dict (the worker builds the
    mer.video.VideoSettings from it, defaults filled in: batch.runner.video_settings)."""
    return {"detect_every": args.detect_every, "detect_max_side": args.detect_max_side or None,
            "aus": not args.no_aus, "mesh_every": args.mesh_every, "micro_by": args.micro_by,
            "landmarks": args.landmarks,
            "spotting": {"method": args.spot_method}}  # the worker builds SpotConfig.for_method from it


def describe_here(args, job) -> dict:
    """The Ray engine's check, in the driver: the model loaded and validated once before any
    video is sent (the nodes' GPUs, not the driver's: an actor gets GPUs only if asked)."""
    import dataclasses
    try:
        from .runner import describe, load_predictor
        if args.device == "cuda" and not args.gpus_per_video:
            return {"error": "--device cuda with --engine ray needs --gpus-per-video (e.g. 1 or 0.25)"}
        device = "cuda" if args.gpus_per_video and args.device != "cpu" else "cpu"
        predictor = load_predictor(dataclasses.replace(job, device="cpu"))
        return {**describe(job, predictor), "device": device}
    except Exception as e:  # CheckpointError, a card that does not fit (TypeError...)
        return {"error": str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}


def display(rel: str) -> str:
    from .runner import display_name
    return display_name(rel)
