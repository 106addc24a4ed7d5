"""Real handwriting that MNIST never saw: the UCI optical digits (scikit-learn's ``load_digits``: 1,797 digits
by 43 writers, 8x8 pixels at 17 grey levels), read through ``predict``'s own preprocessing (``to_mnist``: crop
to the ink, fit in 20x20, centre of mass in the middle), the path people's images take in the demo and in
``predict``. So its accuracy measures what those do with handwriting from other writers, pens and scanners.

The digits are split once, by a fixed seed, into a tuning half (``uci_digits_tune``: recipes may be tuned on
it) and a reporting half (``uci_digits``: reported everywhere, tuned on never).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, MnistlabError
from ..core.io import write_bytes
from . import preprocess
from .datasets import DEFAULT_DATA_DIR

SPLIT_SEED = 0
HALVES = ("tune", "report")


def _bundled_file() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the UCI digits come with scikit-learn: pip install 'mnistlab[uci]' "
                        "(or pip install scikit-learn)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def read_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 digits as float ``[N, 8, 8]`` in [0, 1] and their labels, from scikit-learn's bundled copy of
    the UCI file, read directly: importing ``sklearn.datasets`` (what ``load_digits`` needs) takes ~1.3 s,
    which every MNIST run's cross-writer test would pay; the file reads in 25 ms."""
    path = _bundled_file()
    if path.is_file():
        table = np.loadtxt(path, delimiter=",")
        pixels, target = table[:, :64].reshape(-1, 8, 8), table[:, 64]
    else:  # a scikit-learn that keeps the file elsewhere
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels, target = digits.images, digits.target
    return torch.from_numpy(pixels).float() / 16.0, torch.from_numpy(target).long()  # 17 grey levels, 0..16


def _cache_file() -> Path | None:
    """Where the preprocessed halves are kept, named by the UCI file and the preprocessing code that made
    them (either changing makes a new file): ``to_mnist`` on 1,797 digits takes 0.6 s, which every run's
    process would pay again."""
    path = _bundled_file()
    if not path.is_file():
        return None
    key = hashlib.sha256(path.read_bytes() + inspect.getsource(preprocess).encode()).hexdigest()[:16]
    return DEFAULT_DATA_DIR / "uci_digits" / f"halves-{key}-seed{SPLIT_SEED}.pt"


@functools.cache
def _halves() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    cache = _cache_file()
    if cache is not None and cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            return {half: (saved[half]["images"], saved[half]["labels"]) for half in HALVES}
        except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError):
            pass  # damaged: made again below
    gray, labels = read_digits()
    images = torch.stack([preprocess.to_mnist(image) for image in gray]).mul(255).round().to(torch.uint8)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    tune, report = order[: len(order) // 2].sort().values, order[len(order) // 2 :].sort().values
    halves = {"tune": (images[tune], labels[tune]), "report": (images[report], labels[report])}
    if cache is not None:
        buffer = io.BytesIO()
        torch.save({half: {"images": x, "labels": y} for half, (x, y) in halves.items()}, buffer)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(cache, buffer.getvalue())
        except (OSError, MnistlabError):
            pass  # a read-only home: computed again next time
    return halves


def load_half(half: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[N, 28, 28]`` MNIST-style digits and int64 labels of one half (``tune`` or ``report``)."""
    return _halves()[half]
