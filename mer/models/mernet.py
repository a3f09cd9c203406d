"""MERNet: the project's default classifier. Small (~0.3M params), BatchNorm, CBAM after each
stage, global pooling head, so any input size >= 64 and any number of input channels work."""
from __future__ import annotations

import torch
from torch import nn

from .cbam import CBAM
from .registry import register_model


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Stage(nn.Sequential):
    def __init__(self, cin: int, cout: int, use_cbam: bool):
        super().__init__(conv_bn(cin, cout), conv_bn(cout, cout),
                         CBAM(cout, reduction=8, spatial_kernel=7) if use_cbam else nn.Identity())


class MERNet(nn.Module):
    def __init__(self, num_classes: int = 6, in_chans: int = 3, widths=(32, 64, 128),
                 use_cbam: bool = True, dropout: float = 0.3, input_size: int = 128):
        super().__init__()
        self.stem = conv_bn(in_chans, widths[0], stride=2)
        stages, cin = [], widths[0]
        for w in widths:
            stages.append(Stage(cin, w, use_cbam))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))
        self.default_cfg = {
            "input_size": (input_size, input_size), "fixed_input_size": False, "min_input_size": 64,
            "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
            "gradcam_layer": f"stages.{len(widths) - 1}",
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 64:
            raise ValueError(f"MERNet needs inputs of at least 64x64, got {tuple(x.shape[-2:])}")
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1:
                x = self.pool(x)
        return self.head(x)


@register_model
def mernet_cbam(num_classes: int = 6, in_chans: int = 3, **kw) -> MERNet:
    return MERNet(num_classes, in_chans, use_cbam=True, **kw)


@register_model
def mernet(num_classes: int = 6, in_chans: int = 3, **kw) -> MERNet:
    return MERNet(num_classes, in_chans, use_cbam=False, **kw)
