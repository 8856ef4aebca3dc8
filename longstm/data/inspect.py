"""A summary of a data file for `longstm data inspect`: size, time span, resolution, gaps, NaNs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longstm.data.loaders import _read_frame, detect_kind, load_series
from longstm.data.series import TimeSeries
from longstm.data.validation import DataWarning, find_gaps


@dataclass
class ColumnSummary:
    name: str
    nans: int
    minimum: float
    maximum: float
    mean: float


@dataclass
class FileSummary:
    path: str
    kind: str
    rows: int
    columns: list[ColumnSummary]
    first: np.datetime64 | None
    last: np.datetime64 | None
    resolution: np.timedelta64 | None
    event_data: bool
    gaps: int
    largest_gap: np.timedelta64 | None
    gap_rows: list[int]
    segments: int
    warnings: list[str] = field(default_factory=list)

    @property
    def nans(self) -> int:
        return sum(c.nans for c in self.columns)


def inspect_file(path: str | Path, kind: str = "auto", *, timestamp_column: str | None = None,
                 bar: str | None = None, header: bool | None = None) -> FileSummary:
    """Load `path` like `load_series` (NaNs counted, then forward-filled so the rest can be
    checked) and summarise it. Errors (unsorted or duplicate timestamps, non-numeric columns,
    ...) are raised as `DataValidationError`, as `load_series` would.
    """
    path = Path(path)
    resolved = detect_kind(path) if kind == "auto" and path.exists() else kind
    nan_counts: dict[str, int] = {}
    if resolved in ("csv", "ett", "ohlcv", "parquet") and path.exists():
        frame = _read_frame(path, resolved, header)
        nan_counts = {str(c).strip(): int(frame[c].isna().sum()) for c in frame.columns}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        series = load_series(path, kind, timestamp_column=timestamp_column, nan_policy="ffill",
                             gap_policy="report", bar=bar, header=header)
    notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning) and "forward-filled" not in str(w.message)]
    return summarise(series, resolved, nan_counts, notes, event_data=resolved == "lobster" and bar is None)


def summarise(series: TimeSeries, kind: str, nan_counts: dict[str, int] | None = None,
              notes: list[str] | None = None, *, event_data: bool = False) -> FileSummary:
    nan_counts = nan_counts or {}
    columns = []
    for j, name in enumerate(series.columns):
        column = np.asarray(series.values[:, j], dtype=np.float64)
        nans = nan_counts.get(name, int((~np.isfinite(column)).sum()))
        columns.append(ColumnSummary(name, nans, float(np.nanmin(column)), float(np.nanmax(column)), float(np.nanmean(column))))
    stamps = series.timestamps
    gap_rows, step, largest = np.zeros(0, np.int64), None, None
    if stamps is not None and len(stamps) > 1:
        if event_data:
            deltas = np.diff(stamps.astype(np.int64))
            step = np.timedelta64(int(np.median(deltas)), "ns")
            largest = np.timedelta64(int(deltas.max()), "ns")
        else:
            gap_rows, step = find_gaps(stamps)
            if gap_rows.size:
                largest = np.timedelta64(int(np.max(stamps[gap_rows].astype(np.int64) - stamps[gap_rows - 1].astype(np.int64))), "ns")
    return FileSummary(
        path=series.source, kind=kind, rows=len(series), columns=columns,
        first=None if stamps is None else stamps[0], last=None if stamps is None else stamps[-1],
        resolution=step, event_data=event_data, gaps=int(gap_rows.size), largest_gap=largest,
        gap_rows=gap_rows[:5].tolist(), segments=len(series.segments), warnings=notes or [],
    )
