"""The HFT protocol: targets, causal features, metrics, baselines, no look-ahead, end to end.

The `longstm eval hft` command (tables, files, plots) is tested in tests/cli/test_eval_hft.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate import hft_metrics
from longstm.evaluate.hft import (
    FEATURE_COLUMNS,
    Bars,
    HFTConfig,
    HFTInputs,
    decision_steps,
    evaluate_hft,
    forward_return_bp,
    split_boundaries,
)
from longstm.models.hft_baselines import LinearAR, Momentum, ZeroReturn
from tests.conftest import shared_file

BASELINES = {"zero": ZeroReturn, "momentum": Momentum, "ar": LinearAR}


def synthetic_bars(n: int = 3000, phi: float = 0.3, seed: int = 0, timestamps: bool = True) -> Bars:
    """1-minute bars whose one-bar log returns follow an AR(1) with coefficient `phi`."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 1e-3, n)
    returns = np.zeros(n)
    for t in range(1, n):
        returns[t] = phi * returns[t - 1] + shocks[t]
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 5e-4, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 5e-4, n))
    stamps = np.datetime64("2025-01-01T00:00") + np.arange(n) * np.timedelta64(1, "m") if timestamps else None
    return Bars(open_, high, low, close, rng.uniform(1, 10, n), timestamps=stamps, source="synthetic")


def perturbed_after(bars: Bars, row: int, seed: int = 99) -> Bars:
    """The same bars up to `row`; every bar after it scaled by random factors (a different future)."""
    rng = np.random.default_rng(seed)
    n = len(bars)
    factor = np.ones(n)
    factor[row + 1 :] = np.exp(rng.normal(0, 0.01, n - row - 1).cumsum())
    volume = bars.volume.copy()
    volume[row + 1 :] *= rng.uniform(0.1, 10, n - row - 1)
    return Bars(
        bars.open * factor, bars.high * factor, bars.low * factor, bars.close * factor, volume,
        timestamps=bars.timestamps, source="perturbed",
    )


class PeekingPredictor:
    """Cheats: uses the feature row after t when it can. The no-look-ahead test must catch it."""

    def predict(self, inputs: HFTInputs) -> np.ndarray:
        rows = np.minimum(inputs.decision_steps + 1, len(inputs.features) - 1)
        return inputs.features[rows, 0]


# ---------------------------------------------------------------- metrics


def test_directional_accuracy_skips_zero_actuals_and_counts_zero_predictions_half():
    predictions = [1.0, -1.0, 0.0, 2.0, -3.0]
    actuals = [1.0, 1.0, 1.0, 0.0, -0.5]
    # Moved steps: hit, miss, abstain (0.5), -, hit.
    assert hft_metrics.directional_accuracy(predictions, actuals) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert hft_metrics.directional_accuracy(np.zeros(4), [1.0, -2.0, 3.0, 0.0]) == 0.5
    assert math.isnan(hft_metrics.directional_accuracy([1.0], [0.0]))


def test_information_coefficient_is_spearman_and_nan_when_constant():
    rng = np.random.default_rng(3)
    predictions, actuals = rng.normal(size=200), rng.normal(size=200)
    assert hft_metrics.information_coefficient(predictions, actuals) == pytest.approx(
        spearmanr(predictions, actuals).statistic, abs=1e-12
    )
    assert hft_metrics.information_coefficient([1.0, 2.0, 3.0], [10.0, 40.0, 90.0]) == pytest.approx(1.0)
    assert math.isnan(hft_metrics.information_coefficient(np.zeros(5), np.arange(5.0)))


