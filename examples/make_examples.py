"""Regenerate the app's redistributable examples (run from the repo root):
    python examples/make_examples.py
astronaut.jpg: scikit-image's `astronaut` (Eileen Collins, NASA; public domain).
astronaut.mp4: 4 s, 320x240, 25 fps H.264 clip made from it (slow drift plus a brief jolt)."""
from pathlib import Path

import cv2
import numpy as np
from skimage import data

import sys
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mer.encode import write_h264  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    img = data.astronaut()  # 512x512 RGB
    cv2.imwrite(str(HERE / "astronaut.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 88])
    face = img[0:300, 60:460]  # head and shoulders
    fps, n = 25, 100

    def frames():
        for i in range(n):
            jolt = 5.0 if 50 <= i < 54 else 0.0
            dx, dy = 4 * np.sin(i / fps * 2) + jolt, 3 * np.cos(i / fps * 1.3)
            m = np.float32([[0.8, 0, dx], [0, 0.8, dy]])
            yield cv2.warpAffine(face, m, (320, 240), borderMode=cv2.BORDER_REFLECT)

    write_h264(frames(), HERE / "astronaut.mp4", fps)


if __name__ == "__main__":
    main()
