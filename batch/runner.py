"""The local engine: a few persistent (spawned) worker processes, each taking video after video.

A worker starts once (imports, models) and then analyses one video at a time for the driver. A
decoder segfault, a hang past --timeout-per-video or a resident memory over --max-memory-per-worker
ends that worker only: the driver kills it, records its video as failed with the reason, and starts
a fresh worker for the next video. Every deadline counts from its own start: a worker must have
loaded the model within --startup-timeout of being started, a video must finish within
--timeout-per-video of being handed to a loaded worker (however long that worker has lived).
After --max-videos-per-worker videos a worker is retired (told to exit once its last video is
recorded) and a fresh one takes the next video: a second line of defence against slow leaks in
native libraries. Workers die with the driver (PR_SET_PDEATHSIG), so `kill -9` of the driver
leaves nothing running; temporary files of an interrupted run are removed at the start of the next.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from urllib.parse import quote

from mer.files import VIDEO_EXTS

from .manifest import Manifest

OUTPUT_SUFFIXES = {"frames": ".frames.csv", "intervals": ".intervals.csv", "html": ".html"}
COMPLETE = ("done", "partial")  # statuses whose outputs are there (partial: what decoded, with the reason)
STARTUP_LIMIT_S = 600.0         # default: a fresh worker must be ready (imports, models) within this
MAX_VIDEOS_PER_WORKER = 100     # default: a worker is replaced after this many videos (0 = never)
# The workers' environment (set by the CLI before they start, inherited):
# - few malloc arenas: freed frame buffers go back instead of piling up in per-thread arenas;
# - a bounded oneDNN primitive cache: MTCNN's later stages see a new batch shape on most chunks, so
#   the default (1024 entries) grows for a long time; 64 keeps the common shapes (8 cost ~10 % of
#   detection time; 10-minute vs 10-second clip peak memory 1.08 with 64, bench/batch.py);
# - OpenMP threads that sleep rather than spin while they wait: a video runs torch in two threads at
#   once (detection/classification, and the face mesh beside the motion score), and spinning waiters
#   of one pool burn the cores the other needs: with the face mesh on, ~35-38 vs ~29-33 fps and ~50
#   vs ~62 ms CPU per frame on a 2-core CPU (bench/batch.py). Not set for the app: sleeping waiters
#   cost a single photo's latency (~170 vs ~100 ms), which the image and live tabs feel.
WORKER_ENV = {"MALLOC_ARENA_MAX": "2", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64", "OMP_WAIT_POLICY": "PASSIVE"}


@dataclass
class Job:
    checkpoint: str
    device: str
    settings: dict                      # mer.video.VideoSettings as a dict
    settings_hash: str
    threads: int = 1
    timeout: float | None = None
    max_memory_mb: float | None = None  # resident memory cap of a worker while it analyses a video
    micro_checkpoint: str = ""          # the micro-expression model ("": the shipped one, if installed)
    startup_limit: float = STARTUP_LIMIT_S  # seconds from a worker's start to its model loaded
    max_videos: int = MAX_VIDEOS_PER_WORKER  # videos per worker before it is replaced (0 = never)
    extra: dict = field(default_factory=dict)


def display_name(rel: str) -> str:
    """A path as text that can be written anywhere: bytes that are not UTF-8 (kept by Python as
    surrogate escapes) become U+FFFD. The file itself is still read by its real name."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


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


def precheck(path: Path) -> str | None:
    """The reason a file cannot be a video that is found without a worker (missing, empty: the
    decoder's own check and words), or None."""
    from mer.decode import VideoError, check_file
    try:
        check_file(path)
    except VideoError as e:
        return display_name(str(e))
    return None


def outputs_for(rel: str) -> dict[str, str]:
    """Output paths (relative to OUT_DIR) of one video: the input tree mirrored, full file name kept
    (so clip.mp4 and clip.mov do not collide)."""
    return {k: rel + s for k, s in OUTPUT_SUFFIXES.items()}


