"""Checkpoints to models, safely: ``weights_only=True`` always, clear messages, allow-listed model classes,
stored tensors compared with the model they are to fill (for tools and for resuming alike)."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.errors import CheckpointError, MnistlabError
from ..data.datasets import dataset_info
from . import classifier

# state_dict entries of the classifier's metrics (counts, running sums, the best validation accuracy): state
# of a fit, not the network; checkpoints written before a metric kept its state lack them.
METRIC_STATE = ("train_", "val_", "test_")

# What loading may allocate: the largest mnistlab checkpoint is ~0.1 GB; a crafted archive declaring more
# (a compressed bomb) is refused from its directory, before anything is read.
MAX_CHECKPOINT_BYTES = 4 * 1024**3


def _check_container(path: Path) -> None:
    """The file must be a PyTorch archive (a zip; or a legacy pickle) of a bounded unpacked size."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), as an interrupted copy leaves; use another checkpoint")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"PK":  # a zip's start without its end (the directory is written last)
            raise CheckpointError(f"{path}: truncated or damaged checkpoint ({size} bytes; the zip archive has no "
                                  "end), as an interrupted copy leaves; use another checkpoint")
        if head[:1] != b"\x80":  # pickle protocol 2+: torch.save's legacy format
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle; "
                                  f"{size} bytes starting {head.hex() or 'empty'})")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: damaged zip archive ({err})") from None
    if unpacked > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path}: unpacks to {unpacked / 2**20:,.0f} MiB, over the "
                              f"{MAX_CHECKPOINT_BYTES / 2**20:,.0f} MiB a checkpoint may hold; refused unread")


def _check_structure(path: Path, checkpoint: Any) -> None:
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    state = checkpoint["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a mapping of tensors")
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: state_dict entry {bad!r} is a {type(state[bad]).__name__}, not a tensor")
    for key in ("hyper_parameters", "datamodule_hyper_parameters", "mnistlab"):
        if checkpoint.get(key) is not None and not isinstance(checkpoint[key], dict):
            raise CheckpointError(f"{path}: '{key}' is a {type(checkpoint[key]).__name__}, not a mapping")


# The model mnistlab ships (``make default-model`` regenerates it): predict and the demo use it without a
# ckpt_path. Safetensors: weights and a JSON header, nothing that could run code.
DEFAULT_MODEL = Path(__file__).with_name("default") / "handwriting.safetensors"
SAFETENSORS_KEY = "mnistlab"  # the header's metadata entry holding the model's class, config and record


def read_safetensors(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A ``.safetensors`` model written by ``mnistlab.export format=safetensors``, as the checkpoint
    dictionary the rest of this module reads (its record under ``["mnistlab"]["record"]``)."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            header = json.loads((f.metadata() or {}).get(SAFETENSORS_KEY, "null"))
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no iteration
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0][:160]})") \
            from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: a safetensors file without mnistlab's header (export a checkpoint with "
                              "python -m mnistlab.export format=safetensors)")
    return {"state_dict": state, "hyper_parameters": header.get("hyper_parameters"),
            "datamodule_hyper_parameters": header.get("datamodule_hyper_parameters"),
            "mnistlab": {"module": header.get("module"), "record": header.get("record") or {}}}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(..., weights_only=True)``: tensors and plain containers only; pickled code never runs.
    The file's container and unpacked size are checked before it is read, its structure after. A
    ``.safetensors`` model (the packaged default, an export) reads the same way."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        checkpoint = read_safetensors(path, map_location)
        _check_structure(path, checkpoint)
        return checkpoint
    _check_container(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols; the verdict comes below
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        found = next((ln for ln in lines if "Unsupported global" in ln), None)
        if found is not None:
            raise CheckpointError(
                f"{path}: refused: the file holds pickled objects beyond tensors and plain data, which could run "
                f"code, so it was not loaded ({found.split('Unsupported global:', 1)[-1].strip()[:100]})"
            ) from None
        if lines and lines[0].startswith("Weights only load failed"):  # the safe unpickler stopped at an opcode
            detail = next((ln.split("error:", 1)[1].strip() for ln in lines if "WeightsUnpickler error:" in ln), "")
            raise CheckpointError(
                f"{path}: refused: its pickle uses instructions the safe (weights-only) loader does not run, as "
                f"crafted or foreign files do, so it was not loaded{f' ({detail[:100]})' if detail else ''}"
            ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint (its pickle does not read: {lines[:1]})") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, TypeError) as err:
        detail = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail[:160]})") from None
    _check_structure(path, checkpoint)
    return checkpoint


def module_class_name(checkpoint: dict[str, Any]) -> str | None:
    return (checkpoint.get("mnistlab") or {}).get("module")


