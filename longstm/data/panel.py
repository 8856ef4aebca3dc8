"""A panel of many series from a store, split at calendar instants, laid out for lanes.

Training reads a panel the way it reads one long series: `PanelRows` lays the chosen rows of
every series end to end as one row source for `longstm.data.lanes.LaneWindows`, with a segment
start (a state reset) at every (series, session) boundary, so no window mixes two series or
two sessions and padding stays at one partial window per segment. Rows are read from the
store's memory maps on demand and scaled on the way out (per series or pooled).

Calendar splits use the same instants for every series (the HFT convention) and exclusive
bounds: train is `t < train_until`, validation `train_until <= t < val_until`, test
`t >= val_until`. A part's rows end where its instant is, so no training target (which must
lie inside its segment) reads a row at or after `train_until`. Validation and test pieces may
start `warmup` rows earlier, in the same series, so their state warms up on the past: those
rows only carry a loss mask (`LaneWindows(burn_in=warmup)`).

Example:

>>> store = Store("runs/ticks.store")
>>> split = CalendarSplit("2014-05-10", "2014-05-13")
>>> panel = Panel(store, ["bid", "ask"], split, session_gap="1h")
>>> scaler = panel.fit_scaler(per_series=True)            # train rows only
>>> train = panel.rows("train", scaler)                    # a PanelRows
>>> lanes = LaneWindows(train, lanes=16, k1=256, k2=256, segments=train.segments, target_columns=[0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from longstm.data.store import Store, StoreSeries, as_duration
from longstm.errors import ConfigError, DataValidationError

PARTS = ("train", "val", "test")
SCALE_BLOCK_ROWS = 1 << 20


def _instant(value, key: str) -> int:
    """An instant as int64 nanoseconds UTC; naive strings are UTC."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(f"split.{key} must be a date or time like '2014-05-10' or '2014-05-10T12:00Z'; got {value!r}") from None
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).value


@dataclass(frozen=True)
class CalendarSplit:
    """Exclusive split instants shared by every series (UTC unless the text names a zone).

    Args:
        train_until: the first instant that is not training data.
        val_until: the first instant of the test part (validation is `[train_until, val_until)`).
    """

    train_until: str
    val_until: str

    def __post_init__(self) -> None:
        if self.bounds[0] > self.bounds[1]:
            raise ConfigError(f"split: train_until {self.train_until!r} must not be after val_until {self.val_until!r}")

    @property
    def bounds(self) -> tuple[int, int]:
        return _instant(self.train_until, "train_until"), _instant(self.val_until, "val_until")

    @classmethod
    def from_dict(cls, table: dict) -> "CalendarSplit":
        unknown = sorted(set(table) - {"train_until", "val_until"})
        if unknown or "train_until" not in table or "val_until" not in table:
            raise ConfigError(f"split must be {{train_until = ..., val_until = ...}}; got {table!r}")
        return cls(str(table["train_until"]), str(table["val_until"]))


def first_row_at(series: StoreSeries, instant: int) -> int:
    """The first row of `series` whose timestamp is at or after `instant` (`len(series)` if none)."""
    for index, shard in enumerate(series.shards):
        if shard["last"] >= instant:
            start, stop = int(series.offsets[index]), int(series.offsets[index + 1])
            return start + int(np.searchsorted(series.timestamps(start, stop), instant, side="left"))
    return len(series)


@dataclass(frozen=True)
class Piece:
    """Rows `[start, stop)` of one series; the loss may count from `loss_from` on."""

    series: str
    start: int
    stop: int
    loss_from: int


