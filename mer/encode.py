"""Browser-playable H.264 MP4s (yuv420p, faststart) via the ffmpeg binary shipped in the
imageio-ffmpeg wheel (OpenCV's pip wheels cannot encode H.264), and annotated previews of an
analysed video (`mer.video.VideoResult`): each face boxed with its id and top class."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np


def write_h264(frames: Iterable[np.ndarray], path: str | Path, fps: float, crf: int = 26) -> Path:
    """RGB uint8 frames (all the same size) -> H.264 MP4 at `path`, written atomically."""
    import imageio_ffmpeg
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".mp4", dir=path.parent)
    os.close(fd)
    writer = None
    try:
        for f in frames:
            if writer is None:
                h, w = f.shape[:2]
                writer = imageio_ffmpeg.write_frames(
                    tmp, (w, h), fps=float(fps) if fps and fps > 0 else 25.0, codec="libx264",
                    pix_fmt_out="yuv420p", quality=None, macro_block_size=2,
                    output_params=["-crf", str(crf), "-preset", "veryfast", "-movflags", "+faststart"],
                    ffmpeg_log_level="error")
                writer.send(None)
            writer.send(np.ascontiguousarray(f))
        if writer is None:
            raise ValueError("no frames to encode")
        writer.close()
        writer = None
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        Path(tmp).unlink(missing_ok=True)
    return path


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def annotate_frames(video_path: str | Path, result, max_side: int = 640, chunk: int = 32):
    """Yield the video's frames (downscaled so the longer side <= max_side, even sizes) with the
    analysis drawn on: box, face id, top class and probability per face."""
    import decord
    vr = decord.VideoReader(str(video_path), ctx=decord.cpu(0), num_threads=1)
    n = len(vr)
    h, w = vr[0].shape[:2]
    s = min(1.0, max_side / max(h, w))
    size = (_even(w * s), _even(h * s))
    sx, sy = size[0] / w, size[1] / h
    df = result.frames[result.frames["face_id"].notna()]
    by_frame = {int(k): g for k, g in df.groupby("frame")}
    thick = max(1, round(max(size) / 400))
    for start in range(0, n, chunk):
        idx = list(range(start, min(n, start + chunk)))
        batch = vr.get_batch(idx).asnumpy()
        for i, frame in zip(idx, batch):
            out = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if size != (w, h) else frame.copy()
            for r in by_frame.get(i, df.iloc[:0]).itertuples():
                x1, y1, x2, y2 = int(r.x1 * sx), int(r.y1 * sy), int(r.x2 * sx), int(r.y2 * sy)
                color = (0, 220, 0) if r.detected == 1 else (255, 200, 0)
                cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
                label = f"{int(r.face_id)} {r.top_class} {r.top_prob:.2f}"
                cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick,
                            color, thick, cv2.LINE_AA)
            yield out


def write_preview(video_path: str | Path, result, out_path: str | Path, max_side: int = 640) -> Path:
    """Annotated, browser-playable H.264 preview of an analysed video."""
    fps = result.info.get("fps") or 25.0
    return write_h264(annotate_frames(video_path, result, max_side), out_path, fps)
