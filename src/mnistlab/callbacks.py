"""mnistlab's own callbacks: throughput/timing and the TensorBoard pictures."""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard and PNG files, never to a window

import matplotlib.pyplot as plt  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning.loggers import TensorBoardLogger  # noqa: E402
from pytorch_lightning.utilities import rank_zero_only  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402


class SpeedMonitor(pl.Callback):
    """Wall time of the fit and training images per second (validation time excluded)."""

    def __init__(self) -> None:
        self.fit_seconds = 0.0
        self.train_seconds = 0.0
        self.train_images = 0
        self.epochs = 0
        self._fit_start = self._epoch_start = self._val_start = 0.0
        self._val_seconds = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_start = time.perf_counter()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_seconds = time.perf_counter() - self._fit_start

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start, self._val_seconds = time.perf_counter(), 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_images += len(batch[1]) * trainer.world_size

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self._val_seconds += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.train_seconds += time.perf_counter() - self._epoch_start - self._val_seconds
        self.epochs += 1

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else 0.0


def _tensorboard(trainer: pl.Trainer):
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def digits_figure(images: torch.Tensor, labels, predictions=None, class_names=None, columns: int = 8):
    """A grid of images titled with their labels (and predictions, red when wrong)."""
    n = len(images)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    names = class_names or [str(i) for i in range(10)]
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i].squeeze().cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
        true = names[int(labels[i])]
        if predictions is None:
            ax.set_title(true, fontsize=8)
        else:
            pred = names[int(predictions[i])]
            ax.set_title(f"{true} → {pred}", fontsize=8, color="black" if pred == true else "red")
    fig.tight_layout()
    return fig


class TensorBoardVisuals(pl.Callback):
    """Augmented training samples, weight histograms and labelled test predictions in TensorBoard."""

    def __init__(self, num_images: int = 32, histograms: bool = True) -> None:
        self.num_images = num_images
        self.histograms = histograms
        self._test_batch = None

    def _pixels(self, datamodule, x: torch.Tensor) -> torch.Tensor:
        return (x * datamodule.std + datamodule.mean).clamp(0, 1)

    @rank_zero_only
    def on_fit_start(self, trainer, pl_module) -> None:
        writer, dm = _tensorboard(trainer), trainer.datamodule
        if writer is None or dm is None or dm.train_set is None:
            return
        images, labels = (t[: self.num_images] for t in dm.train_set)
        raw = images.unsqueeze(1).float().to(pl_module.device) / 255
        # A private generator: drawing the picture must not shift the training run's random stream.
        generator = torch.Generator(device=raw.device).manual_seed(0)
        augmented = dm.augment(raw, generator=generator) if dm.augment.enabled else raw
        grid = make_grid(torch.cat([raw, augmented]), nrow=self.num_images // 2, pad_value=0.5)
        writer.add_image("data/train_raw_then_augmented", grid, 0)

    @rank_zero_only
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        writer = _tensorboard(trainer)
        if writer is None or not self.histograms:
            return
        for name, param in pl_module.net.named_parameters():
            writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), trainer.current_epoch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            x, y = batch
            self._test_batch = (x[: self.num_images].detach(), y[: self.num_images], outputs[: self.num_images])

    @rank_zero_only
    def on_test_end(self, trainer, pl_module) -> None:
        writer, dm = _tensorboard(trainer), trainer.datamodule
        if writer is None or self._test_batch is None or dm is None:
            return
        x, y, logits = self._test_batch
        fig = digits_figure(self._pixels(dm, x), y.cpu(), logits.argmax(-1).cpu(), class_names=list(dm.classes))
        writer.add_figure("test/predictions", fig, trainer.global_step)  # closes the figure
