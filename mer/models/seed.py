"""The original Micro-expression_CBAMnet network, reproduced exactly (256x256 input).

Fixed here: the CBAM block really attends (it returned its input before), and the model
returns logits (the original applied softmax twice).
"""
from __future__ import annotations

import torch
from torch import nn

from .cbam import CBAM
from .registry import register_model


class SeedNet(nn.Module):
    def __init__(self, num_classes: int = 6, in_chans: int = 3, use_cbam: bool = True,
                 input_size: int = 256, dropout: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            CBAM(16, reduction=8, spatial_kernel=3) if use_cbam else nn.Identity(),
            nn.Conv2d(16, 32, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = input_size // 16
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 512), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(512, num_classes),
        )
        self.default_cfg = {
            "input_size": (input_size, input_size), "fixed_input_size": True,
            "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
            "gradcam_layer": "features.11",  # last conv ReLU, 32x32 at 256 input
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # logits: no softmax inside the model


@register_model
def seed_cbam(num_classes: int = 6, in_chans: int = 3, **kw) -> SeedNet:
    return SeedNet(num_classes, in_chans, use_cbam=True, **kw)


@register_model
def seed_cnn(num_classes: int = 6, in_chans: int = 3, **kw) -> SeedNet:
    return SeedNet(num_classes, in_chans, use_cbam=False, **kw)
