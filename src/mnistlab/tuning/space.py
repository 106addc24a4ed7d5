"""Search spaces in Hydra's sweep grammar (the YAML ``params`` and the command line) as Optuna distributions.

    choice(a, b, c) / a,b,c          categorical (lists such as [512,256] are kept in override form)
    interval(lo, hi)                 float; tag(log, interval(...)) log-uniform; tag(int, ...) integer
    range(start, stop[, step])       integer (stop excluded, as in Python)
    anything else                    a fixed override given to every trial
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.overrides import override_value
from ..core.errors import ConfigError

_PRIMITIVE = (type(None), bool, int, float, str)


@dataclass
class SearchSpace:
    distributions: dict[str, Any] = field(default_factory=dict)  # key -> optuna distribution
    fixed: list[str] = field(default_factory=list)               # overrides every trial gets as they are
    text_keys: set[str] = field(default_factory=set)             # categorical lists, stored as override text

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's parameters as overrides, after the fixed ones."""
        swept = [f"{key}={value if key in self.text_keys else override_value(value)}" for key, value in params.items()]
        return [*self.fixed, *swept]


def search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """The space from the config's ``params`` and the command line's own sweeps (``key=a,b``), the latter
    winning; every other command-line override is fixed for all trials."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from_config = [f"{key}={value}" for key, value in (params or {}).items()]
    try:
        parsed = OverridesParser.create().parse_overrides([*from_config, *arguments])
    except HydraException as err:
        raise ConfigError(f"hydra.sweeper.params: {str(err).splitlines()[0]}") from None
    space = SearchSpace()
    for override in parsed:
        key = override.get_key_element()
        space.distributions.pop(key, None)
        space.fixed = [f for f in space.fixed if not f.startswith(f"{key}=")]
        if override.is_sweep_override():
            space.distributions[key] = _distribution(key, override.value(), space.text_keys)
        else:
            space.fixed.append(override.input_line)
    return space


def _distribution(key: str, sweep: Any, text_keys: set[str]) -> Any:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    tags = set(getattr(sweep, "tags", ()) or ())
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(f"hydra.sweeper.params.{key}: unknown tag {sorted(unknown)[0]!r} (use log or int)")
    if isinstance(sweep, ChoiceSweep):
        choices = list(sweep.list)
        if not choices:
            raise ConfigError(f"hydra.sweeper.params.{key}: choice() needs at least one value")
        if not all(isinstance(c, _PRIMITIVE) for c in choices):  # Optuna stores only plain values
            text_keys.add(key)
            choices = [override_value(c) for c in choices]
        return CategoricalDistribution(choices)
    if isinstance(sweep, RangeSweep):
        values = list(range(int(sweep.start), int(sweep.stop), int(sweep.step or 1))) if all(
            float(v).is_integer() for v in (sweep.start, sweep.stop, sweep.step or 1)) else None
        if not values:
            raise ConfigError(f"hydra.sweeper.params.{key}: range() must hold whole numbers and at least one value")
        return IntDistribution(values[0], values[-1], step=int(sweep.step or 1), log="log" in tags)
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if not low < high:
            raise ConfigError(f"hydra.sweeper.params.{key}: interval({low}, {high}) needs low < high")
        if "log" in tags and low <= 0:
            raise ConfigError(f"hydra.sweeper.params.{key}: a log interval needs low > 0, got {low}")
        if "int" in tags:
            return IntDistribution(int(low), int(high), log="log" in tags)
        return FloatDistribution(float(low), float(high), log="log" in tags)
    raise ConfigError(f"hydra.sweeper.params.{key}: {type(sweep).__name__} is not a search space Optuna can sample")


def suggest(trial: Any, key: str, distribution: Any) -> Any:
    """Sample ``key`` from ``distribution`` through the trial's public ``suggest_*`` methods."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(key, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(key, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    return trial.suggest_float(key, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
