"""`load_series`: read a CSV/Parquet/NumPy/LOBSTER file into a validated `TimeSeries`.

Formats:

- `csv` (also `.csv.gz`) and `parquet`: a timestamp column (named, or detected: a column
  called date/datetime/timestamp/time/..., or the first text column that parses as dates)
  and numeric feature columns.
- `ett`: the ETT benchmark CSVs (`date` + seven loads); same as `csv` with `date` required.
- `ohlcv`: bars with open/high/low/close[/volume]; also checks prices are positive, volume
  non-negative, and warns where high/low do not bound open/close.
- `lobster`: a LOBSTER message file (the order-book file beside it is found by name), turned
  into event features or time bars, see `longstm.data.lobster`.
- `npy`: a 2-D float32 `.npy` array, memory-mapped (not loaded), no timestamps.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from longstm.data.series import TimeSeries
from longstm.data.validation import (
    DataWarning,
    _rows,
    apply_gap_policy,
    check_finite,
    check_timestamps_ordered,
)
from longstm.errors import DataValidationError

KINDS = ("auto", "csv", "parquet", "ett", "ohlcv", "lobster", "npy")
NAN_POLICIES = ("error", "ffill")
TIMESTAMP_NAMES = ("date", "datetime", "date_time", "timestamp", "time_stamp", "time", "ts", "open_time")
OHLC = ("open", "high", "low", "close")


def detect_kind(path: Path) -> str:
    """The loader kind a file name implies (`auto` resolution)."""
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".npy"):
        return "npy"
    if re.search(r"_message_\d+\.csv(\.gz)?$", name):
        return "lobster"
    if name.endswith(".csv") or name.endswith(".csv.gz") or name.endswith(".txt"):
        return "csv"
    raise DataValidationError(
        f"{path}: cannot tell the format from the name; expected .csv, .csv.gz, .parquet, .npy or a "
        f"LOBSTER *_message_N.csv, or pass kind= one of {KINDS[1:]}"
    )


def load_series(
    path: str | Path,
    kind: str = "auto",
    *,
    timestamp_column: str | None = None,
    columns: Sequence[str] | None = None,
    gap_policy: str = "report",
    nan_policy: str = "error",
    bar: str | None = None,
    levels: int | None = None,
    header: bool | None = None,
) -> TimeSeries:
    """Read a time-series file into a validated `TimeSeries`.

    Args:
        path: the file (`.csv`, `.csv.gz`, `.parquet`, `.npy`, or a LOBSTER message file).
        kind: `"auto"` (from the file name and columns), `"csv"`, `"parquet"`, `"ett"`,
            `"ohlcv"`, `"lobster"` or `"npy"`.
        timestamp_column: name of the timestamp column; detected when None. Pass `""` for a
            file without timestamps (rows are then indexed by number).
        columns: feature columns to keep, in this order; default all numeric columns.
        gap_policy: `"report"` (warn), `"split"` (segment boundary at each gap), `"ffill"` (fill
            the missing steps with the last row), or `"error"`. Event data (LOBSTER events,
            files without timestamps) has no gaps.
        nan_policy: `"error"` (default) or `"ffill"` (carry the last finite value forward;
            NaN/inf at the very start is still an error).
        bar: LOBSTER only: aggregate events to time bars of this pandas frequency (`"1s"`).
        levels: LOBSTER only: order-book levels in the file (detected from the name).
        header: CSV only. None (default): the first line holds the column names, and a first
            line whose fields are all numbers is an error (it is data: reading it as names would
            silently drop a row and misname every column); False: there is no header, the
            columns are named `column_0`, `column_1`, ...; True: the first line is the header,
            whatever it looks like.

    Returns:
        A `TimeSeries` with float32 values, sorted timestamps and its segment starts.

    Raises:
        DataValidationError: naming file, column and row, for unsorted or duplicate
            timestamps, non-numeric or NaN/inf values, missing columns, or gaps under
            `gap_policy="error"`.
    """
    path = Path(path)
    if kind not in KINDS:
        raise DataValidationError(f"kind must be one of {KINDS}, got {kind!r}")
    if nan_policy not in NAN_POLICIES:
        raise DataValidationError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if not path.exists():
        raise DataValidationError(f"{path}: no such file")
    if kind == "auto":
        kind = detect_kind(path)
    if bar is not None and kind != "lobster":
        raise DataValidationError(f"{path}: bar={bar!r} is only for LOBSTER files (kind='lobster'), this is {kind!r}")
    if kind == "lobster":
        from longstm.data.lobster import load_lobster

        series = load_lobster(path, bar=bar, levels=levels, columns=columns)
        return apply_gap_policy(series, gap_policy) if bar is not None else series
    if kind == "npy":
        return _load_npy(path, columns)

    frame = _read_frame(path, kind, header)
    if kind == "ett" and timestamp_column is None:
        timestamp_column = "date"
    series = frame_to_series(
        frame,
        source=str(path),
        timestamp_column=timestamp_column,
        columns=columns,
        nan_policy=nan_policy,
        gap_policy=gap_policy,
    )
    lowered = [c.lower() for c in series.columns]
    if kind == "ohlcv" or (kind in ("csv", "parquet") and all(name in lowered for name in OHLC)):
        check_ohlcv(series, required=kind == "ohlcv")
    return series


def _is_number(text) -> bool:
    try:
        float(str(text).strip())
    except ValueError:
        return False
    return True


def _read_frame(path: Path, kind: str, header: bool | None = None) -> pd.DataFrame:
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
            if isinstance(frame.index, pd.DatetimeIndex):
                frame = frame.reset_index()
            return frame
        if header is False:
            frame = pd.read_csv(path, header=None)
            frame.columns = [f"column_{i}" for i in range(frame.shape[1])]
            return frame
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError, ImportError) as error:
        raise DataValidationError(f"{path}: cannot read as {kind}: {error}") from error
    if header is None and len(frame.columns) and all(_is_number(name) for name in frame.columns):
        first = ",".join(str(name) for name in frame.columns)
        raise DataValidationError(
            f"{path}: line 1 ({first!r}) holds numbers, not column names; the file has no header? "
            f"load it with header=False (`--no-header`), or add a header line"
        )
    return frame


def detect_timestamp_column(frame: pd.DataFrame) -> str | None:
    """The column that holds timestamps: by name first, then the first text column of dates."""
    for column in frame.columns:
        if str(column).strip().lower() in TIMESTAMP_NAMES:
            return column
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_datetime64_any_dtype(series):
            return column
        if series.dtype == object or pd.api.types.is_string_dtype(series):
            sample = series.dropna().head(50)
            if len(sample) and pd.to_datetime(sample, errors="coerce", format="mixed").notna().all():
                return column
    return None


def parse_timestamps(values: pd.Series, source: str, column: str) -> np.ndarray:
    """Timestamps as naive UTC `datetime64[ns]`; numbers are epochs (unit from magnitude)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        magnitude = float(np.nanmax(np.abs(values.to_numpy(np.float64)))) if len(values) else 0.0
        unit = "ns" if magnitude > 1e17 else "us" if magnitude > 1e14 else "ms" if magnitude > 1e11 else "s"
        parsed = pd.to_datetime(values, unit=unit, errors="coerce")
    else:
        try:
            parsed = pd.to_datetime(values, errors="coerce")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
        if parsed.isna().any() and not values[parsed.isna()].isna().all():
            parsed = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise DataValidationError(
            f"{source}: column {column!r} has {bad.size} values that are not timestamps, first at "
            f"row {bad[0]}: {values.iloc[bad[0]]!r} (rows {_rows(bad)})"
        )
    return parsed.to_numpy("datetime64[ns]")


