"""Soak tests: long runs under load, with the figures docs/reliability.md reports.

    python bench/soak.py batch [--clips 400] [--workers 2] [--detect-every 1] [--sample-s 5]
                               [--warmup-s 180] [--max-videos-per-worker 0] [--work DIR]
    python bench/soak.py ray   [--clips 40] [--kill-after 0.33] [--work DIR]
    python bench/soak.py app   ...          (bench/soak_app.py: the app's soak, its own options)

batch: the real `python -m batch` over --clips short clips (symlinked copies of the real
single_face.mp4 and of a generated two-face clip, alternating), on --workers persistent workers.
While it runs, the resident memory (RSS) of every worker process is sampled every --sample-s s.
Passes when no video failed and, for every worker, its RSS after the warm-up (the first --warmup-s
s of the run) stays flat within 10 %: the median of its samples in the last --window-s (10 min)
over the median in the first --window-s after the warm-up, <= 1.10 (a worker's RSS swings by
~20 % within each video, so single samples say where in a video it was, not whether it grows). --max-videos-per-worker defaults to
0 here (never recycle) so that the figure is the workers' own, not the recycling's, and so that a
worker lives past the 10-minute mark where the old start-up check failed videos (issue 19, item 1).

ray: a local Ray cluster started with `ray start` (a head with no CPUs for tasks, two worker
nodes of one CPU each, all on 127.0.0.1 with their own ports), `python -m batch --engine ray
--address` over --clips clips; once --kill-after of them are done one worker node's raylet is
SIGKILLed (its workers die with it). Passes when every video is done and none was completed twice:
the output folder is polled every 0.2 s and the inode of each video's report recorded (outputs are
written atomically, so every completion is a new inode), and the driver's "done" lines counted.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEDIA = Path(os.environ.get("MER_MEDIA", ROOT.parent / "shared" / "media"))

from batch.runner import rss_mb, worker_pids  # noqa: E402 (after the path is set)


def make_clips(folder: Path, n: int) -> Path:
    """n clips: symlinks to the real single_face.mp4 and to a generated 2 s two-face clip, alternating."""
    from batch.synth import make_face_clip
    src = folder / "src"
    src.mkdir(parents=True, exist_ok=True)
    two = src / "two_faces.mp4"
    if not two.is_file():
        make_face_clip(two, [MEDIA / "single_face.jpg", MEDIA / "obama.jpg"], seconds=2.0)
    inp = folder / "in"
    if inp.exists():
        shutil.rmtree(inp)
    inp.mkdir()
    for k in range(n):
        target = MEDIA / "single_face.mp4" if k % 2 == 0 else two
        (inp / f"c{k:04d}.mp4").symlink_to(target)
    return inp


def fresh_run(args, prefix: str) -> tuple[Path, Path, Path]:
    """The work folder (made when --work is not given), its clips and an empty output folder."""
    work = Path(args.work or tempfile.mkdtemp(prefix=prefix))
    inp = make_clips(work, args.clips)
    out = work / "out"
    if out.exists():
        shutil.rmtree(out)
    return work, inp, out


def batch_soak(args) -> int:
    work, inp, out = fresh_run(args, "mer-soak-")
    log = work / "batch.log"
    cmd = [sys.executable, "-m", "batch", str(inp), "--out", str(out), "--workers", str(args.workers),
           "--detect-every", str(args.detect_every), "--max-videos-per-worker", str(args.max_videos_per_worker)]
    print("command:", " ".join(cmd), flush=True)
    print(f"work folder {work}; load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    t0 = time.monotonic()
    samples: list[tuple[float, int, float]] = []  # (seconds since start, worker pid, RSS MB)
    loads = []
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            t = time.monotonic() - t0
            for c in worker_pids(proc.pid):
                samples.append((t, c, rss_mb(c)))
            loads.append(os.getloadavg()[0])
            time.sleep(args.sample_s)
    wall = time.monotonic() - t0
    import pandas as pd
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    status = Counter(summary["status"])
    failed = summary[summary["status"] == "failed"]
    text = log.read_text(errors="replace")
    started = Counter(re.findall(r"started (c\d+\.mp4)", text))
    print(f"\nexit code {proc.returncode}; wall {wall / 60:.1f} min; {len(summary)} videos: {dict(status)}; "
          f"{len(summary) / wall * 60:.1f} videos/min; load average mean {statistics.mean(loads):.2f}, "
          f"max {max(loads):.2f}")
    for r in failed.itertuples():
        print(f"  FAILED {r.video}: {r.error}")
    print(f"videos started more than once: {sum(v > 1 for v in started.values())}")

    df = pd.DataFrame(samples, columns=["t", "pid", "rss_mb"])
    df = df[df["rss_mb"] > 0]
    print(f"\nworker RSS (MB) per minute (median of the samples, every {args.sample_s:g} s):")
    df["minute"] = (df["t"] // 60).astype(int)
    table = df.pivot_table(index="minute", columns="pid", values="rss_mb", aggfunc="median").round(0)
    print(table.to_string())
    worst, ratios = 0.0, {}
    win = args.window_s
    for pid, g in df[df["t"] >= args.warmup_s].groupby("pid"):
        t0w, t1w = g["t"].iloc[0], g["t"].iloc[-1]
        if t1w - t0w < 2 * win:
            continue
        first = g[g["t"] < t0w + win]["rss_mb"].median()
        last = g[g["t"] > t1w - win]["rss_mb"].median()
        ratios[pid] = (last / first, first, last, g["rss_mb"].max() / g["rss_mb"].iloc[:3].median(), (t1w - t0w) / 60)
        worst = max(worst, ratios[pid][0])
    print(f"\nafter the {args.warmup_s:g} s warm-up, per worker: median RSS of the last {win / 60:g} min over that of "
          f"the first {win / 60:g} min (RSS swings within each video, so single samples are not compared)")
    for pid, (r, first, last, peak, mins) in ratios.items():
        print(f"  worker {pid}: first {first:.0f} MB, last {last:.0f} MB, last/first {r:.3f} over {mins:.1f} min "
              f"(largest sample / first samples {peak:.3f})")
    ok = proc.returncode == 0 and status.get("failed", 0) == 0 and ratios and worst <= 1.10
    print(f"\nzero failed videos: {status.get('failed', 0) == 0}; worst RSS last/first {worst:.3f} (target <= 1.10); "
          f"run >= 15 min: {wall >= 900}; {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


# ------------------------------------------------------------------ ray

def ray_bin() -> str:
    b = Path(sys.executable).parent / "ray"
    return str(b) if b.is_file() else "ray"


def ray_start(*args, env) -> None:
    r = subprocess.run([ray_bin(), "start", *args], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        raise SystemExit(f"ray start {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def raylet_pid(port: int) -> int | None:
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"raylet") and f"--node_manager_port={port}".encode() in cmd:
            return int(p.name)
    return None


def own_processes(marker: str) -> list[int]:
    """This soak's Ray processes: those started with its own --temp-dir (`marker`) on their command
    line, and their descendants (workers rename themselves ray::...). Never another user's Ray."""
    parent, found = {}, set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if marker.encode() in (p / "cmdline").read_bytes():
                found.add(int(p.name))
        except (OSError, IndexError, ValueError):
            pass
    grew = True
    while grew:
        kids = {pid for pid, pp in parent.items() if pp in found} - found
        found |= kids
        grew = bool(kids)
    return sorted(found - {os.getpid()})