def record(manifest: Manifest, rel: str, job: Job, status: str, payload, secs: float) -> str:
    """Store a video's outcome in the manifest; returns the status stored (done, partial, failed)."""
    if status == "done":
        summary = dict(payload)
        partial = summary.pop("partial", "")
        manifest.set(rel, status="partial" if partial else "done", hash=job.settings_hash,
                     outputs=outputs_for(rel), summary=summary, seconds=secs,
                     **({"reason": partial} if partial else {}))
        return "partial" if partial else "done"
    manifest.set(rel, status="failed", hash=job.settings_hash, reason=payload, seconds=secs)
    return "failed"


def _partial_reason(info: dict) -> str:
    p = info.get("partial")
    if not p:
        return ""
    return p if isinstance(p, str) else str(info.get("partial_reason") or "only part of the video could be decoded")


def load_predictor(job: Job, checkpoint: str | None = None, micro_checkpoint: str | None = None):
    """The worker's one Predictor (torch threads and exact CUDA math set first), with its
    micro-expression Predictor as `.micro` (None when no micro model is installed: micro intervals
    are then classified by the per-frame model). A micro checkpoint that fails to load is an error
    here, never a silent fallback."""
    import torch
    from mer.predict import MICRO_CHECKPOINT, Predictor
    torch.set_num_threads(max(1, job.threads))  # exact CUDA math: Predictor sets it (mer.faces.exact_cuda)
    predictor = Predictor(checkpoint or job.checkpoint, device=job.device)
    micro = micro_checkpoint or job.micro_checkpoint or (MICRO_CHECKPOINT if MICRO_CHECKPOINT.is_file() else None)
    predictor.micro = Predictor(micro, device=predictor.device) if micro else None
    return predictor


def describe(job: Job, predictor) -> dict:
    """What a loaded worker runs, for the driver's settings hash: the device, the checkpoint and the
    micro-expression checkpoint as resolved with their model cards, every video setting (the job's,
    defaults filled in)."""
    from dataclasses import asdict
    micro = predictor.micro
    return {"device": str(predictor.device), "checkpoint": str(Path(predictor.checkpoint).resolve()),
            "card": predictor.card.to_json(), "settings": asdict(video_settings(job)),
            "micro_checkpoint": str(Path(micro.checkpoint).resolve()) if micro else "",
            "micro_card": micro.card.to_json() if micro else ""}


def video_settings(job: Job):
    """The job's mer.video.VideoSettings (fields the job leaves out take their defaults)."""
    from mer.spotting import DEFAULT_METHOD, SpotConfig
    from mer.tracking import TrackerConfig
    from mer.video import VideoSettings
    s = dict(job.settings)
    spot = dict(s.get("spotting", {}))
    return VideoSettings(**{**s, "tracker": TrackerConfig(**s.get("tracker", {})),
                            "spotting": SpotConfig.for_method(spot.pop("method", DEFAULT_METHOD), **spot)})


def analyze_one(video: str, rel: str, out_dir: str, job: Job, progress=None, predictor=None) -> dict:
    """Analyse one video and write its reports; returns the summary fields (with `partial`, the
    reason, when only part of the video decoded). Raises on failure. Shared by the local worker and
    the Ray engine."""
    from mer import report
    from mer.memory import release_memory
    from mer.video import analyze_video
    settings = video_settings(job)
    predictor = predictor or load_predictor(job)
    name = display_name(rel)

    def each_chunk(done: int, total: int) -> None:
        release_memory()  # every chunk (~25 ms each): every 4th chunk gave 1.23x the peak memory on 10 min
        if progress:
            progress(done, total)
    with _decodable_path(video) as path:
        res = analyze_video(path, predictor, settings, progress=each_chunk, name=name,
                            micro_predictor=predictor.micro or False)
    res.path = display_name(str(video))  # the report's title must be writable text
    out = Path(out_dir)
    target = out / rel
    js = os.path.relpath(out / report.PLOTLY_JS, target.parent)
    report.write_video_report(res, target.parent, target.name, plotlyjs=Path(js).as_posix())
    i = res.info
    top = res.frames["top_class"].dropna()
    shares = {c: round(float((top == c).mean()), 4) for c in res.classes} if len(top) else {}
    return {"duration_s": i["duration_s"], "frames": i["n_frames"], "fps": i["fps"], "faces": i["n_faces"],
            "dominant_class": i["dominant_class"], "intervals": i["n_intervals"], "class_shares": shares,
            "partial": _partial_reason(i)}




