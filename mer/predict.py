"""One Predictor for the app, the batch tool and evaluation: checkpoint -> device -> batched
aligned face crops -> per-face class probabilities (softmax exactly once), optional Grad-CAM."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .checkpoint import CheckpointError, ModelCard, load_checkpoint
from .faces import DetectorConfig, Face, FaceDetector, align_crop, exact_cuda, resolve_device
from .gradcam import GradCAM
from .images import read_image

WEIGHTS = Path(__file__).resolve().parent / "weights"
# The per-frame default: FER2013 macro-expressions (mini-Xception, converted by mer.convert fer2013).
DEFAULT_CHECKPOINT = WEIGHTS / "fer2013_mini_xception.safetensors"
# The synthetic micro-expression model (mernet_cbam, 6 classes): classifies spotted intervals.
MICRO_CHECKPOINT = WEIGHTS / "micro_synth.safetensors"


@dataclass
class FacePrediction:
    face: Face
    probs: dict[str, float]
    top_class: str
    top_prob: float
    crop: np.ndarray                   # the aligned crop the model saw (RGB uint8)
    heatmap: np.ndarray | None = None  # Grad-CAM at crop size, [0, 1]
    margin: float = 0.15               # the crop's padding (align_crop), to map heatmaps back
    mesh: "MeshResult | None" = None   # face mesh, blendshapes, head pose (mer.landmarker); None: AUs off

    @property
    def aus(self) -> dict[str, float]:
        """AU proxies (mer.aus) from the blendshapes; empty without a mesh, or where the mesh does
        not take the crop for a face (MeshResult.found: a hand over the face, a false detection)."""
        from .aus import aus_from_blendshapes
        return aus_from_blendshapes(self.mesh.blendshapes) if self.mesh is not None and self.mesh.found else {}

    def to_dict(self) -> dict:
        d = {**self.face.to_dict(), "probs": {k: round(v, 6) for k, v in self.probs.items()},
             "top_class": self.top_class, "top_prob": round(self.top_prob, 6)}
        if self.mesh is not None:  # blendshapes, aus and pose are null where the mesh sees no face
            found = self.mesh.found
            d.update(mesh_presence=round(float(self.mesh.presence), 4),
                     blendshapes=self.mesh.blendshape_dict() if found else None,
                     aus={k: round(v, 4) for k, v in self.aus.items()} if found else None,
                     pose=self.mesh.pose_dict() if found else None)
        return d


def crops_to_input(crops: list[np.ndarray], input_mode: str, size: tuple[int, int],
                   in_chans: int = 3) -> torch.Tensor:
    """RGB uint8 crops -> float (N, C, H, W) in [0, 1], before normalization. The one place where
    crops become model input: training and prediction both call it."""
    h, w = size
    arr = np.stack([c if c.shape[:2] == (h, w) else cv2.resize(c, (w, h)) for c in crops])
    if input_mode == "gray":
        g = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        arr = np.repeat(g[..., None], in_chans, axis=3)
    elif input_mode != "rgb":
        raise ValueError(f"crops_to_input handles rgb and gray crops, not {input_mode!r}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0


def _shipped(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CheckpointError(f"the shipped {what} checkpoint is missing: {path}; pass one with --checkpoint")
    return path


def default_checkpoint() -> Path:
    """The per-frame default classifier (FER2013 macro-expressions)."""
    return _shipped(DEFAULT_CHECKPOINT, "default (FER2013 macro-expression)")


def micro_checkpoint() -> Path:
    """The micro-expression classifier (trained on synthetic micro-expressions)."""
    return _shipped(MICRO_CHECKPOINT, "micro-expression")


class Predictor:
    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto",
                 detector: FaceDetector | DetectorConfig | None = None, batch_size: int = 64,
                 margin: float | None = None, aus: bool = True, *,
                 _loaded: tuple[torch.nn.Module, ModelCard] | None = None):
        self.device = resolve_device(device)
        self.aus = aus  # face mesh + blendshapes + AU proxies per face (mer.landmarker), built on first use
        exact_cuda(self.device)  # process-wide, once: the same probabilities as on the CPU
        if _loaded is None:
            self.checkpoint = Path(checkpoint) if checkpoint else default_checkpoint()
            self.model, self.card = load_checkpoint(self.checkpoint, device=self.device)
        else:
            self.checkpoint, (self.model, self.card) = None, _loaded
            self.model.to(self.device).eval()
        self.classes: list[str] = list(self.card.classes)
        # face crop padding: the card's (how the model's training faces were cropped) unless given
        self.batch_size = batch_size
        self.margin = float(self.card.crop_margin if margin is None else margin)
        self._detector = detector if isinstance(detector, FaceDetector) else None
        self._detector_config = detector if isinstance(detector, DetectorConfig) else None
        mean = torch.tensor(self.card.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.card.std, dtype=torch.float32).view(1, -1, 1, 1)
        self._mean, self._std = mean.to(self.device), std.to(self.device)

    @classmethod
    def from_model(cls, model: torch.nn.Module, card: ModelCard, device: str = "auto", **kwargs) -> "Predictor":
        """An in-memory model and its card (training's evaluation): the same preprocessing and softmax."""
        return cls(device=device, _loaded=(model, card), **{"aus": False, **kwargs})

    def detector_for(self, cfg: DetectorConfig) -> FaceDetector:
        """One MTCNN per detection setting on this predictor's device, built on first use and shared
        by every caller (video analysis, live frames)."""
        key = (cfg.min_face_size, cfg.min_prob, cfg.max_side)
        cache = self.__dict__.setdefault("_detectors", {})
        if key not in cache:
            cache[key] = FaceDetector(cfg, device=self.device)
        return cache[key]

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:  # built on first use: training evaluation never needs it
            self._detector = FaceDetector(self._detector_config, device=self.device)
        return self._detector

    @property
    def landmarker(self):
        """The face mesh + blendshape model (mer.landmarker.Landmarker) on this predictor's device, or
        None when AUs are off or its checkpoint is not installed."""
        if not self.aus:
            return None
        if "_landmarker" not in self.__dict__:
            from .landmarker import DEFAULT_LANDMARKER, Landmarker
            self._landmarker = Landmarker(device=self.device) if DEFAULT_LANDMARKER.is_file() else None
        return self._landmarker

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.card.input_size)

    def crop(self, image: np.ndarray, face: Face) -> np.ndarray:
        return align_crop(image, face, self.input_size, self.margin)

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        """Aligned RGB uint8 crops -> normalized float tensor on the device, per the card."""
        if self.card.input_mode == "flow":
            raise CheckpointError("this checkpoint classifies optical flow between onset and apex "
                                  "frames, not single images")
        return self.normalize(crops_to_input(crops, self.card.input_mode, self.input_size, self.card.in_chans))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input before normalization (uint8 0..255 or float 0..1 images, or raw flow)
        -> float on the device, normalized with the card's mean/std."""
        x = x.to(self.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self._mean) / self._std

    def classify_tensor(self, x: torch.Tensor, gradcam: bool = False):
        """Prepared input (N, C, H, W) -> (probs (N, classes) numpy, heatmaps or None)."""
        heatmaps = []
        probs = []
        for s in range(0, len(x), self.batch_size):
            xb = x[s:s + self.batch_size].to(self.device)
            if gradcam:  # (no TF32 on CUDA: exact_cuda, set when the predictor was built)
                with GradCAM(self.model) as cam:
                    hm, logits = cam(xb)
                heatmaps.append(hm)
            else:
                with torch.inference_mode():
                    logits = self.model(xb)
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())  # the one softmax
        n = len(self.classes)
        p = np.concatenate(probs) if probs else np.zeros((0, n), np.float32)
        return p, (np.concatenate(heatmaps) if gradcam and heatmaps else None)

    def classify(self, crops: list[np.ndarray], gradcam: bool = False):
        if not crops:
            return np.zeros((0, len(self.classes)), np.float32), None
        return self.classify_tensor(self.preprocess(crops), gradcam)

    def predict_faces(self, images: list[np.ndarray], faces: list[list[Face]],
                      gradcam: bool = False) -> list[list[FacePrediction]]:
        """Classify given faces in given frames, all crops in shared batches."""
        crops, where = [], []
        for i, (img, fs) in enumerate(zip(images, faces)):
            for f in fs:
                crops.append(self.crop(img, f))
                where.append((i, f))
        probs, heat = self.classify(crops, gradcam)
        lmk = self.landmarker if where else None
        meshes = lmk.run([images[i] for i, _ in where], [f for _, f in where]) if lmk else [None] * len(where)
        out: list[list[FacePrediction]] = [[] for _ in images]
        for k, ((i, f), p) in enumerate(zip(where, probs)):
            top = int(p.argmax())
            out[i].append(FacePrediction(f, {c: float(v) for c, v in zip(self.classes, p)},
                                         self.classes[top], float(p[top]), crops[k],
                                         None if heat is None else heat[k], self.margin, meshes[k]))
        return out

    def predict(self, image, gradcam: bool = False) -> list[FacePrediction]:
        """Any image (path, bytes, PIL, array) -> one FacePrediction per detected face."""
        img = read_image(image)
        return self.predict_faces([img], self.detector.detect([img]), gradcam)[0]
