"""The ETT long-horizon forecasting protocol (Informer / Autoformer / DLinear).

1. Split chronologically: ETTh train [0, 8640), val [8640 - L, 11520), test [11520 - L, 14400);
   ETTm the same x4; other data 70/10/20 with the same L overlap (`longstm.data.splits`).
2. Fit a `StandardScaler` on the training rows only and scale everything with it.
3. Slide windows of L inputs + H targets over the test part (stride 1, in order) and report
   MSE and MAE over all forecast values, on the scaled data.

`features` picks the variant: `"M"` all columns in, all out; `"S"` the target column only;
`"MS"` all columns in, the target out. DLinear's test loader drops the last incomplete batch
(batch size 32); `drop_last_batch=32` reproduces that, the default scores every window.

The fitted baselines `"linear"` / `"nlinear"` (`longstm.models.linear_baseline`) are fitted
per horizon on every window inside the training rows (scaled by the same train-only scaler)
before the test windows are scored.

A model may implement `predict_at_rows(rows) -> y` instead of (or beside) `predict_windows`:
it gets the row of each window's last input step (`start + lookback - 1`) and forecasts the
next H rows from whatever it keeps of the past up to that row (a trained model streaming the
series with carried state, `longstm.evaluate.ett_trained`). The windows, targets and scores are
the same either way. `prepare_ett` gives the series, split and train-only scaler the
protocol uses, so a model can be trained on exactly its training rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from longstm.data.loaders import load_series
from longstm.data.scaling import StandardScaler
from longstm.data.series import TimeSeries
from longstm.data.splits import Split, chronological_split, ett_split
from longstm.data.windows import WindowIndex, gather_windows
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.metrics import ErrorAccumulator
from longstm.models.baselines import BASELINES, make_baseline
from longstm.models.linear_baseline import LINEAR_BASELINES, LinearForecaster, make_linear_baseline

FEATURE_MODES = ("M", "S", "MS")
SPLITS = ("auto", "etth", "ettm", "ratio")


@dataclass(frozen=True)
class EttResult:
    """Test-set scores for one horizon."""

    horizon: int
    mse: float
    mae: float
    windows: int
    lookback: int
    protocol: str
    features: str


def choose_split(series: TimeSeries, lookback: int, split: str = "auto") -> Split:
    """The ETT split for hourly (`etth`) or 15-minute (`ettm`) data, else 70/10/20 (`ratio`).

    `auto` picks `etth`/`ettm` when the most common step is 1 hour / 15 minutes and the series
    holds the 14400 (x4) rows the protocol needs, and `ratio` otherwise.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "auto":
        step = series.step()
        split = "ratio"
        if step == np.timedelta64(1, "h") and len(series) >= 14400:
            split = "etth"
        elif step == np.timedelta64(15, "m") and len(series) >= 4 * 14400:
            split = "ettm"
    if split == "ratio":
        return chronological_split(len(series), lookback)
    return ett_split(len(series), lookback, freq=split[-1])


def prepare_ett(
    path: str | Path | TimeSeries, lookback: int, features: str = "M", target: str = "OT", split: str = "auto"
) -> tuple[TimeSeries, list[int] | None, Split, StandardScaler]:
    """What the protocol scores on: `(series, target_indices, split, scaler)`.

    `series` holds the input columns of the `features` mode (`"S"`: the target alone);
    `target_indices` are the forecast columns (None: all of them); the scaler is fitted on
    the split's training rows only.
    """
    if features not in FEATURE_MODES:
        raise ConfigError(f"features must be one of {FEATURE_MODES}, got {features!r}")
    series = path if isinstance(path, TimeSeries) else load_series(path, gap_policy="report")
    target_indices = None
    if features == "S":
        series = series.select([target])
    elif features == "MS":
        target_indices = [series.column_index(target)]
    chosen = choose_split(series, lookback, split)
    scaler = StandardScaler(series.columns).fit(series.values[slice(*chosen.train)])
    return series, target_indices, chosen, scaler


def _model_for(model: Any, horizon: int, target_indices: list[int] | None,
               fit_on_train: Callable[[LinearForecaster], LinearForecaster]):
    """The forecaster for one horizon; fitted baselines are fitted with `fit_on_train`."""
    if isinstance(model, str):
        if model in LINEAR_BASELINES:
            return fit_on_train(make_linear_baseline(model, horizon, target_indices))
        if model not in BASELINES:
            raise ConfigError(
                f"unknown model {model!r}: expected a baseline name ({', '.join(BASELINES + LINEAR_BASELINES)}) or an "
                f"object with predict_windows(x) -> y"
            )
        return make_baseline(model, horizon, target_indices)
    if isinstance(model, LinearForecaster) and not model.fitted:
        return fit_on_train(model)
    if (hasattr(model, "predict_windows") or hasattr(model, "predict_at_rows")) and not isinstance(model, type):
        return model
    if callable(model):
        return _model_for(model(horizon), horizon, target_indices, fit_on_train)
    raise ConfigError(f"model must be a baseline name, an object with predict_windows(x), or a factory horizon -> model; got {type(model).__name__}")


