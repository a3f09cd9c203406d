"""python -m mer predict IMAGE [--checkpoint PATH] [--gradcam OUT.png] [--json] [--device D]"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mer", description="Micro-expression recognition core.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict", help="detect faces in an image and classify each one")
    p.add_argument("image", help="image file (jpg, png, ...)")
    p.add_argument("--checkpoint", help="model .safetensors (default: the shipped demo checkpoint)")
    p.add_argument("--gradcam", metavar="OUT.png", help="write the image with Grad-CAM overlays and boxes")
    p.add_argument("--json", action="store_true", help="print one JSON object per face")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto, or $MER_DEVICE)")
    p.add_argument("--min-prob", type=float, default=None, help="minimum face detection probability")
    args = ap.parse_args(argv)

    from .checkpoint import CheckpointError
    from .faces import DetectorConfig
    from .images import ImageError, read_image
    from .predict import Predictor

    try:
        cfg = DetectorConfig() if args.min_prob is None else DetectorConfig(min_prob=args.min_prob)
        pred = Predictor(args.checkpoint, device=args.device, detector=cfg)
        img = read_image(args.image)
        faces = pred.predict(img, gradcam=bool(args.gradcam))
    except (CheckpointError, ImageError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for i, fp in enumerate(faces):
        if args.json:
            print(json.dumps({"face": i, **fp.to_dict()}))
        else:
            x1, y1, x2, y2 = fp.face.box
            print(f"face {i}: {fp.top_class} {fp.top_prob:.2f}  box ({x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f})"
                  f"  detection {fp.face.prob:.2f}")
    if not faces and not args.json:
        print("no face found", file=sys.stderr)
    if args.gradcam:
        from .render import draw_predictions
        from PIL import Image
        Image.fromarray(draw_predictions(img, faces, gradcam=True)).save(args.gradcam)
        print(f"wrote {args.gradcam}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
