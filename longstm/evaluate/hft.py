"""The HFT protocol: next-k-bar returns on OHLCV bars, judged as forecasts and as a strategy.

Protocol (every number `longstm eval hft` prints follows it):

1. Rows are split chronologically 70/10/20 (train/validation/test) by row count.
2. At each *decision step* t (a bar close) a predictor forecasts the target
   `y_t = 10_000 · (log close[t+k] − log close[t])`, the next-k-bar log return in basis
   points, for each horizon k (default 1, 5, 15). Its direction is `sign(y_t)`.
3. A predictor sees causal features only (`Bars.features`, the `FEATURE_PIPELINE` of
   `longstm.data.features`: row t uses bars ≤ t), through an `HFTInputs` view cut off after
   the last decision step it must answer for.
4. Training decision steps are those whose whole target lies in the training rows
   (`t + k` below the end of train), so no training target peeks into validation or test.
   Test decision steps are the test rows t with `t + k` inside the series; their lookback
   window may reach back into validation rows (the past is allowed).
5. Metrics on the test decision steps (all of them, overlapping targets for k > 1):
   MSE (bp²), MAE (bp), directional accuracy (zero actuals skipped, zero predictions count
   half, see `hft_metrics`), information coefficient (Spearman). Then the sign strategy of
   `backtest` over the test bars: decisions every k bars, each held k bars, costs in basis
   points per unit of position change; annualised Sharpe, total return, max drawdown,
   turnover. A buy-and-hold row over the same bars gives the market's own figures.
6. Walk-forward (optional): the test steps are cut into blocks of `retrain_every` steps;
   before each block the predictor is refitted from scratch on the `train_window` most
   recent decision steps whose targets ended by the block's first decision step.

A predictor is any object with `predict(inputs) -> (n,)` and optionally
`fit(inputs, targets)`; the baselines live in `longstm.models.hft_baselines`.

Plugging in a trained model: in `fit`, every row of `inputs.features` is a training row, so
a scaler fitted on them is train-only; train on `inputs.windows()` (lookback windows ending
at each decision step) or stream `inputs.features` with carried state, against `targets`
(basis points). In `predict`, return one value per `inputs.decision_steps`, e.g. by
streaming `inputs.features` from row 0 with carried state and reading the outputs at the
decision rows (the rows after the last decision step are not there to peek at). Then
`evaluate_hft(bars, {"mine": MyPredictor, "ar": LinearAR}, config)`; the no-look-ahead test
in tests/evaluate/test_hft.py applies to it unchanged. `longstm.evaluate.trained.TrainedHFTPredictor`
does this for any training config (`longstm eval hft --model zero,configs/hft_lstm.toml`);
`inputs.segment_ids` tells it where the bars' gaps are.

The command around the protocol (`--model` parsing, Rich tables, saved metrics and plots)
is `longstm.cli.eval_hft`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from longstm.data.features import FeaturePipeline
from longstm.data.splits import chronological_split
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate import hft_metrics
from longstm.evaluate.backtest import BacktestResult, hold_positions, run_backtest
from longstm.models.checks import is_positive_int

DEFAULT_HORIZONS = (1, 5, 15)
OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
# The protocol's features, declared as a `longstm.data.features.FeaturePipeline` over the
# OHLCV columns: the `bar` kind gives log_return_bp, range_bp, body_bp, log_volume.
FEATURE_PIPELINE = ({"kind": "bar"},)
FEATURE_COLUMNS = tuple(FeaturePipeline(FEATURE_PIPELINE, OHLCV_COLUMNS).output_columns)
BASIS_POINTS = 10_000.0
MINUTES_PER_YEAR = 365 * 24 * 60


class Predictor(Protocol):
    """What the HFT and LOBSTER protocols need from a model (baselines and trained models)."""

    def predict(self, inputs) -> np.ndarray:
        """One prediction per decision step of `inputs`."""

    # Optional: def fit(self, inputs, targets) -> None


@dataclass(frozen=True)
class Bars:
    """OHLCV bars as float64 arrays (one entry per bar), with their timestamps and segments.

    Build it from a loaded series with `Bars.from_series(load_series(path, kind="ohlcv"))`,
    or directly from arrays (tests, synthetic data).
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timestamps: np.ndarray | None = None
    segment_ids: np.ndarray | None = None
    source: str = "<arrays>"

    def __post_init__(self) -> None:
        n = len(self.close)
        for name in OHLCV_COLUMNS:
            array = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if array.size != n:
                raise DataValidationError(f"{self.source}: column {name!r} has {array.size} rows, close has {n}")
            if not np.all(np.isfinite(array)):
                row = int(np.flatnonzero(~np.isfinite(array))[0])
                raise DataValidationError(f"{self.source}: column {name!r} is NaN or inf at row {row}")
            bad = array < 0 if name == "volume" else array <= 0
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                expected = ">= 0" if name == "volume" else "> 0"
                raise DataValidationError(
                    f"{self.source}: column {name!r} must be {expected}, got {array[row]} at row {row}"
                )
            object.__setattr__(self, name, array)
        segment_ids = np.zeros(n, np.int64) if self.segment_ids is None else np.asarray(self.segment_ids, np.int64)
        if segment_ids.shape != (n,):
            raise DataValidationError(f"{self.source}: {segment_ids.size} segment ids for {n} bars")
        object.__setattr__(self, "segment_ids", segment_ids)

    def __len__(self) -> int:
        return int(self.close.size)

    @classmethod
    def from_series(cls, series) -> "Bars":
        """Bars from a `longstm.data.TimeSeries` with open/high/low/close/volume columns
        (matched without regard to case)."""
        lower = {name.lower(): index for index, name in enumerate(series.columns)}
        missing = [name for name in OHLCV_COLUMNS if name not in lower]
        if missing:
            raise DataValidationError(
                f"{series.source}: the HFT protocol needs columns {', '.join(OHLCV_COLUMNS)}; "
                f"missing {', '.join(missing)} (columns there: {', '.join(series.columns)})"
            )
        values = series.values
        arrays = {name: np.asarray(values[:, lower[name]], dtype=np.float64) for name in OHLCV_COLUMNS}
        return cls(
            **arrays,
            timestamps=series.timestamps,
            segment_ids=series.segment_ids(),
            source=str(series.source),
        )

    def bars_per_year(self, default: float = MINUTES_PER_YEAR) -> float:
        """Bars per year from the most common timestamp spacing (365-day years, as markets
        that trade around the clock); `default` without timestamps."""
        if self.timestamps is None or len(self) < 2:
            return float(default)
        deltas = np.diff(np.asarray(self.timestamps).astype("datetime64[ns]").astype(np.int64))
        deltas = deltas[deltas > 0]
        if deltas.size == 0:
            return float(default)
        values, counts = np.unique(deltas, return_counts=True)
        step_seconds = values[np.argmax(counts)] / 1e9
        return 365 * 24 * 3600 / step_seconds

    def segment_starts(self) -> np.ndarray:
        """The first row of each segment (row 0 included)."""
        return np.flatnonzero(np.diff(self.segment_ids, prepend=-1) != 0)

    def features(self) -> np.ndarray:
        """The protocol's causal features, shape `(bars, 4)`, columns `FEATURE_COLUMNS`:
        `FEATURE_PIPELINE` computed segment by segment (row t uses bars t−1 and t of its
        own segment; the first return of a segment is 0)."""
        pipeline = FeaturePipeline(FEATURE_PIPELINE, OHLCV_COLUMNS, name="HFT features", source=self.source)
        values = np.stack([getattr(self, name) for name in OHLCV_COLUMNS], axis=1)
        return pipeline.compute(values, segments=self.segment_starts())


