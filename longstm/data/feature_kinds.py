"""The kinds of causal feature a `FeaturePipeline` computes (see `longstm.data.features`).

A kind is one `[[pipeline]]` table: its keys, the input columns it reads, the columns it
makes, and two ways to compute them that give the same numbers:

- `segment(values, timestamps)`: all rows of one segment at once (training, evaluation);
- `latest(window, seen, timestamps)`: the newest row of every lane from that lane's last
  `history` input rows and, for the time kinds, their timestamps `(lanes, history)` (serving,
  one tick at a time). `seen` counts the rows of the lane's
  current segment up to and including the newest; rows of the window older than that are
  stale (a previous segment, or the zeros a lane starts with) and must not be read.

Row t of a segment uses rows <= t of that segment only. Where a feature has no past yet (a
return at the first row of a segment) it is 0, so the output keeps the input's rows.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd

from longstm.errors import ConfigError, DataValidationError

BASIS_POINTS = 10_000.0
NANOSECONDS_PER_DAY = 86_400 * 10**9


def seen_mask(seen: np.ndarray, length: int) -> np.ndarray:
    """`(lanes, length)`: True where a window position holds a row of the lane's current segment."""
    age = np.arange(length - 1, -1, -1)  # rows between a window position and the newest row
    return age[None, :] < seen[:, None]