class PanelRows:
    """Pieces of several series laid end to end: a row source for `LaneWindows`.

    `rows[a:b]` returns float32 `(b - a, columns)`, scaled with the piece's series statistics.
    `segments` are the start rows of every (series, session) stretch; `locate(row)` maps a
    row back to `(series, row in that series)`.
    """

    def __init__(self, store: Store, pieces: Sequence[Piece], columns: Sequence[str], sessions: dict[str, np.ndarray],
                 scaler: dict[str, tuple[np.ndarray, np.ndarray]] | None = None):
        self.pieces = [p for p in pieces if p.stop > p.start]
        self.columns = list(columns)
        self._series = {p.series: store.series(p.series) for p in self.pieces}
        self._scaler = scaler
        lengths = [p.stop - p.start for p in self.pieces]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.shape = (int(self.offsets[-1]), len(self.columns))
        starts = []
        for offset, piece in zip(self.offsets, self.pieces):
            inside = sessions[piece.series]
            inside = inside[(inside > piece.start) & (inside < piece.stop)]
            starts.append(np.concatenate([[piece.start], inside]) - piece.start + offset)
        self.segments = np.concatenate(starts).astype(np.int64) if starts else np.zeros(1, np.int64)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 2

    def locate(self, row: int) -> tuple[str, int]:
        index = int(np.searchsorted(self.offsets, row, side="right") - 1)
        piece = self.pieces[index]
        return piece.series, piece.start + row - int(self.offsets[index])

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"PanelRows supports contiguous row slices only; got {index!r}.")
        start, stop, _ = index.indices(self.shape[0])
        out = np.empty((max(0, stop - start), self.shape[1]), np.float32)
        first = int(np.searchsorted(self.offsets, start, side="right") - 1)
        for i in range(max(first, 0), len(self.pieces)):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            if lo >= stop:
                break
            a, b = max(start, lo), min(stop, hi)
            piece = self.pieces[i]
            values = self._series[piece.series].read(piece.start + a - lo, piece.start + b - lo, self.columns)
            if self._scaler is not None:
                mean, scale = self._scaler[piece.series]
                values = (values - mean) / scale
            out[a - start : b - start] = values
        return out


class Panel:
    """The series of a store, their sessions and their calendar split.

    Args:
        store: a `Store` (or its path).
        columns: the numeric columns to read, in order.
        split: a `CalendarSplit`.
        session_gap: a gap longer than this starts a new session (state reset); `"1h"` finds
            the FX weekend close.
        series: the series to use (default all).
    """

    def __init__(self, store: Store | str, columns: Sequence[str], split: CalendarSplit, *, session_gap: str = "1h",
                 series: Sequence[str] | None = None):
        self.store = store if isinstance(store, Store) else Store(store)
        self.columns = list(columns)
        self.split = split
        names = self.store.names if series is None else list(series)
        as_duration(session_gap)
        self.sessions: dict[str, np.ndarray] = {}
        self.bounds: dict[str, tuple[int, int, int]] = {}
        train_until, val_until = split.bounds
        for name in names:
            data = self.store.series(name)
            missing = [c for c in self.columns if c not in data.columns and c != "crossed"]
            if missing:
                raise DataValidationError(f"{self.store.path}: series {name!r} has no column(s) {missing}; it has {data.columns}")
            self.sessions[name] = data.sessions(session_gap)
            self.bounds[name] = (first_row_at(data, train_until), first_row_at(data, val_until), len(data))
        if not any(b[0] > 0 for b in self.bounds.values()):
            raise DataValidationError(f"{self.store.path}: no series has a row before train_until {split.train_until!r}")

    @property
    def names(self) -> list[str]:
        return list(self.bounds)

    def pieces(self, part: str, warmup: int = 0) -> list[Piece]:
        """Each series' rows of `part`, validation/test starting up to `warmup` rows earlier."""
        if part not in PARTS:
            raise ConfigError(f"part must be one of {PARTS}; got {part!r}")
        pieces = []
        for name, (train_end, val_end, end) in self.bounds.items():
            first, stop = {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, end)}[part]
            if stop > first:
                pieces.append(Piece(name, max(0, first - warmup) if part != "train" else 0, stop, first))
        return pieces

    def fit_scaler(self, per_series: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Mean and scale of the training rows only, per series or pooled over all series
        (float64 sums over blocks of rows, so memory stays at one block)."""
        sums = {}
        for piece in self.pieces("train"):
            data = self.store.series(piece.series)
            count, total, squares = 0, np.zeros(len(self.columns)), np.zeros(len(self.columns))
            for a in range(piece.start, piece.stop, SCALE_BLOCK_ROWS):
                block = data.read(a, min(piece.stop, a + SCALE_BLOCK_ROWS), self.columns)
                count, total, squares = count + len(block), total + block.sum(0), squares + (block * block).sum(0)
            sums[piece.series] = (count, total, squares)
        if not per_series:
            pooled = tuple(sum(s[i] for s in sums.values()) for i in range(3))
            sums = {name: pooled for name in self.names}
        scaler = {}
        for name in self.names:
            count, total, squares = sums.get(name, (0, None, None))
            if count < 2:
                raise DataValidationError(f"{self.store.path}: series {name!r} has {count} training rows; per-series scaling needs 2 or more")
            mean = total / count
            scale = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
            scaler[name] = (mean, np.where(scale > 0, scale, 1.0))
        return scaler

    def rows(self, part: str, scaler=None, warmup: int = 0) -> PanelRows:
        """The row source of `part` (see `pieces`), scaled with `scaler` when given."""
        return PanelRows(self.store, self.pieces(part, warmup), self.columns, self.sessions, scaler)
