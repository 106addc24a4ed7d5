"""Where the Hydra configs live, composing them outside ``@hydra.main``, and checks done before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError


def config_dir() -> Path:
    """``conf/`` inside an installed wheel, else the repository's top-level ``conf/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"mnistlab configs not found (looked in {here / 'conf'} and {here.parents[1] / 'conf'})")


CONFIG_DIR = str(config_dir())


def compose(overrides: Sequence[str] = (), config_name: str = "train", output_dir: str | None = None) -> DictConfig:
    """The config ``python -m mnistlab.train`` would see, with ``hydra:`` interpolations resolved."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _number(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None)


def check_config(cfg: DictConfig) -> None:
    """Refuse impossible values before any data is loaded or file written (one clear line each)."""
    checks = [
        ("data.batch_size", lambda v: v > 0, "must be > 0"),
        ("data.eval_batch_size", lambda v: v > 0, "must be > 0"),
        ("data.val_fraction", lambda v: 0 < v < 1, "must be in (0, 1)"),
        ("optimizer.lr", lambda v: v > 0, "must be > 0"),
        ("optimizer.weight_decay", lambda v: v >= 0, "must be >= 0"),
        ("optimizer.momentum", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("model.net.dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("regularization.dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("regularization.l1", lambda v: v >= 0, "must be >= 0"),
        ("regularization.l2", lambda v: v >= 0, "must be >= 0"),
        ("trainer.max_epochs", lambda v: v == -1 or v > 0, "must be > 0 (or -1 for no limit)"),
        ("trainer.gradient_clip_val", lambda v: v > 0, "must be > 0 (or null for no clipping)"),
        ("augment.hflip", lambda v: 0 <= v <= 1, "is a probability and must be in [0, 1]"),
        ("augment.vflip", lambda v: 0 <= v <= 1, "is a probability and must be in [0, 1]"),
    ]
    for key, ok, rule in checks:
        value = _number(cfg, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not ok(value):
            raise ConfigError(f"{key} {rule}, got {value}")
    for key in ("rotation", "shift", "scale", "brightness", "contrast"):
        value = _number(cfg, f"augment.{key}")
        if value is not None and value < 0:
            raise ConfigError(f"augment.{key} must be >= 0, got {value}")


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
