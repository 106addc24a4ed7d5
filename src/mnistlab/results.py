"""``python -m mnistlab.results experiments=[...] seeds=[...]``: run experiments, tabulate their metrics.

Every number in the README's results table comes from this command: it trains each experiment for each
seed (one ``python -m mnistlab.train`` process per run), reads each run's ``metrics.json`` and writes a
Markdown table with mean ± std over seeds, the exact command and the machine, and draws the results
figure (accuracy against fit time, learning curves) from the same files.

``ablation=tf_dnn_tuned`` instead trains that recipe with one lesson taken out at a time (``without``), or
one candidate added (``with``), and writes what each lesson is worth (the ``ablation`` README section).
"""

from __future__ import annotations

import os
import re
import shlex
import statistics
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .cli import hydra_command
from .config import rules
from .config.devices import machine
from .core.errors import ConfigError
from .perf import results_figure
from .perf.progress import Progress
from .perf.runs import FLOAT32, check_experiments, metrics_file, precisions, publish, run_one, train_command


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _epochs(runs: list[dict[str, Any]]) -> str:
    values = [r["epochs"] for r in runs]
    return _mean_std(values, digits=0 if all(float(v).is_integer() for v in values) else 1)


def _seconds(runs: list[dict[str, Any]]) -> str:
    values = [r["fit_seconds"] for r in runs]
    return _mean_std(values, digits=1 if statistics.fmean(values) < 100 else 0)  # a speedrun's 6.0, not 6


def _cross_writer(runs: list[dict[str, Any]]) -> str:
    """The MNIST runs' accuracy on handwriting by other writers (``test/uci_acc``); "—" where a run has none
    (Fashion-MNIST, or a run from before mnistlab measured it)."""
    values = [r["test/uci_acc"] for r in runs if r.get("test/uci_acc") is not None]
    return _mean_std(values, 100, digits=1) if len(values) == len(runs) else "—"


def _precision_note(rows: Mapping[str, list[dict[str, Any]]]) -> str:
    """A sentence naming the rows that did not train in float32 alone (``bf16_where_native`` picks bf16-mixed
    where the CPU or GPU computes it in hardware, so a recipe's fit time depends on it), or "" if none."""
    alike: dict[str, list[str]] = {}  # rows that trained alike share a clause: "`a` and `b` in bf16-mixed"
    for name, runs in rows.items():
        trained = precisions(runs)
        if trained != [FLOAT32]:
            alike.setdefault(" and ".join(trained), []).append(f"`{name}`")
    clauses = []
    for trained, names in alike.items():
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        clauses.append(f"{listed} in {trained}")
    return f"Trained in float32 (`{FLOAT32}`) except {'; '.join(clauses)}. " if clauses else ""


def _provenance(command_line: Sequence[str], rows: Mapping[str, list[dict[str, Any]]]) -> str:
    return (f"{_precision_note(rows)}Measured {date.today():%Y-%m-%d} on {machine()}; produced by "
            f"`python -m mnistlab.results {' '.join(shlex.quote(a) for a in command_line)}`.")