def stop_cluster(marker: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in own_processes(marker):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        time.sleep(3)


def ray_soak(args) -> int:
    work, inp, out = fresh_run(args, "mer-raysoak-")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    # Ray runs its workers at nice 15: on a shared machine they then starve (the local engine's
    # workers run at normal priority, so this compares like with like)
    env["RAY_worker_niceness"] = str(args.niceness)
    port = args.port
    temp = tempfile.mkdtemp(prefix="rs-", dir="/tmp")  # short: Ray's socket paths have a length limit
    common = ["--node-ip-address", "127.0.0.1", "--object-store-memory", str(200 << 20), "--disable-usage-stats",
              "--temp-dir", temp]
    try:
        ray_start("--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false",
                  "--node-manager-port", str(port + 1), "--object-manager-port", str(port + 2),
                  "--min-worker-port", str(port + 100), "--max-worker-port", str(port + 199), *common, env=env)
        nodes = []
        for k in (1, 2):
            base = port + 1000 * k
            ray_start("--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--node-manager-port", str(base + 1),
                      "--object-manager-port", str(base + 2), "--min-worker-port", str(base + 100),
                      "--max-worker-port", str(base + 199), *common, env=env)
            nodes.append(base + 1)
        print(f"cluster: head 127.0.0.1:{port} (0 CPUs), worker nodes with node-manager ports {nodes}", flush=True)
        cmd = [sys.executable, "-m", "batch", str(inp), "--out", str(out), "--engine", "ray", "--address",
               f"127.0.0.1:{port}", "--workers", "2", "--detect-every", str(args.detect_every)]
        print("command:", " ".join(cmd), flush=True)
        log = work / "ray-batch.log"
        inodes: dict[str, set[int]] = defaultdict(set)
        killed_at = None
        t0 = time.monotonic()
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)
            while proc.poll() is None:
                for f in out.glob("c*.mp4.html"):
                    try:
                        inodes[f.name[:-5]].add(f.stat().st_ino)
                    except OSError:
                        pass
                if killed_at is None and len(inodes) >= args.clips * args.kill_after:
                    pid = raylet_pid(nodes[0])
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                        killed_at = (time.monotonic() - t0, len(inodes))
                        print(f"killed worker node raylet {pid} (node-manager port {nodes[0]}) at "
                              f"{killed_at[0]:.0f} s, {killed_at[1]} videos done", flush=True)
                time.sleep(0.2)
        wall = time.monotonic() - t0
        for f in out.glob("c*.mp4.html"):
            inodes[f.name[:-5]].add(f.stat().st_ino)
        import pandas as pd
        summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
        text = log.read_text(errors="replace")
        done_lines = Counter(re.findall(r"\] done (c\d+\.mp4)", text))
        started = Counter(re.findall(r"started (c\d+\.mp4)", text))
        twice = {v: len(s) for v, s in inodes.items() if len(s) > 1}
        status = Counter(summary["status"])
        print(f"\nexit code {proc.returncode}; wall {wall:.0f} s; {len(summary)} videos: {dict(status)}")
        print(f"videos whose report was written more than once: {len(twice)} {twice or ''}")
        print(f"videos with more than one 'done' line: {sum(v > 1 for v in done_lines.values())}")
        print(f"videos started more than once (rerun after the node died mid-video): "
              f"{sorted(v for v, n in started.items() if n > 1)}")
        ok = (killed_at is not None and proc.returncode == 0 and status.get("done", 0) == args.clips
              and not twice and max(done_lines.values()) == 1)
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        stop_cluster(temp)  # this cluster only (`ray stop` would end every Ray on the machine)


