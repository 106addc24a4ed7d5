"""One training job: fit, test the best checkpoint (or the final weights), write ``metrics.json``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from ..config.devices import machine
from ..config.rundir import refuse_to_overwrite
from ..core.errors import user_error
from ..core.io import write_json
from ..core.logs import record_in_run_log, silence_library_noise
from ..models.checkpoint import check_resumable, load_checkpoint
from . import preflight
from .build import build
from .callbacks import EMA, CudaGraphCapture, DeviceWarmup, EpochHistory, SpeedMonitor
from .loggers import LoggerRuns, continue_runs
from .preflight import check_buildable
from .reliability import InterruptCheckpoint, signal_exit_codes
from .resume import continue_job


class JobFailed(Exception):
    """A sweep job's failure, passed to a sweeper that records failures itself (Optuna's failed trials)."""



def logged_hparams(cfg: DictConfig, precision: str) -> dict[str, Any]:
    """The run's settings for the loggers' hyperparameter views; ``precision`` is what it trained in (what
    ``bf16_where_native`` chose), not what ``trainer.precision`` says."""
    keep = ("data", "augment", "model", "optimizer", "scheduler", "regularization")
    params: dict[str, Any] = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in keep if key in cfg}
    params["seed"] = cfg.seed
    params["trainer"] = {"max_epochs": cfg.trainer.get("max_epochs"), "precision": precision,
                         "gradient_clip_val": cfg.trainer.get("gradient_clip_val")}
    params["callbacks"] = HydraConfig.get().runtime.choices.get("callbacks") if HydraConfig.initialized() else None
    return params


def train(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Run one training job described by a composed config; returns the metrics written to metrics.json.
    ``extra_callbacks`` join the configured ones (the train command passes an Optuna trial's reporter)."""
    silence_library_noise()
    checked = preflight.passed()  # by the Hydra callback; a sweep's jobs and runs started from Python are not
    if not checked:
        check_buildable(cfg)
    run_dir = Path(cfg.trainer.default_root_dir)
    resume_from = start(cfg, run_dir)
    speed = SpeedMonitor()
    history = EpochHistory(speed)
    datamodule, model, trainer = build(cfg, extra_callbacks=[speed, history, LoggerRuns(), *extra_callbacks])
    if resume_from is not None and not checked:
        check_resumable(resume_from, model, cfg.ckpt_path)
    with signal_exit_codes(trainer):  # 130 for Ctrl+C, 143 for SIGTERM, in every phase
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    # read now: testing a checkpoint restores callback states, the timer's and early stopping's included
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    record = fit_record(trainer, datamodule, speed, history)
    best = checkpoint_to_test(trainer, cfg)
    with signal_exit_codes(trainer):
        test_results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics = run_metrics(cfg, trainer, model, {**logged, **(test_results[0] if test_results else {})}, record,
                          best)
    if trainer.is_global_zero:
        finish(run_dir, trainer, cfg, metrics)
    return metrics


