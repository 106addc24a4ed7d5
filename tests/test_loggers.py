"""Every logger option trains to the end and holds the run's final metrics and hyperparameters, read back
with that library's own reader; train.log holds what the run logged."""

from __future__ import annotations

import csv
import time

import pytest

from helpers import FAST, command, run_train, synthetic_overrides


@pytest.fixture
def train_with(synthetic_root, tmp_path):
    def train(logger: str):
        metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=2",
                                       f"logger={logger}"])
        return metrics, tmp_path

    return train


def _csv_rows(run_dir):
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_csv_logger_holds_every_epoch_and_the_final_metrics(train_with):
    metrics, run_dir = train_with("csv")
    rows = _csv_rows(run_dir)
    assert [float(r["val/acc"]) for r in rows if r["val/acc"]][-1] == pytest.approx(metrics["val/acc"])
    final = next(r for r in rows if r["hp/test_acc"])
    assert float(final["hp/test_acc"]) == pytest.approx(metrics["test/acc"])
    assert "model" in (run_dir / "csv" / "hparams.yaml").read_text()


@pytest.mark.slow
@pytest.mark.parallel
def test_mlflow_logger_run_reads_back_with_the_mlflow_client(train_with):
    pytest.importorskip("mlflow", reason="the track extra is not installed: pip install -e '.[track]'")
    from mlflow.tracking import MlflowClient

    metrics, run_dir = train_with("mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["hp/test_acc"] == pytest.approx(metrics["test/acc"])
    assert run.data.params["net/hidden"] == "[300, 100]"
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # one per epoch


@pytest.mark.slow
@pytest.mark.parallel
def test_wandb_logger_writes_an_offline_run_with_no_network(train_with):
    pytest.importorskip("wandb", reason="the track extra is not installed: pip install -e '.[track]'")
    _, run_dir = train_with("wandb")
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    # wandb-core (its own process) writes the records after finish() returns: seen 0.1-10 s later here
    deadline = time.time() + 120
    while b"hp/test_acc" not in run_file.read_bytes() and time.time() < deadline:
        time.sleep(0.5)
    records = run_file.read_bytes()  # wandb's protobuf records: the keys are stored as plain strings
    assert b"hp/test_acc" in records and b"val/acc" in records and b"net" in records


@pytest.mark.slow
@pytest.mark.parallel
def test_many_loggers_and_no_logger(train_with, synthetic_root, tmp_path):
    pytest.importorskip("mlflow", reason="the track extra is not installed")
    metrics, run_dir = train_with("many")
    assert (run_dir / "mlflow.db").is_file() and list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert float(next(r for r in _csv_rows(run_dir) if r["hp/test_acc"])["hp/test_acc"]) == metrics["test/acc"]
    quiet = tmp_path / "quiet"
    result = command("train", *FAST, *synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=1",
                     "logger=null", f"hydra.run.dir={quiet}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in quiet.iterdir() if not p.name.startswith(".")) == ["checkpoints", "metrics.json",
                                                                                    "train.log"]


def test_train_log_holds_lightnings_lines_and_the_error(synthetic_root, tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    result = command("train", *FAST, *synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=1",
                     f"hydra.run.dir={good}")
    assert result.returncode == 0
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in (good / "train.log").read_text()
    result = command("train", *FAST, *synthetic_overrides(synthetic_root), "model=dnn", "optimizer=sgd",
                     "optimizer.lr=1e12", f"hydra.run.dir={bad}")
    assert result.returncode == 2
    log = (bad / "train.log").read_text()
    assert "[mnistlab][ERROR] - error: training diverged: loss became nan" in log
    # a run that fails before its first step leaves no folder at all (nothing of it to keep)
    missing, never = tmp_path / "nowhere", tmp_path / "never"
    result = command("train", *FAST, f"data.data_dir={missing}", "data.download=false", f"hydra.run.dir={never}")
    assert result.returncode == 2 and "error: mnist train files not found" in result.stderr
    assert not never.exists() and not missing.exists()
