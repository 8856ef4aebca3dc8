"""Checks a series must pass before longstm trains on it.

Each failed check raises `DataValidationError` naming the file, the column and the row
(0-based data rows, the header not counted) and saying what was expected and what was found.
Gaps are not errors by default: they are reported with `warnings.warn`, or turned into segment
boundaries (`gap_policy="split"`), or filled forward (`"ffill"`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np

from longstm.data.series import TimeSeries, most_common_step
from longstm.errors import DataValidationError

GAP_POLICIES = ("report", "split", "ffill", "error")
# Columns (by lower-case name) that count what happened during a bar; a gap filled by
# `gap_policy="ffill"` gets 0 in them, not the previous bar's count.
FLOW_COLUMNS = frozenset(
    {"volume", "quote_volume", "base_volume", "trades", "count", "number_of_trades", "num_trades",
     "taker_buy_volume", "taker_buy_base_volume", "taker_buy_quote_volume", "signed_volume", "events"}
)
_SHOWN = 5  # how many offending rows a message lists


class DataWarning(UserWarning):
    """A data issue longstm can work with (gaps, ...) but the user should know about."""


def _rows(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_SHOWN])
    return shown + (f" ... ({len(rows)} in all)" if len(rows) > _SHOWN else "")


def _stamp(value) -> str:
    return str(np.datetime_as_string(np.datetime64(value, "ns"), unit="auto"))


def check_timestamps_ordered(timestamps: np.ndarray, source: str, *, allow_ties: bool = False,
                             column: str = "timestamp") -> None:
    """Raise unless `timestamps` increase (strictly, unless `allow_ties`)."""
    ticks = timestamps.astype("datetime64[ns]").astype(np.int64)
    if np.isnat(timestamps).any():
        rows = np.flatnonzero(np.isnat(timestamps))
        raise DataValidationError(f"{source}: column {column!r} has missing/unparseable timestamps at rows {_rows(rows)}")
    deltas = np.diff(ticks)
    back = np.flatnonzero(deltas < 0) + 1
    if back.size:
        row = back[0]
        raise DataValidationError(
            f"{source}: column {column!r} is not sorted: row {row} ({_stamp(timestamps[row])}) comes "
            f"before row {row - 1} ({_stamp(timestamps[row - 1])}); {back.size} such rows "
            f"(rows {_rows(back)}). Sort the file by time first."
        )
    if not allow_ties:
        same = np.flatnonzero(deltas == 0) + 1
        if same.size:
            row = same[0]
            raise DataValidationError(
                f"{source}: column {column!r} has duplicate timestamps: row {row} repeats "
                f"{_stamp(timestamps[row])} of row {row - 1}; {same.size} duplicates (rows {_rows(same)})"
            )


def check_finite(values: np.ndarray, columns: Sequence[str], source: str, *, block_rows: int = 1 << 20) -> None:
    """Raise if any value is NaN or +-inf, naming the column, the first rows and the count.

    Works block by block so a memory-mapped array is never loaded whole.
    """
    for start in range(0, values.shape[0], block_rows):
        block = np.asarray(values[start : start + block_rows])
        bad = ~np.isfinite(block)
        if not bad.any():
            continue
        for j in np.flatnonzero(bad.any(axis=0)):
            rows = np.flatnonzero(~np.isfinite(np.asarray(values[:, j])))
            kinds = "NaN" if np.isnan(np.asarray(values[rows, j])).all() else "NaN/inf"
            raise DataValidationError(
                f"{source}: column {columns[j]!r} has {rows.size} {kinds} values, first at rows "
                f"{_rows(rows)}; expected finite numbers (fill or drop them, or load with "
                f"nan_policy='ffill')"
            )


def find_gaps(timestamps: np.ndarray, step: np.timedelta64 | None = None) -> tuple[np.ndarray, np.timedelta64 | None]:
    """Rows that follow a gap (a spacing larger than `step`, default the most common spacing)."""
    if timestamps is None or len(timestamps) < 2:
        return np.zeros(0, np.int64), None
    step = most_common_step(timestamps) if step is None else step
    if step is None:
        return np.zeros(0, np.int64), None
    deltas = np.diff(timestamps.astype("datetime64[ns]").astype(np.int64))
    return (np.flatnonzero(deltas > step.astype("timedelta64[ns]").astype(np.int64)) + 1).astype(np.int64), step


def describe_gaps(timestamps: np.ndarray, rows: np.ndarray) -> str:
    parts = [f"row {int(r)} ({_stamp(timestamps[r - 1])} -> {_stamp(timestamps[r])})" for r in rows[:_SHOWN]]
    more = f" ... ({len(rows)} gaps in all)" if len(rows) > _SHOWN else ""
    return "; ".join(parts) + more


def apply_gap_policy(series: TimeSeries, policy: str = "report", *, step: np.timedelta64 | None = None) -> TimeSeries:
    """Handle gaps in a regularly spaced series.

    Args:
        series: a series with timestamps (without them there are no gaps to find).
        policy: `"report"` warns (`DataWarning`) and leaves the series as it is; `"split"` makes
            every row after a gap a segment start; `"ffill"` inserts the missing steps, each
            repeating the last row before it, except for bars: flow columns (`FLOW_COLUMNS`:
            volume, trades, ...) are 0 in an inserted bar, and where there is a `close` column
            the inserted bar's open, high, low and close are the last close (a bar in which
            nothing traded); `"error"` raises `DataValidationError`.
        step: the expected spacing; default the most common spacing.

    Returns:
        The series, possibly with new segment starts or filled rows.
    """
    if policy not in GAP_POLICIES:
        raise DataValidationError(f"gap_policy must be one of {GAP_POLICIES}, got {policy!r}")
    rows, step = find_gaps(series.timestamps, step)
    if rows.size == 0:
        return series
    where = f"{series.source}: {rows.size} gaps longer than the usual step {step.astype('timedelta64[s]')}: "
    if policy == "error":
        raise DataValidationError(where + describe_gaps(series.timestamps, rows) + " (gap_policy='error')")
    if policy == "report":
        warnings.warn(
            where + describe_gaps(series.timestamps, rows)
            + ". Recurrent state will run across them; pass gap_policy='split' to reset it there "
            "or 'ffill' to fill them.",
            DataWarning,
            stacklevel=3,
        )
        return series
    if policy == "split":
        segments = np.union1d(series.segments, rows).astype(np.int64)
        return dataclasses.replace(series, segments=segments)  # keeps a subclass's fields (LobsterSeries.values64)
    return _forward_fill_gaps(series, step)


def _forward_fill_gaps(series: TimeSeries, step: np.timedelta64) -> TimeSeries:
    import pandas as pd

    ticks = series.timestamps.astype(np.int64)
    step_ns = int(step.astype("timedelta64[ns]").astype(np.int64))
    off_grid = np.flatnonzero((ticks - ticks[0]) % step_ns != 0)
    if off_grid.size:
        raise DataValidationError(
            f"{series.source}: cannot forward-fill gaps: rows {_rows(off_grid)} are not on the "
            f"{step.astype('timedelta64[s]')} grid that starts at {_stamp(series.timestamps[0])}"
        )
    frame = pd.DataFrame(np.asarray(series.values), index=pd.DatetimeIndex(series.timestamps), columns=series.columns)
    grid = pd.date_range(frame.index[0], frame.index[-1], freq=pd.Timedelta(step_ns, "ns"))
    inserted = ~grid.isin(frame.index)
    filled = frame.reindex(grid).ffill()
    lowered = {str(column).lower(): column for column in frame.columns}
    # Repeating a bar would invent trading: nothing traded in a missing bar, so its flows are 0
    # and its prices all equal the last close.
    for name in FLOW_COLUMNS.intersection(lowered):
        filled.loc[inserted, lowered[name]] = 0.0
    if "close" in lowered:
        for name in {"open", "high", "low"}.intersection(lowered):
            filled.loc[inserted, lowered[name]] = filled.loc[inserted, lowered["close"]]
    # Segment starts the caller had stay where their timestamps landed on the grid.
    segments = np.searchsorted(grid.values, series.timestamps[series.segments])
    return TimeSeries(filled.to_numpy(np.float32), series.columns, grid.values, segments, series.source)


def require_length(series: TimeSeries | int, needed: int, what: str) -> None:
    """Raise unless the series (or a row count) has at least `needed` rows.

    Args:
        series: a `TimeSeries` or a number of rows.
        needed: rows required.
        what: what they are needed for, e.g. `"lookback 336 + horizon 96 in the test split"`.

    Example:

    >>> require_length(1000, 432, "lookback 336 + horizon 96")
    """
    rows = series if isinstance(series, (int, np.integer)) else len(series)
    source = "" if isinstance(series, (int, np.integer)) else f"{series.source}: "
    if rows < needed:
        raise DataValidationError(
            f"{source}series too short: {what} needs at least {needed} rows, got {rows}"
        )
