"""``python -m mnistlab.bench [--json]``: training throughput of three pipelines, same network, same run.

- ``textbook``: torchvision's MNIST dataset with PIL transforms per sample (RandomAffine for rotation,
  shift and zoom, ColorJitter for brightness and contrast) through a DataLoader with workers, into the
  same LightningModule and Trainer;
- ``mnistlab``: mnistlab's DataModule and modules with the Trainer, built from the train config;
- ``bare``: a plain PyTorch loop over mnistlab's data path and network, no Lightning (the ceiling).

Each variant runs in its own process (clean peak memory), warms up, then is timed over a fixed number
of steps. Shared machines are noisy, so the variants run in interleaved rounds and each reports its best
round. Also reported: inference throughput on the test set and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .config import compose
from .datasets import locate_split
from .env import machine
from .results import update_readme_section
from .errors import ConfigError, report_errors, silence_library_noise
from .train import build, build_datamodule, build_model, configure_device

VARIANTS = ("textbook", "mnistlab", "bare")
MODELS = ("cnn", "dnn")


class StepTimer(pl.Callback):
    """Wall time over training steps ``warmup`` .. ``warmup + steps`` (after Lightning's set-up)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.end = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            _sync()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.warmup < trainer.global_step <= self.warmup + self.steps:
            self.images += len(batch[1])
        if trainer.global_step == self.warmup + self.steps:
            _sync()
            self.end = time.perf_counter()
            trainer.should_stop = True

    @property
    def images_per_second(self) -> float:
        return self.images / (self.end - self.start)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def config(model: str, device: str, overrides: list[str]):
    # Everything a training run has, minus what needs validation or a logger (the timed loop has neither).
    without = ("model_summary", "tensorboard_visuals", "model_checkpoint", "last_checkpoint", "early_stopping",
               "lr_monitor")
    return compose([f"model={model}", "augment=digits", f"trainer.accelerator={device}", "logger={}",
                    *(f"callbacks.{name}=null" for name in without), *overrides],
                   output_dir="/tmp/mnistlab-bench")


def _trainer_limits(timer: StepTimer) -> dict[str, Any]:
    return dict(max_steps=timer.warmup + timer.steps + 1, max_epochs=-1, limit_val_batches=0,
                num_sanity_val_steps=0, enable_checkpointing=False)


def textbook_loader(cfg, batch_size: int):
    import torchvision
    from torchvision import transforms

    images_path, _ = locate_split("mnist", "train", cfg.data.data_dir, cfg.data.download)
    root = images_path.parent.parent.parent  # torchvision layout: <root>/MNIST/raw/<file>
    aug = cfg.augment
    transform = transforms.Compose([
        transforms.RandomAffine(degrees=aug.rotation, translate=(aug.shift / 28, aug.shift / 28),
                                scale=(1 - aug.scale, 1 + aug.scale)),
        transforms.ColorJitter(brightness=aug.brightness, contrast=aug.contrast),
        transforms.ToTensor(),
        transforms.Normalize((0.1307,), (0.3081,)),
    ])
    dataset = torchvision.datasets.MNIST(str(root), train=True, transform=transform, download=False)
    workers = min(4, os.cpu_count() or 1)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       persistent_workers=True, pin_memory=torch.cuda.is_available())


def measure_training(variant: str, model_name: str, device: str, warmup: int, steps: int,
                     overrides: list[str]) -> dict[str, Any]:
    cfg = config(model_name, device, overrides)
    pl.seed_everything(0, verbose=False)
    timer = StepTimer(warmup, steps)
    if variant == "bare":
        return {"train_img_s": bare_loop(cfg, warmup, steps)}
    datamodule, module, trainer = build(cfg, extra_callbacks=[timer], **_trainer_limits(timer))
    if variant == "textbook":
        trainer.fit(module, train_dataloaders=textbook_loader(cfg, cfg.data.batch_size))
    else:
        trainer.fit(module, datamodule=datamodule)
    result = {"train_img_s": timer.images_per_second}
    if variant == "mnistlab":
        result["infer_img_s"] = inference(module, datamodule)
    return result


