"""Where the Hydra configs live, composing them outside ``@hydra.main``, and checks done before any work."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, debug_enabled


def config_dir() -> Path:
    """``conf/`` inside an installed wheel, else the repository's top-level ``conf/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"mnistlab configs not found (looked in {here / 'conf'} and {here.parents[1] / 'conf'})")


CONFIG_DIR = str(config_dir())


def compose(overrides: Sequence[str] = (), config_name: str = "train", output_dir: str | None = None) -> DictConfig:
    """The config ``python -m mnistlab.train`` would see, with ``hydra:`` interpolations resolved.

    Inside a running Hydra app (the results and speedrun tools) it composes with that app's Hydra, over
    the same config folder, and leaves the app's own ``HydraConfig`` alone; ``output_dir`` (what
    ``${hydra:runtime.output_dir}`` resolves to) can only be set outside one.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if GlobalHydra.instance().is_initialized():
        if output_dir is not None:  # ${hydra:...} resolves against the app's HydraConfig, which stays its own
            raise ValueError("compose(output_dir=...) cannot apply inside a running Hydra app")
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _compose_or_config_error(overrides: Sequence[str], output_dir: str | None = None,
                             config_name: str = "train") -> DictConfig:
    """``compose``, with Hydra's and OmegaConf's multi-line composition errors as one ``ConfigError`` line."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(overrides, config_name=config_name, output_dir=output_dir)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_one_line(err, config_name)) from err


def compose_checked(overrides: Sequence[str] = (), output_dir: str | None = None) -> DictConfig:
    """``compose`` for tools that take train overrides: a bad key or value is one ``ConfigError`` line."""
    cfg = _compose_or_config_error(overrides, output_dir)
    check_config(cfg)
    return cfg


def _number(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None)


def check_device(cfg: DictConfig) -> None:
    """A GPU asked for must exist, and bf16 must be supported where it will run."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32-true"))
    gpu = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not gpu:
        raise ConfigError(f"trainer.accelerator={accelerator}: PyTorch sees no CUDA GPU here; "
                          "use trainer.accelerator=auto or cpu")
    if precision.startswith("bf16") and gpu and accelerator in ("gpu", "cuda", "auto") \
            and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"trainer.precision={precision}: {torch.cuda.get_device_name(0)} has no bfloat16 "
                          "support; use trainer.precision=16-mixed or 32-true")


WHOLE_NUMBERS = {"data.batch_size", "data.eval_batch_size", "trainer.max_epochs", "trainer.max_steps",
                 "scheduler.scheduler.warmup_steps", "scheduler.scheduler.decay_steps",
                 "scheduler.scheduler.step_size", "scheduler.scheduler.patience"}


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
        ("trainer.max_steps", lambda v: v == -1 or v > 0, "must be > 0 (or -1 for no limit)"),
        ("trainer.gradient_clip_val", lambda v: v > 0, "must be > 0 (or null for no clipping)"),
        *((f"augment.{key}", lambda v: v >= 0, "must be >= 0")
          for key in ("rotation", "shift", "scale", "brightness", "contrast")),
        ("augment.hflip", lambda v: 0 <= v <= 1, "is a probability and must be in [0, 1]"),
        ("augment.vflip", lambda v: 0 <= v <= 1, "is a probability and must be in [0, 1]"),
        # schedules: torch's own checks fail mid-fit with a traceback, a negative peak would climb the loss
        ("scheduler.scheduler.max_lr_factor", lambda v: v > 0, "must be > 0"),
        ("scheduler.scheduler.pct_start", lambda v: 0 < v < 1, "must be in (0, 1)"),
        ("scheduler.scheduler.warmup_steps", lambda v: v >= 0, "must be >= 0"),
        ("scheduler.scheduler.min_ratio", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
        ("scheduler.scheduler.decay_steps", lambda v: v > 0, "must be > 0"),
        ("scheduler.scheduler.decay_rate", lambda v: v > 0, "must be > 0"),
        ("scheduler.scheduler.step_size", lambda v: v > 0, "must be > 0"),
        ("scheduler.scheduler.gamma", lambda v: v > 0, "must be > 0"),
        ("scheduler.scheduler.factor", lambda v: 0 < v < 1, "must be in (0, 1)"),
        ("scheduler.scheduler.patience", lambda v: v >= 0, "must be >= 0"),
    ]
    for key, ok, rule in checks:
        value = _number(cfg, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if key in WHOLE_NUMBERS and not isinstance(value, int):
            raise ConfigError(f"{key} must be a whole number, got {value}")
        if not ok(value):
            raise ConfigError(f"{key} {rule}, got {value}")
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be a whole number, got {seed!r}")
    betas = _number(cfg, "optimizer.betas")
    if betas is not None and (len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
        raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {list(betas)}")
    check_device(cfg)
    precision = cfg.get("float32_matmul_precision")
    if precision not in (None, "highest", "high", "medium"):
        raise ConfigError(f"float32_matmul_precision must be highest, high or medium, got {precision!r}")


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
    from datetime import datetime

    from omegaconf import open_dict, read_write

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


class PreflightCheck(Callback):
    """Hydra callback: refuse impossible values and occupied run dirs before Hydra creates or writes
    anything (it runs before the run directory and its .hydra/ files are made)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig

        try:
            HydraConfig.instance().set_config(config)
            check_config(config)
            resume_in_place(config)
            refuse_to_overwrite(Path(config.hydra.run.dir), config.get("ckpt_path"))
        except ConfigError as err:
            if debug_enabled():
                raise
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None


def tool_settings(config_name: str) -> list[str]:
    """The settings a tool's config file declares (``ckpt_path``, ``output``, ...)."""
    return [key for key in OmegaConf.load(Path(CONFIG_DIR) / f"{config_name}.yaml") if key not in ("defaults", "hydra")]


def check_required(cfg: DictConfig, config_name: str) -> None:
    """A tool's ``???`` settings must be given: one line naming the first missing one."""
    for key in tool_settings(config_name):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} is required: python -m mnistlab.{config_name} {key}=...")


def _one_line(err: Exception, config_name: str = "train") -> str:
    """Hydra's multi-line composition errors, as one line naming the bad option or key."""
    import re

    text = str(err).strip()
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        folder = Path(CONFIG_DIR) / group
        choices = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        hint = f"; choose one of {', '.join(choices)}" if choices else ""
        return f"{group}={option}: no such option{hint}"
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown and config_name != "train":  # a tool reads only its own settings: a new key would do nothing
        return (f"{unknown.group(1)}: no such setting of mnistlab.{config_name}; it has "
                f"{', '.join(tool_settings(config_name))}")
    if unknown:
        return f"{unknown.group(1)}: no such config key (to add a new key write +{unknown.group(1)}=...)"
    return text.splitlines()[0]


def preflight_overrides(argv: Sequence[str], config_name: str = "train") -> None:
    """Compose the command line once before Hydra does, so a typo costs one clear line and writes nothing.

    Sweeps (``-m``) are left to Hydra: their values are lists that only the sweeper expands.
    """
    if any(a in ("-m", "--multirun") or a.startswith(("-", "hparams_search=")) for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("hydra")]
    try:
        cfg = _compose_or_config_error(overrides, config_name=config_name)
        if config_name != "train":
            check_required(cfg, config_name)
    except ConfigError as err:
        if debug_enabled():  # the traceback shows Hydra's own error as the cause
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
