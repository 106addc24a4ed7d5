import json
import time

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, ModelSummary, ProgressBar
from pytorch_lightning.profilers import SimpleProfiler
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnistlab.config.compose import compose
from mnistlab.core.errors import ConfigError
from mnistlab.models.classifier import DNNClassifier
from mnistlab.training.build import NoProfiler, build
from mnistlab.training.callbacks import SpeedMonitor, ema_update

from helpers import command, run_train, synthetic_overrides


def tensorboard_tags(run_dir):
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"histograms": 0, "images": 0})
    events.Reload()
    return events.Tags()


@pytest.fixture(scope="module")
def finished_run(synthetic_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    metrics = run_train(run_dir, [*synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=3",
                                  "augment=digits", "scheduler=cosine"], pictures=True)
    return run_dir, metrics


def test_short_run_learns_and_writes_metrics(finished_run):
    run_dir, metrics = finished_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "val/acc_best", "epochs", "fit_seconds", "train_images_per_second"):
        assert key in saved, key
    assert saved["test/acc"] > 0.9 and saved["val/acc_best"] > 0.9  # synthetic classes are easy
    assert saved["epochs"] == 3 and saved["fit_seconds"] > 0 and saved["train_images_per_second"] > 0
    assert saved["test/acc"] == pytest.approx(metrics["test/acc"])
    # the learning curve, one row per validation, whichever logger ran: what the results figure draws
    assert [row["epoch"] for row in saved["history"]] == [1, 2, 3] and saved["dataset"] == "mnist"
    assert saved["history"][-1]["val/acc"] == pytest.approx(saved["val/acc"], abs=1e-5)
    assert max(row["val/acc"] for row in saved["history"]) == pytest.approx(saved["val/acc_best"], abs=1e-5)
    seconds = [row["fit_seconds"] for row in saved["history"]]
    assert seconds == sorted(seconds) and 0 < seconds[-1] <= saved["fit_seconds"]


def test_checkpoints_best_and_last_load_weights_only(finished_run):
    run_dir, metrics = finished_run
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in names and any(n.startswith("best-epoch") for n in names)
    for name in names:
        checkpoint = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        module = DNNClassifier(**checkpoint["hyper_parameters"])
        module.load_state_dict(checkpoint["state_dict"])
        assert checkpoint["datamodule_hyper_parameters"]["dataset"] == "mnist"
    assert metrics["best_checkpoint"].endswith(next(n for n in names if n.startswith("best")))


def test_tensorboard_has_scalars_images_histograms_graph_and_hparams(finished_run):
    run_dir, _ = finished_run
    tags = tensorboard_tags(run_dir)
    for scalar in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/acc", "test/loss",
                   "lr-Adam", "hp/test_acc"):
        assert scalar in tags["scalars"], scalar
    assert {"data/train_raw_then_augmented", "test/predictions", "test/confusion_matrix"} <= set(tags["images"])
    projector = (run_dir / "tensorboard" / "projector_config.pbtxt").read_text()
    assert "test/penultimate_features" in projector and "sprite" in projector and "metadata" in projector
    assert any(t.startswith("weights/") for t in tags["histograms"])
    assert tags["graph"] is True
    plugins = " ".join(p.name for p in (run_dir / "tensorboard").iterdir())
    assert "events.out.tfevents" in plugins


def test_resume_continues_from_last_checkpoint(finished_run, synthetic_root, tmp_path):
    run_dir, first = finished_run
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=dnn", "trainer.max_epochs=4",
                                   "augment=digits", "scheduler=cosine",
                                   f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])
    assert metrics["epochs"] == 4 and metrics["global_step"] == first["global_step"] * 4 // 3


def test_earlier_checkpoints_are_never_overwritten(finished_run, synthetic_root):
    run_dir, _ = finished_run
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()}
    with pytest.raises(ConfigError, match="already holds checkpoints of an earlier run"):
        run_train(run_dir, [*synthetic_overrides(synthetic_root), "trainer.max_epochs=1"])
    assert before == {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()}


def test_ema_checkpoints_hold_the_averaged_weights(synthetic_root, tmp_path):
    run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=softmax", "trainer.max_epochs=1",
                         "callbacks=ema", "callbacks.ema.decay=0.9"])
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    averaged, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not torch.equal(averaged["net.layers.2.weight"], current["net.layers.2.weight"])


@pytest.mark.parametrize("callbacks, test_best", [("default", "true"), ("default", "false"), ("ema", "true"),
                                                  ("ema", "false")])
