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

from longstm.data.features import FeaturePipeline
from longstm.data.panel_scaling import scaler_from_moments
from longstm.data.store import Store, StoreSeries, as_duration, parse_session_rule, spans
from longstm.data.targets import event_targets, time_targets
from longstm.errors import ConfigError, DataValidationError

PARTS = ("train", "val", "test")
SCALE_BLOCK_ROWS = 1 << 16  # 1 MB of float64 per column read: numpy frees it to the allocator, which keeps it
FIT_BLOCK_ROWS = 1 << 16
WEIGHT = "weight"


def target_name(horizon: str) -> str:
    """The column of the mid's log return over the next `horizon` ("10s" -> "mid_log_return_10s")."""
    return f"mid_log_return_{horizon}"


def event_target_name(steps: int) -> str:
    """The column of the mid's log return over the next `steps` ticks (10 -> "mid_log_return_10ticks")."""
    return f"mid_log_return_{steps}ticks"


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
        for i, a, b, at in spans(self.offsets, start, stop):
            piece = self.pieces[i]
            out[at : at + b - a] = self._read(piece, piece.start + a, piece.start + b)
        return out

    def _read(self, piece: Piece, start: int, stop: int) -> np.ndarray:
        """Rows `[start, stop)` of `piece`'s series (rows of that series), scaled."""
        values = self._series[piece.series].read(start, stop, self.columns)
        if self._scaler is not None:
            mean, scale = self._scaler[piece.series]
            values = (values - mean) / scale
        return values


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
        parse_session_rule(session_gap)
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


