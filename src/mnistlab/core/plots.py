"""Matplotlib figures shared by the tools and the TensorBoard callback (headless backend)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # never open a window: figures go to PNG files and TensorBoard

import matplotlib.pyplot as plt
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from .io import write_bytes


def digits_figure(images: torch.Tensor, labels=None, predictions=None, class_names: Sequence[str] | None = None,
                  probs=None, titles: Sequence[str] | None = None, columns: int = 8, title: str | None = None):
    """A grid of images in [0, 1] titled ``true → predicted`` (red when wrong), or with given titles."""
    n = len(images)
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), squeeze=False)
    names = list(class_names or [str(i) for i in range(10)])
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i].squeeze().detach().cpu().float().numpy(), cmap="gray", vmin=0, vmax=1)
        color = "black"
        if titles is not None:
            caption = titles[i]
        elif predictions is None:
            caption = names[int(labels[i])]
        else:
            pred = names[int(predictions[i])]
            caption = pred if labels is None else f"{names[int(labels[i])]} → {pred}"
            if labels is not None and int(labels[i]) != int(predictions[i]):
                color = "red"
            if probs is not None:
                caption += f"\n{float(probs[i]):.0%}"
        ax.set_title(caption, fontsize=8, color=color)
    if title is not None:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93) if title else None)
    return fig


def confusion_figure(matrix: torch.Tensor, class_names: Sequence[str]):
    """A confusion matrix (rows: true class, columns: predicted), drawn by torchmetrics."""
    plotter = MulticlassConfusionMatrix(num_classes=len(class_names))
    fig, ax = plotter.plot(val=matrix.cpu(), labels=list(class_names))
    fig.set_size_inches(7, 6)
    ax.set_title("confusion matrix (rows: true, columns: predicted)")
    # four-digit counts (1,109 ones in MNIST's test set) overflow a cell at the default size
    digits = len(str(int(matrix.max()))) if matrix.numel() else 1
    for text in ax.texts:
        text.set_fontsize(max(6, 11 - digits))
    if max(map(len, class_names)) <= 2:  # digits read best upright; long class names stay slanted
        ax.tick_params(axis="both", labelrotation=0)
    return fig


def save(fig, path) -> None:
    """A PNG written whole or not at all (``io.write_bytes``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
