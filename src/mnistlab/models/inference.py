"""The one batched inference path of every tool: pixels in, logits out, on the module's device."""

from __future__ import annotations

import torch


def as_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W]`` or float ``[N, H, W]`` / ``[N, 1, H, W]`` -> float ``[N, 1, H, W]`` in [0, 1]."""
    x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
    return x.unsqueeze(1) if x.ndim == 3 else x


@torch.inference_mode()
def logits(module: torch.nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits ``[N, C]`` (float32, on the CPU) of a classifier or network for a batch of images, fed to it
    ``batch_size`` at a time on the module's own device."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    out = [module(as_pixels(chunk.to(device, non_blocking=True))).float().cpu()
           for chunk in images.split(batch_size)]
    module.train(was_training)
    if out:
        return torch.cat(out)
    num_classes = getattr(getattr(module, "hparams", None), "num_classes", 10)
    return torch.empty(0, num_classes)
