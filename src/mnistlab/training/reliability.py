"""Callbacks that lose nothing and explain why a run stopped: the divergence guard, the interrupt checkpoint,
early stopping that survives a run without a validation."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.trainer.states import RunningStage, TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ..config.overrides import resume_command
from ..core.errors import ConfigError, MnistlabError
from ..core.logs import record_in_run_log


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


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` for a run folder that may have moved: a run copied or moved elsewhere
    and resumed there keeps its best checkpoint, found in its new folder. Lightning forgets the best score
    when the folder's path changed and keeps the old folder's best file as the one to test."""

    @property
    def state_key(self) -> str:  # Lightning's own key: checkpoints of either class resume with the other
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            def moved(path):
                return str(Path(new) / Path(path).relative_to(old)) if path and Path(path).is_relative_to(old) \
                    else path

            state_dict = {**state_dict, "dirpath": new,
                          **{k: moved(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path",
                                                                   "last_model_path") if k in state_dict},
                          "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
        super().load_state_dict(state_dict)


class ResumableEarlyStopping(EarlyStopping):
    """Lightning's ``EarlyStopping`` that waits for a validation instead of failing without one: a run that
    ``max_steps`` or a signal stops before its first validation, or a resume that starts mid-epoch, has
    no ``val/acc`` yet. A monitored name that validation never logs is still an error, as one line."""

    @property
    def state_key(self) -> str:  # Lightning's own key: checkpoints of either class resume with the other
        return super().state_key.replace(type(self).__qualname__, EarlyStopping.__qualname__, 1)

    def _validate_condition_metric(self, logs: dict[str, torch.Tensor]) -> bool:
        if self.monitor in logs:
            return True
        stage = self.monitor.split("/", 1)[0] + "/"
        logged = sorted(k for k in logs if k.startswith(stage))
        if logged:
            raise ConfigError(f"callbacks.early_stopping.monitor={self.monitor}: not a metric this run logs; "
                              f"choose one of {', '.join(logged)}")
        return False


def restart_validation(trainer) -> None:
    """Mark the validation that was interrupted as begun but without a batch done, so that a resume runs
    it again whole. Lightning would continue it at the batch it stopped at, with the metric states of
    the batches before lost: the epoch then logs no ``val/acc`` and early stopping fails on resume."""
    progress = trainer.fit_loop.epoch_loop.val_loop.batch_progress
    for counts in (progress.total, progress.current):
        counts.reset()
        counts.ready = counts.started = 1
    progress.is_last_batch = False


class InterruptCheckpoint(pl.Callback):
    """On Ctrl+C or SIGTERM, save ``checkpoints/interrupted.ckpt`` and say how to resume."""

    FILENAME = "interrupted"

    def __init__(self, dirpath: str, filename: str = FILENAME) -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.global_step == 0:
            return
        last = self.path.with_name("last.ckpt")
        if trainer.state.fn == TrainerFn.TESTING and last.is_file():
            # the fit is over and last.ckpt holds all of it; testing has loaded the best epoch's weights and
            # callback states, which a checkpoint taken now would pass off as the run's end
            if trainer.is_global_zero:
                line = f"interrupted while testing; the fit is complete: test it with: {resume_command(last)}"
                print(line, file=sys.stderr, flush=True)
                record_in_run_log(line, logging.WARNING)
            return
        if trainer.state.fn == TrainerFn.FITTING and trainer.state.stage == RunningStage.VALIDATING:
            restart_validation(trainer)
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            kind = "SIGTERM" if isinstance(exception, SIGTERMException) else "interrupt"
            line = f"{kind} at step {trainer.global_step}: saved {self.path}; resume with: {resume_command(self.path)}"
            print(line, file=sys.stderr, flush=True)
            record_in_run_log(line, logging.WARNING)


@contextlib.contextmanager
def signal_exit_codes(trainer):
    """Ctrl+C and SIGTERM end a run with 130 and 143 (128 + the signal, as a shell reports a process the
    signal ended) in every phase. Lightning ends a Ctrl+C with exit code 1, and a SIGTERM that reaches it
    while testing lets the test finish with 0."""
    interrupted: list[int] = []

    def on_sigint(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    try:
        yield
    except SIGTERMException:
        raise SystemExit(143) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except SystemExit:
        if interrupted:  # Lightning's sys.exit(1) after it handled the Ctrl+C
            raise SystemExit(130) from None
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    if trainer.received_sigterm:
        raise SystemExit(143)
