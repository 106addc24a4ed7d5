"""The Hydra callback that refuses impossible values before Hydra writes anything (``ClaimRunDir``, which
runs next, refuses occupied run folders)."""

from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..config.rundir import resume_in_place
from ..errors import MnistlabError, debug_enabled


class PreflightCheck(Callback):
    """Runs before the run directory and its .hydra/ files are made."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig

        from .build import check_buildable

        try:
            HydraConfig.instance().set_config(config)
            check_buildable(config)
            resume_in_place(config)
        except MnistlabError as err:
            if debug_enabled():
                raise
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
