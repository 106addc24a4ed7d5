"""``transfer.*``: a new run started from some layers of a trained one, frozen for a while if asked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import BaseFinetuning
from pytorch_lightning.utilities import rank_zero_info

from ..config import rules
from ..config.checks import device_count
from ..core.errors import ConfigError
from ..models.checkpoint import load_checkpoint
from ..models.layers import layers_of
from ..models.transfer import select_layers, transferred_state


def check_transfer(cfg: DictConfig, model) -> None:
    """The pre-flight's part: the source read and every chosen layer checked to fit ``model`` (which may be on
    the ``meta`` device), before the run writes anything. A resume has its weights already: not read again."""
    transfer = cfg.get("transfer") or {}
    if not transfer.get("ckpt_path") or cfg.get("ckpt_path"):
        return
    callback = TransferLayers(**transfer)
    trainer = cfg.get("trainer") or {}
    if callback.freeze_epochs:
        if device_count(trainer.get("devices")) > 1 or "ddp" in str(trainer.get("strategy", "")):
            raise ConfigError("transfer.freeze_epochs: DDP fixes which parameters train when it starts, so layers "
                              "cannot thaw mid-run on more than one device; use 0 or null (frozen all run)")
        if OmegaConf.select(cfg, "model.cuda_graph", default=False):
            raise ConfigError("transfer.freeze_epochs: a captured CUDA graph cannot thaw layers mid-run; "
                              "use 0 or null (frozen all run), or model.cuda_graph=false")
    callback.weights_for(model.net)


class TransferLayers(pl.Callback):
    """Copies ``layers`` of the network in ``ckpt_path`` into the new run's network when it is set up (before
    the moving average copies it), and keeps them frozen for ``freeze_epochs`` epochs (null: the whole run).

    Not a ``BaseFinetuning`` subclass (its ``freeze``/``make_trainable`` are used): it adds thawed layers to the
    optimizer as a new parameter group, which a one-cycle schedule's per-group values and a resumed optimizer do
    not know. Here the optimizer holds every parameter from the start; a frozen one gets no gradient, so the
    optimizer (and its weight decay) passes it by.
    """

    def __init__(self, ckpt_path: str, layers: int | Sequence[str] | None = None, freeze_epochs: int | None = 0,
                 copy: bool = True) -> None:
        self.ckpt_path, self.layers, self.copy = str(ckpt_path), layers, copy
        self.freeze_epochs = (None if freeze_epochs is None
                              else rules.non_negative("transfer.freeze_epochs", freeze_epochs, whole=True))
        self.names: list[str] = []
        self._frozen: list[torch.nn.Module] = []

    def weights_for(self, net: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The chosen layers' tensors from the source, each checked to fit ``net``."""
        self.names = select_layers(net, self.layers)
        return transferred_state(net, self.names, load_checkpoint(self.ckpt_path)["state_dict"], self.ckpt_path)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        net = pl_module.net
        if self.copy:  # a resume's checkpoint holds the weights since trained: nothing is read from the source
            net.load_state_dict(self.weights_for(net), strict=False)
        else:
            self.names = select_layers(net, self.layers)
        layers = layers_of(net)
        self._frozen = [m for name in self.names for m in layers[name]] if self.freeze_epochs != 0 else []
        BaseFinetuning.freeze(self._frozen)  # batch norm keeps adapting to the new data
        epochs = f"{self.freeze_epochs} epoch{'s' * (self.freeze_epochs != 1)}" if self.freeze_epochs else ""
        held = ("frozen for the whole run" if self.freeze_epochs is None
                else f"frozen for {epochs}" if epochs else "trained from the start")
        action = "copied" if self.copy else "copied at the run's start"
        rank_zero_info(f"transfer: {', '.join(self.names)} {action} from {Path(self.ckpt_path)}, {held}")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._frozen and self.freeze_epochs is not None and trainer.current_epoch >= self.freeze_epochs:
            BaseFinetuning.make_trainable(self._frozen)
            rank_zero_info(f"transfer: {', '.join(self.names)} train from epoch {trainer.current_epoch} on")
            self._frozen = []
