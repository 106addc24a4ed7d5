"""Command-line overrides written by code: values in Hydra's override grammar, and the list of overrides
that turns one composed config into another (how a sweep's best trial becomes a command to rerun)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

# A string Hydra reads back as that same string when left unquoted
_BARE = re.compile(r"^[A-Za-z_/][\w./:-]*$")
_NOT_STRINGS = {"null", "true", "false", "nan", "inf", "-inf"}


def override_value(value: Any) -> str:
    """``value`` as Hydra's override parser reads it back: ``[512,256]``, ``null``, ``1e-05``, ``'a b'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        if _BARE.match(value) and value.lower() not in _NOT_STRINGS:
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} values have no override form")


def overrides_between(base: DictConfig | Mapping, target: DictConfig | Mapping, prefix: str = "") -> list[str]:
    """Overrides that turn ``base`` into ``target``: ``key=value`` for a changed value, ``+key=value`` for a
    new key, ``~key`` for a removed one. Both are compared unresolved, so interpolations stay interpolations."""
    if isinstance(base, DictConfig):
        base = OmegaConf.to_container(base, resolve=False)
    if isinstance(target, DictConfig):
        target = OmegaConf.to_container(target, resolve=False)
    out: list[str] = []
    for key in target:
        path = f"{prefix}{key}"
        if key not in base:
            out.append(f"+{path}={override_value(target[key])}")
        elif isinstance(base[key], Mapping) and isinstance(target[key], Mapping):
            out.extend(overrides_between(base[key], target[key], f"{path}."))
        elif base[key] != target[key]:
            out.append(f"{path}={override_value(target[key])}")
    out.extend(f"~{prefix}{key}" for key in base if key not in target)
    return out
