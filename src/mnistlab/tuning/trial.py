"""The job's side of a trial: report the monitored metric each epoch, stop when the pruner says so.

The sweeper tells each job which trial it is through environment variables (``hydra.job.env_set``), which
every launcher passes on, to a process of its own or not.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pytorch_lightning as pl

from ..core.errors import ConfigError
from .storage import MONITOR_VAR, STORAGE_VAR, STUDY_VAR, TRIAL_VAR, live_studies, open_storage


def reporting_callbacks() -> list[pl.Callback]:
    """``[TrialReporter]`` when this job is an Optuna trial, else nothing."""
    if not os.environ.get(TRIAL_VAR):
        return []
    import optuna

    name, storage = os.environ[STUDY_VAR], os.environ.get(STORAGE_VAR) or None
    study = live_studies.get(name) if storage is None else optuna.load_study(study_name=name,
                                                                             storage=open_storage(storage))
    if study is None:
        raise ConfigError(f"trial of the in-memory study {name} started in another process; give the sweep a "
                          "storage (hydra.sweeper.storage=sqlite:///study.db) to run its jobs in other processes")
    return [TrialReporter(optuna.trial.Trial(study, int(os.environ[TRIAL_VAR])), os.environ[MONITOR_VAR])]


class TrialReporter(pl.Callback):
    """Reports ``monitor`` to the trial after each validation; raises ``optuna.TrialPruned`` when the
    study's pruner stops it (optuna-integration's callback needs the ``lightning`` package; mnistlab runs on
    ``pytorch_lightning``, and their callback classes are not interchangeable)."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.monitor not in trainer.callback_metrics:
            raise ConfigError(f"hydra.sweeper.monitor={self.monitor}: validation logs no such metric "
                              f"(it logs {', '.join(sorted(trainer.callback_metrics))})")
        value = float(trainer.callback_metrics[self.monitor])
        epoch = trainer.current_epoch
        prune = False
        if trainer.is_global_zero and math.isfinite(value):
            self.trial.report(value, step=epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune):  # every DDP rank stops together
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {self.monitor}={value:.4f}")
