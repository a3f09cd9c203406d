from .cbam import CBAM
from .registry import create_model, list_models, register_model
from . import mernet, seed, vit  # noqa: F401  (register architectures)

CLASSES = ("Happiness", "Surprise", "Anger", "Fear", "Sadness", "Disgust")

__all__ = ["CBAM", "CLASSES", "create_model", "list_models", "register_model"]
