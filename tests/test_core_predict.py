import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import mer
from mer.checkpoint import CheckpointError
from mer.predict import Predictor

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor(untrained_checkpoint, detector):
    return Predictor(untrained_checkpoint, device="cpu", detector=detector)


def test_predictor_returns_one_result_per_face_with_all_classes(predictor, media):
    preds = predictor.predict(media / "multi_face.jpg")
    assert len(preds) == 5
    for p in preds:
        assert list(p.probs) == list(mer.CLASSES)
        assert abs(sum(p.probs.values()) - 1) < 1e-5
        assert p.top_class == max(p.probs, key=p.probs.get) and p.top_prob == max(p.probs.values())
        assert p.crop.shape == (128, 128, 3) and p.heatmap is None
        d = p.to_dict()
        assert set(d) >= {"box", "det_prob", "landmarks", "probs", "top_class", "top_prob"}
    assert predictor.predict(media / "no-faces.jpg") == []


def test_softmax_is_applied_exactly_once(predictor, media):
    p = predictor.predict(media / "single_face.jpg")[0]
    x = predictor.preprocess([p.crop])
    with torch.no_grad():
        logits = predictor.model(x)
    once = torch.softmax(logits, 1)[0].numpy()
    twice = torch.softmax(torch.softmax(logits, 1), 1)[0].numpy()
    got = np.array(list(p.probs.values()))
    assert np.allclose(got, once, atol=1e-5)
    assert not np.allclose(got, twice, atol=1e-4)


def test_gradcam_through_the_predictor(predictor, media):
    preds = predictor.predict(media / "two_people.jpg", gradcam=True)
    assert len(preds) == 2
    for p in preds:
        assert p.heatmap.shape == (128, 128) and 0 <= p.heatmap.min() and p.heatmap.max() <= 1
    from mer.render import draw_predictions
    img = mer.read_image(media / "two_people.jpg")
    out = draw_predictions(img, preds, gradcam=True)
    assert out.shape == img.shape and (out != img).any()


def test_batched_classification_matches_one_by_one(predictor, media):
    img = mer.read_image(media / "multi_face.jpg")
    faces = predictor.detector.detect(img)[0]
    crops = [predictor.crop(img, f) for f in faces]
    together, _ = predictor.classify(crops)
    alone = np.concatenate([predictor.classify([c])[0] for c in crops])
    assert np.allclose(together, alone, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_predictor_on_cuda(untrained_checkpoint, media):
    p = Predictor(untrained_checkpoint, device="cuda")
    assert p.device.type == "cuda"
    assert len(p.predict(media / "multi_face.jpg", gradcam=True)) == 5


def test_device_setting_and_env_override(untrained_checkpoint, monkeypatch):
    monkeypatch.setenv("MER_DEVICE", "cpu")
    assert Predictor(untrained_checkpoint).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            Predictor(untrained_checkpoint, device="cuda")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Predictor(tmp_path / "nope.safetensors", device="cpu")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mer", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_prints_one_json_object_per_face_and_writes_gradcam(untrained_checkpoint, media, tmp_path):
    out = tmp_path / "not" / "yet" / "cam.png"  # missing folders are created
    r = run_cli("predict", media / "two_people.jpg", "--checkpoint", untrained_checkpoint, "--json",
                "--gradcam", out)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2 and all(set(mer.CLASSES) == set(row["probs"]) for row in rows)
    assert mer.read_image(out).shape == mer.read_image(media / "two_people.jpg").shape


def test_cli_errors_are_clear(untrained_checkpoint, tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    r = run_cli("predict", tmp_path / "z.jpg", "--checkpoint", untrained_checkpoint)
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("predict", tmp_path / "z.jpg", "--checkpoint", tmp_path / "missing.safetensors")
    assert r.returncode == 2 and "no such checkpoint" in r.stderr


def test_face_labels_never_overlap_on_a_real_group_photo(predictor, media):
    from mer.render import _intersects, draw_predictions, label_sizes, label_text, layout_labels
    img = mer.read_image(media / "multi_face.jpg")
    preds = predictor.predict(img)
    sizes = label_sizes([label_text(i, p) for i, p in enumerate(preds)], img.shape)
    # the photo exercises the problem: labels put just above each box would hide one another
    naive = [(int(p.face.box[0]), int(p.face.box[1]) - h, int(p.face.box[0]) + w, int(p.face.box[1]))
             for p, (w, h) in zip(preds, sizes)]
    assert any(_intersects(a, b) for i, a in enumerate(naive) for b in naive[:i])
    rects = layout_labels([p.face.box for p in preds], sizes, img.shape)
    assert [(r[2] - r[0], r[3] - r[1]) for r in rects] == sizes
    for i, a in enumerate(rects):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= img.shape[1] and a[3] <= img.shape[0], a
        for b in rects[:i]:
            assert not _intersects(a, b), (a, b)
        for j, p in enumerate(preds):  # there is room here to keep clear of the other faces too
            assert j == i or not _intersects(a, [round(float(v)) for v in p.face.box]), (i, j)
    out = draw_predictions(img, preds)
    for x1, y1, x2, y2 in rects:  # each label's background is drawn where the layout put it
        for x, y in [(x1, y1), (x2 - 1, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)]:
            assert tuple(out[y, x]) == (0, 255, 0), (x, y)


def test_label_layout_with_crowded_and_tiny_images():
    from mer.render import _intersects, layout_labels
    boxes = [np.array([100, 100, 140, 140])] * 6 + [np.array([-50, -50, 5, 5])]
    rects = layout_labels(boxes, [(120, 20)] * 7, (400, 400, 3))
    assert all(not _intersects(a, b) for i, a in enumerate(rects) for b in rects[:i])
    assert all(0 <= r[0] and 0 <= r[1] and r[2] <= 400 and r[3] <= 400 for r in rects)
    # an image smaller than one label: still one rectangle per face and no error
    assert len(layout_labels(boxes[:2], [(120, 20)] * 2, (10, 10, 3))) == 2


def test_one_box_drawer_for_the_image_tab_the_video_preview_and_live(predictor, media):
    """mer.render.draw_faces draws every face box: the video preview (mer.encode.annotate) of a frame
    equals the image tab's picture of it for the same labels; an interpolated face is amber (the
    live view is the image tab's picture plus a note under each box, mer.live.draw_live). Issue 19,
    item 9: there were three drawers, each with its own look."""
    from mer.encode import annotate
    from mer.render import AMBER, draw_predictions, label_text
    img = mer.read_image(media / "multi_face.jpg")
    preds = predictor.predict(img)
    h, w = img.shape[:2]
    labels = [label_text(i, p) for i, p in enumerate(preds)]
    shown = draw_predictions(img, preds)
    assert np.array_equal(annotate(img, [(p.face.box, True, t) for p, t in zip(preds, labels)], (w, h)), shown)
    x1, y1 = (int(round(float(v))) for v in preds[0].face.box[2:4])
    assert tuple(annotate(img, [(preds[0].face.box, False, labels[0])], (w, h))[y1, x1]) == AMBER