@contextlib.contextmanager
def _decodable_path(video: str):
    """The decoder takes UTF-8 paths only: a name with other bytes is read through a temporary
    symlink with a plain name."""
    if display_name(video) == video:
        yield video
        return
    with tempfile.TemporaryDirectory(prefix="mer-name-") as d:
        link = Path(d) / ("video" + Path(display_name(video)).suffix)
        os.symlink(os.path.abspath(video), link)
        yield str(link)


def _receive(conn):
    """The driver's next message; None when it says stop or the pipe is gone."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _worker(conn, parent: int) -> None:
    """A persistent worker: imports at once (while the driver parses and checks), then
    ("init", out_dir, job) -> loads and validates the model -> ("ready", describe(...)) or
    ("ready", {"error": reason}); then ("run", video, rel) -> ("start",), ("progress", d, t)...,
    ("done", summary) | ("failed", reason); None ends it, at once (os._exit: every output is
    written and closed by then, and tearing down torch's modules would only cost the driver's wait)."""
    from mer.decode import die_with_parent
    die_with_parent(parent)
    try:  # the heavy imports, before the job is known
        import mer.predict  # noqa: F401
        import mer.report  # noqa: F401
        import mer.video  # noqa: F401
    except Exception:
        pass  # reported below, when the model is loaded
    msg = _receive(conn)
    if msg is None:
        os._exit(0)
    _, out_dir, job = msg
    try:
        predictor = load_predictor(job)
        info, init_error = describe(job, predictor), None
        from mer.video import VideoError
    except Exception as e:  # the driver stops on this (first worker) or fails each video given
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        info, init_error, VideoError = {"error": reason}, f"worker could not start: {reason}", ValueError
    conn.send(("ready", info))
    while (msg := _receive(conn)) is not None:
        _, video, rel = msg
        conn.send(("start",))
        if init_error:
            conn.send(("failed", init_error))
            continue
        try:
            row = analyze_one(video, rel, out_dir, job, progress=lambda d, t: conn.send(("progress", d, t)),
                              predictor=predictor)
            conn.send(("done", row))
        except VideoError as e:
            conn.send(("failed", str(e)))
        except MemoryError:
            conn.send(("failed", "out of memory"))
        except Exception as e:  # any other error fails this video only, with its reason
            conn.send(("failed", f"{type(e).__name__}: {e}"))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _death_reason(code: int | None) -> str:
    if code is not None and code < 0:
        sig = signal.Signals(-code).name
        hint = {"SIGSEGV": "decoder crash", "SIGKILL": "killed, likely out of memory",
                "SIGBUS": "decoder crash", "SIGABRT": "aborted"}.get(sig, "")
        return f"worker died with {sig}" + (f" ({hint})" if hint else "")
    return f"worker exited with code {code} without a result"


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc; 0 where unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def worker_pids(pid: int) -> list[int]:
    """The batch worker processes (multiprocessing spawn children) of process `pid` (Linux /proc;
    empty where unavailable). For watching a run from outside: the soak, the tests."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
                        and b"spawn_main" in (p / "cmdline").read_bytes()):
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def summary_row(rel: str, entry: dict | None) -> dict:
    e = entry or {"status": "pending"}
    row = {"video": rel, "status": e.get("status", "pending"), "error": e.get("reason", ""),
           "seconds": e.get("seconds", "")}
    row.update(e.get("summary", {}))
    row = {k: display_name(v) if isinstance(v, str) else v for k, v in row.items()}
    if e.get("status") in COMPLETE:
        row["report"] = quote(os.fsencode(e["outputs"]["html"]))
    return row


