"""`python -m batch INPUT_DIR --out OUT_DIR ...`: parse, validate, run, summarise."""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """\
outputs (per video, mirroring the input tree): NAME.frames.csv, NAME.intervals.csv, NAME.html;
OUT_DIR/index.html, OUT_DIR/summary.csv, OUT_DIR/manifest.json, OUT_DIR/plotly.min.js.
Re-running the same command skips videos already done with the same settings and checkpoint.

exit codes:
  0  every video succeeded (now or in an earlier run)
  1  some videos failed (see summary.csv / manifest.json for the reasons); the others are complete
  2  usage or configuration error (bad folder, checkpoint, device, options); nothing was run
"""


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m batch", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="Annotate a folder of videos: per-frame emotion timelines, "
                                             "spotted micro-expression intervals, Plotly reports.")
    ap.add_argument("input_dir", type=Path, help="folder searched recursively for mp4/mov/avi/mkv/webm")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="model checkpoint (.safetensors); default: the shipped mer/weights/fer2013_mini_xception.safetensors")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--detect-every", type=int, default=1, metavar="N",
                    help="run face detection every N frames, track in between (default 1)")
    ap.add_argument("--detect-max-side", type=int, default=320, metavar="PX",
                    help="downscale frames to this longer side for detection (default 320; 0 = full size)")
    ap.add_argument("--workers", type=int, default=1, metavar="N", help="videos processed at once (default 1)")
    ap.add_argument("--timeout-per-video", type=float, default=3600.0, metavar="S",
                    help="kill and fail a video after S seconds (default 3600; 0 = no limit)")
    ap.add_argument("--retry-failed", action="store_true", help="retry videos that failed in an earlier run")
    ap.add_argument("--engine", default="local", choices=["local", "ray"], help="local processes (default) or Ray")
    ap.add_argument("--address", default=None, help="Ray cluster address (auto or HOST:PORT; engine ray)")
    ap.add_argument("--gpus-per-video", type=float, default=0.0, metavar="F",
                    help="GPUs per video task (engine ray; fractions allowed)")
    return ap.parse_args(argv)


def usage_error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def main(argv=None) -> int:
    args = parse_args(argv)
    # few malloc arenas in the workers (inherited): freed frame buffers go back instead of piling up
    # in per-thread arenas, so peak memory stays flat over long videos
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    # MTCNN's later stages see a new batch shape on most frames; a small oneDNN primitive cache
    # keeps that from growing memory (no measurable speed cost here)
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")
    from mer.checkpoint import CheckpointError, load_checkpoint
    from mer.faces import resolve_device
    from mer.predict import default_checkpoint
    from mer.video import VideoSettings

    from .manifest import Manifest, file_sha256, settings_hash
    from .runner import Job, find_videos, summary_row

    inp = args.input_dir
    if not inp.is_dir():
        return usage_error(f"input folder {inp} does not exist or is not a folder")
    for name, v, lo in (("--detect-every", args.detect_every, 1), ("--workers", args.workers, 1),
                        ("--detect-max-side", args.detect_max_side, 0)):
        if v < lo:
            return usage_error(f"{name} must be at least {lo}, got {v}")
    if args.timeout_per_video < 0 or args.gpus_per_video < 0:
        return usage_error("--timeout-per-video and --gpus-per-video must not be negative")
    try:
        device = str(resolve_device(args.device))
        ckpt = args.checkpoint or default_checkpoint()
        if not Path(ckpt).is_file():
            raise CheckpointError(f"checkpoint {ckpt} not found")
        load_checkpoint(ckpt, device="cpu")  # validate once, before any video is started
    except (CheckpointError, RuntimeError) as e:
        return usage_error(str(e))
    out = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        manifest = Manifest.load(out / "manifest.json")
    except (OSError, ValueError) as e:
        return usage_error(str(e))
    videos = find_videos(inp, out)
    if not videos:
        return usage_error(f"no videos (mp4, mov, avi, mkv, webm) found under {inp}")

    settings = VideoSettings(detect_every=args.detect_every, detect_max_side=args.detect_max_side or None)
    sdict = asdict(settings)
    job = Job(checkpoint=str(Path(ckpt).resolve()), device=device, settings=sdict,
              settings_hash=settings_hash(sdict, file_sha256(ckpt), device),
              threads=1 if args.address else max(1, (os.cpu_count() or 1) // args.workers),
              timeout=args.timeout_per_video or None)
    for tmp in out.rglob("*.mer-tmp"):  # left by a run that was killed mid-write
        tmp.unlink(missing_ok=True)
    from mer.report import write_index, write_plotly_js
    write_plotly_js(out)
    todo = [v for v in videos if manifest.needs_run(v, job.settings_hash, out, args.retry_failed)]
    print(f"{len(videos)} videos under {inp}: {len(videos) - len(todo)} already done or failed with these "
          f"settings, {len(todo)} to run (engine {args.engine}, device {device})", file=sys.stderr)
    t0 = time.monotonic()

    def refresh_index():  # keeps OUT_DIR/index.html current while a long run goes on
        write_index([summary_row(v, manifest.videos.get(v)) for v in videos], out)

    refresh_index()
    try:
        if args.engine == "ray":
            from .ray_engine import run_ray
            run_ray(inp, out, videos, todo, manifest, job, args.address, args.gpus_per_video, args.workers, refresh_index)
        else:
            from .runner import run_local
            run_local(inp, out, videos, todo, manifest, job, args.workers, refresh_index)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except ImportError as e:
        return usage_error(f"engine {args.engine} is not available: {e}")
    for tmp in out.rglob("*.mer-tmp"):  # of workers killed mid-write (all writers are done now)
        tmp.unlink(missing_ok=True)
    rows = [summary_row(v, manifest.videos.get(v)) for v in videos]
    write_index(rows, out)
    failed = [r for r in rows if r["status"] != "done"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} videos done, {len(failed)} failed "
          f"({time.monotonic() - t0:.1f} s); report: {out / 'index.html'}", file=sys.stderr)
    for r in failed:
        print(f"  FAILED {r['video']}: {r['error']}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
