"""The tick protocol: forecasts of the mid Δ ahead on a store of quote series, judged per
series and pooled, and traded across the quoted spread.

Protocol (every number `longstm eval ticks` prints follows it):

1. A store (`longstm data convert`) of series with `bid` and `ask` columns, split at calendar
   instants shared by every series (`longstm.data.panel.CalendarSplit`, exclusive bounds):
   train `t < train_until`, validation up to `val_until`, test from `val_until` to the end.
   Sessions start after a gap longer than `session_gap` (for FX, one hour finds the weekend).
2. The mid is `(bid + ask) / 2` of the last quote that is not crossed (ask < bid is not a
   price: its tick carries the previous valid mid, as the backtest marks it).
3. Target at tick t: `10⁴ · log(mid in force at t + Δ / mid at t)` in basis points, the mid of
   the last tick at or before t + Δ (`longstm.data.targets.time_targets`), computed per
   (series, session, part) stretch: never across a session end, past the data, or — for
   training — past `train_until`.
4. Features read the past only: the last `lags` Δ-returns `r_j = 10⁴ · log(mid(t − (j−1)Δ) /
   mid(t − jΔ))` (mids in force at those instants), all inside t's session.
5. Decision ticks: ticks of a part whose quote is not crossed, whose target is valid and whose
   features reach back `lags · Δ` inside the session. Baselines are fitted per series on the
   training decision ticks only (`longstm.models.hft_baselines`: zero, momentum — the last
   Δ-return —, AR on the last `lags` Δ-returns, mean reversion).
6. Metrics on every test decision tick (overlapping targets): MSE (bp²), the zero forecast's
   MSE and the ratio of the two, directional accuracy, IC (Spearman), count.
7. Backtest per series over its test ticks: the sign of the forecast at a decision tick is
   held until the first tick at or after t + Δ (the holding time has elapsed); the next
   position is taken at the first decision tick from there on (flat in between), so holdings
   never overlap, as `hold_positions` does for bars. `run_quote_backtest` buys at the ask and
   sells at the bid, never at a crossed quote. Sharpe, return and drawdown are measured on the
   equity sampled every `sharpe_bar` (annualised with 365-day years); the spread paid is the
   sum of the half spreads crossed, in bp of equity.
8. Pooled: the forecast metrics over all series' decision ticks together; the backtest as an
   equal-weight book (each sampled period's return is the mean of the series' returns) with
   the sum of the series' P&L, spread and units traded beside it.

Example:

>>> from longstm.models.hft_baselines import LinearAR, ZeroReturn
>>> config = TicksConfig("2014-05-10", "2014-05-13", horizons=("10s", "60s"))
>>> evaluation = evaluate_ticks("runs/ticks.store", {"zero": ZeroReturn, "ar": LinearAR}, config)  # doctest: +SKIP
>>> [row for row in evaluation.rows() if row["series"] == "pooled"]                                # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from longstm.data.panel import CalendarSplit, first_row_at
from longstm.data.store import Store, as_duration, parse_session_rule, unit_duration_ns
from longstm.data.targets import time_targets
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate import hft_metrics
from longstm.evaluate.backtest import BacktestResult, run_quote_backtest, valid_mid
from longstm.models.hft_baselines import RETURN_COLUMN

BASIS_POINTS = 10_000.0
NS_PER_YEAR = 365 * 24 * 3600 * 10**9
POOLED = "pooled"


def parse_horizons(text: str | Sequence[str]) -> tuple[tuple[str, int], ...]:
    """`"10s,60s"` → `(("10s", 10**10), ("60s", 6 * 10**10))`: positive durations with a unit.

    Raises:
        ConfigError: an empty list, a value without a unit, a non-positive or repeated value.
    """
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if str(p).strip()]
    horizons = []
    for part in parts:
        nanoseconds = unit_duration_ns(part)
        if nanoseconds <= 0:
            raise ConfigError(f"--horizons must be comma-separated durations with a unit like 10s,60s,1min; got {part!r}")
        horizons.append((part, nanoseconds))
    if not horizons or len({ns for _, ns in horizons}) != len(horizons):
        raise ConfigError(f"--horizons must be distinct durations like 10s,60s; got {text!r}")
    return tuple(horizons)


@dataclass
class TicksConfig:
    """Settings of the tick protocol.

    Args:
        train_until, val_until: the calendar split (exclusive bounds; UTC unless a zone is named).
        horizons: the Δs, durations like `"10s"`.
        lags: past Δ-returns a predictor sees (the AR's lags, the mean-reversion window).
        session_gap: a longer gap between ticks starts a new session.
        sharpe_bar: the period on which the equity is sampled for Sharpe and pooling.
        series: the series to evaluate (default all in the store).
    """

    train_until: str
    val_until: str
    horizons: Sequence[str] = ("10s", "60s")
    lags: int = 5
    session_gap: str = "1h"
    sharpe_bar: str = "1min"
    series: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.horizons = tuple(label for label, _ in parse_horizons(self.horizons))
        if isinstance(self.lags, bool) or not isinstance(self.lags, (int, np.integer)) or self.lags < 1:
            raise ConfigError(f"lags must be a positive whole number; got {self.lags!r}")
        if int(as_duration(self.sharpe_bar)) <= 0:
            raise ConfigError(f"sharpe_bar must be a positive duration like '1min'; got {self.sharpe_bar!r}")
        try:
            parse_session_rule(self.session_gap)
        except DataValidationError as error:
            raise ConfigError(f"session_gap: {error}") from None
        self.split = CalendarSplit(self.train_until, self.val_until)


@dataclass(frozen=True)
class TickInputs:
    """What a predictor may look at, one row per decision tick (the `HFTInputs` interface).

    Attributes:
        lag_returns: `(n, lags)` past Δ-returns in bp, oldest first (the last is t's own).
        lookback: `lags`.
        horizon: 1 — each row's return is already the return over the forecast's own Δ, so
            `Momentum` (the sum of the last `horizon` returns) forecasts the last Δ-return.
    """

    lag_returns: np.ndarray
    horizon: int = 1
    columns: tuple[str, ...] = (RETURN_COLUMN,)

    @property
    def lookback(self) -> int:
        return int(self.lag_returns.shape[1])

    @property
    def decision_steps(self) -> np.ndarray:
        return np.arange(self.lag_returns.shape[0])

    @property
    def features(self) -> np.ndarray:
        return self.lag_returns[:, -1:]

    def column(self, name: str) -> int:
        if name not in self.columns:
            raise DataValidationError(f"no tick feature column {name!r}; there are {', '.join(self.columns)}")
        return self.columns.index(name)

    def windows(self) -> np.ndarray:
        return self.lag_returns[:, :, None]


@dataclass
class SeriesTicks:
    """One series read from a store: quotes, the valid mid, sessions and split rows."""

    name: str
    stamps: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    crossed: np.ndarray
    mid: np.ndarray
    session_starts: np.ndarray
    train_end: int
    val_end: int

    @classmethod
    def read(cls, store: Store, name: str, split: CalendarSplit, session_gap: str) -> "SeriesTicks":
        series = store.series(name)
        quotes = series.read(0, len(series), ["bid", "ask"])
        bid, ask = quotes[:, 0], quotes[:, 1]
        crossed = series.read(0, len(series), ["crossed"])[:, 0] > 0 if series.has_crossed else ask < bid
        if crossed.all():
            raise DataValidationError(f"{store.path}: series {name!r}: every quote is crossed (ask < bid)")
        mid = valid_mid(bid, ask, crossed)
        train_until, val_until = split.bounds
        return cls(name, series.timestamps(), bid, ask, crossed, mid, series.sessions(session_gap),
                   first_row_at(series, train_until), first_row_at(series, val_until))

    def stretches(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """`(session start, first row, stop row)` of each session's part of rows `[start, stop)`."""
        bounds = np.concatenate([self.session_starts, [len(self.stamps)]])
        out = []
        for s0, s1 in zip(bounds[:-1], bounds[1:]):
            a, b = max(int(s0), start), min(int(s1), stop)
            if b > a:
                out.append((int(s0), a, b))
        return out

    def decisions(self, part: str, horizon_ns: int, lags: int, stop_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(rows, targets_bp, lag_returns_bp)` of the decision ticks of `part` ("train" or "test")."""
        start, stop = (0, self.train_end) if part == "train" else (self.val_end, len(self.stamps))
        rows, targets, lagged = [], [], []
        log_mid = np.log(self.mid)
        for s0, a, b in self.stretches(start, stop):
            cut = part == "train" and b == self.train_end and b < len(self.stamps) and b not in self.session_starts
            values, valid = time_targets(self.stamps[a:b], self.mid[a:b], [horizon_ns], stop_ns=stop_ns if cut else None)
            stamps = self.stamps[s0:b]  # the session's past: features read rows up to t only
            t = self.stamps[a:b]
            ok = valid[:, 0] & ~self.crossed[a:b] & (t - lags * horizon_ns >= stamps[0])
            picked = np.flatnonzero(ok)
            instants = t[picked, None] - horizon_ns * np.arange(lags, -1, -1)[None, :]  # oldest first, t last
            in_force = s0 + np.searchsorted(stamps, instants, side="right") - 1
            in_force[:, -1] = a + picked  # t's own mid, not a later tick that shares its timestamp
            rows.append(a + picked)
            targets.append(BASIS_POINTS * values[picked, 0])
            lagged.append(BASIS_POINTS * np.diff(log_mid[in_force], axis=1))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, lags))
        return np.concatenate(rows), np.concatenate(targets), np.concatenate(lagged)


def hold_ticks(stamps: np.ndarray, decisions: np.ndarray, signs: np.ndarray, horizon_ns: int) -> np.ndarray:
    """Positions wanted at each tick: `signs[i]` from decision tick `decisions[i]` until the first
    tick at or after its time + Δ; the next decision is the first one from that tick on (flat
    in between), so holdings never overlap.

    Example:

    >>> hold_ticks(np.array([0, 1, 2, 3, 4, 5]) * 10**9, np.array([0, 1, 2, 4]), np.array([1.0, -1.0, -1.0, 1.0]), 2 * 10**9)
    array([ 1.,  1., -1., -1.,  1.,  1.])
    """
    wanted = np.zeros(stamps.size)
    i = 0
    while i < decisions.size:
        start = int(decisions[i])
        end = int(np.searchsorted(stamps, stamps[start] + horizon_ns, side="left"))
        wanted[start:end] = signs[i]
        i = int(np.searchsorted(decisions, end, side="left"))
    return wanted


@dataclass
class SeriesResult:
    """One (model, horizon, series): test decisions, predictions, targets and the backtest."""

    model: str
    horizon: str
    series: str
    rows: np.ndarray
    predictions: np.ndarray
    actuals: np.ndarray
    bar_returns: np.ndarray
    total_return: float
    units_traded: float
    spread_paid_bp: float
    predictor: object = None

    @classmethod
    def traded(cls, model: str, horizon: str, series: str, test, predictions: np.ndarray, backtest: BacktestResult,
               bar_returns: np.ndarray, predictor=None) -> "SeriesResult":
        """Keeps the backtest's summary, not its per-tick arrays (they would hold every test tick
        once per model and horizon)."""
        return cls(model, horizon, series, test[0], predictions, test[1], bar_returns, backtest.total_return,
                   float(np.abs(np.diff(backtest.positions, prepend=0.0)).sum()), float(BASIS_POINTS * backtest.costs.sum()),
                   predictor)

    def metrics(self, periods_per_year: float) -> dict:
        return (forecast_metrics(self.predictions, self.actuals) | trading_metrics(self.bar_returns, periods_per_year)
                | {"units_traded": self.units_traded, "spread_paid_bp": self.spread_paid_bp})


def forecast_metrics(predictions: np.ndarray, actuals: np.ndarray) -> dict:
    if actuals.size == 0:
        return {"n": 0}
    mse = hft_metrics.mean_squared_error(predictions, actuals)
    zero = float(np.mean(actuals**2))
    return {
        "n": int(actuals.size), "mse_bp2": mse, "mse_zero_bp2": zero, "mse_ratio": mse / zero if zero > 0 else math.nan,
        "directional_accuracy": hft_metrics.directional_accuracy(predictions, actuals),
        "information_coefficient": hft_metrics.information_coefficient(predictions, actuals),
    }


def trading_metrics(bar_returns: np.ndarray, periods_per_year: float) -> dict:
    """Sharpe, total return and drawdown of the equity's returns on the sampling grid."""
    equity = np.concatenate([[1.0], np.cumprod(1.0 + bar_returns)])
    return {"sharpe": hft_metrics.sharpe_ratio(bar_returns, periods_per_year),
            "total_return": float(equity[-1] - 1.0), "max_drawdown": hft_metrics.max_drawdown(equity)}


@dataclass
class TicksEvaluation:
    """What `evaluate_ticks` returns: a `SeriesResult` per (model, horizon, series), the
    sampling grid of the equity (`grid_ns`) and a summary of the data."""

    config: TicksConfig
    results: list[SeriesResult]
    grid_ns: np.ndarray
    data_summary: dict = field(default_factory=dict)

    @property
    def periods_per_year(self) -> float:
        return NS_PER_YEAR / int(as_duration(self.config.sharpe_bar))

    def pooled_returns(self, model: str, horizon: str) -> np.ndarray:
        """The equal-weight book's return in each sampled period."""
        chosen = [r.bar_returns for r in self.results if r.model == model and r.horizon == horizon]
        return np.mean(chosen, axis=0)

    def rows(self) -> list[dict]:
        """Per (horizon, model): a row per series, then the pooled row."""
        out = []
        for horizon in self.config.horizons:
            models = list(dict.fromkeys(r.model for r in self.results if r.horizon == horizon))
            for model in models:
                chosen = [r for r in self.results if r.model == model and r.horizon == horizon]
                per_series = [result.metrics(self.periods_per_year) for result in chosen]
                out += [{"model": model, "horizon": horizon, "series": r.series} | m for r, m in zip(chosen, per_series)]
                pooled = forecast_metrics(np.concatenate([r.predictions for r in chosen]), np.concatenate([r.actuals for r in chosen]))
                pooled |= trading_metrics(self.pooled_returns(model, horizon), self.periods_per_year)
                pooled["pnl_sum"] = float(sum(r.total_return for r in chosen))
                for key in ("units_traded", "spread_paid_bp"):
                    pooled[key] = float(sum(m[key] for m in per_series))
                out.append({"model": model, "horizon": horizon, "series": POOLED} | pooled)
        return out

    def to_json_dict(self) -> dict:
        config = {k: v for k, v in asdict(self.config).items() if k != "split"}
        config["horizons"] = list(config["horizons"])
        return {"protocol": "ticks", "config": config, "data": self.data_summary,
                "metrics": [hft_metrics.json_safe(row) for row in self.rows()]}


def _fit_predict(factory, name: str, series: str, train, test) -> tuple[np.ndarray, object]:
    predictor = factory()
    if hasattr(predictor, "fit"):
        if train[1].size <= train[2].shape[1]:
            raise DataValidationError(f"series {series!r}: {train[1].size} training decision ticks are too few to fit {name!r}")
        predictor.fit(TickInputs(train[2]), train[1])
    predictions = np.asarray(predictor.predict(TickInputs(test[2])), dtype=np.float64).reshape(-1)
    if predictions.size != test[1].size or not np.all(np.isfinite(predictions)):
        raise DataValidationError(f"predictor {name!r} returned {predictions.size} predictions (finite: "
                                  f"{bool(np.all(np.isfinite(predictions)))}) for {test[1].size} decision ticks of {series!r}")
    return predictions, predictor


def _bar_returns(ticks: SeriesTicks, first: int, backtest: BacktestResult, grid: np.ndarray) -> np.ndarray:
    """The backtest's equity sampled at each grid instant (1.0 before its first tick) → returns."""
    stamps = ticks.stamps[first:]
    index = np.searchsorted(stamps, grid, side="right") - 1
    equity = np.where(index >= 0, backtest.equity[np.maximum(index, 0)], 1.0)
    return equity[1:] / equity[:-1] - 1.0


def frame_lookup(frame: pd.DataFrame) -> Callable[[str, str, np.ndarray], np.ndarray]:
    """A trained model's forecasts from `longstm.train.panel.predict_panel`'s frame (columns
    `series`, `row`, `pred_mid_log_return_<Δ>`, log returns) as `lookup(series, horizon, rows)`
    in bp; NaN at rows it has no forecast for (`evaluate_ticks` counts them and abstains there).
    """
    by_series = {name: part.set_index("row") for name, part in frame.groupby("series")}

    def lookup(series: str, horizon: str, rows: np.ndarray) -> np.ndarray:
        part, column = forecast_column(by_series, series, horizon, "the trained model's")
        return BASIS_POINTS * part[column].reindex(rows).to_numpy(np.float64)

    return lookup


def forecast_column(by_series: Mapping[str, pd.DataFrame], series: str, horizon: str, whose: str) -> tuple[pd.DataFrame, str]:
    """A series' part of a forecast frame and the name of its column for `horizon`.

    Raises:
        DataValidationError: the frame has no such series or column.
    """
    column = f"pred_mid_log_return_{horizon}"
    part = by_series.get(series)
    if part is None or column not in part.columns:
        raise DataValidationError(f"{whose} forecasts have no column {column!r} for series {series!r}")
    return part, column


def _check_split(store: Store, name: str, config: TicksConfig) -> int:
    """A series' last timestamp, once its columns and split are checked (read from the index and
    the timestamps only)."""
    series = store.series(name)
    missing = [c for c in ("bid", "ask") if c not in series.columns]
    if missing:
        raise DataValidationError(f"{store.path}: series {name!r} has no column(s) {missing}; the tick protocol needs bid and ask")
    first, last = series.shards[0]["first"], series.shards[-1]["last"]
    span = f"it spans {pd.Timestamp(first)} to {pd.Timestamp(last)} UTC"
    train_until, val_until = config.split.bounds
    if first >= train_until:
        raise DataValidationError(f"{store.path}: series {name!r} has no row before train_until {config.train_until!r}: {span}")
    if last < val_until:
        raise DataValidationError(f"{store.path}: series {name!r} has no row at or after val_until {config.val_until!r}: {span}")
    return int(last)


def evaluate_ticks(
    store: Store | str,
    predictors: Mapping[str, Callable[[], object]],
    config: TicksConfig,
    *,
    trained: Mapping[str, Callable[[str, str, np.ndarray], np.ndarray]] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> TicksEvaluation:
    """Run the tick protocol for every predictor, horizon and series.

    Args:
        store: a `Store` or its path.
        predictors: name → factory of a fresh, unfitted predictor (`fit(inputs, targets)`
            optional, `predict(inputs)`), made once per (series, horizon).
        config: the protocol's settings.
        trained: name → `lookup(series, horizon, rows)` giving a trained model's forecasts (bp)
            at those test rows (its own training and features; scored the same way); a NaN is a
            row without a forecast: scored as 0 (no view, no trade) and counted in
            `data_summary["abstained"]` (see `frame_lookup`).
        on_progress: called with a short description after each (series, horizon).

    Returns:
        A `TicksEvaluation`.
    """
    store = store if isinstance(store, Store) else Store(store)
    names = list(config.series) if config.series else store.names
    if not names:
        raise DataValidationError(f"{store.path}: the store holds no series")
    horizons = dict(parse_horizons(config.horizons))
    train_until, val_until = config.split.bounds
    bar = int(as_duration(config.sharpe_bar))
    end = max(_check_split(store, name, config) for name in names)  # every series, before any work
    grid = val_until + bar * np.arange(0, (end - val_until) // bar + 2, dtype=np.int64)
    results: list[SeriesResult] = []
    summary = {"store": str(store.path), "series": names, "train_until": config.train_until, "val_until": config.val_until,
               "rows": {}, "sessions": {}, "abstained": {}}
    for name in names:  # one series in memory at a time
        ticks = SeriesTicks.read(store, name, config.split, config.session_gap)
        summary["rows"][name] = [0, ticks.train_end, ticks.val_end, len(ticks.stamps)]
        summary["sessions"][name] = int(ticks.session_starts.size)
        first = int(ticks.val_end + np.argmax(~ticks.crossed[ticks.val_end:]))  # the backtest starts at a valid quote
        for label, horizon_ns in horizons.items():
            train = ticks.decisions("train", horizon_ns, config.lags, train_until)
            test = ticks.decisions("test", horizon_ns, config.lags, val_until)
            if test[0].size == 0:
                raise DataValidationError(f"series {ticks.name!r}: no test decision ticks for horizon {label} with {config.lags} lags")
            forecasts = {name: _fit_predict(factory, name, ticks.name, train, test) for name, factory in predictors.items()}
            for name, lookup in (trained or {}).items():
                predictions = np.asarray(lookup(ticks.name, label, test[0]), dtype=np.float64)
                missing = ~np.isfinite(predictions)
                summary["abstained"].setdefault(name, {})[f"{ticks.name} {label}"] = int(missing.sum())
                forecasts[name] = (np.where(missing, 0.0, predictions), None)  # no forecast: no view, no trade
            for name, (predictions, predictor) in forecasts.items():
                wanted = hold_ticks(ticks.stamps[first:], test[0] - first, np.sign(predictions), horizon_ns)
                # its per-tick Sharpe is not reported (ticks are irregular): the sampled equity's is
                backtest = run_quote_backtest(ticks.bid[first:], ticks.ask[first:], wanted[:-1], crossed=ticks.crossed[first:],
                                              periods_per_year=NS_PER_YEAR / bar)
                results.append(SeriesResult.traded(name, label, ticks.name, test, predictions, backtest,
                                                   _bar_returns(ticks, first, backtest, grid), predictor))
            if on_progress:
                on_progress(f"{ticks.name} Δ={label}")
    return TicksEvaluation(config, results, grid, summary)
