"""python -m mer predict IMAGE|FOLDER [--checkpoint PATH] [--gradcam OUT] [--json] [--device D]

Arguments and input files are checked before torch is imported, so a typo or a bad file is
answered in well under a second.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from .files import VIDEO_EXTS

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """\
A FOLDER argument predicts every image in it (not its subfolders), in sorted name order, one
block (or, with --json, one JSON line) per image, named by its file name; files that cannot be
read are reported in their block and the run goes on. Files without an image extension are
skipped. --gradcam then names a folder: NAME_gradcam.png per image.

exit status:
  0  every image was predicted (an image without a face counts as predicted)
  1  some images of a folder (or the --gradcam file) failed; the rest were predicted and printed
  2  nothing was predicted: bad arguments, a missing or unreadable image, a folder without
     images, an unusable checkpoint, or a --gradcam path that cannot be written
"""


class UsageError(Exception):
    """Bad arguments or input: reported as one line, exit status 2."""


def probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = None
    if v is None or not 0.0 <= v <= 1.0:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {text!r}")
    return v


def device_name(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m mer", description="Micro-expression recognition core.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict", help="detect faces in an image (or every image in a folder) and "
                       "classify each face", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="image file (jpg, png, tiff, ...) or a folder of them")
    p.add_argument("--checkpoint", help="model .safetensors (default: the shipped FER2013 macro-expression "
                   "model, 7 classes; the micro-expression model is mer/weights/micro_synth.safetensors)")
    p.add_argument("--gradcam", metavar="OUT", help="write the image with Grad-CAM overlays, boxes and "
                   "labels to OUT.png (for a FOLDER: into the folder OUT; missing folders are created)")
    p.add_argument("--json", action="store_true", help="one JSON object per face (for a FOLDER: one "
                   "JSON object per image, with its faces or its error)")
    p.add_argument("--no-aus", action="store_true", help="skip the face mesh: no blendshapes, AU proxies "
                   "or head pose (on by default; JSON keys blendshapes, aus, pose)")
    p.add_argument("--device", type=device_name, default="auto",
                   help="auto | cpu | cuda | cuda:N | mps (default: auto, or $MER_DEVICE)")
    p.add_argument("--min-prob", type=probability, default=None, metavar="P",
                   help="minimum face detection probability, 0..1 (default 0.9)")
    return ap


def shown(path: Path | str) -> str:
    """A file name that prints on any terminal (undecodable bytes as \\xNN)."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(images by extension, sorted by name; other files)."""
    from PIL import Image
    exts = {e.lower() for e in Image.registered_extensions()}
    files = sorted((p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()),
                   key=lambda p: os.fsencode(p.name))
    return [p for p in files if p.suffix.lower() in exts], [p for p in files if p.suffix.lower() not in exts]


def _writable_target(path: Path, what: str) -> None:
    """Refuse, before any work, an output whose folder cannot exist or be written."""
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {shown(path)}: {shown(probe)} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {shown(path)}: no permission to write in {shown(probe)}")


def gradcam_targets(args, inputs: list[Path], folder_mode: bool) -> dict[Path, Path]:
    """Input image -> Grad-CAM output path; checked (not created) before any work."""
    if not args.gradcam:
        return {}
    from PIL import Image
    out = Path(args.gradcam)
    if folder_mode or out.is_dir():
        if out.exists() and not out.is_dir():
            raise UsageError(f"--gradcam {shown(out)}: for a folder of images this must be a folder")
        _writable_target(out / "x.png", "--gradcam")
        stems = [p.stem for p in inputs]
        return {p: out / (f"{p.stem if stems.count(p.stem) == 1 else p.name}_gradcam.png") for p in inputs}
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"--gradcam {shown(out)}: unknown image type {out.suffix or '(no extension)'!r}; "
                         "use .png or .jpg")
    _writable_target(out, "--gradcam")
    if out.exists() and out.resolve() == inputs[0].resolve():
        raise UsageError(f"--gradcam {shown(out)}: that is the input image; name another file")
    return {inputs[0]: out}


def check_inputs(args) -> tuple[list[Path], bool, dict[Path, Path]]:
    """(images, folder mode?, Grad-CAM targets), or UsageError: no torch needed."""
    src = Path(args.image)
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    if ckpt and not ckpt.is_file():
        raise UsageError(f"{shown(ckpt)}: " + ("a folder, not a checkpoint file" if ckpt.is_dir()
                                               else "no such checkpoint file"))
    if src.is_dir():
        images, others = image_files(src)
        if not images:
            n = len(others)
            raise UsageError(f"{shown(src)}: folder has no image files"
                             + (f" (only {n} other file{'s' * (n != 1)})" if n else ""))
        if others:
            print(f"skipping {len(others)} file{'s' * (len(others) != 1)} without an image extension "
                  f"in {shown(src)}", file=sys.stderr)
        return images, True, gradcam_targets(args, images, True)
    if not src.exists():
        raise UsageError(f"{shown(src)}: no such file or folder")
    if src.suffix.lower() in VIDEO_EXTS:
        raise UsageError(f"{shown(src)}: a video; this command reads images "
                         "(videos: python -m batch FOLDER --out OUT, or the app's video tab)")
    return [src], False, gradcam_targets(args, [src], False)


