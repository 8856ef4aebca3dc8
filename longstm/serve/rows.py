"""Rows the way users hold them -> the NumPy arrays a `StreamingPredictor` steps on.

A user's live rows are a pandas row (`Series`) or `DataFrame`, a dict (column -> value, or
column -> sequence), or a pyarrow `RecordBatch` / `Table`. They are matched by column name
against the run's input columns: extra columns are ignored, order is free, a missing column
is one error naming it and listing what the run needs, and a value that is not a number is one
error naming its column and row. A timestamp column (a column named date/datetime/timestamp/
time/..., datetime values, or a `DatetimeIndex`) is parsed when the run's feature pipeline
needs timestamps; timezone-aware ones are converted to UTC, as training's loader does
(`longstm.data.loaders.parse_timestamps`). An instrument id column (`instrument=`, else one of
`INSTRUMENT_COLUMNS`) routes each row to its instrument's state.

NumPy arrays never come here: the predictor's per-tick NumPy path stays free of pandas.

    rows = read_rows(frame, ["HUFL", "OT"], source="warm_up", needs_timestamps=False)
    rows.values            # (rows, 2) float64, columns in the run's order
"""

from __future__ import annotations

import datetime as dt
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from longstm.data.loaders import TIMESTAMP_NAMES, detect_timestamp_column, parse_timestamps
from longstm.errors import DataValidationError

INSTRUMENT_COLUMNS = ("series", "unique_id", "instrument")  # id columns routed without `instrument=`
TABLE_TYPES = (pd.Series, pd.DataFrame, dict, pa.RecordBatch, pa.Table)


@dataclass
class UserRows:
    """Rows read from a user's container.

    Attributes:
        values: `(rows, columns)` float64, the run's columns in the run's order.
        timestamps: `(rows,)` int64 nanoseconds UTC, or None when not needed.
        instruments: `(rows,)` instrument ids, or None when the rows are not routed.
        single: True for one row given as a pandas `Series` or a dict of scalars.
    """

    values: np.ndarray
    timestamps: np.ndarray | None
    instruments: np.ndarray | None
    single: bool


def is_table(data: Any) -> bool:
    """Whether `data` is a container matched by column name (not a NumPy array or a list)."""
    return isinstance(data, TABLE_TYPES)


def _dict_row(data: dict, columns, needed, needs_timestamps: bool, instrument: str | None) -> UserRows | None:
    """One row given as a dict of plain numbers, without pandas (about 50x faster than a DataFrame
    of one row); None when anything is unusual, so the pandas path gives its precise message."""
    if any(name not in data for name in needed) or (instrument is not None and instrument not in data):
        return None
    row = [data.get(name, 0.0) for name in columns]
    if not all(isinstance(value, numbers.Real) and not isinstance(value, bool) for value in row):
        return None
    stamps = None
    if needs_timestamps:
        key = next((key for key in data if str(key).strip().lower() in TIMESTAMP_NAMES and key not in columns), None)
        value = None if key is None else data[key]
        if not isinstance(value, (str, dt.datetime, np.datetime64)):
            return None
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            return None
        stamp = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp
        stamps = np.array([stamp.as_unit("ns").value], np.int64)
    ids = None if instrument is None else np.array([data[instrument]], object)
    return UserRows(np.array([row], np.float64), stamps, ids, True)


def _as_frame(data, source: str) -> tuple[pd.DataFrame, bool]:
    """`(frame, single)`: the container as a DataFrame; single for one Series row or a dict of scalars."""
    if isinstance(data, pd.DataFrame):
        return data, False
    if isinstance(data, pd.Series):
        frame = pd.DataFrame([data.to_numpy(object)], columns=data.index, index=[data.name])
        return frame.infer_objects(), True
    if isinstance(data, (pa.RecordBatch, pa.Table)):
        return data.to_pandas(), False
    single = all(np.ndim(value) == 0 for value in data.values())
    try:
        frame = pd.DataFrame({key: [value] for key, value in data.items()} if single else data)
    except ValueError as error:
        lengths = {key: int(np.size(value)) for key, value in data.items()}
        raise DataValidationError(f"{source}: the dict's columns must be scalars or sequences of one length; got lengths {lengths} ({error})") from None
    return frame, single


