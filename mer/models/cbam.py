"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018).

Channel attention (avg- and max-pooled descriptors through one shared MLP, summed, sigmoid),
then spatial attention (channel-wise mean and max, concatenated, k x k conv, sigmoid).
The output is the input scaled by both maps; the last maps are kept for inspection.
"""
from __future__ import annotations

import torch
from torch import nn


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 8, bias: bool = False):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)  # (N, C, 1, 1)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))  # (N, 1, H, W)


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 8, spatial_kernel: int = 7, bias: bool = False):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, bias)
        self.spatial = SpatialAttention(spatial_kernel, bias)
        self.last_channel_map: torch.Tensor | None = None
        self.last_spatial_map: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ca = self.channel(x)
        x = x * ca
        sa = self.spatial(x)
        self.last_channel_map, self.last_spatial_map = ca.detach(), sa.detach()
        return x * sa
