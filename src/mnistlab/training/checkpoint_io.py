"""Writing checkpoints whole or not at all, in their own folder, with a full disk reported as one line.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temp file lives in the
system temp folder: when that is another file system (``/tmp`` on tmpfs, runs on a disk or NFS) the final
move is a copy into the target, and a ``kill -9`` during it leaves a truncated ``last.ckpt``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ..core.errors import DiskFullError
from ..core.io import atomic_file, remove_stale_temp_files


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` streamed into a temp file beside the target, fsynced, then renamed over it."""

    def __init__(self) -> None:
        super().__init__()
        self.last_saved: str | None = None
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)  # object stores: fsspec's way
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(str(path).removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent not in self._cleaned:  # what killed runs left behind: up to a checkpoint's size each
            remove_stale_temp_files(path.parent)
            self._cleaned.add(path.parent)
        # serialized in memory first: torch.save streaming into a file turns the OS's "no space left" into
        # an opaque RuntimeError of its zip writer
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            with atomic_file(path) as f:
                f.write(buffer.getbuffer())
        except DiskFullError as err:
            saved = f"the last checkpoint saved is {self.last_saved}" if self.last_saved else \
                "this run saved no checkpoint"
            raise DiskFullError(f"{err}; {saved}; earlier checkpoints are intact") from None
        self.last_saved = f"{path} (step {checkpoint.get('global_step', '?')})"
