"""Shared fixtures: small synthetic IDX datasets and the real MNIST copy when one is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_data import make_dataset


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