def test_the_tested_accuracy_is_what_evaluate_finds_in_the_checkpoint(callbacks, test_best, synthetic_root, tmp_path):
    metrics = run_train(tmp_path / "run", [*synthetic_overrides(synthetic_root), "model=dnn", "optimizer=sgd",
                                           "optimizer.lr=0.1", "trainer.max_epochs=2", f"callbacks={callbacks}",
                                           f"test_best={test_best}"])
    tested = metrics["best_checkpoint"] or str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert metrics["tested_weights"] == ("EMA average, " if callbacks == "ema" else "") + (
        "best checkpoint" if test_best == "true" else "final weights")
    result = command("evaluate", f"ckpt_path={tested}", f"data_dir={synthetic_root}",
                     f"hydra.run.dir={tmp_path / 'ev'}")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)


def test_ema_warms_up_so_a_short_run_is_not_judged_on_its_first_weights(synthetic_root, tmp_path):
    # 17 steps at decay 0.999: a fixed decay keeps 98% of the initial weights in the average
    losses = {}
    for warmup in ("true", "false"):
        metrics = run_train(tmp_path / warmup, [*synthetic_overrides(synthetic_root), "model=dnn", "optimizer=sgd",
                                                "optimizer.lr=0.1", "trainer.max_epochs=1", "callbacks=ema",
                                                f"callbacks.ema.warmup={warmup}"])
        losses[warmup] = metrics["val/loss"]
    assert losses["true"] < losses["false"] / 10  # measured: 0.0075 against 0.47


def test_warmup_ema_follows_tensorflows_num_updates():
    update = ema_update(0.999)
    for n, rate in ((0, 0.1), (8, 0.5), (80, 0.9), (10**6, 0.999)):
        averages, currents = [torch.zeros(3), torch.zeros(2, 2)], [torch.ones(3), torch.ones(2, 2)]
        update(averages, currents, torch.tensor(n))
        for average in averages:  # every tensor moved 1 - rate of the way, in place
            assert average.flatten().tolist() == pytest.approx([1 - rate] * average.numel(), abs=1e-3)
    counters = [torch.tensor(3)]
    update(counters, [torch.tensor(7)], torch.tensor(5))
    assert counters[0].item() == 7  # an integer buffer (batch norm's count) takes the latest value
    fixed = [torch.zeros(3)]
    ema_update(0.999, warmup=False)(fixed, [torch.ones(3)], torch.tensor(0))
    assert fixed[0].tolist() == pytest.approx([0.001] * 3, abs=1e-6)  # no warm-up: the decay from the first update


@pytest.mark.parametrize("scheduler", ["exponential", "step", "cosine", "onecycle", "plateau"])
def test_every_scheduler_trains(scheduler, synthetic_root, tmp_path):
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=softmax", "trainer.max_epochs=2",
                                   f"scheduler={scheduler}", "optimizer=momentum"])
    assert metrics["epochs"] == 2 and metrics["test/acc"] > 0.5


@pytest.mark.parametrize("clip", ["0.5", "null"])  # fused Adam is switched off only when it must clip
def test_clipping_and_bf16_autocast_on_cpu(clip, synthetic_root, tmp_path):
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=cnn", "++trainer.fast_dev_run=true",
                                   "trainer.precision=bf16-mixed", f"trainer.gradient_clip_val={clip}"])
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["global_step"] == 1


def test_real_mnist_few_batches_clearly_above_chance(mnist_root, tmp_path):
    metrics = run_train(tmp_path, [f"data.data_dir={mnist_root}", "model=dnn", "optimizer=sgd", "optimizer.lr=0.1",
                                   "trainer.max_epochs=1", "++trainer.limit_train_batches=60",
                                   "++trainer.limit_val_batches=2"])
    assert metrics["test/acc"] > 0.8  # 10% is chance


@pytest.mark.parametrize("override, message", [
    ("trainer.precision=bogus", "trainer: Precision 'bogus' is invalid. Allowed precision values: "),
    ("trainer.devices=0", "trainer: "),
])
def test_arguments_lightning_refuses_are_config_errors(override, message, tmp_path):
    cfg = compose([override, "trainer.accelerator=cpu"], output_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        build(cfg)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size must be > 0, got 0"),
    # raised inside the network's constructor, which Hydra's instantiate wraps in its own exception
    ("model.net.center_crop=30", "model.net.center_crop must be a side length from 1 to 28 pixels, got 30"),
])
def test_cli_bad_value_is_one_line_without_traceback(override, message, tmp_path):
    result = command("train", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_fast_dev_run(synthetic_root, tmp_path):
    # the whole command path in this process (test_sweeps starts the command as a process, with -m)
    result = command("train", *synthetic_overrides(synthetic_root), "++trainer.fast_dev_run=true",
                     "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout and (tmp_path / "metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.parallel
def test_torch_compile_trains_and_keeps_checkpoint_keys_plain(synthetic_root, tmp_path):
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=cnn", "model.compile=true",
                                   "trainer.max_epochs=1"])
    assert metrics["test/acc"] > 0.5
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "net.features.0.weight" in state and not any("_orig_mod" in k for k in state)


