"""Reading checkpoints safely: ``weights_only=True`` always, clear messages, allow-listed model classes."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import ENV_DATA_DIR
from ..errors import CheckpointError
from ..models import classifier

MODULE_CLASSES = {
    cls.__name__: cls
    for cls in (classifier.SoftmaxClassifier, classifier.DNNClassifier, classifier.CNNClassifier,
                classifier.LeNet5Classifier)
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


def stored_hparams(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The classifier's constructor arguments, also for checkpoints written before the network normalized
    its own input and before ``model.net.dropout`` was the one dropout key."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    if "input_mean" not in hparams:
        hparams["input_mean"], hparams["input_std"] = datamodule_for(checkpoint).input_stats
    regularization = dict(hparams.get("regularization") or {})
    dropout = regularization.pop("dropout", None)
    if dropout is not None:  # it overrode model.net.dropout then, and shapes the DNN's layer indices
        hparams["net"] = {**(hparams.get("net") or {}), "dropout": dropout}
    hparams["regularization"] = regularization
    return hparams


def build_module(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> classifier.ClassifierModule:
    """The LightningModule stored in a checkpoint, weights loaded, in eval mode."""
    name = module_class_name(checkpoint)
    if name not in MODULE_CLASSES:
        raise CheckpointError(f"{path}: not an mnistlab model checkpoint (model class {name!r})")
    module = MODULE_CLASSES[name](**{**stored_hparams(checkpoint), "compile": False})
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


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """``(module, checkpoint)`` for a checkpoint path, the module on ``map_location`` (where the tools'
    inference then runs)."""
    checkpoint = load_checkpoint(path, map_location)
    return build_module(checkpoint, path).to(map_location), checkpoint


def datamodule_for(checkpoint: dict[str, Any], data_dir: str | None = None, dataset: str | None = None,
                   eval_batch_size: int = 1000):
    """A DataModule for the checkpoint's dataset (or ``dataset``), without augmentation."""
    from ..data.datamodule import MNISTDataModule

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


def check_resumable(checkpoint: dict[str, Any], model, path: str | Path) -> None:
    """The checkpoint must hold this run's kind of model with the same tensor shapes."""
    stored = module_class_name(checkpoint)
    if stored is not None and stored != type(model).__name__:
        raise CheckpointError(f"{path}: holds a {stored} but this run builds a {type(model).__name__}; "
                              "pick the model/config the checkpoint was trained with")
    expected = model.state_dict()
    for name, tensor in checkpoint["state_dict"].items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)} but this run's config builds "
                f"{tuple(expected[name].shape)}; resume with the config the checkpoint was trained with "
                f"(its model.net: {checkpoint.get('hyper_parameters', {}).get('net')})"
            )
    metric_state = ("train_", "val_", "test_")
    missing = [k for k in expected if k not in checkpoint["state_dict"] and not k.startswith(metric_state)]
    if missing:
        raise CheckpointError(f"{path}: lacks {missing[:3]} that this run's model has; the configs differ")
