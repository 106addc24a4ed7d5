"""bf16 autocast on the CPU: what stays float32, checkpoints that load either way, and bf16_where_native."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mnistlab.config.compose import compose
from mnistlab.config.devices import machine, native_bf16, precision_for
from mnistlab.core.errors import ConfigError
from mnistlab.data.idx import read_idx
from mnistlab.models.checkpoint import load_model
from mnistlab.training.preflight import check_buildable

from helpers import run_train, synthetic_overrides

# batch norm, a moving average of the weights and Adam's moments: everything mixed precision could touch
BF16_RUN = ["model=cnn", "model.net.batch_norm=true", "callbacks=ema", "optimizer=adamw", "trainer.max_epochs=1",
            "++trainer.limit_train_batches=12", "++trainer.limit_val_batches=2"]


@pytest.fixture(scope="module")
def bf16_run(synthetic_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("bf16")
    metrics = run_train(run_dir, [*synthetic_overrides(synthetic_root), *BF16_RUN, "trainer.precision=bf16-mixed"])
    return run_dir, metrics


def float_tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree] if tree.is_floating_point() else []
    if isinstance(tree, dict):
        return [t for value in tree.values() for t in float_tensors(value)]
    if isinstance(tree, (list, tuple)):
        return [t for value in tree for t in float_tensors(value)]
    return []


def test_bf16_autocast_keeps_weights_statistics_moments_and_average_in_float32(bf16_run):
    run_dir, metrics = bf16_run
    assert metrics["precision"] == "bf16-mixed" and metrics["global_step"] == 12
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    state = checkpoint["state_dict"]
    running = [k for k in state if k.endswith("running_mean")]
    assert running and all(state[k].abs().sum() > 0 for k in running)  # the statistics were updated
    moments = float_tensors(checkpoint["optimizer_states"][0]["state"])  # Adam's exp_avg and exp_avg_sq
    # with EMA, state_dict holds the average and current_model_state the weights being trained
    training = checkpoint["current_model_state"]
    assert moments and any(not torch.equal(training[k], state[k]) for k in state if k.endswith("weight"))
    dtypes = {t.dtype for t in [*float_tensors(state), *float_tensors(training), *moments]}
    assert dtypes == {torch.float32}


def test_a_bf16_checkpoint_loads_and_reads_in_float32_as_it_tested(bf16_run, synthetic_root):
    run_dir, metrics = bf16_run
    module, _ = load_model(run_dir / "checkpoints" / "last.ckpt")
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    images = read_idx(synthetic_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").float() / 255
    labels = read_idx(synthetic_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").long()
    with torch.no_grad():
        float32 = module.net(images[:, None]).argmax(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = module.net(images[:, None]).argmax(1)
    # the EMA average is what the run tested; float32 and bf16 read the same digits but for a rare tie
    assert (float32 == bf16).float().mean() > 0.98
    assert (float32 == labels).float().mean() == pytest.approx(metrics["test/acc"], abs=0.02)


def test_a_float32_run_resumes_in_bf16(synthetic_root, tmp_path, recwarn):
    overrides = [*synthetic_overrides(synthetic_root), *BF16_RUN]
    run_train(tmp_path, overrides)
    summary = "callbacks.model_summary={_target_:pytorch_lightning.callbacks.RichModelSummary,max_depth:2}"
    resumed = run_train(tmp_path, [*overrides, "trainer.max_epochs=2", "trainer.precision=bf16-mixed", summary,
                                   "resume_changes=apply", f"ckpt_path={tmp_path}/checkpoints/last.ckpt"])
    assert resumed["precision"] == "bf16-mixed" and resumed["global_step"] == 24
    # Lightning's model summary doubts its size under bf16-mixed; the weights it counts stay float32
    assert not [w for w in recwarn if "not supported by the model summary" in str(w.message)]


def test_bf16_where_native_chooses_by_the_hardware_and_says_when_it_falls_back(synthetic_root, tmp_path, capsys):
    cpu = torch.device("cpu")
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=softmax", "bf16_where_native=true",
                                   "++trainer.fast_dev_run=true"])
    err = capsys.readouterr().err
    if native_bf16(cpu):  # AVX512-BF16, AMX or Arm BF16
        assert metrics["precision"] == "bf16-mixed" and "no native bfloat16" not in err
    else:
        assert metrics["precision"] == "32-true"
        assert "bf16_where_native: this CPU (" in err and "has no native bfloat16; training with " \
               "trainer.precision=32-true" in err
    assert precision_for("32-true", False, cpu) == ("32-true", "")


def test_the_loggers_record_the_precision_a_run_trained_in(synthetic_root, tmp_path, monkeypatch):
    # as on a CPU with bfloat16 in hardware (this one may have none): bf16_where_native picks bf16-mixed
    monkeypatch.setattr("mnistlab.config.devices.native_bf16", lambda device: True)
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=softmax", "bf16_where_native=true",
                                   "logger=csv", "trainer.max_epochs=1", "++trainer.limit_train_batches=2",
                                   "++trainer.limit_val_batches=1", "++trainer.limit_test_batches=1"])
    assert metrics["precision"] == "bf16-mixed"
    # not trainer.precision's 32-true: the hyperparameters say what it trained in, as metrics.json does
    assert OmegaConf.load(tmp_path / "csv" / "hparams.yaml").trainer.precision == "bf16-mixed"


BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # /proc/cpuinfo's names for bfloat16 in hardware (x86, Arm)


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with (not Linux)")
    return set(cpuinfo.read_text().split())


def test_native_bf16_agrees_with_the_cpus_flags():
    assert native_bf16(torch.device("cpu")) == bool(BF16_FLAGS & cpu_flags())


@pytest.mark.skipif(torch.cuda.is_available(), reason="names the CPU where no GPU is")
def test_a_measured_number_names_the_cpus_instruction_set_and_bf16():
    flags = cpu_flags()
    instructions = ("AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags
                    else torch.backends.cpu.get_cpu_capability())
    bf16 = ("native bf16, AMX" if "amx_bf16" in flags else "native bf16") if BF16_FLAGS & flags else "no native bf16"
    assert f"({instructions}, {bf16}), {os.cpu_count()} cores, no GPU;" in machine()


@pytest.mark.parametrize("overrides, message", [
    (["bf16_where_native=yes"], "bf16_where_native must be true or false, got 'yes'"),
    (["bf16_where_native=true", "trainer.precision=16-mixed"],
     "bf16_where_native=true chooses bf16-mixed itself where the device has it, else float32; "
     "trainer.precision=16-mixed says otherwise: drop one of them"),
])
def test_bf16_where_native_refusals(overrides, message):
    with pytest.raises(ConfigError) as err:
        check_buildable(compose(overrides))
    assert str(err.value) == message
