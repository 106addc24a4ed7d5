import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mnistlab.config.compose import CONFIG_DIR, compose, group_options
from mnistlab.core.errors import ConfigError
from mnistlab.training.build import build_model
from mnistlab.training.preflight import check_buildable


def test_every_group_has_its_options():
    assert group_options("model") == ["cnn", "dnn", "lenet5", "softmax"]
    assert group_options("optimizer") == ["adam", "adamw", "momentum", "nesterov", "rmsprop", "sgd"]
    assert group_options("scheduler") == ["cosine", "exponential", "none", "onecycle", "plateau", "step"]
    assert group_options("regularization") == ["dropout", "elastic", "l1", "l2", "label_smoothing", "none"]
    assert group_options("augment") == ["digits", "digits_elastic", "digits_strong", "fashion", "handwriting", "none"]
    assert group_options("data") == ["fashion_mnist", "mnist"]
    assert {"default", "cpu", "gpu"} <= set(group_options("trainer"))


@pytest.mark.parametrize("model", group_options("model"))
@pytest.mark.parametrize("regularization", group_options("regularization"))
def test_any_regularization_composes_with_any_model(model, regularization, tmp_path):
    cfg = compose([f"model={model}", f"regularization={regularization}"], output_dir=tmp_path)
    module = instantiate(cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler,
                         regularization=cfg.regularization, _recursive_=False)
    expected = cfg.model.net.get("dropout", 0.0)  # the one dropout key, which regularization=dropout sets
    rates = {m.p for m in module.modules() if m.__class__.__name__ == "Dropout"}
    if regularization == "dropout":
        assert expected == 0.5 and rates == {0.5}
    else:
        assert rates <= {expected}
    assert module.l2 == cfg.regularization.l2 and module.l1 == cfg.regularization.l1


@pytest.mark.parametrize("group", ["data", "augment", "optimizer", "trainer", "callbacks", "logger"])
def test_every_option_instantiates(group, tmp_path):
    for option in group_options(group):
        cfg = compose([f"{group}={option}"], output_dir=tmp_path)
        absent = {"gpu": not torch.cuda.is_available(), "mps": not torch.backends.mps.is_available()}
        if not absent.get(option, False):  # the refusal of an absent device has its own test
            check_buildable(cfg)
        if group == "data":
            dm = instantiate(cfg.data, augment=OmegaConf.to_container(cfg.augment), _recursive_=False)
            assert dm.hparams.dataset == option
        elif group == "augment":
            from mnistlab.data.augment import BatchAugment
            aug = BatchAugment(**cfg.augment)
            assert aug.enabled == (option != "none") and (aug.hflip > 0) == (option == "fashion")
            assert not (option == "digits_strong" and (aug.brightness or aug.contrast))  # geometric only
        elif group == "optimizer":
            opt = instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(2))])
            assert opt.defaults["lr"] == cfg.optimizer.lr
            assert opt.defaults.get("nesterov", False) == (option == "nesterov")
        elif group == "trainer":
            if option in ("gpu", "mps"):
                assert cfg.trainer.accelerator == option and cfg.trainer.precision == "32-true"
                if absent[option]:
                    with pytest.raises(ConfigError, match=f"trainer.accelerator={option}: PyTorch sees no"):
                        check_buildable(cfg)
                continue  # constructing a GPU Trainer needs that GPU
            assert isinstance(instantiate(cfg.trainer), pl.Trainer)
        else:
            objects = [instantiate(v) for v in cfg[group].values()]
            assert objects and all(o is not None for o in objects)


def test_run_dir_and_defaults():
    cfg = compose([])
    assert cfg.hydra.run.dir.startswith("outputs/")
    assert cfg.model._target_.endswith("CNNClassifier") and cfg.optimizer._target_ == "torch.optim.Adam"
    assert cfg.data.val_fraction == 0.1 and cfg.trainer.accelerator == "auto"


def test_output_dir_resolves_outside_an_app_and_is_refused_inside_one(tmp_path):
    from hydra import initialize_config_dir

    cfg = compose([], output_dir=tmp_path)
    assert cfg.callbacks.model_checkpoint.dirpath == f"{tmp_path}/checkpoints"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):  # as inside a running tool
        assert compose(["model=dnn"]).model._target_.endswith("DNNClassifier")
        with pytest.raises(ValueError, match="output_dir"):
            compose([], output_dir=tmp_path)