def evaluate_ett(
    path: str | Path | TimeSeries,
    model: Any,
    lookback: int,
    horizons: Sequence[int] = (96, 192, 336, 720),
    drop_last_batch: int | None = None,
    features: str = "M",
    target: str = "OT",
    *,
    split: str = "auto",
    batch_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
    part: str = "test",
) -> list[EttResult]:
    """Score a forecaster on the test part of an ETT-format series, one result per horizon.

    Args:
        path: an ETT-format CSV (timestamp column + numeric columns) or a loaded `TimeSeries`.
        model: `"repeat"` or `"mean"`; `"linear"` or `"nlinear"` (LTSF-Linear's maps, fitted by
            least squares on the training rows' windows per horizon, `LinearForecaster`; an
            unfitted `LinearForecaster`, e.g. with another `ridge`, is fitted the same way); or
            any object with `predict_windows(x) -> y` taking scaled windows
            `(batch, lookback, inputs)` and returning `(batch, horizon, targets)`; or a callable
            `horizon -> such an object`.
        lookback: input length L.
        horizons: forecast lengths H.
        drop_last_batch: score only the first `len // n * n` windows, like a test loader with
            batch size n and `drop_last=True` (DLinear used 32). None scores all windows.
        features: `"M"`, `"S"` or `"MS"` (see the module docstring).
        target: the target column for `"S"`/`"MS"`.
        split: `"auto"`, `"etth"`, `"ettm"` or `"ratio"` (see `choose_split`).
        batch_size: windows per model call (does not change the scores).
        on_batch: called with the number of windows after each batch (progress bars).
        part: `"test"`, or `"val"` to score the validation part's windows instead (what a
            choice between models may look at; a forecaster read at precomputed test rows,
            `predict_at_rows`, has no validation forecasts).

    Returns:
        One `EttResult(horizon, mse, mae, windows, ...)` per horizon, in order.
    """
    if part not in ("test", "val"):
        raise ConfigError(f"part must be 'test' or 'val', got {part!r}")
    if drop_last_batch is not None and (isinstance(drop_last_batch, bool) or int(drop_last_batch) < 1):
        raise ConfigError(f"drop_last_batch must be a positive batch size or None, got {drop_last_batch!r}")
    series, target_indices, chosen, scaler = prepare_ett(path, lookback, features, target, split)

    def fit_on_train(forecaster: LinearForecaster) -> LinearForecaster:
        return forecaster.fit(series, lookback, start=chosen.train[0], stop=chosen.train[1], scaler=scaler)

    results = []
    for horizon in horizons:
        rows = chosen.test if part == "test" else chosen.val
        index = WindowIndex(len(series), lookback, int(horizon), start=rows[0], stop=rows[1], segments=series.segments)
        index.require(1, f"{series.source}: {part} part of the {chosen.protocol} split")
        count = len(index) - (len(index) % int(drop_last_batch) if drop_last_batch else 0)
        if count == 0:
            raise DataValidationError(
                f"{series.source}: {len(index)} test windows for horizon {horizon}, fewer than one batch of "
                f"drop_last_batch={drop_last_batch}"
            )
        forecaster = _model_for(model, int(horizon), target_indices, fit_on_train)
        errors = ErrorAccumulator()
        for first in range(0, count, batch_size):
            starts = index.starts(np.arange(first, min(first + batch_size, count)))
            x, y = gather_windows(series.values, starts, lookback, int(horizon), target_columns=target_indices, scaler=scaler)
            if hasattr(forecaster, "predict_at_rows"):
                prediction = np.asarray(forecaster.predict_at_rows(starts + lookback - 1))
            else:
                prediction = np.asarray(forecaster.predict_windows(x))
            if prediction.shape != y.shape:
                raise ConfigError(
                    f"model forecast has shape {prediction.shape}, expected {y.shape} (batch, horizon {horizon}, "
                    f"{y.shape[2]} target columns)"
                )
            errors.update(prediction, y)
            if on_batch is not None:
                on_batch(len(starts))
        results.append(EttResult(int(horizon), errors.mse, errors.mae, count, lookback, chosen.protocol, features))
    return results
