"""What a checkpoint holds, read without building a model: every tensor's shape, dtype, size and statistics
(non-finite values counted), the parameter count, the hyperparameters and the training state, as a report
and as tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from ..io import json_line
from .checkpoints import METRIC_STATE, load_checkpoint

# Buffers that are state, not learned parameters.
_NOT_PARAMETERS = ("running_mean", "running_var", "num_batches_tracked", "n_averaged")


def walk_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts/lists, named by its dotted path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            key = str(key).split("{", 1)[0]  # Lightning keys callbacks by class name + their settings
            yield from walk_tensors(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from walk_tensors(value, f"{prefix}.{i}" if prefix else str(i))


def tensor_summary(name: str, tensor: torch.Tensor, values: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", ""),
                           "numel": tensor.numel()}
    if tensor.numel() and (tensor.is_floating_point() or not tensor.dtype.is_complex):
        data = tensor.detach().double()
        row.update(mean=data.mean().item(), std=data.std().item() if data.numel() > 1 else 0.0,
                   min=data.min().item(), max=data.max().item(), non_finite=int((~torch.isfinite(data)).sum()))
    if values:
        row["values"] = tensor.tolist()
    return row


def parameter_count(state_dict: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() for name, t in state_dict.items()
               if t.is_floating_point() and not name.endswith(_NOT_PARAMETERS) and not name.startswith(METRIC_STATE))


def training_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {k: checkpoint.get(k) for k in ("epoch", "global_step", "pytorch-lightning_version")}
    for key, value in (checkpoint.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and isinstance(value, dict):
            score = value.get("best_model_score")
            state["best_score"] = float(score) if isinstance(score, torch.Tensor) else score
            state["monitor"] = value.get("monitor")
            state["best_model_path"] = value.get("best_model_path")
        if key.startswith("EarlyStopping") and isinstance(value, dict):
            state["early_stopping_wait"] = value.get("wait_count")
    state["model_class"] = (checkpoint.get("mnistlab") or {}).get("module")
    return state


def inspect_checkpoint(path: str, values: bool = False) -> dict[str, Any]:
    checkpoint = load_checkpoint(path)
    tensors = [tensor_summary(name, t, values) for name, t in walk_tensors(checkpoint)]
    return {
        "path": str(path),
        "parameters": parameter_count(checkpoint["state_dict"]),
        "state": training_state(checkpoint),
        "hyper_parameters": checkpoint.get("hyper_parameters"),
        "datamodule_hyper_parameters": checkpoint.get("datamodule_hyper_parameters"),
        "tensors": tensors,
    }


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def print_report(report: dict[str, Any], values: bool) -> None:
    console = Console(width=None if Console().is_terminal else 160)
    model_rows = [r for r in report["tensors"] if r["name"].startswith("state_dict.")]
    other_rows = [r for r in report["tensors"] if not r["name"].startswith("state_dict.")]
    sections = [(f"{report['path']}: model weights, {report['parameters']:,} parameters", model_rows),
                ("other stored tensors (optimizer, callbacks, loops)", other_rows)]
    for title, rows in sections:
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for column in ("tensor", "shape", "dtype", "numel", "mean", "std", "min", "max"):
            table.add_column(column, justify="left" if column in ("tensor", "dtype") else "right")
        for row in rows:
            table.add_row(row["name"], "x".join(map(str, row["shape"])) or "scalar", row["dtype"], f"{row['numel']:,}",
                          *(_fmt(row.get(k)) for k in ("mean", "std", "min", "max")))
        console.print(table)
    broken = [row["name"] for row in report["tensors"] if row.get("non_finite")]
    if broken:
        console.print(f"[bold red]{len(broken)} tensors hold NaN or infinite values[/] (a diverged run): "
                      + ", ".join(broken[:5]))
    state = report["state"]
    console.print("training state: " + ", ".join(f"{k}={_fmt(v)}" for k, v in state.items() if v is not None))
    console.print(f"hyperparameters: {json_line(report['hyper_parameters'])}")
    console.print(f"data: {json_line(report['datamodule_hyper_parameters'])}")
    if values:  # plain writes: rich would parse megabytes of numbers for markup (40 s for the Keras CNN)
        sys.stdout.writelines(f"{row['name']} = {row['values']}\n" for row in report["tensors"])
