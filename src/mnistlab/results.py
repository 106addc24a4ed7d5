"""``python -m mnistlab.results experiments=[...] seeds=[...]``: run experiments, tabulate their metrics.

Every number in the README's results table comes from this command: it trains each experiment for each
seed (one ``python -m mnistlab.train`` process per run), reads each run's ``metrics.json`` and writes a
Markdown table with mean ± std over seeds, the exact command and the machine.

``ablation=tf_dnn_tuned`` instead trains that recipe with one lesson taken out at a time and writes what
each lesson buys (the ``ablation`` README section).
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from .config import CONFIG_DIR, preflight_overrides
from .env import machine
from .errors import ConfigError, MnistlabError, report_errors


def train_command(experiment: str, seed: int, overrides: Sequence[str]) -> list[str]:
    return ["python", "-m", "mnistlab.train", f"experiment={experiment}", f"seed={seed}", *overrides]


def metrics_file(run_dir: Path) -> Path:
    """What a finished run leaves behind (``python -m mnistlab.train`` writes it last)."""
    return run_dir / "metrics.json"


def run_one(experiment: str, seed: int, overrides: Sequence[str], run_dir: Path) -> dict[str, Any]:
    if not metrics_file(run_dir).is_file():
        if (run_dir / "checkpoints").is_dir():  # an interrupted run: continue it
            last = run_dir / "checkpoints" / "last.ckpt"
            extra = [f"ckpt_path={last}"] if last.is_file() else []
        else:
            extra = []
        command = [sys.executable, *train_command(experiment, seed, overrides)[1:], *extra,
                   f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=0"]
        print(f"[results] {experiment} seed {seed}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        done = subprocess.run(command, stdout=subprocess.DEVNULL)
        if done.returncode != 0 or not metrics_file(run_dir).is_file():
            raise MnistlabError(f"{experiment} seed {seed} failed (exit {done.returncode}); see {run_dir}/train.log")
    return json.loads(metrics_file(run_dir).read_text())


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


def _provenance(command_line: Sequence[str]) -> str:
    return (f"Measured {date.today():%Y-%m-%d} on {machine()}; produced by "
            f"`python -m mnistlab.results {' '.join(shlex.quote(a) for a in command_line)}`.")


def table(rows: dict[str, list[dict[str, Any]]], seeds: dict[str, list[int]], overrides: Sequence[str],
          command_line: Sequence[str]) -> str:
    lines = [
        "| experiment | parameters | test accuracy % (mean ± std) | per seed | epochs | fit s | train img/s "
        "| command |",
        "|---|---:|---:|---|---:|---:|---:|---|",
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
            f"{' / '.join(f'{a * 100:.2f}' for a in accs)} | {_epochs(runs)} | {_seconds(runs)} | "
            f"{_mean_std([r['train_images_per_second'] for r in runs], digits=0)} | `{command}` |"
        )
    lines += ["", _provenance(command_line)]
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def ablation(cfg: DictConfig, command_line: Sequence[str]) -> str:
    """The recipe, then the recipe without each lesson: test accuracy and what the lesson was worth."""
    spec, seeds, overrides = cfg.ablation, [int(s) for s in cfg.seeds], list(cfg.overrides)
    if not spec.get("without"):
        raise ConfigError("ablation.without must name at least one lesson and the overrides that remove it")
    base = Path(cfg.runs_dir) / spec.experiment
    variants = [("full recipe", [], base)] + [
        (f"without {lesson}", list(removal), base / f"without_{_slug(lesson)}")
        for lesson, removal in spec.without.items()]
    if not cfg.run_missing:  # tabulate what has finished, train nothing
        variants = [v for v in variants if all(metrics_file(v[2] / f"seed_{s}").is_file() for s in seeds)]
        if not variants or variants[0][0] != "full recipe":
            raise ConfigError(f"run_missing=false but {base} holds no finished full-recipe runs for seeds {seeds}")
    rows = []
    for name, removal, folder in variants:
        runs = [run_one(spec.experiment, s, [*overrides, *removal], folder / f"seed_{s}") for s in seeds]
        rows.append((name, removal, runs))
    full = statistics.fmean(r["test/acc"] for r in rows[0][2]) * 100
    lines = [f"| `{spec.experiment}` | test accuracy % | lesson's worth (points) | epochs | fit s | overrides |",
             "|---|---:|---:|---:|---:|---|"]
    for name, removal, runs in rows:
        acc = statistics.fmean(r["test/acc"] for r in runs) * 100
        worth = "" if not removal else f"{full - acc:+.2f}"
        lines.append(f"| {name} | {_mean_std([r['test/acc'] for r in runs], 100)} | {worth} | "
                     f"{_epochs(runs)} | {_seconds(runs)} | {' '.join(f'`{o}`' for o in removal)} |")
    lines += ["", f"Seeds {seeds}. {_provenance(command_line)}"]
    return "\n".join(lines) + "\n"


def update_readme_section(readme: Path, section: str, text: str) -> None:
    """Replace what stands between ``<!-- section:start -->`` and ``<!-- section:end -->``."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    content = readme.read_text()
    if start not in content or end not in content:
        raise ConfigError(f"{readme}: no {start} ... {end} section to replace")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{text}{end}{tail}")


def publish(text: str, output: Path, section: str, readme: Path | None) -> None:
    """Write a generated table to its file and, when asked, into the README's ``section``; show it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    if readme is not None:
        update_readme_section(readme, section, text)
    print(text)


def check_experiments(experiments: Sequence[str]) -> None:
    known = {p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")}
    unknown = [e for e in experiments if e not in known]
    if unknown:
        raise ConfigError(f"unknown experiment(s) {unknown}; choose from {sorted(known)}")


def collect(cfg: DictConfig) -> str:
    experiments = list(cfg.experiments)
    per = cfg.get("seeds_per_experiment") or {}
    seeds = {e: [int(s) for s in per.get(e, cfg.seeds)] for e in experiments}
    if not experiments or not all(seeds.values()):
        raise ConfigError("experiments and seeds must each name at least one value")
    check_experiments(experiments)
    if not cfg.run_missing:  # tabulate what has finished, train nothing
        finished = {e: [s for s in seeds[e] if metrics_file(Path(cfg.runs_dir) / e / f"seed_{s}").is_file()]
                    for e in experiments}
        for e in experiments:
            if finished[e] != seeds[e]:
                print(f"[results] {e}: only seeds {finished[e]} of {seeds[e]} have finished", file=sys.stderr)
        seeds = {e: done for e, done in finished.items() if done}
        experiments = [e for e in experiments if e in seeds]
    rows = {e: [run_one(e, s, list(cfg.overrides), Path(cfg.runs_dir) / e / f"seed_{s}") for s in seeds[e]]
            for e in experiments}
    return table(rows, seeds, list(cfg.overrides), sys.argv[1:])


@report_errors
def run(cfg: DictConfig) -> str:
    section = "ablation" if cfg.get("ablation") else "results"
    text = ablation(cfg, sys.argv[1:]) if section == "ablation" else collect(cfg)
    output = Path(cfg.output if section == "results" else Path(cfg.runs_dir) / f"ablation_{cfg.ablation.experiment}.md")
    publish(text, output, section, Path(cfg.readme_path) if cfg.readme else None)
    return text


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="results")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    preflight_overrides(sys.argv[1:], "results")
    main()
