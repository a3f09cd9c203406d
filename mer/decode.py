"""The decode stage of mer.video: a video file -> chunks of RGB frames with their real timestamps,
numbered as players number them.

    with open_source("clip.mp4", chunk_size=64) as src:
        src.info                      # StreamInfo: n_frames, fps, width, height, duration_s, ...
        for chunk in src.chunks():    # FrameChunk: index, start_s, end_s, frames (k, H, W, 3) uint8
            ...
        src.info.partial              # None, or why only part of the file could be decoded

- decord indexes the file (real per-frame timestamps, so variable frame rate is kept); OpenCV's
  FFmpeg reader decodes the frames in order, one per read (memory stays one chunk however long the
  video: decord's reader decodes far ahead of its caller, see DecordSource).
  Frames an MP4 edit list hides (negative presentation times, e.g. the first 3 of no_face.mp4's
  98 coded frames) are dropped: the frames players show are numbered from 0, time from 0.
- A file decord rejects that still decodes in part (a half-downloaded faststart MP4: its index is
  there, its media data stops) is read with OpenCV as far as it goes and marked partial with the
  reason; a decoding error in mid-stream also ends the stream as partial (what decoded is kept).
- Files that cannot be read get a VideoError that says why in words: no such file, empty, no index
  (moov atom), no video stream, not a video.
- A folder of frame images (SAMM-LV, CAS(ME)^2: one image per frame) is a source too
  (FolderSource): its images in natural order of their names (img2 before img10), frame i at
  i / fps seconds (the dataset's frame rate, given by the caller), read with mer.images.
- `isolate=True` decodes in a child process, this file run as a script (it imports only numpy,
  decord and, for partial files, OpenCV; never torch or the app), under a memory cap (RLIMIT_AS)
  and a time limit; frames come back through a pipe. A decoder crash, hang or out-of-memory ends
  the child only and becomes a VideoError ("the decoder crashed ...").

This module imports only the standard library and numpy at the top, so the child starts fast.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

_EPS = 1e-6


class VideoError(ValueError):
    """The video cannot be analysed (unreadable, empty, over a limit); the message says why."""


@dataclass
class StreamInfo:
    n_frames: int                 # presented frames the file says it has (decoded may be fewer: partial)
    fps: float                    # the container's average frame rate
    width: int
    height: int
    duration_s: float
    backend: str = "decord"       # "decord", or "opencv" for files decord rejects
    hidden: int = 0               # coded frames an edit list hides (dropped)
    partial: str | None = None    # set once the stream ends early: why


@dataclass
class FrameChunk:
    index: np.ndarray             # (k,) int64 frame numbers, from 0 in presentation order
    start_s: np.ndarray           # (k,) float64 presentation time of each frame
    end_s: np.ndarray             # (k,) float64 start of the next frame (or start + 1/fps)
    frames: np.ndarray            # (k, H, W, 3) uint8 RGB


def clean_error(e: BaseException | str, path: Path) -> str:
    """A decoder's message without its clock time, source location or the absolute path."""
    s = str(e).strip()
    msg = s.splitlines()[0] if s else type(e).__name__
    msg = re.sub(r"\[\d\d:\d\d:\d\d\]\s*", "", msg)
    msg = re.sub(r"\S+\.(cc|cpp|h):\d+:\s*", "", msg)
    return msg.replace(str(path), path.name)[:200]


# ---------------------------------------------------------------- diagnosis of unreadable files

_MP4_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pdin", b"moof", b"mfra",
            b"styp", b"sidx", b"meta"}


def mp4_boxes(path: Path, limit: int = 4096) -> tuple[list[tuple[bytes, int, int]], int] | None:
    """Top-level ISO-BMFF boxes (type, offset, size) of an MP4/MOV file and its size, or None when
    the file does not start like one."""
    size = path.stat().st_size
    out: list[tuple[bytes, int, int]] = []
    with open(path, "rb") as f:
        off = 0
        while off + 8 <= size and len(out) < limit:
            f.seek(off)
            head = f.read(16)
            n, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if not out and kind not in _MP4_TOP:
                return None
            if n == 1 and len(head) == 16:
                n = int.from_bytes(head[8:16], "big")
            elif n == 0:
                n = size - off
            out.append((kind, off, n))
            if n < 8:
                break
            off += n
    return (out, size) if out else None


