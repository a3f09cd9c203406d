"""A tiny model registry in the spirit of timm: register_model + create_model(name, **cfg)."""
from __future__ import annotations

from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, num_classes: int = 6, in_chans: int = 3, **kwargs) -> nn.Module:
    """Build a registered architecture. Every model carries `model.default_cfg` (its input contract)."""
    if name not in _MODELS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_models())}")
    model = _MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.default_cfg = {**getattr(model, "default_cfg", {}), "architecture": name}
    return model