class Progress:
    """tqdm bars (videos overall + frames of each running video) on a terminal; plain lines (one
    per started and finished video) when stderr is a file or pipe, so logs stay readable."""

    def __init__(self, total: int, initial: int, slots: int = 0):
        self.total, self.n = total, initial
        self.tty = sys.stderr.isatty()
        self.bars: dict = {}
        if self.tty:
            from tqdm import tqdm
            self._tqdm = tqdm
            self.overall = tqdm(total=total, initial=initial, desc="videos", unit="video", position=0,
                                dynamic_ncols=True)
            self.free = list(range(1, slots + 1))

    def write(self, text: str) -> None:
        if self.tty:
            self._tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def started(self, key, rel: str) -> None:
        if self.tty:
            pos = min(self.free) if self.free else len(self.bars) + 1
            if pos in self.free:
                self.free.remove(pos)
            self.bars[key] = (self._tqdm(total=0, desc=display_name(rel)[-40:], unit="frame", position=pos,
                                         leave=False, dynamic_ncols=True), pos)
        else:
            self.write(f"[{self.n}/{self.total}] started {display_name(rel)}")

    def frames(self, key, done: int, total: int) -> None:
        if key in self.bars:
            bar = self.bars[key][0]
            bar.total, bar.n = total, done
            bar.refresh()

    def finished(self, key, rel: str, status: str, reason: str = "", secs: float | None = None) -> None:
        self.n += 1
        if key in self.bars:
            bar, pos = self.bars.pop(key)
            bar.close()
            self.free.append(pos)
        name = display_name(rel)
        if status == "failed":
            self.write(f"FAILED {name}: {reason}")
        elif status == "partial":
            self.write(f"PARTIAL {name}: {reason}")
        if self.tty:
            self.overall.update(1)
        elif status != "failed":
            self.write(f"[{self.n}/{self.total}] {status} {name}" + (f" ({secs:.1f} s)" if secs is not None else ""))

    def close(self) -> None:
        for bar, _ in self.bars.values():
            bar.close()
        if self.tty:
            self.overall.close()


class _Slot:
    """One worker process and the video it is working on."""

    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.spawned = time.monotonic()
        self.job: Job | None = None        # the job it was given (init)
        self.loaded = False                # it said "ready" (model loaded)
        self.rel: str | None = None
        self.sent: float | None = None     # when its current video was handed to it
        self.started: float | None = None  # when its current video started (worker's "start")
        self.videos = 0                    # videos it has finished (done or failed)

    def init(self, out_dir: Path, job: Job) -> "_Slot":
        self.conn.send(("init", str(out_dir), job))
        self.job = job
        return self

    def give(self, input_dir: Path, rel: str) -> None:
        self.rel, self.sent, self.started = rel, time.monotonic(), None
        self.conn.send(("run", str(input_dir / rel), rel))

    def overdue(self, now: float, job: Job) -> str | None:
        """Why this slot's worker must be killed now (its video, if any, fails with that reason), or
        None. Each limit counts from its own start: loading from the worker's start, a video from
        the moment it was handed to a loaded worker (not from when that worker was started)."""
        if not self.loaded:
            if now - self.spawned > job.startup_limit:
                return f"worker did not start within {job.startup_limit:g} s (worker killed)"
        elif self.rel is not None:
            if job.timeout and now - (self.started or self.sent) > job.timeout:
                return f"timed out after {job.timeout:g} s (worker killed)"
            if job.max_memory_mb and self.started and rss_mb(self.proc.pid) > job.max_memory_mb:
                return f"over the memory limit of {job.max_memory_mb:g} MB (worker killed)"
        return None

    def retire(self) -> None:
        """Ask the worker to exit (it has no video): it leaves at once, all its outputs written."""
        try:
            self.conn.send(None)
        except OSError:
            pass

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class WorkerPool:
    """Worker processes started early (by the CLI, before it parses its checks) so that their
    imports overlap the driver's work; `handshake` gives them the job and returns what the first
    one loaded (device, checkpoint, card, settings: the driver never imports torch); run_local
    then hands them videos."""

    def __init__(self, n: int):
        self.ctx = mp.get_context("spawn")
        self.slots = [_Slot(self.ctx) for _ in range(max(0, n))]

    def handshake(self, out_dir: Path, job: Job) -> dict:
        """Send `job` to every worker; wait for the first to load and validate the model. -> its
        describe() dict, or {"error": reason} (bad checkpoint, no CUDA, a worker that died)."""
        if not self.slots:
            raise ValueError("handshake needs at least one worker")
        for slot in self.slots:
            slot.init(out_dir, job)
        first = self.slots[0]
        if not first.conn.poll(job.startup_limit):
            return {"error": f"the worker did not load the model within {job.startup_limit:g} s"}
        msg = _receive(first.conn)
        if msg is None:
            first.proc.join(5)
            return {"error": f"the worker could not start: {_death_reason(first.proc.exitcode)}"}
        first.loaded = True
        return msg[1]

    def close(self) -> None:
        for slot in self.slots:
            slot.kill()
        self.slots = []


