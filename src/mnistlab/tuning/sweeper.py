"""A Hydra sweeper over Optuna's ask-and-tell API: Optuna samples, prunes and stores; this maps the YAML
search space to trials and each trial to one Hydra job (no released Hydra sweeper supports Optuna >= 3).

Workers started with the same command and storage share the study: each counts the study's trials and
asks for the next one under a lock beside a file-based storage, so together they run exactly ``n_trials``.
A trial whose worker died (``kill -9``) is marked failed and queued again with its parameters.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from ..config.overrides import override_value
from ..core.errors import ConfigError
from ..core.io import HOST_NAME, process_alive, write_text
from ..perf.progress import clock
from .space import SearchSpace, search_space, suggest
from .storage import admission, live_studies, open_storage, trial_env

log = logging.getLogger(__name__)
WORKER, RETRIED, ERROR = "mnistlab_worker", "mnistlab_retried", "error"


class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: str = "maximize", study_name: str | None = None,
                 storage: str | None = None, n_trials: int = 20, n_jobs: int = 1, max_failure_rate: float = 1.0,
                 pruner: Any = None, monitor: str = "val/acc", enqueue: list | None = None,
                 params: DictConfig | None = None) -> None:
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"hydra.sweeper.direction={direction}: use maximize or minimize")
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}={value}: must be a whole number >= 1")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: must lie in [0, 1]")
        if pruner is None:  # Optuna's own default would be the median pruner
            import optuna

            pruner = optuna.pruners.NopPruner()
        self.sampler, self.pruner, self.direction = sampler, pruner, direction
        self.study_name, self.storage, self.monitor = study_name, storage, monitor
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.enqueue = [dict(p) for p in (enqueue or [])]
        self.params = OmegaConf.to_container(params) if params is not None else {}
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        HydraConfig.instance().set_config(config)  # run_name's ${hydra:...} names the study; jobs set their own
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        in_process = "BasicLauncher" in str(config.hydra.launcher.get("_target_", ""))
        if self.storage is None and not in_process:
            raise ConfigError("an in-memory study cannot follow jobs in other processes; give the sweep a storage "
                              "(hydra.sweeper.storage=sqlite:///study.db or journal:study.journal)")

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        space = search_space(self.params, arguments)
        if not space.distributions:
            raise ConfigError("hydra.sweeper.params: no search space "
                              "(e.g. optimizer.lr: tag(log, interval(1e-4, 1e-2)))")
        name = self.study_name or str(self.config.get("run_name") or "mnistlab")
        with admission(self.storage):  # two workers creating one fresh SQLite schema at once collide
            study = optuna.create_study(study_name=name, storage=open_storage(self.storage), sampler=self.sampler,
                                        pruner=self.pruner, direction=self.direction, load_if_exists=True)
        if study.direction.name.lower() != self.direction:
            raise ConfigError(f"study {name} in {self.storage} is to {study.direction.name.lower()}, not "
                              f"{self.direction}; choose another hydra.sweeper.study_name")
        if self.storage is None:
            live_studies[name] = study
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
        if not study.trials:
            for params in self.enqueue:
                study.enqueue_trial(params)
        log.info("Study %s (%s): %d trials, %s %s", name, self.storage or "in memory", self.n_trials,
                 self.direction, self.config.get("optimized_metric"))
        started, finished_here = time.monotonic(), 0
        while batch := self._ask(study, space):
            jobs = [self._job_overrides(study, trial, space) for trial in batch]
            for trial in batch:
                log.info("trial %d (%d of %d) at %s: %s", trial.number, _counted(study), self.n_trials,
                         _elapsed(started), " ".join(space.overrides(trial.params)[len(space.fixed):]))
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            self.job_idx += len(batch)
            for trial, ret in zip(batch, returns, strict=True):
                self._tell(study, trial, ret, started)
            finished_here += len(batch)
            self._check_failures(study)
        write_results(study, sweep_dir, space)
        log.info("Study %s done at %s: %d trials here, %s", name, _elapsed(started), finished_here, _states(study))

    def _ask(self, study: Any, space: SearchSpace) -> list[Any]:
        """The next trials of this worker: as many as ``n_jobs`` and the study still needs."""
        batch = []
        with admission(self.storage):
            _retry_dead_workers(study)
            for _ in range(min(self.n_jobs, self.n_trials - _counted(study))):
                trial = study.ask()
                trial.set_user_attr(WORKER, f"{HOST_NAME}:{os.getpid()}")
                batch.append(trial)
        if batch and self.job_idx == 0 and batch[0].number > 0:
            # joining a study others sample (or resuming one): a sampler seeded as theirs would repeat their points
            self.sampler.reseed_rng()
        for trial in batch:
            for key, distribution in space.distributions.items():
                suggest(trial, key, distribution)
        return batch

    def _job_overrides(self, study: Any, trial: Any, space: SearchSpace) -> list[str]:
        env = trial_env(self.storage, study.study_name, trial._trial_id, self.monitor)
        return [*space.overrides(trial.params), f"hydra.sweep.subdir={trial.number}",
                *(f"+hydra.job.env_set.{key}={override_value(value)}" for key, value in env.items())]

    def _tell(self, study: Any, trial: Any, ret: Any, started: float) -> None:
        import optuna
        from optuna.trial import TrialState

        try:
            value = ret.return_value
            error = None if isinstance(value, (int, float)) and math.isfinite(value) else \
                f"the job returned {value!r}, not a finite {self.config.get('optimized_metric')}"
        except optuna.TrialPruned as pruned:
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d pruned at %s: %s", trial.number, _elapsed(started), pruned)
            return
        except Exception as err:  # noqa: BLE001  the job's own failure, already in its metrics.json and train.log
            error = str(err).splitlines()[0] if str(err) else type(err).__name__
        if error is None:
            study.tell(trial, value)
            best = study.best_trial
            log.info("trial %d: %.4f at %s; best %.4f (trial %d)", trial.number, value, _elapsed(started),
                     best.value, best.number)
        else:
            trial.set_user_attr(ERROR, error[:1000])
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed at %s: %s", trial.number, _elapsed(started), error)

    def _check_failures(self, study: Any) -> None:
        from optuna.trial import TrialState

        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and RETRIED not in t.user_attrs]
        failed = sum(t.state == TrialState.FAIL for t in done)
        if done and failed / len(done) > self.max_failure_rate:
            raise RuntimeError(f"{failed} of {len(done)} trials failed, more than hydra.sweeper.max_failure_rate="
                               f"{self.max_failure_rate}; the last error: {done[-1].user_attrs.get(ERROR)}")


def _counted(study: Any) -> int:
    """Trials that count towards ``n_trials``: those started, but for a dead worker's, which were queued again
    (a queued trial counts once a worker takes it)."""
    from optuna.trial import TrialState

    return sum(RETRIED not in t.user_attrs and t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def _retry_dead_workers(study: Any) -> None:
    """A running trial whose worker was a process of this host that is gone: failed, and queued again."""
    import optuna
    from optuna.trial import TrialState

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(frozen.user_attrs.get(WORKER, "")).rpartition(":")
        if host != HOST_NAME or not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        trial = optuna.trial.Trial(study, frozen._trial_id)
        trial.set_user_attr(RETRIED, f"its worker (pid {pid}) died; queued again")
        study.tell(frozen.number, state=TrialState.FAIL)
        study.enqueue_trial(frozen.params, user_attrs={"mnistlab_retry_of": frozen.number})
        log.warning("trial %d: its worker (pid %s) is gone; queued again", frozen.number, pid)


def _states(study: Any) -> str:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _elapsed(started: float) -> str:
    return clock(time.monotonic() - started)


def write_results(study: Any, sweep_dir: Path, space: SearchSpace) -> None:
    """``optimization_results.yaml``: the study's best trial (from every worker) and its trial states."""
    import yaml
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    results: dict[str, Any] = {"name": study.study_name, "direction": study.direction.name.lower(),
                               "trials": _states(study)}
    if complete:
        best = study.best_trial
        params = {k: yaml.safe_load(v) if k in space.text_keys else v for k, v in best.params.items()}
        results.update(best_trial=best.number, best_value=best.value, best_params=params)
    write_text(sweep_dir / "optimization_results.yaml", yaml.safe_dump(results, sort_keys=False))
