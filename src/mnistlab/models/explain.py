"""Looking inside a classifier on one input: the first convolution's feature maps and a saliency map."""

from __future__ import annotations

import torch
from torch import nn

from .inference import as_pixels


def first_conv(module: nn.Module) -> nn.Conv2d | None:
    return next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)


@torch.no_grad()
def feature_maps(module: nn.Module, digit: torch.Tensor) -> torch.Tensor | None:
    """``[C, H, W]``: what the first convolution computes on a 28x28 digit in [0, 1] (after the network's
    own input normalization), or None for a network without one."""
    conv = first_conv(module)
    if conv is None:
        return None
    captured: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        was_training = module.training
        module.eval()
        module(as_pixels(digit[None]).to(next(module.parameters()).device))
        module.train(was_training)
    finally:
        handle.remove()
    return captured[0][0].float().cpu()


def saliency(module: nn.Module, digit: torch.Tensor, target: int | None = None) -> torch.Tensor:
    """``[28, 28]`` in [0, 1]: |d logit(target) / d pixel| (target: the predicted class), scaled to its max."""
    was_training = module.training
    module.eval()
    x = as_pixels(digit[None]).to(next(module.parameters()).device).requires_grad_(True)
    with torch.enable_grad():
        logits = module(x)
        chosen = int(logits.argmax(-1)) if target is None else target
        (gradient,) = torch.autograd.grad(logits[0, chosen], x)
    module.train(was_training)
    magnitude = gradient[0, 0].abs().float().cpu()
    peak = magnitude.max()
    return magnitude / peak if peak > 0 else magnitude
