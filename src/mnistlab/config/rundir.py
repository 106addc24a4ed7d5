"""Where a run or a tool may write: never over an earlier run's checkpoints, never over a user's file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, open_dict, read_write

from ..errors import ConfigError


def output_path(path: str | None, overwrite: bool) -> Path | None:
    """A file a tool may write: never silently replaces an existing one."""
    if path is None:
        return None
    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists; choose another file or add overwrite=true")
    if not target.parent.is_dir():
        raise ConfigError(f"{target.parent}: folder does not exist")
    return target


def refuse_to_overwrite(run_dir: Path, ckpt_path: str | None) -> None:
    """A run directory that holds an earlier run's checkpoints is never written into again,
    except to resume that very run from one of them."""
    ckpt_dir = run_dir / "checkpoints"
    earlier = sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    resuming_here = ckpt_path is not None and Path(ckpt_path).resolve().parent == ckpt_dir.resolve()
    if earlier and not resuming_here:
        raise ConfigError(
            f"{run_dir} already holds checkpoints of an earlier run; choose another hydra.run.dir "
            f"or resume that run with ckpt_path={ckpt_dir / 'last.ckpt'}"
        )
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file")


def resume_in_place(config: DictConfig) -> None:
    """``ckpt_path=<run>/checkpoints/x.ckpt`` continues ``<run>`` itself (checkpoints, TensorBoard,
    metrics) unless ``hydra.run.dir`` is given; the resume's own config goes to ``.hydra/resume_<time>``."""
    ckpt_path = config.get("ckpt_path")
    explicit = any(o.split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in config.hydra.overrides.hydra)
    if not ckpt_path or explicit:
        return
    ckpt = Path(ckpt_path).resolve()
    run_dir = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not (run_dir / ".hydra").is_dir():
        return
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.run.dir = str(run_dir)
        config.hydra.output_subdir = f".hydra/resume_{datetime.now():%Y-%m-%d_%H-%M-%S}"