def diagnose(path: Path, error: BaseException | str) -> str:
    """Why decord could not open `path`, in words. Raises VideoError for files nothing can decode
    (no index, no video stream); returns the reason for files that may still decode in part."""
    raw = str(error)
    boxes = mp4_boxes(path)
    if boxes is not None:
        kinds = {k for k, _, _ in boxes[0]}
        if b"moov" not in kinds and b"moof" not in kinds:
            raise VideoError(f"{path.name}: the file's index (MP4 'moov' atom) is missing, so its frames "
                             "cannot be located; the file is incomplete (an interrupted recording or "
                             "download?)")
    if "st_nb >= 0" in raw or "stream not found" in raw.lower():
        raise VideoError(f"{path.name}: no video stream (the file has no video track, e.g. audio only)")
    if boxes is not None:
        kind, off, n = boxes[0][-1]
        if off + n > boxes[1]:
            return (f"the file is cut short (a partial download?): it ends after {boxes[1]:,} bytes, "
                    f"inside its media data")
    return clean_error(raw, path)


# ---------------------------------------------------------------- in-process sources

class DecordSource:
    """decord's index (real per-frame timestamps, frames with negative presentation time, e.g. an
    edit list's pre-roll, dropped), the frames decoded in order by OpenCV's FFmpeg reader.

    decord's own reader is not used for the frames: it hands packets to its decoding thread for as
    long as that thread has produced nothing, then decodes them all ahead of its caller, so a reader
    held open holds hundreds to thousands of decoded frames (a 2-minute 640x360 clip: +1.5 GB after
    its first 128 frames; more the longer the file). OpenCV decodes one frame per read. It also shows
    the frames a player shows where an edit list hides some (decord's pixels ignore the edit list
    that its timestamps honour)."""

    def __init__(self, path: Path, vr, chunk_size: int):
        n = len(vr)
        try:
            ts = np.asarray(vr.get_frame_timestamp(list(range(n))), np.float64).reshape(n, 2)
            fps = float(vr.get_avg_fps())
            h, w = vr[0].shape[:2]
        except Exception as e:
            raise VideoError(f"{path.name}: cannot read frame timing ({clean_error(e, path)})") from None
        hidden = int((ts[:, 0] < -_EPS).sum())
        if hidden == n or np.any(ts[hidden:, 0] < -_EPS):  # not a leading pre-roll: keep everything
            hidden = 0
        self.path, self.chunk_size, self.ts = path, max(1, int(chunk_size)), ts[hidden:]
        self.vr = None  # only the index is needed from decord (see above); its reader stops here
        self.info = StreamInfo(n - hidden, fps, int(w), int(h), float(self.ts[-1, 1] - self.ts[0, 0]),
                               "decord", hidden)

    def chunks(self) -> Iterator[FrameChunk]:
        import cv2
        n, w, h = self.info.n_frames, self.info.width, self.info.height
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        try:
            for start in range(0, n, self.chunk_size):
                stop = min(n, start + self.chunk_size)
                frames = np.empty((stop - start, h, w, 3), np.uint8)
                k = 0
                while k < stop - start:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    if bgr.shape[:2] != (h, w):  # as decord: every frame at the first frame's size
                        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
                    cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=frames[k])
                    k += 1
                if k < stop - start:
                    why = f"decoding failed in frames {start + k}-{n - 1}"
                    if start + k == 0:
                        raise VideoError(f"{self.path.name}: {why}")
                    self.info.partial = f"{why}; the first {start + k} of {n} frames were analysed"
                    self.info.n_frames = start + k
                if k:
                    ts = self.ts[start:start + k]
                    chunk = FrameChunk(np.arange(start, start + k, dtype=np.int64), ts[:, 0].copy(),
                                       ts[:, 1].copy(), frames[:k])
                    del frames
                    yield chunk
                    del chunk  # not alive while the next chunk decodes
                if self.info.partial:
                    return
        finally:
            cap.release()

    def close(self) -> None:
        self.vr = None


