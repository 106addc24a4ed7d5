"""The convolution lesson's kernels: classic image filters (Gaussian, Laplacian of Gaussian, Sobel...), a
digit filtered by each, and a CNN's first-layer learned filters and feature maps beside them in one figure."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from .nets import layer_io


def gaussian(size: int, sigma: float) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def laplacian_of_gaussian(size: int, sigma: float) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    rr = r[:, None] ** 2 + r[None, :] ** 2
    log = (rr - 2 * sigma**2) / sigma**4 * torch.exp(-rr / (2 * sigma**2))
    return log - log.mean()  # zero sum: flat regions give zero


def classic_kernels() -> dict[str, torch.Tensor]:
    prewitt = torch.tensor([[-1.0, 0, 1], [-1, 0, 1], [-1, 0, 1]])
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    return {
        "mean blur 3x3": torch.full((3, 3), 1 / 9),
        "Gaussian blur 5x5 σ=1": gaussian(5, 1.0),
        "Prewitt x": prewitt,
        "Prewitt y": prewitt.T.contiguous(),
        "Sobel x": sobel,
        "Sobel y": sobel.T.contiguous(),
        "Laplacian": torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]),
        "LoG 9x9 σ=1.4": laplacian_of_gaussian(9, 1.4),
    }


def filter_image(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` image correlated with ``[k, k]`` kernel, same size (zero padding)."""
    return F.conv2d(image[None, None], kernel[None, None], padding=kernel.shape[-1] // 2)[0, 0]


def _show(ax, image: torch.Tensor, title: str, cmap: str = "gray", symmetric: bool = False) -> None:
    data = image.detach().float().cpu()
    if symmetric:
        limit = data.abs().max().item() or 1.0
        ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        ax.imshow(data, cmap=cmap)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def learned_panels(module, image: torch.Tensor):
    """First-layer filters and what they make of the digit, or dense weights as 28x28 templates."""
    first = next(m for m in module.net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    if isinstance(first, nn.Conv2d):
        # the maps as the network computes them, after whatever comes first (a center crop)
        with torch.no_grad():
            _, maps = layer_io(module.net, first, image[None, None].to(first.weight.dtype))
        return "filters", first.weight[:, 0], maps[0]
    templates = first.weight[:16].reshape(-1, 28, 28)
    return "templates", templates, None


def kernels_figure(image: torch.Tensor, label: str, module=None):
    kernels = classic_kernels()
    learned = learned_panels(module, image) if module is not None else None
    columns = 9
    rows = 1
    if learned is not None:
        rows_per_group = 2 if learned[0] == "filters" else 1
        rows += rows_per_group * math.ceil(len(learned[1]) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.5, rows * 1.7), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    _show(axes[0, 0], image, f"test digit ({label})")
    for ax, (name, kernel) in zip(axes[0, 1:], kernels.items(), strict=False):
        _show(ax, filter_image(image, kernel), name, symmetric=kernel.sum().abs() < 1e-6)
    if learned is not None:
        kind, weights, maps = learned
        row = 1
        flat = [ax for r in axes[row:] for ax in r]
        for i, weight in enumerate(weights):
            _show(flat[i], weight, f"{'filter' if kind == 'filters' else 'unit'} {i}", symmetric=True)
        if maps is not None:
            offset = math.ceil(len(weights) / columns) * columns
            for i, fmap in enumerate(maps):
                _show(flat[offset + i], fmap, f"feature map {i}", cmap="viridis")
    learned_note = f", the model's first layer: learned {learned[0]} below" if learned else ""
    fig.suptitle("classic kernels (top)" + learned_note, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig
