"""Losing nothing and explaining everything: divergence stops, interrupt checkpoints, resume checks."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from .errors import CheckpointError, MnistlabError


class DivergenceError(MnistlabError):
    """The training loss stopped being a finite number."""


class DivergenceGuard(pl.Callback):
    """Stop at the first step whose loss is NaN or infinite, naming the step, the likely cause and
    the last good checkpoint.

    On the CPU the loss is read every step (a few microseconds). On a GPU reading it back is a host
    sync, so the default (``check_every_n_steps=None``) reads a device-side flag every 20 steps; the
    step reported is still the first bad one.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.check_every_n_steps is None:
            self.check_every_n_steps = 1 if pl_module.device.type == "cpu" else 20

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        step = trainer.global_step
        if self.check_every_n_steps == 1:
            if not math.isfinite(loss.item()):
                raise DivergenceError(self._message(trainer, pl_module, step, loss))
            return
        bad_step = torch.where(torch.isfinite(loss.detach()), -1, step)
        if self._first_bad is not None:
            bad_step = torch.where(self._first_bad >= 0, self._first_bad, bad_step)
        self._first_bad = bad_step
        if step % self.check_every_n_steps == 0 or batch_idx + 1 == trainer.num_training_batches:
            first = int(self._first_bad)
            if first >= 0:
                raise DivergenceError(self._message(trainer, pl_module, first, loss))

    @staticmethod
    def _message(trainer, pl_module, step: int, loss: torch.Tensor) -> str:
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        lr = optimizer.param_groups[0]["lr"] if optimizer else float("nan")
        saved = [Path(cb.dirpath) / "last.ckpt" for cb in trainer.checkpoint_callbacks if cb.dirpath]
        checkpoint = next((p for p in saved if p.is_file()), None)
        last_good = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was saved before it"
        clip = trainer.gradient_clip_val
        advice = "clip gradients harder" if clip else "clip gradients (trainer.gradient_clip_val=1.0)"
        return (f"training diverged: loss became {float(loss)} at step {step} (epoch {trainer.current_epoch}); "
                f"the learning rate is the usual cause (optimizer.lr={lr:g}): lower it, or {advice}; {last_good}")


class InterruptCheckpoint(pl.Callback):
    """On Ctrl+C or SIGTERM, save ``checkpoints/interrupted.ckpt`` and say how to resume."""

    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.global_step == 0:
            return
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            kind = "SIGTERM" if isinstance(exception, SIGTERMException) else "interrupt"
            print(f"{kind} at step {trainer.global_step}: saved {self.path}; resume with ckpt_path={self.path}",
                  file=sys.stderr, flush=True)


def save_rng_states(checkpoint: dict[str, Any]) -> None:
    """Global RNG states (dropout and anything else drawing from torch's default generators)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    checkpoint["rng_states"] = states


def restore_rng_states(states: dict[str, Any] | None) -> None:
    if not states:
        return
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def check_resumable(checkpoint: dict[str, Any], model: pl.LightningModule, path: str | Path) -> None:
    """The checkpoint must hold this run's kind of model with the same tensor shapes."""
    stored = (checkpoint.get("mnistlab") or {}).get("module")
    if stored is not None and stored != type(model).__name__:
        raise CheckpointError(f"{path}: holds a {stored} but this run builds a {type(model).__name__}; "
                              "pick the model/config the checkpoint was trained with")
    expected = model.state_dict()
    for name, tensor in checkpoint["state_dict"].items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(tensor.shape)} but this run's config builds "
                f"{tuple(expected[name].shape)}; resume with the config the checkpoint was trained with "
                f"(its model.net: {checkpoint.get('hyper_parameters', {}).get('net')})"
            )
    metric_state = ("train_", "val_", "test_")
    missing = [k for k in expected if k not in checkpoint["state_dict"] and not k.startswith(metric_state)]
    if missing:
        raise CheckpointError(f"{path}: lacks {missing[:3]} that this run's model has; the configs differ")