@pytest.mark.parametrize(
    "function", [hft_metrics.directional_accuracy, hft_metrics.information_coefficient, hft_metrics.mean_squared_error]
)
def test_metric_input_errors(function):
    with pytest.raises(DataValidationError, match="3 predictions and 2 actuals"):
        function([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(DataValidationError, match="NaN or inf"):
        function([1.0, np.nan], [1.0, 2.0])


# ---------------------------------------------------------------- targets and features


def test_forward_return_is_the_next_k_bar_log_return_in_basis_points():
    close = np.array([100.0, 101.0, 99.0, 102.0])
    np.testing.assert_allclose(forward_return_bp(close, 1)[:3], 1e4 * np.log(close[1:] / close[:-1]))
    target = forward_return_bp(close, 2)
    np.testing.assert_allclose(target[:2], 1e4 * np.log([99.0 / 100.0, 102.0 / 101.0]))
    assert np.isnan(target[2:]).all()


def test_features_are_causal_and_as_documented():
    bars = synthetic_bars(400)
    features = bars.features()
    assert features.shape == (400, len(FEATURE_COLUMNS))
    np.testing.assert_allclose(features[1:, 0], 1e4 * np.diff(np.log(bars.close)))
    assert features[0, 0] == 0.0
    np.testing.assert_allclose(features[:, 1], 1e4 * np.log(bars.high / bars.low))
    for row in (0, 150, 398):
        np.testing.assert_array_equal(perturbed_after(bars, row).features()[: row + 1], features[: row + 1])


def test_first_return_of_each_segment_is_zero_and_no_step_straddles_a_gap():
    bars = synthetic_bars(300)
    segment_ids = np.zeros(300, np.int64)
    segment_ids[120:] = 1
    split = Bars(bars.open, bars.high, bars.low, bars.close, bars.volume, segment_ids=segment_ids)
    assert split.features()[120, 0] == 0.0
    steps = decision_steps(split, 0, 300, lookback=10, horizon=5)
    # Window t-10..t and target t..t+5 inside one segment.
    assert not np.any((steps - 10 < 120) & (steps + 5 >= 120))
    assert steps.min() == 10 and 114 in steps and 115 not in steps and 130 in steps and 129 not in steps


def test_across_a_gap_in_the_test_split_nothing_is_predicted_or_held():
    bars = synthetic_bars(3000)
    segment_ids = (np.arange(3000) >= 2600).astype(np.int64)  # a gap before row 2600 (test starts at 2400)
    gapped = Bars(bars.open, bars.high, bars.low, bars.close, bars.volume, timestamps=bars.timestamps,
                  segment_ids=segment_ids)
    evaluation = evaluate_hft(gapped, BASELINES, HFTConfig(horizons=(1, 5), lookback=30))
    for result in evaluation.results:
        steps = result.decision_steps
        assert not np.any((steps - 30 < 2600) & (steps + result.horizon >= 2600))
        # Flat over the bar that crosses the gap and until a full lookback follows it.
        first = result.backtest_first_row
        assert (result.backtest.positions[2599 - first : 2630 - first] == 0).all()
        assert np.abs(result.backtest.positions[2630 - first :]).sum() > 0 or result.model == "zero"


def test_split_boundaries_are_70_10_20_by_rows_as_the_data_layer_splits():
    assert split_boundaries(1000, (0.7, 0.1, 0.2)) == (700, 800)
    assert split_boundaries(1001, (0.7, 0.1, 0.2)) == (700, 801)  # test gets int(0.2 n) rows


def test_inputs_windows_are_the_lookback_rows_ending_at_each_step():
    features = np.arange(40.0).reshape(20, 2)
    inputs = HFTInputs(features, ("a", "b"), np.array([3, 7, 19]), lookback=4, horizon=1)
    windows = inputs.windows()
    assert windows.shape == (3, 4, 2)
    np.testing.assert_array_equal(windows[1], features[4:8])
    np.testing.assert_array_equal(windows[2], features[16:20])


# ---------------------------------------------------------------- baselines


def test_momentum_predicts_the_last_k_bar_log_return():
    bars = synthetic_bars(200)
    features = bars.features()
    steps = np.array([20, 50, 199])
    for horizon in (1, 5, 15):
        inputs = HFTInputs(features, FEATURE_COLUMNS, steps, lookback=20, horizon=horizon)
        expected = 1e4 * np.log(bars.close[steps] / bars.close[steps - horizon])
        np.testing.assert_allclose(Momentum().predict(inputs), expected, rtol=1e-9)


def test_linear_ar_recovers_exact_coefficients_and_ridge_shrinks_them():
    rng = np.random.default_rng(5)
    features = np.column_stack([rng.normal(size=2000), np.zeros(2000), np.zeros(2000), np.zeros(2000)])
    inputs = HFTInputs(features, FEATURE_COLUMNS, np.arange(9, 2000), lookback=10, horizon=1)
    true_coefficients = rng.normal(size=10)
    targets = inputs.windows()[:, :, 0] @ true_coefficients + 0.7
    model = LinearAR()
    model.fit(inputs, targets)
    np.testing.assert_allclose(model.coefficients, true_coefficients, atol=1e-10)
    assert model.intercept == pytest.approx(0.7, abs=1e-10)
    np.testing.assert_allclose(model.predict(inputs), targets, atol=1e-9)
    heavy = LinearAR(ridge=1e9)
    heavy.fit(inputs, targets)
    assert np.abs(heavy.coefficients).max() < 1e-3
    assert heavy.intercept == pytest.approx(targets.mean(), abs=1e-2)
    short = LinearAR(lags=3)
    short.fit(inputs, targets)
    assert short.coefficients.shape == (3,)


@pytest.mark.parametrize("kwargs, message", [({"ridge": -1.0}, "ridge must be a finite number >= 0"), ({"lags": 0}, "lags must be a positive integer")])
def test_linear_ar_argument_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LinearAR(**kwargs)


# ---------------------------------------------------------------- the protocol


def test_protocol_on_synthetic_ar_returns():
    bars = synthetic_bars(4000, phi=0.3)
    evaluation = evaluate_hft(bars, BASELINES, HFTConfig(lookback=20, cost_bps=0.5))
    rows = {(row["model"], row["horizon"]): row for row in evaluation.rows()}
    train_end, validation_end = split_boundaries(4000, (0.7, 0.1, 0.2))
    for horizon in (1, 5, 15):
        assert rows["zero", horizon]["n_test"] == 4000 - validation_end - horizon
        assert rows["zero", horizon]["directional_accuracy"] == 0.5
        assert math.isnan(rows["zero", horizon]["information_coefficient"])
        assert rows["zero", horizon]["turnover"] == 0.0
        zero = next(r for r in evaluation.results if r.model == "zero" and r.horizon == horizon)
        assert rows["zero", horizon]["mse_bp2"] == pytest.approx(np.mean(zero.actuals**2))
    # With phi = 0.3 the next bar is partly predictable from the last one.
    assert rows["ar", 1]["mse_bp2"] < 0.97 * rows["zero", 1]["mse_bp2"]
    assert rows["ar", 1]["directional_accuracy"] > 0.55
    assert rows["momentum", 1]["information_coefficient"] > 0.2
    assert rows["ar", 1]["sharpe"] > 0 and rows["ar", 1]["refits"] == 1
    # Buy and hold over the test bars earns exactly the market's move, less one entry cost
    # taken from the first bar's return.
    closes, first = bars.close, validation_end
    first_bar = closes[first + 1] / closes[first]
    assert rows["buy_and_hold", 1]["total_return"] == pytest.approx(
        (first_bar - 0.5e-4) / first_bar * closes[4000 - 1] / closes[first] - 1, rel=1e-9
    )


@pytest.mark.parametrize("walk_forward", [False, True])
def test_no_prediction_feature_or_position_depends_on_the_future(walk_forward):
    bars = synthetic_bars(3000)
    config = HFTConfig(horizons=(1, 5), lookback=30, walk_forward=walk_forward, retrain_every=97)
    base = evaluate_hft(bars, BASELINES, config)
    for row in (2500, 2811):  # inside the test split (it starts at 2400)
        changed = evaluate_hft(perturbed_after(bars, row), BASELINES, config)
        for before, after in zip(base.results, changed.results):
            known = before.decision_steps <= row
            assert known.sum() > 50
            np.testing.assert_array_equal(after.predictions[known], before.predictions[known])
            assert not np.array_equal(after.predictions[~known], before.predictions[~known]) or before.model == "zero"
            # Positions held over (t, t+1] for t <= row were decided by then.
            held = row - before.backtest_first_row + 1
            np.testing.assert_array_equal(after.backtest.positions[:held], before.backtest.positions[:held])
            np.testing.assert_array_equal(after.backtest.equity[:held], before.backtest.equity[:held])


def test_the_look_ahead_check_catches_a_predictor_that_peeks():
    bars = synthetic_bars(1500)
    config = HFTConfig(horizons=(1,), lookback=10)
    base = evaluate_hft(bars, {"peek": PeekingPredictor}, config)
    changed = evaluate_hft(perturbed_after(bars, 1300), {"peek": PeekingPredictor}, config)
    known = base.results[0].decision_steps <= 1300
    assert not np.array_equal(base.results[0].predictions[known], changed.results[0].predictions[known])


def test_walk_forward_refits_only_on_targets_that_ended_before_each_block():
    seen = []

    class Recorder(LinearAR):
        def fit(self, inputs, targets):
            seen.append((int(inputs.decision_steps.max()), len(inputs.features)))
            super().fit(inputs, targets)

        def predict(self, inputs):
            seen.append(("predict", int(inputs.decision_steps.min())))
            return super().predict(inputs)

    bars = synthetic_bars(2000)
    config = HFTConfig(horizons=(5,), lookback=20, walk_forward=True, retrain_every=50, train_window=500)
    evaluation = evaluate_hft(bars, {"ar": Recorder}, config)
    assert evaluation.results[0].refits == 8  # 400 - 5 = 395 test steps in blocks of 50
    for (last_train_step, visible_rows), (_, block_first) in zip(seen[0::2], seen[1::2]):
        assert last_train_step + 5 <= block_first  # the last training target ended by the block's first decision
        assert visible_rows == last_train_step + 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"horizons": (0, 5)}, "horizons must be positive whole numbers"),
        ({"horizons": (5, 5)}, "horizons must not repeat"),
        ({"lookback": 0}, "lookback must be a positive whole number"),
        ({"cost_bps": -2.0}, "cost_bps must be a finite number >= 0, got -2.0"),
        ({"fractions": (0.7, 0.2, 0.2)}, "summing to 1"),
        ({"retrain_every": 0}, "retrain_every must be a positive whole number"),
    ],
)
def test_bad_protocol_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        HFTConfig(**kwargs)


