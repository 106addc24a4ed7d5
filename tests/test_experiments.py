"""Every experiment recipe composes and completes a fast_dev_run (on small synthetic data)."""


import pytest
from fake_data import make_dataset

from mnistlab.config.compose import compose, group_options

from helpers import run_train, synthetic_overrides

EXPERIMENTS = group_options("experiment")


def test_the_recipes_are_all_there():
    assert {"tf_dnn", "tf_dnn_tuned", "keras_cnn", "lenet5", "cnn_best", "fashion_cnn", "speedrun",
            "speedrun_gpu", "one_minute", "ten_minutes", "handwriting"} <= set(EXPERIMENTS)


def test_tutorial_recipes_match_the_tutorials():
    keras = compose(["experiment=keras_cnn"])
    assert (keras.data.batch_size, keras.data.val_fraction, keras.trainer.max_epochs) == (64, 0.2, 5)
    assert keras.optimizer._target_ == "torch.optim.Adam" and keras.optimizer.lr == 0.001
    assert keras.augment.rotation == 0 and keras.model.net.channels == [16, 32] and keras.model.net.dense == 128
    dnn = compose(["experiment=tf_dnn"])
    assert dnn.model.net.hidden == [300, 100] and dnn.model.net.init == "truncated_normal"
    assert dnn.optimizer._target_ == "torch.optim.SGD" and dnn.data.batch_size == 50  # plain SGD (lr: see the recipe)
    fashion = compose(["experiment=fashion_cnn"])
    assert fashion.data.dataset == "fashion_mnist" and fashion.augment.hflip == 0.5
    assert fashion.model.net.center_crop is None  # cnn_best's 24x24 crop would cut off sleeves and soles


@pytest.fixture(scope="module")
def both_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("both")
    make_dataset(root, n_train=300, n_test=100)
    make_dataset(root, n_train=300, n_test=100, folder="FashionMNIST")
    return root


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(experiment, both_datasets, tmp_path):
    metrics = run_train(tmp_path, [f"experiment={experiment}", *synthetic_overrides(both_datasets),
                                   "++trainer.fast_dev_run=true"])
    assert metrics["global_step"] == 1 and 0.0 <= metrics["test/acc"] <= 1.0
