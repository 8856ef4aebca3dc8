"""The ETT protocol: the repeat-last baseline reproduces DLinear's published "Repeat" rows."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from longstm.data import bundled_path, load_series
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate import ErrorAccumulator, evaluate_ett, mae, mse
from longstm.models.baselines import MeanForecaster, RepeatLastForecaster, make_baseline
from tests.conftest import shared_file

HORIZONS = (96, 192, 336, 720)
# Zeng et al., "Are Transformers Effective for Time Series Forecasting?" (AAAI 2023), Table: Repeat, L=336.
DLINEAR_REPEAT = {
    "ETTh1": [(1.295, 0.713), (1.325, 0.733), (1.323, 0.744), (1.339, 0.756)],
    "ETTm1": [(1.214, 0.665), (1.261, 0.690), (1.283, 0.707), (1.319, 0.729)],
}


@pytest.fixture(scope="module")
def etth1():
    return load_series(bundled_path("ETTh1"))


def _check_published(results, name):
    for result, horizon, (published_mse, published_mae) in zip(results, HORIZONS, DLINEAR_REPEAT[name]):
        assert result.horizon == horizon
        assert round(result.mse, 3) == published_mse, (name, horizon, result.mse)
        assert round(result.mae, 3) == published_mae, (name, horizon, result.mae)


def test_repeat_reproduces_dlinear_etth1(etth1):
    results = evaluate_ett(etth1, "repeat", 336, HORIZONS, drop_last_batch=32)
    _check_published(results, "ETTh1")
    # DLinear's test loader: len = 3216 rows - 336 - H + 1 windows, last incomplete batch of 32 dropped.
    assert [r.windows for r in results] == [(3216 - 336 - h + 1) // 32 * 32 for h in HORIZONS]
    assert {r.protocol for r in results} == {"ETTh"}


@pytest.mark.shared
def test_repeat_reproduces_dlinear_ettm1():
    results = evaluate_ett(shared_file("ett/ETTm1.csv"), "repeat", 336, HORIZONS, drop_last_batch=32)
    _check_published(results, "ETTm1")
    assert {r.protocol for r in results} == {"ETTm"}


def test_protocol_matches_a_brute_force_computation(etth1):
    """Materialise the windows the slow way (DLinear's Dataset_ETT_hour logic) and compare."""
    lookback, horizon = 96, 48
    raw = etth1.values.astype(np.float64)
    train = raw[:8640]
    scaled = (raw - train.mean(axis=0)) / train.std(axis=0)
    test = scaled[11520 - lookback : 14400]
    windows = sliding_window_view(test, lookback + horizon, axis=0).transpose(0, 2, 1)
    x, y = windows[:, :lookback], windows[:, lookback:]
    expected_repeat = np.repeat(x[:, -1:], horizon, axis=1)
    expected_mean = np.repeat(x.mean(axis=1, keepdims=True), horizon, axis=1)
    (repeat,) = evaluate_ett(etth1, "repeat", lookback, [horizon])
    (mean,) = evaluate_ett(etth1, "mean", lookback, [horizon])
    assert repeat.windows == mean.windows == len(x)
    assert repeat.mse == pytest.approx(mse(expected_repeat, y), rel=1e-5)
    assert repeat.mae == pytest.approx(mae(expected_repeat, y), rel=1e-5)
    assert mean.mse == pytest.approx(mse(expected_mean, y), rel=1e-5)
    # S: the target column alone; MS: all columns in, target out (same numbers for these baselines).
    (single,) = evaluate_ett(etth1, "repeat", lookback, [horizon], features="S")
    (multi_single,) = evaluate_ett(etth1, "repeat", lookback, [horizon], features="MS")
    ot = etth1.column_index("OT")
    assert single.mse == pytest.approx(mse(expected_repeat[..., ot], y[..., ot]), rel=1e-5)
    assert multi_single.mse == pytest.approx(single.mse, rel=1e-6)


def test_any_object_with_predict_windows_is_scored(etth1):
    class Zeros:
        def __init__(self, horizon):
            self.horizon = horizon

        def predict_windows(self, x):
            return np.zeros((x.shape[0], self.horizon, x.shape[2]), np.float32)

    (zeros,) = evaluate_ett(etth1, Zeros(24), 48, [24], batch_size=100)
    (factory,) = evaluate_ett(etth1, Zeros, 48, [24])
    assert zeros.mse == pytest.approx(factory.mse, rel=1e-9)
    # Predicting 0 on standardised data: MSE is the mean square of the scaled test targets.
    assert 0.5 < zeros.mse < 5.0
    with pytest.raises(ConfigError, match=r"model forecast has shape \(256, 12, 7\), expected \(256, 24, 7\)"):
        evaluate_ett(etth1, Zeros(12), 48, [24])


def test_bad_arguments(etth1):
    with pytest.raises(ConfigError, match="unknown model 'naive'"):
        evaluate_ett(etth1, "naive", 96, [96])
    with pytest.raises(ConfigError, match="features must be one of"):
        evaluate_ett(etth1, "repeat", 96, [96], features="X")
    with pytest.raises(DataValidationError, match="no column 'oil'; available columns: HUFL"):
        evaluate_ett(etth1, "repeat", 96, [96], features="S", target="oil")
    with pytest.raises(DataValidationError, match="give 0 windows of lookback 336 \\+ horizon 3000"):
        evaluate_ett(etth1, "repeat", 336, [3000])
    with pytest.raises(DataValidationError, match="fewer than one batch of drop_last_batch=5000"):
        evaluate_ett(etth1, "repeat", 336, [96], drop_last_batch=5000)


def test_short_series_falls_back_to_the_70_10_20_split(etth1):
    (result,) = evaluate_ett(etth1.slice(0, 2000), "repeat", 48, [24])
    assert result.protocol == "70/10/20"
    assert result.windows == 400 + 48 - 48 - 24 + 1  # test part: last int(0.2 n) rows + lookback


def test_baselines_and_metrics():
    x = np.array([[[1.0, 10.0], [3.0, 20.0]]])
    np.testing.assert_array_equal(RepeatLastForecaster(3).predict_windows(x), [[[3.0, 20.0]] * 3])
    np.testing.assert_array_equal(MeanForecaster(2).predict_windows(x), [[[2.0, 15.0]] * 2])
    np.testing.assert_array_equal(make_baseline("repeat", 1, [1]).predict_windows(x), [[[20.0]]])
    with pytest.raises(ConfigError, match="horizon must be a positive integer, got 0"):
        RepeatLastForecaster(0)
    with pytest.raises(ConfigError, match=r"expects windows of shape \(batch, lookback, features\), got \(2, 2\)"):
        MeanForecaster(1).predict_windows(x[0])
    errors = ErrorAccumulator()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(10, 5)), rng.normal(size=(10, 5))
    for rows in (slice(0, 3), slice(3, 10)):
        errors.update(a[rows], b[rows])
    assert errors.mse == pytest.approx(mse(a, b)) and errors.mae == pytest.approx(mae(a, b))
    with pytest.raises(DataValidationError, match="does not match target shape"):
        mse(a, b[:2])
    with pytest.raises(DataValidationError, match="0 windows"):
        ErrorAccumulator().mse
