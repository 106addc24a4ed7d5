"""The one entry helper of the Hydra commands: pre-flight the command line, run Hydra, errors as one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .config.compose import CONFIG_DIR, check_required, compose, in_multirun, tool_help
from .config.rundir import discard_if_unused
from .core.errors import ConfigError, debug_enabled, report_errors
from .core.logs import library_logs_in_run_log

T = TypeVar("T")


def preflight_overrides(argv: Sequence[str], config_name: str = "train") -> None:
    """Compose the command line once before Hydra does, so a typo costs one clear line and writes nothing.

    Sweeps (``-m``) and Hydra's own flags (``--help``, ``--cfg``) are left to Hydra: a sweep's values are
    lists that only the sweeper expands.
    """
    if any(a in ("-m", "--multirun") or a.startswith(("-", "hparams_search=")) for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("hydra")]
    try:
        cfg = compose(overrides, config_name=config_name)
        if config_name != "train":
            check_required(cfg, config_name)
    except ConfigError as err:
        if debug_enabled():  # the traceback shows Hydra's own error as the cause
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def drop_null_groups(argv: Sequence[str]) -> list[str]:
    """``logger=null`` (the Lightning+Hydra template's way to switch a group off) as Hydra's own ``~logger``:
    Hydra 1.3 refuses ``null`` as a group's option."""
    groups = {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}
    return [f"~{a.split('=', 1)[0]}" if a.endswith("=null") and a.split("=", 1)[0] in groups else a for a in argv]


def expand_home(argv: Sequence[str]) -> list[str]:
    """``key=~/path`` as ``key=/home/me/path`` for every setting (Hydra would keep a folder named ``~``);
    ``~key`` alone is Hydra's deletion and stays."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        out.append(f"{key}={os.path.expanduser(value)}" if sep and value.startswith("~") else arg)
    return out


def hydra_command(config_name: str, run: Callable, multirun: Callable | None = None,
                  prepare_argv: Callable[[list[str]], list[str]] | None = None) -> Callable[[], T]:
    """``main()`` for ``python -m mnistlab.<config_name>``: ``run(cfg)`` under ``@hydra.main`` with its
    root config, the command line pre-flighted, a user's error one ``error:`` line and exit code 2.
    ``multirun(cfg)``, when given, runs each job of a sweep instead (it reports its own errors);
    ``prepare_argv`` completes the command line first (a resume replays its run's overrides)."""
    import hydra

    def task(cfg):
        with library_logs_in_run_log():
            if multirun is not None and in_multirun():
                return multirun(cfg)
            try:
                return report_errors(run)(cfg)
            except SystemExit as exit_:
                if exit_.code:  # failed or interrupted: a folder with nothing of the run's in it goes
                    from hydra.core.hydra_config import HydraConfig

                    hydra = HydraConfig.get()
                    discard_if_unused(Path(hydra.runtime.output_dir), f"{hydra.job.name}.log")
                raise

    hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(task)

    def main() -> T:
        if config_name != "train" and any(a in ("--help", "-h") for a in sys.argv[1:]):
            print(tool_help(config_name), end="")
            raise SystemExit(0)
        sys.argv[1:] = expand_home(drop_null_groups(sys.argv[1:]))
        if prepare_argv is not None:
            sys.argv[1:] = prepare_argv(sys.argv[1:])
        preflight_overrides(sys.argv[1:], config_name)
        return hydra_main()

    return main
