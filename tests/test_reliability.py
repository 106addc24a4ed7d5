"""Fault injection: real kills, corrupt files, impossible values, diverging runs, hostile checkpoints."""

import json
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from fake_data import make_dataset, write_idx

from mnistlab.config.overrides import resume_command
from mnistlab.core.errors import CheckpointError, DataError
from mnistlab.data.datasets import SPLIT_FILES
from mnistlab.training.reliability import DivergenceError

from helpers import FAST, Payload, command, run_train, synthetic_overrides


def _deliverable_ctrl_c():
    # A job started in the background by a non-interactive shell inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: restore the default so Ctrl+C reaches the training process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def train_process(run_dir, overrides, **kwargs):
    args = [sys.executable, "-m", "mnistlab.train", *FAST, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_deliverable_ctrl_c, **kwargs)


def wait_for(path, process, timeout=240):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


RECIPE = ["model=cnn", "regularization=dropout", "augment=digits", "trainer.max_epochs=5", "data.batch_size=8",
          "optimizer=momentum", "scheduler=exponential", "scheduler.scheduler.decay_steps=50"]


@pytest.mark.slow
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(synthetic_root, tmp_path):
    overrides = [*synthetic_overrides(synthetic_root), *RECIPE]
    overrides[overrides.index("data.batch_size=32")] = "data.batch_size=8"
    straight = train_process(tmp_path / "straight", overrides)
    killed = train_process(tmp_path / "killed", overrides)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    wait_for(last, killed)
    time.sleep(0.3)  # now inside the second epoch
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    for checkpoint in (tmp_path / "killed" / "checkpoints").glob("*"):  # only complete files survive
        assert checkpoint.suffix == ".ckpt", checkpoint
        torch.load(checkpoint, weights_only=True)
    _, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err[-3000:]
    # no hydra.run.dir: the killed run continues in its own directory
    resumed = subprocess.run([sys.executable, "-m", "mnistlab.train", *FAST, *overrides, f"ckpt_path={last}"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(list((tmp_path / "killed" / ".hydra").glob("resume_*/config.yaml"))) == 1
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert b["epochs"] == a["epochs"] == 5 and b["global_step"] == a["global_step"]
    assert b["test/loss"] == pytest.approx(a["test/loss"], abs=1e-6)
    assert b["test/acc"] == a["test/acc"] and b["val/acc_best"] == a["val/acc_best"]
    # the resumed run's learning curve holds the epochs from before the kill: the same curve
    strip = [{k: v for k, v in row.items() if k != "fit_seconds"} for row in a["history"]]
    assert [{k: v for k, v in row.items() if k != "fit_seconds"} for row in b["history"]] == strip
    assert [row["epoch"] for row in b["history"]] == [1, 2, 3, 4, 5]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_save_a_checkpoint_and_exit_non_zero(signum, code, synthetic_root, tmp_path):
    overrides = [*synthetic_overrides(synthetic_root), *RECIPE, "trainer.max_epochs=50"]
    process = train_process(tmp_path, overrides)
    wait_for(tmp_path / "checkpoints" / "last.ckpt", process)  # appears whole (renamed into place)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    saved = tmp_path / "checkpoints" / "interrupted.ckpt"
    assert process.returncode == code
    assert f"saved {saved}; resume with: {resume_command(saved)}" in err
    assert torch.load(saved, weights_only=True)["global_step"] > 0


def test_divergence_stops_at_the_bad_step_with_advice(synthetic_root, tmp_path):
    with pytest.raises(DivergenceError) as err:
        run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=dnn", "optimizer=sgd",
                             "optimizer.lr=1e12", "trainer.max_epochs=3"])
    message = str(err.value)
    step = int(message.split(" at step ")[1].split(" ")[0])
    assert step < 17  # inside the first epoch (17 steps), not at its end
    assert "optimizer.lr=1e+12" in message and "trainer.gradient_clip_val" in message
    assert "no checkpoint was saved before it" in message
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


def corrupt(root, case):
    raw = root / "MNIST" / "raw"
    images, labels = raw / SPLIT_FILES["train"][0], raw / SPLIT_FILES["train"][1]
    if case == "missing":
        labels.unlink()
    elif case == "truncated":
        images.write_bytes(images.read_bytes()[:-100])
    elif case == "magic":
        data = bytearray(labels.read_bytes())
        data[2] = 0x42
        labels.write_bytes(bytes(data))
    elif case == "count":
        write_idx(labels, np.zeros(599, np.uint8))
    elif case == "labels":
        write_idx(labels, np.full(600, 11, np.uint8))
    return images, labels


