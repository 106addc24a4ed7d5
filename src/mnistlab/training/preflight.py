"""The Hydra callback that refuses impossible values before Hydra writes anything (``ClaimRunDir``, which
runs next, refuses occupied run folders)."""

from __future__ import annotations

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..config.rundir import resume_in_place
from ..errors import report_errors


class PreflightCheck(Callback):
    """Runs before the run directory and its .hydra/ files are made."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from .resume import AlreadyFinished

        try:
            report_errors(self._check)(config)  # the one-line error of every command
        except AlreadyFinished as done:
            print(done)
            raise SystemExit(0) from None

    @staticmethod
    def _check(config: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        from .build import check_buildable
        from .resume import check_resume

        HydraConfig.instance().set_config(config)
        model = check_buildable(config)
        resume_in_place(config)
        check_resume(config, model)