def _numbers(frame: pd.DataFrame, columns: Sequence[str], source: str) -> np.ndarray:
    values = np.empty((len(frame), len(columns)), np.float64)
    for position, name in enumerate(columns):
        column = frame[name]
        if isinstance(column, pd.DataFrame):
            raise DataValidationError(f"{source}: column {name!r} appears {column.shape[1]} times; expected once")
        if pd.api.types.is_numeric_dtype(column):
            values[:, position] = column.to_numpy(np.float64)
            continue
        numbers = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy() & column.notna().to_numpy())
        if bad.size:
            raise DataValidationError(
                f"{source}: column {name!r} row {bad[0]}: expected a number, got {column.iloc[bad[0]]!r}"
            )
        values[:, position] = numbers.to_numpy(np.float64)
    return values


def _timestamps(frame: pd.DataFrame, columns: Sequence[str], source: str) -> np.ndarray:
    """`(rows,)` int64 nanoseconds UTC from a timestamp column, else a datetime index."""
    others = frame.drop(columns=[name for name in columns if name in frame.columns])
    column = detect_timestamp_column(others)
    if column is not None:
        stamps = parse_timestamps(others[column].reset_index(drop=True), source, str(column))
        return stamps.astype("datetime64[ns]").astype(np.int64)
    index = frame.index
    if isinstance(index, pd.DatetimeIndex) or (len(index) and all(isinstance(v, (pd.Timestamp, np.datetime64)) for v in index)):
        stamps = pd.DatetimeIndex(index)
        if stamps.tz is not None:
            stamps = stamps.tz_convert("UTC").tz_localize(None)
        return stamps.to_numpy("datetime64[ns]").astype(np.int64)
    raise DataValidationError(
        f"{source}: the run's feature pipeline needs timestamps, and the rows have none: expected a column named one of "
        f"{list(TIMESTAMP_NAMES)} (or of datetime values) or a DatetimeIndex; got columns {list(frame.columns)}"
    )


def read_rows(
    data,
    columns: Sequence[str],
    *,
    source: str,
    needs_timestamps: bool,
    instrument: str | None = None,
    route: bool = False,
    required: Sequence[str] | None = None,
) -> UserRows:
    """The run's columns of a user's rows, by name, with timestamps and instrument ids where needed.

    Args:
        data: a pandas `Series` (one row) or `DataFrame`, a dict (column -> value or column ->
            sequence), a pyarrow `RecordBatch` or `Table`.
        columns: the raw columns the run reads, in its order.
        source: how messages name the call (e.g. `"update_many"`).
        needs_timestamps: parse a timestamp column (the run's pipeline has time features).
        instrument: the column of instrument ids; None: one of `INSTRUMENT_COLUMNS` when `route`.
        route: look for an instrument column of `INSTRUMENT_COLUMNS` (a predictor of several).
        required: the columns that must be present (default all of `columns`); the others are
            read when present and 0 when absent (input columns no feature reads).

    Returns:
        a `UserRows`.

    Raises:
        DataValidationError: a missing column (named, with the run's columns), a value that is
            not a number (its column and row), no or bad timestamps, no instrument column.
    """
    needed = list(columns) if required is None else list(required)
    if instrument is None and route and isinstance(data, dict):
        instrument = next((name for name in INSTRUMENT_COLUMNS if name in data), None)
    if isinstance(data, dict) and all(np.ndim(value) == 0 for value in data.values()):
        fast = _dict_row(data, columns, needed, needs_timestamps, instrument)
        if fast is not None:
            return fast
    frame, single = _as_frame(data, source)
    frame.columns = [str(name) for name in frame.columns]
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source}: the rows lack the column(s) {missing}; the run reads {needed}; got {list(frame.columns)}"
        )
    unread = [name for name in columns if name not in frame.columns]
    if unread:  # columns no feature reads: any number will do
        frame = frame.assign(**{name: 0.0 for name in unread})
    ids = None
    if instrument is not None and instrument not in frame.columns:
        raise DataValidationError(f"{source}: no instrument column {instrument!r}; got columns {list(frame.columns)}")
    if instrument is None and route:
        instrument = next((name for name in INSTRUMENT_COLUMNS if name in frame.columns), None)
    if instrument is not None:
        ids = frame[instrument].to_numpy(object)
        frame = frame.drop(columns=[instrument])
    values = _numbers(frame, columns, source)
    stamps = _timestamps(frame, columns, source) if needs_timestamps else None
    return UserRows(values, stamps, ids, single)


def parse_stamp(value, source: str, column: str) -> int:
    """One timestamp field (text, a datetime, or an epoch number) as int64 nanoseconds UTC."""
    if isinstance(value, str):
        try:
            value = float(value)  # an epoch in a text file; its unit from its magnitude
        except ValueError:
            pass
    stamps = parse_timestamps(pd.Series([value]), source, column)
    return int(stamps.astype("datetime64[ns]").astype(np.int64)[0])
