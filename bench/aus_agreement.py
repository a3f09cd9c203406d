"""Agreement of our face-mesh pipeline (MTCNN -> MediaPipe-style crop -> ported nets) with MediaPipe's
own Face Landmarker (Tasks API) on whole photos. Two steps, two environments (mediapipe needs
opencv-contrib-python, which clashes with the app's opencv-python-headless):

    /tmp/mpvenv/bin/python bench/aus_agreement.py mediapipe --task face_landmarker.task \
        --media ../shared/media --out /tmp/mp_faces.npz         # throwaway venv: mediapipe, numpy
    python bench/aus_agreement.py compare /tmp/mp_faces.npz [--media ../shared/media] [--no-refine]

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
    p.add_argument("--no-refine", action="store_true")
    a = ap.parse_args()
    if a.cmd == "mediapipe":
        run_mediapipe(a.task, a.media, a.out)
    else:
        compare(a.ref, a.media, not a.no_refine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
