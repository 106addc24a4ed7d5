"""Training runs for the measuring tools (results, speedrun): one fresh process each, reused once finished."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config.compose import group_options
from ..config.overrides import ABSENT, added_off
from ..core.errors import ConfigError, MnistlabError
from ..core.io import write_text
from .doc_sections import update_section
from .progress import Progress, checkpoint_status


def train_overrides(experiment: str, seed: int, overrides: Sequence[str]) -> list[str]:
    """What ``python -m mnistlab.train`` is given to train ``experiment`` at ``seed``."""
    return [f"experiment={experiment}", f"seed={seed}", *overrides]


def train_command(experiment: str, seed: int, overrides: Sequence[str], python: str = "python") -> list[str]:
    """The command that trains ``experiment`` at ``seed``: as shown to a reader, or run with ``python``."""
    return [python, "-m", "mnistlab.train", *train_overrides(experiment, seed, overrides)]


FLOAT32 = "32-true"  # Lightning's name for float32, as metrics.json records a run's precision


def precisions(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """What a row's runs trained in (``metrics.json``'s ``precision``, which ``bf16_where_native`` picks per
    machine; float32 for runs from before it was recorded)."""
    return sorted({str(run.get("precision", FLOAT32)) for run in runs})


def metrics_file(run_dir: Path) -> Path:
    """What a finished run leaves behind (``python -m mnistlab.train`` writes it last)."""
    return run_dir / "metrics.json"


# What a run's recorded config may differ in and still be the same recipe: where it ran (hydra.run.dir...),
# how its progress was shown, the checkpoint a resume started from, and the per-layer gradient norms it logged
# (read, never changed: 0.15-0.43 ms on the steps that log, every 50th).
NOT_THE_RECIPE = ("hydra.", "callbacks.progress_bar.refresh_rate", "ckpt_path", "callbacks.gradient_norms")


def part_of_the_recipe(key: str) -> bool:
    """Whether a dotted config key (or an override's key) can change what a run trains."""
    return not key.startswith(NOT_THE_RECIPE)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, child in node.items() for k, v in _leaves(child, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def recipe_changes(run_dir: Path, experiment: str, seed: int, overrides: Sequence[str]) -> list[str] | None:
    """How the config ``run_dir`` recorded (``.hydra/config.yaml``, unresolved) differs from the one
    ``experiment`` at ``seed`` composes to today, as ``key: then -> now``; None if it recorded none."""
    from omegaconf import OmegaConf

    from ..config.compose import compose

    recorded = run_dir / ".hydra" / "config.yaml"
    if not recorded.is_file():
        return None
    today = OmegaConf.to_container(compose(train_overrides(experiment, seed, overrides)), resolve=False)
    today.pop("hydra", None)
    now, then = _leaves(today), _leaves(OmegaConf.to_container(OmegaConf.load(recorded), resolve=False))
    missing = "<absent>"
    keys = sorted(now.keys() | then.keys())
    changed = [key for key in keys if now.get(key, missing) != then.get(key, missing)]
    return [f"{key}: {then.get(key, missing)!r} -> {now.get(key, missing)!r}" for key in changed
            if part_of_the_recipe(key) and not added_off(then.get(key, ABSENT), now.get(key, ABSENT))]


def check_same_recipe(run_dir: Path, experiment: str, seed: int, overrides: Sequence[str], progress: Progress) -> None:
    """Refuse to reuse or continue a run that an older recipe trained: its numbers would pass for today's."""
    changes = recipe_changes(run_dir, experiment, seed, overrides)
    if changes is None:
        progress.say(f"{run_dir}: no .hydra/config.yaml, so its recipe cannot be checked against today's")
    elif changes:
        more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
        raise MnistlabError(f"{run_dir} was trained by another recipe than {experiment} seed {seed} is today "
                            f"({'; '.join(changes[:3])}{more}); move that folder away to train it again")


def run_one(experiment: str, seed: int, overrides: Sequence[str], run_dir: Path, progress: Progress) -> dict[str, Any]:
    """The metrics of ``experiment`` at ``seed`` in ``run_dir``: trained now unless it finished before,
    continued from its last checkpoint if it was interrupted; either only if today's recipe trained it."""
    label = f"{experiment} seed {seed}"
    if metrics_file(run_dir).is_file() or (run_dir / "checkpoints").is_dir():
        check_same_recipe(run_dir, experiment, seed, overrides, progress)
    if metrics_file(run_dir).is_file():
        progress.skip(label)
    else:
        if (run_dir / "checkpoints").is_dir():  # an interrupted run: continue it
            last = run_dir / "checkpoints" / "last.ckpt"
            extra = [f"ckpt_path={last}"] if last.is_file() else []
        else:
            extra = []
        command = [*train_command(experiment, seed, overrides, python=sys.executable), *extra,
                   f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=0"]
        done = progress.run(command, label, checkpoint_status(run_dir))
        if done.returncode != 0 or not metrics_file(run_dir).is_file():
            raise MnistlabError(f"{experiment} seed {seed} failed (exit {done.returncode}); see {run_dir}/train.log")
    return json.loads(metrics_file(run_dir).read_text())


def check_experiments(experiments: Sequence[str], setting: str | None = None) -> None:
    known = group_options("experiment")
    unknown = [e for e in experiments if e not in known]
    if unknown:
        raise ConfigError(f"{f'{setting}: ' if setting else ''}unknown experiment(s) {unknown}; choose from {known}")


def publish(text: str, output: Path, section: str, readme: Path | None, readme_extra: str = "") -> None:
    """Write a generated table to its file and, when asked, into a Markdown file's ``section`` (followed by
    ``readme_extra``, e.g. a figure's link relative to that file); show it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, text)
    if readme is not None:
        update_section(readme, section, text + readme_extra)
    print(text)
