"""mer: the micro-expression recognition core (faces, models, Grad-CAM, checkpoints, prediction)."""
from .checkpoint import CheckpointError, ModelCard, load_checkpoint, save_checkpoint
from .faces import DetectorConfig, Face, FaceDetector, align_crop, resolve_device
from .images import ImageError, read_image
from .models import CBAM, CLASSES, FER2013_CLASSES, create_model, list_models
from .predict import DEFAULT_CHECKPOINT, MICRO_CHECKPOINT, FacePrediction, Predictor

__version__ = "0.1.0"
__all__ = ["CBAM", "CLASSES", "CheckpointError", "DEFAULT_CHECKPOINT", "DetectorConfig", "FER2013_CLASSES",
           "Face", "FaceDetector", "FacePrediction", "ImageError", "MICRO_CHECKPOINT", "ModelCard", "Predictor",
           "align_crop", "create_model", "list_models", "load_checkpoint", "read_image", "resolve_device",
           "save_checkpoint"]
