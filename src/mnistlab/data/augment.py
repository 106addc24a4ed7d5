"""Batched per-sample augmentation that runs on whatever device the batch is on.

Every image gets its own random rotation, shift, scale, flips, elastic distortion (Simard et al. 2003),
stroke thickness, blur, brightness, contrast and erased rectangle (random erasing, Zhong et al. 2020), and
the whole batch is
transformed at once: the affine map and the elastic displacement field make one sampling grid, so one
``grid_sample`` call moves every pixel. No per-sample Python runs and nothing waits on the host, so on a
GPU the work stays on the GPU (torchvision's v2 transforms draw one set of parameters per call, not per
sample, which is why this is written by hand).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..config import augment_options
from ..config.augment_options import OPTIONS


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
    stretch: torch.Tensor | None = None  # horizontal factor (>1 widens the digit); drawn only when asked for
    shear: torch.Tensor | None = None  # slant in degrees (> 0 leans the top right); drawn only when asked for


# What each per-sample parameter is drawn uniformly from, given the options (flips: compared with their p).
DRAWS: dict[str, Callable[[Any], tuple[float, float]]] = {
    "angle": lambda o: (-o.rotation, o.rotation),
    "scale": lambda o: (1 - o.scale, 1 + o.scale),
    "shift_x": lambda o: (-o.shift, o.shift),
    "shift_y": lambda o: (-o.shift, o.shift),
    "hflip": lambda o: (0.0, 1.0),
    "vflip": lambda o: (0.0, 1.0),
    "brightness": lambda o: (max(0.0, 1 - o.brightness), 1 + o.brightness),
    "contrast": lambda o: (max(0.0, 1 - o.contrast), 1 + o.contrast),
}


@functools.lru_cache(maxsize=16)
def _bounds(ranges: tuple[tuple[float, float], ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[P, 1]`` lower bounds and widths, built once per device: a tensor made from a Python list on a
    GPU is a blocking host-to-device copy, which must not happen every step."""
    low, high = torch.tensor(ranges, device=device).unsqueeze(-1).unbind(1)
    return low, high - low


