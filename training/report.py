"""Run-folder artefacts: predictions CSV, confusion matrix (PNG and Plotly HTML), Markdown report.
Every file is written atomically through mer.files.atomic_write."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mer.files import atomic_write, write_csv
from mer.report import write_plotly_js

from .protocols import LEAKY


def write_predictions(df: pd.DataFrame, path: Path) -> None:
    """Atomic, text cells escaped against spreadsheet formula injection (mer.files.write_csv)."""
    write_csv(df, path)


def confusion_png(cm, classes, path: Path, title: str) -> None:
    cm = np.asarray(cm)
    n, cell, left, top = len(classes), 70, 130, 60
    img = np.full((top + n * cell + 90, left + n * cell + 20, 3), 255, np.uint8)
    rows = cm.sum(1, keepdims=True).clip(min=1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title[:70], (10, 25), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(n):
        for j in range(n):
            shade = int(255 - 200 * cm[i, j] / rows[i, 0])
            x, y = left + j * cell, top + i * cell
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            cv2.rectangle(img, (x, y), (x + cell, y + cell), (180, 180, 180), 1)
            cv2.putText(img, str(cm[i, j]), (x + 22, y + 42), font, 0.6,
                        (255, 255, 255) if shade < 130 else (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, classes[i][:12], (8, top + i * cell + 42), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        lx, ly = left + i * cell + 5, top + n * cell + 18 + (i % 2) * 18
        cv2.putText(img, classes[i][:10], (lx, ly), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: true class, columns: predicted", (10, img.shape[0] - 15), font, 0.45,
                (80, 80, 80), 1, cv2.LINE_AA)
    atomic_write(path, cv2.imencode(".png", img)[1].tobytes())


def confusion_html(cm, classes, path: Path, title: str) -> None:
    fig = go.Figure(go.Heatmap(z=cm, x=classes, y=classes, colorscale="Blues", text=cm,
                               texttemplate="%{text}", hovertemplate="true %{y}<br>predicted %{x}<br>%{z}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed", width=650, height=600)
    # plotly.js goes beside the page once (offline viewing, no CDN)
    write_plotly_js(path.parent)
    atomic_write(path, fig.to_html(include_plotlyjs="directory", full_html=True))


def protocol_line(protocol: str, n_folds: int) -> str:
    if protocol == "loso":
        return f"LOSO (leave one subject out), {n_folds} folds, metrics pooled over all folds"
    if protocol == "kfold-subject":
        return f"{n_folds}-fold by subject (no subject in both train and test), metrics pooled"
    return ("random-frames: the original's random split of frames - LEAKY (frames of one clip and one "
            "subject are in both train and test); not a valid estimate of accuracy on new people")


def write_markdown(path: Path, cfg: dict, metrics: dict, folds: list[dict], classes: list[str],
                   data_line: str, command: str) -> None:
    proto = cfg["protocol"]
    lines = [f"# Training report: {cfg['arch']} on {cfg['dataset']} ({cfg['input']} input)", ""]
    if proto in LEAKY:
        lines += ["> **LEAKY PROTOCOL.** These numbers come from a random split of frames, as in the "
                  "original README. They overstate what the model does on new people. Use `loso`.", ""]
    lines += [f"- Protocol: {protocol_line(proto, len(folds))}", f"- Data: {data_line}",
              f"- Labels: {cfg['labels']} ({', '.join(classes)})",
              f"- Training: {cfg['epochs']} epochs, Adam lr {cfg['lr']}, weight decay {cfg['weight_decay']}, "
              f"batch {cfg['batch_size']}, input {cfg['size']}x{cfg['size']} {cfg['color'] if cfg['input'] != 'flow' else 'flow'}, "
              f"seed {cfg['seed']}, init {cfg.get('init', 'scratch')}" + (f", early stopping (patience {cfg['early_stopping']}, validation by subject)"
                                       if cfg['early_stopping'] else ", fixed epochs (no model selection on test folds)"),
              f"- Command: `{command}`", "",
              "| metric | value |", "|---|---|"]
    how = "pooled" if proto not in LEAKY else "leaky split"
    unit = ("per clip: mean of its frames' probabilities" if "frame_level" in metrics else "per clip")
    for k in ("uf1", "uar", "acc"):
        lines.append(f"| **{k.upper()}** ({how}, {unit}) | **{metrics[k]:.4f}** |")
    if "frame_level" in metrics:
        fl = metrics["frame_level"]
        lines.append(f"| UF1 / UAR / accuracy per frame (each frame counted alone, {fl['n']} frames) "
                     f"| {fl['uf1']:.4f} / {fl['uar']:.4f} / {fl['acc']:.4f} |")
    lines += ["", "Per-class F1 (support, clips):", ""]
    lines += [f"- {c}: {metrics['per_class_f1'][c]:.3f} ({metrics['per_class_support'][c]})" for c in classes]
    lines += ["", "Confusion matrix of clips (rows true, columns predicted):", "",
              "| | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for c, row in zip(classes, metrics["confusion"]):
        lines.append(f"| {c} | " + " | ".join(map(str, row)) + " |")
    lines += ["", "Folds (accuracy per test sample; epochs kept; flow: std of the fold's training samples):", "",
              "| fold | test samples | accuracy | epochs | input std |", "|---|---|---|---|---|"]
    lines += [f"| {f['fold']} | {f['n']} | {f['acc']:.3f} | {f.get('epochs', '')} | "
              f"{f['std'][0] if f.get('std') else ''} |" for f in folds]
    lines += ["", "Files: `metrics.json`, `predictions.csv`" + (", `clip_predictions.csv`" if "frame_level" in metrics else "")
              + ", `confusion.png`, `confusion.html`"
              + (", `model.safetensors` + `model.json` (trained on all subjects after the evaluation; the scores "
                 "above are of the fold models)" if cfg.get("final", True) else "")]
    atomic_write(path, "\n".join(lines) + "\n")
