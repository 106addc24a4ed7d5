"""Transfer learning: some layers of a trained network copied into a new one (the DNN tutorial's lesson:
reuse the lower layers of a trained network to start another)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..config import rules
from ..core.errors import ConfigError
from .layers import layers_of, module_names


def select_layers(net: nn.Module, layers: int | Sequence[str] | None) -> list[str]:
    """``transfer.layers``: a count of the lowest layers, their names, or null for every layer but the
    output (the one that names the old task's classes)."""
    names = list(layers_of(net))
    if layers is None:
        return names[:-1]
    if isinstance(layers, int) and not isinstance(layers, bool):
        rules.check("transfer.layers", layers, lambda v: 1 <= v <= len(names),
                    f"must be 1 to {len(names)} (its layers: {', '.join(names)})", whole=True)
        return names[:layers]
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise ConfigError(f"transfer.layers must be a count, a list of layer names or null, got {layers!r}")
    unknown = [str(name) for name in layers if name not in names]
    if unknown:
        raise ConfigError(f"transfer.layers: this network has no layer {unknown[0]!r}; its layers are "
                          f"{', '.join(names)}")
    return [name for name in names if name in layers]  # in the network's order


def transferred_state(net: nn.Module, layers: Sequence[str], source: Mapping[str, torch.Tensor],
                      source_path: str | Path, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The tensors of ``layers`` taken from ``source`` (a checkpoint's ``state_dict``, keys ``net.<name>``),
    checked to fit: a layer missing there or of another shape is named in one line."""
    own = net.state_dict()
    taken: dict[str, torch.Tensor] = {}
    for layer in layers:
        for module in module_names(net, layer):
            for key in (k for k in own if k.startswith(f"{module}.")):
                stored = source.get(prefix + key)
                if stored is None:
                    raise ConfigError(f"transfer.layers: {source_path} has no {key} (layer {layer}); it holds a "
                                      "different network: copy fewer layers or pick its kind of model")
                if tuple(stored.shape) != tuple(own[key].shape):
                    below = list(layers_of(net)).index(layer)
                    raise ConfigError(
                        f"transfer.layers: layer {layer} does not fit: {key} is {tuple(stored.shape)} in "
                        f"{source_path} but {tuple(own[key].shape)} here; "
                        + (f"copy only the layers below it (transfer.layers={below})" if below
                           else "it is the first layer, so nothing below it can be copied")
                        + " or build it as the trained network did")
                taken[key] = stored
    return taken