class BatchAugment(torch.nn.Module):
    """Random per-sample affine + photometric transforms for image batches in [0, 1]; the options and their
    rules are ``augment_options.OPTIONS`` (each an attribute of the same name)."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.settings = augment_options.check(settings)
        for name, value in self.settings.items():
            setattr(self, name, value)
        # the transforms some non-zero option switches on, found once: forward asks every step
        self.transforms = frozenset(o.transform for name, o in OPTIONS.items() if o.transform and self.settings[name])

    def uses(self, transform: str) -> bool:
        """Whether ``transform`` (geometric, photometric, elastic, stroke, ...) is switched on."""
        return transform in self.transforms

    @property
    def enabled(self) -> bool:
        return bool(self.transforms)

    def sample(self, n: int, device=None, generator: torch.Generator | None = None) -> AugmentParams:
        low, span = _bounds(tuple(draw(self) for draw in DRAWS.values()), torch.device(device or "cpu"))
        # one draw for all eight parameters of the whole batch: a handful of kernels per step, not dozens
        draws = dict(zip(DRAWS, (torch.rand(len(DRAWS), n, device=device, generator=generator) * span + low)
                         .unbind(0), strict=True))
        draws["hflip"], draws["vflip"] = draws["hflip"] < self.hflip, draws["vflip"] < self.vflip
        return AugmentParams(**draws)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.enabled:
            return images
        n, device = images.shape[0], images.device
        params = self.sample(n, device, generator)
        if self.uses("stretch"):  # its own draw: the other options' random streams stay as they were
            params.stretch = torch.rand(n, device=device, generator=generator) * (2 * self.stretch) + 1 - self.stretch
        if self.uses("shear"):  # likewise its own draw
            params.shear = (torch.rand(n, device=device, generator=generator) * 2 - 1) * self.shear
        h, w = images.shape[-2:]
        field = displacement_field(n, h, w, self.elastic_alpha, self.elastic_sigma, generator, images) \
            if self.uses("elastic") else None
        images = apply(images, params, geometric=bool(self.transforms & {"geometric", "stretch", "shear"}),
                       photometric=False, displacement=field)
        if self.uses("stroke") or self.uses("blur") or self.uses("lowres"):
            draws = torch.rand(6, n, device=device, generator=generator)
            if self.uses("stroke"):
                reach = None  # how far each sample's last pass goes; its own draw, as stretch's
                if self.stroke_partial:
                    part = torch.rand(2, n, device=device, generator=generator)
                    reach = torch.where(part[0] < self.stroke_partial, part[1], torch.ones_like(part[1]))
                images = stroke_width(images, draws[0] < self.stroke_p, draws[1] < 1 - self.stroke_thinner,
                                      radius_choice(draws[2], self.stroke_radius), self.stroke_radius, reach)
            if self.uses("blur"):  # below blur_p, draws[3] / blur_p is uniform in [0, 1) again
                passes = (draws[3] < self.blur_p) * radius_choice(draws[3] / self.blur_p, self.blur_passes)
                images = blur(images, passes, self.blur_passes)
            if self.uses("lowres"):
                images = low_resolution(images, draws[4] < self.lowres_p, radius_choice(draws[5], 3),
                                        lowres_sides(self.lowres_side))
        if self.uses("photometric"):
            images = apply(images, params, geometric=False, photometric=True)
        if self.uses("erase"):
            mask = erase_masks(n, h, w, self.erase_p, self.erase_scale, self.erase_ratio, device, generator)
            images = images.masked_fill(mask, 0.0)
        return images

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self.settings.items())


def radius_choice(uniform: torch.Tensor, largest: int) -> torch.Tensor:
    """Per-sample whole numbers uniform in ``1..largest`` from uniform draws in [0, 1)."""
    return (uniform * largest).long().clamp(0, largest - 1) + 1


def stroke_width(images: torch.Tensor, chosen: torch.Tensor, thicker: torch.Tensor, radius: torch.Tensor,
                 largest: int, reach: torch.Tensor | None = None) -> torch.Tensor:
    """Thicker (grey-level dilation: a 3x3 max) or thinner (erosion: a 3x3 min) strokes by ``radius`` passes
    (at most ``largest``) for the ``chosen`` samples, the last pass blended in by ``reach`` in [0, 1] (None:
    whole passes); every pass is computed for the whole batch and each sample takes its own, so nothing waits
    on the host (``radius.max()`` would)."""
    thicker = thicker.view(-1, 1, 1, 1)
    out, dilated, eroded = images, images, images
    for step in range(1, largest + 1):
        before = torch.where(thicker, dilated, eroded) if reach is not None else None  # whole passes need none
        dilated = F.max_pool2d(dilated, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-eroded, 3, stride=1, padding=1)
        after = torch.where(thicker, dilated, eroded)
        if before is not None:
            after = torch.lerp(before, after, reach.view(-1, 1, 1, 1).to(images.dtype))
        out = torch.where((chosen & (radius == step)).view(-1, 1, 1, 1), after, out)
    return out


def lowres_sides(smallest: int) -> tuple[int, int, int]:
    """Three sides from ``smallest`` to 20 pixels (a 28x28 MNIST digit's ink fills about 20x20)."""
    return smallest, round((smallest + 20) / 2), 20


def low_resolution(images: torch.Tensor, chosen: torch.Tensor, level: torch.Tensor,
                   sides: tuple[int, ...]) -> torch.Tensor:
    """The ``chosen`` samples shrunk to ``sides[level - 1]`` pixels a side (area averaging) and enlarged back
    (bilinear); every side is computed for the whole batch and each sample takes its own (no host sync)."""
    out = images
    for index, side in enumerate(sides, start=1):
        small = F.interpolate(images, size=(side, side), mode="area")
        back = F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)
        out = torch.where((chosen & (level == index)).view(-1, 1, 1, 1), back, out)
    return out


