import io

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from mnistlab.core.errors import ConfigError
from mnistlab.models.classifier import CNNClassifier, DNNClassifier, LeNet5Classifier, SoftmaxClassifier
from mnistlab.models.schedules import ExponentialDecay, WarmupCosine

SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}


def test_penalties_equal_their_formulas():
    module = DNNClassifier(net={"hidden": [8]}, optimizer=SGD, regularization={"l1": 0.01, "l2": 0.1})
    weights = [module.net.layers[1].weight, module.net.layers[3].weight]
    expected = 0.01 * sum(w.abs().sum() for w in weights) + 0.1 * sum(w.pow(2).sum() for w in weights)
    assert torch.allclose(module.penalty(), expected)
    assert DNNClassifier(net={"hidden": [8]}, optimizer=SGD).penalty() is None


def test_penalty_skips_biases_and_batch_norm():
    module = CNNClassifier(net={"batch_norm": True}, optimizer=SGD, regularization={"l2": 1.0})
    with torch.no_grad():
        for p in module.net.parameters():
            p.fill_(0.0 if p.ndim > 1 else 5.0)
    assert module.penalty().item() == 0.0


def test_training_loss_includes_the_penalty():
    module = SoftmaxClassifier(optimizer=SGD, regularization={"l2": 0.5})
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    loss = module.training_step((x, y), 0)
    plain = torch.nn.functional.cross_entropy(module(x), y)
    assert torch.allclose(loss, plain + 0.5 * module.net.layers[2].weight.pow(2).sum())


def test_label_smoothing_softens_training_targets_only():
    module = SoftmaxClassifier(optimizer=SGD, regularization={"label_smoothing": 0.1})
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    logits = module(x)
    smoothed = -(0.9 * logits.log_softmax(-1).gather(1, y[:, None]).squeeze(1) + 0.01 * logits.log_softmax(-1).sum(-1))
    assert torch.allclose(module.training_step((x, y), 0), smoothed.mean(), atol=1e-6)
    module._eval_step((x, y), "test")  # evaluation stays plain cross-entropy
    assert torch.allclose(module.test_loss.compute(), torch.nn.functional.cross_entropy(logits, y), atol=1e-6)
    # training accuracy: counts on the device, not a host sync per step
    assert int(module.train_seen) == 4 and int(module.train_correct) == int((logits.argmax(-1) == y).sum())
    with pytest.raises(ConfigError, match=r"label_smoothing must be in \[0, 1\), got 1\.5"):
        SoftmaxClassifier(optimizer=SGD, regularization={"label_smoothing": 1.5})


def test_squared_error_is_the_softmax_s_distance_from_the_one_hot_label():
    module = SoftmaxClassifier(optimizer=SGD, loss="squared_error")
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    probabilities = module(x).softmax(-1)
    expected = sum((probabilities[i] - torch.eye(10)[y[i]]).pow(2).sum() for i in range(4)) / 4
    assert torch.allclose(module.training_step((x, y), 0), expected, atol=1e-6)
    with pytest.raises(ConfigError, match=r"model\.loss must be one of cross_entropy, squared_error, got 'hinge'"):
        SoftmaxClassifier(optimizer=SGD, loss="hinge")
    with pytest.raises(ConfigError, match="label_smoothing smooths the cross-entropy's targets"):
        SoftmaxClassifier(optimizer=SGD, loss="squared_error", regularization={"label_smoothing": 0.1})


def test_optimizer_arguments_torch_refuses_are_config_errors():
    module = SoftmaxClassifier(optimizer={"_target_": "torch.optim.Adam", "lr": 0.001, "eps": -1.0})
    with pytest.raises(ConfigError, match=r"^optimizer: Invalid epsilon value: -1\.0$"):
        module.build_optimizer()


def test_model_net_dropout_sets_the_model_rate():
    module = LeNet5Classifier(net={"dropout": 0.4}, optimizer=SGD)
    assert {m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)} == {0.4}
    module = SoftmaxClassifier(net={"dropout": 0.2}, optimizer=SGD)
    assert [m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)] == [0.2]


def test_hyperparameters_are_plain_and_checkpoint_loads_weights_only():
    net = OmegaConf.create({"hidden": [16, 8], "activation": "tanh"})
    module = DNNClassifier(net=net, optimizer=OmegaConf.create(SGD), scheduler=None)
    assert type(module.hparams["net"]) is dict and module.hparams["net"]["hidden"] == [16, 8]
    buffer = io.BytesIO()
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    rebuilt = DNNClassifier(**loaded["hyper_parameters"])
    rebuilt.load_state_dict(loaded["state_dict"])
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(rebuilt.eval()(x), module.eval()(x))


def test_exponential_decay_matches_tensorflow():
    smooth, stairs = ExponentialDecay(100, 0.5), ExponentialDecay(100, 0.5, staircase=True)
    assert [smooth(s) for s in (0, 50, 100, 250)] == pytest.approx([1.0, 0.5**0.5, 0.5, 0.5**2.5])
    assert [stairs(s) for s in (0, 99, 100, 199, 250)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_warmup_cosine_shape():
    f = WarmupCosine(total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    a = CNNClassifier(optimizer=SGD)
    b = CNNClassifier(optimizer=SGD, channels_last=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(a(x), b(x), atol=1e-5)
    assert b.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)


ADAM_FUSED = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "fused": True}


@pytest.mark.parametrize("precision, clip, fused", [("32-true", 1.0, True), ("bf16-mixed", None, True),
                                                    ("bf16-mixed", 1.0, None)])
def test_fused_optimizer_is_kept_unless_mixed_precision_must_clip(precision, clip, fused):
    # Lightning's mixed-precision plugin cannot clip a fused optimizer's gradients; everything else can.
    module = DNNClassifier(net={"hidden": [8]}, optimizer=ADAM_FUSED)
    module.trainer = pl.Trainer(accelerator="cpu", precision=precision, gradient_clip_val=clip, logger=False,
                                enable_progress_bar=False, enable_model_summary=False)
    assert module.build_optimizer().defaults["fused"] is fused


def test_lightnings_hook_name_bypasses_module_setattr_but_stays_readable():
    module = SoftmaxClassifier(optimizer=SGD)
    module._current_fx_name = "training_step"
    assert module._current_fx_name == "training_step" and "_current_fx_name" not in module._modules
    module.extra = torch.nn.Linear(2, 2)  # every other attribute still goes through nn.Module
    assert "extra" in module._modules
