"""The configured optimizer and learning-rate schedule, built from the ``optimizer`` and ``scheduler`` config
groups (Hydra ``_partial_`` specs) and checked in the config's words."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate

from ..config import rules
from ..config.compose import group_options
from ..errors import ConfigError


def check_optimizer(spec: Mapping[str, Any]) -> None:
    """The optimizer's own arguments, in the config's words (torch's messages name no key)."""
    if spec.get("lr") is not None:
        rules.positive("optimizer.lr", spec["lr"])
    if spec.get("weight_decay") is not None:
        rules.non_negative("optimizer.weight_decay", spec["weight_decay"])
    if spec.get("momentum") is not None:
        rules.fraction("optimizer.momentum", spec["momentum"])
    betas = spec.get("betas")
    if betas is not None and (len(betas) != 2 or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {list(betas)}")


def build_optimizer(spec: Mapping[str, Any] | None, params: Iterable[torch.nn.Parameter], *,
                    mixed_precision_clipping: bool = False) -> torch.optim.Optimizer:
    """The optimizer ``spec`` describes, over ``params``. ``mixed_precision_clipping``: the Trainer clips
    gradients under a mixed precision."""
    if not spec:
        raise ConfigError(f"no optimizer configured (choose optimizer={'|'.join(group_options('optimizer'))})")
    spec = dict(spec)
    check_optimizer(spec)
    if spec.get("fused") and mixed_precision_clipping:
        # Lightning's mixed-precision plugin refuses to clip the gradients of fused optimizers
        # (they unscale inside step()); without clipping, fused runs under autocast as well.
        spec["fused"] = None
    try:
        return instantiate(spec, _partial_=True)(params=params)
    except ValueError as err:  # torch's own argument checks: "Invalid epsilon value: -1"
        raise ConfigError(f"optimizer: {err}") from None


def build_scheduler(spec: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer,
                    total_steps: Callable[[], int]):
    """The schedule ``spec["scheduler"]`` describes over ``optimizer`` (None without one); a factory that
    takes ``total_steps`` and is not given it gets ``total_steps()``, the fit's optimizer steps."""
    spec = spec or {}
    if spec.get("scheduler") is None:
        return None
    factory = instantiate(spec["scheduler"], _partial_=True)
    kwargs = {}
    if "total_steps" in inspect.signature(factory.func).parameters and "total_steps" not in factory.keywords:
        kwargs["total_steps"] = int(total_steps())
    return factory(optimizer, **kwargs)


def lightning_optimizers(spec: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer, scheduler):
    """What ``configure_optimizers`` returns: the optimizer, with the schedule's stepping interval,
    frequency and monitored metric when there is one."""
    if scheduler is None:
        return optimizer
    spec = spec or {}
    config = {"scheduler": scheduler, "interval": spec.get("interval", "step"), "frequency": spec.get("frequency", 1)}
    if spec.get("monitor"):
        config["monitor"] = spec["monitor"]
    return {"optimizer": optimizer, "lr_scheduler": config}
