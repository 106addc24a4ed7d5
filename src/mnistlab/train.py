"""``python -m mnistlab.train [overrides]``: fit, test the best checkpoint, write metrics.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ModelSummary, ProgressBar
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException
from rich.console import Console
from rich.table import Table

from .callbacks import DeviceWarmup, SpeedMonitor
from .checkpoints import load_checkpoint
from .config import CONFIG_DIR, check_config, preflight_overrides, refuse_to_overwrite
from .env import drop_failing_nvml_check, machine
from .errors import ConfigError, report_errors, silence_library_noise, user_error
from .reliability import check_resumable


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a reader (or a kill) never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _instantiate_dict(section: DictConfig | None) -> list[Any]:
    return [instantiate(item) for item in (section or {}).values() if item is not None and "_target_" in item]


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    keep = ("data", "augment", "model", "optimizer", "scheduler", "regularization")
    params: dict[str, Any] = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in keep if key in cfg}
    params["seed"] = cfg.seed
    params["trainer"] = {k: cfg.trainer.get(k) for k in ("max_epochs", "precision", "gradient_clip_val")}
    params["callbacks"] = HydraConfig.get().runtime.choices.get("callbacks") if HydraConfig.initialized() else None
    return params


def build_datamodule(cfg: DictConfig):
    return instantiate(cfg.data, augment=OmegaConf.to_container(cfg.augment, resolve=True), _recursive_=False)


def build_model(cfg: DictConfig):
    return instantiate(cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler,
                       regularization=cfg.regularization, _recursive_=False)


# Lightning adds its own progress bar (refreshed every step), model summary (a forward pass and a table,
# inside the fit) and checkpoint callback when none of the kind is configured.
_LIGHTNING_DEFAULTS = {"enable_progress_bar": ProgressBar, "enable_model_summary": ModelSummary,
                       "enable_checkpointing": ModelCheckpoint}


def switched_off_defaults(callbacks: list, trainer_cfg: DictConfig) -> dict[str, bool]:
    """Trainer flags that keep ``callbacks.<name>=null`` off instead of swapping in Lightning's default."""
    return {flag: False for flag, kind in _LIGHTNING_DEFAULTS.items()
            if trainer_cfg.get(flag) is None and not any(isinstance(c, kind) for c in callbacks)}


def build(cfg: DictConfig, extra_callbacks: list | None = None, **trainer_overrides):
    """The DataModule, LightningModule and Trainer a composed config describes."""
    # the model first: a network's own checks fail before the Trainer prints or creates anything
    datamodule, model = build_datamodule(cfg), build_model(cfg)
    # extra callbacks (timers) first: their epoch-end hooks run before the configured callbacks' work
    callbacks = [*(extra_callbacks or []), *_instantiate_dict(cfg.get("callbacks"))]
    loggers = _instantiate_dict(cfg.get("logger"))
    trainer_kwargs = {"callbacks": callbacks, "logger": loggers or False,
                      **switched_off_defaults(callbacks, cfg.trainer), **trainer_overrides}
    try:
        trainer: pl.Trainer = instantiate(cfg.trainer, **trainer_kwargs)
    except InstantiationException as err:
        # Lightning checks its arguments itself (precision, accelerator, devices): its message is the line
        if isinstance(err.__cause__, (ValueError, MisconfigurationException, ModuleNotFoundError)):
            raise ConfigError(f"trainer: {err.__cause__}") from None
        raise
    configure_device(cfg, trainer.strategy.root_device)
    return datamodule, model, trainer


