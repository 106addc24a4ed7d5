"""The Optuna sweeper: search spaces, pruning, storages, parallel workers, resume after kill -9, the dashboard,
and best_params.yaml as a command that reruns the best trial."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from mnistlab.config.compose import compose
from mnistlab.config.overrides import override_value, overrides_between
from mnistlab.config.rundir import FolderTaken, claim, release
from mnistlab.core.errors import ConfigError
from mnistlab.tuning.space import search_space
from mnistlab.tuning.storage import lock_path, open_storage

from helpers import FAST, free_port, summary_rows, synthetic_overrides

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sweep_command(synthetic_root, *args, config_dir=None):
    extra = ["--config-dir", str(config_dir)] if config_dir else []
    return [sys.executable, "-m", "mnistlab.train", *extra, *FAST, *synthetic_overrides(synthetic_root),
            *map(str, args)]


def load(storage, name):
    return optuna.load_study(study_name=name, storage=open_storage(storage))


# --- in-process: the search-space grammar, override values, storages, the shared sweep folder -----------------

def test_search_space_maps_hydra_grammar_to_optuna():
    space = search_space({"optimizer.lr": "tag(log, interval(0.0001, 0.01))",
                          "model.net.hidden": "choice([300,100], [64])",
                          "data.batch_size": "range(32, 129, 32)", "model.net.dropout": "0.2"},
                         ["trainer.max_epochs=3", "seed=1,2"])
    d = space.distributions
    assert d["optimizer.lr"] == FloatDistribution(0.0001, 0.01, log=True)
    assert d["model.net.hidden"] == CategoricalDistribution(["[300,100]", "[64]"])  # lists kept as override text
    assert d["data.batch_size"] == IntDistribution(32, 128, step=32)
    assert d["seed"] == CategoricalDistribution([1, 2])  # a command-line sweep joins the space
    assert space.fixed == ["model.net.dropout=0.2", "trainer.max_epochs=3"]
    assert space.overrides({"optimizer.lr": 0.001, "model.net.hidden": "[64]", "seed": 2}) == [
        "model.net.dropout=0.2", "trainer.max_epochs=3", "optimizer.lr=0.001", "model.net.hidden=[64]", "seed=2"]
    assert search_space({"x": "tag(int, interval(1, 4))"}, []).distributions["x"] == IntDistribution(1, 4)


@pytest.mark.parametrize("spec, message", [
    ("tag(log, interval(0.0, 1.0))", "a log interval needs low > 0"),
    ("interval(2.0, 1.0)", "needs low < high"),
    ("tag(cubic, interval(1.0, 2.0))", "unknown tag 'cubic'"),
    ("choice(1,", "hydra.sweeper.params"),
])
def test_bad_search_space_is_one_line(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        search_space({"optimizer.lr": spec}, [])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", [None, True, 3, 1e-05, 0.1, float("inf"), "relu", "a b", "it's", "1.5", "null",
                                   [512, 256], {"a": 1, "b": [1, "x y"]}, "sqlite:///x/y.db"])
def test_override_values_read_back_as_themselves(value):
    parsed = OverridesParser.create().parse_overrides([f"key={override_value(value)}"])[0].value()
    assert parsed == value


def test_overrides_between_rebuild_the_target_config():
    base = compose([])
    target = compose(["model=dnn", "optimizer.lr=0.003", "model.net.hidden=[64,32]", "+trainer.limit_val_batches=5",
                      "~logger"])
    overrides = overrides_between(_task(compose(["model=dnn"])), _task(target))
    assert sorted(overrides) == sorted(["optimizer.lr=0.003", "model.net.hidden=[64,32]",
                                        "+trainer.limit_val_batches=5", "~logger"])
    assert _task(compose(["model=dnn", *overrides])) == _task(target) != _task(base)


def _task(cfg):
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}


def test_storage_specs(tmp_path):
    with pytest.raises(ConfigError, match="not a storage"):
        open_storage("study.db")
    journal = open_storage(f"journal:{tmp_path / 'a' / 'study.journal'}")
    optuna.create_study(study_name="s", storage=journal)
    assert (tmp_path / "a" / "study.journal").stat().st_size > 0
    assert lock_path(f"sqlite:///{tmp_path}/x.db") == tmp_path / ".x.db.ask.lock"
    assert lock_path(None) is None and lock_path("postgresql://host/db") is None


CLAIM = ("import sys, pathlib; from mnistlab.config.rundir import claim; "
         "claim(pathlib.Path(sys.argv[1]), shared_by=(sys.argv[2:] or [None])[0])")


def claim_in_another_process(folder, shared_by=None):
    return subprocess.run([sys.executable, "-c", CLAIM, str(folder), *([shared_by] if shared_by else [])],
                          capture_output=True, text=True, timeout=120)


def test_workers_of_one_study_share_a_sweep_folder_no_one_else_can_take(tmp_path):
    folder = tmp_path / "sweep"
    study = "study s in sqlite:///x.db"
    claim(folder, shared_by=study)
    try:
        other = claim_in_another_process(folder)  # an ordinary sweep while the workers hold the folder
        assert other.returncode != 0 and "being written by another mnistlab run" in other.stderr
        (folder / "multirun.yaml").write_text("{}")
        second = claim_in_another_process(folder, study)  # the same study's second worker
        assert second.returncode == 0, second.stderr
    finally:
        release(folder)
    with pytest.raises(FolderTaken, match="already holds another run's files"):
        claim(folder, shared_by="study t in sqlite:///x.db")  # another study's workers


def test_hyperband_and_median_pruners_are_selectable():
    for choice, kind in (("hyperband", optuna.pruners.HyperbandPruner), ("median", optuna.pruners.MedianPruner),
                         ("none", optuna.pruners.NopPruner)):
        cfg = compose(["hparams_search=optuna", f"hydra/sweeper/pruner={choice}", "trainer.max_epochs=7"])
        from hydra.utils import instantiate

        pruner = instantiate(cfg.hydra.sweeper.pruner)
        assert isinstance(pruner, kind)
    assert pruner is not None and cfg.hydra.sweeper.monitor == "val/acc"


# --- real sweeps, in processes of their own ---------------------------------------------------------------------

# SGD at a learning rate of 1e-6 leaves the network at chance after an epoch, where the others are near 100%
PRUNING_SEARCH = """\
# @package _global_
defaults:
  - override /model: dnn
  - override /optimizer: sgd
  - override /hydra/sweeper: mnistlab_optuna