class OpenCVSource:
    """OpenCV's ffmpeg reader, sequential, for files decord rejects (e.g. cut short): it decodes
    as far as the data goes. Frames with negative presentation time are dropped here too."""

    def __init__(self, path: Path, reason: str, chunk_size: int):
        import cv2
        self.cv2, self.path, self.reason, self.chunk_size = cv2, path, reason, max(1, int(chunk_size))
        self.cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        self.first = self._read() if self.cap.isOpened() else None
        if self.first is None:
            self.cap.release()
            raise VideoError(f"{path.name}: not a readable video ({reason})")
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0)
        h, w = self.first[1].shape[:2]
        self.info = StreamInfo(max(n, 1), fps, int(w), int(h), n / fps if fps > 0 else 0.0, "opencv")

    def _read(self) -> tuple[float, np.ndarray] | None:
        while True:
            ok, frame = self.cap.read()
            if not ok:
                return None
            t = float(self.cap.get(self.cv2.CAP_PROP_POS_MSEC)) / 1000.0
            if t >= -_EPS:
                return t, self.cv2.cvtColor(frame, self.cv2.COLOR_BGR2RGB)

    def chunks(self) -> Iterator[FrameChunk]:
        step = 1.0 / self.info.fps if self.info.fps > 0 else 0.04
        done, item = 0, self.first
        while item is not None:
            got = []
            while item is not None and len(got) < self.chunk_size:
                got.append(item)
                item = self._read()
            start = np.array([t for t, _ in got], np.float64)
            end = np.append(start[1:], (item[0] if item is not None else start[-1] + step))
            chunk = FrameChunk(np.arange(done, done + len(got), dtype=np.int64), start, end,
                               np.stack([f for _, f in got]))
            done += len(got)
            del got
            yield chunk
            del chunk
        if done < self.info.n_frames:
            self.info.partial = f"{self.reason}; {done} of {self.info.n_frames} frames could be decoded"
        self.info.n_frames = done

    def close(self) -> None:
        self.cap.release()


FRAME_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def natural_key(name: str):
    """Sort key that orders the integers inside names numerically: img2 < img10."""
    parts = re.split(r"(\d+)", str(name))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p != "")


def frame_files(folder: Path) -> list[Path]:
    """The frame images of a folder (not hidden), in natural order of their names."""
    return sorted((p for p in Path(folder).iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FRAME_EXTS),
                  key=lambda p: natural_key(p.name))


