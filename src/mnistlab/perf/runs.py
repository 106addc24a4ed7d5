"""Training runs for the measuring tools (results, speedrun): one fresh process each, reused once finished."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config.compose import CONFIG_DIR
from ..errors import ConfigError, MnistlabError
from ..io import update_section, write_text
from .progress import Progress, checkpoint_status


def train_command(experiment: str, seed: int, overrides: Sequence[str]) -> list[str]:
    return ["python", "-m", "mnistlab.train", f"experiment={experiment}", f"seed={seed}", *overrides]


def metrics_file(run_dir: Path) -> Path:
    """What a finished run leaves behind (``python -m mnistlab.train`` writes it last)."""
    return run_dir / "metrics.json"


def run_one(experiment: str, seed: int, overrides: Sequence[str], run_dir: Path, progress: Progress) -> dict[str, Any]:
    """The metrics of ``experiment`` at ``seed`` in ``run_dir``: trained now unless it finished before,
    continued from its last checkpoint if it was interrupted."""
    label = f"{experiment} seed {seed}"
    if metrics_file(run_dir).is_file():
        progress.skip(label)
    else:
        if (run_dir / "checkpoints").is_dir():  # an interrupted run: continue it
            last = run_dir / "checkpoints" / "last.ckpt"
            extra = [f"ckpt_path={last}"] if last.is_file() else []
        else:
            extra = []
        command = [sys.executable, *train_command(experiment, seed, overrides)[1:], *extra,
                   f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=0"]
        done = progress.run(command, label, checkpoint_status(run_dir))
        if done.returncode != 0 or not metrics_file(run_dir).is_file():
            raise MnistlabError(f"{experiment} seed {seed} failed (exit {done.returncode}); see {run_dir}/train.log")
    return json.loads(metrics_file(run_dir).read_text())


def check_experiments(experiments: Sequence[str]) -> None:
    known = {p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")}
    unknown = [e for e in experiments if e not in known]
    if unknown:
        raise ConfigError(f"unknown experiment(s) {unknown}; choose from {sorted(known)}")


def publish(text: str, output: Path, section: str, readme: Path | None, readme_extra: str = "") -> None:
    """Write a generated table to its file and, when asked, into a Markdown file's ``section`` (followed by
    ``readme_extra``, e.g. a figure's link relative to that file); show it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, text)
    if readme is not None:
        update_section(readme, section, text + readme_extra)
    print(text)
