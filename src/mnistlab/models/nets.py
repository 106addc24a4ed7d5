"""Plain ``nn.Module`` networks: softmax regression, the tutorial DNN, the Keras CNN and LeNet-5.

Every network takes pixels in [0, 1], ``[N, 1, 28, 28]``, and returns logits ``[N, 10]``: it standardizes its
input itself (``Normalize``, with the training set's mean and std), so every tool and export feeds pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..config import rules
from ..core.errors import ConfigError
from .layers import CenterCrop, Normalize

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}
MONOTONIC = {"relu", "tanh", "sigmoid", "elu", "leaky_relu"}  # non-decreasing: they commute with max-pooling
POOLS = ("max", "stride")
INITS = ("default", "truncated_normal", "kaiming", "xavier")


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def check_dropout(dropout: float) -> float:
    return rules.fraction("model.net.dropout", dropout)


def is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_switch(name: str, value: Any) -> bool:
    return rules.switch(f"model.net.{name}", value)


def layer_io(net: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``layer`` receives and returns while ``net`` runs on ``x``, with whatever comes before it."""
    captured = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append((inputs[0], output)))
    try:
        net(x)  # a plain module: hooks do not fire inside a compiled graph
    finally:
        handle.remove()
    return captured[0]


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialize Linear/Conv weights; biases start at zero for every non-default scheme.

    ``truncated_normal`` is the TensorFlow tutorial's: N(0, stddev = 2 / sqrt(fan_in)) cut at two stddevs.
    """
    if scheme not in INITS:
        raise ConfigError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    if scheme == "default":
        return
    for layer in module.modules():
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            continue
        weight = layer.weight
        if scheme == "truncated_normal":
            fan_in = weight[0].numel()
            std = 2.0 / math.sqrt(fan_in)
            nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(weight, nonlinearity="relu")
        else:
            nn.init.xavier_uniform_(weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


class Network(nn.Module):
    """What every network shares: it standardizes its pixels (``Normalize``), runs its named stages in order
    and initializes its Linear/Conv weights by ``init``. Subclasses check their settings, build their stages
    and hand them over; the stage names are the state_dict's, so checkpoints of every version load."""

    def __init__(self, stages: dict[str, nn.Module], init: str, input_mean: float, input_std: float) -> None:
        super().__init__()
        self.normalize = Normalize(input_mean, input_std)
        for name, stage in stages.items():
            self.add_module(name, stage)
        self.stage_names = tuple(stages)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for name in self.stage_names:
            x = self._modules[name](x)
        return x


class SoftmaxRegression(Network):
    """784 -> 10: the first lesson; dropout (if any) acts on the input pixels."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.0, init: str = "default",
                 input_mean: float = 0.0, input_std: float = 1.0) -> None:
        layers = nn.Sequential(nn.Flatten(), nn.Dropout(check_dropout(dropout)), nn.Linear(28 * 28, num_classes))
        super().__init__({"layers": layers}, init, input_mean, input_std)


class DNN(Network):
    """Fully connected network, 784-300-100-10 by default (the TensorFlow DNN tutorial)."""

    def __init__(
        self,
        hidden: Sequence[int] = (300, 100),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        init: str = "truncated_normal",
        num_classes: int = 10,
        input_mean: float = 0.0,
        input_std: float = 1.0,
    ) -> None:
        check_dropout(dropout)
        check_switch("batch_norm", batch_norm)
        if not all(is_size(h) for h in hidden):
            raise ConfigError(f"model.net.hidden sizes must be whole numbers > 0, got {list(hidden)}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for size in hidden:
            layers.append(nn.Linear(width, size, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(make_activation(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        super().__init__({"layers": nn.Sequential(*layers)}, init, input_mean, input_std)


def conv_block(cin: int, cout: int, kernel: int, batch_norm: bool, act: str, stride: int = 1) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    return [*layers, make_activation(act)]


def per_block(name: str, value: Any, blocks: int) -> list:
    """One setting per conv block, from a single value or a list with one entry per block."""
    if isinstance(value, (list, tuple)):
        if len(value) != blocks:
            raise ConfigError(f"model.net.{name} lists {len(value)} values for {blocks} blocks: {list(value)}")
        return list(value)
    return [value] * blocks


class CNN(Network):
    """Conv-Pool blocks then a dense head; the default is exactly the Keras tutorial network.

    Conv 16@3x3 same + ReLU + MaxPool 2, Conv 32@3x3 same + ReLU + MaxPool 2, Dense 128 ReLU, Dense 10:
    206,922 parameters. ``convs_per_block=2`` stacks two convolutions per block (VGG style).
    ``kernel_size``, ``convs_per_block``, ``batch_norm`` and ``pool`` take one value for every block or a list
    with one per block.
    ``pool="stride"`` halves a block's maps with a stride-2 last convolution instead of a 2x2 max-pool: a
    quarter of the convolution's work, and no full-size activation maps at all. ``pool_before_norm``
    max-pools straight after the convolution, so batch norm works on a quarter of the values (a different
    network, not a reordering of the same one: the statistics are the pooled maps'). ``center_crop=24``
    keeps the central 24x24 pixels: MNIST's digits were scaled into a 20x20 box and centred by mass, so
    the 2-pixel border holds 0.2% of the training set's ink, and every map after it has about a quarter
    fewer positions.
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32),
        kernel_size: int | Sequence[int] = 3,
        convs_per_block: int | Sequence[int] = 1,
        dense: int = 128,
        batch_norm: bool | Sequence[bool] = False,
        dropout: float = 0.0,
        activation: str = "relu",
        init: str = "default",
        num_classes: int = 10,
        pool: str | Sequence[str] = "max",
        pool_before_norm: bool = False,
        center_crop: int | None = None,
        input_mean: float = 0.0,
        input_std: float = 1.0,
    ) -> None:
        check_dropout(dropout)
        if center_crop is not None and not (is_size(center_crop) and center_crop <= 28):
            raise ConfigError(f"model.net.center_crop must be a side length from 1 to 28 pixels, got {center_crop}")
        if not channels or len(channels) > 4:
            raise ConfigError(f"model.net.channels needs 1 to 4 blocks (28 px halves each time), got {list(channels)}")
        convs = per_block("convs_per_block", convs_per_block, len(channels))
        if not all(is_size(c) for c in [*channels, *convs]) or not is_size(dense):
            raise ConfigError(f"model.net.channels, dense and convs_per_block must be whole numbers > 0, got "
                              f"{list(channels)}, {dense!r} and {convs_per_block!r}")
        blocks = conv_blocks(channels, kernel_size, batch_norm, pool)
        check_switch("pool_before_norm", pool_before_norm)
        layers: list[nn.Module] = [] if center_crop is None else [CenterCrop(center_crop)]
        input_side = center_crop or 28
        cin, size = 1, input_side
        for (cout, kernel, norm, block_pool), block_convs in zip(blocks, convs, strict=True):
            layers += conv_stack(cin, cout, kernel, norm, activation, block_convs, block_pool, pool_before_norm)
            cin, size = cout, (size + 1) // 2 if block_pool == "stride" else size // 2  # 'same' stride 2: 7 -> 4
        if size < 1:
            raise ConfigError(f"model.net: {len(channels)} blocks halve a {input_side}-pixel input to nothing")
        head: list[nn.Module] = [nn.Flatten(), *([nn.Dropout(dropout)] if dropout else []),
                                 nn.Linear(cin * size * size, dense), make_activation(activation),
                                 *([nn.Dropout(dropout)] if dropout else []), nn.Linear(dense, num_classes)]
        super().__init__({"features": nn.Sequential(*layers), "classifier": nn.Sequential(*head)}, init,
                         input_mean, input_std)