@pytest.mark.parametrize("case, expected", [
    ("missing", "train files not found"),
    ("truncated", "truncated: header says shape (600, 28, 28)"),
    ("magic", "not an IDX file (bad magic number 00004201)"),
    ("count", "599 labels for 600 images"),
    ("labels", "label 11 at index 0 is outside 0-9"),
])
def test_bad_data_stops_before_training_naming_the_file(case, expected, tmp_path):
    root = make_dataset(tmp_path / "data")
    images, labels = corrupt(root, case)
    with pytest.raises(DataError) as err:
        run_train(tmp_path / "run", [*synthetic_overrides(root)])
    assert expected in str(err.value)
    named = labels if case in ("magic", "count", "labels") else images
    assert case == "missing" or str(named) in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mnistlab.train", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parallel
def test_cli_bad_data_is_one_line(tmp_path):
    root = make_dataset(tmp_path / "data")
    corrupt(root, "labels")
    result = cli(*synthetic_overrides(root), "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "outside 0-9" in lines[-1] and "Traceback" not in result.stderr


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=-0.5", "error: optimizer.lr must be > 0, got -0.5"),
    ("data.val_fraction=0", "error: data.val_fraction must be in (0, 1), got 0"),
    ("model.net.dropout=1.2", "error: model.net.dropout must be in [0, 1), got 1.2"),
    ("model=resnet", "error: model=resnet: no such option; choose one of cnn, dnn, lenet5, softmax"),
    ("optimizer.lrr=0.1", "error: optimizer.lrr: no such config key (to add a new key write +optimizer.lrr=...)"),
])
def test_impossible_values_and_unknown_names_fail_before_anything_is_written(override, message, tmp_path):
    result = command("train", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stderr.strip() == message
    assert not (tmp_path / "run").exists()


def test_an_earlier_run_is_never_written_into(tmp_path):
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "last.ckpt").write_bytes(b"earlier run")
    (old / ".hydra").mkdir()
    (old / ".hydra" / "config.yaml").write_text("earlier config")
    result = command("train", f"hydra.run.dir={old}")
    assert result.returncode == 2 and "already holds another run's files" in result.stderr
    assert (old / ".hydra" / "config.yaml").read_text() == "earlier config"
    assert (old / "checkpoints" / "last.ckpt").read_bytes() == b"earlier run"


@pytest.fixture
def dnn_checkpoint(tiny_run):
    return tiny_run / "checkpoints" / "last.ckpt"


def test_resume_refuses_pickle_payloads(dnn_checkpoint, synthetic_root, tmp_path):
    marker, crafted = tmp_path / "code-ran", tmp_path / "evil.ckpt"
    checkpoint = torch.load(dnn_checkpoint, weights_only=True)
    checkpoint["loops"] = {"payload": Payload(str(marker))}
    torch.save(checkpoint, crafted, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="refused"):
        run_train(tmp_path / "run", [*synthetic_overrides(synthetic_root), "model=dnn", f"ckpt_path={crafted}"])
    assert not marker.exists()


@pytest.mark.parametrize("overrides, message", [
    (["model=cnn"], "holds a DNNClassifier but this run builds a CNNClassifier"),
    (["model=dnn", "model.net.hidden=[64,32]"], "net.layers.1.weight has shape (300, 784)"),
])
def test_resume_with_another_model_is_a_clear_mismatch(dnn_checkpoint, synthetic_root, tmp_path, overrides, message):
    with pytest.raises(CheckpointError, match=message.replace("(", "\\(").replace(")", "\\)")):
        run_train(tmp_path, [*synthetic_overrides(synthetic_root), *overrides, f"ckpt_path={dnn_checkpoint}",
                             "trainer.max_epochs=2"])


def test_truncated_checkpoint_is_a_clear_error(dnn_checkpoint, synthetic_root, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(dnn_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or damaged checkpoint"):
        run_train(tmp_path / "run", [*synthetic_overrides(synthetic_root), "model=dnn", f"ckpt_path={broken}"])
