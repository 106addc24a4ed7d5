"""Where the MNIST-family files live: the dataset registry, local look-up and torchvision download."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from ..core.errors import DataError
from .idx import read_images_and_labels

ENV_DATA_DIR = "MNISTLAB_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/mnistlab").expanduser()

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision_class: str  # also the sub-folder name of torchvision's layout: <root>/<class>/raw/
    mean: float  # of the training pixels scaled to [0, 1]
    std: float
    classes: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()  # distribution packages that install the files
    label_keeping_flips: tuple[str, ...] = ()  # augment flips after which every image keeps its label
    # a test set of other writers' handwriting (data/uci_digits.py), no files and no training split
    cross_writer_half: str | None = None

    def input_stats(self, normalize: bool = True) -> tuple[float, float]:
        """``(mean, std)`` a network standardizes its pixels with; ``normalize=false`` feeds them as they
        are, in [0, 1], as the TensorFlow tutorials do."""
        return (self.mean, self.std) if normalize else (0.0, 1.0)


DATASETS = {
    "mnist": DatasetInfo("mnist", "MNIST", 0.1307, 0.3081, tuple(str(d) for d in range(10))),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        "FashionMNIST",
        0.2860,
        0.3530,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
        label_keeping_flips=("hflip",),  # a mirrored shirt is a shirt; an upside-down boot is not how they come
    ),
    # MNIST's statistics: these test networks trained on MNIST, with MNIST's standardization
    "uci_digits": DatasetInfo("uci_digits", "", 0.1307, 0.3081, tuple(str(d) for d in range(10)),
                              cross_writer_half="report"),
    "uci_digits_tune": DatasetInfo("uci_digits_tune", "", 0.1307, 0.3081, tuple(str(d) for d in range(10)),
                                   cross_writer_half="tune"),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """The data root and whether the user named it (``data_dir`` first, then $MNISTLAB_DATA_DIR)."""
    chosen = data_dir or os.environ.get(ENV_DATA_DIR)
    if chosen:
        return Path(chosen).expanduser(), True
    return DEFAULT_DATA_DIR, False


def _candidates(root: Path, info: DatasetInfo, stem: str) -> list[Path]:
    folders = [root / info.torchvision_class / "raw", root / info.torchvision_class, root]
    folders += [Path(d) for d in info.system_dirs]
    return [folder / (stem + ext) for folder in folders for ext in ("", ".gz")]


def find_split_files(root: Path, info: DatasetInfo, split: str) -> tuple[Path, Path] | None:
    found = []
    for stem in SPLIT_FILES[split]:
        path = next((p for p in _candidates(root, info, stem) if p.is_file()), None)
        if path is None:
            return None
        _same_as_gzipped_twin(path)
        found.append(path)
    return found[0], found[1]


def _same_as_gzipped_twin(path: Path) -> None:
    """A plain file read beside its ``.gz`` must hold the same data: two copies that disagree (a partial
    re-download, a hand edit) leave no way to know which one the user meant."""
    twin = path.with_name(path.name + ".gz")
    if path.suffix == ".gz" or not twin.is_file():
        return
    digest = hashlib.sha256()
    try:
        with gzip.open(twin, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error):
        same = False
    else:
        same = digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    if not same:
        raise DataError(f"{path} and {twin} disagree (the .gz does not decompress to the plain file); "
                        "delete the wrong one")


def _download(root: Path, info: DatasetInfo) -> str | None:
    """Download through torchvision into ``root``; returns the failure reason, or None on success."""
    dataset_class = getattr(torchvision.datasets, info.torchvision_class)
    chatter = io.StringIO()  # torchvision prints one line per mirror it tries; keep it for the error
    # what this download creates, removed again if it fails: the user's folder is left as it was
    made = [p for p in (root, root / info.torchvision_class, root / info.torchvision_class / "raw") if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        print(f"Downloading {info.name} into {root} ...", flush=True)
        with contextlib.redirect_stdout(chatter):
            dataset_class(str(root), train=True, download=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not available", reported below
        for folder in reversed(made):
            shutil.rmtree(folder, ignore_errors=True)
        lines = [ln.strip() for ln in chatter.getvalue().splitlines() if "error" in ln.lower()]
        return (lines[-1] if lines else str(err)).splitlines()[0]
    return None


def locate_split(name: str, split: str, data_dir=None, download: bool = True) -> tuple[Path, Path] | None:
    """Paths of one official split's image and label files, found locally or downloaded (None for a
    dataset that comes without files)."""
    info = dataset_info(name)
    if info.cross_writer_half is not None:
        return None
    root, named = resolve_data_dir(data_dir)
    files = find_split_files(root, info, split)
    reason = None
    if files is None and download:
        reason = _download(root, info)
        files = find_split_files(root, info, split)
    if files is None:
        looked = [str(root / info.torchvision_class / "raw"), *info.system_dirs]
        how = f"set {ENV_DATA_DIR} or data.data_dir to a folder holding {'/'.join(SPLIT_FILES[split])}[.gz]"
        why = f"download failed: {reason}" if reason else "download disabled (data.download=false)"
        where = "" if named else " (default location)"
        raise DataError(f"{info.name} {split} files not found in {', '.join(looked)}{where}; {why}; {how}")
    return files


def load_split(name: str, split: str, data_dir=None, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, 28, 28]`` and int64 labels of one official split."""
    info = dataset_info(name)
    if info.cross_writer_half is not None:
        if split != "test":
            raise DataError(f"{name} is a test set only (handwriting of writers MNIST never saw): it has no {split} "
                            f"split; train on mnist and evaluate with dataset={name}")
        from .uci_digits import load_half

        return load_half(info.cross_writer_half)
    files = locate_split(name, split, data_dir, download)
    return read_images_and_labels(*files, num_classes=len(dataset_info(name).classes))
