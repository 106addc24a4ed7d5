"""Turning images as people have them into MNIST digits, the way MNIST itself was made.

Ink is made light on a dark background (the polarity is detected), cropped to its bounding box, fitted
into 20x20 keeping the aspect ratio, then placed in a 28x28 field with its centre of mass in the middle.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2.functional import resize

from ..core.errors import DataError

INK_THRESHOLD = 0.2  # of the ink's full strength: what counts as ink when cropping


# Larger images are refused unread: a small PNG can declare gigapixels (a decompression bomb).
MAX_IMAGE_PIXELS = 40_000_000


def read_gray(path: str | Path) -> torch.Tensor:
    """Any PIL-readable image (PNG, JPG, BMP, ...; gray, RGB or RGBA; 8 or 16 bits) as a float ``[H, W]`` in
    [0, 1]."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                                    f"{MAX_IMAGE_PIXELS:,}; refused unread")
                gray = gray_pixels(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"image refused unread: over the limit of {MAX_IMAGE_PIXELS:,} pixels ({err})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read image ({err})") from None
    return torch.from_numpy(gray.copy())


def gray_pixels(image: Image.Image) -> np.ndarray:
    """A PIL image as float gray pixels ``[H, W]`` in [0, 1] (transparency as white paper)."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit and 32-bit gray: PIL's convert("L") would clip every value over 255 to white
        values = np.asarray(image, dtype=np.float32)
        if image.mode == "F":
            full = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        else:
            full = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        return np.clip(values / full, 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "P", "PA"):  # transparent areas become white paper
        image = image.convert("RGBA")
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def light_ink(gray: torch.Tensor) -> torch.Tensor:
    """Light ink on black, background 0, strongest ink 1 (inverts dark-on-light images)."""
    border = torch.cat([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = border.median()
    if background > 0.5:  # light paper: dark ink
        gray, background = 1.0 - gray, 1.0 - background
    ink = (gray - background).clamp_min(0)
    peak = ink.max()
    if peak < 0.05:
        raise DataError("no digit found (the image is blank)")
    return ink / peak


def to_mnist(gray: torch.Tensor) -> torch.Tensor:
    """A float ``[H, W]`` image in [0, 1] -> an MNIST-style ``[28, 28]`` digit in [0, 1]."""
    ink = light_ink(gray)
    rows = (ink > INK_THRESHOLD).any(dim=1).nonzero().flatten()
    cols = (ink > INK_THRESHOLD).any(dim=0).nonzero().flatten()
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    factor = 20.0 / max(h, w)
    size = [max(1, round(h * factor)), max(1, round(w * factor))]
    box = resize(crop[None], size, antialias=True)[0].clamp(0, 1)
    total = box.sum()
    ys = torch.arange(box.shape[0], dtype=box.dtype)
    xs = torch.arange(box.shape[1], dtype=box.dtype)
    com_y, com_x = (box.sum(1) * ys).sum() / total, (box.sum(0) * xs).sum() / total
    top = int(min(max(round(14.0 - com_y.item()), 0), 28 - box.shape[0]))
    left = int(min(max(round(14.0 - com_x.item()), 0), 28 - box.shape[1]))
    digit = torch.zeros(28, 28)
    digit[top : top + box.shape[0], left : left + box.shape[1]] = box
    return digit


def digit_from_image(image: Image.Image) -> torch.Tensor:
    """A PIL image (a drawing, a photo) -> the MNIST-style ``[28, 28]`` digit ``predict`` would make of it."""
    return to_mnist(torch.from_numpy(gray_pixels(image).copy()))
