"""Where a run or a tool may write: never over an earlier run's files, never over a user's file, never into
a folder another process is writing."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import sys
from datetime import datetime
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from ..core.errors import ConfigError, report_errors
from ..core.io import NAME_MAX, remove_stale_temp_files, write_text
from .overrides import override_value, resume_command

# What makes a folder another run's: Hydra's copies of its config, its results, its checkpoints.
RUN_FILES = (".hydra", "metrics.json", "checkpoints", "multirun.yaml")
LOCK_FILE = ".mnistlab.lock"
SHARED_FILE = ".mnistlab.shared"  # the study whose workers share this sweep folder
_claims: dict[Path, int] = {}  # folder -> the locked file descriptor, held until the process ends


class FolderTaken(ConfigError):
    """The folder is another process's or holds another run's files."""


def output_path(key: str, path: str | None, overwrite: bool, suffix: str | None = None) -> Path | None:
    """The file a tool's ``key=path`` names: never silently replaces an existing one, never a folder."""
    if path is None:
        return None
    target = Path(str(path)).expanduser()
    if len(target.name.encode()) > NAME_MAX:
        raise ConfigError(f"{key}: the name is {len(target.name.encode())} bytes, over the {NAME_MAX} a file "
                          "system allows; choose a shorter one")
    if suffix is not None and target.suffix.lower() != suffix:
        raise ConfigError(f"{key}={path}: must be a {suffix} file")
    if target.is_dir():
        raise ConfigError(f"{key}={path}: is a folder; name a file in it")
    if target.exists() and not overwrite:
        raise ConfigError(f"{key}={path}: already exists; choose another file or add overwrite=true")
    if not target.parent.is_dir():
        raise ConfigError(f"{key}={path}: folder {target.parent} does not exist")
    writable(key, target.parent)
    return target


def writable(key: str, folder: Path) -> None:
    """Refuse, before any work, a folder that cannot be written (read-only mount, no permission)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if _read_only(folder) else "is not writable (permission denied)"
        raise ConfigError(f"{key}: folder {folder} {why}; choose another place")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def distinct_outputs(**paths: Path | None) -> None:
    """Two outputs of one command must be two files (one would silently replace the other)."""
    seen: dict[Path, str] = {}
    for key, path in paths.items():
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            raise ConfigError(f"{seen[resolved]} and {key} name the same file {path}; give each its own")
        seen[resolved] = key


def refuse_to_overwrite(run_dir: Path, ckpt_path: str | None) -> None:
    """A run directory that holds an earlier run's checkpoints is never written into again,
    except to resume that very run from one of them (whose file ``models.checkpoint`` then reads or refuses)."""
    ckpt_dir = run_dir / "checkpoints"
    earlier = sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    resuming_here = ckpt_path is not None and Path(ckpt_path).resolve().parent == ckpt_dir.resolve()
    if earlier and not resuming_here:
        raise ConfigError(f"{run_dir} already holds checkpoints of an earlier run; choose another hydra.run.dir "
                          f"or resume that run with: {resume_command(ckpt_dir / 'last.ckpt')}")


def resume_in_place(config: DictConfig) -> None:
    """``ckpt_path=<run>/checkpoints/x.ckpt`` continues ``<run>`` itself (checkpoints, TensorBoard,
    metrics) unless ``hydra.run.dir`` is given; the resume's own config goes to ``.hydra/resume_<time>``."""
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path or _explicit(config, "hydra.run.dir"):
        return
    ckpt = Path(ckpt_path).resolve()
    run_dir = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not (run_dir / ".hydra").is_dir():
        return
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.run.dir = str(run_dir)
        config.hydra.output_subdir = f".hydra/resume_{datetime.now():%Y-%m-%d_%H-%M-%S}"


def claim(folder: Path, resuming: bool = False, resumable: bool = False, shared_by: str | None = None,
          key: str = "hydra.run.dir") -> None:
    """Make ``folder`` this process's, or refuse with one line.

    An exclusive ``flock`` on ``folder/.mnistlab.lock``, held until the process ends: of two processes
    started together exactly one gets it, and the kernel drops it when its holder dies (even by
    ``kill -9``), so no stale lock ever blocks a resume. The folder must not hold another run's files,
    unless this run resumes from them: checked before anything is created (a refused command writes
    nothing) and again under the lock (a run that started meanwhile).

    ``shared_by`` (the workers of one stored Optuna study): a shared lock instead, so those workers write
    their trials into one sweep folder, which no other run can then take; the folder's files are theirs
    when its ``.mnistlab.shared`` names the same study. ``key``: the setting that names the folder.
    """
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={folder}: {existing} is a file, not a folder; choose another {key}")
    writable(key, existing)
    _refuse_other_runs(folder, resuming, resumable, shared_by, key)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    release(key)  # this process's earlier claim: an in-process command that has ended
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared_by else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise FolderTaken(f"{folder} is being written by another mnistlab run ({holder}); "
                          f"choose another {key} or wait for that run to end") from None
    try:
        _refuse_other_runs(folder, resuming, resumable, shared_by, key)
    except FolderTaken:
        os.close(fd)
        raise
    if shared_by is None:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)}\n"[:500].encode())
    elif _shared_by(folder) is None:
        write_text(folder / SHARED_FILE, shared_by + "\n")
    _claims[key] = fd
    for stale in (folder, folder / "checkpoints"):
        remove_stale_temp_files(stale)


