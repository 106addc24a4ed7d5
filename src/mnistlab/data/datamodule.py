"""The MNIST-family LightningDataModule: uint8 tensors in memory, batched by index, augmented on the device."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from ..config import rules
from ..core.errors import ConfigError, DataError
from .augment import BatchAugment
from .datasets import ENV_DATA_DIR, dataset_info, load_split, locate_split


class EpochSampler:
    """Where Lightning looks for ``loader.sampler.set_epoch``: each epoch gets its own, reproducible order."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class TensorBatches:
    """Batches sliced straight from in-memory tensors: no Dataset, no workers, no per-sample Python.

    Under DDP each rank iterates its own shard (``rank::world_size``) with the per-device batch size.
    """

    batch_sampler = None  # read by Lightning's DataLoader checks; batching is done here

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochSampler()

    def _shard_size(self) -> int:
        n = len(self.labels)
        if self.world_size == 1:
            return n
        # Shuffled shards are cut to equal length so every rank runs the same number of steps.
        return n // self.world_size if self.shuffle else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)

    def _order(self) -> torch.Tensor | None:
        n = len(self.labels)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.sampler.epoch)
            order = torch.randperm(n, generator=generator)
        elif self.world_size == 1:
            return None  # contiguous slices: views, no copy
        else:
            order = torch.arange(n)
        order = order[self.rank :: self.world_size][: self._shard_size()]
        return order.to(self.images.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        for step in range(len(self)):
            start = step * self.batch_size
            if order is None:
                yield self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]
            else:
                index = order[start : start + self.batch_size]
                yield self.images[index], self.labels[index]


