"""LightningModules: one classifier base (steps, loss, metrics, penalties) and a thin subclass per network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ..config import rules
from ..core.errors import ConfigError
from . import nets, optimization
from .checkpoint_state import plain, restore_rng_states, save_rng_states

# What training minimizes: the cross-entropy (every recipe), or the squared error between the softmax and the
# one-hot label that early tutorials start with (the losses lesson).
LOSSES = ("cross_entropy", "squared_error")


def eval_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``val/loss`` and ``test/loss``: plain cross-entropy, whatever the training loss smooths."""
    return F.cross_entropy(logits.float(), labels)


def checked_regularization(regularization: Mapping[str, Any], loss: str) -> tuple[float, float, float]:
    """``(l1, l2, label_smoothing)``, each checked, and the loss they go with."""
    l1 = float(rules.non_negative("regularization.l1", regularization.get("l1") or 0.0))
    l2 = float(rules.non_negative("regularization.l2", regularization.get("l2") or 0.0))
    smoothing = float(rules.fraction("regularization.label_smoothing", regularization.get("label_smoothing") or 0.0))
    if loss not in LOSSES:
        raise ConfigError(f"model.loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "squared_error" and smoothing:
        raise ConfigError("regularization.label_smoothing smooths the cross-entropy's targets; "
                          "model.loss=squared_error has no such targets: drop one of them")
    return l1, l2, smoothing


class ClassifierModule(pl.LightningModule):
    """Shared logic for every network: cross-entropy (optionally label-smoothed in training), accuracy
    (top-1/top-5), L1/L2, optimizers, schedules. Takes pixels in [0, 1]: the network standardizes them with
    ``input_mean`` and ``input_std`` (the DataModule's ``input_stats``)."""

    net_class: ClassVar[type[nn.Module]]
    # every subclass by name: what checkpoints name (``mnistlab.module``) and the only classes they may build
    registry: ClassVar[dict[str, type[ClassifierModule]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        ClassifierModule.registry[cls.__name__] = cls

    def __init__(
        self,
        net: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        regularization: Mapping[str, Any] | None = None,
        num_classes: int = 10,
        channels_last: bool = False,
        compile: bool = False,
        cuda_graph: bool = False,
        input_mean: float = 0.0,
        input_std: float = 1.0,
        loss: str = "cross_entropy",
    ) -> None:
        super().__init__()
        net, optimizer, scheduler, regularization = map(plain, (net or {}, optimizer, scheduler, regularization or {}))
        self.save_hyperparameters(
            dict(net=net, optimizer=optimizer, scheduler=scheduler, regularization=regularization,
                 num_classes=num_classes, channels_last=channels_last, compile=compile,
                 cuda_graph=rules.switch("model.cuda_graph", cuda_graph), input_mean=input_mean,
                 input_std=input_std, loss=loss)
        )
        # cuda_graph: the module steps the optimizer itself, replaying a captured step (models/cuda_graph.py)
        self.automatic_optimization = not cuda_graph
        self._graphed_step = None
        self.l1, self.l2, self.label_smoothing = checked_regularization(regularization, loss)
        self.loss_name = loss
        try:
            self.net = self.net_class(**net, num_classes=num_classes, input_mean=input_mean, input_std=input_std)
        except TypeError as err:
            raise ConfigError(f"model.net: {err}") from None
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self._compiled_net = None  # not a submodule: keeps state_dict keys free of "_orig_mod."
        self._pending_rng_states: dict | None = None
        self.example_input_array = torch.zeros(2, 1, 28, 28)
        self._add_metrics(num_classes)
        self._resumed_from: dict[str, Any] | None = None

    def _add_metrics(self, num_classes: int) -> None:
        def accuracy(top_k: int = 1) -> MulticlassAccuracy:
            # validate_args=False: the checks scan every target for out-of-range labels (a host sync)
            return MulticlassAccuracy(num_classes=num_classes, top_k=top_k, average="micro", validate_args=False)

        # Training accuracy is two running counts on the device, not a torchmetrics object: updating and
        # logging a Metric every step costs more Python than a small network's whole step.
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("train_seen", torch.zeros((), dtype=torch.long), persistent=False)
        self.val_acc, self.val_acc_top5, self.test_acc, self.test_acc_top5 = (
            accuracy(), accuracy(5), accuracy(), accuracy(5))
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in checkpoints: a resumed run's best is the whole run's

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name before and after every hook it calls, about 40 times a
        # training step; nn.Module.__setattr__ spends ~2 us each checking parameters, buffers and
        # submodules for a name that only ever holds a hook's name or None.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        if self._compiled_net is None or torch.jit.is_tracing():  # the graph logger traces the plain net
            return self.net(x)
        return self._compiled_net(x)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """Features entering the last linear layer (what the classifier separates), ``[N, D]``."""
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        features, _ = nets.layer_io(self.net, last, x.contiguous(memory_format=self.memory_format))
        return features.flatten(1)

    def setup(self, stage: str) -> None:
        if self.hparams.compile and self._compiled_net is None:
            # object.__setattr__: a registered submodule would add "_orig_mod" keys to every checkpoint
            object.__setattr__(self, "_compiled_net", torch.compile(self.net))

    def penalty(self) -> torch.Tensor | None:
        """``l1 * sum|w| + l2 * sum w^2`` over weight matrices and kernels (no biases, no norm scales)."""
        if not (self.l1 or self.l2):
            return None
        weights = [p for p in self.net.parameters() if p.ndim > 1]
        total = weights[0].new_zeros(())
        if self.l1:
            total = total + self.l1 * sum(w.abs().sum() for w in weights)
        if self.l2:
            total = total + self.l2 * sum(w.pow(2).sum() for w in weights)
        return total

    # -- steps ---------------------------------------------------------------------------------
    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss to minimize, the loss before penalties)``; counts the batch's correct predictions on the
        device."""
        logits = self(x)
        if self.loss_name == "squared_error":  # the squared distance of the softmax from the one-hot label
            target = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
            loss = (logits.softmax(-1) - target).pow(2).sum(-1).mean()
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        with torch.no_grad():  # counts stay on the device: no host sync per step
            self.train_correct.add_((logits.argmax(-1) == y).sum())  # add_: no Module.__setattr__ per step
            self.train_seen.add_(len(y))
        penalty = self.penalty()
        return (loss if penalty is None else loss + penalty), loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if not self.automatic_optimization:
            return self._own_optimizer_step(batch, batch_idx)
        x, y = batch
        total, loss = self.training_loss(x, y)
        if self.writes_logs_this_step():
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        return total

    def _eval_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss_metric: MeanMetric = getattr(self, f"{stage}_loss")
        loss_metric.update(eval_loss(logits, y), weight=len(y))
        getattr(self, f"{stage}_acc").update(logits, y)
        getattr(self, f"{stage}_acc_top5").update(logits, y)
        for name in ("loss", "acc", "acc_top5"):
            self.log(f"{stage}/{name}", getattr(self, f"{stage}_{name}"), on_step=False, on_epoch=True,
                     prog_bar=name == "acc", batch_size=len(y))
        return logits

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets tools rebuild the right class from an allow-list, without unpickling anything.
        checkpoint["mnistlab"] = {"module": type(self).__name__}
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Applied when training resumes, after fit-start work (graph tracing) that may draw random numbers.
        self._pending_rng_states = checkpoint.get("rng_states")
        state = checkpoint["state_dict"]
        for key, value in self.val_acc_best.state_dict(prefix="val_acc_best.").items():
            state.setdefault(key, value)  # checkpoints written before the best was kept in them
        self._resumed_from = optimization.before_restore(checkpoint, self.hparams.optimizer, self.hparams.scheduler)

    def writes_logs_this_step(self) -> bool:
        # self.log costs ~1 ms of Python per call: call it only on the steps the Trainer writes out
        # (every trainer.log_every_n_steps, counted as Lightning counts them).
        trainer = self._trainer
        if trainer is None:  # a bare call (tests, notebooks): nothing to log to
            return False
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run) or (every > 0 and (self.global_step + 1) % every == 0)

    # -- the captured step (model.cuda_graph) ----------------------------------------------------
    @property
    def prepares_training_batches(self) -> bool:
        """Once captured, the step augments inside the graph: the DataModule hands it raw batches."""
        return self._graphed_step is not None

    def capture_training_step(self) -> bool:
        """Capture the training step in a CUDA graph (``model.cuda_graph``); False where the device has none
        (the same step then runs uncaptured)."""
        if self.automatic_optimization or self.device.type != "cuda" or self._graphed_step is not None:
            return False
        from .cuda_graph import capture_step

        self._graphed_step = capture_step(self, self.trainer)
        return True

    def _own_optimizer_step(self, batch, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()  # Lightning's wrapper: its step hooks count the step as its loop does
        graphed = self._graphed_step
        if graphed is not None and graphed.matches(batch):
            optimizer._on_before_step()  # the two hooks LightningOptimizer.step runs around an update
            loss = graphed(batch)
            optimizer._on_after_step()
        else:  # before a capture, uncaptured devices, and a last batch of another size
            total, loss = graphed.loss_fn(batch) if graphed is not None else self.training_loss(*batch)
            optimizer.zero_grad(set_to_none=False)  # a captured graph's gradients must stay the same tensors
            self.manual_backward(total)
            optimizer.step()
            loss = loss.detach()
        self._step_schedulers("step", batch_idx + 1)
        if self.writes_logs_this_step():
            self.log("train/loss", loss.clone(), on_step=True, on_epoch=False, prog_bar=True, batch_size=len(batch[1]))
        return loss

    def _step_schedulers(self, interval: str, count: int) -> None:
        """The schedules Lightning steps itself under automatic optimization, stepped the same way."""
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == interval and count % config.frequency == 0:
                config.scheduler.step()
                if self._graphed_step is not None:
                    self._graphed_step.keep_betas_on_device()

    def on_train_start(self) -> None:
        if self._resumed_from is not None:  # the optimizer and schedule are restored by now
            config = self.trainer.lr_scheduler_configs[0] if self.trainer.lr_scheduler_configs else None
            optimization.after_restore(self.trainer.optimizers[0], config, self._resumed_from,
                                       lambda params: self.build_optimizer(params), self.build_scheduler)
            self._resumed_from = None

    def on_train_epoch_start(self) -> None:
        if self._pending_rng_states is not None:
            restore_rng_states(self._pending_rng_states)
            self._pending_rng_states = None
        self.train_correct.zero_()
        self.train_seen.zero_()

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            self._step_schedulers("epoch", self.current_epoch + 1)
        # Every rank sees an equal shard, so the mean over ranks is the global accuracy.
        accuracy = self.train_correct.float() / self.train_seen.clamp(min=1)
        self.log("train/acc", accuracy, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best.update(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    # -- optimization --------------------------------------------------------------------------
    def build_optimizer(self, params=None) -> torch.optim.Optimizer:
        """The configured optimizer over ``params`` (default: this module's parameters)."""
        trainer = self._trainer
        clipping = (trainer is not None and "mixed" in str(trainer.precision) and bool(trainer.gradient_clip_val))
        return optimization.build_optimizer(self.hparams.optimizer, self.parameters() if params is None else params,
                                            mixed_precision_clipping=clipping)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None):
        """The configured schedule over ``optimizer`` (None without one); ``total_steps`` defaults to the
        Trainer's estimate of the fit's optimizer steps."""
        return optimization.build_scheduler(
            self.hparams.scheduler, optimizer,
            lambda: self.trainer.estimated_stepping_batches if total_steps is None else total_steps)

    def configure_optimizers(self):
        optimizer = self.build_optimizer()
        return optimization.lightning_optimizers(self.hparams.scheduler, optimizer, self.build_scheduler(optimizer))


class SoftmaxClassifier(ClassifierModule):
    net_class = nets.SoftmaxRegression


class DNNClassifier(ClassifierModule):
    net_class = nets.DNN


class CNNClassifier(ClassifierModule):
    net_class = nets.CNN


class LeNet5Classifier(ClassifierModule):
    net_class = nets.LeNet5
