"""Read any image a user has into RGB uint8, or fail with a clear message.

Handles 8/16/32-bit integer and float pixels (scaled by the pixel type's range, never by the data,
so a dark 16-bit photo stays dark), grayscale, palette, RGBA/LA (composited on white), CMYK, EXIF
rotation; refuses decompression bombs and unreadable files before decoding pixels.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # ~6300x6300; $MER_MAX_PIXELS overrides it


class ImageError(ValueError):
    """The input is not an image we can use; the message says why."""


def _max_pixels() -> int:
    text = os.environ.get("MER_MAX_PIXELS")
    if text is None:
        return MAX_PIXELS
    try:
        return int(float(text))
    except ValueError:
        raise ImageError(f"MER_MAX_PIXELS must be a number of pixels (e.g. 40000000), got {text!r}") from None


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
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if not path.is_file():
            raise ImageError(f"{path}: not a file ({'a folder' if path.is_dir() else 'a special file'})")
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: file is empty (0 bytes)")
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise ImageError(f"{path}: cannot read it ({e.strerror or e})") from None
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


def _to_uint8(arr: np.ndarray, white: float | None = None) -> np.ndarray:
    """Scale by the pixel type's range, never by the data: a dark 16-bit photo stays dark.

    `white` is the value that maps to 255; by default the dtype's: 255 for uint8, 65535 for uint16,
    32767 for int16, 2**32 - 1 for uint32 and so on; 1.0 for floats. Negatives clip to 0."""
    if arr.dtype == np.uint8 and white in (None, 255):
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if white is None:
        if np.issubdtype(arr.dtype, np.floating):
            white = 1.0
        elif np.issubdtype(arr.dtype, np.integer):
            white = float(np.iinfo(arr.dtype).max)
        else:
            raise ImageError(f"unsupported pixel type {arr.dtype}")
    a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=white, neginf=0.0)
    return np.clip(a * (255.0 / white), 0, 255).round().astype(np.uint8)


def _white_level(im: Image.Image) -> float | None:
    """The value that is full white for a PIL image's mode (None: the array dtype's own range)."""
    if im.mode.startswith("I;16"):
        return 65535.0 if not im.mode.endswith("S") else 32767.0
    if im.mode == "I":  # 32-bit int storage; the file says how many bits are used
        tags = getattr(im, "tag_v2", None) or {}
        bits = tags.get(258, (16,))
        bits = int(bits[0] if isinstance(bits, tuple) else bits)
        signed = tags.get(339, 1) in (2, (2,))
        # PNG/PPM/PGM 16-bit and in-memory 'I' images hold 0..65535; TIFF says its own depth
        return float(2 ** (bits - 1) - 1 if signed else 2 ** bits - 1)
    if im.mode == "F":
        return 1.0
    return None


def _composite_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgb * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)


def from_array(arr: np.ndarray, white: float | None = None) -> np.ndarray:
    """Any HxW, HxWx1, HxWx3 or HxWx4 array -> HxWx3 uint8, scaled by the pixel type's range
    (uint8 0..255, uint16 0..65535, float 0..1; `white` overrides it)."""
    arr = np.asarray(arr)
    if arr.size == 0:
        raise ImageError("image has no pixels")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = _to_uint8(arr, white)
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
    arr = _to_uint8(arr, white)
    if arr.shape[2] == 4:
        arr = _composite_white(arr)
    return np.ascontiguousarray(arr)


def read_image(src, max_pixels: int | None = None) -> np.ndarray:
    """Path, bytes, PIL image or array -> HxWx3 RGB uint8 (EXIF orientation applied)."""
    if isinstance(src, np.ndarray):
        return from_array(src)
    max_pixels = _max_pixels() if max_pixels is None else max_pixels
    im = _open(src)
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(
            f"{_name(src)}: image too large: {w}x{h} = {w * h / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:.0f} MP; downscale it first"
        )
    try:
        im.load()
        white = _white_level(im)  # before exif_transpose, which drops the TIFF tags
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
    return from_array(np.asarray(im), white)
