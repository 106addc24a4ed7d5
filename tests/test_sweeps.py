"""Sweeps and scale-out, small and real: a 2x2 multirun, launchers, 2-process DDP (Optuna: test_tuning.py)."""

import json
import subprocess
import sys

import pytest
import yaml

from mnistlab.config.compose import compose

from helpers import FAST, summary_rows, synthetic_overrides


def train_cli(*args, timeout=600):
    flags = [a for a in args if a == "-m"]  # Hydra's flags must come before the overrides
    overrides = [str(a) for a in args if a != "-m"]
    return subprocess.run([sys.executable, "-m", "mnistlab.train", *flags, *FAST, *overrides], capture_output=True,
                          text=True, timeout=timeout)


def test_multirun_summary_ranks_jobs_and_keeps_failures(synthetic_root, tmp_path):
    result = train_cli("-m", *synthetic_overrides(synthetic_root), "trainer.max_epochs=1", "optimizer=sgd",
                       "model=softmax,dnn", "optimizer.lr=0.1,1e12", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = summary_rows(tmp_path / "summary.csv")
    assert len(rows) == 4 and {r["job"] for r in rows} == {"0", "1", "2", "3"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["params"] == "model=dnn optimizer.lr=1000000000000.0"
    assert "training diverged" in failed[0]["error"] and rows[-1]["status"] == "failed"  # failures rank last
    scores = [float(r["val/acc_best"]) for r in rows if r["status"] == "ok"]
    assert scores == sorted(scores, reverse=True)
    for job in range(4):  # every job in its own directory, with its own TensorBoard run for the hparams tab
        assert (tmp_path / str(job) / ".hydra" / "overrides.yaml").is_file()
    assert (tmp_path / "0" / "tensorboard").is_dir()
    assert "| job | params | status |" in (tmp_path / "summary.md").read_text()
    best = yaml.safe_load((tmp_path / "best_params.yaml").read_text())
    assert best["job"] == rows[0]["job"] and best["value"] == pytest.approx(float(rows[0]["val/acc_best"]))
    assert "sweep" in result.stdout and "failed" in result.stdout
    assert [ln.split(" at ")[0] for ln in result.stderr.splitlines() if ln.startswith("[sweep] job")] == [
        f"[sweep] job {i} of 4" for i in (1, 2, 3, 4)]  # which job of how many, and when it started


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel(synthetic_root, tmp_path):
    result = train_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *synthetic_overrides(synthetic_root),
                       "trainer.max_epochs=1", "model=softmax,dnn", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = summary_rows(tmp_path / "summary.csv")
    assert sorted(r["params"] for r in rows) == ["model=dnn", "model=softmax"]
    assert all(r["status"] == "ok" for r in rows)


def test_slurm_launcher_config_composes():
    cfg = compose(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min == 120
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm is True


@pytest.mark.slow
def test_ddp_two_cpu_processes_one_run_dir(synthetic_root, tmp_path):
    result = train_cli("trainer=ddp", "trainer.devices=2", *synthetic_overrides(synthetic_root), "model=dnn",
                       "trainer.max_epochs=2", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * 9  # 540 training images, 270 per process, batches of 32 per device
    assert metrics["test/acc"] > 0.9  # the same quality as one process on these easy classes
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [".hydra", "checkpoints", "tensorboard"]
    assert len(list((tmp_path / "checkpoints").glob("*.ckpt"))) == 2  # best + last, written once (rank 0)
    assert result.stdout.count("test accuracy") == 1  # one summary, from rank 0
