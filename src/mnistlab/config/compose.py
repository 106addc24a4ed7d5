"""Where the Hydra configs live, and composing them outside ``@hydra.main`` (tools, tests, pre-flight)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core.errors import ConfigError
from .overrides import override_value


def config_dir() -> Path:
    """``conf/`` inside an installed wheel, else the repository's top-level ``conf/``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"mnistlab configs not found (looked in {package / 'conf'} and {package.parents[1] / 'conf'})")


CONFIG_DIR = str(config_dir())


def register_declared_defaults() -> None:
    """``augment/base``: every augmentation option at the default it is declared with (in Python, beside its
    rule); the ``augment`` configs extend it and say only what they change."""
    from hydra.core.config_store import ConfigStore

    from .augment_options import DEFAULTS

    ConfigStore.instance().store(group="augment", name="base", node=DEFAULTS)


register_declared_defaults()


def group_options(group: str) -> list[str]:
    """The options of a config group (``experiment`` -> ``cnn_best``, ``keras_cnn``, ...), sorted."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def compose(overrides: Sequence[str] = (), config_name: str = "train", output_dir: str | None = None) -> DictConfig:
    """The config ``python -m mnistlab.<config_name>`` would see, with ``hydra:`` interpolations resolvable.

    Inside a running Hydra app (the results and speedrun tools) it composes with that app's Hydra, over
    the same config folder, and leaves the app's own ``HydraConfig`` alone; ``output_dir`` (what
    ``${hydra:runtime.output_dir}`` resolves to) can only be set outside one. Hydra's and OmegaConf's
    multi-line composition errors become one ``ConfigError`` line naming the bad option or key.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        if GlobalHydra.instance().is_initialized():
            if output_dir is not None:  # ${hydra:...} resolves against the app's HydraConfig, which stays its own
                raise ValueError("compose(output_dir=...) cannot apply inside a running Hydra app")
            return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err, config_name)) from err
    if output_dir is not None:
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def in_multirun() -> bool:
    """Whether this is one job of a Hydra sweep (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def tool_settings(config_name: str) -> list[str]:
    """The settings a tool's config file declares (``ckpt_path``, ``output``, ...)."""
    return [key for key in OmegaConf.load(Path(CONFIG_DIR) / f"{config_name}.yaml") if key not in ("defaults", "hydra")]


def tool_help(config_name: str) -> str:
    """``--help`` of a tool: its own settings, each with its default and the comment above it in its YAML
    (Hydra's own help would list train's config groups, none of which apply)."""
    lines = (Path(CONFIG_DIR) / f"{config_name}.yaml").read_text().splitlines()
    # the opening "# python -m mnistlab.<tool> ..." lines are the usage; the comments below them describe keys
    count = next((i for i, ln in enumerate(lines) if not ln.startswith("# python -m ")), len(lines))
    usage = "\n       ".join(ln[2:].strip() for ln in lines[:count]) or f"python -m mnistlab.{config_name}"
    values = OmegaConf.load(Path(CONFIG_DIR) / f"{config_name}.yaml")
    rows, comment = [], []
    for line in lines[count:]:
        if line.startswith("#"):
            comment.append(line.lstrip("# ").strip())
            continue
        key = line.split(":", 1)[0]
        if key in tool_settings(config_name):
            value = "(required)" if OmegaConf.is_missing(values, key) else \
                f"default {override_value(OmegaConf.to_container(values)[key])}"  # a list on one line
            rows.append((key, value, " ".join(comment)))
        comment = []
    width = max(len(k) for k, _, _ in rows)
    body = "\n".join(f"  {k:<{width}}  {v}" + (f": {c}" if c else "") for k, v, c in rows)
    return f"usage: {usage}\n\nsettings (key=value):\n{body}\n\nHydra's own flags: --hydra-help, --cfg job\n"


def check_required(cfg: DictConfig, config_name: str) -> None:
    """A tool's ``???`` settings must be given: one line naming the first missing one."""
    for key in tool_settings(config_name):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} is required: python -m mnistlab.{config_name} {key}=...")


def one_line(err: Exception, config_name: str = "train") -> str:
    """A composition error as one line, read from Hydra's and OmegaConf's exception attributes."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, option = err.missing_cfg_file.rsplit("/", 1)
        hint = f"; choose one of {', '.join(sorted(err.options))}" if err.options else ""
        return f"{group}={option}: no such option{hint}"
    cause = err.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        key = cause.full_key
        if config_name != "train":  # a tool reads only its own settings: a new key would do nothing
            return f"{key}: no such setting of mnistlab.{config_name}; it has {', '.join(tool_settings(config_name))}"
        return f"{key}: no such config key (to add a new key write +{key}=...)"
    return str(err).strip().splitlines()[0]