class MNISTDataModule(pl.LightningDataModule):
    """MNIST or Fashion-MNIST on the official splits, with a seeded validation part cut from train."""

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str | None = None,
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        device_cache: bool = True,
        normalize: bool = True,
        augment: Mapping[str, Any] | None = None,
        classes: Sequence[int] | None = None,
        train_per_class: int | None = None,
    ) -> None:
        super().__init__()
        rules.positive("data.batch_size", batch_size, whole=True)
        rules.positive("data.eval_batch_size", eval_batch_size, whole=True)
        rules.open_fraction("data.val_fraction", val_fraction)
        rules.switch("data.normalize", normalize)
        if train_per_class is not None:
            rules.positive("data.train_per_class", train_per_class, whole=True)
        augment = dict(augment or {})
        self.info = dataset_info(dataset)
        classes = self._check_classes(classes)
        self.save_hyperparameters(
            dict(dataset=dataset, data_dir=data_dir, download=download, batch_size=batch_size,
                 eval_batch_size=eval_batch_size, val_fraction=val_fraction, split_seed=split_seed, seed=seed,
                 device_cache=device_cache, normalize=normalize, augment=augment, classes=classes,
                 train_per_class=train_per_class)
        )
        self.augment = BatchAugment(**augment)
        for flip in ("hflip", "vflip"):
            if augment.get(flip) and flip not in self.info.label_keeping_flips:
                warnings.warn(f"augment.{flip}={augment[flip]}: a flipped {dataset} image can be another class or "
                              "none (a mirrored 2 is no 2, an upside-down 6 is a 9); set it to 0 here", stacklevel=2)
        self.train_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self.val_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self.test_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self._generator: torch.Generator | None = None
        self._pending_generator_state: dict | None = None

    def _check_classes(self, classes: Sequence[int] | None) -> list[int] | None:
        """``data.classes``: the labels kept (in train, validation and test), each once, from the dataset's."""
        if classes is None:
            return None
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not classes:
            raise ConfigError(f"data.classes must be a list of labels such as [5,6,7,8,9] (or null for all), "
                              f"got {classes!r}")
        count = len(self.info.classes)
        for label in classes:
            rules.check("data.classes", label, lambda v: 0 <= v < count, f"labels are 0-{count - 1}", whole=True)
        if len(set(classes)) != len(classes):
            raise ConfigError(f"data.classes lists a label twice: {list(classes)}")
        return sorted(int(c) for c in classes)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def _kept(self, labels: torch.Tensor, order: torch.Tensor | None = None,
              per_class: int | None = None) -> torch.Tensor:
        """Indices (ascending) of the images ``data.classes`` keeps; with ``per_class``, the first that many of
        each class in ``order`` (the seeded split's order, so another split_seed draws other images)."""
        order = torch.arange(len(labels)) if order is None else order
        wanted = self.hparams.classes
        keep = order if wanted is None else order[torch.isin(labels[order], torch.tensor(wanted))]
        if per_class is not None:
            ranks = torch.zeros_like(keep)
            for label in labels[keep].unique():
                where = labels[keep] == label
                ranks[where] = torch.arange(int(where.sum()))
            keep = keep[ranks < per_class]
        return keep.sort().values

    @property
    def input_stats(self) -> tuple[float, float]:
        return self.info.input_stats(self.hparams.normalize)

    @classmethod
    def for_checkpoint(cls, checkpoint: Mapping[str, Any], data_dir: str | None = None, dataset: str | None = None,
                       eval_batch_size: int = 1000) -> MNISTDataModule:
        """The test data of a checkpoint's run (or of ``dataset``), as it was split and normalized, without
        augmentation; ``data_dir`` (else ``$MNISTLAB_DATA_DIR``, else the run's) says where the files are."""
        saved = checkpoint.get("datamodule_hyper_parameters") or {}
        return cls(dataset=dataset or saved.get("dataset", "mnist"),
                   data_dir=data_dir or os.environ.get(ENV_DATA_DIR) or saved.get("data_dir"),
                   download=saved.get("download", True), eval_batch_size=eval_batch_size,
                   val_fraction=saved.get("val_fraction", 0.1), split_seed=saved.get("split_seed", 0),
                   normalize=saved.get("normalize", True), classes=None if dataset else saved.get("classes"))

    def prepare_data(self) -> None:
        # Runs on one process per node: download here so DDP ranks do not race for the files.
        for split in ("train", "test"):
            locate_split(self.info.name, split, self.hparams.data_dir, self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if self.train_set is None and stage in (None, "fit", "validate"):
            images, labels = load_split(self.info.name, "train", hp.data_dir, hp.download)
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(hp.split_seed))
            n_val = max(1, round(len(labels) * hp.val_fraction))
            if n_val >= len(labels):
                raise DataError(f"data.val_fraction={hp.val_fraction} leaves {len(labels) - n_val} of the "
                                f"{len(labels)} training images for training")
            val_idx = self._kept(labels, order[:n_val])
            train_idx = self._kept(labels, order[n_val:], hp.train_per_class)
            self.train_set = (images[train_idx], labels[train_idx])
            self.val_set = (images[val_idx], labels[val_idx])
        # the test split is read (and checked) before a fit too: a bad file must not wait for the fit's end
        if self.test_set is None and stage in (None, "fit", "test", "predict"):
            images, labels = load_split(self.info.name, "test", hp.data_dir, hp.download)
            test_idx = self._kept(labels)
            self.test_set = (images[test_idx], labels[test_idx]) if hp.classes else (images, labels)
        device = self._cache_device()
        if device is not None:  # one copy to the GPU instead of one per batch
            for name in ("train_set", "val_set", "test_set"):
                split = getattr(self, name)
                if split is not None:
                    setattr(self, name, tuple(t.to(device, non_blocking=True) for t in split))

    def _cache_device(self) -> torch.device | None:
        if not self.hparams.device_cache or self.trainer is None:
            return None
        device = self.trainer.strategy.root_device
        return device if device.type == "cuda" else None

    def _loader(self, split, batch_size: int, shuffle: bool) -> TensorBatches:
        if split is None:
            raise RuntimeError("MNISTDataModule.setup() must run before asking for a dataloader")
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return TensorBatches(*split, batch_size=batch_size, shuffle=shuffle, seed=self.hparams.seed,
                             rank=rank, world_size=world)

    def train_dataloader(self) -> TensorBatches:
        return self._loader(self.train_set, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader(self.val_set, self.hparams.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader(self.test_set, self.hparams.eval_batch_size, shuffle=False)

    # -- on the device -------------------------------------------------------------------------
    def generator(self, device: torch.device) -> torch.Generator:
        """The augmentation RNG, on the batch's device, seeded from ``seed`` and saved in checkpoints."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.hparams.seed)
            pending, self._pending_generator_state = self._pending_generator_state, None
            if pending is not None:
                if pending["device"] == device.type:
                    self._generator.set_state(pending["state"])
                else:
                    warnings.warn("augmentation RNG saved on another device type; reseeding it", stacklevel=2)
        return self._generator

    def prepare_batch(self, batch, train: bool, generator: torch.Generator | None = None):
        """uint8 ``[N, H, W]`` -> float pixels ``[N, 1, H, W]`` in [0, 1], augmented when ``train`` (drawing
        from ``generator`` if given, else from the run's own augmentation RNG). The network normalizes."""
        images, labels = batch
        x = images.unsqueeze(1).float().div_(255.0) if images.dtype == torch.uint8 else images
        if train and self.augment.enabled:
            x = self.augment(x, generator=generator if generator is not None else self.generator(x.device))
        return x, labels

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, torch.Tensor):  # model.example_input_array on its way to the graph logger
            return batch
        training = self.trainer is not None and self.trainer.training
        module = getattr(self.trainer, "lightning_module", None)
        if training and getattr(module, "prepares_training_batches", False):
            return batch  # a captured training step converts and augments inside its graph
        return self.prepare_batch(batch, train=training)

    def state_dict(self) -> dict[str, Any]:
        if self._generator is None:
            return {}
        return {"augment_rng": {"device": self._generator.device.type, "state": self._generator.get_state()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._generator = None
        self._pending_generator_state = state_dict.get("augment_rng")
