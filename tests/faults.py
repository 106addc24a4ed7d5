"""Faults a test injects into a real training process (loaded there through PYTHONPATH=tests)."""

import os
import signal
from pathlib import Path

import pytorch_lightning as pl


class SignalInHook(pl.Callback):
    """Sends this very process a real signal from inside one Lightning hook, at a chosen epoch and batch:
    the way to reach a hook (mid-validation, at an epoch's end) that a timed kill from outside would hit
    only by luck."""

    def __init__(self, hook: str, epoch: int | None = 1, batch: int = 0, signum: int = signal.SIGTERM) -> None:
        self.epoch, self.batch, self.signum = epoch, batch, signum
        setattr(self, hook, self._fire)

    def _fire(self, trainer, *args, **kwargs) -> None:
        batch_idx = args[-1] if args and isinstance(args[-1], int) else self.batch
        # once per run folder: a resume replays the run's config, this callback included, and must go through
        sent = Path(trainer.default_root_dir) / ".fault-sent"
        if (not sent.exists() and not trainer.sanity_checking and self.epoch in (None, trainer.current_epoch)
                and batch_idx >= self.batch):
            sent.touch()
            os.kill(os.getpid(), self.signum)