class FolderSource:
    """A folder of frame images as a stream: frame i at i / fps seconds. An image that cannot be
    read ends the stream as partial (what was read is kept), as a decoding error does in a file."""

    def __init__(self, path: Path, chunk_size: int, fps: float):
        self.files = frame_files(path)
        if not self.files:
            raise VideoError(f"{path.name}: a folder with no frame images ({', '.join(FRAME_EXTS)})")
        if not fps or fps <= 0:
            raise VideoError(f"{path.name}: a frame folder needs its frame rate (fps > 0)")
        from .images import read_image
        self._read, self.path, self.chunk_size = read_image, path, max(1, int(chunk_size))
        try:
            h, w = self._read(self.files[0]).shape[:2]
        except Exception as e:
            raise VideoError(f"{path.name}: first frame {self.files[0].name} unreadable ({e})") from None
        n = len(self.files)
        self.info = StreamInfo(n, float(fps), int(w), int(h), n / float(fps), "frames")

    def chunks(self) -> Iterator[FrameChunk]:
        import cv2
        n, w, h, fps = self.info.n_frames, self.info.width, self.info.height, self.info.fps
        for start in range(0, n, self.chunk_size):
            imgs = []
            for i in range(start, min(n, start + self.chunk_size)):
                try:
                    img = self._read(self.files[i])
                except Exception as e:  # noqa: BLE001 - any unreadable image ends the stream here
                    self.info.partial = f"frame {self.files[i].name} unreadable ({e}); the first {i} of {n} frames were analysed"
                    self.info.n_frames = i
                    break
                imgs.append(img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
            if imgs:
                idx = np.arange(start, start + len(imgs), dtype=np.int64)
                yield FrameChunk(idx, idx / fps, (idx + 1) / fps, np.stack(imgs))
            if self.info.partial:
                if start + len(imgs) == 0:
                    raise VideoError(f"{self.path.name}: {self.info.partial}")
                return

    def close(self) -> None:
        pass


def _open_local(path: Path, chunk_size: int):
    import decord
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as e:  # decord raises DECORDError (a RuntimeError) with ffmpeg's words
        return OpenCVSource(path, diagnose(path, e), chunk_size)
    if len(vr) == 0:
        raise VideoError(f"{path.name}: the video has no decodable frames")
    return DecordSource(path, vr, chunk_size)


def check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p.name}: no such file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p.name}: empty file (0 bytes)")
    return p


def open_source(path: str | Path, chunk_size: int = 64, isolate: bool = False,
                memory_mb: int | None = 2048, timeout_s: float | None = 60.0, fps: float = 30.0):
    """A frame source for `path` (see the module docstring); use it as a context manager.
    A folder is read as frame images at `fps` (FolderSource; `isolate` does not apply).

    isolate: decode in a child process that may take `memory_mb` of address space beyond its
    loaded libraries (RLIMIT_AS); `timeout_s` is the longest the child may take to deliver its
    next chunk (a hang) before it is killed."""
    if Path(path).is_dir():
        return _Closing(FolderSource(Path(path), chunk_size, fps))
    p = check_file(path)
    if isolate:
        return IsolatedSource(p, chunk_size, memory_mb, timeout_s)
    return _Closing(_open_local(p, chunk_size))


class _Closing:
    """Context-manager wrapper giving every source the same shape."""

    def __init__(self, src):
        self.src = src
        self.info = src.info

    def chunks(self) -> Iterator[FrameChunk]:
        return self.src.chunks()

    def close(self) -> None:
        self.src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- the isolated child

_HEAD = struct.Struct("<I")
_OUT_OF_MEMORY = (r"bad_alloc|MemoryError|Cannot allocate|failed to map|Unable to allocate|"
                  r"Resource temporarily unavailable|out of memory")


