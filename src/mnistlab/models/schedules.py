"""Learning-rate schedules beyond torch's own: TensorFlow's exponential decay, cosine with warm-up, one-cycle.

Factories that take ``total_steps`` get it filled in from the Trainer (optimizer steps of the whole fit).
The multiplier objects are plain classes so scheduler state stays plain data in checkpoints.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

from ..config import rules

KEY = "scheduler.scheduler"


class ExponentialDecay:
    """``decay_rate ** (step / decay_steps)``, floored with ``staircase``: TF's ``exponential_decay``."""

    def __init__(self, decay_steps: int, decay_rate: float, staircase: bool = False) -> None:
        rules.positive(f"{KEY}.decay_steps", decay_steps, whole=True)
        rules.positive(f"{KEY}.decay_rate", decay_rate)
        self.decay_steps, self.decay_rate, self.staircase = decay_steps, decay_rate, staircase

    def __call__(self, step: int) -> float:
        progress = step // self.decay_steps if self.staircase else step / self.decay_steps
        return self.decay_rate**progress


class WarmupCosine:
    """Linear warm-up over ``warmup_steps``, then cosine from 1 down to ``min_ratio`` at ``total_steps``."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> None:
        rules.non_negative(f"{KEY}.warmup_steps", warmup_steps, whole=True)
        rules.check(f"{KEY}.min_ratio", min_ratio, lambda v: 0 <= v <= 1, "must be in [0, 1]")
        self.total_steps, self.warmup_steps, self.min_ratio = max(1, total_steps), warmup_steps, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def exponential_decay(optimizer: Optimizer, decay_steps: int, decay_rate: float, staircase: bool = False) -> LambdaLR:
    return LambdaLR(optimizer, ExponentialDecay(decay_steps, decay_rate, staircase))


def cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> LambdaLR:
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_ratio))


def one_cycle(optimizer: Optimizer, total_steps: int, max_lr_factor: float = 10.0,
              pct_start: float = 0.25) -> OneCycleLR:
    """One-cycle policy peaking at ``max_lr_factor`` x the optimizer's configured learning rate."""
    # torch's own checks fail mid-fit with a traceback, and a negative peak would climb the loss
    rules.positive(f"{KEY}.max_lr_factor", max_lr_factor)
    rules.open_fraction(f"{KEY}.pct_start", pct_start)
    max_lr = [group["lr"] * max_lr_factor for group in optimizer.param_groups]
    defaults = optimizer.defaults
    has_momentum = "betas" in defaults or defaults.get("momentum", 0) > 0
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(2, total_steps), pct_start=pct_start,
                      cycle_momentum=has_momentum)
