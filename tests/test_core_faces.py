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


def _upstream(batch, det):
    """The reference: facenet-pytorch's own detect_face with its own nets as MTCNN builds them (same
    weights, PyTorch's default NCHW format; the detector's nets are channels-last, which a conv
    follows whatever its input's format) and the same settings."""
    import torch
    from facenet_pytorch import MTCNN
    from facenet_pytorch.models.utils.detect_face import detect_face
    c = det.config
    m = MTCNN(keep_all=True, device="cpu")
    assert all(w.is_contiguous() for net in (m.pnet, m.rnet, m.onet) for w in net.parameters())
    with torch.no_grad():
        boxes, points = detect_face(batch, c.min_face_size, m.pnet, m.rnet, m.onet, list(c.thresholds),
                                    c.factor, "cpu")
    return [(np.asarray(b, np.float32).reshape(-1, 5), np.asarray(p, np.float32).reshape(-1, 5, 2))
            for b, p in zip(boxes, points)]


def _reference_batches(media, det):
    import cv2
    import decord
    out = [(f.name, det._prepare(f)[0][None]) for f in sorted(media.glob("*.jp*g"))]
    for f in sorted(media.glob("*.mp4")):  # 8 frames spread over each shared clip, as the video path sizes them
        vr = decord.VideoReader(str(f))
        fr = vr.get_batch(list(np.linspace(0, len(vr) - 1, 8).round().astype(int))).asnumpy()
        w = 320
        out.append((f.name, np.stack([cv2.resize(x, (w, round(w * x.shape[0] / x.shape[1])),
                                                 interpolation=cv2.INTER_AREA) for x in fr])))
    return out


def test_batched_crops_give_facenet_pytorchs_boxes(detector, media):
    """R-Net/O-Net crops gathered in one batched op and channels-last nets give the same faces as
    facenet-pytorch's own detect_face (per-box interpolate, NCHW nets): the same count per frame,
    boxes and landmarks within 1e-3 px and scores within 1e-5, float rounding only (measured on
    these photos and frames: 6e-5 px, 1.2e-4 px and 4e-7, see mer/faces.py)."""
    from mer.faces import detect_faces
    c = detector.config
    checked = 0
    for name, batch in _reference_batches(media, detector):
        ref = _upstream(batch, detector)
        got = detect_faces(batch, c.min_face_size, detector._nets, c.thresholds, c.factor, detector.device)
        assert [len(b) for b, _ in got] == [len(b) for b, _ in ref], name
        for (gb, gp), (rb, rp) in zip(got, ref):
            assert np.abs(gb[:, :4] - rb[:, :4]).max(initial=0) <= 1e-3, name
            assert np.abs(gp - rp).max(initial=0) <= 1e-3, name
            assert np.abs(gb[:, 4] - rb[:, 4]).max(initial=0) < 1e-5, name
            checked += len(gb)
    assert checked >= 30  # faces on the photos and in the clips' frames were really compared


def test_area_resize_is_torchs_area_interpolation():
    """The batched resize equals torch's interpolate(mode='area') on every crop, odd sizes included."""
    import torch
    from mer.faces import _area_resize
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, 37, 53), generator=g, dtype=torch.uint8)
    sat = torch.nn.functional.pad(frames.int().cumsum(2).cumsum(3), (1, 0, 1, 0))
    y0, y1 = torch.tensor([0, 5, 3, 10]), torch.tensor([37, 9, 30, 11])
    x0, x1 = torch.tensor([0, 7, 50, 20]), torch.tensor([53, 40, 53, 21])
    inds = torch.tensor([0, 1, 0, 1])
    for size in (24, 48):
        got = _area_resize(sat, inds, y0, y1, x0, x1, size)
        for k in range(4):
            crop = frames[inds[k], :, y0[k]:y1[k], x0[k]:x1[k]].float()[None]
            ref = torch.nn.functional.interpolate(crop, size=(size, size), mode="area")[0]
            assert torch.allclose(got[k], ref, atol=1e-3), (size, k)


@pytest.mark.parametrize("shape", [(1, 1), (12, 800), (16, 16), (800, 12), (17, 40)])
def test_tiny_frames_give_no_faces_not_a_crash(detector, media, shape):
    from PIL import Image
    tiny = np.full((*shape, 3), 128, np.uint8)
    assert detector.detect(tiny) == [[]]
    assert detector.detect(Image.new("RGB", shape[::-1])) == [[]]
    # inside a mixed batch: the tiny frame gets no faces, the others theirs
    out = detector.detect([media / "single_face.jpg", tiny, tiny, media / "two_people.jpg"])
    assert [len(f) for f in out] == [1, 0, 0, 2]


def test_cuda_exactness_flags_are_set_once_and_never_toggled(detector, media, default_checkpoint):
    """No TF32 on CUDA is a process-wide setting made when a detector or predictor is built there
    (exact_cuda), not a per-call context that restores the flags on exit: under concurrent
    requests that switched TF32 back on while another call was running (issue 19, item 5). Here
    (no GPU needed to set the flags): after exact_cuda("cuda") the flags are the exact ones, and
    they stay so while eight threads detect, classify and run Grad-CAM at once."""
    import threading
    import torch
    from mer.faces import exact_cuda
    from mer.predict import Predictor
    b = torch.backends

    def flags():
        return (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark)
    saved = flags()
    try:
        b.cudnn.allow_tf32, b.cudnn.deterministic = True, False  # PyTorch's defaults
        exact_cuda("cuda")
        exact = (False, False, True, False)
        assert flags() == exact
        predictor = Predictor(default_checkpoint, device="cpu", detector=detector)
        img = read_image(media / "two_people.jpg")
        seen, done = set(), threading.Event()

        def watch():
            while not done.is_set():
                seen.add(flags())

        def work(k):
            for _ in range(2):
                predictor.predict(img, gradcam=k % 2 == 0)
        w = threading.Thread(target=watch)
        w.start()
        ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        done.set()
        w.join()
        assert seen == {exact}
    finally:
        b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark = saved
