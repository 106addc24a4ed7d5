"""Learnable synthetic MNIST-layout datasets, written as IDX files: what the tests train and read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.data.datasets import SPLIT_FILES


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (uint8 data) the way the MNIST files are laid out."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: class k lights a bright block at a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        row, col = 4 + 5 * (k // 5) * 2, 3 + 5 * (k % 5)
        images[i, row : row + 6, col : col + 4] = 255
    return images, labels


def make_dataset(root: Path, n_train: int = 600, n_test: int = 200, folder: str = "MNIST") -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = synthetic_digits(n, seed)
        image_file, label_file = SPLIT_FILES[split]
        write_idx(raw / image_file, images)
        write_idx(raw / label_file, labels)
    return root
