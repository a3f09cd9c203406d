"""Onset->apex optical flow on aligned face crops, the input of flow-based MER methods
(STSTNet, HTNet): three channels u, v and magnitude (or optical strain), via OpenCV.

    x = flow_input(onset_crop, apex_crop)            # (3, H, W) float32, pixels at crop size
"""
from __future__ import annotations

import cv2
import numpy as np

FLOW_THIRD = ("magnitude", "strain")


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def optical_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Dense Farneback flow from `prev` to `nxt` (RGB or gray uint8, same size) -> (H, W, 2)."""
    if prev.shape[:2] != nxt.shape[:2]:
        raise ValueError(f"flow needs frames of one size, got {prev.shape[:2]} and {nxt.shape[:2]}")
    return cv2.calcOpticalFlowFarneback(_gray(prev), _gray(nxt), None, pyr_scale=0.5, levels=3,
                                        winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Magnitude of the infinitesimal strain tensor of a flow field (Shreve et al.)."""
    u, v = flow[..., 0], flow[..., 1]
    uy, ux = np.gradient(u)
    vy, vx = np.gradient(v)
    exy = 0.5 * (uy + vx)
    return np.sqrt(ux ** 2 + vy ** 2 + 2 * exy ** 2).astype(np.float32)


def flow_input(onset: np.ndarray, apex: np.ndarray, third: str = "magnitude") -> np.ndarray:
    """(3, H, W) float32: u, v and magnitude (or optical strain) of the onset->apex flow."""
    if third not in FLOW_THIRD:
        raise ValueError(f"third flow channel must be one of {FLOW_THIRD}, got {third!r}")
    f = optical_flow(onset, apex)
    extra = np.linalg.norm(f, axis=2) if third == "magnitude" else optical_strain(f)
    return np.stack([f[..., 0], f[..., 1], extra]).astype(np.float32)
