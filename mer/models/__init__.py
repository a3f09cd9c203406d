from .cbam import CBAM
from .registry import create_model, list_models, register_model
from . import facemesh, mernet, seed, vit, xception  # noqa: F401  (register architectures)

# The micro-expression label set of the original project (training's `seed6`, the micro model).
CLASSES = ("Happiness", "Surprise", "Anger", "Fear", "Sadness", "Disgust")
# FER2013's seven classes, in the dataset's label order (the default macro-expression model).
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

__all__ = ["CBAM", "CLASSES", "FER2013_CLASSES", "create_model", "list_models", "register_model"]
