"""A composed config -> the DataModule, LightningModule and Trainer it describes."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary, ProgressBar
from pytorch_lightning.profilers import PassThroughProfiler
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from ..config.devices import ALIASES, DEVICES, drop_failing_nvml_check, precision_for, resolve_device
from ..core.errors import ConfigError, user_error
from .callbacks import CudaGraphCapture
from .checkpoint_io import AtomicCheckpointIO
from .transfer import TransferLayers


def instantiate_dict(section: DictConfig | None) -> list[Any]:
    return [instantiate(item) for item in (section or {}).values() if item is not None and "_target_" in item]


def _instantiate(node: DictConfig, **kwargs):
    """``instantiate``, with a constructor's own ``MnistlabError`` (which Hydra wraps) raised as itself."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = user_error(err)
        if cause is None:
            raise
        raise cause from None


def build_datamodule(cfg: DictConfig):
    # _convert_: plain lists and dicts, which checkpoints store and weights_only loading accepts
    return _instantiate(cfg.data, augment=OmegaConf.to_container(cfg.augment, resolve=True), _recursive_=False,
                        _convert_="all")


def build_model(cfg: DictConfig, input_stats: tuple[float, float]):
    """The LightningModule; its network standardizes pixels with the DataModule's ``input_stats``."""
    mean, std = input_stats
    # .get: a group removed on the command line (``~optimizer``) is the module's to refuse, in its words
    return _instantiate(cfg.model, optimizer=cfg.get("optimizer"), scheduler=cfg.get("scheduler"),
                        regularization=cfg.get("regularization"), input_mean=mean, input_std=std, _recursive_=False)


# Lightning adds its own progress bar (refreshed every step), model summary (a forward pass and a table,
# inside the fit) and checkpoint callback when none of the kind is configured.
_LIGHTNING_DEFAULTS = {"enable_progress_bar": ProgressBar, "enable_model_summary": ModelSummary,
                       "enable_checkpointing": ModelCheckpoint}


def switched_off_defaults(callbacks: list, trainer_cfg: DictConfig) -> dict[str, bool]:
    """Trainer flags that keep ``callbacks.<name>=null`` off instead of swapping in Lightning's default."""
    return {flag: False for flag, kind in _LIGHTNING_DEFAULTS.items()
            if trainer_cfg.get(flag) is None and not any(isinstance(c, kind) for c in callbacks)}


class NoProfiler(PassThroughProfiler):
    """Lightning's default when no profiler is set, with one shared do-nothing context: Lightning wraps each of
    the ~120 hook calls of a training step in ``profiler.profile(...)``, whose generator-based context costs
    1.3 us against 0.2 us for this one (0.13 ms of the DNN's 3.6 ms step on a 2-core CPU)."""

    _context = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._context


def build(cfg: DictConfig, extra_callbacks: list | None = None, **trainer_overrides):
    """The DataModule, LightningModule and Trainer a composed config describes."""
    # the model first: a network's own checks fail before the Trainer prints or creates anything
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule.input_stats)
    # extra callbacks (timers) first: their epoch-end hooks run before the configured callbacks' work; the
    # graph capture before them all, so its warm-up stays out of the clock that starts at on_train_start
    capture = [CudaGraphCapture()] if cfg.model.get("cuda_graph") else []
    # the transferred layers are in place before any other callback (the moving average) copies the network
    transfer = cfg.get("transfer") or {}
    start = [TransferLayers(**transfer, copy=not cfg.get("ckpt_path"))] if transfer.get("ckpt_path") else []
    callbacks = [*start, *capture, *(extra_callbacks or []), *instantiate_dict(cfg.get("callbacks"))]
    loggers = instantiate_dict(cfg.get("logger"))
    if not loggers:  # logger=null: the learning-rate monitor has nowhere to write (Lightning refuses it)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer_kwargs = {"callbacks": callbacks, "logger": loggers or False,
                      **switched_off_defaults(callbacks, cfg.trainer), **trainer_overrides}
    trainer_kwargs.setdefault("precision", chosen_precision(cfg))
    if not cfg.trainer.get("profiler"):  # debug=profiler (or any trainer.profiler) profiles as asked
        trainer_kwargs.setdefault("profiler", NoProfiler())
    if not cfg.trainer.get("plugins"):  # a user's own plugins (e.g. a CheckpointIO for object stores) win
        trainer_kwargs["plugins"] = [AtomicCheckpointIO()]
    try:
        trainer: pl.Trainer = instantiate(cfg.trainer, **trainer_kwargs)
    except InstantiationException as err:
        # Lightning checks its arguments itself (precision, accelerator, devices): its message is the line
        if isinstance(err.__cause__, (ValueError, MisconfigurationException, ModuleNotFoundError)):
            raise ConfigError(f"trainer: {err.__cause__}") from None
        raise
    configure_device(cfg, trainer.strategy.root_device)
    return datamodule, model, trainer


def chosen_precision(cfg: DictConfig) -> str:
    """``trainer.precision``, or ``bf16-mixed`` where ``bf16_where_native`` and the device has it in hardware."""
    precision = str(cfg.trainer.get("precision", "32-true"))
    if not cfg.get("bf16_where_native"):
        return precision
    accelerator = str(cfg.trainer.get("accelerator") or "auto")
    device = resolve_device(accelerator if accelerator in (*DEVICES, *ALIASES) else "auto",
                            "trainer.accelerator=")
    precision, fallback = precision_for(precision, True, device)
    if fallback:
        print(fallback, file=sys.stderr)
    return precision


def configure_device(cfg: DictConfig, device: torch.device) -> None:
    drop_failing_nvml_check()  # after Lightning's import, which sets the variable
    if device.type == "cuda":
        torch.set_float32_matmul_precision(cfg.get("float32_matmul_precision") or "highest")
