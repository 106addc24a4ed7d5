"""The pipelines ``python -m mnistlab.bench`` measures mnistlab against, and the step timer they share.

- ``textbook``: torchvision's MNIST with per-sample PIL transforms through a DataLoader with workers;
- ``bare``: mnistlab's data path and network in a plain PyTorch loop (the ceiling);
- ``lightning``: Lightning's floor, a LightningModule whose step only computes the loss, no callbacks.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ..config.devices import resolve_device
from ..data.datasets import locate_split
from ..training.build import build_datamodule, build_model, configure_device


class StepTimer(pl.Callback):
    """Wall time over training steps ``warmup`` .. ``warmup + steps`` (after Lightning's set-up)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.end = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            sync()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.warmup < trainer.global_step <= self.warmup + self.steps:
            self.images += len(batch[1])
        if trainer.global_step == self.warmup + self.steps:
            sync()
            self.end = time.perf_counter()
            trainer.should_stop = True

    @property
    def images_per_second(self) -> float:
        return self.images / (self.end - self.start)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def training_device(cfg) -> torch.device:
    """The device ``trainer.accelerator`` picks (as ``device=`` does), with its matmul settings."""
    device = resolve_device(cfg.trainer.accelerator, "trainer.accelerator=")
    configure_device(cfg, device)
    return device


def trainer_limits(timer: StepTimer) -> dict[str, Any]:
    return dict(max_steps=timer.warmup + timer.steps + 1, max_epochs=-1, limit_val_batches=0,
                num_sanity_val_steps=0, enable_checkpointing=False)


def textbook_loader(cfg, batch_size: int):
    import torchvision
    from torchvision import transforms

    images_path, _ = locate_split("mnist", "train", cfg.data.data_dir, cfg.data.download)
    root = images_path.parent.parent.parent  # torchvision layout: <root>/MNIST/raw/<file>
    aug = cfg.augment
    transform = transforms.Compose([
        transforms.RandomAffine(degrees=aug.rotation, translate=(aug.shift / 28, aug.shift / 28),
                                scale=(1 - aug.scale, 1 + aug.scale)),
        transforms.ColorJitter(brightness=aug.brightness, contrast=aug.contrast),
        transforms.ToTensor(),
    ])
    dataset = torchvision.datasets.MNIST(str(root), train=True, transform=transform, download=False)
    workers = min(4, os.cpu_count() or 1)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       persistent_workers=True, pin_memory=torch.cuda.is_available())


def bare_loop(cfg, warmup: int, steps: int) -> float:
    """The same data path and network in a plain loop: what Lightning's per-step cost is measured against."""
    device = training_device(cfg)
    datamodule = build_datamodule(cfg)
    module = build_model(cfg, datamodule.input_stats).to(device)
    datamodule.setup("fit")
    if device.type == "cuda":
        datamodule.train_set = tuple(t.to(device) for t in datamodule.train_set)
    optimizer = module.build_optimizer()  # the configured optimizer; a schedule costs nothing measurable
    module.train()
    step, images, start = 0, 0, 0.0
    while step < warmup + steps:
        for batch in datamodule.train_dataloader():
            if step == warmup:
                sync()
                start = time.perf_counter()
            x, y = datamodule.prepare_batch(tuple(t.to(device, non_blocking=True) for t in batch), train=True)
            loss = F.cross_entropy(module(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step > warmup:
                images += len(y)
            if step == warmup + steps:
                break
    sync()
    return images / (time.perf_counter() - start)


class LossOnly(pl.LightningModule):
    """Lightning's floor: the network, its optimizer and a training step that only computes the loss."""

    def __init__(self, module) -> None:
        super().__init__()
        self.net, self.memory_format, self.build_optimizer = module.net, module.memory_format, module.build_optimizer

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x.contiguous(memory_format=self.memory_format)), y)

    def configure_optimizers(self):
        return self.build_optimizer(self.parameters())


def lightning_floor(cfg, timer: StepTimer) -> float:
    """What Lightning's loop costs by itself: no callbacks but the timer, no logger, no progress bar."""
    device = training_device(cfg)
    trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                         precision=cfg.trainer.precision, logger=False, callbacks=[timer],
                         enable_progress_bar=False, enable_model_summary=False, **trainer_limits(timer))
    datamodule = build_datamodule(cfg)
    trainer.fit(LossOnly(build_model(cfg, datamodule.input_stats)), datamodule=datamodule)
    return timer.images_per_second