def frame_to_series(
    frame: pd.DataFrame,
    *,
    source: str,
    timestamp_column: str | None = None,
    columns: Sequence[str] | None = None,
    nan_policy: str = "error",
    gap_policy: str = "report",
    allow_tied_timestamps: bool = False,
) -> TimeSeries:
    """Validate a DataFrame and turn it into a `TimeSeries` (see `load_series`)."""
    frame = frame.rename(columns=lambda c: str(c).strip())
    available = list(frame.columns)
    if timestamp_column is None:
        timestamp_column = detect_timestamp_column(frame)
    elif timestamp_column == "":
        timestamp_column = None
    elif timestamp_column not in frame.columns:
        raise DataValidationError(
            f"{source}: no timestamp column {timestamp_column!r}; available columns: {', '.join(available)}"
        )
    timestamps = None
    if timestamp_column is not None:
        timestamps = parse_timestamps(frame[timestamp_column], source, timestamp_column)
        check_timestamps_ordered(timestamps, source, allow_ties=allow_tied_timestamps, column=timestamp_column)

    if columns is None:
        feature_columns = [c for c in available if c != timestamp_column]
    else:
        columns = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in columns if c not in available]
        if missing:
            raise DataValidationError(
                f"{source}: no column(s) {', '.join(map(repr, missing))}; available columns: {', '.join(available)}"
            )
        feature_columns = columns
    if not feature_columns:
        raise DataValidationError(f"{source}: no feature columns besides the timestamp column {timestamp_column!r}")
    if len(frame) == 0:
        raise DataValidationError(f"{source}: the file has a header but no rows")

    numeric = {}
    for column in feature_columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values):
            values = values.astype(np.float32)
        if not pd.api.types.is_numeric_dtype(values):
            coerced = pd.to_numeric(values, errors="coerce")
            bad = np.flatnonzero((coerced.isna() & values.notna()).to_numpy())
            if bad.size:
                raise DataValidationError(
                    f"{source}: column {column!r} is not numeric: row {bad[0]} holds "
                    f"{values.iloc[bad[0]]!r} ({bad.size} non-numeric values, rows {_rows(bad)}); "
                    f"drop the column (columns=[...]) or fix the file"
                )
            values = coerced
        numeric[column] = values
    data = pd.DataFrame(numeric)
    if nan_policy == "ffill":
        data = data.replace([np.inf, -np.inf], np.nan)
        missing = int(data.isna().sum().sum())
        data = data.ffill()
        filled = missing - int(data.isna().sum().sum())
        if filled:
            warnings.warn(f"{source}: forward-filled {filled} NaN/inf values (nan_policy='ffill')", DataWarning, stacklevel=3)
    values = data.to_numpy(np.float32)
    check_finite(values, feature_columns, source)
    series = TimeSeries(values, feature_columns, timestamps, source=source)
    return apply_gap_policy(series, gap_policy)


