"""People's own files as MNIST-style digits: image files, folders and globs of them, and IDX files of any
element type or image size."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import torch

from ..core.errors import ConfigError, DataError
from .idx import IDX_TYPES, read_idx
from .preprocess import read_gray, to_mnist

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def is_idx(path: Path) -> bool:
    if "idx" in path.name and "ubyte" in path.name:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[:2] == b"\x00\x00" and head[2] in IDX_TYPES and head[3] == 3


def idx_pixels(images: torch.Tensor) -> torch.Tensor:
    """IDX images as floats in [0, 1]: integers are 0-255 pixels; floats already in [0, 1] stay, floats up
    to 255 are pixels too."""
    if not images.is_floating_point():
        return images.float() / 255.0
    finite = images[torch.isfinite(images)]
    scale = 255.0 if finite.numel() and finite.max() > 1.0 else 1.0
    return (images.float() / scale).nan_to_num(0.0).clamp(0.0, 1.0)


def expand_inputs(spec: str) -> list[Path]:
    """A file, a folder (its image and IDX files, sorted) or a glob pattern."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or is_idx(p)))
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not files:
        raise ConfigError(f"inputs={spec}: no image files found there")
    return files


def load_inputs(files: list[Path]) -> Iterator[tuple[str, torch.Tensor | None, str | None]]:
    """``(name, 28x28 digit or None, error or None)`` for every image, IDX files expanded."""
    for path in files:
        if is_idx(path):
            try:
                images = read_idx(path)
                if images.ndim != 3:
                    raise DataError(f"{path}: expected images [N, H, W], found shape {tuple(images.shape)}")
            except DataError as err:
                yield str(path), None, str(err)
                continue
            pixels = idx_pixels(images)
            for i, image in enumerate(pixels):
                name = f"{path}#{i}"
                if tuple(image.shape) == (28, 28):  # MNIST-family files are MNIST digits already
                    yield name, image, None
                    continue
                try:  # another size: the same MNIST-style preprocessing as an image file
                    yield name, to_mnist(image), None
                except DataError as err:
                    yield name, None, str(err)
            continue
        try:
            yield str(path), to_mnist(read_gray(path)), None
        except DataError as err:
            yield str(path), None, str(err)