hydra:
  mode: MULTIRUN
  sweeper:
    n_trials: 3
    pruner:
      n_startup_trials: 2
    params:
      optimizer.lr: tag(log, interval(0.000001, 0.1))
    enqueue:
      - {optimizer.lr: 0.1}
      - {optimizer.lr: 0.05}
      - {optimizer.lr: 0.000001}
"""


@pytest.mark.slow
@pytest.mark.parallel
def test_a_clearly_bad_trial_is_pruned_after_its_first_epoch(synthetic_root, tmp_path):
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "pruning.yaml").write_text(PRUNING_SEARCH)
    sweep = tmp_path / "sweep"
    result = subprocess.run(sweep_command(synthetic_root, "hparams_search=pruning", "trainer.max_epochs=3",
                                          f"hydra.sweep.dir={sweep}", config_dir=tmp_path / "conf"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["job"]: r for r in summary_rows(sweep / "summary.csv")}
    assert [rows[j]["status"] for j in ("0", "1", "2")] == ["ok", "ok", "pruned"]
    assert "optimizer.lr=1e-06" in rows["2"]["overrides"] and "pruned after epoch 0" in rows["2"]["error"]
    assert float(rows["0"]["epochs"]) == 3 and float(rows["1"]["epochs"]) == 3  # the good trials finish
    assert json.loads((sweep / "2" / "metrics.json").read_text())["status"] == "pruned"
    assert "trial 2 pruned" in result.stderr + result.stdout
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["trials"] == "2 complete, 1 pruned" and results["best_trial"] in (0, 1)


CRASHY_SEARCH = """\
# @package _global_
defaults:
  - optuna
hydra:
  sweeper:
    n_trials: 3
    enqueue:
      - {optimizer.lr: 1e12}
    params:
      optimizer.lr: choice(1e12, 0.001)
