import pytest
import torch

from mnistlab.core.errors import ConfigError
from mnistlab.data.datamodule import MNISTDataModule, TensorBatches
from mnistlab.data.datasets import load_split


def datamodule(root, **kwargs) -> MNISTDataModule:
    settings = dict(data_dir=str(root), download=False, batch_size=32, eval_batch_size=50)
    settings.update(kwargs)
    dm = MNISTDataModule(**settings)
    dm.setup()
    return dm


def test_split_sizes_types_and_stability(synthetic_root):
    dm = datamodule(synthetic_root, val_fraction=0.2)
    train_x, train_y = dm.train_set
    val_x, val_y = dm.val_set
    assert (len(train_y), len(val_y), len(dm.test_set[1])) == (480, 120, 200)
    assert train_x.dtype == torch.uint8 and train_x.shape[1:] == (28, 28) and train_y.dtype == torch.int64
    again = datamodule(synthetic_root, val_fraction=0.2, seed=123)  # run seed does not move the split
    assert torch.equal(again.val_set[0], val_x)
    other = datamodule(synthetic_root, val_fraction=0.2, split_seed=1)
    assert not torch.equal(other.val_set[0], val_x)
    # train and validation are disjoint and together are exactly the training file
    weights = torch.randint(1, 1 << 20, (28 * 28,), generator=torch.Generator().manual_seed(0))

    def fingerprints(images):
        return torch.sort((images.flatten(1).long() * weights).sum(1)).values

    original, _ = load_split("mnist", "train", synthetic_root, download=False)
    assert torch.equal(fingerprints(torch.cat([train_x, val_x])), fingerprints(original))


def test_batches_are_pixels_and_only_training_augmented(synthetic_root):
    dm = datamodule(synthetic_root, augment=dict(rotation=20, shift=3))
    raw = next(iter(dm.val_dataloader()))
    x, y = dm.prepare_batch(raw, train=False)
    expected = raw[0].unsqueeze(1).float() / 255  # the network standardizes: one normalization, inside it
    assert dm.input_stats == (dm.info.mean, dm.info.std)
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.float32 and torch.allclose(x, expected)
    assert torch.equal(y, raw[1])
    x_train, _ = dm.prepare_batch(raw, train=True)
    assert not torch.allclose(x_train, expected)


def test_lightning_hook_augments_only_while_training(synthetic_root):
    dm = datamodule(synthetic_root, augment=dict(rotation=20))
    batch = next(iter(dm.test_dataloader()))

    class FakeTrainer:  # only the flag the hook reads
        training = False

    dm.trainer = FakeTrainer()
    plain, _ = dm.on_after_batch_transfer(batch, 0)
    assert torch.allclose(plain, dm.prepare_batch(batch, train=False)[0])
    FakeTrainer.training = True
    assert not torch.allclose(dm.on_after_batch_transfer(batch, 0)[0], plain)


def test_shuffling_changes_per_epoch_and_is_reproducible(synthetic_root):
    dm = datamodule(synthetic_root)
    loader = dm.train_dataloader()
    first = torch.cat([y for _, y in loader])
    loader.sampler.set_epoch(1)
    second = torch.cat([y for _, y in loader])
    assert not torch.equal(first, second)
    assert sorted(first.tolist()) == sorted(second.tolist()) == sorted(dm.train_set[1].tolist())
    loader.sampler.set_epoch(0)
    assert torch.equal(torch.cat([y for _, y in loader]), first)
    assert len(loader) == 17  # ceil(540 / 32)
    eval_loader = dm.val_dataloader()
    assert torch.equal(torch.cat([y for _, y in eval_loader]), dm.val_set[1])  # in order, nothing dropped


def test_ddp_shards_are_disjoint_and_equal_length():
    images = torch.arange(103, dtype=torch.uint8).view(-1, 1, 1).expand(-1, 28, 28)
    labels = torch.arange(103)
    shards = [TensorBatches(images, labels, batch_size=10, shuffle=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    seen = [torch.cat([y for _, y in s]) for s in shards]
    assert len(seen[0]) == len(seen[1]) == 51 and len(shards[0]) == len(shards[1]) == 6
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    evals = [torch.cat([y for _, y in TensorBatches(images, labels, 10, rank=r, world_size=2)]) for r in (0, 1)]
    assert sorted(torch.cat(evals).tolist()) == labels.tolist()  # evaluation covers every sample once


def test_augmentation_rng_is_saved_and_restored(synthetic_root):
    dm = datamodule(synthetic_root, augment=dict(rotation=20))
    batch = next(iter(dm.train_dataloader()))
    dm.prepare_batch(batch, train=True)
    state = dm.state_dict()
    expected = dm.prepare_batch(batch, train=True)[0]
    fresh = datamodule(synthetic_root, augment=dict(rotation=20))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.prepare_batch(batch, train=True)[0], expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "data.batch_size"),
    (dict(val_fraction=1.0), "data.val_fraction must be in \\(0, 1\\)"),
    (dict(val_fraction=0.0), "data.val_fraction"),
])
def test_bad_settings_fail_before_loading(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MNISTDataModule(data_dir=str(tmp_path / "nothing-here"), download=False, **kwargs)


def test_real_mnist_official_splits(mnist_root):
    dm = datamodule(mnist_root, val_fraction=0.1)
    assert (len(dm.train_set[1]), len(dm.val_set[1]), len(dm.test_set[1])) == (54000, 6000, 10000)
    pixels = torch.cat([dm.train_set[0], dm.val_set[0]]).float() / 255
    assert abs(pixels.mean().item() - dm.info.mean) < 1e-3 and abs(pixels.std().item() - dm.info.std) < 1e-3
