"""mnistlab's own callbacks: throughput/timing and the TensorBoard pictures."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from .plots import confusion_figure, digits_figure


class SpeedMonitor(pl.Callback):
    """Wall time of the fit and training images per second (validation excluded).

    Its totals travel in checkpoints, so a resumed run reports the time of the whole run.
    """

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.train_images = 0
        self._earlier_fit_seconds = 0.0
        self._fit_start: float | None = None
        self._segment_start: float | None = None

    @property
    def fit_seconds(self) -> float:
        running = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return self._earlier_fit_seconds + running

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_start = time.perf_counter()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._earlier_fit_seconds, self._fit_start = self.fit_seconds, None

    # Training time runs from an epoch's start (or the first batch after a validation) until the next
    # validation or the epoch's end: validation, checkpoint writing and epoch-end pictures are left out.
    def _open(self) -> None:
        if self._segment_start is None:
            self._segment_start = time.perf_counter()

    def _close(self) -> None:
        if self._segment_start is not None:
            self.train_seconds += time.perf_counter() - self._segment_start
            self._segment_start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._open()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._open()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_images += len(batch[1]) * trainer.world_size

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._close()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close()

    def state_dict(self) -> dict:
        return {"fit_seconds": self.fit_seconds, "train_seconds": self.train_seconds,
                "train_images": self.train_images}

    def load_state_dict(self, state_dict: dict) -> None:
        self._earlier_fit_seconds = state_dict["fit_seconds"]
        self.train_seconds = state_dict["train_seconds"]
        self.train_images = state_dict["train_images"]

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else 0.0


def _tensorboard(trainer: pl.Trainer):
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class TensorBoardVisuals(pl.Callback):
    """TensorBoard pictures: augmented samples, weight histograms, test predictions, confusion matrix,
    and an embedding-projector view of the penultimate-layer features of test digits."""

    def __init__(self, num_images: int = 32, histograms: bool = True, num_embedded: int = 500) -> None:
        self.num_images = num_images
        self.histograms = histograms
        self.num_embedded = num_embedded
        self._test_batches: list = []
        self._confusion: MulticlassConfusionMatrix | None = None
        self._confusion_matrix: torch.Tensor | None = None

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

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._test_batches = []
        self._confusion = MulticlassConfusionMatrix(num_classes=pl_module.hparams.num_classes).to(pl_module.device)
        self._confusion_matrix = None

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x, y = batch
        self._confusion.update(outputs.argmax(-1), y)
        kept = sum(len(b[1]) for b in self._test_batches)
        if kept < max(self.num_images, self.num_embedded):
            self._test_batches.append((x.detach(), y, outputs.detach()))

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._confusion_matrix = self._confusion.compute()  # every rank: sums the shards under DDP

    @rank_zero_only
    def on_test_end(self, trainer, pl_module) -> None:
        writer, dm = _tensorboard(trainer), trainer.datamodule
        if writer is None or not self._test_batches or dm is None:
            return
        names = list(dm.classes)
        x = torch.cat([b[0] for b in self._test_batches])
        y = torch.cat([b[1] for b in self._test_batches])
        logits = torch.cat([b[2] for b in self._test_batches])
        n = self.num_images
        step = trainer.global_step
        fig = digits_figure(self._pixels(dm, x[:n]), y[:n].cpu(), logits[:n].argmax(-1).cpu(), class_names=names)
        writer.add_figure("test/predictions", fig, step)  # add_figure closes the figure
        writer.add_figure("test/confusion_matrix", confusion_figure(self._confusion_matrix, names), step)
        if self.num_embedded:
            m = self.num_embedded
            with torch.no_grad():
                features = pl_module.penultimate(x[:m])
            writer.add_embedding(features.float().cpu(), metadata=[names[int(c)] for c in y[:m]],
                                 label_img=self._pixels(dm, x[:m]).float().cpu(), global_step=step,
                                 tag="test/penultimate_features")
