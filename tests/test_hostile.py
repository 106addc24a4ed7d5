"""The hostile-input suite: real faults (a second file system, a full disk, kill -9 mid-write, two racing
processes, signals in every hook, crafted files), each ending in one ``error:`` line, a non-zero exit, no
traceback and every earlier file intact. New hostile cases go here, by class."""

from __future__ import annotations

import copy
import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_data import make_dataset, synthetic_digits, write_idx
from omegaconf import read_write
from PIL import Image

from mnistlab.config.compose import compose
from mnistlab.config.rundir import ClaimRunDir, FolderTaken, claim, release
from mnistlab.core.errors import CheckpointError, DataError
from mnistlab.data.datamodule import MNISTDataModule
from mnistlab.data.datasets import SPLIT_FILES, load_split
from mnistlab.models import checkpoint as checkpoints
from mnistlab.models.checkpoint import load_checkpoint, load_model

from helpers import FAST, command, run_train, synthetic_overrides

TESTS = Path(__file__).resolve().parent


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_error_line(result, *fragments: str) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line holding every fragment; returns that line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (a second, real file system) of a given size; root only."""
    mounted = []

    def mount(size: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def paste_printed_command(after: str, printed: str) -> subprocess.CompletedProcess:
    """The command a run printed after ``after``, run in bash as a user pastes it (the faults importable)."""
    found = re.search(re.escape(after) + r"(python -m mnistlab.train .+)$", printed, re.MULTILINE)
    assert found, printed[-3000:]
    return subprocess.run(["bash", "-c", found.group(1).replace("python", sys.executable, 1)], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})


def train_subprocess(run_dir: Path, overrides: list[str], env: dict | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "mnistlab.train", *FAST, *overrides, f"hydra.run.dir={run_dir}"]
    environment = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                   **(env or {})}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


# ---------------------------------------------------------------------------------------------------
# 1-2. Checkpoint writes: kill -9 mid-write with the temp folder on another file system; a full disk

@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_leaves_a_loadable_checkpoint(synthetic_root, tmp_path, tmpfs):
    system_temp = tmpfs("64m")  # TMPDIR on its own file system, as /tmp on tmpfs is
    run_dir = tmp_path / "run"
    ckpt_dir = run_dir / "checkpoints"
    # 11 M parameters: each checkpoint is ~137 MB, a write long enough to be caught in the act
    overrides = [*synthetic_overrides(synthetic_root), "model=dnn", "model.net.hidden=[3000,3000]",
                 "trainer.max_epochs=40", "callbacks.early_stopping=null"]
    caught = None
    for _attempt in range(5):
        process = train_subprocess(run_dir, overrides if caught is None and not ckpt_dir.exists() else
                                   [*overrides, f"ckpt_path={ckpt_dir / 'last.ckpt'}"], {"TMPDIR": str(system_temp)})
        deadline = time.time() + 240
        while caught is None and time.time() < deadline and process.poll() is None:
            writing = list(ckpt_dir.glob(".last.ckpt.*.tmp")) if (ckpt_dir / "last.ckpt").is_file() else []
            if writing:
                process.send_signal(signal.SIGKILL)
                caught = writing[0]
            time.sleep(0.002)
        process.wait(timeout=60)
        if caught is not None and caught.exists():
            break  # killed while the temp file was being written
        caught = None
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-3000:]
    assert caught is not None, "never caught a checkpoint write in progress"
    # what the kill interrupted is the temp file; last.ckpt is the previous one, whole
    state = load_checkpoint(ckpt_dir / "last.ckpt")
    assert state["global_step"] > 0 and list(system_temp.iterdir()) == []
    # the resume the run would print works, and clears the dead writer's temp file
    resumed = train_subprocess(run_dir, [*overrides, f"ckpt_path={ckpt_dir / 'last.ckpt'}",
                                         f"trainer.max_epochs={state['epoch'] + 2}"])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert not caught.exists() and not list(ckpt_dir.glob(".*.tmp"))
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.5


def test_a_full_disk_is_one_line_and_every_earlier_checkpoint_still_loads(tiny_run, synthetic_root, tmpfs):
    disk = tmpfs("12m")
    earlier = disk / "earlier.ckpt"
    shutil.copy(tiny_run / "checkpoints" / "last.ckpt", earlier)  # 3.2 MB the user already had
    before = checksums(disk)
    run_dir = disk / "run"
    result = command("train", *FAST, *synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=20",
                     "callbacks.early_stopping=null", f"hydra.run.dir={run_dir}")
    line = assert_one_error_line(result, "disk full", str(run_dir / "checkpoints"))
    assert "the last checkpoint saved is" in line or "this run saved no checkpoint" in line
    assert checksums(disk)["earlier.ckpt"] == before["earlier.ckpt"]
    saved = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert saved and all(load_checkpoint(p)["global_step"] > 0 for p in saved)
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # no partial file left behind


# ---------------------------------------------------------------------------------------------------
# 3-4. Run folders: never another run's, never two processes' at once

def test_evaluate_never_writes_into_a_training_run(tiny_run, synthetic_root):
    before = checksums(tiny_run)
    result = command("evaluate", f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"data_dir={synthetic_root}",
                     f"hydra.run.dir={tiny_run}")
    assert_one_error_line(result, str(tiny_run), "already holds another run's files", "metrics.json")
    assert checksums(tiny_run) == before


@pytest.mark.slow
def test_two_runs_started_together_into_one_folder(synthetic_root, tmp_path):
    run_dir = tmp_path / "shared"
    overrides = [*synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=3"]
    processes = [train_subprocess(run_dir, overrides) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 2], [err[-2000:] for _, err in outputs]
    loser = next(err for p, (_, err) in zip(processes, outputs, strict=True) if p.returncode == 2)
    errors = [line for line in loser.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(run_dir) in errors[0] and "Traceback" not in loser
    assert re.search(r"being written by another mnistlab run \(pid \d+|already holds another run's files", errors[0])
    # one run's files only: one best checkpoint, event files of one process (fit, test), its metrics
    assert len(list((run_dir / "checkpoints").glob("best-*.ckpt"))) == 1
    writers = {p.name.split(".")[-2] for p in (run_dir / "tensorboard").glob("events.out.tfevents.*")}
    assert len(writers) == 1
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 3 * 17


def test_a_folder_held_by_a_live_process_is_refused_naming_it(tmp_path, synthetic_root):
    folder = tmp_path / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from mnistlab.config.rundir import claim; "
                               f"claim(Path({str(folder)!r})); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = command("train", *FAST, *synthetic_overrides(synthetic_root), f"hydra.run.dir={folder}")
        assert_one_error_line(result, f"{folder} is being written by another mnistlab run (pid {holder.pid}")
        assert sorted(p.name for p in folder.iterdir()) == [".mnistlab.lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    claim(folder)  # the kernel dropped the dead holder's lock: nothing stale blocks the folder
    release(folder)


def test_a_default_folder_taken_in_the_same_second_gets_a_suffix(tmp_path):
    taken = tmp_path / "2026-12-02_01-00-00"
    (taken / ".hydra").mkdir(parents=True)
    cfg = compose([])  # no hydra.run.dir on the command line: the folder is mnistlab's to choose
    with read_write(cfg.hydra):
        cfg.hydra.run.dir = str(taken)  # as if another run had taken this second's folder
    ClaimRunDir(resumable=True)._claim(cfg, "run")
    assert cfg.hydra.run.dir == str(tmp_path / "2026-12-02_01-00-00_1")
    release(Path(cfg.hydra.run.dir))
    with pytest.raises(FolderTaken, match="already holds another run's files"):
        claim(taken)


# ---------------------------------------------------------------------------------------------------
# 5. Signals in any hook: the printed resume command works

@pytest.mark.slow
# Mid-validation (where Lightning's own resume failed) and between training and validation; the suite's
# SIGINT/SIGTERM test in test_reliability.py covers a signal during the training steps.
@pytest.mark.parametrize("hook", ["on_validation_batch_start", "on_train_epoch_end"])
def test_sigterm_in_any_hook_prints_a_resume_command_that_works(hook, synthetic_root, tmp_path):
    overrides = [*synthetic_overrides(synthetic_root), "model=dnn", "data.eval_batch_size=10", "trainer.max_epochs=3"]
    fault = ["+callbacks.fault._target_=faults.SignalInHook", f"+callbacks.fault.hook={hook}",
             "+callbacks.fault.epoch=1", "+callbacks.fault.batch=2"]  # 6 validation batches: batch 2 is mid-way
    process = train_subprocess(tmp_path, [*overrides, *fault])
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err[-3000:]
    # pasted as printed: the run's own config (its fault injector included) comes from its folder
    resumed = paste_printed_command("resume with: ", err)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 3 * 17 and metrics["val/acc_best"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_testing_exits_as_one_while_training(signum, code, synthetic_root, tmp_path):
    fault = ["+callbacks.fault._target_=faults.SignalInHook", "+callbacks.fault.hook=on_test_batch_start",
             "+callbacks.fault.epoch=null", "+callbacks.fault.batch=1", f"+callbacks.fault.signum={int(signum)}"]
    process = train_subprocess(tmp_path, [*synthetic_overrides(synthetic_root), "model=dnn", "data.eval_batch_size=10",
                                          "trainer.max_epochs=1", *fault])
    _, err = process.communicate(timeout=300)
    assert process.returncode == code, err[-3000:]
    assert not (tmp_path / "metrics.json").exists()  # an interrupted test reports nothing
    assert not (tmp_path / "checkpoints" / "interrupted.ckpt").exists()  # last.ckpt holds the whole fit
    tested = paste_printed_command("test it with: ", err)
    assert tested.returncode == 0, tested.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.5 and [row["epoch"] for row in metrics["history"]] == [1]


def test_resuming_a_finished_run_whose_best_checkpoint_was_deleted(synthetic_root, tmp_path, capsys):
    overrides = [*synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=1"]
    run_train(tmp_path, overrides)
    for best in (tmp_path / "checkpoints").glob("best-*.ckpt"):
        best.unlink()
    metrics = run_train(tmp_path, [*overrides, f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
    assert metrics["best_checkpoint"] is None and metrics["test/acc"] > 0.5
    assert "is gone; testing the final weights" in capsys.readouterr().err


def test_a_run_that_early_stopping_ended_says_so(synthetic_root, tmp_path):
    # min_delta 1.0: no epoch can improve on the first, so the second stops the run; testing the best
    # checkpoint (epoch 0) then restores that epoch's early-stopping state, which has not stopped yet
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=5",
                                   "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0"])
    assert metrics["stopped_early"] is True and metrics["epochs"] == 2
    assert "epoch000" in metrics["best_checkpoint"]


def test_early_stopping_waits_for_a_validation_that_never_came(synthetic_root, tmp_path):
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=dnn", "+trainer.max_steps=3"])
    assert metrics["global_step"] == 3 and "val/acc" not in metrics


# ---------------------------------------------------------------------------------------------------
# 6. Crafted checkpoints: refused from their structure, before anything is built or allocated

def _crafted(base: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.ckpt"
    state = torch.load(base, weights_only=True)
    if name == "empty":
        target.write_bytes(b"")
        return target
    if name == "random_bytes":
        target.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return target
    if name == "truncated":
        target.write_bytes(base.read_bytes()[:100_000])
        return target
    if name == "zip_bomb":  # 200 MB of zeros deflated into ~200 KB
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
                archive.open("archive/data.pkl", "w") as f:
            for _ in range(20):
                f.write(bytes(10_000_000))
        return target
    edit = {
        "terabyte_layers": lambda s: s["hyper_parameters"]["net"].update(hidden=[10**9, 10**9]),
        "hparam_wrong_type": lambda s: s["hyper_parameters"]["net"].update(hidden="abc"),
        "hparam_unknown_key": lambda s: s["hyper_parameters"].update(bogus=1),
        "hparams_not_a_mapping": lambda s: s.update(hyper_parameters="x"),
        "state_dict_not_a_mapping": lambda s: s.update(state_dict=[1, 2, 3]),
        "state_dict_not_tensors": lambda s: s["state_dict"].update({"net.layers.1.weight": "weights"}),
        "wrong_shape": lambda s: s["state_dict"].update({"net.layers.1.weight": torch.zeros(3, 3)}),
        "nan_weights": lambda s: s["state_dict"]["net.layers.1.weight"].fill_(float("nan")),
    }[name]
    state = copy.deepcopy(state)
    edit(state)
    torch.save(state, target)
    return target


CRAFTED = {
    "empty": "empty file (0 bytes)",
    "random_bytes": "not a PyTorch checkpoint (neither a zip archive nor a pickle",
    "truncated": "truncated or damaged checkpoint",
    "zip_bomb": "unpacks to 191 MiB, over the 100 MiB a checkpoint may hold; refused unread",
    "terabyte_layers": "net.layers.1.weight is (300, 784) where the config builds (1000000000, 784)",
    "hparam_wrong_type": "stored hyperparameters are invalid: model.net.hidden",
    "hparam_unknown_key": "unexpected keyword argument 'bogus'",
    "hparams_not_a_mapping": "'hyper_parameters' is a str, not a mapping",
    "state_dict_not_a_mapping": "'state_dict' is a list, not a mapping of tensors",
    "state_dict_not_tensors": "state_dict entry 'net.layers.1.weight' is a str, not a tensor",
    "wrong_shape": "net.layers.1.weight is (3, 3) where the config builds (300, 784)",
    "nan_weights": "weights hold NaN or infinite values (net.layers.1.weight)",
}


@pytest.fixture
def small_bound(monkeypatch):
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", 100 * 1024**2)  # the bomb unpacks to 200 MB


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_checkpoints_are_refused_with_what_is_wrong(name, tiny_run, tmp_path, small_bound):
    crafted = _crafted(tiny_run / "checkpoints" / "last.ckpt", tmp_path, name)
    with pytest.raises(CheckpointError, match=re.escape(CRAFTED[name])):
        load_model(crafted)


@pytest.mark.parametrize("tool", ["predict", "evaluate", "export", "kernels", "inspect"])
def test_every_tool_refuses_a_crafted_checkpoint_in_one_line(tool, tiny_run, synthetic_root, tmp_path):
    crafted = _crafted(tiny_run / "checkpoints" / "last.ckpt", tmp_path, "empty" if tool == "inspect" else
                       "nan_weights")
    args = {"predict": [f"ckpt_path={crafted}", f"inputs={synthetic_root / 'MNIST' / 'raw' / SPLIT_FILES['test'][0]}"],
            "evaluate": [f"ckpt_path={crafted}", f"data_dir={synthetic_root}", f"hydra.run.dir={tmp_path / 'ev'}"],
            "export": [f"ckpt_path={crafted}", f"output={tmp_path / 'm.onnx'}"],
            "kernels": [f"ckpt_path={crafted}", f"output={tmp_path / 'k.png'}", f"data_dir={synthetic_root}"],
            "inspect": [crafted]}[tool]
    assert_one_error_line(command(tool, *args), str(crafted))
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and p != crafted)
    # evaluate's own new run folder holds Hydra's config copy and log; no tool wrote a result
    assert all(p.parts[0] == "ev" and p.name not in ("metrics.json", "confusion_matrix.png") for p in written)


def test_inspect_reports_nan_weights_as_strict_json(tiny_run, tmp_path):
    crafted = _crafted(tiny_run / "checkpoints" / "last.ckpt", tmp_path, "nan_weights")
    result = command("inspect", crafted, "--json")
    assert result.returncode == 0

    def refuse(token):
        raise ValueError(f"invalid JSON token {token}")

    report = json.loads(result.stdout, parse_constant=refuse)
    row = next(r for r in report["tensors"] if r["name"] == "state_dict.net.layers.1.weight")
    assert row["non_finite"] == 300 * 784 and row["mean"] is None


# ---------------------------------------------------------------------------------------------------
# 7. Data: every split checked before the fit; the sizes a fraction produces

def _dataset(tmp_path: Path, fault: str) -> Path:
    root = make_dataset(tmp_path / "data", n_train=300, n_test=100)
    raw = root / "MNIST" / "raw"
    if fault == "truncated_test_split":
        path = raw / SPLIT_FILES["test"][0]
        path.write_bytes(path.read_bytes()[:1000])
    elif fault == "empty_test_split":
        write_idx(raw / SPLIT_FILES["test"][0], np.zeros((0, 28, 28)))
        write_idx(raw / SPLIT_FILES["test"][1], np.zeros((0,)))
    elif fault == "images_32x32":
        write_idx(raw / SPLIT_FILES["train"][0], np.zeros((300, 32, 32)))
    elif fault == "gzip_of_garbage":
        (raw / SPLIT_FILES["train"][0]).unlink()
        (raw / f"{SPLIT_FILES['train'][0]}.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8)
    return root


@pytest.mark.parametrize("fault, message", [
    ("truncated_test_split", "t10k-images-idx3-ubyte: truncated"),
    ("empty_test_split", "t10k-images-idx3-ubyte: holds no images"),
    ("images_32x32", "images are 32x32, the networks take 28x28"),
    ("gzip_of_garbage", "train-images-idx3-ubyte.gz: cannot read file"),
])
def test_bad_data_is_found_before_the_fit(fault, message, tmp_path):
    root = _dataset(tmp_path, fault)
    run_dir = tmp_path / "run"
    with pytest.raises(DataError, match=re.escape(message)):
        run_train(run_dir, [*synthetic_overrides(root), "model=dnn"])
    assert not (run_dir / "checkpoints").exists()  # not one step was trained


def test_a_validation_fraction_that_leaves_no_training_images(synthetic_root, tmp_path):
    with pytest.raises(DataError, match=re.escape("data.val_fraction=0.999995 leaves 0 of the 600 training images")):
        run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=dnn", "data.val_fraction=0.999995"])


# ---------------------------------------------------------------------------------------------------
# 8. Images for predict: each bad file is its own error row

def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height pixels with one tiny compressed row: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
                     + chunk(b"IEND", b""))


def _float_idx(path: Path, images: np.ndarray) -> None:
    header = bytes([0, 0, 0x0D, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    path.write_bytes(header + images.astype(">f4").tobytes())


def test_predict_reads_every_hostile_image_as_its_own_row(tiny_run, tmp_path):
    images, _ = synthetic_digits(4, 1)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _png_header_only(inputs / "a_bomb.png", 30_000, 30_000)
    Image.fromarray(images[0]).save(inputs / "b_good.png")
    deep = (images[0].astype(np.uint16) * 128)  # 16 bits, ink at ~50% of full scale
    Image.fromarray(deep).save(inputs / "c_16bit.png")
    write_idx(inputs / "d_uint8.idx", images)
    _float_idx(inputs / "e_float.idx", images / 255.0)  # the same images as floats in [0, 1]
    padded = np.zeros((4, 32, 32), dtype=np.uint8)
    padded[:, 2:30, 2:30] = images
    write_idx(inputs / "f_32x32.idx", padded)
    output = tmp_path / "out.jsonl"
    result = command("predict", f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"inputs={inputs}",
                     f"output={output}")
    assert result.returncode == 0, result.stderr
    rows = {Path(r["path"]).name: r for r in map(json.loads, output.read_text().splitlines())}
    assert "over the limit of 40,000,000" in rows["a_bomb.png"]["error"]
    assert rows["b_good.png"]["label"] == rows["c_16bit.png"]["label"]  # read as the same digit, not blank
    for i in range(4):
        as_bytes, as_floats = rows[f"d_uint8.idx#{i}"], rows[f"e_float.idx#{i}"]
        assert as_floats["label"] == as_bytes["label"]
        assert as_floats["prob"] == pytest.approx(as_bytes["prob"], abs=1e-4)
        assert "label" in rows[f"f_32x32.idx#{i}"]
    assert "14 predicted, 1 unreadable" in result.stderr
    notes = tmp_path / "notes"  # nothing readable at all: each row says why, and the exit says it failed
    notes.mkdir()
    (notes / "a.png").write_text("not an image")
    (notes / "b.jpg").write_bytes(b"")
    result = command("predict", f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"inputs={notes}")
    assert_one_error_line(result, f"inputs={notes}: none of the 2 inputs could be read as an image")
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(notes / "a.png"),
                                                                                  str(notes / "b.jpg")]


# ---------------------------------------------------------------------------------------------------
# 9-10. Outputs and values: one line each, nothing lost

def test_outputs_that_would_lose_a_file_are_refused(tiny_run, tmp_path):
    ckpt = f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}"
    digit = tmp_path / "digit.png"
    Image.fromarray(synthetic_digits(1, 0)[0][0]).save(digit)
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"the user's picture")
    (tmp_path / "folder").mkdir()
    cases = [
        (["output=" + str(tmp_path / "folder"), "overwrite=true"], "is a folder"),
        (["plot=" + str(tmp_path / "p.svg")], "plot=" + str(tmp_path / "p.svg") + ": must be a .png file"),
        ([f"output={kept}", f"plot={kept}", "overwrite=true"], "output and plot name the same file"),
    ]
    for args, message in cases:
        assert_one_error_line(command("predict", ckpt, f"inputs={digit}", *args), message)
    assert kept.read_bytes() == b"the user's picture"


@pytest.mark.parametrize("tool, args, message", [
    ("evaluate", ["num_worst=-1"], "num_worst must be in 0-200, got -1"),
    ("kernels", ["index=abc", "output=k.png"], "index must be a whole number, got 'abc'"),
    ("train", ["+trainer.bogus=1"], "trainer.bogus: not an argument of pytorch_lightning.Trainer"),
    ("train", ["+trainer.max_epoch=3"], "did you mean max_epochs"),
    ("train", ["model=dnn", "model.net.hidden=[1000000000]"], "parameters need about"),
    ("train", ["+scheduler.scheduler.gamma=0.5"], "scheduler.scheduler: has no _target_"),
])
def test_impossible_values_are_one_line(tool, args, message, tiny_run, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = [f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}"] if tool != "train" else []
    data = [f"data_dir={synthetic_root}"] if tool != "train" else synthetic_overrides(synthetic_root)
    started = time.time()
    assert_one_error_line(command(tool, *ckpt, *data, *args, f"hydra.run.dir={tmp_path / 'run'}"), message)
    assert time.time() - started < 60 and not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------------
# File-system errors: one line in every tool, before the work where the place is known in advance


@pytest.fixture
def read_only(tmpfs):
    where = tmpfs("1m")
    done = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    return where


@pytest.mark.parametrize("tool, args", [
    ("train", ["hydra.run.dir={ro}/run"]),
    ("evaluate", ["ckpt_path={ckpt}", "hydra.run.dir={ro}/ev"]),
    ("predict", ["ckpt_path={ckpt}", "inputs={idx}", "output={ro}/p.jsonl"]),
    ("kernels", ["output={ro}/k.png"]),
    ("export", ["ckpt_path={ckpt}", "output={ro}/m.onnx"]),
])
def test_a_read_only_place_is_one_line_before_the_work(tool, args, read_only, tiny_run, synthetic_root):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    idx = synthetic_root / "MNIST" / "raw" / SPLIT_FILES["test"][0]
    result = command(tool, *(a.format(ro=read_only, ckpt=ckpt, idx=idx) for a in args))
    assert_one_error_line(result, f"folder {read_only} is on a read-only file system")


def test_names_too_long_and_files_where_folders_go(tmp_path, tiny_run, synthetic_root):
    long_ok = tmp_path / ("k" * 250 + ".png")  # valid; its temp name must keep within 255 bytes too
    assert command("kernels", f"output={long_ok}", f"data_dir={synthetic_root}").returncode == 0
    assert long_ok.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [long_ok.name]  # no temp file left
    too_long = tmp_path / ("k" * 260 + ".png")
    assert_one_error_line(command("kernels", f"output={too_long}"), "the name is 264 bytes, over the 255")
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert_one_error_line(command("train", f"hydra.run.dir={a_file}"), f"{a_file} is a file, not a folder")
    assert a_file.read_text() == "mine"
    assert_one_error_line(command("evaluate", f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}",
                                  f"hydra.run.dir={a_file / 'under'}"), f"{a_file} is a file, not a folder")


def test_any_file_system_error_met_later_is_one_line():
    from mnistlab.core.errors import FileSystemError, user_error

    assert user_error(RuntimeError("a bug")) is None
    for code in (errno.EROFS, errno.EACCES, errno.ENAMETOOLONG, errno.ENOTDIR):
        err = RuntimeError("a library's wrapper")
        err.__cause__ = OSError(code, os.strerror(code), "/some/where/file.png")
        found = user_error(err)
        assert isinstance(found, FileSystemError) and str(found).startswith("/some/where/file.png: cannot write")


# ---------------------------------------------------------------------------------------------------
# Nothing left behind by a failure


@pytest.mark.parametrize("args, message", [
    (["data.data_dir={missing}", "data.download=false"], "mnist train files not found"),
    (["ckpt_path={foreign}"], "holds a DNNClassifier but this run builds a CNNClassifier"),
    (["seed=-1"], "seed must be in [0, 4294967295]"),
    (["seed=4294967296"], "seed must be in [0, 4294967295]"),
    (["++trainer.limit_train_batches=0"], "trainer.limit_train_batches must be > 0"),
])
def test_a_run_that_fails_before_its_first_step_leaves_nothing(args, message, tmp_path, tiny_run):
    folder = tmp_path / "run"
    fields = {"missing": tmp_path / "nowhere", "foreign": tiny_run / "checkpoints" / "last.ckpt"}
    result = command("train", *FAST, *(a.format(**fields) for a in args), f"hydra.run.dir={folder}")
    assert_one_error_line(result, message)
    assert not folder.exists() and not (tmp_path / "nowhere").exists()


def test_an_evaluation_cut_short_has_no_metrics_json(tiny_run, synthetic_root, tmp_path, monkeypatch):
    import mnistlab.core.plots

    def cut(*args, **kwargs):
        raise RuntimeError("killed while drawing")  # what a kill leaves: the pictures half done

    monkeypatch.setattr(mnistlab.core.plots, "save", cut)
    folder = tmp_path / "ev"
    result = command("evaluate", f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}", f"data_dir={synthetic_root}",
                     f"hydra.run.dir={folder}")
    assert result.returncode == 1 and "killed while drawing" in result.stderr
    assert not (folder / "metrics.json").exists()  # metrics.json comes last: no finished-looking folder


def test_an_evaluation_that_fails_leaves_nothing(tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    failed = tmp_path / "failed"
    assert_one_error_line(command("evaluate", f"ckpt_path={ckpt}", f"data_dir={tmp_path / 'nowhere'}",
                                  f"hydra.run.dir={failed}"), "files not found")
    assert not failed.exists()


def test_plain_and_gzipped_copies_that_disagree_are_refused(tmp_path):
    root = make_dataset(tmp_path / "data")
    raw = root / "MNIST" / "raw"
    labels = raw / SPLIT_FILES["train"][1]
    with gzip.open(labels.with_name(labels.name + ".gz"), "wb") as f:
        f.write(labels.read_bytes())
    load_split("mnist", "train", root, download=False)  # the same data twice is fine
    data = bytearray(labels.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    labels.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{labels} and {labels}.gz disagree"):
        load_split("mnist", "train", root, download=False)


def test_flips_on_digits_are_warned_about(recwarn):
    MNISTDataModule(augment={"hflip": 0.5})
    assert any("augment.hflip=0.5: a flipped mnist image can be another class" in str(w.message) for w in recwarn)
    recwarn.clear()
    MNISTDataModule(dataset="fashion_mnist", augment={"hflip": 0.5})
    assert not [w for w in recwarn if "augment.hflip" in str(w.message)]
