"""``python -m mnistlab.bench [--json]``: mnistlab's training throughput against reference pipelines.

Same network, same augmentation kinds, one run; the reference pipelines live in ``baselines.py``.

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
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from .baselines import StepTimer, bare_loop, lightning_floor, sync, textbook_loader, trainer_limits
from .config import compose_checked
from .env import machine
from .errors import ConfigError, report_errors, silence_library_noise
from .results import update_readme_section
from .train import build

VARIANTS = ("textbook", "mnistlab", "bare")
ALL_VARIANTS = (*VARIANTS, "lightning")
RATIOS = (("mnistlab", "textbook"), ("mnistlab", "bare"), ("lightning", "bare"))
MODELS = ("cnn", "dnn")


def config(model: str, device: str, overrides: list[str]):
    # Everything a training run has, minus what needs validation or a logger (the timed loop has neither).
    without = ("model_summary", "tensorboard_visuals", "model_checkpoint", "last_checkpoint", "early_stopping",
               "lr_monitor")
    return compose_checked([f"model={model}", "augment=digits", f"trainer.accelerator={device}", "logger={}",
                            *(f"callbacks.{name}=null" for name in without), *overrides],
                           output_dir="/tmp/mnistlab-bench")


def measure_training(variant: str, model_name: str, device: str, warmup: int, steps: int,
                     overrides: list[str]) -> dict[str, Any]:
    cfg = config(model_name, device, overrides)
    pl.seed_everything(0, verbose=False)
    timer = StepTimer(warmup, steps)
    if variant == "bare":
        return {"train_img_s": bare_loop(cfg, warmup, steps)}
    if variant == "lightning":
        return {"train_img_s": lightning_floor(cfg, timer)}
    datamodule, module, trainer = build(cfg, extra_callbacks=[timer], **trainer_limits(timer))
    if variant == "textbook":
        trainer.fit(module, train_dataloaders=textbook_loader(cfg, cfg.data.batch_size))
    else:
        trainer.fit(module, datamodule=datamodule)
    result = {"train_img_s": timer.images_per_second}
    if variant == "mnistlab":
        result["infer_img_s"] = inference(module, datamodule)
    return result


def inference(module, datamodule, repeats: int = 2) -> float:
    datamodule.setup("test")
    images, _ = datamodule.test_set
    module.eval()
    device = module.device
    with torch.inference_mode():
        x, _ = datamodule.prepare_batch((images[:1000].to(device), None), train=False)
        module(x)  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            for chunk in images.split(1000):
                x, _ = datamodule.prepare_batch((chunk.to(device), None), train=False)
                module(x)
        sync()
    return repeats * len(images) / (time.perf_counter() - start)


def peak_memory_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = {"peak_rss_mb": round(own, 1)}
    if workers:
        out["peak_worker_rss_mb"] = round(workers, 1)
    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def run_variant_process(variant: str, model: str, args) -> dict[str, Any]:
    command = [sys.executable, "-m", "mnistlab.bench", "--child", variant, "--models", model,
               "--device", args.device, "--warmup", str(args.warmup), "--steps", str(args.steps[model]),
               "--overrides", *args.overrides]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench {variant}/{model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def combine_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's rounds: median throughputs, peak memory, and every round's training figure."""
    combined: dict[str, Any] = {"train_img_s": statistics.median(r["train_img_s"] for r in runs),
                                "rounds_img_s": [round(r["train_img_s"], 1) for r in runs]}
    if all("infer_img_s" in r for r in runs):
        combined["infer_img_s"] = statistics.median(r["infer_img_s"] for r in runs)
    for key in sorted({k for r in runs for k in r if k.endswith("_mb")}):
        combined[key] = max(r.get(key, 0.0) for r in runs)
    return combined


