"""A tiny Vision Transformer (torchvision's VisionTransformer, built from scratch: no downloaded
weights), the original README's "future work". Fixed input size; no Grad-CAM layer."""
from __future__ import annotations

from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from .registry import register_model


@register_model
def vit_tiny(num_classes: int = 6, in_chans: int = 3, input_size: int = 128, patch_size: int = 16,
             depth: int = 6, dim: int = 192, heads: int = 3, **kw) -> nn.Module:
    if input_size % patch_size:
        raise ValueError(f"vit_tiny needs an input size divisible by {patch_size}, got {input_size}")
    model = VisionTransformer(image_size=input_size, patch_size=patch_size, num_layers=depth,
                              num_heads=heads, hidden_dim=dim, mlp_dim=4 * dim,
                              num_classes=num_classes, **kw)
    if in_chans != 3:
        model.conv_proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)
    model.default_cfg = {"input_size": (input_size, input_size), "fixed_input_size": True,
                         "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "gradcam_layer": None}
    return model
