import math

import numpy as np
import pytest

from mer.faces import DetectorConfig, FaceDetector, align_crop
from mer.images import read_image

EXPECTED = {"single_face.jpg": 1, "obama.jpg": 1, "multi_face.jpg": 5, "two_people.jpg": 2,
            "no-faces.jpg": 0}


@pytest.mark.parametrize("name,count", EXPECTED.items())
def test_face_counts_on_real_photos(detector, media, name, count):
    faces = detector.detect(media / name)[0]
    assert len(faces) == count
    for f in faces:
        assert f.prob >= 0.9 and f.box.shape == (4,) and f.landmarks.shape == (5, 2)
        x1, y1, x2, y2 = f.box
        assert x2 > x1 and y2 > y1
        # landmarks lie inside (or very near) their box
        assert (f.landmarks[:, 0] > x1 - 5).all() and (f.landmarks[:, 0] < x2 + 5).all()


def test_obama_false_face_is_what_the_threshold_removes(media):
    raw = FaceDetector(DetectorConfig(min_prob=0.0), device="cpu").detect(media / "obama.jpg")[0]
    assert len(raw) == 2 and 0.7 < raw[1].prob < 0.9  # the blurred-background false face


def test_mixed_batch_with_and_without_faces_does_not_crash(detector, media):
    names = ["single_face.jpg", "no-faces.jpg", "multi_face.jpg", "two_people.jpg", "no-faces.jpg"]
    out = detector.detect([media / n for n in names])
    assert [len(f) for f in out] == [1, 0, 5, 2, 0]
    # same-size frames go through MTCNN as one batch: face, no face, two faces
    img = read_image(media / "two_people.jpg")
    blank = np.full_like(img, 127)
    crop = img.copy()
    crop[:, img.shape[1] // 2:] = 127  # keep only the left person
    out = detector.detect(np.stack([img, blank, crop]))
    assert [len(f) for f in out] == [2, 0, 1]


def test_downscaling_maps_boxes_back_to_full_resolution(media):
    full = FaceDetector(DetectorConfig(max_side=0), device="cpu").detect(media / "multi_face.jpg")[0]
    small = FaceDetector(DetectorConfig(max_side=400), device="cpu").detect(media / "multi_face.jpg")[0]
    assert len(full) == len(small) == 5

    def iou(a, b):
        ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
    for f in full:
        assert max(iou(f.box, g.box) for g in small) > 0.7


def test_grayscale_input_still_finds_the_face(detector, media):
    img = read_image(media / "single_face.jpg")
    gray = img.mean(axis=2).astype(np.uint8)
    assert len(detector.detect(gray)[0]) == 1


def test_aligned_crop_levels_the_eye_line(detector, media):
    import cv2
    img = read_image(media / "single_face.jpg")
    h, w = img.shape[:2]
    rot = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0), (w, h))
    face = detector.detect(rot)[0][0]
    (lx, ly), (rx, ry) = face.landmarks[:2]
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx))) > 10  # tilted in the frame
    crop = align_crop(rot, face, 160)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    again = detector.detect(crop)[0]
    assert len(again) == 1
    (lx, ly), (rx, ry) = again[0].landmarks[:2]
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx))) < 5  # level after alignment


def test_min_face_size_setting_is_honoured(media):
    big_only = FaceDetector(DetectorConfig(min_face_size=200), device="cpu")
    assert len(big_only.detect(media / "multi_face.jpg")[0]) == 0
