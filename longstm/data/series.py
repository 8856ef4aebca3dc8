"""`TimeSeries`: the one in-memory representation the rest of longstm consumes.

A series is a float32 matrix of shape `(rows, features)` with column names, optional
timestamps (None for data indexed by event number only) and segment starts: the rows where
the series restarts after a gap, so a recurrent model must reset its state there.

`values` may be a read-only `np.memmap`; nothing here copies it unless a method says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from longstm.errors import DataValidationError


@dataclass
class TimeSeries:
    """A multivariate time series.

    Args:
        values: array of shape `(rows, features)`, float32 (other float/int dtypes are
            converted; a memmap must already be float32 so it is never copied).
        columns: one name per feature column.
        timestamps: `datetime64[ns]` array of length `rows`, or None for event-indexed data.
        segments: int64 array of segment start rows; `segments[0] == 0`. A segment start is
            where recurrent state must be reset (a gap before it). Defaults to `[0]`.
        source: the file or a description, used in error messages.

    Example:

    >>> series = TimeSeries(np.zeros((4, 2), np.float32), ["a", "b"])
    >>> len(series), series.column_index("b")
    (4, 1)
    """

    values: np.ndarray
    columns: list[str]
    timestamps: np.ndarray | None = None
    segments: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    source: str = "<array>"

    def __post_init__(self) -> None:
        values = self.values
        if not isinstance(values, np.ndarray):
            values = np.asarray(values)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise DataValidationError(
                f"{self.source}: values must have shape (rows, features), got shape {values.shape}"
            )
        if values.dtype != np.float32:
            if isinstance(values, np.memmap):
                raise DataValidationError(
                    f"{self.source}: a memory-mapped array must already be float32 (converting "
                    f"it would copy it into memory), got dtype {values.dtype}"
                )
            if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
                raise DataValidationError(
                    f"{self.source}: values must be real numbers, got dtype {values.dtype}"
                )
            values = values.astype(np.float32)
        self.values = values
        self.columns = [str(name) for name in self.columns]
        if len(self.columns) != values.shape[1]:
            raise DataValidationError(
                f"{self.source}: {values.shape[1]} feature columns but {len(self.columns)} "
                f"column names ({self.columns})"
            )
        if len(set(self.columns)) != len(self.columns):
            duplicated = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise DataValidationError(f"{self.source}: duplicate column names {duplicated}")
        if self.timestamps is not None:
            timestamps = np.asarray(self.timestamps)
            if not np.issubdtype(timestamps.dtype, np.datetime64):
                raise DataValidationError(
                    f"{self.source}: timestamps must be datetime64, got dtype {timestamps.dtype}"
                )
            timestamps = timestamps.astype("datetime64[ns]", copy=False)
            if timestamps.shape != (values.shape[0],):
                raise DataValidationError(
                    f"{self.source}: {values.shape[0]} rows but {timestamps.shape[0]} timestamps"
                )
            self.timestamps = timestamps
        segments = np.asarray(self.segments, dtype=np.int64).reshape(-1)
        if segments.size == 0 or segments[0] != 0:
            raise DataValidationError(
                f"{self.source}: segments must start with row 0, got {segments[:5].tolist()}"
            )
        if np.any(np.diff(segments) <= 0) or (values.shape[0] > 0 and segments[-1] >= values.shape[0]):
            raise DataValidationError(
                f"{self.source}: segment starts must be strictly increasing rows below "
                f"{values.shape[0]}, got {segments.tolist()[:10]}"
            )
        self.segments = segments

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.values.shape[1])

    def column_index(self, name: str) -> int:
        """Position of column `name`; the error lists the columns there are."""
        try:
            return self.columns.index(name)
        except ValueError:
            raise DataValidationError(
                f"{self.source}: no column {name!r}; available columns: {', '.join(self.columns)}"
            ) from None

    def column_indices(self, names: Sequence[str]) -> list[int]:
        if isinstance(names, str):
            names = [names]
        return [self.column_index(name) for name in names]

    def select(self, columns: Sequence[str]) -> "TimeSeries":
        """A series with only `columns`, in that order (a copy of those columns, unless the
        selection is one contiguous run of columns, which stays a view)."""
        indices = self.column_indices(columns)
        if indices and indices == list(range(indices[0], indices[0] + len(indices))):
            values = self.values[:, indices[0] : indices[0] + len(indices)]
        else:
            values = self.values[:, indices]
        return TimeSeries(values, [self.columns[i] for i in indices], self.timestamps, self.segments, self.source)

    def slice(self, start: int, stop: int | None = None) -> "TimeSeries":
        """Rows `[start, stop)` as a view; segment starts are shifted (row `start` starts one)."""
        n = len(self)
        start, stop, _ = slice(start, stop).indices(n)
        stop = max(start, stop)
        inside = self.segments[(self.segments > start) & (self.segments < stop)] - start
        segments = np.concatenate([[0], inside]).astype(np.int64)
        timestamps = None if self.timestamps is None else self.timestamps[start:stop]
        return TimeSeries(self.values[start:stop], list(self.columns), timestamps, segments, self.source)

    def segment_bounds(self) -> list[tuple[int, int]]:
        """`[(start, stop), ...]` row ranges of the segments."""
        stops = np.append(self.segments[1:], len(self))
        return [(int(a), int(b)) for a, b in zip(self.segments, stops)]

    def segment_ids(self) -> np.ndarray:
        """Segment number of every row (int64, length `rows`)."""
        ids = np.zeros(len(self), np.int64)
        ids[self.segments[1:]] = 1
        return np.cumsum(ids)

    def step(self) -> np.timedelta64 | None:
        """The most common spacing of the timestamps (None without timestamps or rows)."""
        if self.timestamps is None or len(self) < 2:
            return None
        return most_common_step(self.timestamps)

    def to_pandas(self):
        """A `pandas.DataFrame` (a copy) indexed by the timestamps when there are any."""
        import pandas as pd

        index = None if self.timestamps is None else pd.DatetimeIndex(self.timestamps, name="timestamp")
        return pd.DataFrame(np.asarray(self.values), columns=self.columns, index=index)


def most_common_step(timestamps: np.ndarray) -> np.timedelta64 | None:
    """The mode of the positive differences between consecutive timestamps."""
    deltas = np.diff(timestamps.astype("datetime64[ns]").astype(np.int64))
    deltas = deltas[deltas > 0]
    if deltas.size == 0:
        return None
    values, counts = np.unique(deltas, return_counts=True)
    return np.timedelta64(int(values[np.argmax(counts)]), "ns")
