"""Multirun bookkeeping: one row per job in ``summary.csv`` / ``summary.md`` at the sweep dir's root, and the
best job as a command to rerun (``best_params.yaml``)."""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from ..core.io import write_text
from ..perf.progress import clock

COLUMNS = ("job", "params", "status", "test/acc", "val/acc_best", "epochs", "fit_seconds", "error")


def job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()),
                      key=lambda p: (len(p.name), p.name)):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        metrics_file = job / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        status = metrics.get("status", "ok" if metrics else "no result")
        rows.append({
            "job": job.name,
            "overrides": overrides,
            "status": status,
            "test/acc": metrics.get("test/acc"),
            "val/acc_best": metrics.get("val/acc_best"),
            "epochs": metrics.get("epochs"),
            "fit_seconds": metrics.get("fit_seconds"),
            "error": metrics.get("error", "" if metrics else "the job left no metrics.json (killed?)"),
        })
    return rows


def swept_params(rows: list[dict[str, Any]]) -> None:
    """``params``: the overrides that differ between jobs (what the sweep varied)."""
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if rows else set()
    for row in rows:
        row["params"] = " ".join(o for o in row["overrides"] if o not in common)
        row["overrides"] = " ".join(row["overrides"])


def rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Best first by ``metric``; failed jobs last."""
    def key(row):
        value = row.get(metric)
        good = isinstance(value, (int, float)) and not math.isnan(value)
        return (0, -value) if good else (1, 0)

    return sorted(rows, key=key)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


def write_summary(sweep_dir: Path, metric: str = "val/acc_best") -> list[dict[str, Any]]:
    rows = job_rows(sweep_dir)
    swept_params(rows)
    rows = rank(rows, metric)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=(*COLUMNS, "overrides"))
    writer.writeheader()
    writer.writerows(rows)
    write_text(sweep_dir / "summary.csv", table.getvalue())
    lines = [f"| {' | '.join(COLUMNS)} |", f"|{'---|' * len(COLUMNS)}"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|") for c in COLUMNS) + " |")
    write_text(sweep_dir / "summary.md", f"Sweep {sweep_dir}, ranked by {metric}\n\n" + "\n".join(lines) + "\n")
    best = next((r for r in rows if r["status"] == "ok"), None)
    if best is not None:
        write_text(sweep_dir / "best_params.yaml", yaml.safe_dump(best_params(sweep_dir / best["job"], best, metric),
                                                                  sort_keys=False, width=1000))
    return rows


def best_params(job: Path, row: dict[str, Any], metric: str) -> dict[str, Any]:
    """The best job's every parameter, and the overrides that rerun it as a plain ``python -m mnistlab.train``."""
    overrides = [o for o in row["overrides"].split() if not o.startswith("hparams_search=")]
    params = {}
    for override in overrides:
        key, _, value = override.partition("=")
        params[key.lstrip("+~")] = yaml.safe_load(value) if value else None
    rerun = rerun_overrides(job)
    return {"metric": metric, "value": row.get(metric), "job": row["job"], "params": params, "overrides": rerun,
            "command": " ".join(["python -m mnistlab.train", *map(shlex.quote, rerun)])}


def rerun_overrides(job: Path) -> list[str]:
    """The overrides under which ``python -m mnistlab.train`` composes exactly ``job``'s config: its config
    group choices that differ from the defaults, then every value the search config or the sweep changed."""
    from ..config.compose import compose
    from ..config.overrides import overrides_between

    hydra_cfg = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra
    defaults = compose([]).hydra.runtime.choices
    choices = [f"{group}={choice}" for group, choice in hydra_cfg.runtime.choices.items()
               if not group.startswith("hydra/") and group != "hparams_search" and choice is not None
               and defaults.get(group) != choice]
    base = compose(choices)
    with open_dict(base):
        del base["hydra"]
    return [*choices, *overrides_between(base, OmegaConf.load(job / ".hydra" / "config.yaml"))]


def print_summary(rows: list[dict[str, Any]], sweep_dir: Path, metric: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep {sweep_dir} (best {metric} first)")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_fmt(row[c]) for c in COLUMNS))
    Console(width=160).print(table)


def planned_jobs(config: DictConfig) -> int | None:
    """How many jobs Hydra's basic sweeper will run (the product of the swept values); None for a sweeper
    that decides as it goes (Optuna's reports its own progress)."""
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    counts = {o.get_key_element(): len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1
              for o in OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])}
    return math.prod(counts.values())


class SweepSummary(Callback):
    """Hydra callback: each job of a basic sweep says which of how many it is and when it starts; when a
    multirun ends, every job (failed ones included) is tabulated."""

    def __init__(self) -> None:
        self.started, self.total = time.monotonic(), None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started, self.total = time.monotonic(), planned_jobs(config)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        if self.total is None or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        job = HydraConfig.get()
        print(f"[sweep] job {job.job.num + 1} of {self.total} at {clock(time.monotonic() - self.started)}: "
              f"{' '.join(job.overrides.task)}", file=sys.stderr, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        metric = config.get("optimized_metric") or "val/acc_best"
        rows = write_summary(sweep_dir, metric)
        print_summary(rows, sweep_dir, metric)
