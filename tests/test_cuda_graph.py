"""model.cuda_graph: the training step captured in a CUDA graph. On a CPU the same manual step runs
uncaptured and must train exactly as Lightning's automatic optimization does; on a CUDA GPU the replayed
graph must train as the uncaptured step does."""

import pytest
import torch

from mnistlab.core.errors import ConfigError

from helpers import run_train, synthetic_overrides

# the speedrun's ingredients: AdamW, a one-cycle schedule (it cycles beta1 too), label smoothing, L2,
# per-sample augmentation; 600 images at batch 64 leave a partial last batch
RECIPE = ["model=cnn", "model.net.channels=[8,16]", "model.net.dense=32", "model.net.batch_norm=true",
          "optimizer=adamw", "scheduler=onecycle", "regularization=label_smoothing", "regularization.l2=0.0001",
          "augment=digits", "data.batch_size=64", "trainer.max_epochs=2", "callbacks.early_stopping=null"]


def weights(run_dir):
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return checkpoint["state_dict"], checkpoint


def test_the_manual_step_trains_as_lightnings_automatic_optimization(synthetic_root, tmp_path, recwarn):
    automatic = run_train(tmp_path / "automatic", [*synthetic_overrides(synthetic_root), *RECIPE])
    manual = run_train(tmp_path / "manual", [*synthetic_overrides(synthetic_root), *RECIPE, "model.cuda_graph=true"])
    assert manual["global_step"] == automatic["global_step"] == 2 * 9  # 540 images: 8 full batches + 28
    assert any("runs uncaptured" in str(w.message) for w in recwarn)
    a, checkpoint_a = weights(tmp_path / "automatic")
    m, checkpoint_m = weights(tmp_path / "manual")
    assert a.keys() == m.keys()
    for key in a:
        assert torch.allclose(a[key].float(), m[key].float(), atol=1e-5), key
    lr_a = checkpoint_a["lr_schedulers"][0]["_last_lr"]
    assert checkpoint_m["lr_schedulers"][0]["_last_lr"] == pytest.approx(lr_a)  # the schedule stepped alike
    assert manual["test/acc"] == pytest.approx(automatic["test/acc"])


@pytest.mark.parametrize("override, message", [
    ("trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val"),
    ("++trainer.accumulate_grad_batches=2", "accumulate_grad_batches"),
    ("trainer.precision=16-mixed", "loss scaling"),
    ("model.compile=true", "model.compile"),
    ("scheduler=plateau", "plateau"),
    ("++trainer.devices=2", "more than one device"),
])
def test_what_a_captured_step_cannot_hold_is_refused_in_one_line(synthetic_root, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message) as err:
        run_train(tmp_path, [*synthetic_overrides(synthetic_root), "model.cuda_graph=true", override])
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: the graph is captured there only")
def test_the_replayed_graph_trains_as_the_uncaptured_step(synthetic_root, tmp_path):
    gpu = ["trainer=gpu", "trainer.accelerator=gpu", "model.channels_last=false"]
    captured = run_train(tmp_path / "captured", [*synthetic_overrides(synthetic_root), *RECIPE, *gpu,
                                                 "model.cuda_graph=true"])
    assert captured["global_step"] == 2 * 9 and captured["warmup_seconds"] > 0
    automatic = run_train(tmp_path / "automatic", [*synthetic_overrides(synthetic_root), *RECIPE, *gpu])
    a, _ = weights(tmp_path / "automatic")
    c, _ = weights(tmp_path / "captured")
    # the graph draws augmentation from the default CUDA generator, the uncaptured run from the
    # DataModule's own: the same training, other random draws, so the results agree, the weights do not
    assert abs(captured["test/acc"] - automatic["test/acc"]) < 0.05
    assert all(torch.isfinite(v.float()).all() for v in c.values()) and a.keys() == c.keys()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: the graph is captured there only")
def test_a_captured_run_resumes_from_its_checkpoint(synthetic_root, tmp_path):
    common = [*synthetic_overrides(synthetic_root), *RECIPE, "trainer=gpu", "model.cuda_graph=true"]
    first = run_train(tmp_path / "run", [*common, "trainer.max_epochs=1"])
    resumed = run_train(tmp_path / "run", [*common, f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"])
    assert first["global_step"] == 9 and resumed["global_step"] == 18
    assert resumed["test/acc"] > 0.5