class IsolatedSource(_Closing):
    """Decodes in a child process (this file as a script) and streams the chunks back."""

    def __init__(self, path: Path, chunk_size: int, memory_mb: int | None, timeout_s: float | None):
        self.path, self.memory_mb, self.timeout_s = path, memory_mb, timeout_s
        cfg = json.dumps({"path": str(path.resolve()), "chunk_size": int(chunk_size),
                          "memory_mb": memory_mb, "parent": os.getpid()})
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen([sys.executable, "-P", str(Path(__file__).resolve()), cfg],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
                                         env=env, close_fds=True)
        except OSError as e:
            self._err.close()
            raise VideoError(f"{path.name}: the decoder process could not start ({e.strerror or e})") from None
        self.pid = self.proc.pid
        try:
            head, _ = self._recv()
            self.info = StreamInfo(**head["info"])
        except BaseException:
            self.close()
            raise

    def _read_exact(self, n: int, into: memoryview | None = None) -> memoryview:
        buf = into if into is not None else memoryview(bytearray(n))
        fd, got = self.proc.stdout.fileno(), 0
        while got < n:
            wait = self.timeout_s if self.timeout_s else None
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                self.proc.kill()
                raise VideoError(f"{self.path.name}: the decoder stopped responding for {self.timeout_s:g} s "
                                 "and was stopped")
            k = os.readv(fd, [buf[got:]])
            if k == 0:
                raise VideoError(f"{self.path.name}: {self._death()}")
            got += k
        return buf

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._err.seek(0)
        tail = self._err.read()[-4000:].decode("utf-8", "replace").strip()
        if self.memory_mb and re.search(_OUT_OF_MEMORY, tail):
            return f"the decoder ran out of memory (its limit is {self.memory_mb} MB) and stopped"
        if code < 0:
            return f"the decoder crashed ({signal.Signals(-code).name})"
        why = clean_error(tail.splitlines()[-1], self.path) if tail else "no message"
        return f"the decoder crashed (exit code {code}: {why})"

    def _recv(self) -> tuple[dict, np.ndarray | None]:
        (n,) = _HEAD.unpack(self._read_exact(_HEAD.size))
        head = json.loads(bytes(self._read_exact(n)))
        if "error" in head:
            self.proc.wait(timeout=10)
            raise VideoError(head["error"])
        if "shape" not in head:
            return head, None
        arr = np.empty(head["shape"], np.uint8)
        self._read_exact(arr.nbytes, memoryview(arr).cast("B"))
        return head, arr

    def chunks(self) -> Iterator[FrameChunk]:
        try:
            while True:
                head, frames = self._recv()
                if "end" in head:
                    self.info.partial, self.info.n_frames = head["end"]["partial"], head["end"]["n_frames"]
                    return
                c = head["chunk"]
                chunk = FrameChunk(np.asarray(c["index"], np.int64), np.asarray(c["start_s"], np.float64),
                                   np.asarray(c["end_s"], np.float64), frames)
                del frames
                yield chunk
                del chunk
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()


def die_with_parent(parent: int) -> None:
    """Make this (child) process get SIGKILL when its parent dies (Linux PR_SET_PDEATHSIG), and exit
    at once if the parent `parent` (its pid) died before this ran. The one copy: the decoder child
    and the batch tool's workers call it first thing, so `kill -9` of a parent leaves no orphan."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux/glibc: the parent check below still catches an early death
        pass
    if os.getppid() != parent:
        os._exit(1)


def _child(cfg: dict) -> None:
    """Child side: open, then send info, chunks, end (or an error) through the original stdout."""
    die_with_parent(cfg["parent"])
    import cv2  # noqa: F401 - the libraries load before the memory cap is set
    import decord  # noqa: F401
    if cfg.get("memory_mb"):  # the cap counts from what the loaded libraries already map
        import resource
        status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
        cap = int(status["VmSize"].split()[0]) * 1024 + (int(cfg["memory_mb"]) << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = os.dup(1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the frame stream

    def send(head: dict, payload: np.ndarray | None = None) -> None:
        if payload is not None:
            head["shape"] = list(payload.shape)
        data = json.dumps(head).encode()
        view = memoryview(_HEAD.pack(len(data)) + data)
        while view:
            view = view[os.write(out, view):]
        if payload is not None:
            view = memoryview(np.ascontiguousarray(payload)).cast("B")
            while view:
                view = view[os.write(out, view):]

    path = Path(cfg["path"])
    try:
        src = _open_local(path, cfg["chunk_size"])
        send({"info": asdict(src.info)})
        chunks = src.chunks()
        while (c := next(chunks, None)) is not None:
            send({"chunk": {"index": c.index.tolist(), "start_s": c.start_s.tolist(),
                            "end_s": c.end_s.tolist()}}, c.frames)
            del c  # one chunk in memory at a time
        send({"end": {"partial": src.info.partial, "n_frames": src.info.n_frames}})
    except VideoError as e:
        memory = cfg.get("memory_mb") and re.search(_OUT_OF_MEMORY, str(e))
        send({"error": f"{path.name}: the decoder ran out of memory (its limit is {cfg.get('memory_mb')} MB) "
                       "and stopped" if memory else str(e)})
    except MemoryError:
        send({"error": f"{path.name}: the decoder ran out of memory (its limit is {cfg.get('memory_mb')} MB) "
                       "and stopped"})


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