def median_ratio(rounds_a: list[float], rounds_b: list[float]) -> float:
    """Median over rounds of ``a / b`` within each round."""
    return statistics.median(a / b for a, b in zip(rounds_a, rounds_b, strict=True))


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for model, variants in results.items():
        row: dict[str, Any] = {v: round(variants[v]["train_img_s"], 1) for v in ALL_VARIANTS if v in variants}
        for a, b in RATIOS:
            if a in row and b in row:
                row[f"{a}/{b}"] = round(median_ratio(variants[a]["rounds_img_s"], variants[b]["rounds_img_s"]), 2)
        if "mnistlab" in variants:
            row["inference_img_s"] = round(variants["mnistlab"].get("infer_img_s", 0.0), 1)
        row["memory_mb"] = {v: {k: val for k, val in variants[v].items() if k.endswith("_mb")} for v in variants}
        row["rounds_img_s"] = {v: variants[v].get("rounds_img_s", []) for v in variants}
        summary[model] = row
    return summary


def table_rows(summary: dict[str, Any], models: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the terminal table and the README's Markdown."""
    variants = [v for v in ALL_VARIANTS if any(v in summary[m] for m in models)]
    ratios = [f"{a}/{b}" for a, b in RATIOS if a in variants and b in variants]
    header = ["model", *(f"{v} img/s" for v in variants), *ratios, "inference img/s",
              f"peak RSS MB ({' / '.join(variants)})"]
    rows = []
    for model in models:
        row = summary[model]
        rss = " / ".join(f"{row['memory_mb'][v].get('peak_rss_mb', 0):.0f}" for v in variants)
        rows.append([model, *(f"{row.get(v, 0):,.0f}" for v in variants), *(f"{row.get(r, 0):.2f}" for r in ratios),
                     f"{row.get('inference_img_s', 0):,.0f}", rss])
    return header, rows


def print_table(summary: dict[str, Any], models: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    header, rows = table_rows(summary, models)
    table = Table(title=f"training images/s with augmentation ({summary['machine']})")
    for column in header:
        table.add_column(column, justify="right")
    for cells in rows:
        table.add_row(*cells)
    Console(width=180).print(table)


def markdown(summary: dict[str, Any], args) -> str:
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


@report_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m mnistlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=ALL_VARIANTS,
                        help="lightning (Lightning's floor) runs only when named")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 150 cnn, 400 dnn)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; figures and ratios are their medians")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--readme", metavar="PATH", help="also write the table into a section of PATH")
    parser.add_argument("--readme-section", default="bench", help="that section's name (bench_gpu for a GPU)")
    parser.add_argument("--overrides", nargs="*", default=[], help="train config overrides, e.g. data.batch_size=256")
    parser.add_argument("--child", choices=ALL_VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    silence_library_noise()
    if args.child:
        result = measure_training(args.child, args.models[0], args.device, args.warmup, args.steps, args.overrides)
        result.update(peak_memory_mb())
        print(json.dumps(result))
        return result
    limits = (("--rounds", args.rounds, 1), ("--steps", args.steps, 1), ("--warmup", args.warmup, 0))
    for flag, value, minimum in limits:
        if value is not None and value < minimum:  # a negative step count would time forever
            raise ConfigError(f"{flag} must be >= {minimum}, got {value}")
    if args.device == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--device gpu: PyTorch sees no CUDA GPU here; use --device auto or cpu")
    # Every model's config is composed and checked here, so a bad override is one line, not a child's crash.
    configs = {m: config(m, args.device, args.overrides) for m in args.models}
    args.batch_size = configs[args.models[0]].data.batch_size
    args.steps = {m: args.steps or (150 if m == "cnn" else 400) for m in args.models}
    runs: dict[str, dict[str, list]] = {m: {v: [] for v in args.variants} for m in args.models}
    for _ in range(args.rounds):
        for m in args.models:
            for v in args.variants:
                runs[m][v].append(run_variant_process(v, m, args))
    results = {m: {v: combine_rounds(r) for v, r in variants.items()} for m, variants in runs.items()}
    summary = summarize(results)
    summary["machine"] = machine()
    summary["torch"] = torch.__version__
    print_table(summary, args.models)
    if args.readme:
        update_readme_section(Path(args.readme), args.readme_section, markdown(summary, args))
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
