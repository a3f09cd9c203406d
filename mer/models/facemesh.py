"""MediaPipe Face Landmarker's two networks in PyTorch: the face mesh (FaceMeshV2, 478 3-D landmarks
from a 256x256 face crop) and the blendshape model (Blendshape V2, an MLP-Mixer over 146 of those
landmarks -> 52 ARKit-style blendshape scores). Ported from the TFLite models in Google's
`face_landmarker.task` bundle (Apache-2.0) by `python -m mer.convert face-landmarker`; the layer
layout below is read off the TFLite graphs (the converter checks every shape against it).

TFLite semantics kept: the stem's 3x3 stride-2 'same' convolution pads one pixel at the bottom/right
only; 2x2 stride-2 convolutions and max-pools are 'valid'; PReLU has one slope per channel; the
shortcut of a widening block zero-pads the channels. The blendshape model's LayerNorms have a scale
and no shift (as in the graph), eps read from the graph.

`face_landmarker` (registry) holds both: `model.mesh(x)` with x (N, 3, 256, 256) RGB in [0, 1] ->
(landmarks (N, 478, 3) in crop pixels, face-presence logit (N,)); `model.blendshapes(xy)` with the
146 subset landmarks' (N, 146, 2) image-pixel x, y -> (N, 52) scores in [0, 1]. The pipeline
around them (crop, projection, pose) is mer/landmarker.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

INPUT_SIZE = 256
N_LANDMARKS = 478
# face_blendshapes_graph.cc (kLandmarksSubsetIdxs): the 146 landmarks the blendshape model reads.
BLENDSHAPE_LANDMARKS = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66,
    67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145,
    146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178,
    181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291,
    293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356,
    361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397,
    398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477)
# face_blendshapes_graph.cc (kBlendshapeNames): the model's output order.
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight")

# (output channels, bottleneck channels) of the mesh's seven stages; each stage after the first starts
# with a stride-2 block, and every stage has four stride-1 blocks.
MESH_STAGES = ((16, 8), (32, 16), (64, 32), (128, 64), (128, 64), (128, 64), (128, 64))
# Single-threaded on the CPU (as mer.video runs the mesh), the stem and the first two stages (16 x 128 x
# 128 and 32 x 64 x 64 floats a face) run one face at a time: a face's activations then stay in the
# cache, where a batch's are fresh memory every pass (page faults); the narrower stages after them run
# on the whole batch. With more threads, the small per-face operators leave the threads waiting, so
# the batch goes through whole (docs/aus.md, Speed).
FIRST_STAGE_BLOCKS = 9


def conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution; float32 on the CPU through oneDNN. With one thread and fewer than 16 images
    torch picks its reference path for 1x1 kernels instead, about twice the time here (docs/aus.md,
    Speed); the sums differ only in their order (float noise)."""
    if x.is_cpu and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
        return torch.mkldnn_convolution(x, conv.weight, conv.bias, (0, 0), (1, 1), (1, 1), 1)
    return conv(x)


