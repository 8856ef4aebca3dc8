"""Causal features built from plain dicts (so a TOML config can name them).

Every feature at row t uses rows <= t of its own segment only: nothing looks ahead, and
nothing reaches back across a segment start (a gap). Where a feature has no past yet (the
first row of a segment for a return, say) it is 0, so the series keeps its length and its
rows stay aligned with the timestamps.

Kinds (keys in brackets are optional):

- `raw`: `[columns]` the columns as they are (default all).
- `log_return`: `[columns, periods=1]` `log(x[t] / x[t - periods])`; values must be > 0.
- `diff`: `[columns, periods=1]` `x[t] - x[t - periods]`.
- `rolling_volatility`: `window, [columns, of="log_return"]` population std of the last
  `window` one-step log returns (or `"diff"`s, or the `"value"`s) up to and including t.
- `rolling_mean`: `window, [columns]` mean of the last `window` values up to and including t.
- `time_of_day`: `tod_sin`, `tod_cos`: the time within the day on the unit circle.
- `day_of_week`: `dow_sin`, `dow_cos`: the weekday (Monday 0) on the unit circle.

Example (the TOML `[[features]]` tables of a config give the same dicts):

    features = build_features(series, [
        {"kind": "log_return", "columns": ["close"]},
        {"kind": "rolling_volatility", "columns": ["close"], "window": 60},
        {"kind": "time_of_day"},
    ])
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from longstm.data.series import TimeSeries
from longstm.data.validation import _rows
from longstm.errors import ConfigError, DataValidationError

_NANOSECONDS_PER_DAY = 86_400 * 10**9


def _columns(series: TimeSeries, spec: dict) -> list[str]:
    columns = spec.get("columns", series.columns)
    if isinstance(columns, str):
        columns = [columns]
    series.column_indices(columns)  # names the missing column and the available ones
    return list(columns)


def _per_segment(series: TimeSeries, columns: Sequence[str], compute: Callable[[pd.DataFrame], pd.DataFrame]) -> np.ndarray:
    """Apply `compute` to each segment's frame of `columns` separately, so nothing crosses a segment start."""
    values = np.asarray(series.values[:, series.column_indices(columns)], dtype=np.float64)
    out = np.empty(values.shape, np.float64)
    for start, stop in series.segment_bounds():
        out[start:stop] = compute(pd.DataFrame(values[start:stop])).to_numpy(np.float64)
    return out


def _periods(spec: dict, index: int) -> int:
    periods = spec.get("periods", 1)
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise ConfigError(f"features[{index}] ({spec['kind']}): periods must be a positive integer, got {periods!r}")
    return periods


def _window(spec: dict, index: int) -> int:
    window = spec["window"]
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"features[{index}] ({spec['kind']}): window must be a positive integer, got {window!r}")
    return window


def _log_values(series: TimeSeries, columns: Sequence[str]) -> None:
    for name in columns:
        column = np.asarray(series.values[:, series.column_index(name)])
        bad = np.flatnonzero(column <= 0)
        if bad.size:
            raise DataValidationError(
                f"{series.source}: log returns need positive values, column {name!r} holds {column[bad[0]]} at "
                f"row {bad[0]} ({bad.size} such rows, rows {_rows(bad)}); use kind='diff' instead"
            )


def _raw(series, spec, index):
    columns = _columns(series, spec)
    return columns, np.asarray(series.values[:, series.column_indices(columns)], dtype=np.float64)


def _log_return(series, spec, index):
    columns, periods = _columns(series, spec), _periods(spec, index)
    _log_values(series, columns)
    out = _per_segment(series, columns, lambda f: np.log(f).diff(periods).fillna(0.0))
    suffix = "log_return" if periods == 1 else f"log_return_{periods}"
    return [f"{c}_{suffix}" for c in columns], out


def _diff(series, spec, index):
    columns, periods = _columns(series, spec), _periods(spec, index)
    out = _per_segment(series, columns, lambda f: f.diff(periods).fillna(0.0))
    suffix = "diff" if periods == 1 else f"diff_{periods}"
    return [f"{c}_{suffix}" for c in columns], out