def test_tools_share_one_hydra_block_that_writes_nothing_of_its_own():
    for tool in ("export", "kernels", "predict", "results", "speedrun", "augment_preview"):
        cfg = compose([], config_name=tool)
        assert cfg.hydra.run.dir == "." and cfg.hydra.output_subdir is None and cfg.hydra.job.chdir is False, tool
        assert cfg.hydra.job_logging.root.level == cfg.hydra.hydra_logging.root.level == "ERROR", tool
        assert "tool" not in cfg and "defaults" not in cfg, tool  # the shared block adds no keys of its own


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size must be > 0, got 0"),
    ("data.val_fraction=1.5", "data.val_fraction must be in (0, 1), got 1.5"),
    ("optimizer.lr=-0.1", "optimizer.lr must be > 0, got -0.1"),
    ("model.net.dropout=1.0", "model.net.dropout must be in [0, 1), got 1.0"),
    ("regularization.l2=-1", "regularization.l2 must be >= 0, got -1"),
    ("trainer.max_epochs=0", "trainer.max_epochs must be > 0"),
    ("augment.hflip=2", "augment.hflip is a probability"),
    ("augment.rotation=-3", "augment.rotation must be >= 0"),
    ("augment.rotation=abc", "augment.rotation must be a number, got 'abc'"),
    ("data.batch_size=1.5", "data.batch_size must be a whole number, got 1.5"),
    ("seed=abc", "seed must be a whole number, got 'abc'"),
    ("optimizer=adam optimizer.betas=[2,0.9]", "optimizer.betas must be two numbers in [0, 1), got [2, 0.9]"),
    ("~optimizer", "no optimizer configured (choose optimizer=adam|adamw|momentum|nesterov|rmsprop|sgd)"),
    ("+trainer.max_steps=0", "trainer.max_steps must be > 0 (or -1 for no limit), got 0"),
    ("scheduler=onecycle scheduler.scheduler.max_lr_factor=-1", "scheduler.scheduler.max_lr_factor must be > 0"),
    ("scheduler=onecycle scheduler.scheduler.pct_start=1", "scheduler.scheduler.pct_start must be in (0, 1)"),
    ("scheduler=cosine scheduler.scheduler.min_ratio=2", "scheduler.scheduler.min_ratio must be in [0, 1]"),
    ("scheduler=cosine scheduler.scheduler.warmup_steps=-1", "scheduler.scheduler.warmup_steps must be >= 0"),
    ("scheduler=exponential scheduler.scheduler.decay_rate=0", "scheduler.scheduler.decay_rate must be > 0"),
    ("scheduler=step scheduler.scheduler.gamma=0", "scheduler.scheduler.gamma must be > 0"),
    ("scheduler=plateau scheduler.scheduler.factor=1.5", "scheduler.scheduler.factor must be in (0, 1)"),
    ("data.batch_size=abc", "data.batch_size must be a number, got 'abc'"),
    ("float32_matmul_precision=tf32", "float32_matmul_precision must be highest, high or medium, got 'tf32'"),
])
def test_impossible_values_are_refused(override, message):
    cfg = compose(override.split())
    with pytest.raises(ConfigError) as err:
        check_buildable(cfg)
    assert str(err.value) == message or str(err.value).startswith(message)


def test_removing_the_schedule_and_regularization_groups_trains_without_them():
    cfg = compose(["~scheduler", "~regularization"])
    check_buildable(cfg)
    model = build_model(cfg, (0.0, 1.0))
    assert model.build_scheduler(model.build_optimizer(), total_steps=10) is None
    assert (model.l1, model.l2, model.label_smoothing) == (0.0, 0.0, 0.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_asking_for_a_missing_gpu_is_one_clear_line():
    for overrides in (["trainer.accelerator=gpu"], ["trainer=gpu"]):
        with pytest.raises(ConfigError, match=r"PyTorch sees no CUDA GPU here; use trainer\.accelerator=auto or cpu"):
            check_buildable(compose(overrides))
    check_buildable(compose(["trainer.precision=bf16-mixed"]))  # bf16 autocast on the CPU is fine
