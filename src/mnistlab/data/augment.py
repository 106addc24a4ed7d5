"""Batched per-sample augmentation that runs on whatever device the batch is on.

Every image gets its own random rotation, shift, scale, flips, brightness and contrast, and the whole
batch is transformed at once (one ``affine_grid``/``grid_sample`` call), so no per-sample Python runs
on the training path and, on a GPU, the work stays on the GPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import rules
from ..errors import ConfigError


@dataclass
class AugmentParams:
    """Per-sample parameters, each a tensor of shape ``[N]``."""

    angle: torch.Tensor  # degrees, counter-clockwise
    scale: torch.Tensor  # zoom factor (>1 enlarges the digit)
    shift_x: torch.Tensor  # pixels, positive moves content right
    shift_y: torch.Tensor  # pixels, positive moves content down
    hflip: torch.Tensor  # bool
    vflip: torch.Tensor  # bool
    brightness: torch.Tensor  # multiplicative factor
    contrast: torch.Tensor  # blend factor around the image mean


@functools.lru_cache(maxsize=16)
def _bounds(ranges: tuple[tuple[float, float], ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[P, 1]`` lower bounds and widths, built once per device: a tensor made from a Python list on a
    GPU is a blocking host-to-device copy, which must not happen every step."""
    low, high = torch.tensor(ranges, device=device).unsqueeze(-1).unbind(1)
    return low, high - low


class BatchAugment(torch.nn.Module):
    """Random per-sample affine + photometric transforms for image batches in [0, 1]."""

    def __init__(
        self,
        rotation: float = 0.0,
        shift: float = 0.0,
        scale: float = 0.0,
        hflip: float = 0.0,
        vflip: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
    ) -> None:
        super().__init__()
        settings = dict(rotation=rotation, shift=shift, scale=scale, brightness=brightness, contrast=contrast)
        for key, value in settings.items():
            rules.non_negative(f"augment.{key}", value)
        for key, value in dict(hflip=hflip, vflip=vflip).items():
            rules.probability(f"augment.{key}", value)
        if scale >= 1:
            raise ConfigError(f"augment.scale must be < 1 (zoom in [1-scale, 1+scale]), got {scale}")
        self.rotation, self.shift, self.scale = rotation, shift, scale
        self.hflip, self.vflip = hflip, vflip
        self.brightness, self.contrast = brightness, contrast

    @property
    def enabled(self) -> bool:
        return any((self.rotation, self.shift, self.scale, self.hflip, self.vflip, self.brightness, self.contrast))

    def sample(self, n: int, device=None, generator: torch.Generator | None = None) -> AugmentParams:
        ranges = [(-self.rotation, self.rotation), (1 - self.scale, 1 + self.scale), (-self.shift, self.shift),
                  (-self.shift, self.shift), (0.0, 1.0), (0.0, 1.0),
                  (max(0.0, 1 - self.brightness), 1 + self.brightness),
                  (max(0.0, 1 - self.contrast), 1 + self.contrast)]
        low, span = _bounds(tuple(ranges), torch.device(device or "cpu"))
        # one draw for all eight parameters of the whole batch: a handful of kernels per step, not dozens
        draws = torch.rand(len(ranges), n, device=device, generator=generator) * span + low
        angle, scale, shift_x, shift_y, hflip, vflip, brightness, contrast = draws.unbind(0)
        return AugmentParams(angle=angle, scale=scale, shift_x=shift_x, shift_y=shift_y, hflip=hflip < self.hflip,
                             vflip=vflip < self.vflip, brightness=brightness, contrast=contrast)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.enabled:
            return images
        params = self.sample(images.shape[0], images.device, generator)
        geometric = bool(self.rotation or self.shift or self.scale or self.hflip or self.vflip)
        return apply(images, params, geometric=geometric, photometric=bool(self.brightness or self.contrast))

    def extra_repr(self) -> str:
        fields = dict(rotation=self.rotation, shift=self.shift, scale=self.scale, hflip=self.hflip,
                      vflip=self.vflip, brightness=self.brightness, contrast=self.contrast)
        return ", ".join(f"{k}={v}" for k, v in fields.items())


def affine_matrices(params: AugmentParams, height: int, width: int) -> torch.Tensor:
    """``[N, 2, 3]`` matrices for ``affine_grid``: output coordinates -> input coordinates.

    The content is flipped, zoomed, rotated counter-clockwise, then shifted; this is the inverse map.
    Coordinates are normalized with y pointing down, one pixel being ``2 / size``.
    """
    theta = torch.deg2rad(params.angle.float())
    cos, sin = torch.cos(theta), torch.sin(theta)
    inv_zoom = params.scale.float().reciprocal()
    minus_inv_zoom = -inv_zoom
    row_x = torch.where(params.hflip, minus_inv_zoom, inv_zoom)  # a flip negates its row
    row_y = torch.where(params.vflip, minus_inv_zoom, inv_zoom)
    # Counter-clockwise on screen (y down) is R(-theta) forward, so the inverse rotation is R(theta).
    # Built as whole [N, 2, 2] tensors: each op is a kernel, which a GPU step pays for in launches.
    rotation = torch.stack([cos, -sin, sin, cos], dim=-1).view(-1, 2, 2)
    a = rotation * torch.stack([row_x, row_y], dim=-1).unsqueeze(-1)
    t = torch.stack([params.shift_x.float() * (2.0 / width), params.shift_y.float() * (2.0 / height)], dim=-1)
    return torch.cat([a, -(a @ t.unsqueeze(-1))], dim=-1)


@functools.lru_cache(maxsize=8)
def _base_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[H*W, 3]`` rows ``(x, y, 1)`` of pixel centres in normalized coordinates (align_corners=False)."""
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y, torch.ones_like(x)], dim=-1).reshape(-1, 3)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, [N, C, H, W], align_corners=False)`` as one GEMM of a cached base grid with
    every matrix of the batch: the same numbers, over ten times faster on a CPU for 28x28 batches."""
    base = _base_grid(height, width, theta.device, theta.dtype)
    coords = base @ theta.reshape(-1, 3).T  # [H*W, N*2]
    return coords.T.reshape(-1, 2, height * width).transpose(1, 2).reshape(-1, height, width, 2)


def apply(images: torch.Tensor, params: AugmentParams, geometric: bool = True,
          photometric: bool = True) -> torch.Tensor:
    """Apply given per-sample parameters to a float batch ``[N, C, H, W]`` in [0, 1]."""
    if geometric:
        h, w = images.shape[-2:]
        theta = affine_matrices(params, h, w).to(images.dtype)
        grid = affine_grid(theta, h, w)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if photometric:
        shape = (-1, 1, 1, 1)
        images = images * params.brightness.to(images.dtype).view(shape)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * params.contrast.to(images.dtype).view(shape) + mean
        images = images.clamp(0.0, 1.0)
    return images

