"""Draw predictions on frames: boxes, labels, Grad-CAM overlays mapped back onto the face.

Labels never overlap each other: `layout_labels` places each one just above its face box (or
below it, or inside it) and slides it clear of the labels already placed.
"""
from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def layout_labels(boxes, sizes, image_shape, gap: int = 1) -> list[tuple[int, int, int, int]]:
    """Face boxes (x1, y1, x2, y2) + label sizes (w, h) -> one label rectangle (x1, y1, x2, y2) per
    face (exclusive ends), inside the image where it fits, no two intersecting.

    Each label prefers the spot just above its box, then just below it, then inside its top edge;
    where those collide with labels already placed it moves beside the nearest obstacle, first in
    its own column, then in others. Spots that also keep clear of the other faces win where there
    are any. Only an image too small to hold all labels apart gets overlaps."""
    H, W = image_shape[:2]
    faces = [tuple(int(round(v)) for v in b[:4]) for b in boxes]
    placed: list[tuple[int, int, int, int]] = []
    for k, ((bx1, by1, bx2, by2), (w, h)) in enumerate(zip(faces, sizes)):
        w, h = int(w), int(h)

        def cx(x):
            return int(min(max(0, x), max(0, W - w)))

        def cy(y):
            return int(min(max(0, y), max(0, H - h)))

        x0 = cx(bx1)
        pref = [cy(by1 - h - gap), cy(by2 + gap), cy(by1 + gap)]  # above, below, inside
        ys = pref + sorted({cy(o[3] + gap) for o in placed} | {cy(o[1] - h - gap) for o in placed},
                           key=lambda y: abs(y - pref[0]))
        xs = [x0] + sorted({cx(o[2] + gap) for o in placed} | {cx(o[0] - w - gap) for o in placed},
                           key=lambda x: abs(x - x0))
        spots = [(x, y, x + w, y + h) for x in xs for y in ys]
        others = [f for j, f in enumerate(faces) if j != k]
        rect = next((r for r in spots if not any(_intersects(r, o) for o in placed + others)), None) \
            or next((r for r in spots if not any(_intersects(r, o) for o in placed)), None)
        placed.append(rect or (x0, pref[0], x0 + w, pref[0] + h))
    return placed


def label_text(index: int, pred) -> str:
    return f"#{index} {pred.top_class} {pred.top_prob:.2f}"


def label_style(image_shape) -> tuple[float, int]:
    """Font scale and line thickness for an image of this size."""
    thick = max(1, round(max(image_shape[:2]) / 400))
    return max(0.4, thick * 0.45), thick


def label_sizes(texts, image_shape) -> list[tuple[int, int]]:
    scale, thick = label_style(image_shape)
    out = []
    for t in texts:
        (tw, th), base = cv2.getTextSize(t, FONT, scale, thick)
        out.append((tw + 4, th + base + 4))
    return out


def draw_predictions(image: np.ndarray, preds, gradcam: bool = False, margin: float = 0.15) -> np.ndarray:
    """RGB uint8 image + FacePredictions -> annotated copy (heatmaps warped back onto each face)."""
    out = image.copy()
    h, w = out.shape[:2]
    scale, thick = label_style(out.shape)
    if gradcam:
        from .faces import align_matrix
        from .gradcam import overlay
    for p in preds:
        if gradcam and p.heatmap is not None:
            size = p.heatmap.shape[0]
            inv = cv2.invertAffineTransform(align_matrix(p.face, size, getattr(p, "margin", margin)))
            hm = cv2.warpAffine(p.heatmap.astype(np.float32), inv, (w, h), flags=cv2.INTER_LINEAR,
                                borderValue=0)
            mask = cv2.warpAffine(np.ones_like(p.heatmap, np.float32), inv, (w, h)) > 0.5
            blended = overlay(out, hm)
            out[mask] = blended[mask]
    for p in preds:
        x1, y1, x2, y2 = (int(round(v)) for v in p.face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
    texts = [label_text(i, p) for i, p in enumerate(preds)]
    rects = layout_labels([p.face.box for p in preds], label_sizes(texts, out.shape), out.shape)
    for text, (lx1, ly1, lx2, ly2) in zip(texts, rects):
        (_, th), base = cv2.getTextSize(text, FONT, scale, thick)
        cv2.rectangle(out, (lx1, ly1), (lx2 - 1, ly2 - 1), (0, 255, 0), -1)
        cv2.putText(out, text, (lx1 + 2, ly2 - 2 - base), FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out
