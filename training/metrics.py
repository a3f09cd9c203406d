"""Pooled metrics over all folds (MEGC style): concatenate every fold's predictions, i.e. sum the
per-class counts, then UF1 = mean per-class F1 and UAR = mean per-class recall over the classes
that occur in the ground truth."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix


def pooled_metrics(y_true, y_pred, classes: list[str]) -> dict:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(classes)
    cm = confusion_matrix(y_true, y_pred, labels=list(range(n)))
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
        recall = np.where(present, tp / np.maximum(support, 1), np.nan)
    return {
        "uf1": float(f1[present].mean()) if present.any() else 0.0,
        "uar": float(np.nanmean(recall)) if present.any() else 0.0,
        "acc": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "n": int(len(y_true)),
        "per_class_f1": {c: round(float(v), 4) for c, v in zip(classes, f1)},
        "per_class_support": {c: int(v) for c, v in zip(classes, support)},
        "confusion": cm.tolist(),
    }
