"""Forecast targets on irregular ticks: in time (an as-of join) and in events.

Time targets: at tick t, the log return of the mid from t to the mid *in force* at t + Δ — the
last tick at or before t + Δ (ticks sharing a timestamp: the last of them, in file order). A
target is valid only when t + Δ lies inside t's own stretch (a session, or a split part): a
forecast must not be scored against a price from after a weekend close, nor a training target
read a row at or after the split instant. Event targets: the log return over the next k ticks,
with the same validity rule.

Both take plain arrays of one stretch (one series' session or split piece), so a caller can
run them block by block over a store (reading `Δ` of look-ahead past each block).

Example:

>>> values, valid = time_targets(stamps_ns, mid, [10 * 10**9, 60 * 10**9], stop_ns=session_end_ns)
>>> values, valid = event_targets(mid, [1, 10])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from longstm.errors import ConfigError, DataValidationError


def _check(mid: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
    mid = np.asarray(mid, dtype=np.float64)
    if mid.ndim != 1:
        raise DataValidationError(f"mid must be one value per row; got shape {mid.shape}")
    if not np.all(mid > 0):
        raise DataValidationError(f"mid row {int(np.flatnonzero(~(mid > 0))[0])}: expected a price > 0 for a log return")
    if timestamps is not None:
        if len(timestamps) != len(mid):
            raise DataValidationError(f"timestamps ({len(timestamps)} rows) and mid ({len(mid)} rows) differ in length")
        backwards = np.flatnonzero(np.diff(timestamps) < 0)
        if backwards.size:
            raise DataValidationError(f"timestamps row {int(backwards[0]) + 1}: goes back in time; expected non-decreasing")
    return mid


def time_targets(
    timestamps: np.ndarray, mid: np.ndarray, horizons_ns: Sequence[int], *, stop_ns: int | None = None, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Log returns of the mid to the mid in force `Δ` later, for each `Δ` in `horizons_ns`.

    Args:
        timestamps: int64 nanoseconds, non-decreasing, of the stretch and of any look-ahead rows
            after it (rows past `rows` are read only as targets).
        mid: the mid price of the same rows.
        horizons_ns: the Δs, positive nanoseconds.
        stop_ns: the stretch ends before this instant (a session's end or a split instant): a
            target whose t + Δ reaches it is invalid. Default: the last timestamp given (a
            target needs a tick at or after t + Δ to know which mid was in force).
        rows: how many leading rows get targets (default all).

    Returns:
        `(values, valid)`, both `(rows, len(horizons_ns))`; `values` is 0 where not valid.
    """
    stamps = np.asarray(timestamps, dtype=np.int64)
    mid = _check(mid, stamps)
    horizons = np.asarray(horizons_ns, dtype=np.int64)
    if horizons.ndim != 1 or horizons.size == 0 or np.any(horizons <= 0):
        raise ConfigError(f"target horizons must be positive durations; got {list(horizons_ns)}")
    n = len(mid) if rows is None else int(rows)
    values = np.zeros((n, len(horizons)), np.float64)
    valid = np.zeros((n, len(horizons)), bool)
    if len(mid) == 0:
        return values, valid
    for j, horizon in enumerate(horizons):
        target_time = stamps[:n] + horizon
        # inside the stretch: t + Δ before its end; with no end given, a tick at or after t + Δ is known
        ok = target_time < stop_ns if stop_ns is not None else target_time <= stamps[-1]
        index = np.searchsorted(stamps, target_time, side="right") - 1
        values[ok, j] = np.log(mid[index[ok]] / mid[:n][ok])
        valid[:, j] = ok
    return values, valid


def event_targets(mid: np.ndarray, steps: Sequence[int], *, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log returns of the mid over the next `k` ticks, for each `k` in `steps`; valid where
    tick `t + k` is inside the arrays given (the stretch plus any look-ahead rows)."""
    mid = _check(mid)
    steps = [int(k) for k in steps]
    if not steps or any(k < 1 for k in steps):
        raise ConfigError(f"event target steps must be integers >= 1; got {steps}")
    n = len(mid) if rows is None else int(rows)
    values = np.zeros((n, len(steps)), np.float64)
    valid = np.zeros((n, len(steps)), bool)
    for j, k in enumerate(steps):
        count = max(0, min(n, len(mid) - k))
        values[:count, j] = np.log(mid[k : k + count] / mid[:count])
        valid[:count, j] = True
    return values, valid
