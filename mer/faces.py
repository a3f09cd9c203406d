"""Faces: facenet-pytorch MTCNN behind one call, plus aligned crops.

    detector = FaceDetector()
    faces_per_frame = detector.detect([frame1, frame2])   # list (per frame) of lists of Face

A frame with no face gives an empty list and never breaks the batch (upstream MTCNN.detect crashes
on mixed batches, facenet-pytorch #224), nor does a frame too small for MTCNN (a side <= 16 px).

`detect_faces` is facenet-pytorch's `detect_face` (same weights, same P-Net stage, same thresholds and
NMS) with one change: the R-Net and O-Net stages crop and resize all candidate boxes of a batch in
one batched gather from a summed-area table of the frames, instead of one `interpolate` call per
box. The resize is the same area average (`interpolate(mode="area")` = adaptive average pooling,
whose bins are computed exactly here). On the CPU the nets run channels-last (_memory_format).
Against facenet-pytorch's own detect_face and nets, the faces found are the same and differ by
float rounding only: boxes and landmarks within 1e-3 px, probabilities within 1e-5
(tests/test_core_faces.py; measured on the shared photos and clip frames: 6e-5 px, 1.2e-4 px, 4e-7).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .images import read_image


@dataclass
class Face:
    box: np.ndarray          # (4,) x1, y1, x2, y2 in frame pixels (may run past the border)
    prob: float              # MTCNN detection probability
    landmarks: np.ndarray    # (5, 2): left eye, right eye, nose, mouth left, mouth right

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "det_prob": round(float(self.prob), 4),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]}


@dataclass
class DetectorConfig:
    min_face_size: int = 20                       # pixels, in the (downscaled) detection image
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN's three stages
    min_prob: float = 0.9                          # drop weaker faces (removes obama.jpg's 0.82 false face)
    max_side: int = 640                            # downscale frames whose longer side exceeds this
    factor: float = 0.709
    batch_size: int = 16


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> $MER_DEVICE if set, else CUDA when present, else CPU."""
    import os
    if device is None or str(device) == "auto":
        device = os.environ.get("MER_DEVICE", "auto")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available")
    return dev


