"""Grad-CAM (Selvaraju et al., 2017) as a small context manager.

    with GradCAM(model, "stages.2") as cam:
        heatmaps = cam(x, targets=None)  # (N, H, W) in [0, 1] at input size; None = top class

The forward hook is registered on enter and removed on exit. Gradients are taken with
torch.autograd.grad with respect to the hooked activation only, so nothing accumulates in
the model's parameters' .grad.

Thread safety: one model may serve plain forward passes and Grad-CAM in several threads at once
(the app does). The hook records an activation only for the forward pass of the thread that
entered the `with` block, so a concurrent forward pass in another thread (plain or another
GradCAM's) never replaces it; grad mode is per thread in torch, and nothing is written to the
model. No private copy of the network and no lock are needed.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class GradCAM:
    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None):
        self.model = model
        if target_layer is None:
            target_layer = getattr(model, "default_cfg", {}).get("gradcam_layer")
            if target_layer is None:
                raise ValueError("no target layer given and the model's config names none")
        self.layer = model.get_submodule(target_layer) if isinstance(target_layer, str) else target_layer
        self._handle = None
        self._act: torch.Tensor | None = None
        self._thread: int | None = None

    def _hook(self, module, inputs, output):
        if threading.get_ident() == self._thread:  # other threads' forward passes are not ours
            self._act = output

    def __enter__(self) -> "GradCAM":
        self._thread = threading.get_ident()
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._act = self._thread = None

    def __call__(self, x: torch.Tensor, targets=None) -> tuple[np.ndarray, torch.Tensor]:
        """Returns (heatmaps (N, H, W) float32 in [0, 1], logits (N, C) detached)."""
        if self._handle is None:
            raise RuntimeError("use GradCAM inside a `with` block")
        if threading.get_ident() != self._thread:
            raise RuntimeError("call GradCAM in the thread that entered its `with` block")
        self._act = None
        with torch.enable_grad():
            logits = self.model(x)
            act = self._act
            if act is None:
                raise RuntimeError("the target layer was not run by the model's forward pass")
            if targets is None:
                idx = logits.argmax(1)
            elif isinstance(targets, int):
                idx = torch.full((len(x),), targets, dtype=torch.long, device=logits.device)
            else:
                idx = torch.as_tensor(targets, dtype=torch.long, device=logits.device)
            score = logits.gather(1, idx[:, None]).sum()
            (grads,) = torch.autograd.grad(score, act)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
        cam = (cam - lo) / (hi - lo).clamp_min(1e-8)
        return cam.float().cpu().numpy(), logits.detach()


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0,1] heatmap (any size) over an RGB uint8 image with the JET colormap."""
    h, w = image.shape[:2]
    hm = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    color = cv2.applyColorMap(np.uint8(np.clip(hm, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    return np.uint8(np.clip(image.astype(np.float32) * (1 - alpha) + color * alpha, 0, 255))
