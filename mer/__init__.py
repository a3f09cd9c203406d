"""mer: the micro-expression recognition core (faces, models, Grad-CAM, checkpoints, prediction).

Names are imported on first use (PEP 562), so `import mer` and `python -m mer --help` do not pay
for torch, facenet-pytorch, OpenCV, decord, pandas or Plotly; `mer.Predictor` etc. work as usual.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {  # public name -> submodule that defines it
    "CheckpointError": "checkpoint", "ModelCard": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "DetectorConfig": "faces", "Face": "faces", "FaceDetector": "faces", "align_crop": "faces",
    "resolve_device": "faces",
    "ImageError": "images", "read_image": "images",
    "CBAM": "models", "CLASSES": "models", "FER2013_CLASSES": "models", "create_model": "models",
    "list_models": "models",
    "DEFAULT_CHECKPOINT": "predict", "MICRO_CHECKPOINT": "predict", "FacePrediction": "predict",
    "Predictor": "predict",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if not name.startswith("_"):
        try:  # `mer.video` etc. without an explicit `import mer.video`
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
