"""Face mesh, 52 blendshapes and head pose for the faces MTCNN found, the way MediaPipe's Face
Landmarker builds its input (the ported networks: mer/models/facemesh.py).

    lm = Landmarker()                                  # mer/weights/face_landmarker.safetensors
    results = lm(frames, faces_per_frame)             # per frame, per face: MeshResult

The crop is MediaPipe's region of interest: a square of 1.5x the face, centred on it and rotated so
the eye line is level (DetectionsToRects + RectTransformation, scale 1.5, square_long), warped to
256x256 RGB in [0, 1] with replicated borders. MediaPipe takes the first region from its BlazeFace box
and the following ones from the previous landmarks (their bounding box, the eye line from landmark
33 to 263). Here it comes from the MTCNN box and eyes, mapped onto the region the landmarks would
give (a fixed scale and shift, measured: BOX_TO_MESH_*), so one mesh pass per face suffices;
`refine=True` runs the mesh a second time on the region of its own landmarks (twice the cost, no
better agreement with MediaPipe on the shared photos: docs/aus.md). Landmarks are projected back into image pixels (z in
the same pixel scale, smaller = nearer the camera); the blendshape net reads 146 of them as image
x, y, as MediaPipe feeds it.

Head pose: a weighted similarity fit (Umeyama) of MediaPipe's canonical face model (its 468
vertices and Procrustes weights, from the bundle's geometry metadata) onto the landmarks, in image
axes with y up and z towards the camera; yaw, pitch, roll in degrees from R = Rz(roll) Ry(yaw)
Rx(pitch). Orthographic (no camera intrinsics), so it is a relative measure for a face in frame.
The faces of a chunk go through each network in batches (CPU_BATCH on the CPU, 64 on CUDA).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .models.facemesh import BLENDSHAPE_LANDMARKS, BLENDSHAPE_NAMES, INPUT_SIZE

DEFAULT_LANDMARKER = Path(__file__).resolve().parent / "weights" / "face_landmarker.safetensors"
ROI_SCALE = 1.5           # MediaPipe's RectTransformation scale for the face region
# MediaPipe's min_face_presence_confidence default: a crop the mesh scores below this is not a face to
# it (a hand over the face, a false detection); its blendshapes, pose and AU proxies are not reported
MIN_PRESENCE = 0.5
EYE_OUTER = (33, 263)     # MediaPipe's rotation keypoints on the mesh (outer corners of the eyes)
# Faces per forward pass on the CPU. The mesh's first stages are wide (16 x 128 x 128 per face) and
# cheap per pixel, so large batches spend their time on fresh memory: at 64 faces a pass, 18.7 ms of
# each frame's CPU time went to page faults (system time), 1.5 ms at 8. Single-threaded the mesh now
# runs those stages face by face (mer.models.facemesh); 8 is still the best pass for the rest
# (docs/aus.md, Speed).
CPU_BATCH = 8


@dataclass
class MeshResult:
    landmarks: np.ndarray    # (478, 3) image pixels: x right, y down, z (same scale) smaller = nearer
    presence: float          # the mesh's face-presence probability
    blendshapes: np.ndarray  # (52,) scores in [0, 1], BLENDSHAPE_NAMES order
    pose: tuple[float, float, float]  # yaw, pitch, roll in degrees
    interpolated: bool = False  # between two meshes of the face (MeshStage, every > 1), not measured here

    @property
    def found(self) -> bool:
        """The mesh takes the crop for a face (presence >= MIN_PRESENCE); otherwise its blendshapes,
        pose and AU proxies are guesses about something else, and are not reported."""
        return self.presence >= MIN_PRESENCE

    def blendshape_dict(self, ndigits: int = 4) -> dict[str, float]:
        return {n: round(float(v), ndigits) for n, v in zip(BLENDSHAPE_NAMES, self.blendshapes)}

    def pose_dict(self, ndigits: int = 2) -> dict[str, float]:
        return {k: round(float(v), ndigits) for k, v in zip(("yaw", "pitch", "roll"), self.pose)}


# MTCNN box -> the region MediaPipe would take from the mesh's own landmarks, measured on the 19
# faces of the shared photos (docs/aus.md): the landmarks' bounding box is 0.915 of the MTCNN box's
# side, and its centre sits 0.009 (along the eye line) and 0.047 (across it, towards the chin) box
# sides from the box's centre.
BOX_TO_MESH_SIDE = 0.915
BOX_TO_MESH_SHIFT = (0.009, 0.047)


def roi_from_face(face, scale: float = ROI_SCALE) -> tuple[float, float, float, float]:
    """(centre x, centre y, side, angle in radians) from an MTCNN box and its eye landmarks: the
    region MediaPipe would take from the face's landmarks, estimated from the box (see above)."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    a = math.atan2(ry - ly, rx - lx)
    side = max(x2 - x1, y2 - y1)
    u, v = BOX_TO_MESH_SHIFT
    cx = (x1 + x2) / 2 + side * (u * math.cos(a) - v * math.sin(a))
    cy = (y1 + y2) / 2 + side * (u * math.sin(a) + v * math.cos(a))
    return cx, cy, side * BOX_TO_MESH_SIDE * scale, a


