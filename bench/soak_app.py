"""The app's soak: the real server (`python app.py`, its default settings) under a steady mixed load.

    python bench/soak_app.py [--minutes 30] [--clients 16] [--burst 64] [--burst-at 0.5]
                             [--warmup-min 5] [--sample-s 60] [--json PATH]
    python bench/soak.py app ...            (the same, through the soak driver)

--clients gradio_client clients (one session each) send requests back to back for --minutes:
real photos without and with Grad-CAM, short real and generated clips (about one video in six
requests), and one of them is a live viewer that streams the frames of a real clip to /live_frame
every 0.25 s (the webcam tab's step, state per session; a new session every 120 frames). At
--burst-at of the run, --burst more clients (one session each) send one photo each at the same
moment. Every answer is checked (the annotated picture decodes and is not empty, the CSV has
rows, the live frame has its JSON); a request may also be refused with gradio's queue-full message
(the queue is bounded, MER_QUEUE_SIZE). Anything else is a failure.

The server's resident memory (RSS of the app.py process; the decoder children are separate,
capped processes) is sampled every --sample-s s. It swings by about +-15 % with the requests in
flight (two videos and Grad-CAM at once), so each minute's median is its level (each minute's peak
is reported too), and single minutes' levels still differ by up to +-8 % on a loaded machine.
Passes when no request failed and the level is flat within 10 % from minute --warmup-min on: the
mean level of every later 5-minute window over that of the first window after the warm-up <= 1.10
(the single minutes' highest and last level over minute --warmup-min's are printed too).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEDIA = Path(os.environ.get("MER_MEDIA", ROOT.parent / "shared" / "media"))
# gradio_client's uploads use httpx's default 5 s timeout: on a loaded machine a burst's uploads
# wait longer than that for the server to read them and the client gives up (starlette then logs
# ClientDisconnect); a browser waits. Every HTTP step here may take up to 120 s.
HTTP = {"timeout": 120.0}
PHOTOS = ["single_face.jpg", "multi_face.jpg", "no-faces.jpg", "two_people.jpg", "obama.jpg", "angry.jpg",
          "happy-baby.jpeg", "surprised.jpeg", "group.jpeg", "justin.jpg"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    e = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "MER_DEVICE": "cpu",
         "GRADIO_TEMP_DIR": str(tmp / "gradio"), "TMPDIR": str(tmp), **env}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=e, stdout=open(tmp / "app.log", "wb"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while time.time() - t0 < 300:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}: see {tmp / 'app.log'}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("app.py did not answer within 300 s")


def make_inputs(tmp: Path) -> dict:
    """Photos (real), clips (the real single_face.mp4 and a generated 3 s two-face clip), live frames
    (every 3rd frame of the real clip as PNG)."""
    import cv2
    from batch.synth import make_face_clip
    photos = [MEDIA / p for p in PHOTOS if (MEDIA / p).is_file()]
    two = make_face_clip(tmp / "two_faces.mp4", [MEDIA / "single_face.jpg", MEDIA / "obama.jpg"], seconds=3.0)
    clips = [MEDIA / "single_face.mp4", two, ROOT / "examples" / "astronaut.mp4"]
    frames = []
    cap, i = cv2.VideoCapture(str(MEDIA / "single_face.mp4")), 0
    while (got := cap.read())[0]:
        if i % 3 == 0:
            frames.append(tmp / f"live{i:03d}.png")
            cv2.imwrite(str(frames[-1]), got[1])
        i += 1
    cap.release()
    return {"photos": photos, "clips": clips, "frames": frames}


class Tally:
    def __init__(self):
        self.lock, self.c, self.errors = threading.Lock(), Counter(), []

    def add(self, kind: str, outcome: str, err: str = "") -> None:
        with self.lock:
            self.c[(kind, outcome)] += 1
            if outcome == "failed" and len(self.errors) < 50:
                self.errors.append(f"{kind}: {err}")

    def snapshot(self) -> dict:
        with self.lock:
            return {f"{k}:{o}": n for (k, o), n in sorted(self.c.items())}


def is_queue_full(e: Exception) -> bool:
    return "queue is full" in str(e).lower()


def check_image(path) -> None:
    from PIL import Image
    p = Path(path)
    if p.stat().st_size == 0:
        raise AssertionError("empty picture")
    Image.open(p).load()
    p.unlink(missing_ok=True)  # the client's download folder stays small


def one_request(client, kind: str, inputs: dict, rng: random.Random) -> None:
    from gradio_client import handle_file
    if kind in ("image", "gradcam"):
        out = client.predict(handle_file(str(rng.choice(inputs["photos"]))), kind == "gradcam",
                             api_name="/predict_image")
        check_image(out[0])
        if not isinstance(out[4], dict) or "n_faces" not in out[4]:
            raise AssertionError(f"no JSON result: {out[4]!r}")
    else:
        out = client.predict(handle_file(str(rng.choice(inputs["clips"]))), api_name="/analyze_video")
        csv = Path(out[4] if isinstance(out[4], str) else out[4]["path"])
        if sum(1 for _ in open(csv)) < 2:
            raise AssertionError("the CSV has no rows")
        csv.unlink(missing_ok=True)
        v = out[1]["video"] if isinstance(out[1], dict) else out[1]
        if v and Path(v).is_file():
            Path(v).unlink()


def downloads(dl: Path, name: str) -> str:
    """A download folder per client: gradio_client saves an output under a folder named by its
    content, so clients sharing one would read and remove each other's identical results."""
    d = dl / name
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def client_loop(url: str, k: int, inputs: dict, tally: Tally, stop: float, dl: Path) -> None:
    from gradio_client import Client
    rng = random.Random(k)
    client = Client(url, verbose=False, httpx_kwargs=HTTP, download_files=downloads(dl, f"c{k}"))
    while time.time() < stop:
        kind = rng.choices(["image", "gradcam", "video"], [3, 2, 1])[0]
        try:
            one_request(client, kind, inputs, rng)
            tally.add(kind, "answered")
        except Exception as e:
            if is_queue_full(e):
                tally.add(kind, "refused (queue full)")
                time.sleep(1.0)
            else:
                tally.add(kind, "failed", f"{type(e).__name__}: {str(e)[:300]}")