def configure_device(cfg: DictConfig, device: torch.device) -> None:
    drop_failing_nvml_check()  # after Lightning's import, which sets the variable
    if device.type == "cuda":
        torch.set_float32_matmul_precision(cfg.get("float32_matmul_precision") or "highest")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job described by a composed config; returns the metrics written to metrics.json."""
    silence_library_noise()
    check_config(cfg)
    run_dir = Path(cfg.trainer.default_root_dir)
    ckpt_path = cfg.get("ckpt_path")
    refuse_to_overwrite(run_dir, ckpt_path)
    resume_from = load_checkpoint(ckpt_path) if ckpt_path else None  # weights_only: never runs pickled code
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    speed = SpeedMonitor()
    datamodule, model, trainer = build(cfg, extra_callbacks=[speed])

    if resume_from is not None:
        check_resumable(resume_from, model, ckpt_path)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        raise SystemExit(143) from None  # 128 + SIGTERM, as if the signal had ended the process
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # read now: testing a checkpoint restores callback states, the timer's included
    fit_seconds, images_per_second = speed.fit_seconds, speed.images_per_second
    # passes over the training set: fractional when max_steps stops a run mid-epoch
    epochs = round(speed.train_images / len(datamodule.train_set[1]), 2)
    warmup = next((c for c in trainer.callbacks if isinstance(c, DeviceWarmup)), None)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and cfg.get("test_best", True) else ""
    test_results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)

    metrics: dict[str, Any] = {**fit_metrics, **(test_results[0] if test_results else {})}
    metrics.update(
        epochs=epochs,
        global_step=trainer.global_step,
        fit_seconds=round(fit_seconds, 3),
        warmup_seconds=round(warmup.seconds, 3) if warmup is not None else 0.0,
        train_images_per_second=round(images_per_second, 1),
        best_checkpoint=best or None,
        parameters=sum(p.numel() for p in model.net.parameters()),
        stopped_early=bool(getattr(trainer.early_stopping_callback, "stopped_epoch", 0)),
        seed=cfg.seed,
        machine=machine(),
        torch=torch.__version__,
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "metrics.json", metrics)
        for logger in trainer.loggers:
            final = {f"hp/{k.replace('/', '_')}": metrics[k] for k in ("test/acc", "test/loss", "val/acc_best")
                     if k in metrics}
            logger.log_hyperparams(_hparams(cfg), metrics=final)
            logger.finalize("success")
    return metrics


def print_summary(metrics: dict[str, Any], run_dir: Path) -> None:
    table = Table(title="mnistlab run", show_header=False)
    rows = [
        ("run dir", str(run_dir)),
        ("test accuracy", f"{metrics.get('test/acc', float('nan')):.4f}"),
        ("test loss", f"{metrics.get('test/loss', float('nan')):.4f}"),
        ("best val accuracy", f"{metrics.get('val/acc_best', float('nan')):.4f}"),
        ("epochs", str(metrics.get("epochs"))),
        ("fit seconds", f"{metrics.get('fit_seconds', 0):.1f}"),
        ("training images/s", f"{metrics.get('train_images_per_second', 0):,.0f}"),
        ("tested", metrics.get("best_checkpoint") or "final weights"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_sweep_job(cfg: DictConfig) -> float:
    """In a sweep a failing job is a row with its error, never the end of the sweep."""
    run_dir = Path(cfg.trainer.default_root_dir)
    try:
        return run(cfg)
    except (Exception, SystemExit) as err:
        cause = user_error(err)
        message = str(cause) if cause is not None else f"{type(err).__name__}: {err}"
        if isinstance(err, SystemExit) and err.code == 143:
            raise
        print(f"error: job {run_dir.name} failed: {message}", file=sys.stderr)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "metrics.json", {"status": "failed", "error": message})
        if "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")):
            raise  # the Optuna sweeper records a raising job as a failed trial (max_failure_rate permitting)
        return float("nan")  # the basic sweeper would stop at a raising job


def run(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    if rank_zero_only.rank == 0:
        print_summary(metrics, Path(cfg.trainer.default_root_dir))
    value = metrics.get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    if in_multirun():
        return run_sweep_job(cfg)
    return report_errors(run)(cfg)


if __name__ == "__main__":
    preflight_overrides(sys.argv[1:])
    main()
