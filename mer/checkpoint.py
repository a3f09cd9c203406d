"""Checkpoints: weights as safetensors + a JSON model card, saved atomically, validated on load.

`name.safetensors` holds the tensors (and a copy of the card in its metadata, so one file is
enough); `name.json` beside it is the human-readable card. A `.pt`/`.pth` from elsewhere is read
only with `torch.load(weights_only=True)`; pickled code is refused.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .models import create_model, list_models

CARD_KEY = "mer_card"
INPUT_MODES = ("rgb", "gray", "flow")


class CheckpointError(ValueError):
    """A checkpoint or model card is unusable; the message says exactly what is wrong."""


@dataclass
class ModelCard:
    arch: str
    classes: list[str]
    input_size: tuple[int, int] = (128, 128)
    input_mode: str = "gray"  # rgb | gray (grayscale replicated to 3 channels) | flow
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    in_chans: int = 3
    crop_margin: float = 0.15  # face crop padding, a fraction of the face box per side (align_crop)
    trained_on: str = "unknown"
    protocol: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    training_command: str = ""
    notes: str = ""
    source: str = ""    # where the weights come from (for converted, published weights)
    license: str = ""   # the weights' license(s)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, source: str = "card") -> "ModelCard":
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: model card must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("arch", "classes") if k not in d]
        if missing:
            raise CheckpointError(f"{source}: model card lacks required field(s): {', '.join(missing)}")
        card = cls(**{k: v for k, v in d.items() if k in known})
        card.validate(source)
        return card

    def validate(self, source: str = "card") -> None:
        def bad(msg: str):
            raise CheckpointError(f"{source}: {msg}")
        if self.arch not in list_models():
            bad(f"unknown arch {self.arch!r} (known: {', '.join(list_models())})")
        if (not isinstance(self.classes, (list, tuple)) or len(self.classes) < 2
                or not all(isinstance(c, str) and c for c in self.classes)):
            bad("classes must be a list of at least two non-empty names")
        if len(set(self.classes)) != len(self.classes):
            bad(f"classes contain duplicates: {self.classes}")
        try:
            h, w = (int(v) for v in self.input_size)
        except (TypeError, ValueError):
            bad(f"input_size must be [height, width], got {self.input_size!r}")
        if h < 32 or w < 32 or h > 1024 or w > 1024:
            bad(f"input_size {h}x{w} is outside 32..1024")
        self.input_size = (h, w)
        if self.input_mode not in INPUT_MODES:
            bad(f"input_mode must be one of {INPUT_MODES}, got {self.input_mode!r}")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            bad(f"mean/std need {self.in_chans} values each, got {len(self.mean)} and {len(self.std)}")
        if any(float(s) <= 0 for s in self.std):
            bad("std values must be positive")
        if not isinstance(self.arch_kwargs, dict):
            bad("arch_kwargs must be an object")

    def build(self) -> torch.nn.Module:
        return create_model(self.arch, num_classes=len(self.classes), in_chans=self.in_chans,
                            **self.arch_kwargs)

    def summary(self) -> str:
        m = self.metrics or {}
        scores = ", ".join(f"{k} {v:.3g}" for k, v in m.items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool))
        return (f"{self.arch} | classes: {', '.join(self.classes)} | input {self.input_size[0]}x"
                f"{self.input_size[1]} {self.input_mode} | trained on: {self.trained_on}"
                + (f" | {self.protocol}: {scores}" if scores else ""))


def library_versions() -> dict[str, str]:
    import numpy
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def card_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_checkpoint(model: torch.nn.Module, card: ModelCard, path: str | Path) -> Path:
    """Write `path` (.safetensors) and its card `path.json`, each atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    card.validate(str(path))
    if not card.versions:
        card.versions = library_versions()
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    text = card.to_json()
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={CARD_KEY: text}))
    _atomic_write(card_path(path), lambda tmp: Path(tmp).write_text(text + "\n"))
    return path


def _read_card(path: Path, metadata: dict | None, card) -> ModelCard:
    if isinstance(card, ModelCard):
        card.validate("card")
        return card
    if isinstance(card, dict):
        return ModelCard.from_dict(card, "card")
    cpath = Path(card) if card else card_path(path)
    if cpath.is_file():
        try:
            data = json.loads(cpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{cpath}: model card is not valid JSON ({e})") from None
        return ModelCard.from_dict(data, str(cpath))
    if metadata and CARD_KEY in metadata:
        try:
            return ModelCard.from_dict(json.loads(metadata[CARD_KEY]), f"{path} (embedded card)")
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: embedded model card is not valid JSON ({e})") from None
    raise CheckpointError(f"{path}: no model card found (expected {cpath.name} beside it, "
                          "or a card embedded in the safetensors metadata)")


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"{path}: refused: the file holds pickled Python objects that could run code "
                f"when loaded, and only plain tensors are accepted (weights_only=True). Convert it "
                f"to safetensors in a trusted environment. Detail: {str(e).splitlines()[0]}") from None
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable PyTorch file ({e})") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(f"{path}: expected a state dict of tensors")
        return obj, None
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None


def load_checkpoint(path: str | Path, card: ModelCard | str | Path | dict | None = None,
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelCard]:
    """Load weights + card, check every tensor name and shape, return (model in eval mode, card)."""
    path = Path(path)
    tensors, metadata = _read_tensors(path)
    mc = _read_card(path, metadata, card)
    model = mc.build()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s) (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es): {'; '.join(wrong[:3])}")
        raise CheckpointError(f"{path}: weights do not fit arch {mc.arch!r} with "
                              f"{len(mc.classes)} classes: " + "; ".join(parts))
    model.load_state_dict(tensors)
    return model.to(device).eval(), mc
