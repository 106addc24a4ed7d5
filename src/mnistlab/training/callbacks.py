"""mnistlab's own callbacks: the fit's clock and history, the device warm-up step, the TensorBoard pictures,
the moving average of the weights."""

from __future__ import annotations

import copy
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from ..config import rules
from ..core.errors import DataError
from ..core.plots import confusion_figure, digits_figure
from ..data.datasets import dataset_info, load_split
from ..models import inference
from ..models.layers import layers_of


class SpeedMonitor(pl.Callback):
    """Wall time of the fit and training images per second (validation excluded).

    ``fit_seconds`` runs from ``on_train_start`` to ``on_train_end``, validation epochs included. What
    Lightning does before (model summary, hyperparameter and graph logging, the sanity validation, a
    resume's restore) is start-up, like its teardown after. Its totals travel in checkpoints, so a resumed
    run reports the time of the whole run.
    """

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.train_images = 0
        self._earlier_fit_seconds = 0.0
        self._train_start: float | None = None
        self._segment_start: float | None = None

    @property
    def fit_seconds(self) -> float:
        running = time.perf_counter() - self._train_start if self._train_start is not None else 0.0
        return self._earlier_fit_seconds + running

    def on_train_start(self, trainer, pl_module) -> None:
        self._train_start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        # The clock stops with training: Lightning's teardown after it (weights back to the CPU, CUDA
        # caches emptied) is not part of the fit.
        self._earlier_fit_seconds, self._train_start = self.fit_seconds, None

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


class EpochHistory(pl.Callback):
    """One row per validation of the fit: epoch, step, fit seconds so far and the validation metrics.

    It goes into metrics.json, so the results figure draws learning curves from the run's own file,
    whichever logger (or none) the run used. Its rows travel in checkpoints: a resumed run keeps its curve.
    """

    KEYS = ("val/acc", "val/loss")

    def __init__(self, clock: SpeedMonitor) -> None:
        self.clock = clock
        self.rows: list[dict[str, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        # on_validation_end, not on_validation_epoch_end: the epoch's logged values are final only now
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        values = {k: round(float(trainer.callback_metrics[k]), 5) for k in self.KEYS if k in trainer.callback_metrics}
        if values:
            self.rows.append({"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
                              "fit_seconds": round(self.clock.fit_seconds, 2), **values})

    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]


class DeviceWarmup(pl.Callback):
    """One throwaway training step on a copy of the network before the clock starts.

    A process's first CUDA step loads cuDNN and cuBLAS and the kernels it uses (about 0.4 s on an H100):
    one-time start-up cost, like creating the CUDA context, which Lightning does before the fit as well.
    Doing it here keeps it out of ``fit_seconds``; ``warmup_seconds`` in metrics.json says what it took.
    A copy of the network, a private generator for the augmentation: the run's weights, statistics and
    random streams are untouched.
    """

    def __init__(self, device_types: tuple[str, ...] | list[str] = ("cuda",)) -> None:
        self.device_types = tuple(device_types)
        self.seconds = 0.0

    def setup(self, trainer, pl_module, stage: str) -> None:
        device = trainer.strategy.root_device
        if stage != "fit" or device.type not in self.device_types:
            return
        start = time.perf_counter()
        # fork_rng: dropout in the copy draws from the global generators; they are restored afterwards
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self._step(trainer, pl_module, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.seconds = time.perf_counter() - start

    @staticmethod
    def _step(trainer, pl_module, device: torch.device) -> None:
        generator = torch.Generator(device=device).manual_seed(0)
        datamodule = trainer.datamodule
        if datamodule is not None and datamodule.train_set is not None:  # the real data path, private RNG
            images, labels = datamodule.train_set
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
            index = order[: datamodule.hparams.batch_size].to(images.device)
            batch = (images[index].to(device), labels[index].to(device))
            x, y = datamodule.prepare_batch(batch, train=True, generator=generator)
        else:
            x = torch.rand(128, 1, 28, 28, device=device, generator=generator)
            y = torch.randint(0, pl_module.hparams.num_classes, (128,), device=device, generator=generator)
        net = copy.deepcopy(pl_module.net).to(device).train()
        optimizer = pl_module.build_optimizer(net.parameters())
        with trainer.precision_plugin.forward_context():
            logits = net(x.contiguous(memory_format=pl_module.memory_format))
        F.cross_entropy(logits.float(), y).backward()
        optimizer.step()


class CudaGraphCapture(pl.Callback):
    """``model.cuda_graph``: captures the module's training step in a CUDA graph when training starts, after
    a resume has restored the optimizer (a graph records the state tensors it sees), before the clock does;
    ``seconds`` (warm-up steps and capture, undone) goes to ``warmup_seconds``. Without a CUDA device the same
    step runs uncaptured."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        start = time.perf_counter()
        if pl_module.capture_training_step():
            torch.cuda.synchronize(pl_module.device)
            self.seconds = time.perf_counter() - start
        elif pl_module.device.type != "cuda":
            rank_zero_warn(f"model.cuda_graph: {pl_module.device.type} has no CUDA graphs; the step runs uncaptured")


class GradientNorms(pl.Callback):
    """Each layer's gradient norm (its weight and bias gradients together, before any clipping) as
    ``grad_norm/<layer>``, and ``grad_norm/total``, on the steps the Trainer writes logs, to every logger.

    What the vanishing-gradient lesson looks at: in a sigmoid network the lowest layer's gradient is a small
    fraction of the output layer's; with ReLU or batch norm it is not. A captured CUDA graph step
    (``model.cuda_graph``) runs no hook between its backward and its update: nothing is logged there.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization and pl_module.device.type == "cuda":
            rank_zero_warn("callbacks.gradient_norms: the captured CUDA graph step has no hook between backward and "
                           "update; no gradient norms are logged (set callbacks.gradient_norms=null to say so)")

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        if not pl_module.writes_logs_this_step():
            return
        norms = {}
        for name, modules in layers_of(pl_module.net).items():
            grads = [p.grad.detach() for m in modules for p in m.parameters(recurse=False) if p.grad is not None]
            if grads:  # a frozen layer (transfer.freeze_epochs) has none
                norms[f"grad_norm/{name}"] = torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(g.float()) for g in grads]))
        if norms:
            norms["grad_norm/total"] = torch.linalg.vector_norm(torch.stack(list(norms.values())))
            pl_module.log_dict(norms, on_step=True, on_epoch=False)