def test_speed_totals_travel_in_checkpoints(finished_run):
    run_dir, metrics = finished_run
    state = next(v for k, v in torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"].items()
                 if k.startswith("SpeedMonitor"))
    assert state["train_images"] == 3 * 540 and 0 < state["train_seconds"] <= state["fit_seconds"]
    resumed = SpeedMonitor()
    resumed.load_state_dict(state)
    assert resumed.fit_seconds == state["fit_seconds"] and resumed.images_per_second == pytest.approx(
        state["train_images"] / state["train_seconds"])
    assert metrics["fit_seconds"] >= state["fit_seconds"] and metrics["train_images_per_second"] > 0


def test_null_callbacks_stay_off_instead_of_lightnings_defaults(synthetic_root, tmp_path):
    off = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "callbacks.model_checkpoint=null",
           "callbacks.last_checkpoint=null"]
    kinds = (ProgressBar, ModelSummary, ModelCheckpoint)

    def trainer_callbacks(overrides):
        cfg = compose(["trainer.accelerator=cpu", *synthetic_overrides(synthetic_root), *overrides],
                      output_dir=tmp_path / "composed")
        return build(cfg)[2].callbacks

    kept = trainer_callbacks([])
    assert [sum(isinstance(c, k) for c in kept) for k in kinds] == [1, 1, 2]
    assert next(c for c in kept if isinstance(c, ProgressBar)).refresh_rate == 50  # the configured one
    assert not [c for c in trainer_callbacks(off) if isinstance(c, kinds)]
    # An explicit Trainer flag still wins: Lightning's default summary comes back.
    summaries = [c for c in trainer_callbacks([*off, "+trainer.enable_model_summary=true"])
                 if isinstance(c, ModelSummary)]
    assert len(summaries) == 1
    run_train(tmp_path / "run", [*synthetic_overrides(synthetic_root), *off, "model=dnn", "trainer.max_epochs=1"])
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_without_a_profiler_hooks_run_in_one_shared_empty_context(synthetic_root, tmp_path):
    def profiler(overrides):
        cfg = compose(["trainer.accelerator=cpu", *synthetic_overrides(synthetic_root), *overrides],
                      output_dir=tmp_path / "composed")
        return build(cfg)[2].profiler

    plain = profiler([])
    assert isinstance(plain, NoProfiler)
    assert plain.profile("[Callback]A.on_train_batch_end") is plain.profile("run_training_batch")
    with plain.profile("x") as value:
        assert value is None
    assert isinstance(profiler(["debug=profiler"]), SimpleProfiler)  # one that was asked for is kept


def test_fit_seconds_leave_lightnings_start_up_out(synthetic_root, tmp_path):
    class SlowStartUp(pl.Callback):  # after the timer: like the model summary, graph trace, sanity check
        def on_fit_start(self, trainer, pl_module):
            time.sleep(0.5)

    cfg = compose(["trainer.accelerator=cpu", *synthetic_overrides(synthetic_root), "model=dnn",
                   "trainer.max_epochs=1", "logger={}", "callbacks.model_checkpoint=null",
                   "callbacks.last_checkpoint=null"], output_dir=tmp_path)
    speed = SpeedMonitor()
    datamodule, model, trainer = build(cfg, extra_callbacks=[speed, SlowStartUp()])
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    whole = time.perf_counter() - start
    assert 0 < speed.train_seconds <= speed.fit_seconds <= whole - 0.5


@pytest.mark.parametrize("preset, extra, steps", [
    ("fdr", [], 1),                                   # one batch, then stop
    ("limit", ["data.batch_size=64"], 2 * 9),         # 540 images / 64 = 9 batches (under the 20 limit), 2 epochs
    ("overfit", ["trainer.max_epochs=2"], 2 * 10),    # the same 10 batches each epoch
    ("profiler", [], 17),                             # one epoch of 17 batches, and a report
])
def test_debug_presets(preset, extra, steps, synthetic_root, tmp_path):
    metrics = run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model=dnn", f"debug={preset}", *extra])
    assert metrics["global_step"] == steps
    if preset == "profiler":
        assert "Profiler Report" in (tmp_path / "fit-profile.txt").read_text()