def forward_return_bp(close: np.ndarray, horizon: int) -> np.ndarray:
    """`10⁴ · log(close[t+k] / close[t])` at every t; NaN where t + k is past the end."""
    log_close = np.log(np.asarray(close, dtype=np.float64))
    target = np.full(log_close.size, np.nan)
    if horizon < log_close.size:
        target[: log_close.size - horizon] = BASIS_POINTS * (log_close[horizon:] - log_close[:-horizon])
    return target


@dataclass(frozen=True)
class HFTInputs:
    """What a predictor may look at: causal features up to the last decision step.

    Attributes:
        features: shape `(rows, F)`, rows `0 .. decision_steps.max()` of `Bars.features` —
            nothing after the last decision step is in it.
        columns: the feature names.
        decision_steps: int array, the rows (bar closes) to predict at.
        lookback: how many rows up to and including t a window holds.
        horizon: k, the bars ahead the target ends.
        segment_ids: the segment number of each row of `features` (gaps in the bars start a
            new segment; decision steps never straddle one), or None when not known.
    """

    features: np.ndarray
    columns: tuple[str, ...]
    decision_steps: np.ndarray
    lookback: int
    horizon: int
    segment_ids: np.ndarray | None = None

    def column(self, name: str) -> int:
        try:
            return self.columns.index(name)
        except ValueError:
            raise DataValidationError(f"no feature column {name!r}; there are {', '.join(self.columns)}") from None

    def windows(self) -> np.ndarray:
        """Shape `(n, lookback, F)`: rows `t−lookback+1 .. t` for each decision step t (a
        strided view, no copy)."""
        all_windows = sliding_window_view(self.features, self.lookback, axis=0)  # (rows-L+1, F, L)
        return np.moveaxis(all_windows, -1, 1)[self.decision_steps - self.lookback + 1]


