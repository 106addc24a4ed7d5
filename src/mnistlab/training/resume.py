"""Before a resume writes anything: the command's config against the run's, the checkpoint against the model
this config builds, and a finished run answered in one line instead of being trained and tested again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..config.resume import check_changes, record_of
from ..models.checkpoint import check_resumable, load_checkpoint
from .reliability import InterruptCheckpoint


class AlreadyFinished(Exception):
    """The run this resume names has trained to its end and been tested: there is nothing to do."""


def fit_progress(checkpoint: dict[str, Any]) -> tuple[int, int, bool]:
    """``(epochs completed, optimizer steps, stopped by early stopping)`` as the checkpoint records them."""
    loops = (checkpoint.get("loops") or {}).get("fit_loop", {})
    epochs = int(loops.get("epoch_progress", {}).get("current", {}).get("processed", 0))  # "completed" lags one
    stopped = any(key.startswith("EarlyStopping") and int((state or {}).get("stopped_epoch") or 0) > 0
                  for key, state in (checkpoint.get("callbacks") or {}).items())
    return epochs, int(checkpoint.get("global_step", 0)), stopped


def finished(checkpoint: dict[str, Any], config: DictConfig) -> str | None:
    """Why the run is over at this checkpoint under this config, or None while it has training left."""
    epochs, steps, stopped = fit_progress(checkpoint)
    max_epochs, max_steps = config.trainer.get("max_epochs"), config.trainer.get("max_steps") or -1
    if stopped:
        return f"early stopping ended it after epoch {epochs}"
    if max_steps > 0 and steps >= max_steps:
        return f"it reached trainer.max_steps={max_steps}"
    if max_epochs is not None and max_epochs >= 0 and epochs >= max_epochs:
        return f"it trained its trainer.max_epochs={max_epochs} epochs"
    return None


def check_resume(config: DictConfig, model) -> None:
    """A resume (``ckpt_path``) of a recorded run: the changes its command makes are applied or refused
    (``config.resume``); the checkpoint must hold this config's model; a run that has finished training
    and was tested raises ``AlreadyFinished`` with the line to say."""
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path:
        return
    record = record_of(ckpt_path)
    if record is not None:
        check_changes(config, ckpt_path, record)
    checkpoint = load_checkpoint(ckpt_path)
    check_resumable(checkpoint, model, ckpt_path)
    reason = finished(checkpoint, config)
    metrics_file = Path(config.hydra.run.dir) / "metrics.json"
    if reason is None or not metrics_file.is_file():
        return
    metrics = json.loads(metrics_file.read_text())
    if metrics.get("test/acc") is None or metrics.get("global_step") != checkpoint.get("global_step"):
        return  # never tested at this checkpoint's step (killed in the test, or trained on since): test it now
    raise AlreadyFinished(f"{config.hydra.run.dir}: already finished ({reason}; test accuracy "
                          f"{metrics['test/acc']:.4f}, metrics.json unchanged); raise trainer.max_epochs "
                          "to train it further")


# What a killed attempt at a sweep job leaves beside its .hydra/ and log: started again from scratch, the job
# must not find them (two TensorBoard event files, an old CSV, a failed attempt's metrics.json).
ATTEMPT_FILES = ("tensorboard", "csv", "wandb", "mlflow.db", "metrics.json")


def continue_job(cfg: DictConfig, job_dir: Path) -> dict[str, Any] | None:
    """A job of a sweep run again into its folder: its metrics when it had finished (kept, not rerun);
    otherwise ``cfg.ckpt_path`` is set to resume its newest checkpoint, or, without one, the killed or
    failed attempt's files are cleared so that it starts again."""
    import shutil

    from omegaconf import open_dict, read_write

    metrics_file = job_dir / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        if metrics.get("status") is None and metrics.get("test/acc") is not None:
            return metrics
    folder = job_dir / "checkpoints"
    saved = [p for p in (folder / f"{InterruptCheckpoint.FILENAME}.ckpt", folder / "last.ckpt") if p.is_file()]
    if saved:
        metrics_file.unlink(missing_ok=True)
        with read_write(cfg), open_dict(cfg):
            cfg.ckpt_path = str(max(saved, key=lambda p: p.stat().st_mtime))
        return None
    for name in ATTEMPT_FILES:
        path = job_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return None
