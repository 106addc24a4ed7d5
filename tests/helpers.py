"""Running the real training entry in-process on small data."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from mnistlab.config.compose import compose
from mnistlab.training.fit import train

# The speedrun's network shape (conf/experiment/speedrun.yaml) before its crop and pooling order.
SPEEDRUN_NET = dict(channels=(8, 16, 64), kernel_size=[5, 3, 3], batch_norm=[False, True, True],
                    pool=["stride", "max", "max"], dense=64)

# TensorBoard pictures (a figure per epoch, an embedding at test) only where a test looks at them
NO_PICTURES = "callbacks.tensorboard_visuals=null"
FAST = ["trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null",
        NO_PICTURES]


def synthetic_overrides(root: Path) -> list[str]:
    return [f"data.data_dir={root}", "data.download=false", "data.batch_size=32", "data.eval_batch_size=100"]


def run_train(run_dir: Path, overrides: list[str], pictures: bool = False) -> dict:
    fast = [o for o in FAST if not (pictures and o == NO_PICTURES)]
    cfg = compose([*fast, *overrides, f"hydra.run.dir={run_dir}"], output_dir=run_dir)
    return train(cfg)


class Payload:
    """A pickle payload: unpickling it creates ``marker``, which proves that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def command(name: str, *args) -> Result:
    """``python -m mnistlab.<name> args`` in this process: its ``main()`` with that command line, its exit
    code and what it printed. For the cases a command refuses before it runs anything (one ``error:``
    line, exit 2); a whole run is the subprocess smoke tests' job."""
    import importlib

    from hydra.core.global_hydra import GlobalHydra

    main = importlib.import_module(f"mnistlab.{name}").main
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, [f"mnistlab/{name}.py", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()  # as a fresh process would find it
        logging.getLogger().handlers.clear()  # a run's job logging (train.log) ends with it
    return Result(code, out.getvalue(), err.getvalue())


def summary_rows(path: Path) -> list[dict]:
    """The rows of a sweep's summary.csv."""
    with open(path) as f:
        return list(csv.DictReader(f))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