@functools.lru_cache(maxsize=8)
def _binomial(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    taps = torch.tensor([1.0, 2.0, 1.0], device=device, dtype=dtype)
    return (taps[:, None] * taps[None, :] / 16).view(1, 1, 3, 3)


def blur(images: torch.Tensor, passes: torch.Tensor, largest: int) -> torch.Tensor:
    """Each sample blurred by its own number of 3x3 binomial passes (0: unchanged; at most ``largest``)."""
    kernel = _binomial(images.device, images.dtype).expand(images.shape[1], 1, 3, 3)
    out, blurred = images, images
    for step in range(1, largest + 1):
        blurred = F.conv2d(blurred, kernel, padding=1, groups=images.shape[1])
        out = torch.where((passes == step).view(-1, 1, 1, 1), blurred, out)
    return out


@functools.lru_cache(maxsize=8)
def _blur_matrix(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[size, size]`` matrix that blurs a length-``size`` signal with a Gaussian (taps within 3 sigma, zero
    beyond the border): two small matrix products blur a batch of fields ~10x faster than grouped
    convolutions with the same taps on a CPU. Built once per device."""
    r = torch.arange(size, device=device, dtype=dtype)
    offset = r.view(-1, 1) - r.view(1, -1)
    weights = torch.exp(-(offset**2) / (2 * sigma**2)) * (offset.abs() <= math.ceil(3 * sigma))
    taps = torch.arange(-math.ceil(3 * sigma), math.ceil(3 * sigma) + 1, device=device, dtype=dtype)
    return weights / torch.exp(-(taps**2) / (2 * sigma**2)).sum()


def displacement_field(n: int, height: int, width: int, alpha: float, sigma: float,
                       generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Simard's elastic distortion: ``[N, H, W, 2]`` per-pixel displacements ``(dx, dy)`` in pixels, each a
    uniform [-1, 1] field smoothed by a Gaussian of ``sigma`` pixels (zero beyond the border) and scaled by
    ``alpha``. A larger sigma gives a smoother field; its size grows linearly with alpha."""
    blur_h = _blur_matrix(height, float(sigma), like.device, like.dtype)
    blur_w = _blur_matrix(width, float(sigma), like.device, like.dtype)
    noise = torch.rand(n, 2, height, width, device=like.device, dtype=like.dtype, generator=generator) * 2 - 1
    field = blur_h @ noise @ blur_w.T
    return (field * alpha).permute(0, 2, 3, 1)


def erase_masks(n: int, height: int, width: int, p: float, scale: tuple[float, float], ratio: tuple[float, float],
                device, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[N, 1, H, W]`` masks of random erasing: with probability ``p`` a rectangle of ``scale`` of the image
    area and aspect ratio (height/width) in ``ratio`` (log-uniform), placed uniformly inside the image."""
    u = torch.rand(5, n, device=device, generator=generator)
    area = (scale[0] + u[1] * (scale[1] - scale[0])) * (height * width)
    aspect = torch.exp(math.log(ratio[0]) + u[2] * (math.log(ratio[1]) - math.log(ratio[0])))
    rect_h = (area * aspect).sqrt().round().clamp(1, height)
    rect_w = (area / aspect).sqrt().round().clamp(1, width)
    top = (u[3] * (height - rect_h + 1)).floor()
    left = (u[4] * (width - rect_w + 1)).floor()
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    inside_rows = (rows >= top.view(-1, 1, 1)) & (rows < (top + rect_h).view(-1, 1, 1))
    inside_cols = (cols >= left.view(-1, 1, 1)) & (cols < (left + rect_w).view(-1, 1, 1))
    return (inside_rows & inside_cols & (u[0] < p).view(-1, 1, 1)).unsqueeze(1)


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
    if params.stretch is not None:
        row_x = row_x / params.stretch.float()
    row_y = torch.where(params.vflip, minus_inv_zoom, inv_zoom)
    # Counter-clockwise on screen (y down) is R(-theta) forward, so the inverse rotation is R(theta).
    # Built as whole [N, 2, 2] tensors: each op is a kernel, which a GPU step pays for in launches.
    rotation = torch.stack([cos, -sin, sin, cos], dim=-1).view(-1, 2, 2)
    a = rotation * torch.stack([row_x, row_y], dim=-1).unsqueeze(-1)
    if params.shear is not None:  # the content's last step before the shift, so this inverse map's first: an
        # output pixel at (x, y) reads from where (x + tan(shear) * y, y) maps (y down: > 0 leans the top right)
        slope = torch.tan(torch.deg2rad(params.shear.float()))
        ones, zeros = torch.ones_like(slope), torch.zeros_like(slope)
        a = a @ torch.stack([ones, slope, zeros, ones], dim=-1).view(-1, 2, 2)
    t = torch.stack([params.shift_x.float() * (2.0 / width), params.shift_y.float() * (2.0 / height)], dim=-1)
    return torch.cat([a, -(a @ t.unsqueeze(-1))], dim=-1)


@functools.lru_cache(maxsize=8)
def _base_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[H*W, 3]`` rows ``(x, y, 1)`` of pixel centres in normalized coordinates (align_corners=False)."""
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y, torch.ones_like(x)], dim=-1).reshape(-1, 3)


@functools.lru_cache(maxsize=8)
def _pixel_size(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(2 / W, 2 / H)``: one pixel in normalized coordinates, built once per device (no copy per step)."""
    return torch.tensor([2.0 / width, 2.0 / height], device=device, dtype=dtype)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, [N, C, H, W], align_corners=False)`` as one GEMM of a cached base grid with
    every matrix of the batch: the same numbers, over ten times faster on a CPU for 28x28 batches."""
    base = _base_grid(height, width, theta.device, theta.dtype)
    coords = base @ theta.reshape(-1, 3).T  # [H*W, N*2]
    return coords.T.reshape(-1, 2, height * width).transpose(1, 2).reshape(-1, height, width, 2)


def apply(images: torch.Tensor, params: AugmentParams, geometric: bool = True,
          photometric: bool = True, displacement: torch.Tensor | None = None) -> torch.Tensor:
    """Apply given per-sample parameters to a float batch ``[N, C, H, W]`` in [0, 1]; ``displacement``
    (``[N, H, W, 2]`` pixels, from ``displacement_field``) moves each output pixel's sampling point too."""
    if geometric or displacement is not None:
        h, w = images.shape[-2:]
        theta = affine_matrices(params, h, w).to(images.dtype)
        grid = affine_grid(theta, h, w)
        if displacement is not None:  # pixels -> normalized coordinates, one pixel being 2 / size
            grid = grid + displacement * _pixel_size(h, w, images.device, images.dtype)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if photometric:
        shape = (-1, 1, 1, 1)
        images = images * params.brightness.to(images.dtype).view(shape)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * params.contrast.to(images.dtype).view(shape) + mean
        images = images.clamp(0.0, 1.0)
    return images