class CrossWriterTest(pl.Callback):
    """After the test on MNIST, the tested weights read handwriting by writers MNIST never saw (``dataset``:
    the UCI digits through ``predict``'s preprocessing, data/uci_digits.py), logged as ``test/uci_acc``: what
    the demo and ``predict`` will do with people's own digits. Runs on other datasets skip it."""

    def __init__(self, dataset: str = "uci_digits") -> None:
        self.dataset = dataset_info(dataset).name

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or datamodule.info.name != "mnist":
            return
        try:
            images, labels = load_split(self.dataset, "test")
        except DataError as err:
            rank_zero_warn(f"{self.metric} not measured: {err}")
            return
        kept = datamodule.hparams.get("classes")
        if kept:  # a run on some digits (data.classes) reads those digits only
            where = torch.isin(labels, torch.tensor(kept))
            images, labels = images[where], labels[where]
        predictions = inference.logits(pl_module, images).argmax(-1)
        pl_module.log(self.metric, (predictions == labels).float().mean().item())

    @property
    def metric(self) -> str:
        """``test/uci_acc`` for the reporting half; the tuning half's under its own name, never mistaken for it."""
        return "test/uci_acc" if self.dataset == "uci_digits" else f"test/{self.dataset}_acc"


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

    @rank_zero_only
    def on_fit_start(self, trainer, pl_module) -> None:
        writer, dm = _tensorboard(trainer), trainer.datamodule
        if writer is None or dm is None or dm.train_set is None:
            return
        batch = tuple(t[: self.num_images].to(pl_module.device) for t in dm.train_set)
        raw, _ = dm.prepare_batch(batch, train=False)
        # A private generator: drawing the picture must not shift the training run's random stream.
        generator = torch.Generator(device=raw.device).manual_seed(0)
        augmented, _ = dm.prepare_batch(batch, train=True, generator=generator)
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
        fig = digits_figure(x[:n], y[:n].cpu(), logits[:n].argmax(-1).cpu(), class_names=names)
        writer.add_figure("test/predictions", fig, step)  # add_figure closes the figure
        writer.add_figure("test/confusion_matrix", confusion_figure(self._confusion_matrix, names), step)
        if self.num_embedded:
            m = self.num_embedded
            with torch.no_grad():
                features = pl_module.penultimate(x[:m])
            writer.add_embedding(features.float().cpu(), metadata=[names[int(c)] for c in y[:m]],
                                 label_img=x[:m].float().cpu(), global_step=step,
                                 tag="test/penultimate_features")


def ema_update(decay: float, warmup: bool = True):
    """The moving average's update, foreach over every tensor at once: a loop over them (Lightning's ``avg_fn``)
    cost 2.4x as long for ``handwriting``'s 20 tensors (1.24 ms against 0.51 ms an update, 2 idle cores).
    With ``warmup``, TensorFlow's ``ExponentialMovingAverage(decay, num_updates)``: the decay used at update
    ``n`` is ``min(decay, (1 + n) / (10 + n))``, so the average follows the weights closely at first (0.1 after
    one update, 0.5 after 8, 0.9 after 80) instead of clinging to the initial ones for ~1/(1 - decay) steps: at
    0.999 a fixed decay kept ``cnn_best``'s validation at 12.08% for its first 1,380 steps. Tensor arithmetic
    on the step count: no host sync."""

    @torch.no_grad()
    def update(averages: list[torch.Tensor], currents: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not torch.is_floating_point(averages[0]):  # counters (batch norm's num_batches_tracked): the latest
            torch._foreach_copy_(averages, currents)
            return
        # average += (1 - rate) * (current - average), the warm-up's rate a tensor: foreach lerp takes only a
        # number, which would read the rate back to the host every step on a GPU
        weight = (1 - torch.clamp((1 + num_averaged) / (10 + num_averaged), max=decay).to(averages[0].dtype)
                  if warmup else 1 - decay)
        steps = torch._foreach_sub(currents, averages)
        torch._foreach_mul_(steps, weight)
        torch._foreach_add_(averages, steps)

    return update


class EMA(EMAWeightAveraging):
    """Lightning's EMA of the weights (validated, checkpointed, and at the end of the fit the weights), with
    two changes: the decay warms up as TensorFlow's does (``warmup=True``), and testing a checkpoint tests
    what the file holds, the average, so a run reports the accuracy that ``evaluate`` finds in its checkpoint.
    Lightning would load the training weights kept beside the average back into the model when testing."""

    def __init__(self, decay: float = 0.999, warmup: bool = True, **kwargs) -> None:
        rules.fraction("callbacks.ema.decay", decay)
        super().__init__(decay=decay, **kwargs)
        del self._kwargs["avg_fn"]  # AveragedModel calls an avg_fn once per tensor, a multi_avg_fn once in all
        self._kwargs["multi_avg_fn"] = ema_update(decay, rules.switch("callbacks.ema.warmup", warmup))

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # a resume: the average and the training weights, both
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
