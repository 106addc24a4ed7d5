"""Shared fixtures: small synthetic IDX datasets and the real MNIST copy when one is present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

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


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def tiny_run(synthetic_root, tmp_path_factory) -> Path:
    """One finished run shared by every test that only reads a run: a 784-300-100-10 DNN, one epoch on the
    synthetic digits (in-process, about a second). Its ``checkpoints/last.ckpt`` and ``metrics.json``."""
    from helpers import run_train, synthetic_overrides

    run_dir = tmp_path_factory.mktemp("tiny_run")
    run_train(run_dir, [*synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=1"])
    return run_dir


# Read once at import: the autouse fixture below hides the variable from the code under test.
_USER_DATA_DIR = os.environ.get("MNISTLAB_DATA_DIR")


def _real_mnist_dir() -> Path | None:
    for candidate in (_USER_DATA_DIR, Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = _real_mnist_dir()
    if root is None:
        pytest.skip("real MNIST not found: set MNISTLAB_DATA_DIR to a folder holding MNIST/raw/")
    return root


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    """Tests name their data folder explicitly; the user's MNISTLAB_DATA_DIR must not leak in."""
    monkeypatch.delenv("MNISTLAB_DATA_DIR", raising=False)
