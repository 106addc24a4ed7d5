"""Resuming from ``ckpt_path`` alone: the run's own config replayed, the command line's changes applied where
they may change mid-run and refused out loud everywhere else."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from ..core.errors import ConfigError
from .overrides import ABSENT, added_off, differences, override_value

# Settings that may change mid-run without making it another run: how long it goes, how much of each split
# it reads, where and how it logs, on which devices, where the data lives, what is tested at the end.
# A key matches itself and everything below it; a name ending in "_" matches every key it starts.
MAY_CHANGE = (
    "trainer.max_epochs", "trainer.max_steps", "trainer.max_time", "trainer.min_epochs", "trainer.min_steps",
    "trainer.limit_", "trainer.val_check_interval", "trainer.check_val_every_n_epoch",
    "trainer.num_sanity_val_steps", "trainer.log_every_n_steps", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
    "trainer.strategy", "trainer.profiler", "trainer.fast_dev_run",
    "logger", "callbacks.progress_bar", "callbacks.model_summary", "callbacks.tensorboard_visuals",
    "callbacks.lr_monitor", "callbacks.cross_writer", "data.data_dir", "data.download", "data.num_workers",
    "data.eval_batch_size",
    "ckpt_path", "resume_changes", "test_best", "optimized_metric", "device", "transfer.ckpt_path",
    "callbacks.gradient_norms",
)
# What one resume's command says for itself only: never replayed into the next one.
NOT_REPLAYED = ("ckpt_path", "resume_changes")
RESUME_CHANGES = ("refuse", "apply")


def may_change(key: str) -> bool:
    return any(key == name or key.startswith(name if name.endswith("_") else f"{name}.") for name in MAY_CHANGE)


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def override_path(override: str) -> str | None:
    """The string value of a ``key=value`` override as Hydra reads it (quotes undone)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        value = OverridesParser.create().parse_override(override).value()
    except HydraException:  # Hydra's own parse reports the bad override, in its words, a moment later
        return None
    return value if isinstance(value, str) else None


def run_of(ckpt_path: str | Path) -> Path:
    """``<run>`` for ``<run>/checkpoints/x.ckpt``."""
    return Path(ckpt_path).expanduser().absolute().parent.parent


def record_of(ckpt_path: str | Path) -> Path | None:
    """The ``.hydra`` folder of the start that wrote ``<run>/checkpoints/x.ckpt``: ``.hydra/`` itself or a
    ``resume_<time>/`` (a resume records its whole config there, the replayed overrides included), the
    newest one begun before the checkpoint was written; a start that failed before saving one is passed
    over. Without such an order (a copy with fresh file times) the newest. None for a checkpoint outside a
    recorded run's ``checkpoints/``."""
    ckpt = Path(ckpt_path).expanduser().absolute()
    if ckpt.parent.name != "checkpoints":
        return None
    base = run_of(ckpt) / ".hydra"
    records = [r for r in (base, *sorted(base.glob("resume_*")))
               if (r / "overrides.yaml").is_file() and (r / "config.yaml").is_file()]
    if not records:
        return None
    written = ckpt.stat().st_mtime if ckpt.is_file() else float("inf")
    before = [r for r in records if (r / "config.yaml").stat().st_mtime <= written]
    return (before or records)[-1]


def replay_overrides(argv: Sequence[str]) -> list[str]:
    """The command line a resume runs with: the run's own overrides, then this command's, which win.

    ``ckpt_path=<run>/checkpoints/last.ckpt`` alone then composes the config the run was trained with,
    whatever recipe and overrides it was started with. A sweep (``-m``) is left as it is.
    """
    argv = list(argv)
    if any(a in ("-m", "--multirun") for a in argv):
        return argv
    ckpt = next((override_path(a) for a in argv if override_key(a) == "ckpt_path" and "=" in a), None)
    record = record_of(ckpt) if ckpt else None
    if record is None:
        return argv
    stored = yaml.safe_load((record / "overrides.yaml").read_text()) or []
    given = {override_key(a) for a in argv}
    kept = [o for o in stored if override_key(o) not in given and override_key(o) not in NOT_REPLAYED]
    return [*kept, *argv]


def _shown(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    return override_value(value) if not isinstance(value, dict) else "{...}"


def check_changes(config: DictConfig, ckpt_path: str | Path, record: Path) -> list[tuple[str, Any, Any]]:
    """The differences between this resume's config and the config the checkpoint was trained with (its
    ``record``, from ``record_of``): those that may change mid-run are said in one line; any other is refused
    in one line naming each key and both values, unless ``resume_changes=apply`` asks for them (then they
    are said, applied and recorded). Returns every difference."""
    mode = config.get("resume_changes", "refuse")  # its value is config.checks' to refuse
    run_dir = run_of(ckpt_path)
    stored = OmegaConf.to_container(OmegaConf.load(record / "config.yaml"), resolve=False)
    current = {k: v for k, v in OmegaConf.to_container(config, resolve=False).items() if k != "hydra"}
    changes = [c for c in differences(stored, current)
               if c[0].split(".", 1)[0] not in NOT_REPLAYED and not added_off(c[1], c[2])]
    fixed = [c for c in changes if not may_change(c[0])]
    described = [f"{key}: {_shown(old)} -> {_shown(new)}" for key, old, new in changes]
    if fixed and mode != "apply":
        listed = "; ".join(f"{key} was {_shown(old)}, now {_shown(new)}" for key, old, new in fixed[:4])
        more = f" and {len(fixed) - 4} more" if len(fixed) > 4 else ""
        raise ConfigError(f"ckpt_path: the run in {run_dir} was trained otherwise ({listed}{more}); these cannot "
                          "change mid-run silently: drop them, or add resume_changes=apply to train on with them")
    if described:
        print(f"resume {run_dir}: applying {'; '.join(described)}", file=sys.stderr)
    return changes
