"""What a checkpoint holds, read without building a model: every tensor's shape, dtype, size and statistics
(non-finite values counted), the parameter count, the hyperparameters and the training state, as a report
and as tables."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from ..core.errors import ConfigError
from ..core.io import json_line
from ..models.checkpoint import METRIC_STATE, load_checkpoint

# Buffers that are state, not learned parameters.
_NOT_PARAMETERS = ("running_mean", "running_var", "num_batches_tracked", "n_averaged")


def _short_key(key: Any) -> str:
    """Lightning keys a callback's state by its class and settings (``ModelCheckpoint{'monitor': 'val/acc',
    ...}``): the class, and the monitored metric that tells two of a kind apart (``ModelCheckpoint(val/acc)``)."""
    name, brace, settings = str(key).partition("{")
    if not brace:
        return name
    monitor = re.search(r"'monitor': (?:'([^']*)'|None)", settings)
    return f"{name}({monitor.group(1) or 'none'})" if monitor else name


def walk_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts/lists, named by its dotted path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            key = _short_key(key)
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
        if key.startswith("ModelCheckpoint") and isinstance(value, dict) and value.get("monitor"):  # not last.ckpt's
            score = value.get("best_model_score")
            state["best_score"] = float(score) if isinstance(score, torch.Tensor) else score
            state["monitor"] = value.get("monitor")
            state["best_model_path"] = value.get("best_model_path")
        if key.startswith("EarlyStopping") and isinstance(value, dict):
            state["early_stopping_wait"] = value.get("wait_count")
    state["model_class"] = (checkpoint.get("mnistlab") or {}).get("module")
    return state


def is_weight(name: str) -> bool:
    """A tensor of the network (``state_dict.net...``), not a metric's state or a callback's bookkeeping."""
    return name.startswith("state_dict.") and not name.removeprefix("state_dict.").startswith(METRIC_STATE)


def shortened(tensor: torch.Tensor, edge: int = 3) -> str:
    """The values as numpy prints them, long dimensions cut to their first and last ``edge`` entries."""
    return np.array2string(tensor.detach().float().cpu().numpy(), threshold=200, edgeitems=edge, precision=4,
                           separator=", ", max_line_width=120)


def inspect_checkpoint(path: str, values: bool = False, tensor: str | None = None) -> dict[str, Any]:
    checkpoint = load_checkpoint(path)
    found = dict(walk_tensors(checkpoint))
    tensors = [tensor_summary(name, t, values) for name, t in found.items()]
    chosen = None
    if tensor is not None:
        if tensor not in found:
            close = difflib.get_close_matches(tensor, found, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else "; --json lists every name"
            raise ConfigError(f"--tensor {tensor}: {path} holds no such tensor{hint}")
        chosen = {**tensor_summary(tensor, found[tensor], False), "shortened": shortened(found[tensor])}
    return {
        "path": str(path),
        "parameters": parameter_count(checkpoint["state_dict"]),
        "state": training_state(checkpoint),
        "hyper_parameters": checkpoint.get("hyper_parameters"),
        "datamodule_hyper_parameters": checkpoint.get("datamodule_hyper_parameters"),
        "tensors": tensors,
        **({"tensor": chosen} if chosen is not None else {}),
    }


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def print_report(report: dict[str, Any], values: bool) -> None:
    console = Console(width=None if Console().is_terminal else 160)
    chosen = report.get("tensor")
    if chosen is not None:  # --tensor: that one alone
        console.print(f"{chosen['name']}: {'x'.join(map(str, chosen['shape'])) or 'scalar'} {chosen['dtype']}, "
                      + ", ".join(f"{k} {_fmt(chosen.get(k))}" for k in ("mean", "std", "min", "max")))
        sys.stdout.write(chosen["shortened"] + "\n")
        return
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
    # only the network's weights: Lightning stores inf on purpose (a checkpoint callback's worst kept score)
    broken = [row["name"] for row in report["tensors"] if row.get("non_finite") and is_weight(row["name"])]
    if broken:
        console.print(f"[bold red]{len(broken)} tensors hold NaN or infinite values[/] (a diverged run): "
                      + ", ".join(broken[:5]))
    state = report["state"]
    console.print("training state: " + ", ".join(f"{k}={_fmt(v)}" for k, v in state.items() if v is not None))
    console.print(f"hyperparameters: {json_line(report['hyper_parameters'])}")
    console.print(f"data: {json_line(report['datamodule_hyper_parameters'])}")
    if values:  # plain writes: rich would parse megabytes of numbers for markup (40 s for the Keras CNN)
        sys.stdout.writelines(f"{row['name']} = {row['values']}\n" for row in report["tensors"])
