"""Argument checks shared by the model classes and their config builders.

Each raises a `ConfigError` whose message names the owner and the argument and says what was
expected and what was got, as Keras' own layers do. NumPy-free and Keras-free, so the
NumPy-only baselines can use them too.
"""

from __future__ import annotations

import numbers
from typing import Any

from longstm.errors import ConfigError


def is_positive_int(value, minimum: int = 1) -> bool:
    """True for a whole number >= `minimum`: a Python or NumPy integer, never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def check_positive_int(owner: str, name: str, value, minimum: int = 1) -> int:
    """`value` as a Python int (a NumPy integer is converted), or a ConfigError naming
    `owner`'s argument `name`."""
    if not is_positive_int(value, minimum):
        raise ConfigError(f"{owner} argument `{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_fraction(owner: str, name: str, value) -> float:
    """`value` as a float in [0, 1), or a ConfigError naming `owner`'s argument `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{owner} argument `{name}` must be a number in [0, 1); got {value!r}.")
    return float(value)


def check_choice(owner: str, name: str, value, choices):
    """`value` if it is one of `choices`, or a ConfigError naming `owner`'s argument `name`."""
    if value not in choices:
        raise ConfigError(f"{owner} argument `{name}` must be one of {list(choices)}; got {value!r}.")
    return value


def check_quantiles(owner: str, quantiles) -> tuple[float, ...]:
    """Strictly increasing levels in (0, 1), or a ConfigError saying which rule was broken."""
    try:
        levels = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner} argument `quantiles` must be a list of numbers in (0, 1); got {quantiles!r}.") from None
    if not levels:
        raise ConfigError(f"{owner} argument `quantiles` must not be empty; got {quantiles!r}.")
    if any(not 0.0 < q < 1.0 for q in levels):
        raise ConfigError(f"{owner} argument `quantiles` must lie strictly between 0 and 1; got {list(levels)}.")
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise ConfigError(f"{owner} argument `quantiles` must be strictly increasing; got {list(levels)}.")
    return levels


def check_horizon(horizon) -> int:
    """`horizon` as an int, or a ConfigError when it is not a positive integer."""
    if isinstance(horizon, bool) or not hasattr(horizon, "__index__") or int(horizon) < 1:
        raise ConfigError(f"horizon must be a positive integer, got {horizon!r}")
    return int(horizon)


def model_options(config, allowed: dict[str, Any]) -> dict[str, Any]:
    """`config.options` (a `ModelConfig`'s `[model] options` table) merged over the defaults in
    `allowed`; unknown keys are a ConfigError that lists the known ones."""
    unknown = sorted(set(config.options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"'model.options' for model {config.name!r} has unknown keys {unknown}; expected some of {sorted(allowed)}"
        )
    return {**allowed, **config.options}
