"""Looking inside a classifier on one input: the first convolution's feature maps and what each pixel counts for."""

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


def attribution(module: nn.Module, digit: torch.Tensor, target: int | None = None, steps: int = 32) -> torch.Tensor:
    """``[28, 28]`` in [-1, 1]: how much each pixel's ink counts for class ``target`` (the predicted class by
    default), by Integrated Gradients (Captum) from a blank canvas: the gradient averaged along the way from
    nothing drawn to the digit, times the ink. Positive ink speaks for the class, negative against it; an empty
    pixel gets none, so the picture shows strokes, not the speckle of a raw gradient over the background."""
    from captum.attr import IntegratedGradients  # the demo's extra: imported where it is used

    was_training = module.training
    module.eval()
    x = as_pixels(digit[None]).to(next(module.parameters()).device)
    with torch.no_grad():
        chosen = int(module(x).argmax(-1)) if target is None else target
    with torch.enable_grad():
        values = IntegratedGradients(module).attribute(x, baselines=torch.zeros_like(x), target=chosen,
                                                       n_steps=steps)
    module.train(was_training)
    values = values[0, 0].detach().float().cpu()
    peak = values.abs().max()
    return values / peak if peak > 0 else values
