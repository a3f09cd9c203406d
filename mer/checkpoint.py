"""Checkpoints: weights as safetensors + a JSON model card, saved atomically, validated on load.

`name.safetensors` holds the tensors (and a copy of the card in its metadata, so one file is
enough); `name.json` beside it is the human-readable card (it wins, so it can be edited). A
`.pt`/`.pth` from elsewhere is read only with `torch.load(weights_only=True)`; pickled code is refused.

On load, before any network is built: every card field is type- and range-checked; the card's
network is built on the meta device (nothing allocated) and compared with the weights' header
(tensor names, shapes, dtypes, value count) and its input_size with the architecture's own; sizes
are bounded (file, card, arch_kwargs, values). Cards carry the fingerprint of the weights they were
saved with, so a card left beside other weights (a crash between the two writes) is refused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import pickle
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .models import create_model, list_models

CARD_KEY = "mer_card"
INPUT_MODES = ("rgb", "gray", "flow")
MAX_FILE_BYTES = 2 ** 30          # weights files above 1 GiB are refused (the largest arch here is 34 MB)
MAX_VALUES = 200_000_000          # a card may not describe a network with more values than this
MAX_CARD_BYTES = 2 ** 20          # model cards are a few KB
MAX_CLASSES = 1000
MAX_ARCH_INT = 4096               # widths, depths, sizes in arch_kwargs
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
INT_DTYPES = {"I64", "I32", "I16", "I8", "U8"}


def _is_number(x) -> bool:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an integer beyond float range
        return False


def _is_int(x) -> bool:
    return _is_number(x) and float(x).is_integer()


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


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
    weights_sha256: str = ""  # fingerprint of the tensors this card was saved with (see fingerprint)
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
        """Check every field's type and range; CheckpointError (never TypeError) names the field."""
        def bad(msg: str):
            raise CheckpointError(f"{source}: {msg}")
        if not isinstance(self.arch, str) or self.arch not in list_models():
            bad(f"unknown arch {_short(self.arch)} (known: {', '.join(list_models())})")
        if (not isinstance(self.classes, (list, tuple)) or not 2 <= len(self.classes) <= MAX_CLASSES
                or not all(isinstance(c, str) and 0 < len(c) <= 100 for c in self.classes)):
            bad(f"classes must be a list of 2 to {MAX_CLASSES} non-empty names")
        if len(set(self.classes)) != len(self.classes):
            bad(f"classes contain duplicates: {self.classes}")
        if (not isinstance(self.input_size, (list, tuple)) or len(self.input_size) != 2
                or not all(_is_int(v) for v in self.input_size)):
            bad(f"input_size must be [height, width] in pixels, got {_short(self.input_size)}")
        h, w = (int(v) for v in self.input_size)
        if h < 32 or w < 32 or h > 1024 or w > 1024:
            bad(f"input_size {h}x{w} is outside 32..1024")
        self.input_size = (h, w)
        if not isinstance(self.input_mode, str) or self.input_mode not in INPUT_MODES:
            bad(f"input_mode must be one of {INPUT_MODES}, got {_short(self.input_mode)}")
        if not _is_int(self.in_chans) or not 1 <= self.in_chans <= 16:
            bad(f"in_chans must be a whole number from 1 to 16, got {_short(self.in_chans)}")
        self.in_chans = int(self.in_chans)
        if self.input_mode == "rgb" and self.in_chans != 3:
            bad(f"input_mode 'rgb' needs in_chans 3, got {self.in_chans}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or not all(_is_number(x) for x in v):
                bad(f"{name} must be a list of {self.in_chans} numbers (one per input channel), "
                    f"got {_short(v)}")
            if len(v) != self.in_chans:
                bad(f"{name} needs {self.in_chans} values (in_chans), got {len(v)}")
            setattr(self, name, tuple(float(x) for x in v))
        if any(float(x) <= 0 for x in self.std):
            bad("std values must be positive")
        if not _is_number(self.crop_margin) or not 0 <= self.crop_margin <= 1:
            bad(f"crop_margin must be a number from 0 to 1, got {_short(self.crop_margin)}")
        self.crop_margin = float(self.crop_margin)
        if not isinstance(self.arch_kwargs, dict):
            bad("arch_kwargs must be an object")
        for k, v in self.arch_kwargs.items():
            vals = v if isinstance(v, (list, tuple)) and len(v) <= 32 else [v]
            if not all(x is None or isinstance(x, (bool, str)) or _is_number(x) for x in vals):
                bad(f"arch_kwargs {k!r}: expected a number, flag, name or a short list of them, "
                    f"got {_short(v)}")
            if any(_is_number(x) and abs(x) > MAX_ARCH_INT for x in vals):
                bad(f"arch_kwargs {k!r}: {_short(v)} exceeds this tool's limit of {MAX_ARCH_INT}")
        for name in ("trained_on", "protocol", "training_command", "notes", "source", "license",
                     "weights_sha256"):
            if not isinstance(getattr(self, name), str):
                bad(f"{name} must be text, got {_short(getattr(self, name))}")
        for name in ("metrics", "versions"):
            if not isinstance(getattr(self, name), dict):
                bad(f"{name} must be an object, got {_short(getattr(self, name))}")

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


def card_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes (in name order): the card saved with
    weights carries it, so a card beside other weights is recognised."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(model: torch.nn.Module, card: ModelCard, path: str | Path) -> Path:
    """Write `path` (.safetensors, the card embedded in its metadata) and the card `path.json`, each
    atomically. Both carry the weights' fingerprint, so if a crash falls between the two writes the
    loader refuses the stale card instead of pairing it with the new weights."""
    from safetensors.torch import save
    from .files import atomic_write
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    card.weights_sha256 = fingerprint(tensors)
    card.validate(str(path))
    if not card.versions:
        card.versions = library_versions()
    text = card.to_json()
    atomic_write(path, save(tensors, metadata={CARD_KEY: text}))
    atomic_write(card_path(path), text + "\n")
    return path


def _card_json(text: str | bytes, where: str) -> Any:
    if len(text) > MAX_CARD_BYTES:
        raise CheckpointError(f"{where}: model card is {len(text)} bytes; cards are a few KB "
                              f"(limit {MAX_CARD_BYTES})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, huge integers
        raise CheckpointError(f"{where}: model card is not valid JSON ({e})") from None


def _read_card(path: Path, metadata: dict | None, card) -> tuple[ModelCard, str]:
    """(card, where it came from): the one given, else the .json beside the weights, else the
    copy embedded in the safetensors metadata."""
    if isinstance(card, ModelCard):
        card.validate("card")
        return card, "card"
    if isinstance(card, dict):
        return ModelCard.from_dict(card, "card"), "card"
    cpath = Path(card) if card else card_path(path)
    if cpath.is_file():
        if cpath.stat().st_size > MAX_CARD_BYTES:
            raise CheckpointError(f"{cpath}: model card is {cpath.stat().st_size} bytes; cards are a "
                                  f"few KB (limit {MAX_CARD_BYTES})")
        return ModelCard.from_dict(_card_json(cpath.read_bytes(), str(cpath)), str(cpath)), str(cpath)
    if card:
        raise CheckpointError(f"{cpath}: no such model card")
    if metadata and CARD_KEY in metadata:
        where = f"{path} (embedded card)"
        return ModelCard.from_dict(_card_json(metadata[CARD_KEY], where), where), where
    raise CheckpointError(f"{path}: no model card found (expected {cpath.name} beside it, "
                          "or a card embedded in the safetensors metadata)")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path}: checkpoint file is {size / 2 ** 30:.1f} GiB; this tool's limit "
                              f"is {MAX_FILE_BYTES / 2 ** 30:.0f} GiB")


