"""Loggers that continue a resumed run's records instead of starting them again."""

from __future__ import annotations

import csv
from argparse import Namespace
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, open_dict
from pytorch_lightning import Callback
from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning's writer deletes the metrics.csv it finds; this one continues it under the same columns.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(next(csv.reader(file), []))


class AppendingCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` whose ``metrics.csv`` survives a resume: the resumed run's rows follow the
    rows it logged before."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class ContinuingMLFlowLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` that can log to a run again (``run_id``, a resume): MLflow refuses to change
    a parameter once logged, so a value that a resume changed (``resume_changes=apply``, a longer
    ``trainer.max_epochs``) is recorded as the tag ``resumed.<param>``; new parameters are logged as usual."""

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        logged = self.experiment.get_run(self.run_id).data.params
        flat = {k: str(v)[:250] for k, v in _flatten_dict(_convert_params(params)).items()}  # as Lightning logs
        super().log_hyperparams({k: v for k, v in flat.items() if k not in logged})
        for key, value in flat.items():
            if key in logged and logged[key] != value:
                self.experiment.set_tag(self.run_id, f"resumed.{key}", value)


class LoggerRuns(Callback):
    """Keeps the MLflow run and the W&B run a fit logs to in its checkpoints, so that a resume logs to the
    same runs (``continue_runs``) instead of opening new ones. TensorBoard and CSV continue by folder."""


    def __init__(self) -> None:
        self.runs: dict[str, Any] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                self.runs["mlflow"] = {"run_id": logger.run_id, "tracking_uri": logger._tracking_uri}
            elif isinstance(logger, WandbLogger):
                self.runs["wandb"] = {"id": logger.version}

    def state_dict(self) -> dict[str, Any]:
        return {"runs": self.runs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.runs = dict(state_dict.get("runs") or {})


def continue_runs(cfg: DictConfig, checkpoint: dict[str, Any]) -> None:
    """Point the configured MLflow and W&B loggers at the runs the checkpoint's fit logged to."""
    runs = ((checkpoint.get("callbacks") or {}).get(LoggerRuns.__qualname__) or {}).get("runs") or {}
    with open_dict(cfg):
        for node in (cfg.get("logger") or {}).values():
            target = str((node or {}).get("_target_", ""))
            mlflow, wandb = runs.get("mlflow"), runs.get("wandb")
            if target.endswith("MLFlowLogger") and mlflow and node.get("tracking_uri") == mlflow["tracking_uri"]:
                node.run_id = mlflow["run_id"]
            elif target.endswith("WandbLogger") and wandb and wandb.get("id"):
                node.id, node.resume = wandb["id"], "allow"