def _rolling_volatility(series, spec, index):
    columns, window = _columns(series, spec), _window(spec, index)
    of = spec.get("of", "log_return")
    steps = {"log_return": lambda f: np.log(f).diff().fillna(0.0), "diff": lambda f: f.diff().fillna(0.0), "value": lambda f: f}
    if of not in steps:
        raise ConfigError(f"features[{index}] (rolling_volatility): of must be one of {sorted(steps)}, got {of!r}")
    if of == "log_return":
        _log_values(series, columns)
    out = _per_segment(series, columns, lambda f: steps[of](f).rolling(window, min_periods=1).std(ddof=0))
    return [f"{c}_vol_{window}" for c in columns], out


def _rolling_mean(series, spec, index):
    columns, window = _columns(series, spec), _window(spec, index)
    out = _per_segment(series, columns, lambda f: f.rolling(window, min_periods=1).mean())
    return [f"{c}_mean_{window}" for c in columns], out


def _timestamps(series: TimeSeries, kind: str) -> np.ndarray:
    if series.timestamps is None:
        raise DataValidationError(f"{series.source}: feature {kind!r} needs timestamps, and this series has none")
    return series.timestamps.astype(np.int64)


def _time_of_day(series, spec, index):
    angle = 2 * np.pi * (_timestamps(series, "time_of_day") % _NANOSECONDS_PER_DAY) / _NANOSECONDS_PER_DAY
    return ["tod_sin", "tod_cos"], np.stack([np.sin(angle), np.cos(angle)], axis=1)


def _day_of_week(series, spec, index):
    days = _timestamps(series, "day_of_week") // _NANOSECONDS_PER_DAY
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    angle = 2 * np.pi * weekday / 7
    return ["dow_sin", "dow_cos"], np.stack([np.sin(angle), np.cos(angle)], axis=1)


# kind -> (function, required keys, optional keys)
FEATURES: dict[str, tuple[Callable, tuple[str, ...], tuple[str, ...]]] = {
    "raw": (_raw, (), ("columns",)),
    "log_return": (_log_return, (), ("columns", "periods")),
    "diff": (_diff, (), ("columns", "periods")),
    "rolling_volatility": (_rolling_volatility, ("window",), ("columns", "of")),
    "rolling_mean": (_rolling_mean, ("window",), ("columns",)),
    "time_of_day": (_time_of_day, (), ()),
    "day_of_week": (_day_of_week, (), ()),
}


def build_features(series: TimeSeries, specs: Sequence[dict[str, Any]]) -> TimeSeries:
    """Compute the features `specs` describe, in order, as a new `TimeSeries`.

    Args:
        series: the input series.
        specs: a list of dicts, each with `kind` (see the module docstring) and that kind's keys.

    Returns:
        A series with the produced columns only (add `{"kind": "raw"}` to keep the inputs), the
        same timestamps and segment starts.

    Raises:
        ConfigError: an unknown kind or key, a missing key, or a bad value, naming `features[i]`.
        DataValidationError: a column that does not exist, values a feature cannot take.
    """
    if isinstance(specs, dict) or not isinstance(specs, (list, tuple)):
        raise ConfigError(f"features must be a list of dicts like {{kind = 'log_return'}}, got {type(specs).__name__}")
    names: list[str] = []
    blocks: list[np.ndarray] = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ConfigError(f"features[{index}] must be a table/dict with a 'kind' key, got {spec!r}")
        kind = spec["kind"]
        if kind not in FEATURES:
            raise ConfigError(f"features[{index}]: unknown kind {kind!r}; expected one of {', '.join(FEATURES)}")
        compute, required, optional = FEATURES[kind]
        unknown = sorted(set(spec) - {"kind", *required, *optional})
        if unknown:
            allowed = ", ".join((*required, *optional)) or "none"
            raise ConfigError(f"features[{index}] ({kind}): unknown key(s) {', '.join(unknown)}; allowed keys: {allowed}")
        missing = [key for key in required if key not in spec]
        if missing:
            raise ConfigError(f"features[{index}] ({kind}): missing required key(s) {', '.join(missing)}")
        produced, values = compute(series, spec, index)
        clash = sorted(set(produced) & set(names))
        if clash:
            raise ConfigError(f"features[{index}] ({kind}) produces column(s) {clash} that an earlier feature already made")
        names.extend(produced)
        blocks.append(values)
    if not blocks:
        raise ConfigError("features: the list is empty; give at least one feature (e.g. {kind = 'raw'})")
    values = np.concatenate(blocks, axis=1).astype(np.float32)
    return TimeSeries(values, names, series.timestamps, series.segments, series.source)