def bare_loop(cfg, warmup: int, steps: int) -> float:
    """The same data path and network in a plain loop: what Lightning's per-step cost is measured against."""
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
                          else "cpu")
    configure_device(cfg, device)
    datamodule, module = build_datamodule(cfg), build_model(cfg).to(device)
    datamodule.setup("fit")
    if device.type == "cuda":
        datamodule.train_set = tuple(t.to(device) for t in datamodule.train_set)
    optimizer = module.build_optimizer()  # the configured optimizer; a schedule costs nothing measurable
    module.train()
    step, images, start = 0, 0, 0.0
    while step < warmup + steps:
        for batch in datamodule.train_dataloader():
            if step == warmup:
                _sync()
                start = time.perf_counter()
            x, y = datamodule.prepare_batch(tuple(t.to(device, non_blocking=True) for t in batch), train=True)
            loss = F.cross_entropy(module(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step > warmup:
                images += len(y)
            if step == warmup + steps:
                break
    _sync()
    return images / (time.perf_counter() - start)


def inference(module, datamodule, repeats: int = 2) -> float:
    datamodule.setup("test")
    images, _ = datamodule.test_set
    module.eval()
    device = module.device
    with torch.inference_mode():
        x, _ = datamodule.prepare_batch((images[:1000].to(device), None), train=False)
        module(x)  # warm-up
        _sync()
        start = time.perf_counter()
        for _ in range(repeats):
            for chunk in images.split(1000):
                x, _ = datamodule.prepare_batch((chunk.to(device), None), train=False)
                module(x)
        _sync()
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


def best_of_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest round (noise only ever slows a run down), with every round's figure kept."""
    best = dict(max(runs, key=lambda r: r["train_img_s"]))
    best["rounds_img_s"] = [round(r["train_img_s"], 1) for r in runs]
    return best


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for model, variants in results.items():
        row: dict[str, Any] = {v: round(variants[v]["train_img_s"], 1) for v in VARIANTS if v in variants}
        if "mnistlab" in variants and "textbook" in variants:
            row["mnistlab/textbook"] = round(row["mnistlab"] / row["textbook"], 2)
        if "mnistlab" in variants and "bare" in variants:
            row["mnistlab/bare"] = round(row["mnistlab"] / row["bare"], 2)
        if "mnistlab" in variants:
            row["inference_img_s"] = round(variants["mnistlab"].get("infer_img_s", 0.0), 1)
        row["memory_mb"] = {v: {k: val for k, val in variants[v].items() if k.endswith("_mb")} for v in variants}
        row["rounds_img_s"] = {v: variants[v].get("rounds_img_s", []) for v in variants}
        summary[model] = row
    return summary


def print_table(summary: dict[str, Any], machine: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"training images/s with augmentation ({machine})")
    for column in ("model", *VARIANTS, "mnistlab/textbook", "mnistlab/bare", "inference img/s", "peak RSS MB"):
        table.add_column(column, justify="right")
    for model, row in summary.items():
        rss = " / ".join(f"{v}:{row['memory_mb'][v].get('peak_rss_mb', 0):.0f}" for v in row["memory_mb"])
        table.add_row(model, *(f"{row.get(v, 0):,.0f}" for v in VARIANTS), f"{row.get('mnistlab/textbook', 0):.2f}",
                      f"{row.get('mnistlab/bare', 0):.2f}", f"{row.get('inference_img_s', 0):,.0f}", rss)
    Console(width=160).print(table)


def markdown(summary: dict[str, Any], args) -> str:
    lines = ["| model | textbook img/s | mnistlab img/s | bare img/s | mnistlab/textbook | mnistlab/bare | "
             "inference img/s | peak RSS MB (textbook / mnistlab / bare) |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for model in args.models:
        row = summary[model]
        rss = " / ".join(f"{row['memory_mb'][v].get('peak_rss_mb', 0):.0f}" for v in row["memory_mb"])
        lines.append(f"| {model} | {row.get('textbook', 0):,.0f} | {row.get('mnistlab', 0):,.0f} | "
                     f"{row.get('bare', 0):,.0f} | {row.get('mnistlab/textbook', 0):.2f} | "
                     f"{row.get('mnistlab/bare', 0):.2f} | {row.get('inference_img_s', 0):,.0f} | {rss} |")
    command = f"python -m mnistlab.bench --models {' '.join(args.models)} --device {args.device} --rounds {args.rounds}"
    if args.overrides:
        command += " --overrides " + " ".join(args.overrides)
    steps = ", ".join(f"{n} for {m}" for m, n in args.steps.items())
    lines += ["", f"Measured {date.today():%Y-%m-%d} on {summary['machine']} with `{command}` "
              f"(batch {args.batch_size}; {args.warmup} warm-up steps, then timed steps: {steps}; best of "
              f"{args.rounds} interleaved rounds)."]
    return "\n".join(lines) + "\n"


@report_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m mnistlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 150 cnn, 400 dnn)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each variant reports its best")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--readme", metavar="PATH", help="also write the table into a section of PATH")
    parser.add_argument("--readme-section", default="bench", help="that section's name (bench_gpu for a GPU)")
    parser.add_argument("--overrides", nargs="*", default=[], help="train config overrides, e.g. data.batch_size=256")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    silence_library_noise()
    if args.child:
        result = measure_training(args.child, args.models[0], args.device, args.warmup, args.steps, args.overrides)
        result.update(peak_memory_mb())
        print(json.dumps(result))
        return result
    args.steps = {m: args.steps or (150 if m == "cnn" else 400) for m in args.models}
    args.batch_size = config(args.models[0], args.device, args.overrides).data.batch_size
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be >= 1, got {args.rounds}")
    runs: dict[str, dict[str, list]] = {m: {v: [] for v in args.variants} for m in args.models}
    for _ in range(args.rounds):
        for m in args.models:
            for v in args.variants:
                runs[m][v].append(run_variant_process(v, m, args))
    results = {m: {v: best_of_rounds(r) for v, r in variants.items()} for m, variants in runs.items()}
    summary = summarize(results)
    summary["machine"] = machine()
    summary["torch"] = torch.__version__
    print_table({m: summary[m] for m in args.models}, summary["machine"])
    if args.readme:
        update_readme_section(Path(args.readme), args.readme_section, markdown(summary, args))
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
