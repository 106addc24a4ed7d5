"""Progress of the long measuring commands (results, speedrun, bench): which job of how many, the time so
far, and while a child process runs a heartbeat with what it has reached (its best checkpoint's epoch)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HEARTBEAT_SECONDS = 60.0
_BEST = re.compile(r"epoch(?P<epoch>\d+)-val_acc(?P<acc>[0-9.]+?)(?:-v\d+)?\.ckpt$")


def clock(seconds: float) -> str:
    """``4m05s``, or ``1h02m03s`` from an hour on: elapsed times in every progress line."""
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def checkpoint_status(run_dir: Path) -> Callable[[], str]:
    """What a training run has reached, read from its newest best-checkpoint name (``best-epoch007-val_acc0.99``)."""
    def status() -> str:
        found = sorted((run_dir / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
        match = _BEST.search(found[-1].name) if found else None
        return f"best so far: epoch {int(match['epoch'])}, val/acc {float(match['acc']):.4f}" if match else "starting"
    return status


class Progress:
    def __init__(self, tool: str, total: int, every: float = HEARTBEAT_SECONDS) -> None:
        self.tool, self.total, self.every = tool, total, every
        self.started, self.count = time.monotonic(), 0

    def say(self, line: str) -> None:
        print(f"[{self.tool}] {line}", file=sys.stderr, flush=True)

    def skip(self, label: str) -> None:
        """A job that had finished before: counted, not run."""
        self.count += 1
        self.say(f"{self.count}/{self.total} {label}: finished before, reused")

    def run(self, command: Sequence[str], label: str, status: Callable[[], str] | None = None,
            capture: bool = False) -> subprocess.CompletedProcess:
        """Run one job's process; every ``every`` seconds say how long it has run and ``status()``."""
        self.count += 1
        self.say(f"{self.count}/{self.total} {label} (at {clock(time.monotonic() - self.started)}): "
                 f"{' '.join(command[1:])}")
        started = time.monotonic()
        pipe = subprocess.PIPE if capture else subprocess.DEVNULL
        child = subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True)
        while True:
            try:  # communicate() may be retried after a timeout without losing output
                out, err = child.communicate(timeout=self.every)
                break
            except subprocess.TimeoutExpired:
                extra = f"; {status()}" if status is not None else ""
                self.say(f"{self.count}/{self.total} {label}: running for {clock(time.monotonic() - started)}"
                         f" (all jobs {clock(time.monotonic() - self.started)}){extra}")
        self.say(f"{self.count}/{self.total} {label}: done in {clock(time.monotonic() - started)}"
                 + ("" if child.returncode == 0 else f", exit {child.returncode}"))
        return subprocess.CompletedProcess(list(command), child.returncode, out, err)
