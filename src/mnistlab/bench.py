"""``python -m mnistlab.bench [--json]``: mnistlab's training throughput against reference pipelines.

Same network, same augmentation kinds, one run; the reference pipelines live in ``perf/baselines.py``,
what each variant's process does and how rounds combine in ``perf/benchmark.py``.

- ``textbook``: torchvision's MNIST dataset with PIL transforms per sample (RandomAffine for rotation,
  shift and zoom, ColorJitter for brightness and contrast) through a DataLoader with workers, into the
  same LightningModule and Trainer;
- ``mnistlab``: mnistlab's DataModule and modules with the Trainer, built from the train config;
- ``bare``: a plain PyTorch loop over mnistlab's data path and network, no Lightning (the ceiling);
- ``lightning`` (only when asked for): Lightning's floor, a LightningModule whose training step only
  computes the loss, with no callbacks, over the same data path and network.

Each variant runs in its own process (clean peak memory), warms up, then is timed over a fixed number
of steps. Shared machines are noisy (they stall and they burst), so the variants run in interleaved
rounds: each figure is the median of its rounds, and each ratio the median of the rounds' own ratios,
whose variants ran back to back, so the machine's drift from minute to minute cancels. Also reported:
inference throughput on the test set and peak memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from .config.devices import ALIASES, DEVICES, check_device, machine
from .core.errors import ConfigError, report_errors
from .core.io import json_line
from .core.logs import silence_library_noise
from .perf.doc_sections import update_section
from .perf.progress import Progress
from .perf.variants import ALL_VARIANTS, MODELS, VARIANTS


def run_variant_process(variant: str, model: str, args, progress: Progress, round_: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "mnistlab.bench", "--child", variant, "--models", model,
               "--device", args.device, "--warmup", str(args.warmup), "--steps", str(args.steps[model]),
               "--overrides", *args.overrides]
    done = progress.run(command, f"round {round_ + 1}/{args.rounds} {model} {variant}", capture=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench {variant}/{model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(summary: dict[str, Any], models: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from .perf.benchmark import table_rows

    header, rows = table_rows(summary, models)
    table = Table(title=f"training images/s with augmentation ({summary['machine']})")
    for column in header:
        table.add_column(column, justify="right")
    for cells in rows:
        table.add_row(*cells)
    Console(width=180).print(table)


def markdown(summary: dict[str, Any], args) -> str:
    from .perf.benchmark import table_rows

    header, rows = table_rows(summary, args.models)
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---|",
             *("| " + " | ".join(cells) + " |" for cells in rows)]
    command = (f"python -m mnistlab.bench --models {' '.join(args.models)} --variants {' '.join(args.variants)} "
               f"--device {args.device} --rounds {args.rounds}")
    if args.overrides:
        command += " --overrides " + " ".join(args.overrides)
    steps = ", ".join(f"{n} for {m}" for m, n in args.steps.items())
    lines += ["", f"Measured {date.today():%Y-%m-%d} on {summary['machine']} with `{command}` "
              f"(batch {args.batch_size}; {args.warmup} warm-up steps, then timed steps: {steps}; medians of "
              f"{args.rounds} interleaved rounds, ratios the median of each round's ratio)."]
    return "\n".join(lines) + "\n"


def augment_report(args) -> dict[str, Any]:
    from .perf import augment_cost
    from .perf.runs import check_experiments

    check_experiments([args.augment], "--augment")
    silence_library_noise()
    costs = augment_cost.augment_costs(args.augment, args.device, repeats=max(args.rounds, 1) * 10)
    costs["machine"] = machine()
    text = augment_cost.markdown(costs) + f"\nMedians of {max(args.rounds, 1) * 10} batches; {costs['machine']}.\n"
    print(text)
    if args.readme:
        update_section(Path(args.readme), args.readme_section, text)
    if args.json:
        print(json_line(costs))
    return costs


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mnistlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=ALL_VARIANTS,
                        help="lightning (Lightning's floor) runs only when named")
    parser.add_argument("--device", default="auto", choices=(*DEVICES, *ALIASES),
                        help="where training runs, as every command's device= (gpu: cuda)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 150 cnn, 400 dnn)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; figures and ratios are their medians")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--readme", metavar="PATH", help="also write the table into a section of PATH")
    parser.add_argument("--readme-section", default="bench", help="that section's name (bench_gpu for a GPU)")
    parser.add_argument("--overrides", nargs="*", default=[], help="train config overrides, e.g. data.batch_size=256")
    parser.add_argument("--augment", metavar="EXPERIMENT",
                        help="instead: each augmentation's cost per batch beside EXPERIMENT's training step")
    parser.add_argument("--child", choices=ALL_VARIANTS, help=argparse.SUPPRESS)
    return parser


def check_arguments(args) -> None:
    limits = (("--rounds", args.rounds, 1), ("--steps", args.steps, 1), ("--warmup", args.warmup, 0))
    for flag, value, minimum in limits:
        if value is not None and value < minimum:  # a negative step count would time forever
            raise ConfigError(f"{flag} must be >= {minimum}, got {value}")
    check_device(args.device, "--device ", "--device auto or cpu")


def measure_child(args) -> dict[str, Any]:
    """One variant's measurement, in this (child) process, printed as the JSON line its parent reads."""
    from .perf.benchmark import measure_training, peak_memory_mb

    result = measure_training(args.child, args.models[0], args.device, args.warmup, args.steps, args.overrides)
    result.update(peak_memory_mb())
    print(json_line(result))
    return result


def measure_rounds(args) -> dict[str, Any]:
    """Every model and variant, each in its own process, in ``args.rounds`` interleaved rounds, combined."""
    import torch

    from .perf.benchmark import combine_rounds, config, summarize

    # Every model's config is composed and checked here, so a bad override is one line, not a child's crash.
    configs = {m: config(m, args.device, args.overrides) for m in args.models}
    args.batch_size = configs[args.models[0]].data.batch_size
    args.steps = {m: args.steps or (150 if m == "cnn" else 400) for m in args.models}
    runs: dict[str, dict[str, list]] = {m: {v: [] for v in args.variants} for m in args.models}
    progress = Progress("bench", args.rounds * len(args.models) * len(args.variants))
    for round_ in range(args.rounds):
        for m in args.models:
            for v in args.variants:
                runs[m][v].append(run_variant_process(v, m, args, progress, round_))
    summary = summarize({m: {v: combine_rounds(r) for v, r in variants.items()} for m, variants in runs.items()})
    return {**summary, "machine": machine(), "torch": torch.__version__}


@report_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = arguments().parse_args(argv)
    if args.augment:
        return augment_report(args)
    silence_library_noise()
    if args.child:
        return measure_child(args)
    check_arguments(args)
    summary = measure_rounds(args)
    print_table(summary, args.models)
    if args.readme:
        update_section(Path(args.readme), args.readme_section, markdown(summary, args))
    if args.json:
        print(json_line(summary))
    return summary


if __name__ == "__main__":
    main()