def _shared_by(folder: Path) -> str | None:
    marker = folder / SHARED_FILE
    return marker.read_text().strip() if marker.is_file() else None


def _refuse_other_runs(folder: Path, resuming: bool, resumable: bool, shared_by: str | None = None,
                       key: str = "hydra.run.dir") -> None:
    if shared_by is not None and _shared_by(folder) == shared_by:
        return  # the files of this study's other workers
    found = [name for name in RUN_FILES if (folder / name).exists()]
    if found and not resuming:
        last = folder / "checkpoints" / "last.ckpt"
        resume = f", or resume that run with: {resume_command(last)}" if resumable and last.is_file() else ""
        raise FolderTaken(f"{folder} already holds another run's files ({', '.join(found)}); "
                          f"choose another {key}{resume}")


def same_sweep(folder: Path, config: DictConfig) -> bool:
    """Whether ``folder`` holds a sweep of this very command line (its ``multirun.yaml``): run again after a
    kill, it continues there (finished jobs kept, the interrupted one resumed)."""
    record = folder / "multirun.yaml"
    if not record.is_file():
        return False
    try:
        stored = OmegaConf.load(record).hydra.overrides.task
    except (OSError, yaml.YAMLError, OmegaConfBaseException):  # a damaged record is not this sweep's
        return False
    return list(stored) == list(config.hydra.overrides.task)


def discard_if_unused(folder: Path, log_name: str) -> bool:
    """The folder a run or an evaluation claimed, released and removed when it failed before writing anything
    but Hydra's record of its config, its log and the lock: a failed start leaves nothing that looks like a
    run. A folder with anything else in it (a resumed run's checkpoints) is only released."""
    if folder.resolve() not in _claims or not folder.is_dir():
        return False
    release(folder)
    kept = {".hydra", LOCK_FILE, log_name}
    if any(p.name not in kept and not (p.is_dir() and not any(p.iterdir())) for p in folder.iterdir()):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def release(folder: Path) -> None:
    fd = _claims.pop(folder.resolve(), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _explicit(config: DictConfig, key: str) -> bool:
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in config.hydra.overrides.hydra)


def _stored_study(config: DictConfig) -> str | None:
    """The study a sweep's workers share through a storage (any sweeper with ``storage`` and ``study_name``)."""
    sweeper = config.hydra.get("sweeper") or {}
    storage = sweeper.get("storage")
    return f"study {sweeper.get('study_name') or config.get('run_name')} in {storage}" if storage else None


def _is_child_rank() -> bool:
    """A DDP process Lightning started for rank > 0: it shares rank 0's folder, which rank 0 holds."""
    return any(int(os.environ.get(var, "0") or 0) > 0 for var in ("LOCAL_RANK", "NODE_RANK"))


class ClaimRunDir(Callback):
    """Claims the run folder (``hydra.run.dir``) or the sweep folder before Hydra writes into it.

    A default folder (named by the start time) that another run took in the same second becomes
    ``<folder>_1``, ``_2``...; a folder named on the command line is refused instead. ``resumable``: a run
    whose ``ckpt_path`` lies in ``<folder>/checkpoints`` continues that run in place (training).
    """

    def __init__(self, resumable: bool = False) -> None:
        self.resumable = resumable

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        report_errors(self._claim)(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        report_errors(self._claim)(config, "sweep")

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        release(Path(config.hydra.run.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        release(Path(config.hydra.sweep.dir))

    def _claim(self, config: DictConfig, mode: str) -> None:
        if _is_child_rank():
            return
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)  # the folder's name may interpolate ${hydra:...}
        key = f"hydra.{mode}.dir"
        base = Path(config.hydra[mode].dir)
        if mode == "run":
            ckpt_path = config.get("ckpt_path") if self.resumable else None
            resuming = ckpt_path is not None and Path(ckpt_path).resolve().parent == (base / "checkpoints").resolve()
        else:
            resuming = _explicit(config, key) and same_sweep(base, config)
        folder = base
        shared_by = _stored_study(config) if mode == "sweep" else None
        for attempt in range(1, 100):
            try:
                claim(folder, resuming, self.resumable, shared_by, key)
                break
            except FolderTaken:
                if resuming or _explicit(config, key):
                    raise
                folder = base.with_name(f"{base.name}_{attempt}")
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra[mode].dir = str(folder)
            if mode == "sweep":  # each job's config is composed again from these: every job in this folder
                config.hydra.overrides.hydra.append(f"{key}={override_value(str(folder))}")
