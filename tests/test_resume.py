"""A run is one story: resume from ``ckpt_path`` alone, changes applied or refused out loud, records continued,
a killed sweep finished by running it again, a resume command that pastes."""

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mnistlab.cli import expand_home
from mnistlab.config.overrides import ABSENT, differences, resume_command
from mnistlab.config.resume import may_change, record_of, replay_overrides
from mnistlab.models import optimization

from helpers import FAST, command, run_train, summary_rows, synthetic_overrides


def train(*args, timeout=300, **kwargs):
    flags = [a for a in args if a == "-m"]  # Hydra's flags come before the overrides
    return subprocess.run([sys.executable, "-m", "mnistlab.train", *flags, *(str(a) for a in args if a != "-m")],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def csv_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def fake_run(tmp_path: Path, overrides: list[str]) -> Path:
    """A run folder as Hydra leaves it: its overrides and config recorded, one checkpoint."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / ".hydra" / "config.yaml").write_text("{}")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run_dir


# -- the rules, in-process --------------------------------------------------------------------------------
def test_replay_puts_the_runs_overrides_first_and_the_command_wins(tmp_path):
    run_dir = fake_run(tmp_path, ["experiment=tf_dnn", "trainer.max_epochs=3", "ckpt_path=old.ckpt"])
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert replay_overrides([f"ckpt_path={ckpt}", "trainer.max_epochs=5"]) == [
        "experiment=tf_dnn", f"ckpt_path={ckpt}", "trainer.max_epochs=5"]  # the old ckpt_path is not replayed
    assert replay_overrides(["-m", f"ckpt_path={ckpt}"]) == ["-m", f"ckpt_path={ckpt}"]  # sweeps are left alone
    assert replay_overrides(["ckpt_path=/elsewhere/x.ckpt"]) == ["ckpt_path=/elsewhere/x.ckpt"]  # no record


def test_the_record_is_the_start_that_wrote_the_checkpoint(tmp_path):
    run_dir = fake_run(tmp_path, ["model=dnn"])
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    failed = run_dir / ".hydra" / "resume_2026-12-06_10-00-00"  # a resume that died before saving anything
    failed.mkdir()
    (failed / "overrides.yaml").write_text(yaml.safe_dump(["model=dnn", "optimizer.lr=5"]))
    (failed / "config.yaml").write_text("{}")
    os.utime(ckpt, (time.time() - 60, time.time() - 60))
    os.utime(run_dir / ".hydra" / "config.yaml", (time.time() - 120, time.time() - 120))
    assert record_of(ckpt) == run_dir / ".hydra"
    os.utime(ckpt)  # saved after that resume began: it is that resume's
    assert record_of(ckpt) == failed


def test_which_settings_may_change_mid_run():
    assert all(map(may_change, ["trainer.max_epochs", "trainer.limit_train_batches", "logger.csv.name",
                                "trainer.devices", "data.data_dir", "ckpt_path"]))
    assert not any(map(may_change, ["optimizer.lr", "data.batch_size", "augment.rotation", "model.net.hidden",
                                    "trainer.max_epochs_extra", "seed"]))
    assert differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}, "d": 4}) == [
        ("a.b", 1, 3), ("a.c", 2, ABSENT), ("d", ABSENT, 4)]


def test_a_setting_added_since_the_run_and_off_changes_nothing(tmp_path, capsys):
    """A run recorded before a setting existed resumes under today's mnistlab when that setting is off."""
    from omegaconf import OmegaConf

    from mnistlab.config.resume import check_changes
    from mnistlab.core.errors import ConfigError

    record = tmp_path / "run" / ".hydra"
    record.mkdir(parents=True)
    OmegaConf.save({"augment": {"rotation": 10.0}, "seed": 0}, record / "config.yaml")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    today = OmegaConf.create({"augment": {"rotation": 10.0, "stroke_p": 0.0, "blur_p": 0, "elastic": None},
                              "bf16_where_native": False, "seed": 0})
    assert check_changes(today, last, record) == []
    assert capsys.readouterr().err == ""  # nothing to say
    today.augment.stroke_p = 0.5  # added since, and on: another training than the run's
    with pytest.raises(ConfigError, match=r"augment\.stroke_p was \(absent\), now 0\.5"):
        check_changes(today, last, record)


def test_tilde_is_expanded_in_values_only():
    home = os.path.expanduser("~")
    assert expand_home(["ckpt_path=~/runs/x.ckpt", "~logger", "data.data_dir=~"]) == [
        f"ckpt_path={home}/runs/x.ckpt", "~logger", f"data.data_dir={home}"]
    result = command("train", "ckpt_path=~/no-such-run/last.ckpt")
    assert result.returncode == 2 and f"{home}/no-such-run/last.ckpt" in result.stderr


def test_resume_command_pastes_in_bash_for_any_folder_name(tmp_path):
    for name in ("plain", "a b", "x,y=z", "it's", 'say "hi"'):
        path = tmp_path / name / "checkpoints" / "last.ckpt"
        line = resume_command(path)
        # bash splits it into words; Hydra's parser reads the value back: the same path
        words = subprocess.run(["bash", "-c", f"printf '%s\\n' {line.split(' ', 3)[3]}"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        from hydra.core.override_parser.overrides_parser import OverridesParser

        assert OverridesParser.create().parse_override(words[0]).value() == str(path)


def test_an_optimizer_change_is_applied_not_mixed():
    """SGD with momentum, 30 steps, saved; resumed as Adam with a one-cycle schedule: Adam's own state and
    hyperparameters, the schedule advanced to step 30 as if it had run from the start."""
    net = torch.nn.Linear(4, 2)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(30):
        net(torch.randn(8, 4)).pow(2).mean().backward()
        sgd.step()
    old = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "momentum": 0.9}
    new = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.001, "weight_decay": 0.01}
    schedule = {"scheduler": {"_target_": "mnistlab.models.schedules.one_cycle", "_partial_": True}, "interval": "step"}
    checkpoint = {"hyper_parameters": {"optimizer": old, "scheduler": None}, "global_step": 30,
                  "optimizer_states": [sgd.state_dict()], "lr_schedulers": []}
    resumed = optimization.before_restore(checkpoint, new, schedule)
    assert checkpoint["optimizer_states"] == [] and resumed["changed"] and resumed["fresh_state"]

    adam = optimization.build_optimizer(new, net.parameters())  # what configure_optimizers builds
    scheduler = optimization.build_scheduler(schedule, adam, lambda: 100)

    class Config:
        interval, frequency = "step", 1

    Config.scheduler = scheduler
    optimization.after_restore(adam, Config, resumed, lambda p: optimization.build_optimizer(new, p),
                               lambda o: optimization.build_scheduler(schedule, o, lambda: 100))
    reference = optimization.build_scheduler(schedule, torch.optim.Adam(torch.nn.Linear(4, 2).parameters(),
                                                                        lr=0.001), lambda: 100)
    for _ in range(30):
        reference.step()
    assert scheduler.last_epoch == 30 and adam.param_groups[0]["lr"] == pytest.approx(reference.get_last_lr()[0])
    assert adam.param_groups[0]["weight_decay"] == 0.01 and "momentum" not in adam.param_groups[0]


def test_unchanged_optimizer_and_schedule_resume_exactly():
    net = torch.nn.Linear(4, 2)
    spec = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}
    schedule = {"scheduler": {"_target_": "mnistlab.models.schedules.cosine", "_partial_": True}, "interval": "step"}
    optimizer = optimization.build_optimizer(spec, net.parameters())
    scheduler = optimization.build_scheduler(schedule, optimizer, lambda: 50)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    checkpoint = {"hyper_parameters": {"optimizer": spec, "scheduler": schedule}, "global_step": 7,
                  "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()]}
    resumed = optimization.before_restore(checkpoint, spec, schedule)
    assert not resumed["changed"] and checkpoint["lr_schedulers"]
    before = (scheduler.state_dict(), optimizer.param_groups[0]["lr"])

    class Config:
        interval, frequency = "step", 1

    Config.scheduler = scheduler
    optimization.after_restore(optimizer, Config, resumed, lambda p: optimization.build_optimizer(spec, p),
                               lambda o: optimization.build_scheduler(schedule, o, lambda: 50))
    assert (scheduler.state_dict(), optimizer.param_groups[0]["lr"]) == before


# -- real runs ------------------------------------------------------------------------------------------------
@pytest.fixture
def first_epoch(synthetic_root, tmp_path):
    """One epoch of a DNN with SGD, logged to TensorBoard, CSV and MLflow, in-process."""
    run_dir = tmp_path / "run"
    run_train(run_dir, [*synthetic_overrides(synthetic_root), "model=dnn", "optimizer=sgd", "optimizer.lr=0.05",
                        "trainer.max_epochs=1", "logger=many", "callbacks.early_stopping=null"])
    hydra = run_dir / ".hydra"  # what Hydra records for a run started from the command line
    hydra.mkdir()
    overrides = [*FAST, *synthetic_overrides(synthetic_root), "model=dnn", "optimizer=sgd", "optimizer.lr=0.05",
                 "trainer.max_epochs=1", "logger=many", "~callbacks.early_stopping"]
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    from omegaconf import OmegaConf

    from mnistlab.config.compose import compose

    cfg = compose([*overrides, f"hydra.run.dir={run_dir}"], output_dir=run_dir)
    OmegaConf.save({k: v for k, v in OmegaConf.to_container(cfg).items() if k != "hydra"}, hydra / "config.yaml")
    os.utime(hydra / "config.yaml", (time.time() - 60, time.time() - 60))  # written when the run started
    return run_dir


def test_a_changed_setting_is_refused_in_one_line_naming_both_values(first_epoch, tmp_path):
    last = first_epoch / "checkpoints" / "last.ckpt"
    before = sorted(p.name for p in first_epoch.rglob("*"))
    result = command("train", f"ckpt_path={last}", "optimizer.lr=5", "data.batch_size=64")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith("error: ckpt_path: the run in") and "\n" not in line
    assert "optimizer.lr was 0.05, now 5" in line and "data.batch_size was 32, now 64" in line
    assert "resume_changes=apply" in line
    assert sorted(p.name for p in first_epoch.rglob("*")) == before  # nothing written


@pytest.mark.slow
@pytest.mark.parallel
def test_resume_from_ckpt_path_alone_continues_every_record(first_epoch, tmp_path):
    last = first_epoch / "checkpoints" / "last.ckpt"
    result = train(f"ckpt_path={last}", "trainer.max_epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resume {first_epoch}: applying trainer.max_epochs: 1 -> 3" in result.stderr
    metrics = json.loads((first_epoch / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3] and metrics["global_step"] == 3 * 17
    assert metrics["val/acc_best"] == max(row["val/acc"] for row in metrics["history"])
    # CSV: the first epoch's rows are still there, the resumed epochs follow
    epochs = sorted({int(r["epoch"]) for r in csv_rows(first_epoch) if r["val/acc"]})
    assert epochs == [0, 1, 2]
    # MLflow: one run, three validations
    with sqlite3.connect(first_epoch / "mlflow.db") as db:
        runs = db.execute("select count(*) from runs").fetchone()[0]
        steps = db.execute("select count(*) from metrics where key = 'val/acc'").fetchone()[0]
    assert runs == 1 and steps == 3
    # TensorBoard: the new events beside the old ones, one val/acc per epoch over them all
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in sorted((first_epoch / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if "val/acc" in accumulator.Tags()["scalars"]:
            values += [e.step for e in accumulator.Scalars("val/acc")]
    assert sorted(values) == [16, 33, 50]

    # resuming the finished run again: one line, nothing changes
    snapshot = {p: p.read_bytes() for p in first_epoch.rglob("*") if p.is_file() and p.name != ".mnistlab.lock"}
    again = train(f"ckpt_path={last}")
    assert again.returncode == 0 and "already finished (it trained its trainer.max_epochs=3 epochs" in again.stdout
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert len(list((first_epoch / ".hydra").glob("resume_*"))) == 1  # the no-op recorded nothing

    # a copy of the run resumed in its new place tests its own best checkpoint, still the run's best
    copy = tmp_path / "copy of run"
    shutil.copytree(first_epoch, copy)
    moved = train(f"ckpt_path={copy / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=4")
    assert moved.returncode == 0, moved.stderr[-3000:]
    copied = json.loads((copy / "metrics.json").read_text())
    assert Path(copied["best_checkpoint"]).parent == copy / "checkpoints"
    assert copied["val/acc_best"] == max(row["val/acc"] for row in copied["history"]) >= metrics["val/acc_best"]


@pytest.mark.slow
@pytest.mark.parallel
def test_resume_across_an_optimizer_change_applies_it(first_epoch):
    last = first_epoch / "checkpoints" / "last.ckpt"
    result = train(f"ckpt_path={last}", "trainer.max_epochs=2", "optimizer=adam", "scheduler=exponential",
                   "scheduler.scheduler.decay_steps=5", "resume_changes=apply", "trainer.log_every_n_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "optimizer._target_: torch.optim.SGD -> torch.optim.Adam" in result.stderr
    assert "its state (moments) starts afresh" in result.stdout  # a logged warning: Hydra logs to stdout
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["hyper_parameters"]["optimizer"]["_target_"] == "torch.optim.Adam"  # recorded
    group = checkpoint["optimizer_states"][0]["param_groups"][0]
    assert "betas" in group and group["initial_lr"] == 0.05  # Adam's groups, the replayed optimizer.lr
    # the learning rate the monitor logged follows the new schedule from step 17 on: 0.05 * 0.96 ** (step / 5)
    logged = [(int(r["step"]), float(r["lr-Adam"])) for r in csv_rows(first_epoch) if r.get("lr-Adam")]
    assert logged and all(lr == pytest.approx(0.05 * 0.96 ** (step / 5), rel=0.03) for step, lr in logged)


@pytest.mark.slow
def test_a_killed_sweep_is_finished_by_running_it_again(synthetic_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, *synthetic_overrides(synthetic_root), "model=dnn", "seed=0,1,2,3", "trainer.max_epochs=3",
            "data.batch_size=8", f"hydra.sweep.dir={sweep}"]
    process = subprocess.Popen([sys.executable, "-m", "mnistlab.train", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    target = sweep / "2" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not target.exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (sweep / "2" / "metrics.json").exists() and not (sweep / "3").exists()
    finished = {job: (sweep / job / "metrics.json").stat().st_mtime_ns for job in ("0", "1")}

    rerun = train(*args, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "job 0: finished before" in rerun.stdout and "job 1: finished before" in rerun.stdout
    assert f"job 2: resuming from {sweep / '2' / 'checkpoints'}" in rerun.stdout
    assert {job: (sweep / job / "metrics.json").stat().st_mtime_ns for job in ("0", "1")} == finished  # kept
    rows = summary_rows(sweep / "summary.csv")
    assert sorted(r["job"] for r in rows) == ["0", "1", "2", "3"] and {r["status"] for r in rows} == {"ok"}
    resumed = json.loads((sweep / "2" / "metrics.json").read_text())
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]  # epochs before the kill kept

    other = train("-m", *FAST, *synthetic_overrides(synthetic_root), "model=dnn", "seed=5,6",
                  f"hydra.sweep.dir={sweep}")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1] == (
        f"error: {sweep} already holds another run's files (multirun.yaml); choose another hydra.sweep.dir")


@pytest.mark.slow
def test_the_printed_resume_command_pastes_and_cleans_up(synthetic_root, tmp_path):
    run_dir = tmp_path / "my run, v=2"
    process = subprocess.Popen([sys.executable, "-m", "mnistlab.train", *FAST, *synthetic_overrides(synthetic_root),
                                "model=dnn", "trainer.max_epochs=200", "data.batch_size=8",
                                f"hydra.run.dir='{run_dir}'"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143
    printed = next(ln for ln in err.splitlines() if "resume with: " in ln).split("resume with: ", 1)[1]
    assert printed == resume_command(run_dir / "checkpoints" / "interrupted.ckpt")
    pasted = printed.replace("python", sys.executable, 1) + " trainer.max_epochs=2"
    result = subprocess.run(["bash", "-c", pasted], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.5
    assert not (run_dir / "checkpoints" / "interrupted.ckpt").exists()
