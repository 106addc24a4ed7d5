"""Every augmentation option, declared once: its default, its rule and what it does.

The checks (``check``), the config group's defaults (``conf/augment/*.yaml`` extend ``base``, registered
from ``DEFAULTS``), ``BatchAugment``'s attributes and repr all follow from ``OPTIONS``; a new option is one
entry here and the line in ``augment.py`` that applies it. Plain Python, no torch: ``--help`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigError
from . import rules


def _below_one(key: str, value: Any) -> float:
    rules.non_negative(key, value)
    if value >= 1:
        name = key.rsplit(".", 1)[-1]
        raise ConfigError(f"{key} must be < 1 (a factor in [1-{name}, 1+{name}]), got {value}")
    return value


def _slant(key: str, value: Any) -> float:
    return rules.check(key, value, lambda v: 0 <= v <= 45, "must be degrees from 0 to 45")


def _pixels(key: str, value: Any) -> int:
    return rules.check(key, value, lambda v: 1 <= v <= 4, "must be a whole number from 1 to 4", whole=True)


def _side(key: str, value: Any) -> int:
    return rules.check(key, value, lambda v: 4 <= v <= 20, "must be a whole number of pixels from 4 to 20", whole=True)


def _range(ok: Callable[[float, float], bool], rule: str) -> Callable[[str, Any], tuple[float, float]]:
    return lambda key, value: rules.pair(key, value, ok, rule)


@dataclass(frozen=True)
class Option:
    default: Any
    check: Callable[[str, Any], Any]  # raises ConfigError naming augment.<name>; returns the value to use
    help: str
    # what a non-zero value switches on (None: a setting of another option's transform)
    transform: str | None = None


OPTIONS: dict[str, Option] = {
    "rotation": Option(0.0, rules.non_negative, "degrees, uniform in [-rotation, rotation]", "geometric"),
    "shift": Option(0.0, rules.non_negative, "pixels, uniform in [-shift, shift] on each axis", "geometric"),
    "scale": Option(0.0, _below_one, "zoom factor uniform in [1 - scale, 1 + scale]", "geometric"),
    "stretch": Option(0.0, _below_one, "horizontal stretch factor uniform in [1 - stretch, 1 + stretch] (narrow "
                      "and wide hands: a flagged 1 fills its box)", "stretch"),
    "shear": Option(0.0, _slant, "slant in degrees, uniform in [-shear, shear]: the digit leans as writers' "
                    "hands do (rows shift sideways in proportion to their height; rotation turns the whole digit)",
                    "shear"),
    "hflip": Option(0.0, rules.probability, "probability of a mirror image (left-right)", "geometric"),
    "vflip": Option(0.0, rules.probability, "probability of an upside-down image", "geometric"),
    "brightness": Option(0.0, rules.non_negative, "factor uniform in [1 - brightness, 1 + brightness]",
                         "photometric"),
    "contrast": Option(0.0, rules.non_negative, "factor uniform in [1 - contrast, 1 + contrast]", "photometric"),
    "elastic_alpha": Option(0.0, rules.non_negative, "elastic distortion (Simard 2003): displacement scale in "
                            "pixels; 0 is off", "elastic"),
    "elastic_sigma": Option(4.0, rules.positive, "smoothness of its displacement field (Gaussian sigma, pixels)"),
    "stroke_p": Option(0.0, rules.probability, "probability of thickening or thinning the strokes (equal chance): "
                       "grey-level dilation or erosion, as pens and scanners differ", "stroke"),
    "stroke_thinner": Option(0.5, rules.probability, "of those, the share thinned instead of thickened (0: "
                             "thicker only; thinning a one-pixel MNIST stroke can erase it)"),
    "stroke_radius": Option(1, _pixels, "its radius in pixels (each a 3x3 pass), per sample uniform in "
                            "1..stroke_radius"),
    "stroke_partial": Option(0.0, rules.probability, "of those, the share whose last pass goes only part of "
                             "the way (per sample uniform in (0, 1)): widths between whole pixels, as a whole "
                             "pass makes MNIST's ~2-pixel strokes wider than most other writers' (~3)"),
    "blur_p": Option(0.0, rules.probability, "probability of blurring the image (3x3 binomial filter), as low "
                     "resolution and soft pens do", "blur"),
    "blur_passes": Option(2, _pixels, "passes of that filter, per sample uniform in 1..blur_passes"),
    "lowres_p": Option(0.0, rules.probability, "probability of a low-resolution copy: the image shrunk (area "
                       "averaging) then enlarged back (bilinear), as small scans and 8x8 sensors give", "lowres"),
    "lowres_side": Option(10, _side, "the smallest side it is shrunk to (pixels); per sample one of three sides "
                          "from lowres_side to 20"),
    "erase_p": Option(0.0, rules.probability, "probability of erasing one random rectangle (random erasing)",
                      "erase"),
    "erase_scale": Option((0.02, 0.2), _range(lambda lo, hi: 0 < lo <= hi <= 1, "must be [low, high] area "
                          "fractions with 0 < low <= high <= 1"), "its area, as a fraction of the image's"),
    "erase_ratio": Option((0.3, 3.3), _range(lambda lo, hi: 0 < lo <= hi, "must be [low, high] aspect ratios "
                          "with 0 < low <= high"), "its aspect ratio (height / width), log-uniform"),
}

DEFAULTS = {name: list(o.default) if isinstance(o.default, tuple) else o.default for name, o in OPTIONS.items()}


def check(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value (defaults filled in), each checked by its rule; an unknown name is refused."""
    unknown = [name for name in settings if name not in OPTIONS]
    if unknown:
        raise ConfigError(f"augment.{unknown[0]}: not an augmentation option; choose from {', '.join(OPTIONS)}")
    return {name: option.check(f"augment.{name}", settings.get(name, option.default))
            for name, option in OPTIONS.items()}