def _read_header(path: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict | None]:
    """{name: (dtype, shape)} and the metadata of a safetensors file, without reading the tensors."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            header = {}
            for k in f.keys():
                sl = f.get_slice(k)
                header[k] = (sl.get_dtype(), tuple(sl.get_shape()))
            return header, f.metadata()
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None


def _read_pt(path: Path) -> dict[str, torch.Tensor]:
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
    return obj


_TORCH_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                torch.uint8: "U8", torch.bool: "BOOL"}


def expected_tensors(card: ModelCard, source: str = "card") -> tuple[dict[str, tuple[bool, tuple]], dict]:
    """What the card's network holds, computed on the meta device (nothing allocated):
    ({name: (is_float, shape)}, the model's default_cfg). Bad arch_kwargs -> CheckpointError."""
    try:
        with torch.device("meta"):
            model = card.build()
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{source}: arch {card.arch!r} cannot be built with arch_kwargs "
                              f"{_short(card.arch_kwargs)}: {e}") from None
    shapes = {k: (v.is_floating_point(), tuple(v.shape)) for k, v in model.state_dict().items()}
    return shapes, getattr(model, "default_cfg", {})


def check_fits(card: ModelCard, header: dict[str, tuple[str, tuple[int, ...]]], path: Path,
               source: str = "card") -> None:
    """Card vs weights before anything is allocated: network size, tensor names, shapes, dtypes, and
    the card's input_size vs the architecture's own input contract."""
    expected, cfg = expected_tensors(card, source)
    n_card = sum(math.prod(s) for _, s in expected.values())
    n_file = sum(math.prod(s) for _, s in header.values())
    if n_card > MAX_VALUES:
        raise CheckpointError(f"{source}: arch {card.arch!r} with arch_kwargs {_short(card.arch_kwargs)} "
                              f"describes {n_card:,} values; this tool's limit is {MAX_VALUES:,}")
    h, w = card.input_size
    if cfg.get("fixed_input_size") or "input_size" in card.arch_kwargs:
        want = tuple(cfg.get("input_size", (h, w)))
        if (h, w) != want:
            raise CheckpointError(f"{source}: input_size {h}x{w} contradicts the network "
                                  f"({card.arch} built for {want[0]}x{want[1]}"
                                  f"{', from arch_kwargs' if 'input_size' in card.arch_kwargs else ''})")
    if min(h, w) < cfg.get("min_input_size", 0):
        raise CheckpointError(f"{source}: input_size {h}x{w} is below {card.arch}'s minimum "
                              f"{cfg['min_input_size']}x{cfg['min_input_size']}")
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    wrong = [f"{k}: file {header[k][1]} vs model {expected[k][1]}"
             for k in expected if k in header and header[k][1] != expected[k][1]]
    dtypes = [f"{k}: {header[k][0]}" for k in expected if k in header
              and header[k][0] not in (FLOAT_DTYPES if expected[k][0] else INT_DTYPES)]
    if missing or unexpected or wrong or dtypes:
        parts = []
        if n_card != n_file:
            parts.append(f"the card describes {n_card:,} values, the file holds {n_file:,}")
        if missing:
            parts.append(f"{len(missing)} missing tensor(s) (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es): {'; '.join(wrong[:3])}")
        if dtypes:
            parts.append(f"{len(dtypes)} tensor(s) of an unusable type: {'; '.join(dtypes[:3])}")
        raise CheckpointError(f"{path}: weights do not fit arch {card.arch!r} with "
                              f"{len(card.classes)} classes: " + "; ".join(parts))