def table(rows: dict[str, list[dict[str, Any]]], seeds: dict[str, list[int]], overrides: Sequence[str],
          command_line: Sequence[str]) -> str:
    lines = [
        "| experiment | parameters | test accuracy % (mean ± std) | per seed | UCI digits % | epochs | fit s "
        "| train img/s | command |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for experiment, runs in rows.items():
        accs = [r["test/acc"] for r in runs]
        own = seeds[experiment]
        command = " ".join(shlex.quote(a) for a in train_command(experiment, own[0], overrides))
        if len(own) > 1:
            command = command.replace(f"seed={own[0]}", f"seed={','.join(map(str, own))}")
            command = command.replace("mnistlab.train", "mnistlab.train -m")
        lines.append(
            f"| `{experiment}` | {runs[0].get('parameters', '')} | {_mean_std(accs, 100)} | "
            f"{' / '.join(f'{a * 100:.2f}' for a in accs)} | {_cross_writer(runs)} | {_epochs(runs)} | "
            f"{_seconds(runs)} | "
            f"{_mean_std([r['train_images_per_second'] for r in runs], digits=0)} | `{command}` |"
        )
    lines += ["", _provenance(command_line, rows)]
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def ablation(cfg: DictConfig, command_line: Sequence[str]) -> str:
    """The recipe, then the recipe without each of its lessons and with each candidate one: test accuracy and
    what the lesson is worth (what removing it costs, or what adding it buys)."""
    spec, seeds, overrides = cfg.ablation, rules.seeds("seeds", cfg.seeds), list(cfg.overrides)
    if not spec.get("without") and not spec.get("with"):
        raise ConfigError("ablation.without (or ablation.with) must name at least one lesson and its overrides")
    base = Path(cfg.runs_dir) / spec.experiment
    variants = [("full recipe", [], base, 0)]
    for kind, sign in (("without", -1), ("with", 1)):
        variants += [(f"{kind} {lesson}", list(change), base / f"{kind}_{_slug(lesson)}", sign)
                     for lesson, change in (spec.get(kind) or {}).items()]
    if not cfg.run_missing:  # tabulate what has finished, train nothing
        variants = [v for v in variants if all(metrics_file(v[2] / f"seed_{s}").is_file() for s in seeds)]
        if not variants or variants[0][0] != "full recipe":
            raise ConfigError(f"run_missing=false but {base} holds no finished full-recipe runs for seeds {seeds}")
    rows, progress = [], Progress("results", len(variants) * len(seeds))
    for name, change, folder, sign in variants:
        runs = [run_one(spec.experiment, s, [*overrides, *change], folder / f"seed_{s}", progress) for s in seeds]
        rows.append((name, change, runs, sign))
    full = statistics.fmean(r["test/acc"] for r in rows[0][2]) * 100
    lines = [f"| `{spec.experiment}` | test accuracy % | lesson's worth (points) | UCI digits % | epochs | fit s "
             "| overrides |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, change, runs, sign in rows:
        acc = statistics.fmean(r["test/acc"] for r in runs) * 100
        worth = "" if not sign else f"{acc - full if sign > 0 else full - acc:+.2f}"  # never "-0.00"
        lines.append(f"| {name} | {_mean_std([r['test/acc'] for r in runs], 100)} | {worth} | "
                     f"{_cross_writer(runs)} | {_epochs(runs)} | {_seconds(runs)} | "
                     f"{' '.join(f'`{o}`' for o in change)} |")
    lines += ["", f"Seeds {seeds}. A lesson's worth is what taking it out costs (`without`) or what adding it "
              f"buys (`with`). {_provenance(command_line, {name: runs for name, _, runs, _ in rows})}"]
    return "\n".join(lines) + "\n"


def collect(cfg: DictConfig) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[int]]]:
    """Each experiment's runs (trained now when missing and ``run_missing``) and the seeds they are."""
    experiments = [cfg.experiments] if isinstance(cfg.experiments, str) else list(cfg.experiments or [])
    if not experiments:
        raise ConfigError("experiments must name at least one experiment")
    check_experiments(experiments)
    per = cfg.get("seeds_per_experiment") or {}
    if not isinstance(per, Mapping):
        raise ConfigError(f"seeds_per_experiment maps experiments to their seeds, e.g. {{fashion_cnn:[0]}}; got {per}")
    stray = [e for e in per if e not in experiments]
    if stray:  # a misspelt name would silently train every seed of the one meant
        raise ConfigError(f"seeds_per_experiment names {stray}, which experiments does not list: {experiments}")
    seeds = {e: rules.seeds(f"seeds_per_experiment.{e}" if e in per else "seeds", per.get(e, cfg.seeds))
             for e in experiments}
    if not cfg.run_missing:  # tabulate what has finished, train nothing
        finished = {e: [s for s in seeds[e] if metrics_file(Path(cfg.runs_dir) / e / f"seed_{s}").is_file()]
                    for e in experiments}
        for e in experiments:
            if finished[e] != seeds[e]:
                print(f"[results] {e}: only seeds {finished[e]} of {seeds[e]} have finished", file=sys.stderr)
        seeds = {e: done for e, done in finished.items() if done}
        experiments = [e for e in experiments if e in seeds]
        if not experiments:
            raise ConfigError(f"run_missing=false but {cfg.runs_dir} holds no finished runs of "
                              f"{', '.join(finished)} for those seeds: nothing to tabulate")
    progress = Progress("results", sum(len(seeds[e]) for e in experiments))
    rows = {e: [run_one(e, s, list(cfg.overrides), Path(cfg.runs_dir) / e / f"seed_{s}", progress) for s in seeds[e]]
            for e in experiments}
    return rows, seeds


def run(cfg: DictConfig) -> str:
    readme = Path(cfg.readme_path) if cfg.readme else None
    if cfg.get("ablation"):
        text = ablation(cfg, sys.argv[1:])
        section = cfg.ablation.get("section", "ablation")
        publish(text, Path(cfg.runs_dir) / f"ablation_{cfg.ablation.experiment}.md", section, readme)
        return text
    if cfg.curves is not None:
        check_experiments([cfg.curves], "curves")
    rows, seeds = collect(cfg)
    text = table(rows, seeds, list(cfg.overrides), sys.argv[1:])
    figures = [Path(cfg.output).with_suffix(".png"), *([Path(cfg.readme_figure)] if readme else [])]
    results_figure.write(rows, cfg.curves, figures)
    figure_link = ""
    if readme is not None:  # the README shows the figure written with its table, never an older one
        link = os.path.relpath(figures[-1].resolve(), readme.resolve().parent)
        caption = ("Test accuracy against fit time for every recipe (mean, bars to the lowest and highest seed; "
                   "dashed, the Pareto front: the most accurate recipe by each fit time)"
                   + (f" and the learning curves of the {cfg.curves} seeds" if cfg.curves in rows else ""))
        figure_link = f"\n![{caption}]({Path(link).as_posix()})\n"
    publish(text, Path(cfg.output), cfg.readme_section, readme, readme_extra=figure_link)
    print(f"[results] figure: {', '.join(map(str, figures))}", file=sys.stderr)
    return text


main = hydra_command("results", run)

if __name__ == "__main__":
    main()
