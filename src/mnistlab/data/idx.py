"""Reading and checking IDX files (the format MNIST and Fashion-MNIST ship in), plain or gzipped."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError

# IDX type codes (third magic byte) -> numpy big-endian dtype.
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (``.gz`` allowed) into a tensor, checking its magic number and size."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as err:  # not gzip, a corrupt or truncated stream, permissions
        raise DataError(f"{path}: cannot read file ({err})") from None

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        magic = raw[:4].hex() if raw else "empty file"
        raise DataError(f"{path}: not an IDX file (bad magic number {magic})")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise DataError(f"{path}: {kind}: header says shape {shape} ({expected} data bytes), file has {found}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def read_images_and_labels(images_path: Path, labels_path: Path, num_classes: int = 10,
                           image_size: tuple[int, int] = (28, 28)):
    """Read a matching IDX image/label pair: uint8 images ``[N, 28, 28]`` and int64 labels ``[N]``."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise DataError(f"{images_path}: expected uint8 images [N, H, W], found {images.dtype} {tuple(images.shape)}")
    if tuple(images.shape[1:]) != image_size:
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, the networks take "
                        f"{image_size[0]}x{image_size[1]} (the MNIST family's size)")
    if len(images) == 0:
        raise DataError(f"{images_path}: holds no images")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label vector, found shape {tuple(labels.shape)}")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    labels = labels.long()
    bad = ((labels < 0) | (labels >= num_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{labels_path}: label {int(labels[i])} at index {i} is outside 0-{num_classes - 1} "
            f"({len(bad)} bad labels)"
        )
    return images, labels
