import gzip

import pytest
import torch
import torchvision
from fake_data import make_dataset

from mnistlab.core.errors import DataError
from mnistlab.data import datasets
from mnistlab.data.datasets import load_split, locate_split, resolve_data_dir


def test_torchvision_layout_and_flat_gz_folders(tmp_path):
    root = make_dataset(tmp_path / "tv", n_train=50, n_test=20)
    images, labels = load_split("mnist", "train", root, download=False)
    assert images.shape == (50, 28, 28) and len(labels) == 50
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in (root / "MNIST" / "raw").iterdir():
        (flat / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    images_gz, labels_gz = load_split("mnist", "test", flat, download=False)
    assert images_gz.shape == (20, 28, 28) and locate_split("mnist", "test", flat, False)[0].suffix == ".gz"
    raw_images, raw_labels = load_split("mnist", "test", root, download=False)
    assert torch.equal(images_gz, raw_images) and torch.equal(labels_gz, raw_labels)


def test_env_var_is_used_when_no_dir_given(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == (tmp_path, True)
    assert resolve_data_dir(tmp_path / "explicit") == (tmp_path / "explicit", True)


def test_missing_files_without_download_say_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_split("mnist", "train", tmp_path, download=False)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "MNISTLAB_DATA_DIR" in message and "data.data_dir" in message and "\n" not in message


def test_failed_download_gives_one_line(tmp_path, monkeypatch):
    class Offline:  # the network itself is what cannot be reached here, so stand in for it
        def __init__(self, root, train, download):
            print("Tried https://mirror/, got:\n<urlopen error [Errno -2] Name or service not known>")
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DataError) as err:
        load_split("mnist", "train", tmp_path, download=True)
    assert "download failed: <urlopen error [Errno -2] Name or service not known>" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'kmnist'"):
        load_split("kmnist", "train")


def test_fashion_mnist_from_debian_package():
    folder = datasets.DATASETS["fashion_mnist"].system_dirs[0]
    if datasets.find_split_files(datasets.DEFAULT_DATA_DIR, datasets.DATASETS["fashion_mnist"], "test") is None:
        pytest.skip(f"Fashion-MNIST not installed in {folder} (apt-get install dataset-fashion-mnist)")
    images, labels = load_split("fashion_mnist", "test", download=False)
    assert images.shape == (10000, 28, 28) and sorted(labels.unique().tolist()) == list(range(10))