class FaceDetector:
    def __init__(self, config: DetectorConfig | None = None, device: str | torch.device | None = "auto"):
        from facenet_pytorch import MTCNN  # weights ship inside the facenet-pytorch wheel
        self.config = config or DetectorConfig()
        self.device = resolve_device(device)
        exact_cuda(self.device)
        m = MTCNN(keep_all=True, device=self.device)
        self._nets = tuple(net.to(memory_format=_memory_format(self.device)) for net in (m.pnet, m.rnet, m.onet))

    def _prepare(self, frame) -> tuple[np.ndarray, float]:
        img = read_image(frame)
        h, w = img.shape[:2]
        scale = min(1.0, self.config.max_side / max(h, w)) if self.config.max_side else 1.0
        if scale < 1.0:
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        return img, scale

    def _run(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        c = self.config
        return detect_faces(batch, c.min_face_size, self._nets, c.thresholds, c.factor, self.device)

    def detect(self, frames) -> list[list[Face]]:
        """Frames (paths, arrays or PIL images; any size) -> per frame, faces sorted by probability."""
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            frames = list(frames)
        elif not isinstance(frames, (list, tuple)):
            frames = [frames]
        prepared = [self._prepare(f) for f in frames]
        results: list[list[Face]] = [[] for _ in frames]
        groups: dict[tuple, list[int]] = {}
        for i, (img, _) in enumerate(prepared):
            groups.setdefault(img.shape, []).append(i)
        bs = max(1, self.config.batch_size)
        for idx in groups.values():
            for s in range(0, len(idx), bs):
                chunk = idx[s:s + bs]
                batch = np.stack([prepared[i][0] for i in chunk])
                for i, (boxes, pts) in zip(chunk, self._run(batch)):
                    scale = prepared[i][1]
                    faces = [Face(b[:4] / scale, float(b[4]), p / scale)
                             for b, p in zip(boxes, pts) if b[4] >= self.config.min_prob]
                    results[i] = sorted(faces, key=lambda f: -f.prob)
        return results

    def __call__(self, frames) -> list[list[Face]]:
        return self.detect(frames)


def _area_resize(sat: torch.Tensor, inds: torch.Tensor, y0, y1, x0, x1, size: int) -> torch.Tensor:
    """Crops [y0:y1, x0:x1] of frames `inds`, each resized to size x size by area averaging, in one
    batched gather from the summed-area table `sat` (N, C, H+1, W+1). Bin k of a crop of length L
    covers [floor(k*L/size), ceil((k+1)*L/size)), exactly as torch's adaptive_avg_pool2d (which
    `interpolate(mode="area")` is). -> float (K, C, size, size)."""
    _, c, h1, w1 = sat.shape
    k = torch.arange(size, device=sat.device)

    def bins(a, b):  # (K, size) start and end rows/cols in frame coordinates
        n = (b - a)[:, None]
        return a[:, None] + torch.div(k * n, size, rounding_mode="floor"), \
            a[:, None] - torch.div(-(k + 1) * n, size, rounding_mode="floor")
    rs, re = bins(y0, y1)
    cs, ce = bins(x0, x1)
    base = inds[:, None, None, None] * (c * h1 * w1) + (torch.arange(c, device=sat.device) * (h1 * w1))[:, None, None]
    flat = sat.reshape(-1)

    def at(r, col):  # sat at rows r (K, size) x cols col (K, size), every channel: (K, C, size, size)
        return flat.take(base + (r * w1)[:, None, :, None] + col[:, None, None, :])
    total = at(re, ce) - at(rs, ce) - at(re, cs) + at(rs, cs)
    area = ((re - rs)[:, :, None] * (ce - cs)[:, None, :]).clamp(min=1)
    return total.float() / area[:, None].float()


def _stage_input(sat, inds, boxes, w, h, size):
    """facenet-pytorch's pad() + per-box crop + imresample, batched: boxes truncated to ints,
    clipped to the frame (1-based end-inclusive as upstream), crops averaged to size x size and
    scaled to [-1, 1). Also returns which boxes have a non-empty crop."""
    b = boxes[:, :4].trunc().long()
    x = b[:, 0].clamp(min=1) - 1
    y = b[:, 1].clamp(min=1) - 1
    ex, ey = b[:, 2].clamp(max=w), b[:, 3].clamp(max=h)
    ok = (ey > y) & (ex > x)
    ex, ey = torch.maximum(ex, x + 1), torch.maximum(ey, y + 1)  # empty crops: any pixel, dropped after
    data = _area_resize(sat, inds, y.clamp(max=h - 1), ey.clamp(min=1), x.clamp(max=w - 1), ex.clamp(min=1), size)
    return (data - 127.5) * 0.0078125, ok


def _memory_format(device) -> torch.memory_format:
    """Channels-last on the CPU: oneDNN's convolutions and PyTorch's max-pooling run 1.5-5x faster
    on MTCNN's small-channel layers than in NCHW (bench/batch.py); the numbers differ by float
    rounding only (boxes and landmarks within 1e-3 px of upstream's, see the module docstring).
    CUDA keeps PyTorch's default."""
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format


def _batched_net(net, data, batch=512):
    fmt = _memory_format(data.device)
    out = [net(data[i:i + batch].contiguous(memory_format=fmt)) for i in range(0, len(data), batch)]
    return tuple(torch.cat(v, dim=0) for v in zip(*out))


def detect_faces(frames: np.ndarray, minsize: int, nets, thresholds, factor: float,
                 device) -> list[tuple[np.ndarray, np.ndarray]]:
    """MTCNN on a batch of same-size RGB uint8 frames (N, H, W, 3) -> per frame (boxes (k, 5) with
    x1, y1, x2, y2, prob; landmarks (k, 5, 2)). facenet-pytorch's detect_face with batched R-Net and
    O-Net crops (see the module docstring); frames too small for MTCNN's 12 px window give no faces."""
    from facenet_pytorch.models.utils.detect_face import (batched_nms_numpy, bbreg, generateBoundingBox,
                                                          imresample, rerec)
    from torchvision.ops.boxes import batched_nms
    pnet, rnet, onet = nets
    n = len(frames)
    empty = [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in range(n)]
    h, w = frames.shape[1:3]
    m = 12.0 / minsize
    minl, scales = min(h, w) * m, []
    while minl >= 12:
        scales.append(m * factor ** len(scales))
        minl *= factor
    if n == 0 or not scales:
        return empty
    with torch.inference_mode():  # (CUDA flags: exact_cuda, set when the detector was built)
        u8 = torch.from_numpy(np.array(frames, np.uint8)).to(device).permute(0, 3, 1, 2)
        imgs = u8.float().contiguous()  # NCHW: the pyramid's area resize is 2x faster than on the NHWC view
        fmt = _memory_format(device)
        boxes, image_inds, offset, picks = [], [], 0, []
        for scale in scales:  # first stage (P-Net on the pyramid), as upstream
            im = (imresample(imgs, (int(h * scale + 1), int(w * scale + 1))) - 127.5) * 0.0078125
            reg, probs = pnet(im.contiguous(memory_format=fmt))
            b, ii = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
            picks.append(batched_nms(b[:, :4], b[:, 4], ii, 0.5) + offset)
            boxes.append(b)
            image_inds.append(ii)
            offset += len(b)
        pick = torch.cat(picks)
        boxes, image_inds = torch.cat(boxes)[pick], torch.cat(image_inds)[pick]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[pick], image_inds[pick]
        if len(boxes) == 0:
            return empty
        regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]], 1)
        boxes = rerec(boxes)
        # summed-area table of the frames; int32 is exact while a whole frame's sum fits
        dt = torch.int32 if h * w * 255 < 2 ** 31 else torch.int64
        sat = torch.nn.functional.pad(u8.to(dt).cumsum(2, dtype=dt).cumsum(3, dtype=dt), (1, 0, 1, 0))

        data, ok = _stage_input(sat, image_inds, boxes, w, h, 24)  # second stage (R-Net)
        reg, prob = _batched_net(rnet, data)
        score = prob[:, 1]
        keep = (score > thresholds[1]) & ok
        boxes = torch.cat((boxes[keep, :4], score[keep, None]), 1)
        image_inds, reg = image_inds[keep], reg[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes = rerec(bbreg(boxes[pick], reg[pick]))
        image_inds = image_inds[pick]
        if len(boxes) == 0:
            return empty

        data, ok = _stage_input(sat, image_inds, boxes, w, h, 48)  # third stage (O-Net)
        reg, pts, prob = _batched_net(onet, data)
        score = prob[:, 1]
        keep = (score > thresholds[2]) & ok
        boxes = torch.cat((boxes[keep, :4], score[keep, None]), 1)
        image_inds, reg, pts = image_inds[keep], reg[keep], pts[keep]
        wi, hi = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        points = torch.stack((wi[:, None] * pts[:, :5] + boxes[:, :1] - 1,
                              hi[:, None] * pts[:, 5:] + boxes[:, 1:2] - 1), 2)
        boxes = bbreg(boxes, reg)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes = boxes[pick].cpu().numpy().astype(np.float32)
        points = points[pick].cpu().numpy().astype(np.float32)
        image_inds = image_inds[pick].cpu().numpy()
    return [(boxes[image_inds == i].reshape(-1, 5), points[image_inds == i].reshape(-1, 5, 2)) for i in range(n)]


def exact_cuda(device) -> None:
    """On CUDA: no TF32 in cuDNN convolutions and matmuls (PyTorch's default on Ampere+; with it,
    boxes, landmarks and so the aligned crops drift from the CPU's and near-threshold candidates
    flip) and deterministic cuDNN kernels without autotuning. Set process-wide when a detector or
    predictor is built on CUDA, and never set back: these are global flags, and a per-call
    context (torch.backends.cudnn.flags) restores them on exit, so under concurrent requests
    one call switched TF32 back on while another was running. Nothing on the CPU."""
    if torch.device(device).type != "cuda":
        return
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def align_matrix(face: Face, size: int | tuple[int, int] = 128, margin: float = 0.15) -> np.ndarray:
    """2x3 affine: rotate so the eye line is level, scale a square around the face padded by
    `margin` (a fraction of the face size on each side) onto a `size` crop."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x1, y1, x2, y2 = (float(v) for v in face.box)
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    angle = math.degrees(math.atan2(ry - ly, rx - lx))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    m = cv2.getRotationMatrix2D((cx, cy), angle, min(out_w, out_h) / side)
    m[0, 2] += out_w / 2 - cx
    m[1, 2] += out_h / 2 - cy
    return m


def align_crop(image: np.ndarray, face: Face, size: int | tuple[int, int] = 128,
               margin: float = 0.15) -> np.ndarray:
    """The aligned face crop (HxWx3 uint8) of `face` in `image`; see align_matrix."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    return cv2.warpAffine(image, align_matrix(face, size, margin), (out_w, out_h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