def check_ohlcv(series: TimeSeries, *, required: bool = True) -> None:
    """Prices positive, volume non-negative (errors); high/low bound open/close (warning)."""
    lowered = {c.lower(): i for i, c in enumerate(series.columns)}
    missing = [name for name in OHLC if name not in lowered]
    if missing:
        if required:
            raise DataValidationError(
                f"{series.source}: OHLCV data needs columns {', '.join(OHLC)} (any case); missing "
                f"{', '.join(missing)}; available columns: {', '.join(series.columns)}"
            )
        return
    price = {name: np.asarray(series.values[:, lowered[name]]) for name in OHLC}
    for name in OHLC:
        bad = np.flatnonzero(price[name] <= 0)
        if bad.size:
            raise DataValidationError(
                f"{series.source}: column {series.columns[lowered[name]]!r} must be a positive price, row "
                f"{bad[0]} holds {price[name][bad[0]]} ({bad.size} such rows, rows {_rows(bad)})"
            )
    if "volume" in lowered:
        volume = np.asarray(series.values[:, lowered["volume"]])
        bad = np.flatnonzero(volume < 0)
        if bad.size:
            raise DataValidationError(
                f"{series.source}: column {series.columns[lowered['volume']]!r} must be >= 0, row {bad[0]} "
                f"holds {volume[bad[0]]} ({bad.size} such rows, rows {_rows(bad)})"
            )
    top = np.maximum(price["open"], price["close"])
    bottom = np.minimum(price["open"], price["close"])
    bad = np.flatnonzero((price["high"] < top) | (price["low"] > bottom))
    if bad.size:
        warnings.warn(
            f"{series.source}: {bad.size} bars where high/low do not bound open/close, rows {_rows(bad)}",
            DataWarning,
            stacklevel=3,
        )


def _load_npy(path: Path, columns: Sequence[str] | None) -> TimeSeries:
    try:
        values = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataValidationError(f"{path}: cannot read as .npy: {error}") from error
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.dtype != np.float32:
        raise DataValidationError(
            f"{path}: a .npy series must be a 2-D float32 array (it is memory-mapped, not copied), "
            f"got shape {values.shape} dtype {values.dtype}"
        )
    names = [f"x{i}" for i in range(values.shape[1])] if columns is None else list(columns)
    if len(names) != values.shape[1]:
        raise DataValidationError(f"{path}: {values.shape[1]} columns in the array but {len(names)} names given")
    series = TimeSeries(values, names, None, source=str(path))
    check_finite(series.values, series.columns, series.source)
    return series
