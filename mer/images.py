"""Read any image a user has into RGB uint8, or fail with a clear message.

Handles 8/16-bit, grayscale, palette, RGBA/LA (composited on white), CMYK, EXIF rotation;
refuses decompression bombs and unreadable files before decoding pixels.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = int(os.environ.get("MER_MAX_PIXELS", 40_000_000))  # ~6300x6300


class ImageError(ValueError):
    """The input is not an image we can use; the message says why."""


def _name(src) -> str:
    return str(src) if isinstance(src, (str, Path)) else "<image>"


def _open(src) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, (bytes, bytearray)):
        if not src:
            raise ImageError("image is empty (0 bytes)")
        fp = io.BytesIO(src)
    else:
        path = Path(src)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: file is empty (0 bytes)")
        fp = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{_name(src)}: image too large to decode safely: {e}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{_name(src)}: not a readable image (unknown or corrupt format)") from None
    except OSError as e:
        raise ImageError(f"{_name(src)}: image data is corrupt or truncated ({e})") from None


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(arr.astype(np.float32))
        if a.max(initial=0) <= 1.0 and a.min(initial=0) >= 0.0:
            a = a * 255.0
        return np.clip(a, 0, 255).astype(np.uint8)
    # integer wider than 8 bits: 16-bit images use the full 0..65535 range
    hi = 65535 if arr.max(initial=0) > 255 else 255
    return np.clip(arr.astype(np.float64) * (255.0 / hi), 0, 255).round().astype(np.uint8)


def _composite_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgb * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)


def from_array(arr: np.ndarray) -> np.ndarray:
    """Any HxW, HxWx1, HxWx3 or HxWx4 array (uint8/uint16/float) -> HxWx3 uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = _to_uint8(arr)
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
    if arr.size == 0:
        raise ImageError("image has no pixels")
    arr = _to_uint8(arr)
    if arr.shape[2] == 4:
        arr = _composite_white(arr)
    return np.ascontiguousarray(arr)


def read_image(src, max_pixels: int | None = None) -> np.ndarray:
    """Path, bytes, PIL image or array -> HxWx3 RGB uint8 (EXIF orientation applied)."""
    if isinstance(src, np.ndarray):
        return from_array(src)
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    im = _open(src)
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(
            f"{_name(src)}: image too large: {w}x{h} = {w * h / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:.0f} MP; downscale it first"
        )
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # truncated or corrupt pixel data
        raise ImageError(f"{_name(src)}: image data is corrupt or truncated ({e})") from None
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        im = im.convert("RGB")
    elif mode == "La":
        im = im.convert("LA")
    if im.mode == "LA":
        a = np.asarray(im)
        return _composite_white(np.dstack([a[..., 0]] * 3 + [a[..., 1]]))
    return from_array(np.asarray(im))