def live_loop(url: str, inputs: dict, tally: Tally, stop: float, dl: Path, every: float = 0.25) -> None:
    """One viewer streaming a clip's frames to /live_frame; a new session every 120 frames."""
    from gradio_client import Client, handle_file
    n = 0
    while time.time() < stop:
        client = Client(url, verbose=False, httpx_kwargs=HTTP, download_files=downloads(dl, "live"))
        for _ in range(120):
            if time.time() >= stop:
                break
            frame = inputs["frames"][n % len(inputs["frames"])]
            n += 1
            t = time.time()
            try:
                img, js = client.predict(handle_file(str(frame)), api_name="/live_frame")
                check_image(img)
                if "faces" not in js and "n_faces" not in js:
                    raise AssertionError(f"no faces in the live JSON: {list(js)}")
                tally.add("live", "answered")
            except Exception as e:
                tally.add("live", "refused (queue full)" if is_queue_full(e) else "failed",
                          f"{type(e).__name__}: {str(e)[:300]}")
            time.sleep(max(0.0, every - (time.time() - t)))


def burst(url: str, n: int, inputs: dict, tally: Tally, dl: Path) -> dict:
    """n fresh clients, one photo each, all at once (a barrier): answered or refused, never lost."""
    from gradio_client import Client
    barrier, res = threading.Barrier(n), Counter()
    lock = threading.Lock()

    def one(k):
        rng = random.Random(1000 + k)
        try:
            client = Client(url, verbose=False, httpx_kwargs=HTTP, download_files=downloads(dl, f"b{k}"))
        except Exception as e:
            outcome = "failed"
            tally.add("burst", outcome, f"connect: {type(e).__name__}: {e}")
            barrier.abort()  # the others go at once (a broken barrier), never wait for this one
        else:
            try:
                barrier.wait(timeout=300)
            except threading.BrokenBarrierError:
                pass
            try:
                one_request(client, "image", inputs, rng)
                outcome = "answered"
                tally.add("burst", outcome)
            except Exception as e:
                outcome = "refused (queue full)" if is_queue_full(e) else "failed"
                tally.add("burst", outcome, f"{type(e).__name__}: {str(e)[:300]}")
        with lock:
            res[outcome] += 1

    ts = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(900)
    return dict(res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=16, help="steady clients (one of them the live viewer)")
    ap.add_argument("--burst", type=int, default=64, help="clients sending one photo each at once")
    ap.add_argument("--burst-at", type=float, default=0.5, help="when the burst comes, as a fraction of the run")
    ap.add_argument("--warmup-min", type=float, default=5.0, help="RSS flatness is measured from this minute")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples (printed once a minute)")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args(argv)
    if not (MEDIA / "single_face.jpg").is_file():
        print(f"real media not found at {MEDIA} (set MER_MEDIA)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="mer-soak-app-"))
    inputs = make_inputs(tmp)
    dl = tmp / "downloads"
    dl.mkdir()
    proc, url = start_server(tmp, {})
    t0 = time.time()
    print(f"server pid {proc.pid} at {url}; {args.clients} clients for {args.minutes:g} min, burst of "
          f"{args.burst} at minute {args.minutes * args.burst_at:.1f}; log {tmp / 'app.log'}", flush=True)
    stop = t0 + args.minutes * 60
    tally = Tally()
    threads = [threading.Thread(target=live_loop, args=(url, inputs, tally, stop, dl), daemon=True)]
    threads += [threading.Thread(target=client_loop, args=(url, k, inputs, tally, stop, dl), daemon=True)
                for k in range(args.clients - 1)]
    for t in threads:
        t.start()
    end_rss = float("nan")
    samples, burst_res, burster, burst_t = [], {}, None, t0 + args.minutes * 60 * args.burst_at
    next_sample = t0
    try:
        while time.time() < stop:
            now = time.time()
            if burster is None and now >= burst_t:
                print(f"[{(now - t0) / 60:5.1f} min] burst of {args.burst} clients", flush=True)

                def run_burst():
                    burst_res.update(burst(url, args.burst, inputs, tally, dl))
                    print(f"[{(time.time() - t0) / 60:5.1f} min] burst: {burst_res}", flush=True)
                burster = threading.Thread(target=run_burst, daemon=True)
                burster.start()
                threads.append(burster)
            if now >= next_sample:
                if proc.poll() is not None:
                    print("the server died", flush=True)
                    break
                r = rss_mb(proc.pid)
                samples.append(((now - t0) / 60, r))
                if len(samples) % max(1, round(60 / args.sample_s)) == 1:
                    print(f"[{(now - t0) / 60:5.1f} min] server RSS {r:7.1f} MB  load {os.getloadavg()[0]:.2f}  "
                      f"{tally.snapshot()}", flush=True)
                next_sample += args.sample_s
            time.sleep(min(1.0, max(0.0, next_sample - time.time())))
        for t in threads:
            t.join(900)
        end_rss = rss_mb(proc.pid)  # idle, after the last answers (not part of the per-minute peaks)
        print(f"[{(time.time() - t0) / 60:5.1f} min] server RSS {end_rss:7.1f} MB (end, idle)", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    # RSS swings by +-15 % with the requests in flight (two videos and Grad-CAM at once, a burst):
    # each minute's median (12 samples) is its level, compared with the warm-up minute's; each
    # minute's peak (high-water mark) is reported beside it
    minutes: dict[int, list[float]] = {}
    for m, r in samples:
        minutes.setdefault(int(m), []).append(r)
    levels = {m: float(np.median(v)) for m, v in sorted(minutes.items())}
    peaks = {m: max(v) for m, v in sorted(minutes.items())}
    after = [r for m, r in levels.items() if m >= int(args.warmup_min)]
    base = after[0] if after else float("nan")
    peak_ratio = max(after) / base if after else float("nan")
    end_ratio = after[-1] / base if after else float("nan")
    peaks_after = [r for m, r in peaks.items() if m >= int(args.warmup_min)]
    # the trend: each later 5-minute window's mean level over the first window's after the warm-up
    win = [float(np.mean(after[i:i + 5])) for i in range(0, max(1, len(after) - 4))] if after else []
    trend = max(win) / win[0] if win else float("nan")
    counts = tally.snapshot()
    failed = sum(n for k, n in counts.items() if k.endswith(":failed"))
    ok = failed == 0 and bool(win) and trend <= 1.10
    summary = {"minutes": args.minutes, "clients": args.clients, "burst": args.burst, "burst_result": burst_res,
               "counts": counts, "failed": failed, "errors": tally.errors[:10],
               "rss_median_per_minute_mb": {m: round(r, 1) for m, r in levels.items()},
               "rss_peak_per_minute_mb": {m: round(r, 1) for m, r in peaks.items()},
               "rss_peak_highest_over_warmup_peak": round(max(peaks_after) / peaks_after[0], 3) if peaks_after else None,
               "rss_first_mb": samples[0][1], "rss_end_idle_mb": round(end_rss, 1),
               "rss_at_warmup_mb": base, "rss_highest_over_warmup_ratio": round(peak_ratio, 3),
               "rss_end_over_warmup_ratio": round(end_ratio, 3),
               "rss_5min_window_highest_over_first": round(trend, 3), "passed": ok, "cpus": os.cpu_count()}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    print(f"{'PASS' if ok else 'FAIL'}: {failed} failed requests; RSS level, 5-minute windows from minute "
          f"{int(args.warmup_min)} on: highest {trend:.3f}x the first; per-minute RSS (median) from minute "
          f"{int(args.warmup_min)} to the end: highest {peak_ratio:.3f}x, last {end_ratio:.3f}x of minute "
          f"{int(args.warmup_min)}'s ({base:.0f} MB; the first sample was {samples[0][1]:.0f} MB); "
          f"per-minute peaks: highest {summary['rss_peak_highest_over_warmup_peak']}x of minute "
          f"{int(args.warmup_min)}'s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