def roi_from_landmarks(lm: np.ndarray, scale: float = ROI_SCALE) -> tuple[float, float, float, float]:
    """MediaPipe's tracking region: the landmarks' axis-aligned bounding box, square on its long side
    times `scale`, rotated by the line from landmark 33 to 263."""
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    (ax, ay), (bx, by) = lm[EYE_OUTER[0], :2], lm[EYE_OUTER[1], :2]
    return (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, float((hi - lo).max()) * scale, math.atan2(by - ay, bx - ax)


def crop_to_image(roi) -> np.ndarray:
    """2x3 affine from crop pixels (0..256) to image pixels for a region (cx, cy, side, angle)."""
    cx, cy, side, a = roi
    k = side / INPUT_SIZE
    c, s = math.cos(a) * k, math.sin(a) * k
    h = INPUT_SIZE / 2
    return np.array([[c, -s, cx - c * h + s * h], [s, c, cy - s * h - c * h]], np.float64)


def crop(image: np.ndarray, roi) -> np.ndarray:
    """The 256x256 RGB uint8 crop of a region."""
    m = cv2.invertAffineTransform(crop_to_image(roi))
    return cv2.warpAffine(image, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def project(lm: np.ndarray, roi) -> np.ndarray:
    """Crop-pixel landmarks (478, 3) -> image pixels (z scaled like x, y)."""
    m = crop_to_image(roi)
    out = np.empty_like(lm, dtype=np.float64)
    out[:, :2] = lm[:, :2] @ m[:, :2].T + m[:, 2]
    out[:, 2] = lm[:, 2] * roi[2] / INPUT_SIZE
    return out


def head_pose(lm: np.ndarray, canonical: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of the similarity that best maps the canonical face onto the
    landmarks (weighted Umeyama, image axes turned to y up, z towards the camera)."""
    n = len(canonical)
    p = lm[:n].astype(np.float64) * np.array([1.0, -1.0, -1.0])
    w = weights / weights.sum()
    mc, mp = w @ canonical, w @ p
    cov = ((p - mp) * w[:, None]).T @ (canonical - mc)
    u, _, vt = np.linalg.svd(cov)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


class Landmarker:
    def __init__(self, checkpoint: str | Path = DEFAULT_LANDMARKER, device: str | torch.device = "auto",
                 refine: bool = False, batch_size: int | None = None):
        from .checkpoint import load_checkpoint
        from .faces import resolve_device
        self.device = resolve_device(device)
        self.model, self.card = load_checkpoint(checkpoint, device=self.device)
        if self.card.arch != "face_landmarker":
            raise ValueError(f"{checkpoint}: a {self.card.arch} checkpoint, not face_landmarker")
        self.canonical = self.model.canonical.cpu().double().numpy()
        self.weights = self.model.procrustes_weights.cpu().double().numpy()
        self.refine = refine
        self.batch_size = int(batch_size or (CPU_BATCH if self.device.type == "cpu" else 64))
        if self.device.type == "cpu":
            self.model.mesh.to(memory_format=torch.channels_last)

    def _mesh(self, images: list[np.ndarray], rois: list) -> tuple[list[np.ndarray], np.ndarray]:
        x = np.stack([crop(img, roi) for img, roi in zip(images, rois)])
        t = torch.from_numpy(x).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        if self.device.type == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            lm, presence = self.model.mesh(t)
        lm = lm.float().cpu().numpy()
        return [project(l, r) for l, r in zip(lm, rois)], torch.sigmoid(presence).float().cpu().numpy()

    def run(self, images: list[np.ndarray], faces: list) -> list[MeshResult]:
        """One (image, Face) pair per entry -> one MeshResult each, batched."""
        out: list[MeshResult] = []
        for s in range(0, len(faces), self.batch_size):
            imgs, fcs = images[s:s + self.batch_size], faces[s:s + self.batch_size]
            lms, pres = self._mesh(imgs, [roi_from_face(f) for f in fcs])
            if self.refine:
                lms, pres = self._mesh(imgs, [roi_from_landmarks(l) for l in lms])
            xy = torch.from_numpy(np.stack([l[BLENDSHAPE_LANDMARKS, :2] for l in lms]).astype(np.float32))
            with torch.inference_mode():
                bs = self.model.blendshapes(xy.to(self.device)).float().cpu().numpy()
            out += [MeshResult(l.astype(np.float32), float(p), b, head_pose(l, self.canonical, self.weights))
                    for l, p, b in zip(lms, pres, bs)]
        return out

    def __call__(self, frames: list[np.ndarray], faces_per_frame: list[list]) -> list[list[MeshResult]]:
        pairs = [(i, f) for i, fs in enumerate(faces_per_frame) for f in fs]
        flat = self.run([frames[i] for i, _ in pairs], [f for _, f in pairs])
        res: list[list[MeshResult]] = [[] for _ in frames]
        for (i, _), r in zip(pairs, flat):
            res[i].append(r)
        return res


def interpolate_mesh(a: MeshResult, b: MeshResult, w: float) -> MeshResult:
    """The mesh a fraction w of the way from a to b (landmarks, presence, blendshapes, pose: linear)."""
    return MeshResult(((1 - w) * a.landmarks + w * b.landmarks).astype(np.float32),
                      (1 - w) * a.presence + w * b.presence,
                      ((1 - w) * a.blendshapes + w * b.blendshapes).astype(np.float32),
                      tuple((1 - w) * x + w * y for x, y in zip(a.pose, b.pose)), interpolated=True)


class MeshStage:
    """mer.video's mesh stage: every face of a group of frames through the Landmarker in one batch
    (FaceRecord.mesh); with `keep_landmarks`, each face's 478 landmarks are kept (float16) for
    `<video>.landmarks.npz`, with the mesh's presence (landmarks of a crop under MIN_PRESENCE are
    kept too, marked by it) and whether they were interpolated.

    `every` > 1 runs the mesh on every `every`-th frame and on the group's last frame only, and
    gives a face on a frame between two of those the mesh interpolated between its own two meshes
    there (linear in the frames' timestamps); a face missing from either of them, or not a face to the
    mesh on either (MeshResult.found), gets its own mesh pass.
    A group is interpolated within itself, so nothing waits for the next one (docs/aus.md)."""

    def __init__(self, landmarker: Landmarker | None, keep_landmarks: bool = False, every: int = 1):
        if int(every) < 1:
            raise ValueError(f"mesh every must be 1 or more frames, not {every}")
        self.landmarker, self.keep, self.every = landmarker, keep_landmarks, int(every)
        self.kept: list[tuple[int, int, np.ndarray, float, bool]] = []

    def __call__(self, frames: list) -> list:
        if self.landmarker is None or not any(f.faces for f in frames):
            return frames
        last = frames[-1].index
        key = {f.index for f in frames if f.index % self.every == 0 or f.index == last}
        run = [(f, r) for f in frames for r in f.faces if f.index in key]
        between = []  # (frame, record, (key frame, its record of the face) before and after): after the pass
        for i, f in enumerate(frames):
            if f.index in key:
                continue
            prev = next((g for g in reversed(frames[:i]) if g.index in key), None)
            nxt = next((g for g in frames[i + 1:] if g.index in key), None)
            for r in f.faces:
                a, b = _record(prev, r.face_id), _record(nxt, r.face_id)
                if a is not None and b is not None:
                    between.append((f, r, (prev, a), (nxt, b)))
                else:
                    run.append((f, r))
        self._run(run)
        # where the mesh took either side's crop for no face (a hand over it), the face gets its own pass
        # instead of values interpolated from that crop
        both, own = [], []
        for e in between:
            (both if e[2][1].mesh.found and e[3][1].mesh.found else own).append(e)
        self._run([(f, r) for f, r, *_ in own])
        for f, r, (prev, a), (nxt, b) in both:
            span = nxt.start_s - prev.start_s  # real time: a variable-frame-rate video is weighted by it
            w = (f.start_s - prev.start_s) / span if span > 0 else (f.index - prev.index) / (nxt.index - prev.index)
            r.mesh = interpolate_mesh(a.mesh, b.mesh, min(1.0, max(0.0, w)))
        if self.keep:
            self.kept += [(f.index, r.face_id, r.mesh.landmarks.astype(np.float16), float(r.mesh.presence),
                           r.mesh.interpolated) for f in frames for r in f.faces]
        return frames

    def _run(self, pairs: list) -> None:
        if pairs:
            for (f, r), m in zip(pairs, self.landmarker.run([f.image for f, _ in pairs], [r.face for _, r in pairs])):
                r.mesh = m

    def arrays(self) -> dict[str, np.ndarray] | None:
        """{'frame', 'face_id', 'landmarks' (K, 478, 3) image pixels, 'presence' (K,), 'interpolated'
        (K,) bool} or None when not kept."""
        if not self.keep:
            return None
        k = self.kept
        return {"frame": np.array([e[0] for e in k], np.int64), "face_id": np.array([e[1] for e in k], np.int64),
                "landmarks": np.stack([e[2] for e in k]) if k else np.zeros((0, 478, 3), np.float16),
                "presence": np.array([e[3] for e in k], np.float32),
                "interpolated": np.array([e[4] for e in k], bool)}


def _record(frame, face_id: int):
    """The frame's record of that face, or None (also when there is no frame)."""
    return None if frame is None else next((r for r in frame.faces if r.face_id == face_id), None)
