"""Hydra finds sweepers only under ``hydra_plugins``: this names mnistlab's Optuna sweeper there.

Hydra imports every ``hydra_plugins`` module at start-up, in any Hydra app of this environment, so this
module stays light: Optuna is imported only when a sweep starts.
"""

from mnistlab.tuning.sweeper import OptunaSweeper


class MnistlabOptunaSweeper(OptunaSweeper):
    """``hydra/sweeper=mnistlab_optuna``: Optuna's ask-and-tell over Hydra jobs (see mnistlab.tuning.sweeper)."""
