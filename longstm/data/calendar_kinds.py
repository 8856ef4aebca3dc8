"""`calendar_boundaries`: the boundary flags a calendar hierarchy (`calendar_lstm`) reads.

A calendar model groups ticks by time: ticks -> seconds -> minutes. It learns where a group
ends from flags the data layer builds from the timestamps and passes in as its last input
columns, one per boundary level, 0.0 or 1.0 and never scaled, level 0 first:

    flag_l[t] = 1  <=>  row t is the first row of a new level-l group
                        (the level-l group holding row t - 1 has closed)

A level says how its groups are cut, with exactly one of:

- `every = "<pandas offset>"` (`"1s"`, `"10s"`, `"1min"`, `"1D"`): row t starts a group when
  the floor of its time by the span differs from row t - 1's. With `tz` (an IANA zone) the
  floor is taken on that zone's wall clock, so `"1D"` in `"America/New_York"` closes at local
  midnight on both sides of a daylight-saving change; without it, on UTC. Spans must be fixed
  (`pd.Timedelta` can hold them); weeks and months are refused.
- `every_events = N`: every N rows, counted from the segment's (session's) first row.
- `column = "<name>"`: a boundary column of the data; nonzero starts a group.

The first row of a segment starts a group at every level, and levels nest: a new group at
level l + 1 is a new group at level l too (a new minute is a new second), so the flags are
OR-ed downwards. Row t reads rows t - 1 and t only, so the flags are causal by construction:
knowing that row t - 1 ended a group needs row t's timestamp, and the flag arrives with row t.

Example:

>>> pipeline = FeaturePipeline(
...     [{"kind": "raw", "columns": ["bid"]},
...      {"kind": "calendar_boundaries", "levels": [{"every": "1s"}, {"every": "1min"}]}],
...     input_columns=["bid"])
>>> pipeline.output_columns
['bid', 'boundary_0', 'boundary_1']
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from longstm.data.calendar_levels import LEVEL_KEYS, check_boundary_level, span_nanoseconds
from longstm.data.feature_kinds import FeatureKind
from longstm.errors import ConfigError



def boundary_columns(count: int) -> list[str]:
    """The names of `count` boundary flag columns, level 0 first: `boundary_0`, `boundary_1`, ..."""
    return [f"boundary_{level}" for level in range(count)]


def boundary_levels(levels: Any, where: str) -> list[dict[str, Any]]:
    """The boundary keys of a calendar model's `levels` (all but the top level, whose groups
    nothing closes), as the `levels` of a `calendar_boundaries` pipeline entry.

    Args:
        levels: the model's `options.levels`, a list of tables (`{units = 32, every = "1s"}`).
        where: how messages name the list, e.g. `"configs/x.toml: model.options.levels"`.

    Raises:
        ConfigError: not a list of at least two tables.
    """
    if not isinstance(levels, (list, tuple)) or len(levels) < 2 or not all(isinstance(level, dict) for level in levels):
        raise ConfigError(f"{where} must be a list of at least two tables like {{units = 32, every = \"1s\"}}; got {levels!r}")
    return [{key: level[key] for key in LEVEL_KEYS if key in level} for level in levels[:-1]]


class CalendarBoundaries(FeatureKind):
    """`calendar_boundaries`: `levels` -> `boundary_0`, `boundary_1`, ...: 1.0 where a row starts
    a new group of that level (see the module docstring), else 0.0.

    Args (keys of the pipeline entry):
        levels: a list of tables, level 0 first, each with exactly one of `every` (a fixed
            pandas offset), `every_events` (a positive integer) or `column` (a column name),
            and an optional `tz` (an IANA time zone, with `every` only).
    """

    kind = "calendar_boundaries"
    required = ("levels",)

    def configure(self):
        levels = self.spec["levels"]
        if not isinstance(levels, (list, tuple)) or not levels or not all(isinstance(level, dict) for level in levels):
            self._fail(f"levels must be a non-empty list of tables like {{every = \"1s\"}}; got {levels!r}")
        self.rules = [self._rule(index, level) for index, level in enumerate(levels)]
        self.columns = sorted({rule[1] for rule in self.rules if rule[0] == "column"}, key=self._column_order)
        self.needs_timestamps = any(rule[0] == "every" for rule in self.rules)
        self.history = 2
        self.row_period = math.lcm(*(rule[1] for rule in self.rules if rule[0] == "every_events"))
        self.outputs = boundary_columns(len(self.rules))

    def _column_order(self, name: str) -> int:
        return self.input_columns.index(name) if self.input_columns is not None else 0

    def _rule(self, index: int, level: dict[str, Any]) -> tuple:
        """`("every", span_ns, zone)`, `("every_events", N, None)` or `("column", name, None)`."""
        checked = check_boundary_level(level, f"levels[{index}]", lambda key: f"{self.where}: {key}")
        zone = checked.pop("tz", None)
        (name, value), = checked.items()
        if name == "every":
            return name, span_nanoseconds(value), zone
        return name, self._check_column(value) if name == "column" else value, None

    # ---- the flags ------------------------------------------------------------------------

    def _wall_clock(self, stamps: np.ndarray, zone: str | None) -> np.ndarray:
        """UTC nanoseconds -> nanoseconds of the wall clock in `zone` (UTC without one)."""
        if zone is None:
            return stamps
        flat = pd.DatetimeIndex(stamps.reshape(-1).astype("datetime64[ns]"), tz="UTC").tz_convert(zone).tz_localize(None)
        return flat.asi8.reshape(stamps.shape)

    def _starts(self, rule: tuple, previous, current, index, previous_stamps, current_stamps) -> np.ndarray:
        """True where a row starts a new group of `rule`; `index` counts rows since the segment start."""
        name, value, zone = rule
        if name == "every_events":
            return index % value == 0
        if name == "column":
            return current[..., self.columns.index(value)] != 0
        return self._wall_clock(current_stamps, zone) // value != self._wall_clock(previous_stamps, zone) // value

    def _nested(self, starts: list[np.ndarray], first: np.ndarray) -> np.ndarray:
        """Flags `(..., levels)`: a level's own starts OR any higher level's OR a segment start."""
        flags = np.stack(starts, axis=-1) | first[..., None]
        return np.flip(np.logical_or.accumulate(np.flip(flags, axis=-1), axis=-1), axis=-1).astype(np.float64)

    def segment(self, values, timestamps):
        rows = len(values)
        index = np.arange(rows)
        previous = np.concatenate([values[:1], values[:-1]])
        stamps = None if timestamps is None else np.asarray(timestamps, np.int64)
        before = None if stamps is None else np.concatenate([stamps[:1], stamps[:-1]])
        starts = [self._starts(rule, previous, values, index, before, stamps) for rule in self.rules]
        return self._nested(starts, index == 0)

    def latest(self, window, seen, timestamps):
        index = seen - 1
        stamps = (None, None) if timestamps is None else (timestamps[:, -2], timestamps[:, -1])
        starts = [self._starts(rule, window[:, -2], window[:, -1], index, *stamps) for rule in self.rules]
        return self._nested(starts, index == 0)

    def missing_timestamps(self, source: str, what: str) -> ConfigError:
        level = next(index for index, rule in enumerate(self.rules) if rule[0] == "every")
        return ConfigError(
            f"{source}: {self.where}: levels[{level}].every cuts groups by time and {what} has no timestamps; "
            f"use every_events = N or column = \"<boundary column>\" on data without timestamps"
        )