def conv_blocks(channels: Sequence[int], kernel_size, batch_norm, pool) -> list[tuple[int, int, bool, str]]:
    """``(channels, kernel, batch_norm, pool)`` of each block, from one value for all or a list of one each."""
    kernels = per_block("kernel_size", kernel_size, len(channels))
    norms = [check_switch("batch_norm", norm) for norm in per_block("batch_norm", batch_norm, len(channels))]
    pools = per_block("pool", pool, len(channels))
    if not all(is_size(k) and k % 2 == 1 for k in kernels):
        raise ConfigError(f"model.net.kernel_size must be odd whole numbers ('same' padding), got {kernel_size}")
    if any(p not in POOLS for p in pools):
        raise ConfigError(f"model.net.pool must be one of {', '.join(POOLS)} (or a list of them), got {pool}")
    return list(zip(channels, kernels, norms, pools, strict=True))


def conv_stack(cin: int, cout: int, kernel: int, norm: bool, activation: str, convs: int, pool: str,
               pool_before_norm: bool) -> list[nn.Module]:
    """One block: ``convs`` convolutions, the last halving the maps (stride 2) or followed by a max-pool."""
    layers: list[nn.Module] = []
    for i in range(convs):
        stride = 2 if pool == "stride" and i == convs - 1 else 1
        layers += conv_block(cin if i == 0 else cout, cout, kernel, norm, activation, stride)
    if pool == "stride":
        return layers
    if pool_before_norm and norm:
        layers.insert(len(layers) - 2, nn.MaxPool2d(2))  # conv, pool, norm, activation
    elif activation in MONOTONIC:
        # max(f(a), f(b)) == f(max(a, b)) for a non-decreasing f: pooling first gives the same output with
        # the activation (and its backward) on a quarter of the values, which makes the Keras CNN's
        # training step about a third faster on a CPU (see mnistlab.bench)
        layers.insert(len(layers) - 1, nn.MaxPool2d(2))
    else:
        layers.append(nn.MaxPool2d(2))
    return layers


class LeNet5(Network):
    """LeNet-5 (LeCun et al. 1998) with max pooling: C5x5@6 - pool - C5x5@16 - pool - 120 - 84 - 10."""

    def __init__(
        self,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        init: str = "default",
        num_classes: int = 10,
        input_mean: float = 0.0,
        input_std: float = 1.0,
    ) -> None:
        check_dropout(dropout)
        check_switch("batch_norm", batch_norm)
        features = nn.Sequential(
            *conv_block(1, 6, 5, batch_norm, activation),  # 28x28, padded like the 32x32 original input
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, bias=not batch_norm),
            *([nn.BatchNorm2d(16)] if batch_norm else []),
            make_activation(activation),
            nn.MaxPool2d(2),
        )
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(120, 84),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(84, num_classes),
        )
        super().__init__({"features": features, "classifier": classifier}, init, input_mean, input_std)
