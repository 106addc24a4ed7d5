"""The device paths: the warm-up step, TF32 on CUDA, and (on a machine with a GPU) training on one."""

import os

import pytest
import torch

from mnistlab.config import devices as env
from mnistlab.config.compose import compose
from mnistlab.training.build import build, configure_device

from helpers import FAST, run_train, synthetic_overrides

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_warmup_step_leaves_the_run_unchanged(synthetic_root, tmp_path):
    # On a CPU the warm-up is off by default; switched on, the run must come out identical to the bit:
    # the throwaway step works on a copy, with its own generator, and never touches the data's RNG.
    common = [*synthetic_overrides(synthetic_root), "model=cnn", "augment=digits", "trainer.max_epochs=1",
              "model.net.batch_norm=true", "regularization=dropout"]  # dropout draws from the global RNG
    plain = run_train(tmp_path / "plain", common)
    warmed = run_train(tmp_path / "warmed", [*common, "callbacks.device_warmup.device_types=[cpu]"])
    assert plain["warmup_seconds"] == 0.0 and warmed["warmup_seconds"] > 0.0
    assert warmed["test/loss"] == plain["test/loss"] and warmed["val/acc_best"] == plain["val/acc_best"]
    old = torch.load(tmp_path / "plain" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    new = torch.load(tmp_path / "warmed" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)  # BN statistics too


def test_tf32_only_on_cuda():
    cfg = compose(["float32_matmul_precision=high"])
    before = torch.get_float32_matmul_precision()
    configure_device(cfg, torch.device("cpu"))
    assert torch.get_float32_matmul_precision() == before


def test_nvml_check_dropped_only_where_nvml_cannot_load(monkeypatch):
    monkeypatch.setenv(env.NVML_CHECK, "1")  # as Lightning's import sets it
    answer = torch.cuda.is_available()
    with monkeypatch.context() as driver:  # a machine with an NVIDIA driver: left alone
        driver.setattr(env, "nvml_loads", lambda: True)
        env.drop_failing_nvml_check()
        assert os.environ.get(env.NVML_CHECK) == "1"
    configure_device(compose([]), torch.device("cpu"))
    if env.nvml_loads() or not torch.backends.cuda.is_built():  # a driver, or a CPU-only build: left alone
        assert os.environ[env.NVML_CHECK] == "1"
    else:  # a CUDA build without a driver (this machine): the check goes, the answer stays
        assert env.NVML_CHECK not in os.environ and torch.cuda.is_available() == answer


@cuda
def test_gpu_run_caches_data_on_the_device_and_checkpoints_load_on_cpu(synthetic_root, tmp_path):
    cfg = compose([*FAST, *synthetic_overrides(synthetic_root), "trainer.accelerator=gpu", "model=cnn",
                   "augment=digits", "model.channels_last=true", "trainer.max_epochs=2"], output_dir=tmp_path)
    datamodule, model, trainer = build(cfg)
    trainer.fit(model, datamodule=datamodule)
    assert all(t.device.type == "cuda" for t in (*datamodule.train_set, *datamodule.val_set))
    assert torch.get_float32_matmul_precision() == "high"
    assert trainer.callback_metrics["val/acc"] > 0.5
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert all(t.device.type == "cpu" for t in state["state_dict"].values())


@cuda
@pytest.mark.parametrize("switches", [["trainer.precision=bf16-mixed"], ["model.compile=true"],
                                      ["experiment=speedrun", "trainer=gpu"]])
def test_gpu_speed_switches_train(switches, synthetic_root, tmp_path):
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=cnn", "trainer.accelerator=gpu",
                                   "trainer.max_epochs=2", *switches])
    assert metrics["test/acc"] > 0.5 and metrics["warmup_seconds"] > 0.0
