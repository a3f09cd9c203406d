"""Browser-playable H.264 MP4s (yuv420p, faststart) via the ffmpeg binary shipped in the
imageio-ffmpeg wheel (OpenCV's pip wheels cannot encode H.264), and annotated previews of an
analysed video: each face boxed with its id and top class.

The preview is written during the analysis itself (no second decode):

    preview = PreviewWriter(out_dir / "clip.preview.mp4", max_side=640)
    result = analyze_video("clip.mp4", predictor, preview=preview)   # preview.path now exists
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np


class H264Writer:
    """Push RGB uint8 frames (all one size) with `send`; `close` publishes the MP4 atomically
    (mer.files.atomic_path), `abort` leaves nothing behind."""

    def __init__(self, path: str | Path, fps: float, crf: int = 26):
        self.path, self.fps, self.crf = Path(path), float(fps) if fps and fps > 0 else 25.0, crf
        self._writer = None
        self._target = None

    def send(self, frame: np.ndarray) -> None:
        if self._writer is None:
            import imageio_ffmpeg

            from .files import atomic_path
            self._target = atomic_path(self.path)
            tmp = self._target.__enter__()
            h, w = frame.shape[:2]
            self._writer = imageio_ffmpeg.write_frames(
                str(tmp), (w, h), fps=self.fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
                macro_block_size=2, ffmpeg_log_level="error",
                output_params=["-crf", str(self.crf), "-preset", "veryfast", "-movflags", "+faststart",
                               "-f", "mp4"])
            self._writer.send(None)
        self._writer.send(np.ascontiguousarray(frame))

    def close(self) -> Path:
        if self._writer is None:
            raise ValueError("no frames to encode")
        try:
            self._writer.close()
        except BaseException as e:
            self._target.__exit__(type(e), e, e.__traceback__)
            raise
        self._writer = None
        self._target.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            self._writer = None
            err = RuntimeError("preview aborted")
            self._target.__exit__(RuntimeError, err, None)


def write_h264(frames: Iterable[np.ndarray], path: str | Path, fps: float, crf: int = 26) -> Path:
    """RGB uint8 frames (all the same size) -> H.264 MP4 at `path`, written atomically."""
    w = H264Writer(path, fps, crf)
    try:
        for f in frames:
            w.send(f)
        return w.close()
    except BaseException:
        w.abort()
        raise


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def preview_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(width, height))
    return _even(width * s), _even(height * s)


def annotate(frame: np.ndarray, faces, size: tuple[int, int]) -> np.ndarray:
    """frame scaled to `size` (w, h) with each face drawn by mer.render.draw_faces: faces are (box
    x1 y1 x2 y2 in frame pixels, detected on this frame?, label). Green: detected; amber:
    interpolated between keyframes."""
    from .render import AMBER, GREEN, draw_faces
    h, w = frame.shape[:2]
    out = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if size != (w, h) else frame.copy()
    sx, sy = size[0] / w, size[1] / h
    boxes = [(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy) for box, _, _ in faces]
    return draw_faces(out, boxes, [label for _, _, label in faces],
                      colors=[GREEN if detected else AMBER for _, detected, _ in faces])


class PreviewWriter:
    """Annotated preview written while mer.video.analyze_video runs (it calls open, add per frame,
    then close, or abort on failure)."""

    def __init__(self, path: str | Path, max_side: int = 640, crf: int = 26):
        self.path, self.max_side, self.crf = Path(path), max_side, crf
        self._out: H264Writer | None = None

    def open(self, width: int, height: int, fps: float) -> None:
        self.size = preview_size(width, height, self.max_side)
        self._out = H264Writer(self.path, fps, self.crf)

    def add(self, frame: np.ndarray, faces) -> None:
        self._out.send(annotate(frame, faces, self.size))

    def close(self) -> Path:
        return self._out.close()

    def abort(self) -> None:
        if self._out is not None:
            self._out.abort()
