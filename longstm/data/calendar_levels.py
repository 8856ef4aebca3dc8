"""The one check of a calendar level's boundary keys, shared by the model and the data layer.

A level below the top of a calendar hierarchy says how its groups are cut, with exactly one of
`every = "<pandas offset>"` (a fixed span; `tz` = an IANA zone to cut on that zone's wall
clock), `every_events = N` or `column = "<boundary column>"`. `CalendarLSTM`
(`longstm.models.calendar`) checks its `levels` with it, and so does the `calendar_boundaries`
pipeline kind (`longstm.data.calendar_kinds`) that turns the levels into flags; the data layer
may not import models, so the check lives here, and both give the same message for the same
mistake, each naming the level and key its own way.

Example:

>>> check_boundary_level({"every": "1D", "tz": "America/New_York"}, "levels[0]", lambda key: key)
{'every': '1D', 'tz': 'America/New_York'}
>>> check_boundary_level({"every_events": 0}, "levels[0]", lambda key: f"model.options.{key}")
Traceback (most recent call last):
longstm.errors.ConfigError: model.options.levels[0].every_events must be a positive integer; got 0
"""

from __future__ import annotations

import zoneinfo
from typing import Any, Callable, Sequence

import pandas as pd

from longstm.errors import ConfigError

SPAN_KEYS = ("every", "every_events", "column")
LEVEL_KEYS = (*SPAN_KEYS, "tz")


def span_nanoseconds(every: Any) -> int | None:
    """A fixed pandas offset (`"1s"`, `"10s"`, `"1min"`, `"1D"`) in nanoseconds; None when
    `every` is not one, or not positive (weeks and months have no fixed length)."""
    try:
        span = pd.Timedelta(pd.tseries.frequencies.to_offset(every)).value
    except (ValueError, TypeError):
        return None
    return int(span) if span > 0 else None


def check_boundary_level(
    level: dict, key: str, name: Callable[[str], str], extra_keys: Sequence[str] = ()
) -> dict[str, Any]:
    """The boundary keys of one level below the top, checked: exactly one span, `tz` with
    `every` only.

    Args:
        level: the level's table, e.g. `{"units": 32, "every": "1s"}`.
        key: the level's key in messages, e.g. `"levels[0]"`.
        name: how messages name a key: `"levels[0].every"` -> e.g.
            `"CalendarLSTM argument `levels[0].every`"` or `"pipeline[2] (...): levels[0].every"`.
        extra_keys: other keys the caller allows in the table (the model's `units`); they are
            left out of the result.

    Returns:
        `{"every" | "every_events" | "column": value}`, with `"tz"` when one is given.

    Raises:
        ConfigError: one line naming the key, with what was expected and what was got.
    """
    unknown = sorted(set(level) - {*LEVEL_KEYS, *extra_keys})
    if unknown:
        allowed = "".join(f"{extra}, " for extra in extra_keys)
        raise ConfigError(
            f"{name(key)} has unknown key(s) {', '.join(unknown)}; a level has {allowed}one of "
            f"{', '.join(SPAN_KEYS)} and an optional tz"
        )
    given = [span for span in SPAN_KEYS if span in level]
    if len(given) != 1:
        raise ConfigError(f"{name(key)} needs exactly one of {', '.join(SPAN_KEYS)}; got {', '.join(given) or 'none'}")
    span, value = given[0], level[given[0]]
    if span == "every_events" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name(key + '.every_events')} must be a positive integer; got {value!r}")
    if span == "column" and (not isinstance(value, str) or not value):
        raise ConfigError(f"{name(key + '.column')} must be a column name; got {value!r}")
    if span == "every" and span_nanoseconds(value) is None:
        raise ConfigError(
            f"{name(key + '.every')} must be a fixed positive span (a pandas offset like '1s', '10s', '1min', '1D'); "
            f"got {value!r}"
        )
    return {span: value} | _check_zone(level.get("tz"), span, f"{key}.tz", name)


def _check_zone(zone: Any, span: str, key: str, name: Callable[[str], str]) -> dict[str, Any]:
    if zone is None:
        return {}
    if span != "every":
        raise ConfigError(f"{name(key)} applies to every = \"<span>\" only; this level has {span}")
    try:
        zoneinfo.ZoneInfo(zone)
    except (KeyError, ValueError, TypeError, OSError):  # OSError: a folder of zones, like 'America'
        raise ConfigError(f"{name(key)} must be an IANA time zone like 'America/New_York'; got {zone!r}") from None
    return {"tz": zone}