class FeatureKind:
    """One entry of a pipeline. Subclasses set the class attributes and `configure`.

    Args:
        spec: the entry's dict (`kind` and that kind's keys).
        where: how messages name the entry, e.g. `"pipeline[2] (diff)"`.
        input_columns: the columns of the series the pipeline reads, or None to check the
            keys only (a config is checked before its data is loaded).
        source: the data's name, for messages about columns.

    Attributes:
        columns: the input columns it reads, in the order `segment`/`latest` get them.
        outputs: the names of the columns it makes.
        history: input rows up to and including t that row t needs (1: row t alone).
        positive: input columns whose values must be > 0.
    """

    kind: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    needs_timestamps: ClassVar[bool] = False
    # Why `positive` columns must be > 0, and what to do instead (for the error message).
    positive_reason: ClassVar[str] = ""
    positive_advice: ClassVar[str] = ""
    # A kind that counts rows since the segment start (every N events) gives the same values
    # over a read that starts mid-segment only where that read starts a multiple of this many
    # rows after the segment start (`FeaturePipeline.row_period`); 1: it counts nothing.
    row_period: int = 1

    def __init__(self, spec: dict[str, Any], where: str, input_columns: Sequence[str] | None, source: str):
        self.spec = spec
        self.where = where
        self.input_columns = None if input_columns is None else list(input_columns)
        self.source = source
        self.columns: list[str] = []
        self.outputs: list[str] = []
        self.positive: list[str] = []
        self.history = 1
        self.configure()

    def configure(self) -> None:
        raise NotImplementedError

    def segment(self, values: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def latest(self, window: np.ndarray, seen: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def missing_timestamps(self, source: str, what: str) -> Exception:
        """The error for a kind that needs timestamps given data without them."""
        return DataValidationError(f"{source}: feature {self.kind!r} needs timestamps, and {what} has none")

    # ---- key helpers ----------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        raise ConfigError(f"{self.where}: {message}")

    def _check_column(self, name: Any) -> str:
        if not isinstance(name, str):
            self._fail(f"column names must be strings, got {name!r}")
        if self.input_columns is not None and name not in self.input_columns:
            raise DataValidationError(
                f"{self.source}: {self.where}: no column {name!r}; available columns: {', '.join(self.input_columns)}"
            )
        return name

    def _columns(self) -> list[str]:
        """The `columns` key (a name or a list), default every input column."""
        columns = self.spec.get("columns", self.input_columns or [])
        if isinstance(columns, str):
            columns = [columns]
        if not isinstance(columns, (list, tuple)):
            self._fail(f"columns must be a column name or a list of them, got {columns!r}")
        return [self._check_column(name) for name in columns]

    def _positive_int(self, key: str, default: int | None = None) -> int:
        value = self.spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self._fail(f"{key} must be a positive integer, got {value!r}")
        return value


class Raw(FeatureKind):
    """`raw`: `[columns]` the columns as they are (default all)."""

    kind = "raw"
    optional = ("columns",)

    def configure(self):
        self.columns = self._columns()
        self.outputs = list(self.columns)

    def segment(self, values, timestamps):
        return values

    def latest(self, window, seen, timestamps):
        return window[:, -1]


class Diff(FeatureKind):
    """`diff`: `[columns, periods=1]` `x[t] - x[t - periods]` (0 for the first `periods` rows)."""

    kind = "diff"
    optional = ("columns", "periods")
    suffix = "diff"

    def configure(self):
        self.columns = self._columns()
        self.periods = self._positive_int("periods", 1)
        self.history = self.periods + 1
        suffix = self.suffix if self.periods == 1 else f"{self.suffix}_{self.periods}"
        self.outputs = [f"{name}_{suffix}" for name in self.columns]

    def _level(self, values: np.ndarray) -> np.ndarray:
        return values

    def segment(self, values, timestamps):
        return pd.DataFrame(self._level(values)).diff(self.periods).fillna(0.0).to_numpy(np.float64)

    def latest(self, window, seen, timestamps):
        level = self._level(window)
        return np.where((seen > self.periods)[:, None], level[:, -1] - level[:, 0], 0.0)


class LogReturn(Diff):
    """`log_return`: `[columns, periods=1]` `log(x[t]) - log(x[t - periods])`; values must be > 0."""

    kind = "log_return"
    suffix = "log_return"
    positive_reason = "log returns need positive values"
    positive_advice = "use kind='diff' instead"

    def configure(self):
        super().configure()
        self.positive = list(self.columns)

    def _level(self, values):
        return np.log(values)


class RollingVolatility(FeatureKind):
    """`rolling_volatility`: `window, [columns, of="log_return"]` population std of the last
    `window` one-step log returns (or `"diff"`s, or the `"value"`s) up to and including t."""

    kind = "rolling_volatility"
    required = ("window",)
    optional = ("columns", "of")
    positive_reason = LogReturn.positive_reason
    positive_advice = "use of='diff' instead"
    OF = ("log_return", "diff", "value")

    def configure(self):
        self.columns = self._columns()
        self.window = self._positive_int("window")
        self.of = self.spec.get("of", "log_return")
        if self.of not in self.OF:
            self._fail(f"of must be one of {sorted(self.OF)}, got {self.of!r}")
        self.positive = list(self.columns) if self.of == "log_return" else []
        # A one-step change at t reads row t - 1 too.
        self.history = self.window + (self.of != "value")
        self.outputs = [f"{name}_vol_{self.window}" for name in self.columns]

    def segment(self, values, timestamps):
        frame = pd.DataFrame(values)
        if self.of == "log_return":
            frame = np.log(frame).diff().fillna(0.0)
        elif self.of == "diff":
            frame = frame.diff().fillna(0.0)
        return frame.rolling(self.window, min_periods=1).std(ddof=0).to_numpy(np.float64)

    def latest(self, window, seen, timestamps):
        if self.of == "value":
            steps, valid = window, seen_mask(seen, self.window)
        else:
            level = np.log(window) if self.of == "log_return" else window
            steps = level[:, 1:] - level[:, :-1]
            valid = seen_mask(seen, self.window)
            # The step at a segment's first row has no previous row: it is 0, and it counts.
            first = seen_mask(seen - 1, self.window) != valid
            steps = np.where(first[..., None], 0.0, steps)
        return _masked_std(steps, valid)


class RollingMean(FeatureKind):
    """`rolling_mean`: `window, [columns]` mean of the last `window` values up to and including t."""

    kind = "rolling_mean"
    required = ("window",)
    optional = ("columns",)

    def configure(self):
        self.columns = self._columns()
        self.window = self._positive_int("window")
        self.history = self.window
        self.outputs = [f"{name}_mean_{self.window}" for name in self.columns]

    def segment(self, values, timestamps):
        return pd.DataFrame(values).rolling(self.window, min_periods=1).mean().to_numpy(np.float64)

    def latest(self, window, seen, timestamps):
        return _masked_mean(window, seen_mask(seen, self.window))


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of `values (lanes, rows, columns)` where `valid (lanes, rows)`."""
    count = valid.sum(axis=1)[:, None]
    return np.where(valid[..., None], values, 0.0).sum(axis=1) / count


def _masked_std(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Population std over axis 1 where `valid`, as pandas' `rolling(...).std(ddof=0)`."""
    mean = _masked_mean(values, valid)
    deviation = np.where(valid[..., None], values - mean[:, None], 0.0)
    return np.sqrt((deviation**2).sum(axis=1) / valid.sum(axis=1)[:, None])


class TimeOfDay(FeatureKind):
    """`time_of_day`: `tod_sin`, `tod_cos`: the time within the day on the unit circle."""

    kind = "time_of_day"
    needs_timestamps = True
    names = ("tod_sin", "tod_cos")

    def configure(self):
        self.outputs = list(self.names)

    @staticmethod
    def angle(nanoseconds: np.ndarray) -> np.ndarray:
        return 2 * np.pi * (nanoseconds % NANOSECONDS_PER_DAY) / NANOSECONDS_PER_DAY

    def segment(self, values, timestamps):
        angle = self.angle(timestamps)
        return np.stack([np.sin(angle), np.cos(angle)], axis=1)

    def latest(self, window, seen, timestamps):
        return self.segment(None, timestamps[:, -1])


class DayOfWeek(TimeOfDay):
    """`day_of_week`: `dow_sin`, `dow_cos`: the weekday (Monday 0) on the unit circle."""

    kind = "day_of_week"
    names = ("dow_sin", "dow_cos")

    @staticmethod
    def angle(nanoseconds):
        weekday = (nanoseconds // NANOSECONDS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
        return 2 * np.pi * weekday / 7


class Bar(FeatureKind):
    """`bar`: `[open, high, low, close, volume]` (the column names, default those words) ->
    `log_return_bp` = 10⁴·(log close[t] − log close[t−1]) (0 at a segment's first bar),
    `range_bp` = 10⁴·log(high/low), `body_bp` = 10⁴·log(close/open), `log_volume` = log(1 + volume).
    """

    kind = "bar"
    optional = ("open", "high", "low", "close", "volume")
    positive_reason = "bar features need positive prices"
    positive_advice = "check the bars' open/high/low/close columns"
    OUTPUTS = ("log_return_bp", "range_bp", "body_bp", "log_volume")

    def configure(self):
        self.columns = [self._check_column(self.spec.get(key, key)) for key in self.optional]
        self.positive = self.columns[:4]
        self.history = 2
        self.outputs = list(self.OUTPUTS)

    @staticmethod
    def _features(log_return, open_, high, low, close, volume) -> np.ndarray:
        return np.stack(
            [
                BASIS_POINTS * log_return,
                BASIS_POINTS * np.log(high / low),
                BASIS_POINTS * np.log(close / open_),
                np.log1p(volume),
            ],
            axis=1,
        )

    def segment(self, values, timestamps):
        log_return = np.zeros(len(values))
        log_return[1:] = np.diff(np.log(values[:, 3]))
        return self._features(log_return, *values.T)

    def latest(self, window, seen, timestamps):
        log_return = np.where(seen > 1, np.log(window[:, -1, 3]) - np.log(window[:, 0, 3]), 0.0)
        return self._features(log_return, *window[:, -1].T)


class LobInputs(FeatureKind):
    """`lob_inputs`: `[mid="mid_price"]` -> `mid_change_bp`, then every other input column as
    it is. `mid_change_bp` = 10⁴·(mid[t] − mid[t−1]) / mid[t−1] (0 at a segment's first event):
    the level drifts through the day, its changes carry what a direction label depends on."""

    kind = "lob_inputs"
    optional = ("mid",)
    positive_reason = "the mid-price change needs positive mid prices"
    positive_advice = "check the mid-price column"

    def configure(self):
        mid = self.spec.get("mid", "mid_price")
        if not isinstance(mid, str):
            self._fail(f"mid must be a column name, got {mid!r}")
        others = []
        if self.input_columns is not None:
            if mid not in self.input_columns:
                raise DataValidationError(
                    f"{self.source}: {self.where}: the LOBSTER task needs a {mid!r} column, got {', '.join(self.input_columns)}"
                )
            others = [name for name in self.input_columns if name != mid]
        self.columns = [mid, *others]
        self.positive = [mid]
        self.history = 2
        self.outputs = ["mid_change_bp", *others]

    def segment(self, values, timestamps):
        mid = values[:, 0]
        change = np.zeros_like(mid)
        change[1:] = np.diff(mid) / mid[:-1] * 1e4
        return np.column_stack([change, values[:, 1:]])

    def latest(self, window, seen, timestamps):
        previous, current = window[:, 0, 0], window[:, -1, 0]
        change = np.where(seen > 1, (current - previous) / previous * 1e4, 0.0)
        return np.column_stack([change, window[:, -1, 1:]])


class PerColumn(FeatureKind):
    """`per_column`: `transforms, [columns]` one transform per column (default all):
    `"value"` (x[t], named as the column), `"diff"` (x[t] − x[t−1]) or `"log_return"`
    (log(x[t] / x[t−1])), 0 at a segment's first row. Values are not checked: a log return of
    a price <= 0 is NaN or inf (a stream checks its features are finite). This is the form
    `StreamingPredictor` saved before as `{"kind": "causal", "transforms": [...]}`."""

    kind = "per_column"
    required = ("transforms",)
    optional = ("columns",)
    TRANSFORMS = ("value", "diff", "log_return")

    def configure(self):
        self.columns = self._columns()
        transforms = self.spec["transforms"]
        if isinstance(transforms, str) or not isinstance(transforms, (list, tuple)) or not transforms:
            self._fail(f"transforms must be a non-empty list of {self.TRANSFORMS}, got {transforms!r}")
        for index, transform in enumerate(transforms):
            if transform not in self.TRANSFORMS:
                self._fail(f"transform {index} must be one of {self.TRANSFORMS}; got {transform!r}")
        if self.input_columns is not None and len(transforms) != len(self.columns):
            self._fail(f"one transform per column: {len(self.columns)} columns {self.columns}, got {len(transforms)} transforms")
        self.transforms = np.asarray(transforms)
        self.history = 2
        self.outputs = [name if kind == "value" else f"{name}_{kind}" for name, kind in zip(self.columns, transforms)]

    def _apply(self, current, previous, has_previous) -> np.ndarray:
        out = np.array(current, dtype=np.float64)
        log, diff = self.transforms == "log_return", self.transforms == "diff"
        if log.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.log(current[..., log] / previous[..., log])
            out[..., log] = np.where(has_previous[..., None], ratio, 0.0)
        if diff.any():
            out[..., diff] = np.where(has_previous[..., None], current[..., diff] - previous[..., diff], 0.0)
        return out

    def segment(self, values, timestamps):
        previous = np.concatenate([values[:1], values[:-1]], axis=0)
        has_previous = np.arange(len(values)) > 0
        return self._apply(values, previous, has_previous)

    def latest(self, window, seen, timestamps):
        return self._apply(window[:, -1], window[:, 0], seen > 1)


class Quote(FeatureKind):
    """`quote`: `[bid="bid", ask="ask", window=100, times=true]` tick features of a quote stream:
    `mid_return_bp` (log return of the mid since the previous tick, in basis points),
    `spread_bp` (the quoted spread over the mid), and with `times`: `log_dt` (log(1 + seconds
    since the previous tick)) and `log_tick_rate` (log(1 + ticks per second over the last
    `window` ticks)). A crossed quote (ask < bid) gives a negative spread, kept as it is."""

    kind = "quote"
    optional = ("bid", "ask", "window", "times")
    positive_reason = "the mid's log return needs positive bid and ask"
    positive_advice = "check the bid/ask columns"

    def configure(self):
        self.columns = [self._check_column(self.spec.get("bid", "bid")), self._check_column(self.spec.get("ask", "ask"))]
        self.positive = list(self.columns)
        self.window = self._positive_int("window", 100)
        self.times = self.spec.get("times", True)
        if not isinstance(self.times, bool):
            self._fail(f"times must be true or false, got {self.times!r}")
        self.needs_timestamps = self.times
        self.history = self.window + 1 if self.times else 2
        self.outputs = ["mid_return_bp", "spread_bp"] + (["log_dt", "log_tick_rate"] if self.times else [])

    @staticmethod
    def _mid_spread(bid, ask):
        mid = (bid + ask) / 2
        return mid, BASIS_POINTS * (ask - bid) / mid

    def segment(self, values, timestamps):
        mid, spread = self._mid_spread(values[:, 0], values[:, 1])
        ret = np.zeros(len(mid))
        ret[1:] = BASIS_POINTS * np.diff(np.log(mid))
        columns = [ret, spread]
        if self.times:
            seconds = (timestamps - timestamps[0]) / 1e9
            dt = np.zeros(len(mid))
            dt[1:] = np.diff(seconds)
            count = np.minimum(np.arange(len(mid)), self.window)
            elapsed = seconds - seconds[np.arange(len(mid)) - count]
            columns += [np.log1p(dt), np.log1p(count / np.maximum(elapsed, 1e-3))]
        return np.stack(columns, axis=1)

    def latest(self, window, seen, timestamps):
        mid, spread = self._mid_spread(window[:, :, 0], window[:, :, 1])
        has_previous = seen > 1
        columns = [np.where(has_previous, BASIS_POINTS * (np.log(mid[:, -1]) - np.log(mid[:, -2])), 0.0), spread[:, -1]]
        if self.times:
            seconds = (timestamps - timestamps[:, -1:]) / 1e9  # <= 0: relative to the newest tick
            dt = np.where(has_previous, -seconds[:, -2], 0.0)
            count = np.minimum(seen - 1, self.window)
            elapsed = -seconds[np.arange(len(seen)), self.history - 1 - count]
            columns += [np.log1p(dt), np.log1p(count / np.maximum(elapsed, 1e-3))]
        return np.stack(columns, axis=1)


FEATURE_KINDS: dict[str, type[FeatureKind]] = {
    kind.kind: kind
    for kind in (Raw, LogReturn, Diff, RollingVolatility, RollingMean, TimeOfDay, DayOfWeek, Bar, LobInputs, PerColumn, Quote)
}