def stored_hparams(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The classifier's constructor arguments, also for checkpoints written before the network normalized
    its own input and before ``model.net.dropout`` was the one dropout key."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    if "input_mean" not in hparams:
        saved = checkpoint.get("datamodule_hyper_parameters") or {}
        hparams["input_mean"], hparams["input_std"] = dataset_info(dataset_of(checkpoint)).input_stats(
            saved.get("normalize", True))
    regularization = dict(hparams.get("regularization") or {})
    dropout = regularization.pop("dropout", None)
    if dropout is not None:  # it overrode model.net.dropout then, and shapes the DNN's layer indices
        hparams["net"] = {**(hparams.get("net") or {}), "dropout": dropout}
    hparams["regularization"] = regularization
    return hparams


def _construct(cls, hparams: dict[str, Any], path, device: str):
    try:
        with torch.device(device):
            return cls(**hparams)
    except MnistlabError as err:
        raise CheckpointError(f"{path}: its stored hyperparameters are invalid: {err}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError) as err:
        detail = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: its stored hyperparameters do not build a {cls.__name__} ({detail[:160]})") \
            from None


@dataclass
class StateDifference:
    """How stored tensors differ from the ones a model has (its metrics' state aside: older checkpoints lack it)."""

    missing: list[str]  # in the model, not stored
    unexpected: list[str]  # stored, not in the model
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # (name, stored shape, model's shape)


def compare_state(expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]) -> StateDifference:
    return StateDifference(
        missing=[k for k in expected if k not in stored and not k.startswith(METRIC_STATE)],
        unexpected=[k for k in stored if k not in expected],
        shapes=[(k, tuple(stored[k].shape), tuple(v.shape)) for k, v in expected.items()
                if k in stored and tuple(stored[k].shape) != tuple(v.shape)],
    )


def build_module(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> classifier.ClassifierModule:
    """The LightningModule stored in a checkpoint, weights loaded, in eval mode.

    The network is first built on the ``meta`` device (no memory) and its tensor shapes compared with the
    stored ones, so absurd stored sizes are refused before anything is allocated; weights that are not
    finite (a diverged run) are refused too: every tool would print NaN.
    """
    name = module_class_name(checkpoint)
    cls = classifier.ClassifierModule.registry.get(name)
    if cls is None:
        raise CheckpointError(f"{path}: not an mnistlab model checkpoint (model class {name!r})")
    try:
        hparams = {**stored_hparams(checkpoint), "compile": False}
    except (TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: its stored hyperparameters are malformed ({err})") from None
    stored = checkpoint["state_dict"]
    diff = compare_state(_construct(cls, hparams, path, "meta").state_dict(), stored)
    wrong = [f"{k} is {have} where the config builds {want}" for k, have, want in diff.shapes]
    problems = [f"{what} {items[:3]}" for what, items in (("missing", diff.missing), ("unexpected", diff.unexpected))
                if items]
    if problems or wrong:
        raise CheckpointError(f"{path}: weights do not match {name} with its stored config "
                              f"({'; '.join([*problems, *wrong[:3]])})")
    not_finite = [k for k, t in stored.items() if t.is_floating_point() and not k.startswith(METRIC_STATE)
                  and not bool(torch.isfinite(t).all())]  # a best score is -inf before the first validation
    if not_finite:
        raise CheckpointError(f"{path}: weights hold NaN or infinite values ({', '.join(not_finite[:3])}): the run "
                              "diverged before this checkpoint; use an earlier one")
    module = _construct(cls, hparams, path, "cpu")
    module.load_state_dict(stored, strict=False)
    return module.eval()


def dataset_of(checkpoint: dict[str, Any]) -> str:
    return (checkpoint.get("datamodule_hyper_parameters") or {}).get("dataset", "mnist")


def load_model(path: str | Path | None, map_location: str | torch.device = "cpu"):
    """``(module, checkpoint)`` for a checkpoint path (None: the packaged default model), the module on
    ``map_location`` (where the tools' inference then runs)."""
    path = DEFAULT_MODEL if path is None else path
    checkpoint = load_checkpoint(path, map_location)
    return build_module(checkpoint, path).to(map_location), checkpoint


def check_resumable(checkpoint: dict[str, Any], model, path: str | Path) -> None:
    """The checkpoint must hold this run's kind of model with the same tensor shapes."""
    stored = module_class_name(checkpoint)
    if stored is not None and stored != type(model).__name__:
        raise CheckpointError(f"{path}: holds a {stored} but this run builds a {type(model).__name__}; "
                              "pick the model/config the checkpoint was trained with")
    diff = compare_state(model.state_dict(), checkpoint["state_dict"])
    if diff.shapes:
        name, have, want = diff.shapes[0]
        raise CheckpointError(
            f"{path}: {name} has shape {have} but this run's config builds {want}; resume with the config the "
            f"checkpoint was trained with (its model.net: {checkpoint.get('hyper_parameters', {}).get('net')})"
        )
    if diff.missing:
        raise CheckpointError(f"{path}: lacks {diff.missing[:3]} that this run's model has; the configs differ")


def recorded_accuracy(checkpoint: dict[str, Any]) -> dict[str, float] | None:
    """A safetensors model's recorded accuracies by test set (``{"MNIST test": 0.9932, ...}``); None for a
    checkpoint, whose numbers live in its run's metrics.json."""
    record = (checkpoint.get("mnistlab") or {}).get("record")
    if record is None:
        return None
    return {name: value for name, value in (record.get("accuracy") or {}).items() if isinstance(value, float)}


def default_model_line(checkpoint: dict[str, Any]) -> str:
    """One line naming the packaged default model (``checkpoint``, as loaded) and its recorded accuracies."""
    numbers = ", ".join(f"{name} {value:.2%}" for name, value in (recorded_accuracy(checkpoint) or {}).items())
    return f"no ckpt_path: the packaged default model {DEFAULT_MODEL.name} ({numbers or 'accuracy not recorded'})"
