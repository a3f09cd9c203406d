"""Draw faces on frames: boxes, labels, Grad-CAM overlays mapped back onto the face. draw_faces is
the one box drawer (the image tab, the video preview in mer.encode, the live view in mer.live).

Labels never overlap each other: `layout_labels` places each one just above its face box (or
below it, or inside it) and slides it clear of the labels already placed.
"""
from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _free(spots: np.ndarray, obstacles: list) -> np.ndarray:
    """(S, 4) rectangles -> (S,) True where one touches none of the obstacles."""
    if not obstacles:
        return np.ones(len(spots), bool)
    o = np.asarray(obstacles)[None]
    s = spots[:, None]
    hit = ((s[..., 0] < o[..., 2]) & (o[..., 0] < s[..., 2])
           & (s[..., 1] < o[..., 3]) & (o[..., 1] < s[..., 3]))
    return ~hit.any(1)


def layout_labels(boxes, sizes, image_shape, gap: int = 1,
                  tries: int = 32) -> list[tuple[int, int, int, int]]:
    """Face boxes (x1, y1, x2, y2) + label sizes (w, h) -> one label rectangle (x1, y1, x2, y2) per
    face (exclusive ends), inside the image where it fits, no two intersecting.

    Each label prefers the spot just above its box, then just below it, then inside its top edge;
    where those collide with labels already placed it moves beside the nearest obstacles (the
    `tries` nearest rows and columns), first in its own column. Spots that also keep clear of the
    other faces win where there are any. Only an image too crowded to hold the labels apart gets
    overlaps (the label then stays above its face)."""
    H, W = image_shape[:2]
    faces = [tuple(int(round(float(v))) for v in b[:4]) for b in boxes]
    placed: list[tuple[int, int, int, int]] = []
    for k, ((bx1, by1, bx2, by2), (w, h)) in enumerate(zip(faces, sizes)):
        w, h = int(w), int(h)
        x0 = int(np.clip(bx1, 0, max(0, W - w)))
        pref = np.clip([by1 - h - gap, by2 + gap, by1 + gap], 0, max(0, H - h))  # above, below, inside
        ys = np.clip([o[3] + gap for o in placed] + [o[1] - h - gap for o in placed], 0, max(0, H - h))
        xs = np.clip([o[2] + gap for o in placed] + [o[0] - w - gap for o in placed], 0, max(0, W - w))
        ys = np.concatenate([pref, sorted(set(ys.tolist()), key=lambda y: abs(y - pref[0]))[:tries]])
        xs = np.array([x0, *sorted(set(xs.tolist()) - {x0}, key=lambda x: abs(x - x0))[:tries]])
        gx, gy = np.meshgrid(xs, ys, indexing="ij")  # own column first, then by distance
        spots = np.stack([gx.ravel(), gy.ravel(), gx.ravel() + w, gy.ravel() + h], 1).astype(int)
        clear_of_labels = _free(spots, placed)
        best = clear_of_labels & _free(spots, [f for j, f in enumerate(faces) if j != k])
        ok = best if best.any() else clear_of_labels
        r = spots[ok.argmax()] if ok.any() else (x0, int(pref[0]), x0 + w, int(pref[0]) + h)
        placed.append(tuple(int(v) for v in r))
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


GREEN, AMBER = (0, 255, 0), (255, 200, 0)  # a detected face; one interpolated between detections


def draw_faces(image: np.ndarray, boxes, labels: list[str], colors=None, notes=None) -> np.ndarray:
    """The one place faces are drawn (image tab, video preview, live view): draws, in place on the
    RGB uint8 `image`, each box (x1, y1, x2, y2) in its color (default GREEN) with its label on a
    background of that color (placed by layout_labels: no two overlap) and, when given, a note
    under the box (dark red on white). Returns the image."""
    colors = colors or [GREEN] * len(labels)
    scale, thick = label_style(image.shape)
    for box, color in zip(boxes, colors):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thick)
    rects = layout_labels(boxes, label_sizes(labels, image.shape), image.shape)
    for text, color, (lx1, ly1, lx2, ly2) in zip(labels, colors, rects):
        (_, th), base = cv2.getTextSize(text, FONT, scale, thick)
        cv2.rectangle(image, (lx1, ly1), (lx2 - 1, ly2 - 1), color, -1)
        cv2.putText(image, text, (lx1 + 2, ly2 - 2 - base), FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
    h = image.shape[0]
    for box, text in zip(boxes, notes or []):
        x1, y2 = int(round(float(box[0]))), int(round(float(box[3])))
        (tw, th), _ = cv2.getTextSize(text, FONT, scale, thick)
        y = min(h - 2, y2 + th + 6)
        cv2.rectangle(image, (x1, y - th - 4), (x1 + tw + 4, y + 2), (255, 255, 255), -1)
        cv2.putText(image, text, (x1 + 2, y - 2), FONT, scale, (0, 0, 160), thick, cv2.LINE_AA)
    return image


def draw_predictions(image: np.ndarray, preds, gradcam: bool = False, margin: float = 0.15,
                     notes=None) -> np.ndarray:
    """RGB uint8 image + FacePredictions -> annotated copy (heatmaps warped back onto each face),
    drawn by draw_faces with label_text labels."""
    out = image.copy()
    h, w = out.shape[:2]
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
    return draw_faces(out, [p.face.box for p in preds], [label_text(i, p) for i, p in enumerate(preds)],
                      notes=notes)
