"""What a classifier keeps in its checkpoints besides weights, as plain data that ``torch.load(...,
weights_only=True)`` reads: hyperparameters as plain containers and the global RNG states."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf


def plain(value: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists, so checkpoints load with ``weights_only=True``."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def save_rng_states(checkpoint: dict[str, Any]) -> None:
    """Global RNG states (dropout and anything else drawing from torch's default generators)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    checkpoint["rng_states"] = states


def restore_rng_states(states: dict[str, Any] | None) -> None:
    if not states:
        return
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
