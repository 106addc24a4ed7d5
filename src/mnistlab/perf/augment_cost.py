"""What each augmentation costs per batch, beside the training step it feeds (``bench --augment``).

Each transform runs on a batch of real-sized random images on the training device; the reference is one
plain training step (forward, loss, backward, optimizer) of a recipe's network at the same batch size, timed
in the same process, so the share a transform adds to a step is a ratio of two figures measured together.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from ..config.compose import compose
from ..data.augment import BatchAugment
from ..data.datasets import dataset_info
from ..training.build import build_model
from .baselines import sync, training_device

AFFINE = dict(rotation=12.0, shift=2.5, scale=0.12)
ELASTIC = dict(elastic_alpha=34.0, elastic_sigma=4.0)
TRANSFORMS: dict[str, dict[str, Any]] = {
    "affine (rotation, shift, zoom)": AFFINE,
    "elastic (alpha 34, sigma 4)": ELASTIC,
    "affine + elastic (one grid_sample)": {**AFFINE, **ELASTIC},
    "affine + slant 15 + stretch 0.2 (one grid_sample)": {**AFFINE, "shear": 15.0, "stretch": 0.2},
    "brightness + contrast": dict(brightness=0.2, contrast=0.2),
    "random erasing (p 0.5)": dict(erase_p=0.5),
    "stroke thickness (p 0.5, radius 1)": dict(stroke_p=0.5),
    "blur (p 0.5, 1-2 passes)": dict(blur_p=0.5),
    "low resolution (p 0.5, sides 10-20)": dict(lowres_p=0.5),
    "all of them": {**AFFINE, **ELASTIC, "shear": 15.0, "stretch": 0.2, "brightness": 0.2, "contrast": 0.2,
                    "erase_p": 0.5, "stroke_p": 0.5, "blur_p": 0.5, "lowres_p": 0.5},
}


def _median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def augment_costs(experiment: str, device: str, warmup: int = 5, repeats: int = 30) -> dict[str, Any]:
    """Milliseconds per batch of each transform and of ``experiment``'s training step, medians of ``repeats``."""
    cfg = compose([f"experiment={experiment}", f"trainer.accelerator={device}"], output_dir="/tmp/mnistlab-bench")
    target = training_device(cfg)
    batch = int(cfg.data.batch_size)
    images = torch.rand(batch, 1, 28, 28, device=target)
    labels = torch.randint(0, 10, (batch,), device=target)
    module = build_model(cfg, dataset_info(cfg.data.dataset).input_stats()).to(target).train()
    optimizer = module.build_optimizer()  # the recipe's own optimizer

    def step() -> None:
        loss = F.cross_entropy(module(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    generator = torch.Generator(device=target).manual_seed(0)
    step_ms = _median_ms(step, warmup, repeats)
    rows = []
    for name, settings in TRANSFORMS.items():
        augment = BatchAugment(**settings)
        ms = _median_ms(lambda a=augment: a(images, generator=generator), warmup, repeats)
        rows.append({"transform": name, "ms_per_batch": round(ms, 3), "share_of_step": round(ms / step_ms, 3)})
    return {"experiment": experiment, "device": str(target), "batch_size": batch, "step_ms": round(step_ms, 3),
            "transforms": rows}


def markdown(costs: dict[str, Any]) -> str:
    lines = [f"| transform ({costs['batch_size']} images, {costs['device']}) | ms per batch | "
             f"share of a `{costs['experiment']}` training step ({costs['step_ms']:.1f} ms) |", "|---|---:|---:|"]
    lines += [f"| {r['transform']} | {r['ms_per_batch']:.2f} | {r['share_of_step']:.1%} |" for r in costs["transforms"]]
    return "\n".join(lines) + "\n"