def test_a_series_too_short_for_the_protocol_is_a_clear_error():
    with pytest.raises(DataValidationError, match="100 bars are too few for lookback 60 and horizons"):
        evaluate_hft(synthetic_bars(100), BASELINES, HFTConfig(lookback=60))


def test_bad_bars_are_clear_errors():
    bars = synthetic_bars(50)
    close = bars.close.copy()
    close[7] = -1.0
    with pytest.raises(DataValidationError, match="column 'close' must be > 0, got -1.0 at row 7"):
        Bars(bars.open, bars.high, bars.low, close, bars.volume)
    with pytest.raises(DataValidationError, match="column 'volume' has 49 rows, close has 50"):
        Bars(bars.open, bars.high, bars.low, bars.close, bars.volume[:-1])


def test_bars_from_a_series_without_ohlcv_columns_names_what_is_missing():
    from longstm.data.series import TimeSeries

    series = TimeSeries(np.ones((10, 2), np.float32), ["Close", "price"], source="prices.csv")
    with pytest.raises(DataValidationError, match="prices.csv: the HFT protocol needs columns .* missing open, high, low, volume"):
        Bars.from_series(series)


def test_a_predictor_returning_the_wrong_count_is_a_clear_error():
    class Short:
        def predict(self, inputs):
            return np.zeros(3)

    with pytest.raises(DataValidationError, match="returned 3 predictions for"):
        evaluate_hft(synthetic_bars(1000), {"short": Short}, HFTConfig(horizons=(1,), lookback=10))


