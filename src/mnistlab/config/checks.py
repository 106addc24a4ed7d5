"""Checks of the values that no mnistlab constructor owns: the Trainer's, torch's schedulers', the device.

The DataModule, augmentation, networks, classifier and schedules check their own keys when they are
built (``config.rules``); ``training.preflight`` builds them before anything is written.
"""

from __future__ import annotations

import difflib
import inspect

import torch
from omegaconf import DictConfig, OmegaConf

from ..core.errors import ConfigError
from . import rules
from .compose import group_options
from .devices import ALIASES, DEVICES
from .devices import check_device as check_device_named
from .resume import RESUME_CHANGES


def _limit(key: str, value) -> None:
    rules.check(key, value, lambda v: v == -1 or v > 0, "must be > 0 (or -1 for no limit)", whole=True)


def check_device(cfg: DictConfig) -> None:
    """The device asked for must exist here (``config.devices``), and bf16 must be supported where it runs."""
    device = cfg.get("device")
    if device is not None:
        check_device_named(device)
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if accelerator != device and ALIASES.get(accelerator, accelerator) in DEVICES:  # given itself, Lightning's way
        check_device_named(accelerator, "trainer.accelerator=", "trainer.accelerator=auto or cpu")
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32-true"))
    if rules.switch("bf16_where_native", cfg.get("bf16_where_native", False)) and precision not in ("32-true", "32"):
        raise ConfigError(f"bf16_where_native=true chooses bf16-mixed itself where the device has it, else "
                          f"float32; trainer.precision={precision} says otherwise: drop one of them")
    if precision.startswith("bf16") and torch.cuda.is_available() and accelerator in ("gpu", "cuda", "auto") \
            and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"trainer.precision={precision}: {torch.cuda.get_device_name(0)} has no bfloat16 "
                          "support; use trainer.precision=16-mixed or 32-true")


def device_count(devices) -> int:
    if isinstance(devices, int) and not isinstance(devices, bool):
        return devices
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    return len(devices) if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)) else 1


def check_cuda_graph(cfg: DictConfig) -> None:
    """``model.cuda_graph``: the captured step is one whole update on one device, replayed; what Lightning
    would do around an update (clipping, accumulation, loss scaling, DDP's gradient sync) has no place in it."""
    if not OmegaConf.select(cfg, "model.cuda_graph", default=False):
        return
    trainer = cfg.get("trainer") or {}
    refusals = [
        (trainer.get("gradient_clip_val"), "trainer.gradient_clip_val (clipping)"),
        ((trainer.get("accumulate_grad_batches") or 1) != 1, "trainer.accumulate_grad_batches > 1"),
        (str(trainer.get("precision", "32-true")).startswith("16"), f"trainer.precision={trainer.get('precision')} "
                                                                     "(loss scaling reads the gradients on the host)"),
        ("ddp" in str(trainer.get("strategy", "")) or trainer.get("num_nodes", 1) not in (None, 1)
         or device_count(trainer.get("devices")) > 1, "more than one device (the graph runs on one)"),
        (OmegaConf.select(cfg, "model.compile", default=False), "model.compile"),
        ("Plateau" in str(OmegaConf.select(cfg, "scheduler.scheduler._target_", default="")),
         "a plateau schedule (it waits for validation)"),
    ]
    for refused, what in refusals:
        if refused:
            raise ConfigError(f"model.cuda_graph=true does not combine with {what}; drop one of them")


# torch's own schedulers take these unchecked (a zero step size divides by zero mid-fit)
_TORCH_SCHEDULER_RULES = {
    "step_size": lambda key, v: rules.positive(key, v, whole=True),
    "gamma": rules.positive,
    "factor": rules.open_fraction,
    "patience": lambda key, v: rules.non_negative(key, v, whole=True),
}


_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def check_arguments(key: str, node) -> None:
    """Every key of a ``_target_`` node must be an argument of its target: one line naming a typo such as
    ``+trainer.bogus=1``, instead of the constructor's ``TypeError`` inside Hydra's multi-line error."""
    from hydra.utils import get_object

    if not isinstance(node, DictConfig):
        return
    if "_target_" not in node:
        raise ConfigError(f"{key}: has no _target_ (what to build), only {', '.join(map(str, node))}; "
                          f"choose one of the {key.split('.')[0]} options or give {key}._target_")
    target = str(node._target_)
    try:
        obj = get_object(target)
    except Exception as err:  # noqa: BLE001 - any import failure is the same user error
        raise ConfigError(f"{key}._target_={target}: cannot be imported ({str(err).splitlines()[0]})") from None
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # a builtin without a signature: its own error will have to do
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for name in node:
        if name in _HYDRA_KEYS or name in params:
            continue
        close = difflib.get_close_matches(str(name), list(params), n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"it takes {', '.join(list(params)[:12])}"
        raise ConfigError(f"{key}.{name}: not an argument of {target}; {hint}")


def check_config(cfg: DictConfig) -> None:
    """Refuse impossible Trainer, seed and device values, and unknown arguments of any ``_target_``, before
    any data is loaded or file written."""
    for key in ("trainer", "data", "model", "optimizer", "scheduler.scheduler"):
        check_arguments(key, OmegaConf.select(cfg, key, default=None))
    for section in ("callbacks", "logger"):
        for name, node in (cfg.get(section) or {}).items():
            if isinstance(node, DictConfig) and "_target_" not in node and name in group_options(section):
                continue  # a recipe's settings for a logger this run does not use (speedrun with logger=csv)
            check_arguments(f"{section}.{name}", node)
    for key in ("trainer.max_epochs", "trainer.max_steps"):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            _limit(key, value)
    clip = OmegaConf.select(cfg, "trainer.gradient_clip_val", default=None)
    if clip is not None:
        rules.check("trainer.gradient_clip_val", clip, lambda v: v > 0, "must be > 0 (or null for no clipping)")
    scheduler = OmegaConf.select(cfg, "scheduler.scheduler", default=None) or {}
    if str(scheduler.get("_target_", "")).startswith("torch."):
        for name, rule in _TORCH_SCHEDULER_RULES.items():
            if scheduler.get(name) is not None:
                rule(f"scheduler.scheduler.{name}", scheduler[name])
    limit = OmegaConf.select(cfg, "trainer.limit_train_batches", default=None)
    if limit is not None:
        rules.check("trainer.limit_train_batches", limit, lambda v: v > 0,
                    "must be > 0 (a count of batches or a fraction of them): 0 would test an untrained model")
    seed = cfg.get("seed")
    if seed is not None:
        rules.seed("seed", seed)
    check_device(cfg)
    check_cuda_graph(cfg)
    changes = cfg.get("resume_changes", "refuse")
    if changes not in RESUME_CHANGES:
        raise ConfigError(f"resume_changes must be refuse or apply, got {changes!r}")
    precision = cfg.get("float32_matmul_precision")
    if precision not in (None, "highest", "high", "medium"):
        raise ConfigError(f"float32_matmul_precision must be highest, high or medium, got {precision!r}")