def write_gradcam(img, faces, out: Path) -> str | None:
    """Annotated image -> out (atomically); None, or the reason it failed."""
    import io
    from PIL import Image
    from .render import draw_predictions
    from .files import atomic_write
    buf = io.BytesIO()
    try:
        fmt = Image.registered_extensions()[out.suffix.lower()]
        Image.fromarray(draw_predictions(img, faces, gradcam=True)).save(buf, format=fmt)
        atomic_write(out, buf.getvalue())
    except (OSError, ValueError) as e:
        return f"could not write {shown(out)}: {e}"
    print(f"wrote {shown(out)}", file=sys.stderr)
    return None


def face_line(i: int, fp) -> str:
    x1, y1, x2, y2 = fp.face.box
    line = (f"face {i}: {fp.top_class} {fp.top_prob:.2f}  box ({x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f})"
            f"  detection {fp.face.prob:.2f}")
    if fp.mesh is not None and not fp.mesh.found:
        line += f"  face mesh: no face in this crop (presence {fp.mesh.presence:.2f}), no AU proxies"
    elif fp.mesh is not None:
        from .aus import top_aus
        top = ", ".join(f"AU{int(n[2:])} {v:.2f}" for n, v in top_aus(fp.aus))
        line += f"  AU proxies: {top or 'none >= 0.2'}  yaw/pitch/roll {'/'.join(f'{v:.0f}' for v in fp.mesh.pose)}"
    return line


ANALYSIS_ERRORS = (RuntimeError, ValueError, MemoryError)  # from detection or the model, per image


def analysis_error(e: Exception) -> str:
    return f"could not analyse it ({type(e).__name__}: {e})"


def predict_command(args) -> int:
    from .images import ImageError, read_image
    try:
        images, folder_mode, cams = check_inputs(args)
        first = read_image(images[0]) if not folder_mode else None  # before torch: fast rejection
    except (UsageError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    from .checkpoint import CheckpointError
    from .faces import DetectorConfig
    from .predict import Predictor
    try:
        cfg = DetectorConfig() if args.min_prob is None else DetectorConfig(min_prob=args.min_prob)
        pred = Predictor(args.checkpoint, device=args.device, detector=cfg, aus=not args.no_aus)
    except (CheckpointError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    if not folder_mode:
        try:
            faces = pred.predict(first, gradcam=bool(cams))
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except ANALYSIS_ERRORS as e:
            print(f"error: {shown(images[0])}: {analysis_error(e)}", file=sys.stderr)
            return EXIT_USAGE
        for i, fp in enumerate(faces):
            print(json.dumps({"face": i, **fp.to_dict()}) if args.json else face_line(i, fp), flush=True)
        if not faces and not args.json:
            print("no face found", file=sys.stderr)
        if cams and (err := write_gradcam(first, faces, cams[images[0]])):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_SOME_FAILED
        return EXIT_OK

    failed = 0
    for path in images:
        name, error, faces = shown(path.name), None, []
        try:
            img = read_image(path)
            faces = pred.predict(img, gradcam=bool(cams))
            if cams:
                error = write_gradcam(img, faces, cams[path])
        except CheckpointError as e:  # the model cannot classify images at all: stop
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except ImageError as e:
            error = str(e).removeprefix(f"{path}: ")
        except ANALYSIS_ERRORS as e:
            error = analysis_error(e)
        failed += error is not None
        if args.json:
            row = {"image": name, "faces": [{"face": i, **fp.to_dict()} for i, fp in enumerate(faces)]}
            print(json.dumps({**row, "error": error} if error else row), flush=True)
        else:
            head = f"error: {error}" if error else (f"{len(faces)} face{'s' * (len(faces) != 1)}"
                                                     if faces else "no face found")
            print("\n".join([f"{name}: {head}"] + [f"  {face_line(i, fp)}" for i, fp in enumerate(faces)]),
                  flush=True)
    if failed:
        print(f"{failed} of {len(images)} images failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return predict_command(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `python -m mer predict FOLDER | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SOME_FAILED


if __name__ == "__main__":
    sys.exit(main())
