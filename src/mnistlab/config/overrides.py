"""Command-line overrides written by code: values in Hydra's override grammar, and the list of overrides
that turns one composed config into another (how a sweep's best trial becomes a command to rerun)."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
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


ABSENT = object()  # a key one side of a comparison does not have


def added_off(then: Any, now: Any) -> bool:
    """A setting added to mnistlab since a run recorded its config (``then`` is ``ABSENT``) and off now (false,
    null or zero): it changes nothing that run did, so neither a resume nor the results tool counts it."""
    return then is ABSENT and (now is None or now is False or (type(now) in (int, float) and now == 0))


def differences(base: DictConfig | Mapping, target: DictConfig | Mapping,
                prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in base, value in target)`` for every leaf that differs, ``ABSENT`` for a key one
    side lacks. Both are compared unresolved, so interpolations stay interpolations."""
    if isinstance(base, DictConfig):
        base = OmegaConf.to_container(base, resolve=False)
    if isinstance(target, DictConfig):
        target = OmegaConf.to_container(target, resolve=False)
    out: list[tuple[str, Any, Any]] = []
    for key in target:
        path = f"{prefix}{key}"
        if key not in base:
            out.append((path, ABSENT, target[key]))
        elif isinstance(base[key], Mapping) and isinstance(target[key], Mapping):
            out.extend(differences(base[key], target[key], f"{path}."))
        elif base[key] != target[key]:
            out.append((path, base[key], target[key]))
    out.extend((f"{prefix}{key}", base[key], ABSENT) for key in base if key not in target)
    return out


def overrides_between(base: DictConfig | Mapping, target: DictConfig | Mapping) -> list[str]:
    """Overrides that turn ``base`` into ``target``: ``key=value`` for a changed value, ``+key=value`` for a
    new key, ``~key`` for a removed one."""
    return [f"~{key}" if new is ABSENT else f"+{key}={override_value(new)}" if old is ABSENT
            else f"{key}={override_value(new)}" for key, old, new in differences(base, target)]


def resume_command(ckpt_path: str | Path, module: str = "mnistlab.train") -> str:
    """The command that resumes from ``ckpt_path``, pasteable in a POSIX shell whatever the folder's name
    holds (spaces, ``,``, ``=``, quotes): Hydra's quoting inside, the shell's around it."""
    return f"python -m {module} {shlex.quote('ckpt_path=' + override_value(str(ckpt_path)))}"