@dataclass
class HFTConfig:
    """Settings of the HFT protocol.

    Args:
        horizons: forecast horizons k in bars.
        lookback: rows of features a predictor sees per decision step (the AR's lags).
        cost_bps: backtest cost per unit of position change, in basis points.
        fractions: train/validation/test shares of the rows.
        walk_forward: refit the predictor before each block of test steps.
        retrain_every: test decision steps per walk-forward block (default: a tenth of them).
        train_window: training decision steps per walk-forward refit (default: as many as the
            static training split has).
        periods_per_year: bars per year for the Sharpe ratio (default: from the timestamps,
            365-day years).
    """

    horizons: Sequence[int] = DEFAULT_HORIZONS
    lookback: int = 60
    cost_bps: float = 1.0
    fractions: Sequence[float] = (0.7, 0.1, 0.2)
    walk_forward: bool = False
    retrain_every: int | None = None
    train_window: int | None = None
    periods_per_year: float | None = None

    def __post_init__(self) -> None:
        self.horizons = tuple(self.horizons)
        self.fractions = tuple(float(f) for f in self.fractions)
        if not self.horizons or any(not is_positive_int(k) for k in self.horizons):
            raise ConfigError(f"horizons must be positive whole numbers of bars, got {list(self.horizons)}")
        if len(set(self.horizons)) != len(self.horizons):
            raise ConfigError(f"horizons must not repeat, got {list(self.horizons)}")
        if not is_positive_int(self.lookback):
            raise ConfigError(f"lookback must be a positive whole number of bars, got {self.lookback!r}")
        if not math.isfinite(self.cost_bps) or self.cost_bps < 0:
            raise ConfigError(f"cost_bps must be a finite number >= 0, got {self.cost_bps}")
        if len(self.fractions) != 3 or any(f <= 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-9:
            raise ConfigError(
                f"fractions must be three positive shares (train, validation, test) summing to 1, "
                f"got {list(self.fractions)}"
            )
        for name in ("retrain_every", "train_window"):
            value = getattr(self, name)
            if value is not None and not is_positive_int(value):
                raise ConfigError(f"{name} must be a positive whole number of steps, got {value!r}")
        if self.periods_per_year is not None and not self.periods_per_year > 0:
            raise ConfigError(f"periods_per_year must be > 0, got {self.periods_per_year}")


def split_boundaries(n_rows: int, fractions: Sequence[float], lookback: int = 1) -> tuple[int, int]:
    """(end of train, end of validation) rows of `longstm.data.splits.chronological_split`
    (train `int(n · f_train)` rows, test `int(n · f_test)` rows, validation the rest)."""
    split = chronological_split(n_rows, lookback, tuple(fractions))
    return split.train[1], split.val[1]


def decision_steps(bars: Bars, first: int, stop: int, lookback: int, horizon: int) -> np.ndarray:
    """Decision steps t in `[first, stop − horizon)` whose lookback window and target fit
    in the series and in one segment (`t ≥ lookback`, the window's first return and the
    target's last close in the same segment)."""
    first = max(first, lookback)
    last = min(stop, len(bars)) - horizon  # exclusive
    if last <= first:
        return np.zeros(0, dtype=np.int64)
    steps = np.arange(first, last, dtype=np.int64)
    same_segment = bars.segment_ids[steps - lookback] == bars.segment_ids[steps + horizon]
    return steps[same_segment]


@dataclass
class ModelHorizonResult:
    """Everything measured for one predictor at one horizon (on the test split)."""

    model: str
    horizon: int
    decision_steps: np.ndarray
    predictions: np.ndarray
    actuals: np.ndarray
    backtest: BacktestResult
    backtest_first_row: int
    refits: int

    def metrics(self) -> dict[str, float]:
        row = {
            "model": self.model,
            "horizon": self.horizon,
            "n_test": int(self.actuals.size),
            "mse_bp2": hft_metrics.mean_squared_error(self.predictions, self.actuals),
            "mae_bp": float(np.mean(np.abs(self.predictions - self.actuals))),
            "directional_accuracy": hft_metrics.directional_accuracy(self.predictions, self.actuals),
            "information_coefficient": hft_metrics.information_coefficient(self.predictions, self.actuals),
        }
        row.update(self.backtest.summary())
        row["refits"] = self.refits
        return row


@dataclass
class HFTEvaluation:
    """The results of `evaluate_hft`: one `ModelHorizonResult` per (model, horizon), plus a
    buy-and-hold backtest per horizon over the same bars."""

    config: HFTConfig
    data_summary: dict
    results: list[ModelHorizonResult]
    buy_and_hold: dict[int, BacktestResult]
    timestamps: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One metrics dict per (model, horizon), then a buy_and_hold row per horizon."""
        rows = [result.metrics() for result in self.results]
        for horizon, backtest in self.buy_and_hold.items():
            row = {"model": "buy_and_hold", "horizon": horizon, "n_test": int(backtest.positions.size)}
            row.update(backtest.summary())
            rows.append(row)
        return rows

    def to_json_dict(self) -> dict:
        config = asdict(self.config)
        config["horizons"] = list(config["horizons"])
        config["fractions"] = list(config["fractions"])
        return {
            "protocol": "hft",
            "config": config,
            "data": self.data_summary,
            "metrics": [hft_metrics.json_safe(row) for row in self.rows()],
        }


def _inputs(features: np.ndarray, steps: np.ndarray, config: HFTConfig, horizon: int, segment_ids=None) -> HFTInputs:
    cutoff = int(steps.max()) + 1 if steps.size else 0
    segment_ids = None if segment_ids is None else segment_ids[:cutoff]
    return HFTInputs(features[:cutoff], FEATURE_COLUMNS, steps, config.lookback, horizon, segment_ids)


def _fit_predict(factory, features, targets, train_steps, predict_steps, config, horizon, segment_ids=None) -> tuple[np.ndarray, bool]:
    """A fresh predictor, fitted on `train_steps` if it can be; its predictions and whether it was fitted."""
    predictor = factory()
    fitted = hasattr(predictor, "fit")
    if fitted:
        if train_steps.size == 0:
            raise DataValidationError(
                f"no training decision steps for horizon {horizon} with lookback {config.lookback}: "
                f"the training split is too short"
            )
        predictor.fit(_inputs(features, train_steps, config, horizon, segment_ids), targets[train_steps])
    predictions = np.asarray(
        predictor.predict(_inputs(features, predict_steps, config, horizon, segment_ids)), dtype=np.float64
    )
    predictions = predictions.reshape(-1)
    if predictions.size != predict_steps.size:
        raise DataValidationError(
            f"predictor {getattr(predictor, 'name', type(predictor).__name__)} returned "
            f"{predictions.size} predictions for {predict_steps.size} decision steps"
        )
    if not np.all(np.isfinite(predictions)):
        raise DataValidationError(
            f"predictor {getattr(predictor, 'name', type(predictor).__name__)} returned NaN or inf predictions"
        )
    return predictions, fitted


def evaluate_hft(
    bars: Bars,
    predictors: Mapping[str, Callable[[], Predictor]],
    config: HFTConfig | None = None,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> HFTEvaluation:
    """Run the HFT protocol for each predictor and horizon.

    Args:
        bars: the OHLCV bars.
        predictors: name → factory (a class or a zero-argument function) returning a fresh,
            unfitted predictor. A fresh one is made for every horizon and every
            walk-forward refit.
        config: protocol settings (defaults: horizons 1, 5, 15; lookback 60; 1 bp costs).
        on_progress: called with a short description after each (model, horizon).

    Returns:
        An `HFTEvaluation`.

    Example:

    >>> from longstm.models.hft_baselines import LinearAR, Momentum, ZeroReturn
    >>> evaluation = evaluate_hft(bars, {"zero": ZeroReturn, "ar": LinearAR})  # doctest: +SKIP
    >>> evaluation.rows()[0]["directional_accuracy"]                           # doctest: +SKIP
    """
    config = config or HFTConfig()
    n_rows = len(bars)
    train_end, validation_end = split_boundaries(n_rows, config.fractions, config.lookback)
    needed = config.lookback + max(config.horizons) + 2
    if validation_end >= n_rows or train_end < needed or n_rows - validation_end <= max(config.horizons):
        raise DataValidationError(
            f"{bars.source}: {n_rows} bars are too few for lookback {config.lookback} and horizons "
            f"{list(config.horizons)} with fractions {list(config.fractions)} (the training split needs "
            f">= {needed} bars and the test split more than {max(config.horizons)})"
        )
    features = bars.features()
    periods_per_year = config.periods_per_year or bars.bars_per_year()
    results: list[ModelHorizonResult] = []
    buy_and_hold: dict[int, BacktestResult] = {}

    for horizon in config.horizons:
        targets = forward_return_bp(bars.close, horizon)
        train_steps = decision_steps(bars, 0, train_end, config.lookback, horizon)
        test_steps = decision_steps(bars, validation_end, n_rows, config.lookback, horizon)
        if test_steps.size == 0:
            raise DataValidationError(f"{bars.source}: no test decision steps for horizon {horizon}")
        first_row, last_row = int(test_steps[0]), int(test_steps[-1])
        span_closes = bars.close[first_row : last_row + 2]
        buy_and_hold[horizon] = run_backtest(
            span_closes, np.ones(span_closes.size - 1), cost_bps=config.cost_bps, periods_per_year=periods_per_year
        )
        for name, factory in predictors.items():
            if config.walk_forward:
                predictions, refits = _walk_forward(factory, features, targets, bars, test_steps, train_steps.size, config, horizon)
            else:
                predictions, fitted = _fit_predict(
                    factory, features, targets, train_steps, test_steps, config, horizon, bars.segment_ids
                )
                refits = int(fitted)
            signals = np.zeros(last_row - first_row + 1)
            signals[test_steps - first_row] = predictions
            positions = hold_positions(signals, horizon)
            backtest = run_backtest(span_closes, positions, cost_bps=config.cost_bps, periods_per_year=periods_per_year)
            results.append(
                ModelHorizonResult(name, horizon, test_steps, predictions, targets[test_steps], backtest, first_row, refits)
            )
            if on_progress:
                on_progress(f"{name} k={horizon}")

    summary = {
        "source": bars.source,
        "bars": n_rows,
        "train_rows": [0, train_end],
        "validation_rows": [train_end, validation_end],
        "test_rows": [validation_end, n_rows],
        "segments": int(bars.segment_ids[-1] + 1) if n_rows else 0,
        "periods_per_year": periods_per_year,
    }
    if bars.timestamps is not None and n_rows:
        stamps = np.asarray(bars.timestamps)
        summary.update(
            first=str(stamps[0]),
            last=str(stamps[-1]),
            test_first=str(stamps[validation_end]),
        )
    return HFTEvaluation(config, summary, results, buy_and_hold, bars.timestamps)


def _walk_forward(factory, features, targets, bars, test_steps, default_window, config, horizon):
    block = config.retrain_every or max(1, math.ceil(test_steps.size / 10))
    window = config.train_window or default_window
    predictions = np.empty(test_steps.size)
    refits = 0
    for start in range(0, test_steps.size, block):
        block_steps = test_steps[start : start + block]
        first = int(block_steps[0])
        # Training targets must have ended (t + k <= first) when the block's first decision is taken.
        train_steps = decision_steps(bars, max(0, first - horizon - window + 1), first + 1, config.lookback, horizon)
        predictions[start : start + block], fitted = _fit_predict(
            factory, features, targets, train_steps, block_steps, config, horizon, bars.segment_ids
        )
        refits += int(fitted)
    return predictions, refits