class MeshBlock(nn.Module):
    """x -> PReLU(shortcut(x) + conv1x1(dw3x3(PReLU(conv(x))))); stride 2: a 2x2 stride-2 first
    convolution and a max-pooled (channel zero-padded) shortcut."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, stride, stride)
        self.act1 = nn.PReLU(mid)
        self.dw = nn.Conv2d(mid, mid, 3, padding=1, groups=mid)
        self.conv2 = nn.Conv2d(mid, cout, 1)
        self.act = nn.PReLU(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        h = conv1x1(self.conv1, x) if self.stride == 1 else self.conv1(x)
        y = conv1x1(self.conv2, self.dw(self.act1(h)))
        if self.stride > 1:
            x = F.max_pool2d(x, self.stride)
        # the shortcut is added in place (y is this block's own); its zero-padded channels add nothing
        if self.pad:
            y[:, :x.shape[1]] += x
        else:
            y += x
        return self.act(y)


class FaceMesh(nn.Module):
    """(N, 3, 256, 256) RGB in [0, 1] -> landmarks (N, 478, 3) in crop pixels (x right, y down, z
    towards the back of the head, same scale as x), face-presence logit (N,)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, MESH_STAGES[0][0], 3, 2)
        self.stem_act = nn.PReLU(MESH_STAGES[0][0])
        blocks, cin = [], MESH_STAGES[0][0]
        for i, (cout, mid) in enumerate(MESH_STAGES):
            if i:
                blocks.append(MeshBlock(cin, cout, mid, 2))
            blocks += [MeshBlock(cout, cout, mid) for _ in range(4)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.landmarks = nn.Conv2d(cin, N_LANDMARKS * 3, 2)
        self.presence = nn.Conv2d(cin, 1, 2)

    def first_stages(self, x):
        x = self.stem_act(self.stem(F.pad(x, (0, 1, 0, 1))))  # TF 'same', stride 2: pad bottom/right
        return self.blocks[:FIRST_STAGE_BLOCKS](x)

    def forward(self, x):
        if x.is_cpu and len(x) > 1 and torch.get_num_threads() == 1:  # mer.video's mesh thread
            x = torch.cat([self.first_stages(xi) for xi in x.split(1)])  # one face at a time, then the batch
        else:
            x = self.first_stages(x)
        x = self.blocks[FIRST_STAGE_BLOCKS:](x)
        return self.landmarks(x).reshape(-1, N_LANDMARKS, 3), self.presence(x).reshape(-1)


class LayerNormScale(nn.Module):
    """LayerNorm over the last axis with a learned scale and no shift (the TFLite graph's form)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("eps", torch.tensor(float(eps)))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.weight, None, float(self.eps))


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1 = LayerNormScale(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.ReLU(), nn.Linear(token_hidden, tokens))
        self.norm2 = LayerNormScale(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.ReLU(), nn.Linear(channel_hidden, dim))

    def forward(self, x, first_token_only: bool = False):  # (N, tokens, dim)
        mix1, relu, mix2 = self.token_mlp
        h = relu(mix1(self.norm1(x).transpose(1, 2)))
        if first_token_only:  # the last block: the read-out token's row is all that is used
            x = x[:, :1] + F.linear(h, mix2.weight[:1], mix2.bias[:1]).transpose(1, 2)
        else:
            x = x + mix2(h).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Blendshapes(nn.Module):
    """(N, 146, 2) landmark x, y in image pixels -> (N, 52) blendshape scores in [0, 1]. Centres the
    points, divides by their mean distance from the centre, then an MLP-Mixer whose extra learned
    token is read out."""

    def __init__(self, n_points: int = len(BLENDSHAPE_LANDMARKS), tokens: int = 96, dim: int = 64,
                 depth: int = 4, n_out: int = len(BLENDSHAPE_NAMES)):
        super().__init__()
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.point_mix = nn.Linear(n_points, tokens)
        self.embed = nn.Linear(2, dim)
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(*[MixerBlock(tokens + 1, dim, 384, 256) for _ in range(depth)])
        self.head = nn.Linear(dim, n_out)

    def forward(self, xy):
        xy = xy - xy.mean(1, keepdim=True)
        xy = xy / xy.norm(dim=2, keepdim=True).mean(1, keepdim=True) * self.input_scale
        x = self.embed(self.point_mix(xy.transpose(1, 2)).transpose(1, 2))  # (N, 96, 64)
        x = torch.cat([self.token.expand(len(x), -1, -1), x], 1)
        for block in self.blocks[:-1]:
            x = block(x)
        return torch.sigmoid(self.head(self.blocks[-1](x, first_token_only=True)[:, 0]))


class FaceLandmarker(nn.Module):
    """Both networks, one checkpoint. Also holds MediaPipe's canonical face model (its 468 vertices
    and the Procrustes weights from geometry_pipeline_metadata_landmarks.binarypb) for head pose."""

    def __init__(self, num_classes: int = len(BLENDSHAPE_NAMES), in_chans: int = 3):
        super().__init__()
        if num_classes != len(BLENDSHAPE_NAMES) or in_chans != 3:
            raise ValueError(f"face_landmarker has {len(BLENDSHAPE_NAMES)} outputs and 3 input channels, "
                             f"not {num_classes} and {in_chans}")
        self.mesh = FaceMesh()
        self.blendshapes = Blendshapes()
        self.register_buffer("canonical", torch.zeros(468, 3))
        self.register_buffer("procrustes_weights", torch.zeros(468))
        self.register_buffer("blendshape_landmarks", torch.tensor(BLENDSHAPE_LANDMARKS))
        self.default_cfg = {"input_size": (INPUT_SIZE, INPUT_SIZE), "fixed_input_size": True}

    def forward(self, x):
        """Crops -> (landmarks in crop pixels, presence logit, blendshapes from the crop-space points).
        The pipeline feeds the blendshape net image-space points instead (mer.landmarker)."""
        lm, presence = self.mesh(x)
        return lm, presence, self.blendshapes(lm[:, self.blendshape_landmarks, :2])


@register_model
def face_landmarker(num_classes: int = len(BLENDSHAPE_NAMES), in_chans: int = 3, **_) -> FaceLandmarker:
    return FaceLandmarker(num_classes, in_chans)
