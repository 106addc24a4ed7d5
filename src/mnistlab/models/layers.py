"""The two layers the networks open with, ``Normalize`` (pixels -> standardized) and ``CenterCrop``, and a
network's layers by name (what transfer learning copies and the gradient norms are logged by)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from ..config import rules


class Normalize(nn.Module):
    """``(x - mean) / std`` with the training set's statistics; nothing at all for ``(0, 1)``.

    Plain floats, not buffers: the statistics come from the config (the classifier's ``input_mean`` and
    ``input_std``), so state dicts keep the keys they had before the network normalized its own input.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        rules.positive("input_std", std)
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean == 0.0 and self.std == 1.0:
            return x
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


class CenterCrop(nn.Module):
    """The central ``side x side`` pixels of a 28x28 image.

    Fixed offsets rather than torchvision's ``CenterCrop``: that one rounds the input's size at run time,
    which ``torch.export`` (the ONNX exporter) cannot trace with a dynamic batch.
    """

    def __init__(self, side: int, image_side: int = 28) -> None:
        super().__init__()
        self.side, self.start = side, (image_side - side) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.start:self.start + self.side, self.start:self.start + self.side]

    def extra_repr(self) -> str:
        return f"side={self.side}"


def layers_of(net: nn.Module) -> dict[str, list[nn.Module]]:
    """The network's layers in order, named as in its ``state_dict`` (``layers.1``, ``features.0``): each
    module with weights of its own, a normalization (batch norm) going with the layer it follows."""
    found: dict[str, list[nn.Module]] = {}
    for name, module in net.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if isinstance(module, _NormBase) and found:
            next(reversed(found.values())).append(module)
        else:
            found[name] = [module]
    return found


def module_names(net: nn.Module, layer: str) -> list[str]:
    """The ``state_dict`` prefixes of a layer (its own module, and its batch norm if any)."""
    prefixes = {id(m): name for name, m in net.named_modules()}
    return [prefixes[id(m)] for m in layers_of(net)[layer]]
