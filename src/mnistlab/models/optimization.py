"""The configured optimizer and learning-rate schedule, built from the ``optimizer`` and ``scheduler`` config
groups (Hydra ``_partial_`` specs) and checked in the config's words."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate

from ..config import rules
from ..config.compose import group_options
from ..core.errors import ConfigError


def check_optimizer(spec: Mapping[str, Any]) -> None:
    """The optimizer's own arguments, in the config's words (torch's messages name no key)."""
    if spec.get("lr") is not None:
        rules.positive("optimizer.lr", spec["lr"])
    if spec.get("weight_decay") is not None:
        rules.non_negative("optimizer.weight_decay", spec["weight_decay"])
    if spec.get("momentum") is not None:
        rules.fraction("optimizer.momentum", spec["momentum"])
    if spec.get("betas") is not None:
        rules.pair("optimizer.betas", spec["betas"], lambda b1, b2: 0 <= b1 < 1 and 0 <= b2 < 1,
                   "must be two numbers in [0, 1)")


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


# A schedule's progress through its steps; every other entry of its state describes the schedule itself.
_PROGRESS = {"last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial"}
log = logging.getLogger("mnistlab")


def before_restore(checkpoint: dict[str, Any], optimizer_spec: Mapping[str, Any] | None,
                   scheduler_spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A resume whose optimizer or schedule changed (``resume_changes=apply``), before Lightning restores
    them: another optimizer class starts from fresh state (its moments do not carry over: SGD's momentum
    buffer is not Adam's), and the old schedule's state is not restored over the new one. Returns where
    the run stands, for ``after_restore``; None for a checkpoint without training state."""
    if "optimizer_states" not in checkpoint:
        return None
    stored = checkpoint.get("hyper_parameters") or {}
    old, new = stored.get("optimizer") or {}, dict(optimizer_spec or {})
    changed = old != new or (stored.get("scheduler") or None) != (dict(scheduler_spec or {}) or None)
    other_class = old.get("_target_") != new.get("_target_") and bool(checkpoint["optimizer_states"])
    if other_class:
        checkpoint["optimizer_states"] = []
    if changed:
        checkpoint["lr_schedulers"] = []
    progress = (checkpoint.get("loops") or {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    return {"step": int(checkpoint.get("global_step", 0)), "epoch": int(progress.get("processed", 0)),
            "changed": changed, "fresh_state": f"{old.get('_target_')} -> {new.get('_target_')}" if other_class else ""}


def _schedule_shape(scheduler) -> dict[str, Any] | None:
    if scheduler is None or isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return None  # a plateau schedule follows the metric, not the step count
    return {k: v for k, v in scheduler.state_dict().items() if k not in _PROGRESS}


def after_restore(optimizer: torch.optim.Optimizer, config, resumed: dict[str, Any],
                  build_optimizer: Callable, build_scheduler: Callable) -> None:
    """After Lightning restored a resumed run's optimizer and schedule: where the configured hyperparameters
    or schedule differ from the restored ones (a changed ``optimizer.*``, another schedule, a longer run that
    stretches a one-cycle or cosine schedule), the optimizer takes the configured values and the schedule is
    the configured one, advanced to the run's step as if it had run from the start. Nothing changes when
    nothing differs: a plain resume continues exactly."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    fresh = build_optimizer(params)  # holds no state until it steps: only its hyperparameters are read
    schedule = build_scheduler(fresh)
    if schedule is not None and _schedule_shape(schedule) is not None:
        interval, frequency = (config.interval, config.frequency) if config is not None else ("step", 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": a replay, on purpose
            for _ in range((resumed["step"] if interval == "step" else resumed["epoch"]) // frequency):
                schedule.step()
    restored = config.scheduler if config is not None else None
    if not resumed["changed"] and _schedule_shape(restored) == _schedule_shape(schedule):
        return
    for group, configured in zip(optimizer.param_groups, fresh.param_groups, strict=True):
        group.update({k: v for k, v in configured.items() if k != "params"})
    if restored is not None and schedule is not None:
        restored.load_state_dict(schedule.state_dict())
    fresh_state = f"; optimizer {resumed['fresh_state']}: its state (moments) starts afresh" \
        if resumed["fresh_state"] else ""
    log.warning(f"resume at step {resumed['step']}: the optimizer and schedule follow the configuration "
                f"(learning rate now {optimizer.param_groups[0]['lr']:.6g}){fresh_state}")
