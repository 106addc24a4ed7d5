"""What ``python -m mnistlab.bench`` measures in each variant's process, and how its rounds combine.

A variant's process trains a fixed number of steps after a warm-up (``measure_training``); the parent
runs the variants in interleaved rounds and takes medians (``combine_rounds``, ``summarize``): figures are
the median of their rounds, ratios the median of each round's own ratio, so a burst or stall of a shared
machine in one round moves neither.
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

import pytorch_lightning as pl
import torch

from ..config.compose import compose
from ..models import inference
from ..training.build import build
from ..training.preflight import check_buildable
from .baselines import StepTimer, bare_loop, lightning_floor, textbook_loader, trainer_limits
from .variants import ALL_VARIANTS, RATIOS


def config(model: str, device: str, overrides: list[str]):
    # Everything a training run has, minus what needs validation or a logger (the timed loop has neither).
    without = ("model_summary", "tensorboard_visuals", "model_checkpoint", "last_checkpoint", "early_stopping",
               "lr_monitor")
    graph = ["model.cuda_graph=true"] if device == "gpu" else []  # the GPU's fast path (a user's override wins)
    cfg = compose([f"model={model}", "augment=digits", f"trainer.accelerator={device}", "logger={}", *graph,
                   *(f"callbacks.{name}=null" for name in without), *overrides], output_dir="/tmp/mnistlab-bench")
    check_buildable(cfg)
    return cfg


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
        result["infer_img_s"] = inference_throughput(module, datamodule)
    return result


def inference_throughput(module, datamodule, repeats: int = 2) -> float:
    """Test images per second through the tools' own inference path (``models.inference.logits``)."""
    datamodule.setup("test")
    images, _ = datamodule.test_set
    inference.logits(module, images[:1000])  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        inference.logits(module, images)  # ends on the host: the device work is done
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
