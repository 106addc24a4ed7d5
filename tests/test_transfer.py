"""Transfer learning (layers of a trained run copied into a new one, frozen for a while), the few-labels
data options it is shown with, and the per-layer gradient norms: real runs on the synthetic digits."""

from __future__ import annotations

import csv

import pytest
import torch

from mnistlab.core.errors import ConfigError
from mnistlab.data.datamodule import MNISTDataModule
from mnistlab.models.checkpoint import load_checkpoint
from mnistlab.models.layers import layers_of
from mnistlab.models.nets import CNN, DNN
from mnistlab.models.transfer import select_layers

from helpers import command, run_train, synthetic_overrides


def weights(path, prefix="net."):
    return {k: v for k, v in load_checkpoint(path)["state_dict"].items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------------
# data.classes and data.train_per_class

def test_classes_keep_their_labels_in_every_split_and_per_class_draws_with_the_split(synthetic_root):
    def setup(**kwargs):
        dm = MNISTDataModule(data_dir=str(synthetic_root), download=False, classes=[5, 7, 9], **kwargs)
        dm.setup("fit")
        return dm

    dm = setup(train_per_class=3)
    for split in (dm.train_set, dm.val_set, dm.test_set):
        assert set(split[1].unique().tolist()) == {5, 7, 9}
    assert torch.bincount(dm.train_set[1], minlength=10)[[5, 7, 9]].tolist() == [3, 3, 3]
    other = setup(train_per_class=3, split_seed=1)
    assert not torch.equal(dm.train_set[0], other.train_set[0])  # another split draws other images
    everything = setup()
    assert len(everything.train_set[1]) > 9 and len(everything.test_set[1]) == len(dm.test_set[1])


@pytest.mark.parametrize("classes, says", [([], "must be a list of labels"), ([3, 3], "a label twice"),
                                           ([10], "labels are 0-9"), ("5", "must be a list of labels")])
def test_bad_classes_are_refused_in_one_line(classes, says):
    with pytest.raises(ConfigError, match=says):
        MNISTDataModule(classes=classes)


# ---------------------------------------------------------------------------------------------------
# Choosing layers

def test_layers_are_named_as_in_the_state_dict_and_batch_norm_goes_with_its_layer():
    assert list(layers_of(DNN())) == ["layers.1", "layers.3", "layers.5"]
    cnn = layers_of(CNN(batch_norm=True))
    assert len(next(iter(cnn.values()))) == 2  # the convolution and its batch norm
    assert select_layers(DNN(), None) == ["layers.1", "layers.3"]  # every layer but the output
    assert select_layers(DNN(), 1) == ["layers.1"]
    assert select_layers(DNN(), ["layers.3", "layers.1"]) == ["layers.1", "layers.3"]


@pytest.mark.parametrize("layers, says", [(4, r"must be 1 to 3 \(its layers: layers.1, layers.3, layers.5\)"),
                                          (["layers.2"], "no layer 'layers.2'; its layers are layers.1"),
                                          ("layers.1", "a count, a list of layer names or null")])
def test_bad_layer_choices_are_named(layers, says):
    with pytest.raises(ConfigError, match=says):
        select_layers(DNN(), layers)


# ---------------------------------------------------------------------------------------------------
# Real runs

@pytest.fixture(scope="module")
def transfer_args(tiny_run, synthetic_root):
    return [*synthetic_overrides(synthetic_root), "model=dnn", "logger=csv", "data.classes=[5,6,7,8,9]",
            f"transfer.ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}"]


def test_frozen_layers_are_the_source_s_and_the_rest_trains(tmp_path, tiny_run, transfer_args):
    source = weights(tiny_run / "checkpoints" / "last.ckpt")
    run_train(tmp_path, [*transfer_args, "transfer.layers=2", "transfer.freeze_epochs=null", "trainer.max_epochs=2"])
    trained = weights(tmp_path / "checkpoints" / "last.ckpt")
    for key in ("net.layers.1.weight", "net.layers.1.bias", "net.layers.3.weight"):
        assert torch.equal(trained[key], source[key]), key
    assert not torch.equal(trained["net.layers.5.weight"], source["net.layers.5.weight"])


def test_layers_thaw_after_freeze_epochs_and_gradient_norms_show_when(tmp_path, tiny_run, transfer_args):
    source = weights(tiny_run / "checkpoints" / "last.ckpt")
    run_train(tmp_path, [*transfer_args, "transfer.layers=[layers.1]", "transfer.freeze_epochs=1",
                         "trainer.max_epochs=2", "trainer.log_every_n_steps=1"])
    trained = weights(tmp_path / "checkpoints" / "last.ckpt")
    assert not torch.equal(trained["net.layers.1.weight"], source["net.layers.1.weight"])  # thawed, trained
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    logged = [r for r in rows if r.get("grad_norm/layers.5")]
    frozen = [r for r in logged if r["epoch"] == "0"]
    thawed = [r for r in logged if r["epoch"] == "1"]
    assert frozen and thawed
    assert all(r["grad_norm/layers.1"] == "" for r in frozen)  # no gradient while frozen
    assert all(float(r["grad_norm/layers.1"]) > 0 for r in thawed)
    total = thawed[-1]
    layers = [float(total[f"grad_norm/layers.{i}"]) for i in (1, 3, 5)]
    assert float(total["grad_norm/total"]) == pytest.approx(sum(v * v for v in layers) ** 0.5, rel=1e-4)


def test_a_layer_of_another_shape_is_named_before_the_run_starts(tmp_path, transfer_args):
    result = command("train", *transfer_args, "model.net.hidden=[300,50]", f"hydra.run.dir={tmp_path / 'run'}",
                     "trainer.accelerator=cpu")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: transfer.layers: layer layers.3 does not fit: layers.3.weight is (100, 300) in ")
    assert "but (50, 300) here; copy only the layers below it (transfer.layers=1)" in last
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_thawing_is_refused_where_parameters_are_fixed_at_the_start(tmp_path, transfer_args):
    result = command("train", *transfer_args, "transfer.freeze_epochs=2", "trainer=ddp", "trainer.devices=2",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "transfer.freeze_epochs: DDP fixes which parameters train" in result.stderr


def test_sigmoid_gradients_vanish_toward_the_input_and_relu_s_do_not(tmp_path, synthetic_root):
    """The vanishing-gradient lesson's number: the lowest layer's gradient norm against the output layer's."""
    def ratio(activation: str) -> float:
        run = tmp_path / activation
        run_train(run, [*synthetic_overrides(synthetic_root), "model=dnn", f"model.net.activation={activation}",
                        "model.net.hidden=[300,300,300,300,100]", "optimizer=sgd", "logger=csv",
                        "trainer.max_epochs=1", "trainer.log_every_n_steps=1"])
        row = next(r for r in csv.DictReader(next(run.rglob("metrics.csv")).open()) if r.get("grad_norm/total"))
        return float(row["grad_norm/layers.1"]) / float(row["grad_norm/layers.11"])

    assert ratio("sigmoid") < 0.1 < ratio("relu")
