"""``python -m mnistlab.speedrun [recipe=speedrun_gpu]``: time to 99% of a recipe against a reference run.

The reference is the Keras tutorial CNN trained for one epoch. For each seed the reference and the speedrun
train back to back, each in a fresh ``python -m mnistlab.train`` process, so a pair sees the machine at the
same moment (a shared or throttled machine drifts by tens of percent within minutes). What counts is the
ratio of their ``fit_seconds``. Every call measures afresh in a new folder ``<runs_dir>/<date_time>/``.
"""

from __future__ import annotations

import shlex
import statistics
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .cli import hydra_command
from .config import rules
from .config.compose import compose
from .config.devices import machine
from .core.errors import ConfigError
from .core.io import json_line, write_json
from .perf.progress import Progress
from .perf.runs import check_experiments, publish, run_one


def trainer_choice(experiment: str, overrides: list[str]) -> str:
    """The trainer config an experiment trains with (``gpu`` for ``speedrun_gpu``): the reference's too."""
    return compose([f"experiment={experiment}", *overrides]).hydra.runtime.choices.trainer


def measure(cfg: DictConfig, folder: Path) -> dict[str, Any]:
    """Train reference then speedrun for every seed; return per-seed metrics and ratios."""
    seeds = rules.seeds("seeds", cfg.seeds)
    for key in ("recipe", "reference"):
        check_experiments([cfg[key]], key)
    if cfg.target_ratio <= 0 or not 0 < cfg.target_accuracy <= 1:
        raise ConfigError(f"target_ratio must be > 0 and target_accuracy in (0, 1], got "
                          f"{cfg.target_ratio} and {cfg.target_accuracy}")
    overrides = list(cfg.overrides)
    recipe_overrides = [*overrides, *cfg.recipe_overrides]
    reference_overrides = [f"trainer={trainer_choice(cfg.recipe, recipe_overrides)}", *overrides,
                           *cfg.reference_overrides]
    runs: dict[str, list[dict[str, Any]]] = {"reference": [], "speedrun": []}
    progress = Progress("speedrun", 2 * len(seeds))
    for seed in seeds:
        runs["reference"].append(run_one(cfg.reference, seed, reference_overrides,
                                         folder / "reference" / f"seed_{seed}", progress))
        runs["speedrun"].append(run_one(cfg.recipe, seed, recipe_overrides, folder / "speedrun" / f"seed_{seed}",
                                        progress))
    ratios = [s["fit_seconds"] / r["fit_seconds"] for s, r in zip(runs["speedrun"], runs["reference"], strict=True)]
    accuracy = statistics.fmean(r["test/acc"] for r in runs["speedrun"])
    median_ratio = statistics.median(ratios)
    return {
        "seeds": seeds,
        "machine": machine(),
        "runs": {name: [{k: r.get(k) for k in ("test/acc", "fit_seconds", "global_step", "train_images_per_second")}
                        for r in rs] for name, rs in runs.items()},
        "ratios": ratios,
        "median_ratio": median_ratio,
        "speedrun_accuracy": accuracy,
        "accuracy_met": accuracy >= cfg.target_accuracy,
        "ratio_met": median_ratio <= cfg.target_ratio,
    }


def _per_seed(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def markdown(cfg: DictConfig, summary: dict[str, Any]) -> str:
    reference = f"`{cfg.reference}` {' '.join(f'`{o}`' for o in cfg.reference_overrides)} (reference)"
    lines = ["| run | test accuracy % (mean) | per seed | fit s (median) | per seed | training img/s (median) |",
             "|---|---:|---|---:|---|---:|"]
    recipe = " ".join(f"`{o}`" for o in [cfg.recipe, *cfg.recipe_overrides])
    for name, label in (("speedrun", recipe), ("reference", reference)):
        rs = summary["runs"][name]
        accs = [r["test/acc"] * 100 for r in rs]
        fits = [r["fit_seconds"] for r in rs]
        lines.append(f"| {label} | {statistics.fmean(accs):.2f} | {_per_seed(accs, '.2f')} | "
                     f"{statistics.median(fits):.2f} | {_per_seed(fits, '.2f')} | "
                     f"{statistics.median(r['train_images_per_second'] for r in rs):,.0f} |")
    mark = {True: "✓", False: "✗"}
    lines += [
        "",
        f"Fit-time ratio speedrun / reference per seed: {_per_seed(summary['ratios'], '.2f')}; median "
        f"**{summary['median_ratio']:.2f}** (target ≤ {cfg.target_ratio:.2f} {mark[summary['ratio_met']]}). "
        f"Mean speedrun accuracy **{summary['speedrun_accuracy'] * 100:.2f}%** "
        f"(target ≥ {cfg.target_accuracy * 100:.2f}% {mark[summary['accuracy_met']]}).",
        "",
        f"Seeds {summary['seeds']}. Measured {date.today():%Y-%m-%d} on {summary['machine']}; produced by "
        f"`python -m mnistlab.speedrun {' '.join(shlex.quote(a) for a in sys.argv[1:])}`.",
    ]
    return "\n".join(lines) + "\n"


def run(cfg: DictConfig) -> dict[str, Any]:
    folder = Path(cfg.runs_dir) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    summary = measure(cfg, folder)
    text = markdown(cfg, summary)
    write_json(folder / "speedrun.json", summary)
    publish(text, folder / "speedrun.md", cfg.readme_section, Path(cfg.readme_path) if cfg.readme else None)
    print(json_line(summary))
    return summary


main = hydra_command("speedrun", run)

if __name__ == "__main__":
    main()
