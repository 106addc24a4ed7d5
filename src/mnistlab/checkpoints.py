"""Reading checkpoints safely: ``weights_only=True`` always, clear messages, allow-listed model classes."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from . import modules
from .datasets import dataset_info
from .errors import CheckpointError

MODULE_CLASSES = {
    cls.__name__: cls
    for cls in (modules.SoftmaxClassifier, modules.DNNClassifier, modules.CNNClassifier, modules.LeNet5Classifier)
}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(..., weights_only=True)``: tensors and plain containers only; pickled code never runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols; the verdict comes below
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = next((ln.strip() for ln in str(err).splitlines() if "Unsupported global" in ln), "unsupported object")
        raise CheckpointError(
            f"{path}: refused: the file holds pickled objects beyond tensors and plain data, which could run "
            f"code, so it was not loaded ({found.rstrip('.')})"
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


def module_class_name(checkpoint: dict[str, Any]) -> str | None:
    return (checkpoint.get("mnistlab") or {}).get("module")


def build_module(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> modules.ClassifierModule:
    """The LightningModule stored in a checkpoint, weights loaded, in eval mode."""
    name = module_class_name(checkpoint)
    if name not in MODULE_CLASSES:
        raise CheckpointError(f"{path}: not an mnistlab model checkpoint (model class {name!r})")
    hparams = checkpoint.get("hyper_parameters") or {}
    module = MODULE_CLASSES[name](**{**hparams, "compile": False})
    missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    missing = [k for k in missing if not k.startswith(("train_", "val_", "test_"))]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match {name} with its stored config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return module.eval()


def dataset_of(checkpoint: dict[str, Any]) -> str:
    return (checkpoint.get("datamodule_hyper_parameters") or {}).get("dataset", "mnist")


def normalization_of(checkpoint: dict[str, Any]) -> tuple[float, float]:
    """The ``(mean, std)`` the model's inputs were normalized with during training."""
    saved = checkpoint.get("datamodule_hyper_parameters") or {}
    if not saved.get("normalize", True):
        return 0.0, 1.0
    info = dataset_info(dataset_of(checkpoint))
    return info.mean, info.std


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """``(module, checkpoint)`` for a checkpoint path."""
    checkpoint = load_checkpoint(path, map_location)
    return build_module(checkpoint, path), checkpoint


def datamodule_for(checkpoint: dict[str, Any], data_dir: str | None = None, dataset: str | None = None,
                   eval_batch_size: int = 1000):
    """A DataModule for the checkpoint's dataset (or ``dataset``), without augmentation."""
    from .data import MNISTDataModule
    from .datasets import ENV_DATA_DIR

    saved = checkpoint.get("datamodule_hyper_parameters") or {}
    return MNISTDataModule(
        dataset=dataset or saved.get("dataset", "mnist"),
        data_dir=data_dir or os.environ.get(ENV_DATA_DIR) or saved.get("data_dir"),
        download=saved.get("download", True),
        eval_batch_size=eval_batch_size,
        val_fraction=saved.get("val_fraction", 0.1),
        split_seed=saved.get("split_seed", 0),
        normalize=saved.get("normalize", True),
    )