# ---------------------------------------------------------------- real data


def directional_accuracy_by_hand(predictions, actuals):
    """Sign hits over the steps that moved; a zero prediction counts half."""
    moved = actuals != 0
    hits = np.where(predictions[moved] == 0, 0.5, np.sign(predictions[moved]) == np.sign(actuals[moved]))
    return float(np.mean(hits))


@pytest.mark.shared
def test_protocol_on_a_slice_of_real_btc_bars():
    from longstm.data.loaders import load_series

    path = shared_file("crypto_1m/BTCUSDT_1m.csv")
    series = load_series(path, kind="ohlcv").slice(0, 5000)
    bars = Bars.from_series(series)
    evaluation = evaluate_hft(bars, BASELINES, HFTConfig(lookback=60, cost_bps=1.0))
    assert evaluation.data_summary["periods_per_year"] == 525_600
    rows = {(row["model"], row["horizon"]): row for row in evaluation.rows()}
    # Every figure recomputed from the raw CSV's closes (no gaps in these rows): train rows
    # 0..3500, test decision steps 4000..5000 - k, returns in basis points, the AR fitted by
    # plain least squares on the training steps' last 60 one-bar returns.
    log_close = np.log(pd.read_csv(path, nrows=5000)["close"].to_numpy(np.float64))
    one_bar = np.concatenate([[0.0], 1e4 * np.diff(log_close)])
    for horizon in (1, 5, 15):
        test, train = np.arange(4000, 5000 - horizon), np.arange(60, 3500 - horizon)
        actual = 1e4 * (log_close[test + horizon] - log_close[test])

        def lags(steps):
            return np.column_stack([one_bar[steps[:, None] - 59 + np.arange(60)], np.ones(steps.size)])

        coefficients, *_ = np.linalg.lstsq(lags(train), 1e4 * (log_close[train + horizon] - log_close[train]), rcond=None)
        forecasts = {
            "zero": np.zeros(test.size),
            "momentum": 1e4 * (log_close[test] - log_close[test - horizon]),
            "ar": lags(test) @ coefficients,
        }
        for model, forecast in forecasts.items():
            row = rows[model, horizon]
            assert row["n_test"] == test.size == 1000 - horizon
            # The loader keeps float32 values: a close of ~1e5 is exact to ~4e-8, hence the tolerances.
            assert row["mse_bp2"] == pytest.approx(np.mean((forecast - actual) ** 2), rel=1e-4)
            assert row["directional_accuracy"] == pytest.approx(directional_accuracy_by_hand(forecast, actual), abs=2e-3)
            if model != "zero":
                assert row["information_coefficient"] == pytest.approx(spearmanr(forecast, actual).statistic, abs=5e-3)
                assert 0 <= row["max_drawdown"] < 1
    # One-minute BTC returns are a few basis points.
    assert 1.0 < rows["zero", 1]["mse_bp2"] ** 0.5 < 50.0
