import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mer.images import ImageError, read_image

PHOTO = "neutral.jpeg"  # a Pexels photo: derived inputs are made from it (not from obama.jpg)


@pytest.fixture(scope="module")
def photo(media):
    return Image.open(media / PHOTO).convert("RGB")


def save(im, tmp_path, name, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


def test_rgb_jpeg(media):
    a = read_image(media / "single_face.jpg")
    assert a.dtype == np.uint8 and a.shape == (562, 572, 3)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path, photo):
    g = np.asarray(photo.convert("L")).astype(np.uint16) * 257
    p = tmp_path / "g16.png"
    Image.fromarray(g).save(p)
    assert Image.open(p).mode.startswith("I")
    a = read_image(p)
    assert a.dtype == np.uint8 and a.shape[2] == 3
    assert np.abs(a[..., 0].astype(int) - np.asarray(photo.convert("L"))).max() <= 1


def dark_and_gray_16(h=8, w=8) -> np.ndarray:
    """Left half 200 (very dark in 16 bits), right half 32768 (mid gray); one pixel of 300."""
    g = np.full((h, w), 200, np.uint16)
    g[:, w // 2:] = 32768
    g[0, 0] = 300
    return g


def assert_dark_left_gray_right(a, name):
    assert a.dtype == np.uint8 and a.shape == (8, 8, 3), name
    left, right = a[:, :4].astype(int), a[:, 4:].astype(int)
    assert left.max() <= 1, f"{name}: a dark 16-bit pixel came out {left.max()}"
    assert np.abs(right - 128).max() <= 1, f"{name}: mid gray came out {right.min()}..{right.max()}"


def test_16_bit_images_are_scaled_by_the_type_range_not_the_data(tmp_path):
    import cv2
    g = dark_and_gray_16()
    Image.fromarray(g).save(tmp_path / "g16.png")                              # I;16 PNG
    Image.fromarray(g.astype(">u2")).save(tmp_path / "g16b.tif")              # I;16B TIFF
    (tmp_path / "g16.pgm").write_bytes(b"P5 8 8 65535\n" + g.astype(">u2").tobytes())  # 'I' mode
    cv2.imwrite(str(tmp_path / "rgb48.png"), np.dstack([g] * 3))              # 48-bit RGB PNG
    cv2.imwrite(str(tmp_path / "rgba64.png"), np.dstack([g] * 3 + [np.full_like(g, 65535)]))
    for name in ["g16.png", "g16b.tif", "g16.pgm", "rgb48.png", "rgba64.png"]:
        assert_dark_left_gray_right(read_image(tmp_path / name), name)
    assert_dark_left_gray_right(read_image(g), "uint16 array")
    assert_dark_left_gray_right(read_image(np.dstack([g] * 3)), "uint16 RGB array")
    # all pixels dark: nothing stretches them to full range
    dark = np.full((8, 8), 200, np.uint16)
    Image.fromarray(dark).save(tmp_path / "dark.png")
    assert read_image(tmp_path / "dark.png").max() <= 1


def test_32_bit_int_and_float_tiffs_use_their_type_range(tmp_path):
    g = dark_and_gray_16().astype(np.int64)
    i32 = (g * 32768).astype(np.int32)  # signed 32-bit: 200 -> 200/65536 of full range
    i32[:, 4:] = 2 ** 30                 # half of the signed range -> mid gray
    Image.fromarray(i32).save(tmp_path / "i32.tif")
    assert Image.open(tmp_path / "i32.tif").mode == "I"
    assert_dark_left_gray_right(read_image(tmp_path / "i32.tif"), "int32 tiff")
    f = np.where(np.arange(8) < 4, 0.002, 0.5).astype(np.float32)[None].repeat(8, 0)
    f[0, 0] = 2.0  # an over-range float (HDR) neither darkens nor stretches the rest
    Image.fromarray(f).save(tmp_path / "f32.tif")
    assert Image.open(tmp_path / "f32.tif").mode == "F"
    a = read_image(tmp_path / "f32.tif")
    assert a[0, 0, 0] == 255
    a[0, 0] = 0
    assert_dark_left_gray_right(a, "float tiff")


def test_grayscale_palette_and_cmyk(tmp_path, photo):
    for im, name in [(photo.convert("L"), "g.png"), (photo.convert("P"), "p.png"),
                     (photo.convert("CMYK"), "c.jpg")]:
        a = read_image(save(im, tmp_path, name))
        assert a.shape == (photo.height, photo.width, 3) and a.dtype == np.uint8, name
    gray = read_image(tmp_path / "g.png")
    assert (gray[..., 0] == gray[..., 2]).all()
    cmyk = read_image(tmp_path / "c.jpg")
    assert np.abs(cmyk.astype(int) - np.asarray(photo).astype(int)).mean() < 20


def test_rgba_and_la_are_composited_on_white(tmp_path, photo):
    rgba = photo.convert("RGBA")
    alpha = np.zeros((photo.height, photo.width), np.uint8)
    alpha[:, : photo.width // 2] = 255
    rgba.putalpha(Image.fromarray(alpha))
    a = read_image(save(rgba, tmp_path, "a.png"))
    assert (a[:, photo.width // 2 + 1:] == 255).all()  # transparent half -> white
    assert (a[:, : photo.width // 2] == np.asarray(photo)[:, : photo.width // 2]).all()
    la = photo.convert("LA")
    la.putalpha(Image.fromarray(alpha))
    b = read_image(save(la, tmp_path, "la.png"))
    assert (b[:, photo.width // 2 + 1:] == 255).all()


def test_exif_rotation_is_applied(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = save(photo, tmp_path, "rot.jpg", exif=exif)
    a = read_image(p)
    assert a.shape[:2] == (photo.width, photo.height)


def test_arrays_and_bytes(photo, media):
    arr = np.asarray(photo)
    assert read_image(arr).shape == arr.shape
    assert read_image(arr[..., 0]).shape == arr.shape
    assert read_image(arr.astype(np.float32) / 255).dtype == np.uint8
    assert read_image((media / "justin.jpg").read_bytes()).shape == (384, 381, 3)


def test_zero_byte_and_corrupt_files_give_clear_errors(tmp_path, media):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("this is not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "text.jpg")
    data = (media / PHOTO).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[:200])
    with pytest.raises(ImageError):
        read_image(tmp_path / "trunc.jpg")
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.jpg")


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height (a decompression bomb's calling card)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_huge_images_are_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(huge_png(20000, 20000))
    with pytest.raises(ImageError, match="too large"):
        read_image(p)
    p.write_bytes(huge_png(9000, 9000))  # under PIL's own bomb limit, over ours
    with pytest.raises(ImageError, match="9000x9000"):
        read_image(p)


def test_folders_and_special_files_are_named_as_such(tmp_path):
    with pytest.raises(ImageError, match="not a file \\(a folder\\)"):
        read_image(tmp_path)


def test_pixel_limit_from_the_environment(tmp_path, monkeypatch, photo):
    p = save(photo, tmp_path, "p.png")
    monkeypatch.setenv("MER_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="over the limit"):
        read_image(p)
    monkeypatch.setenv("MER_MAX_PIXELS", "lots")
    with pytest.raises(ImageError, match="MER_MAX_PIXELS must be a number"):
        read_image(p)