def _check_pair(card: ModelCard, tensors: dict[str, torch.Tensor], path: Path, source: str) -> None:
    if card.weights_sha256 and card.weights_sha256 != fingerprint(tensors):
        raise CheckpointError(
            f"{source}: this card was saved with other weights than {path.name} (weights fingerprint "
            f"differs): a save was interrupted between the two files, or they were mixed up. Save the "
            f"checkpoint again, or delete the .json to use the card embedded in {path.name}")


def load_checkpoint(path: str | Path, card: ModelCard | str | Path | dict | None = None,
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelCard]:
    """Load weights + card, return (model in eval mode, card). A card saved with other weights is
    refused, and the card is checked against the weights (names, shapes, dtypes, size) on the meta
    device before any network is built."""
    path = Path(path)
    _check_file(path)
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        tensors = _read_pt(path)
        header = {k: (_TORCH_TO_ST.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in tensors.items()}
        mc, source = _read_card(path, None, card)
    else:
        header, metadata = _read_header(path)
        mc, source = _read_card(path, metadata, card)
        try:
            tensors = load_file(str(path))  # bounded by the file's size, not by the card
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    _check_pair(mc, tensors, path, source)
    check_fits(mc, header, path, source)
    model = mc.build()
    model.load_state_dict(tensors)
    return model.to(device).eval(), mc
