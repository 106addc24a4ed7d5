"""``python -m mnistlab.train [overrides]``: fit, test the best checkpoint, write metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .cli import hydra_command
from .config.resume import replay_overrides


def print_summary(metrics: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mnistlab run", show_header=False)
    best_val = metrics.get("val/acc_best")
    ended = "early stopping" if metrics.get("stopped_early") else "its last epoch or step"
    rows = [
        ("run dir", str(run_dir)),
        ("test accuracy", f"{metrics.get('test/acc', float('nan')):.4f}"),
        ("test loss", f"{metrics.get('test/loss', float('nan')):.4f}"),
        *([("other writers' digits", f"{metrics['test/uci_acc']:.4f} (UCI, through predict's preprocessing)")]
          if metrics.get("test/uci_acc") is not None else []),
        ("best val accuracy", f"{best_val:.4f}" if best_val is not None else "none (this run validates nothing)"),
        # an epoch is one pass over the training images: a fraction when max_steps ends the run mid-epoch
        ("training", f"{metrics.get('global_step')} steps, {metrics.get('epochs')} passes over the data; "
                     f"ended by {ended}"),
        ("fit seconds", f"{metrics.get('fit_seconds', 0):.1f}"),
        ("training images/s", f"{metrics.get('train_images_per_second', 0):,.0f}"),
        ("tested", f"{metrics.get('tested_weights', 'weights')}: {metrics.get('best_checkpoint') or 'end of the fit'}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def run(cfg: DictConfig) -> float | None:
    """One run: train, print the summary, return the metric a sweeper optimizes."""
    from pytorch_lightning.utilities import rank_zero_only

    from .training.fit import train  # torch and Lightning load only to run (--help stays fast)
    from .tuning.trial import reporting_callbacks

    metrics = train(cfg, extra_callbacks=reporting_callbacks())  # Optuna's reporter when this job is a trial
    if rank_zero_only.rank == 0:
        print_summary(metrics, Path(cfg.trainer.default_root_dir))
    value = metrics.get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


def sweep_job(cfg: DictConfig) -> float:
    from .training.fit import sweep_job

    return sweep_job(run, cfg)


main = hydra_command("train", run, multirun=sweep_job, prepare_argv=replay_overrides)

if __name__ == "__main__":
    main()
