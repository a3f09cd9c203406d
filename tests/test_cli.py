"""python -m mer predict: folders, bad input rejected before torch is imported, argument checks,
odd images. Real MTCNN and a real (random-init) checkpoint; media from ../shared/media."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mer
from test_core_images import huge_png

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "facenet_pytorch", "cv2", "decord", "pandas", "plotly")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mer", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def run_main(*argv):
    """mer.__main__.main(argv) in a fresh interpreter -> (exit code, heavy modules imported, stderr)."""
    code = ("import json, sys\nfrom mer.__main__ import main\n"
            "try:\n    rc = main(json.loads(sys.argv[1]))\nexcept SystemExit as e:\n    rc = e.code\n"
            f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]))")
    r = subprocess.run([sys.executable, "-c", code, json.dumps([str(a) for a in argv])], cwd=ROOT,
                       env=ENV, capture_output=True, text=True, timeout=120)
    rc, heavy = json.loads(r.stdout.splitlines()[-1])
    return rc, heavy, r.stderr


def test_import_mer_is_lazy_and_keeps_its_names():
    code = ("import sys, mer\n"
            f"before = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "from mer import Predictor, read_image\n"
            "names = [mer.CLASSES, mer.ModelCard, mer.save_checkpoint, mer.create_model, mer.Predictor,\n"
            "         mer.CheckpointError, mer.FaceDetector, mer.DEFAULT_CHECKPOINT, mer.gradcam.GradCAM]\n"
            "assert Predictor is mer.predict.Predictor and set(mer.__all__) <= set(dir(mer))\n"
            "try:\n    mer.no_such_name\nexcept AttributeError:\n    print(before)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_help_and_bad_input_are_answered_before_torch_is_imported(tmp_path, media):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "head.jpg").write_bytes((media / "neutral.jpeg").read_bytes()[:300])
    (tmp_path / "bomb.png").write_bytes(huge_png(20000, 20000))
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "no_images").mkdir()
    good = media / "single_face.jpg"
    for argv, rc, message in [
        (["--help"], 0, ""),
        (["predict", "--help"], 0, ""),
        (["predict", tmp_path / "missing.jpg"], 2, "no such file"),
        (["predict", tmp_path / "empty.jpg"], 2, "empty (0 bytes)"),
        (["predict", tmp_path / "text.jpg"], 2, "not a readable image"),
        (["predict", tmp_path / "head.jpg"], 2, "corrupt or truncated"),
        (["predict", tmp_path / "bomb.png"], 2, "too large"),
        (["predict", tmp_path / "no_images"], 2, "no image files"),
        (["predict", media / "single_face.mp4"], 2, "a video"),
        (["predict", good, "--checkpoint", tmp_path / "nope.safetensors"], 2, "no such checkpoint"),
        (["predict", good, "--gradcam", tmp_path / "a_file" / "cam.png"], 2, "is a file, not a folder"),
        (["predict", good, "--gradcam", tmp_path / "cam.txt"], 2, "unknown image type"),
        (["predict", good, "--gradcam", good], 2, "that is the input image"),
        (["predict", good, "--min-prob", "5"], 2, "between 0 and 1"),
        (["predict", good, "--device", "gpu"], 2, "--device"),
    ]:
        got, heavy, err = run_main(*argv)
        assert (got, heavy) == (rc, []), (argv, err)
        assert message in err and "Traceback" not in err, (argv, err)


@pytest.mark.parametrize("value", ["5", "nan", "-0.5", "inf", "abc"])
def test_min_prob_outside_0_1_is_refused(value):
    r = run_cli("predict", "x.jpg", "--min-prob", value)
    assert r.returncode == 2 and "--min-prob" in r.stderr and "between 0 and 1" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def make_folder(folder: Path, media: Path) -> set[str]:
    """A folder a user might have: good photos, odd ones and broken ones. Returns the broken names."""
    folder.mkdir()
    for name in ["two_people.jpg", "no-faces.jpg"]:
        (folder / name).write_bytes((media / name).read_bytes())
    Image.open(media / "single_face.jpg").convert("CMYK").save(folder / "cmyk.jpg")
    Image.new("RGB", (1, 1), (128, 128, 128)).save(folder / "tiny.png")
    Image.new("RGB", (800, 12), (200, 10, 10)).save(folder / "banner.png")
    (folder / "empty.jpg").write_bytes(b"")
    data = (media / "neutral.jpeg").read_bytes()
    (folder / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (folder / "bomb.png").write_bytes(huge_png(9000, 9000))
    (folder / "notes.txt").write_text("not an image, skipped by its extension")
    return {"empty.jpg", "trunc.jpg", "bomb.png"}


def test_folder_predicts_every_image_and_reports_broken_ones(untrained_checkpoint, media, tmp_path):
    broken = make_folder(tmp_path / "in", media)
    try:  # a file name that is not UTF-8 (Linux allows it) must not stop the run
        (tmp_path / "in" / os.fsdecode(b"x_\xff.jpg")).write_bytes((media / "justin.jpg").read_bytes())
        odd = ["x_\\xff.jpg"]
    except (OSError, UnicodeError):
        odd = []
    cams = tmp_path / "out" / "not" / "yet" / "there"
    r = run_cli("predict", tmp_path / "in", "--checkpoint", untrained_checkpoint, "--json", "--gradcam", cams)
    assert r.returncode == 1, r.stderr  # some images failed, the others were predicted
    rows = {row["image"]: row for row in map(json.loads, r.stdout.splitlines())}
    failed = {n for n, row in rows.items() if "error" in row}
    assert broken <= failed <= broken | {"tiny.png", "banner.png"}  # (MTCNN and <= 16 px: h5)
    assert "Traceback" not in r.stderr and f"{len(failed)} of {len(rows)} images failed" in r.stderr
    names = [json.loads(line)["image"] for line in r.stdout.splitlines()]
    expected = sorted(["two_people.jpg", "no-faces.jpg", "cmyk.jpg", "tiny.png", "banner.png", *broken])
    assert names == sorted(expected + odd)  # sorted, one line per image, notes.txt skipped
    assert "empty" in rows["empty.jpg"]["error"] and "truncated" in rows["trunc.jpg"]["error"]
    assert "too large" in rows["bomb.png"]["error"]
    assert all(not rows[n]["faces"] for n in broken)
    assert len(rows["two_people.jpg"]["faces"]) == 2 and len(rows["cmyk.jpg"]["faces"]) == 1
    assert rows["no-faces.jpg"]["faces"] == [] and "error" not in rows["no-faces.jpg"]
    for n in odd:
        assert len(rows[n]["faces"]) == 1 and "error" not in rows[n]
    for row in rows.values():
        assert all(set(f["probs"]) == set(mer.CLASSES) for f in row["faces"])
    written = {p.name for p in cams.iterdir()}
    assert {"two_people_gradcam.png", "no-faces_gradcam.png", "cmyk_gradcam.png"} <= written
    assert not any(n.startswith(("empty", "trunc", "bomb")) for n in written)
    cam = np.asarray(Image.open(cams / "two_people_gradcam.png"))
    assert cam.shape == mer.read_image(media / "two_people.jpg").shape


def test_folder_text_output_is_one_block_per_image(media, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "b_empty.jpg").write_bytes(b"")
    for name in ["two_people.jpg", "no-faces.jpg"]:
        (d / name).write_bytes((media / name).read_bytes())
    r = run_cli("predict", d)  # the shipped default model: FER2013's seven classes
    assert r.returncode == 1 and "1 of 3 images failed" in r.stderr and "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "b_empty.jpg: error: file is empty (0 bytes)"
    assert lines[1] == "no-faces.jpg: no face found"
    assert lines[2] == "two_people.jpg: 2 faces"
    assert len(lines) == 5 and all(line.startswith("  face ") for line in lines[3:])
    assert all(line.split()[2] in mer.FER2013_CLASSES for line in lines[3:]), lines