def start(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Refuse to overwrite another run, continue a resumed one's logger runs, seed everything. Returns the
    checkpoint a resume continues."""
    ckpt_path = cfg.get("ckpt_path")
    refuse_to_overwrite(run_dir, ckpt_path)
    resume_from = load_checkpoint(ckpt_path) if ckpt_path else None  # weights_only: never runs pickled code
    if resume_from is not None:
        continue_runs(cfg, resume_from)  # the MLflow and W&B runs it logged to
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    return resume_from


def fit_record(trainer, datamodule, speed: SpeedMonitor, history: EpochHistory) -> dict[str, Any]:
    """How the fit went: passes over the data, steps, time, speed, learning curve."""
    warmups = [c for c in trainer.callbacks if isinstance(c, (DeviceWarmup, CudaGraphCapture))]
    return {
        # passes over the training set: fractional when max_steps stops a run mid-epoch
        "epochs": round(speed.train_images / len(datamodule.train_set[1]), 2),
        "global_step": trainer.global_step,
        "fit_seconds": round(speed.fit_seconds, 3),
        "warmup_seconds": round(sum(c.seconds for c in warmups), 3),  # start-up, CUDA graph capture included
        "train_images_per_second": round(speed.images_per_second, 1),
        "stopped_early": bool(getattr(trainer.early_stopping_callback, "stopped_epoch", 0)),
        "history": list(history.rows),  # the learning curve: one row per validation
    }


def checkpoint_to_test(trainer, cfg: DictConfig) -> str:
    """The best checkpoint (``test_best``), or "" for the final weights."""
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and cfg.get("test_best", True) else ""
    if best and not Path(best).is_file():  # deleted since (a resumed run remembers it)
        print(f"warning: the best checkpoint {best} is gone; testing the final weights", file=sys.stderr)
        best = ""
    return best


def run_metrics(cfg: DictConfig, trainer, model, logged: dict[str, float], record: dict[str, Any], best: str):
    """metrics.json: what the fit and the test logged, how the fit went, what was tested, what it ran on."""
    curve = record.pop("history")
    metrics: dict[str, Any] = {**logged, **restored_validation(logged, model, curve), **record}
    metrics.update(
        best_checkpoint=best or None,
        # what the test saw: with EMA the checkpoints and the final weights hold the average
        tested_weights=("EMA average, " if any(isinstance(c, EMA) for c in trainer.callbacks) else "")
        + ("best checkpoint" if best else "final weights"),
        parameters=sum(p.numel() for p in model.net.parameters()),
        precision=str(trainer.precision),  # what bf16_where_native chose, where it is set
        seed=cfg.seed,
        dataset=cfg.data.dataset,
        machine=machine(),
        torch=torch.__version__,
        history=curve,
    )
    return metrics


def finish(run_dir: Path, trainer, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "metrics.json", metrics)
    # the run has ended whole: an interrupt's checkpoint from before would resume an older state
    (run_dir / "checkpoints" / f"{InterruptCheckpoint.FILENAME}.ckpt").unlink(missing_ok=True)
    close_loggers(trainer, cfg, metrics)


def restored_validation(metrics: dict[str, Any], model, curve: list[dict]) -> dict[str, float]:
    """What a resume with nothing left to train (interrupted while testing) did not log again: the run's
    best and last validation, which its checkpoint restored into the model and the learning curve."""
    restored = {}
    best_val = float(model.val_acc_best.max_value)  # its state: compute() warns before any update
    if "val/acc_best" not in metrics and best_val > float("-inf"):
        restored["val/acc_best"] = best_val
    for key in EpochHistory.KEYS:
        if key not in metrics and curve and key in curve[-1]:
            restored[key] = curve[-1][key]
    return restored


def close_loggers(trainer, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """Every logger gets the run's hyperparameters and final numbers, then is closed."""
    final = {f"hp/{k.replace('/', '_')}": metrics[k] for k in ("test/acc", "test/loss", "val/acc_best") if k in metrics}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # its hparams tab pairs the two; no other logger's signature
            logger.log_hyperparams(logged_hparams(cfg, metrics["precision"]), metrics=final)
        else:
            logger.log_hyperparams(logged_hparams(cfg, metrics["precision"]))
            logger.log_metrics(final, step=trainer.global_step)
        logger.finalize("success")
        if isinstance(logger, WandbLogger):  # its run is written out when it ends, else only at exit
            logger.experiment.finish()


def sweep_job(run, cfg: DictConfig) -> float:
    """``run(cfg)`` as one job of a sweep: a failing job is a row with its error, never the end of the sweep."""
    run_dir = Path(cfg.trainer.default_root_dir)
    records_failures = "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()
    if not records_failures:  # a grid sweep run again after a kill; Optuna studies resume by their storage
        done = continue_job(cfg, run_dir)
        if done is not None:
            value = done.get(cfg.get("optimized_metric") or "")
            print(f"job {run_dir.name}: finished before (test accuracy {done['test/acc']:.4f}); kept")
            return float(value) if value is not None else float("nan")
        if cfg.get("ckpt_path"):
            print(f"job {run_dir.name}: resuming from {cfg.ckpt_path}")
    try:
        return run(cfg)
    except (Exception, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code in (130, 143):  # a signal ends the sweep, not just the job
            raise
        optuna = sys.modules.get("optuna")  # imported by the sweep that prunes; absent in any other run
        pruned = optuna is not None and isinstance(err, optuna.TrialPruned)
        cause = user_error(err)
        message = str(err) if pruned else str(cause) if cause is not None else f"{type(err).__name__}: {err}"
        status = "pruned" if pruned else "failed"
        print(f"{'' if pruned else 'error: '}job {run_dir.name} {status}: {message}", file=sys.stderr)
        record_in_run_log(f"job {run_dir.name} {status}: {message}")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "metrics.json", {"status": status, "error": message})
        if pruned:
            raise
        if records_failures:  # the Optuna sweeper records a raising job as a failed trial
            raise JobFailed(message) from err
        return float("nan")  # the basic sweeper would stop at a raising job