def app_soak(argv: list[str]) -> int:
    if not (ROOT / "bench" / "soak_app.py").is_file():
        print("the app soak lives in bench/soak_app.py, which is not in this checkout", file=sys.stderr)
        return 2
    from bench.soak_app import main as app_main
    return app_main(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["app"]:
        return app_soak(argv[1:])
    ap = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("batch", help="the local engine over hundreds of clips for 15+ minutes")
    b.add_argument("--clips", type=int, default=400)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--detect-every", type=int, default=1)
    b.add_argument("--max-videos-per-worker", type=int, default=0)
    b.add_argument("--sample-s", type=float, default=5.0)
    b.add_argument("--warmup-s", type=float, default=180.0)
    b.add_argument("--window-s", type=float, default=600.0, help="RSS compared as medians over windows this long")
    b.add_argument("--work", default=None, help="work folder (default: a new temp folder)")
    r = sub.add_parser("ray", help="a local Ray cluster (head + 2 worker nodes), one node killed mid-run")
    r.add_argument("--clips", type=int, default=40)
    r.add_argument("--kill-after", type=float, default=0.33, help="fraction of the clips done before the kill")
    r.add_argument("--detect-every", type=int, default=1)
    r.add_argument("--port", type=int, default=16379)
    r.add_argument("--niceness", type=int, default=0, help="the Ray workers' nice value (Ray's own default: 15)")
    r.add_argument("--work", default=None)
    sub.add_parser("app", help="the app's soak (bench/soak_app.py; pass its options after `app`)")
    args = ap.parse_args(argv)
    return batch_soak(args) if args.cmd == "batch" else ray_soak(args)


if __name__ == "__main__":
    sys.exit(main())
