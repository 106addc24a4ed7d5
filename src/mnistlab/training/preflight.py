"""The pre-flight of a run: every value checked by its owner before anything is written.

``check_buildable`` builds the cheap parts (the DataModule, the network on PyTorch's ``meta`` device, its
optimizer and schedule) so each constructor refuses its own bad values; ``PreflightCheck`` runs it (and the
resume checks) as a Hydra callback, before the run folder and its ``.hydra/`` files are made. A run checked
there is not checked again by ``fit.train``; a sweep's jobs and runs started from Python are checked there.
"""

from __future__ import annotations

import os

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..config.checks import check_config
from ..config.rundir import resume_in_place
from ..core.errors import ConfigError, report_errors

_passed: list[bool] = []  # PreflightCheck passed the run this process is on, until fit.train takes it


def check_buildable(cfg: DictConfig):
    """Every value checked by its owner, before any data is loaded or file written: the Trainer-level
    checks, then the DataModule, the model, its optimizer and its schedule are built (milliseconds).
    Returns the model, on the ``meta`` device (shapes only)."""
    import torch  # here: Hydra loads this callback's module for every command, --help included

    from .build import build_datamodule, build_model
    from .transfer import check_transfer

    check_config(cfg)
    with torch.device("meta"):  # shapes without memory: a network of absurd size is refused, not allocated
        model = build_model(cfg, build_datamodule(cfg).input_stats)
    check_memory(sum(p.numel() for p in model.parameters()), cfg)
    model.build_scheduler(model.build_optimizer(), total_steps=1000)
    check_transfer(cfg, model)
    return model


def check_memory(parameters: int, cfg: DictConfig) -> None:
    """Training holds four float32 copies of each parameter (weights, gradients, two Adam moments)."""
    import torch

    need = parameters * 4 * 4
    memory = {"RAM": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}
    if torch.cuda.is_available() and cfg.trainer.get("accelerator") != "cpu":
        memory["GPU memory"] = torch.cuda.get_device_properties(0).total_memory
    for kind, have in memory.items():
        if need > have:
            raise ConfigError(f"model.net: {parameters:,} parameters need about {need / 2**30:,.0f} GiB to train, "
                              f"more than this machine's {have / 2**30:.0f} GiB of {kind}; make the network smaller")



def passed() -> bool:
    """Whether ``PreflightCheck`` passed the run this process is on; asked once, by the run itself."""
    return _passed.pop() if _passed else False


class PreflightCheck(Callback):
    """Runs before the run directory and its .hydra/ files are made."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from .resume import AlreadyFinished

        _passed.clear()
        try:
            report_errors(self._check)(config)  # the one-line error of every command
        except AlreadyFinished as done:
            print(done)
            raise SystemExit(0) from None
        _passed[:] = [True]

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _passed.clear()  # each job checks itself

    @staticmethod
    def _check(config: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        from .resume import check_resume

        HydraConfig.instance().set_config(config)
        model = check_buildable(config)
        resume_in_place(config)
        check_resume(config, model)