"""


@pytest.mark.slow
@pytest.mark.parallel
def test_a_diverging_trial_is_a_failed_trial_and_the_study_goes_on(synthetic_root, tmp_path):
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "crashy.yaml").write_text(CRASHY_SEARCH)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = subprocess.run(sweep_command(synthetic_root, "hparams_search=crashy", "optimizer=sgd",
                                          "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                                          f"hydra.sweeper.storage={storage}",
                                          config_dir=tmp_path / "conf"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = summary_rows(tmp_path / "sweep" / "summary.csv")
    assert len(rows) == 3
    outcome = {r["overrides"].split("optimizer.lr=")[1].split()[0]: r["status"] for r in rows}
    assert outcome == {"1000000000000.0": "failed", "0.001": "ok"}
    trials = load(storage, "mnistlab_dnn").trials
    assert trials[0].params["optimizer.lr"] == 1e12  # the enqueued trial
    for trial in trials:
        diverges = trial.params["optimizer.lr"] == 1e12
        assert trial.state == (TrialState.FAIL if diverges else TrialState.COMPLETE)
        assert ("training diverged" in trial.user_attrs.get("error", "")) == diverges


@pytest.fixture(scope="session")
def two_worker_study(synthetic_root, tmp_path_factory):
    """Two worker processes, started together with one command and one SQLite storage, five trials in all
    (their logs in files: two pipes read one after the other could fill and stall a worker)."""
    tmp = tmp_path_factory.mktemp("two_workers")
    storage = f"sqlite:///{tmp / 'study.db'}"
    cmd = sweep_command(synthetic_root, "hparams_search=optuna", "trainer.max_epochs=2", "hydra.sweeper.n_trials=5",
                        "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweeper.storage={storage}",
                        f"hydra.sweep.dir={tmp / 'sweep'}", "model.net.hidden=choice([64],[32,16])")
    logs = [tmp / f"worker{i}.log" for i in range(2)]
    workers = [subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    for worker, log in zip(workers, logs, strict=True):
        assert worker.wait(timeout=600) == 0, log.read_text()[-3000:]
    return tmp, storage


@pytest.mark.slow
def test_two_workers_together_run_exactly_n_trials(two_worker_study):
    tmp, storage = two_worker_study
    trials = load(storage, "mnistlab_dnn").trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4] and {t.state for t in trials} == {TrialState.COMPLETE}
    workers = {t.user_attrs["mnistlab_worker"] for t in trials}
    assert len(workers) == 2  # both took part
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 5  # no trial's parameters twice
    jobs = sorted(p.name for p in (tmp / "sweep").iterdir() if (p / "metrics.json").is_file())
    assert jobs == ["0", "1", "2", "3", "4"]  # one shared sweep folder, one job folder per trial
    rows = summary_rows(tmp / "sweep" / "summary.csv")
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)


@pytest.mark.slow
def test_best_params_rerun_the_best_trial(two_worker_study, tmp_path):
    tmp, storage = two_worker_study
    best = yaml.safe_load((tmp / "sweep" / "best_params.yaml").read_text())
    study = load(storage, "mnistlab_dnn")
    assert best["job"] == str(study.best_trial.number) and best["value"] == pytest.approx(study.best_value)
    for key in ("optimizer.lr", "data.batch_size", "model.net.dropout", "optimizer.weight_decay", "trainer.max_epochs"):
        assert key in best["params"]  # every parameter, the ones all trials shared too
    assert best["command"].startswith("python -m mnistlab.train model=dnn run_name=optuna_dnn ")
    job_config = OmegaConf.to_container(OmegaConf.load(tmp / "sweep" / best["job"] / ".hydra" / "config.yaml"))
    assert _task(compose(best["overrides"])) == job_config
    result = subprocess.run([sys.executable, "-m", "mnistlab.train", *best["overrides"], f"hydra.run.dir={tmp_path}"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rerun = json.loads((tmp_path / "metrics.json").read_text())
    assert rerun["val/acc_best"] == pytest.approx(best["value"], abs=0.02)


@pytest.mark.slow
def test_optuna_dashboard_reads_the_study(two_worker_study):
    _, storage = two_worker_study
    port = free_port()
    dashboard = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")  # the venv's own
    server = subprocess.Popen([dashboard, storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.load(response)["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "the dashboard never answered"
        (study,) = [s for s in studies if s["study_name"] == "mnistlab_dnn"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", timeout=10) as response:
            detail = json.load(response)
        assert [t["state"] for t in detail["trials"]] == ["Complete"] * 5
        assert {p["name"] for p in detail["trials"][0]["params"]} >= {"optimizer.lr", "model.net.hidden"}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_study_resumes_after_its_sweep_is_killed(synthetic_root, tmp_path):
    storage = f"journal:{tmp_path / 'study.journal'}"
    cmd = sweep_command(synthetic_root, "hparams_search=optuna", "trainer.max_epochs=30", "hydra.sweeper.n_trials=3",
                        f"hydra.sweeper.storage={storage}", "++trainer.limit_train_batches=2",
                        "hydra/sweeper/pruner=none")
    first = subprocess.Popen([*cmd, f"hydra.sweep.dir={tmp_path / 'first'}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:  # wait until trial 1 has reported an epoch: one trial done, one running
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            trials = load(storage, "mnistlab_dnn").trials if (tmp_path / "study.journal").exists() else []
            if len(trials) == 2 and trials[1].intermediate_values:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the first sweep never reached its second trial")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    result = subprocess.run([*cmd, f"hydra.sweep.dir={tmp_path / 'second'}"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(storage, "mnistlab_dnn").trials
    killed = [t for t in trials if "mnistlab_retried" in t.user_attrs]
    assert [t.number for t in killed] == [1] and killed[0].state == TrialState.FAIL
    counted = [t for t in trials if t not in killed]
    assert len(counted) == 3 and {t.state for t in counted} == {TrialState.COMPLETE}
    retry = [t for t in counted if t.user_attrs.get("mnistlab_retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == killed[0].params  # the killed trial ran again, as it was
    assert "queued again" in result.stderr + result.stdout
