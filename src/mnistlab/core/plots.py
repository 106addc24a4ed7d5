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
    """A grid of images in [0, 1] titled ``true → predicted`` (red when wrong), or with given titles.

    Every image sits in one axes whose units are inches (a cell of 1.4 x 1.6 each, caption above its image):
    matplotlib takes 0.8 s to make and lay out 32 axes of their own, and every run's test end draws this."""
    n = len(images)
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    cell_w, cell_h, side, heading = 1.4, 1.6, 1.1, (0.45 if title is not None else 0.0)
    width, height = columns * cell_w, rows * cell_h
    fig = plt.figure(figsize=(width, height + heading))
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + heading)))
    names = list(class_names or [str(i) for i in range(10)])
    for i in range(n):
        row, column = divmod(i, columns)
        left, top = column * cell_w + (cell_w - side) / 2, (row + 1) * cell_h - side - 0.1
        ax.imshow(images[i].squeeze().detach().cpu().float().numpy(), cmap="gray", vmin=0, vmax=1,
                  extent=(left, left + side, top + side, top))
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
        ax.text(left + side / 2, top - 0.06, caption, ha="center", va="bottom", fontsize=8, color=color,
                multialignment="center")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # the first row on top
    ax.set_aspect("auto")  # the axes already spans width x height inches
    ax.set_axis_off()
    if title is not None:
        fig.suptitle(title, fontsize=9, y=1 - 0.15 / (height + heading))
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