class PanelFeatureRows(PanelRows):
    """A panel part as model rows: the pipeline's features, time targets and a loss weight.

    Columns: the pipeline's outputs (the panel's columns without a pipeline), one
    `mid_log_return_<Δ>` per horizon (the log return of the mid, the mean of `mid_columns`,
    from t to the mid in force at t + Δ, see `longstm.data.targets.time_targets`), one
    `mid_log_return_<k>ticks` per event count (to the mid k ticks later), then `weight`. Rows are computed when read, a slice at a time, so memory stays at the slice.

    Features at a row are computed over its session from the `pipeline.memory` rows before it
    (fewer at the session's start): exactly what the pipeline's batch mode gives over the whole
    session. A target is valid only when t + Δ is at or before the last tick of t's stretch, its
    session cut at the split instants (an event target: when tick t + k is in it): no training target reads a row at or after
    `train_until`, none reads across a session end. The weight is the series' weight where every
    target is valid and the row belongs to `part` (not to a validation/test piece's warm-up on
    the past), else 0; `LaneWindows(weight_column=...)` multiplies it into the loss mask.

    Args:
        panel: the `Panel`; its columns are the pipeline's inputs and include `mid_columns`.
        part: "train", "val" or "test".
        pipeline: a `FeaturePipeline` over `panel.columns`, or None (the columns as they are).
        horizons: the target Δs as durations ("10s", "1min").
        events: the event targets' tick counts (1, 10).
        mid_columns: the columns whose mean is the mid (bid and ask).
        scaler: `{series: (mean, scale)}` over the feature and target columns, or None.
        warmup: rows of the past before each validation/test piece (see `Panel.pieces`).
        series_weights: `{series: weight}`; series not named weigh 1.
        series: only these series' pieces (default all of the panel's).
    """

    def __init__(self, panel: Panel, part: str, *, pipeline: FeaturePipeline | None, horizons: Sequence[str],
                 events: Sequence[int] = (), mid_columns: Sequence[str] = ("bid", "ask"), scaler=None, warmup: int = 0,
                 series_weights: dict[str, float] | None = None, series: Sequence[str] | None = None):
        self.panel, self.part, self.pipeline = panel, part, pipeline
        self.horizons = list(horizons)
        self.horizons_ns = np.array([int(as_duration(h)) for h in self.horizons], np.int64)
        self.events = [int(k) for k in events]
        missing = [c for c in mid_columns if c not in panel.columns]
        if missing:
            raise DataValidationError(f"{panel.store.path}: the mid needs column(s) {missing} among {panel.columns}")
        self.mid_index = [panel.columns.index(c) for c in mid_columns]
        self.features = list(pipeline.output_columns) if pipeline is not None else list(panel.columns)
        targets = [target_name(h) for h in self.horizons] + [event_target_name(k) for k in self.events]
        columns = self.features + targets + [WEIGHT]
        pieces = [p for p in panel.pieces(part, warmup) if series is None or p.series in series]
        super().__init__(panel.store, pieces, columns, panel.sessions, scaler)
        self.weights = {name: float((series_weights or {}).get(name, 1.0)) for name in panel.names}
        # stretch ends per series: sessions cut at the split rows
        self._cuts = {name: np.unique(np.concatenate([panel.sessions[name], panel.bounds[name]]))
                      for name in panel.names}

    def _read(self, piece: Piece, start: int, stop: int) -> np.ndarray:
        return self._scaled(self._computed(piece, start, stop)[0], piece)

    def _scaled(self, out: np.ndarray, piece: Piece) -> np.ndarray:
        if self._scaler is not None:
            mean, scale = self._scaler[piece.series]
            out[:, :-1] = (out[:, :-1] - mean) / scale
        return out

    def read_with_validity(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows `[start, stop)` of this source, as `self[start:stop]` gives them, and a
        `(rows, targets)` bool array: where each target is valid (t + Δ, or tick t + k, inside
        t's stretch). The weight column says only where *every* target is; a forecast is
        scored per target where its own is."""
        values = np.empty((max(0, stop - start), self.shape[1]), np.float32)
        valid = np.zeros((len(values), len(self.columns) - len(self.features) - 1), bool)
        for i, a, b, at in spans(self.offsets, start, stop):
            piece = self.pieces[i]
            out, ok = self._computed(piece, piece.start + a, piece.start + b)
            values[at : at + b - a], valid[at : at + b - a] = self._scaled(out, piece), ok
        return values, valid

    def _computed(self, piece: Piece, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled rows `[start, stop)` of `piece`'s series and their per-target validity."""
        data, sessions = self._series[piece.series], self.panel.sessions[piece.series]
        session_start = int(sessions[np.searchsorted(sessions, start, side="right") - 1])
        first = max(session_start, start - (self.pipeline.memory if self.pipeline is not None else 0))
        if self.pipeline is not None and first > session_start:  # counts of events run from the session start
            first -= (first - session_start) % self.pipeline.row_period
        values = data.read(first, stop, self.panel.columns)
        if self.pipeline is not None:
            inside = sessions[(sessions > first) & (sessions < stop)] - first
            values = self.pipeline.compute(values, data.timestamps(first, stop), [0, *inside])
        out = np.empty((stop - start, len(self.columns)), np.float64)
        out[:, : len(self.features)] = values[start - first :]
        valid = np.ones((stop - start, len(self.columns) - len(self.features) - 1), bool)
        cuts = self._cuts[piece.series]
        lo = start
        while lo < stop:
            end = int(cuts[np.searchsorted(cuts, lo, side="right")])  # this stretch ends before `end`
            hi = min(stop, end)
            targets, ok = self._targets(data, lo, hi, end)
            out[lo - start : hi - start, len(self.features) : -1] = targets
            valid[lo - start : hi - start] = ok
            lo = hi
        rows = np.arange(start, stop)
        out[:, -1] = valid.all(axis=1) * (rows >= piece.loss_from) * self.weights[piece.series]
        return out, valid

    def _targets(self, data: StoreSeries, start: int, stop: int, end: int):
        """Targets of rows `[start, stop)` of a stretch ending before row `end`, reading ticks
        ahead until one lies past the farthest t + Δ (a tie at it may still be in force) and the
        largest k ticks are read, or the stretch ends."""
        farthest = int(data.timestamps(stop - 1, stop)[0]) + int(self.horizons_ns.max(initial=0))
        ahead = max(64, stop - start, max(self.events, default=0))
        while True:
            last = min(end, stop + ahead)
            stamps = data.timestamps(start, last)
            if last == end or (stamps[-1] > farthest and last - stop >= max(self.events, default=0)):
                break
            ahead *= 4
        mid = data.read(start, last, [self.panel.columns[i] for i in self.mid_index]).mean(axis=1)
        try:
            parts = [time_targets(stamps, mid, self.horizons_ns, rows=stop - start)] if self.horizons else []
            parts += [event_targets(mid, self.events, rows=stop - start)] if self.events else []
            return np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts], axis=1)
        except DataValidationError as error:  # name the series and the row in it, not the block's row
            bad = int(np.flatnonzero(~(mid > 0))[0]) + start if np.any(~(mid > 0)) else start
            raise DataValidationError(f"{self.panel.store.path}: series {data.name!r} row {bad}: the mid of "
                                      f"{[self.panel.columns[i] for i in self.mid_index]} must be > 0 for a log return") from error

    def moments(self) -> dict[str, np.ndarray]:
        """Per series, `(3, columns)` float64: count, sum and sum of squares of every column but
        the weight, over this part's rows (features) or its rows of weight > 0 (targets); read
        a block at a time."""
        width, n_features = len(self.columns) - 1, len(self.features)
        sums: dict[str, np.ndarray] = {}
        for piece in self.pieces:
            acc = sums.setdefault(piece.series, np.zeros((3, width)))
            for a in range(piece.loss_from, piece.stop, FIT_BLOCK_ROWS):
                block = self._computed(piece, a, min(piece.stop, a + FIT_BLOCK_ROWS))[0]
                counted = np.where(np.arange(width) < n_features, 1.0, (block[:, -1:] > 0).astype(float))
                acc += [counted.sum(0), (block[:, :-1] * counted).sum(0), (block[:, :-1] ** 2 * counted).sum(0)]
        return sums

    def fit_scaler(self, per_series: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Mean and scale of the features, and the scale of the targets (their mean stays 0, so
        a forecast's sign is kept), over this part's rows (see `moments`), per series or pooled."""
        return scaler_from_moments(self.moments(), self.panel.names, per_series, len(self.features), f"{self.panel.store.path}", self.part)


class PanelDataset:
    """Everything a run needs of a panel: its series, split, pipeline, targets and scaler.

    Args:
        store: a `Store` or its path.
        split: a `CalendarSplit`.
        horizons: the time targets' Δs ("10s", "60s").
        events: the event targets' tick counts (the mid's log return over the next k ticks).
        pipeline_specs: `[[pipeline]]` dicts over the store's columns (empty: the columns as they are).
        features: the feature columns the model reads (empty: all).
        series: the series to use (None or empty: all).
        session_gap: see `Panel`.
        mid_columns, series_weights: see `PanelFeatureRows`.
        scaling: "per_series", "pooled" (statistics of the training rows) or None (no scaling).
        scaler: a saved scaler (`record()["scaler"]`) to use instead of fitting one.
        all_series, all_reduce: a multi-worker run, where this process reads only `series` (its
            share) of `all_series`: `all_reduce(array)` sums a float64 array over the processes,
            so the per-series moments and split rows of every series (each filled in by the
            process that reads it) give every process the scaler and record of the whole panel,
            pooled or per series, without opening another process's shards.

    Example:

    >>> data = PanelDataset("ticks.store", CalendarSplit("2014-05-10", "2014-05-13"), ["10s"],
    ...                     [{"kind": "quote"}])
    >>> train = data.rows("train")                # a PanelFeatureRows
    >>> LaneWindows(train, lanes=16, k1=256, segments=train.segments, **data.lane_columns())
    """

    def __init__(self, store: Store | str, split: CalendarSplit, horizons: Sequence[str], pipeline_specs=(), *,
                 events: Sequence[int] = (), features: Sequence[str] = (), series: Sequence[str] | None = None, session_gap: str = "1h",
                 mid_columns: Sequence[str] = ("bid", "ask"), series_weights: dict[str, float] | None = None,
                 scaling: str | None = "per_series", scaler: dict | None = None, all_series: Sequence[str] | None = None,
                 all_reduce=None):
        store = store if isinstance(store, Store) else Store(store)
        if not horizons and not events:
            raise ConfigError(f"{store.path}: a store run forecasts time or event targets; set data.time_targets, e.g. "
                              f"[\"10s\", \"60s\"], or data.event_targets, e.g. [1, 10]")
        names = list(series) if series else store.names
        columns = store.series(names[0]).columns
        self.pipeline = FeaturePipeline(list(pipeline_specs), columns, source=str(store.path)) if pipeline_specs else None
        self.panel = Panel(store, columns, split, session_gap=session_gap, series=names)
        self.horizons, self.events, self.mid_columns = list(horizons), [int(k) for k in events], list(mid_columns)
        self.series_weights = dict(series_weights or {})
        self.all_series = list(all_series or names)
        unknown = sorted(set(self.series_weights) - set(self.all_series))
        if unknown:
            raise ConfigError(f"data.series_weights names series {unknown} that are not used; the series are {self.all_series}")
        self.session_gap, self.scaler = session_gap, None
        train = self.rows("train")
        self.column_names = list(train.columns)
        wanted = list(features) or train.features
        missing = [name for name in wanted if name not in train.features]
        if missing:
            raise ConfigError(f"data.features names columns {missing} that the panel lacks; it has {train.features}")
        self.feature_columns = [self.column_names.index(name) for name in wanted]
        self.target_columns = list(range(len(train.features), len(self.column_names) - 1))
        self.bounds, fit = dict(self.panel.bounds), scaler is None and scaling is not None
        if scaler is not None:
            self.scaler = {name: (np.asarray(s["mean"]), np.asarray(s["scale"])) for name, s in scaler.items()}
        elif fit and all_reduce is None:
            self.scaler = train.fit_scaler(per_series=scaling == "per_series")
        if all_reduce is not None:  # one sum over the processes: every series' split rows and moments
            own, width = train.moments() if fit else {}, len(self.column_names) - 1
            shared = np.zeros((len(self.all_series), 3 + 3 * width))
            for i, name in enumerate(self.all_series):
                if name in self.panel.bounds:
                    shared[i, :3] = self.panel.bounds[name]
                    shared[i, 3:] = own[name].ravel() if name in own else 0.0
            shared = np.asarray(all_reduce(shared), np.float64)
            self.bounds = {name: tuple(int(v) for v in shared[i, :3]) for i, name in enumerate(self.all_series)}
            if fit:
                moments = {name: shared[i, 3:].reshape(3, width) for i, name in enumerate(self.all_series)}
                self.scaler = scaler_from_moments(moments, self.all_series, scaling == "per_series", len(train.features), str(store.path))

    def rows(self, part: str, warmup: int = 0, series: Sequence[str] | None = None) -> PanelFeatureRows:
        """The rows of `part` (of `series` only, when given), validation/test with `warmup` rows of the past (weight 0)."""
        return PanelFeatureRows(self.panel, part, pipeline=self.pipeline, horizons=self.horizons, events=self.events, mid_columns=self.mid_columns,
                                scaler=self.scaler, warmup=warmup, series_weights=self.series_weights, series=series)

    def has(self, part: str) -> bool:
        return bool(self.panel.pieces(part))

    def lane_columns(self) -> dict:
        """The `LaneWindows` arguments that pick inputs, targets (at the row itself) and weights."""
        return dict(feature_columns=self.feature_columns, target_columns=self.target_columns,
                    weight_column=len(self.column_names) - 1, offset=0, horizon=1)

    def record(self) -> dict:
        """What a run directory keeps of the panel (JSON)."""
        names = self.column_names
        return {
            "source": str(self.panel.store.path.resolve()), "store": str(self.panel.store.path.resolve()),
            "split": {"train_until": self.panel.split.train_until, "val_until": self.panel.split.val_until},
            "series": self.all_series, "session_gap": self.session_gap, "columns": names,
            "features": [names[i] for i in self.feature_columns], "targets": [names[i] for i in self.target_columns],
            "time_targets": self.horizons, "event_targets": self.events, "mid": self.mid_columns, "series_weights": self.series_weights,
            "rows": {name: list(bounds) for name, bounds in self.bounds.items()},
            "scaler": None if self.scaler is None else {
                name: {"columns": names[:-1], "mean": mean.tolist(), "scale": scale.tolist()}
                for name, (mean, scale) in self.scaler.items()},
            "feature_pipeline": None if self.pipeline is None else self.pipeline.to_dict(),
        }
