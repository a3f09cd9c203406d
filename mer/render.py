"""Draw predictions on frames: boxes, labels, Grad-CAM overlays mapped back onto the face."""
from __future__ import annotations

import cv2
import numpy as np

from .faces import align_matrix
from .gradcam import overlay


def draw_predictions(image: np.ndarray, preds, gradcam: bool = False, margin: float = 0.15) -> np.ndarray:
    """RGB uint8 image + FacePredictions -> annotated copy (heatmaps warped back onto each face)."""
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 400))
    for i, p in enumerate(preds):
        if gradcam and p.heatmap is not None:
            size = p.heatmap.shape[0]
            inv = cv2.invertAffineTransform(align_matrix(p.face, size, getattr(p, "margin", margin)))
            hm = cv2.warpAffine(p.heatmap.astype(np.float32), inv, (w, h), flags=cv2.INTER_LINEAR,
                                borderValue=0)
            mask = cv2.warpAffine(np.ones_like(p.heatmap, np.float32), inv, (w, h)) > 0.5
            blended = overlay(out, hm)
            out[mask] = blended[mask]
        x1, y1, x2, y2 = (int(round(v)) for v in p.face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
        label = f"#{i} {p.top_class} {p.top_prob:.2f}"
        scale = max(0.4, thick * 0.45)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = max(th + 4, y1)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty), (0, 255, 0), -1)
        cv2.putText(out, label, (x1 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return out