def run_local(input_dir: Path, out_dir: Path, videos: list[str], todo: list[str], manifest: Manifest,
              job: Job, workers: int, on_done=None, pool: WorkerPool | None = None) -> None:
    """Run the `todo` videos on `workers` persistent workers (those of `pool`, already importing,
    if given), updating the manifest as each ends (then calling on_done(), e.g. to refresh
    index.html). A worker that has finished job.max_videos videos is retired and replaced."""
    pool = pool or WorkerPool(0)
    ctx = pool.ctx
    queue = deque(todo)
    progress = Progress(len(videos), len(videos) - len(todo), workers)
    slots: list[_Slot] = [slot if slot.job else slot.init(out_dir, job) for slot in pool.slots[:len(todo)]]
    for slot in pool.slots[len(todo):]:  # more workers than videos
        slot.kill()
    pool.slots = []
    retired: list[_Slot] = []  # told to exit; reaped as they go

    def end(slot: _Slot, status: str, payload, replace: bool) -> None:
        rel = slot.rel
        secs = round(time.monotonic() - (slot.started or slot.sent or slot.spawned), 2)
        stored = record(manifest, rel, job, status, payload, secs)
        progress.finished(slot, rel, stored, payload if stored == "failed" else manifest.videos[rel].get("reason", ""),
                          secs)
        slot.rel, slot.sent, slot.started = None, None, None
        slot.videos += 1
        if replace:
            slot.kill()
            slots.remove(slot)
        elif job.max_videos and slot.videos >= job.max_videos:  # recycled: a fresh worker takes the next one
            slot.retire()
            slots.remove(slot)
            retired.append(slot)
        if on_done:
            on_done()

    first = True
    try:
        while queue or any(s.rel for s in slots):
            while len(slots) < min(workers, len(queue) + sum(s.rel is not None for s in slots)):
                slots.append(_Slot(ctx).init(out_dir, job))
            for slot in slots:
                if slot.rel is None and queue:
                    rel = queue.popleft()
                    manifest.set(rel, status="pending", hash=job.settings_hash)
                    slot.give(input_dir, rel)
            if first and on_done:  # index.html lists every video as soon as the first ones run
                on_done()
            first = False
            for slot in [s for s in retired if not s.proc.is_alive()]:
                slot.kill()  # reaps it
                retired.remove(slot)
            by_conn = {s.conn: s for s in slots}
            for conn in wait(list(by_conn), timeout=0.5):
                slot = by_conn[conn]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):  # the worker is gone: crashed or killed from outside
                    slot.proc.join(5)
                    if slot.rel:
                        end(slot, "failed", _death_reason(slot.proc.exitcode), replace=True)
                    else:
                        slot.kill()
                        slots.remove(slot)
                    continue
                if msg[0] == "ready":  # a worker loaded the model (any video sent is waiting in its pipe)
                    slot.loaded = True
                    if slot.sent:  # its video's clock starts now, not while the worker was loading
                        slot.sent = time.monotonic()
                elif msg[0] == "start":
                    slot.started = time.monotonic()
                    progress.started(slot, slot.rel)
                elif msg[0] == "progress":
                    progress.frames(slot, msg[1], msg[2])
                elif slot.rel:  # done / failed
                    end(slot, msg[0], msg[1], replace=False)
            now = time.monotonic()
            for slot in list(slots):
                reason = slot.overdue(now, job)
                if reason and slot.rel:
                    end(slot, "failed", reason, replace=True)
                elif reason:  # never loaded and had no video yet
                    slot.kill()
                    slots.remove(slot)
        for slot in slots:  # no more videos: let the workers exit
            slot.retire()
        for slot in slots + retired:
            slot.proc.join(10)
    finally:
        for slot in slots + retired:
            slot.kill()
        progress.close()
