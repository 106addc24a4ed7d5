"""Where a study lives: ``null`` (this process's memory), ``sqlite:///study.db`` or any RDB URL, or
``journal:PATH`` (Optuna's JournalFileBackend: one append-only file, fine on a shared file system)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError

JOURNAL = "journal:"
# How a job learns which trial of which study it is (hydra.job.env_set: every launcher passes it on)
STORAGE_VAR, STUDY_VAR, TRIAL_VAR, MONITOR_VAR = (
    "MNISTLAB_OPTUNA_STORAGE", "MNISTLAB_OPTUNA_STUDY", "MNISTLAB_OPTUNA_TRIAL", "MNISTLAB_OPTUNA_MONITOR")
# Studies in this process's memory, by name: an in-memory study's jobs run in the sweeper's process
live_studies: dict[str, Any] = {}


def trial_env(storage: str | None, study_name: str, trial_id: int, monitor: str) -> dict[str, str]:
    return {STORAGE_VAR: storage or "", STUDY_VAR: study_name, TRIAL_VAR: str(trial_id), MONITOR_VAR: monitor}


def open_storage(spec: str | None) -> Any:
    """The Optuna storage ``spec`` names (``None``: in memory)."""
    import optuna

    if spec is None:
        return optuna.storages.InMemoryStorage()
    if spec.startswith(JOURNAL):
        path = journal_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in spec:
        raise ConfigError(f"hydra.sweeper.storage={spec}: not a storage; use null, sqlite:///study.db (or another "
                          f"database URL) or {JOURNAL}path/to/study.journal")
    if spec.startswith("sqlite:///"):
        Path(spec.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(spec)
    except Exception as err:  # noqa: BLE001  SQLAlchemy's URL, driver and connection errors have no common base
        raise ConfigError(f"hydra.sweeper.storage={spec}: {str(err).splitlines()[0]}") from None


def journal_path(spec: str) -> Path:
    return Path(spec.removeprefix(JOURNAL).removeprefix("//"))


def lock_path(spec: str | None) -> Path | None:
    """A file beside a file-based storage that serializes the workers' "is another trial due?" step, so two
    workers together run exactly ``n_trials``; ``None`` where the study has no file (memory, a database server)."""
    if spec is None:
        return None
    if spec.startswith(JOURNAL):
        path = journal_path(spec)
    elif spec.startswith("sqlite:///"):
        path = Path(spec.removeprefix("sqlite:///"))
    else:
        return None
    return path.with_name(f".{path.name}.ask.lock")


@contextlib.contextmanager
def admission(spec: str | None) -> Iterator[None]:
    """Held while a worker counts the study's trials and asks for the next one (flock: released by the
    kernel if the worker dies)."""
    path = lock_path(spec)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
