"""The one way a config value is judged and refused: each owner (DataModule, augmentation, network,
classifier, schedule) checks its own keys with these, so a rule and its message exist once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..core.errors import ConfigError


def number(key: str, value: Any, whole: bool = False) -> Any:
    """A YAML number (a mistyped ``abc`` or ``true`` arrives as a string or bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if whole and not isinstance(value, int):
        raise ConfigError(f"{key} must be a whole number, got {value}")
    return value


def whole_number(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    return value


def check(key: str, value: Any, ok: Callable[[Any], bool], rule: str, whole: bool = False) -> Any:
    """``value`` if it is a number for which ``ok`` holds, else one line: ``<key> <rule>, got <value>``."""
    number(key, value, whole)
    if not ok(value):
        raise ConfigError(f"{key} {rule}, got {value}")
    return value


def seed(key: str, value: Any) -> int:
    return check(key, whole_number(key, value), lambda v: 0 <= v < 2**32,
                 "must be in [0, 4294967295] (the range numpy's and Lightning's seeding take)")


def seeds(key: str, value: Any) -> list[int]:
    """A list of seeds (one seed alone counts as a list of one), at least one."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not values:
        raise ConfigError(f"{key} must name at least one seed")
    return [seed(key, v) for v in values]


def positive(key: str, value: Any, whole: bool = False) -> Any:
    return check(key, value, lambda v: v > 0, "must be > 0", whole)


def non_negative(key: str, value: Any, whole: bool = False) -> Any:
    return check(key, value, lambda v: v >= 0, "must be >= 0", whole)


def fraction(key: str, value: Any) -> float:
    """A rate in [0, 1): dropout, label smoothing, momentum."""
    return check(key, value, lambda v: 0 <= v < 1, "must be in [0, 1)")


def open_fraction(key: str, value: Any) -> float:
    return check(key, value, lambda v: 0 < v < 1, "must be in (0, 1)")


def probability(key: str, value: Any) -> float:
    return check(key, value, lambda v: 0 <= v <= 1, "is a probability and must be in [0, 1]")


def pair(key: str, value: Any, ok: Callable[[float, float], bool], rule: str) -> tuple[float, float]:
    """Two numbers for which ``ok(first, second)`` holds (a range, Adam's betas), else one line."""
    numbers = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    if len(numbers) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) \
            or not ok(*numbers):
        raise ConfigError(f"{key} {rule}, got {list(value) if numbers else value}")
    return float(numbers[0]), float(numbers[1])


def switch(key: str, value: Any) -> bool:
    # Hydra passes a mistyped `true` on as a string, which Python would take as true
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value
