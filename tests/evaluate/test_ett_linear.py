"""The fitted Linear / NLinear baselines: exact on linear processes, equal to a direct lstsq, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from longstm.cli import main
from longstm.data import bundled_path, load_series
from longstm.data.series import TimeSeries
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate import evaluate_ett, mse
from longstm.evaluate.ett import prepare_ett
from longstm.models.linear_baseline import LinearForecaster, make_linear_baseline, window_normal_equations


def _hourly(values: np.ndarray, segments=None) -> TimeSeries:
    stamps = np.datetime64("2020-01-01T00") + np.arange(len(values)) * np.timedelta64(1, "h")
    return TimeSeries(values, [f"c{i}" for i in range(values.shape[1])], stamps,
                      np.zeros(1, np.int64) if segments is None else np.asarray(segments, np.int64), "synthetic")


def _sinusoids(rows: int) -> np.ndarray:
    """Two channels, each a sum of sinusoids plus an offset: both obey one linear recurrence of order 9."""
    t = np.arange(rows, dtype=np.float64)
    first = 3.0 + np.sin(2 * np.pi * t / 24) + 0.5 * np.cos(2 * np.pi * t / 7)
    second = -1.0 + 2.0 * np.sin(2 * np.pi * t / 11 + 0.3) + 0.7 * np.sin(2 * np.pi * t / 24 + 1.0)
    return np.stack([first, second], axis=1)


def _materialised(values: np.ndarray, lookback: int, horizon: int, subtract_last: bool):
    """All windows of all channels, the slow way: design [X, 1] and targets Y."""
    windows = np.concatenate([sliding_window_view(values[:, c], lookback + horizon) for c in range(values.shape[1])])
    if subtract_last:
        windows = windows - windows[:, lookback - 1 : lookback]
    design = np.hstack([windows[:, :lookback], np.ones((len(windows), 1))])
    return design, windows[:, lookback:]


@pytest.mark.parametrize("subtract_last", [False, True])
def test_recovers_a_noise_free_linear_process(subtract_last):
    lookback, horizon = 24, 12
    values = _sinusoids(600)
    model = LinearForecaster(horizon, subtract_last=subtract_last, ridge=0.0).fit(values, lookback, stop=400)
    # Score on windows after the training rows (a different phase of the same process).
    windows = sliding_window_view(values[400:], lookback + horizon, axis=0).transpose(0, 2, 1)
    forecast = model.predict_windows(np.ascontiguousarray(windows[:, :lookback]))
    assert forecast.dtype == np.float64
    np.testing.assert_allclose(forecast, windows[:, lookback:], atol=1e-6)
    # The default ridge (1e-6, relative) barely moves it; through the protocol (float32 windows) too.
    (scored,) = evaluate_ett(_hourly(values), "nlinear" if subtract_last else "linear", lookback, [horizon],
                             split="ratio")
    assert scored.mse < 1e-8


@pytest.mark.parametrize("subtract_last", [False, True])
def test_block_accumulation_equals_a_direct_lstsq(subtract_last):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(300, 3)).cumsum(axis=0) * 0.1 + rng.normal(size=(300, 3))
    lookback, horizon = 8, 5
    gram, cross = window_normal_equations(values, lookback, horizon, subtract_last=subtract_last, block_windows=37)
    design, targets = _materialised(values, lookback, horizon, subtract_last)
    np.testing.assert_allclose(gram, design.T @ design, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(cross, design.T @ targets, rtol=1e-10, atol=1e-8)
    assert gram[-1, -1] == 3 * (300 - lookback - horizon + 1)
    model = LinearForecaster(horizon, subtract_last=subtract_last, ridge=0.0, block_windows=37).fit(values, lookback)
    direct, *_ = np.linalg.lstsq(design, targets, rcond=None)
    np.testing.assert_allclose(model.weights, direct[:lookback], atol=1e-8)
    np.testing.assert_allclose(model.bias, direct[lookback], atol=1e-8)


def test_windows_respect_the_row_range_segments_and_channels():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(200, 3))
    lookback, horizon = 6, 4
    # Segments [0, 90) and [90, 200); rows [10, 180); channel 2 only.
    gram, cross = window_normal_equations(values, lookback, horizon, start=10, stop=180, segments=[0, 90],
                                          channels=[2], block_windows=16)
    parts = [_materialised(values[a:b, 2:3], lookback, horizon, False) for a, b in ((10, 90), (90, 180))]
    design = np.vstack([p[0] for p in parts])
    targets = np.vstack([p[1] for p in parts])
    np.testing.assert_allclose(gram, design.T @ design, atol=1e-10)
    np.testing.assert_allclose(cross, design.T @ targets, atol=1e-10)


def test_nlinear_follows_a_level_shift():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(400, 2)).cumsum(axis=0)
    model = LinearForecaster(6, subtract_last=True).fit(values, 16)
    x = rng.normal(size=(5, 16, 2))
    shift = np.array([7.5, -3.0])
    np.testing.assert_allclose(model.predict_windows(x + shift), model.predict_windows(x) + shift, atol=1e-10)
    # The fit itself only sees differences from each window's last value.
    shifted = LinearForecaster(6, subtract_last=True).fit(values + 100.0, 16)
    np.testing.assert_allclose(shifted.weights, model.weights, atol=1e-9)
    np.testing.assert_allclose(shifted.bias, model.bias, atol=1e-9)
    # Linear has no such invariance: its forecast does not move by the shift.
    linear = LinearForecaster(6).fit(values, 16)
    assert not np.allclose(linear.predict_windows(x + shift), linear.predict_windows(x) + shift, atol=1e-3)


def _fitted_weights(series: TimeSeries, name: str, features: str = "M", target: str = "c0") -> list[LinearForecaster]:
    made = []

    def factory(horizon):
        _, target_indices, _, _ = prepare_ett(series, 48, features, target, "ratio")
        made.append(make_linear_baseline(name, horizon, target_indices))
        return made[-1]

    evaluate_ett(series, factory, 48, [12, 24], features=features, target=target, split="ratio")
    return made


@pytest.mark.parametrize("features", ["M", "MS"])
def test_validation_and_test_rows_do_not_change_the_fit(features):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(1000, 3)).cumsum(axis=0)
    series = _hourly(values)
    train_stop = prepare_ett(series, 48, split="ratio")[2].train[1]
    assert train_stop == 700
    base = _fitted_weights(series, "linear", features)
    changed = values.copy()
    changed[train_stop:] = rng.normal(size=changed[train_stop:].shape) * 50
    after = _fitted_weights(_hourly(changed), "linear", features)
    for a, b in zip(base, after):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.bias, b.bias)
    # The last training row is used (so the comparison above can fail).
    changed = values.copy()
    changed[train_stop - 1, 0] += 5.0
    moved = _fitted_weights(_hourly(changed), "linear", features)
    assert not np.allclose(moved[0].weights, base[0].weights)


def test_ms_fits_on_the_target_channel_only():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(1000, 3)).cumsum(axis=0)
    series = _hourly(values)
    (ms,) = _fitted_weights(series, "nlinear", "MS", target="c1")[:1]
    scrambled = values.copy()
    scrambled[:, [0, 2]] = rng.normal(size=(1000, 2))
    (ms_scrambled,) = _fitted_weights(_hourly(scrambled), "nlinear", "MS", target="c1")[:1]
    np.testing.assert_array_equal(ms.weights, ms_scrambled.weights)
    (single,) = _fitted_weights(series.select(["c1"]), "nlinear", "M", target="c1")[:1]
    np.testing.assert_allclose(ms.weights, single.weights, atol=1e-12)


def test_protocol_scores_match_a_brute_force_forecast():
    etth1 = load_series(bundled_path("ETTh1"))
    lookback, horizon = 96, 24
    (scored,) = evaluate_ett(etth1, "linear", lookback, [horizon])
    raw = etth1.values.astype(np.float64)
    scaled = (raw - raw[:8640].mean(axis=0)) / raw[:8640].std(axis=0)
    model = LinearForecaster(horizon).fit(scaled, lookback, stop=8640)
    windows = sliding_window_view(scaled[11520 - lookback : 14400], lookback + horizon, axis=0).transpose(0, 2, 1)
    forecast = model.predict_windows(np.ascontiguousarray(windows[:, :lookback]))
    assert scored.windows == len(windows)
    assert scored.mse == pytest.approx(mse(forecast, windows[:, lookback:]), rel=1e-4)
    # Far better than repeating the last value on this data.
    (repeat,) = evaluate_ett(etth1, "repeat", lookback, [horizon])
    assert scored.mse < 0.6 * repeat.mse


def test_bad_arguments():
    values = np.random.default_rng(5).normal(size=(100, 2))
    with pytest.raises(ConfigError, match="ridge must be a finite number >= 0, got -0.1"):
        LinearForecaster(4, ridge=-0.1)
    with pytest.raises(ConfigError, match="ridge must be a finite number >= 0, got nan"):
        make_linear_baseline("nlinear", 4, ridge=float("nan"))
    with pytest.raises(ConfigError, match="unknown linear baseline 'lnear'; expected one of linear, nlinear"):
        make_linear_baseline("lnear", 4)
    with pytest.raises(ConfigError, match="unknown model 'Linear': expected a baseline name \\(repeat, mean, linear, "
                                          "nlinear\\)"):
        evaluate_ett(_hourly(values), "Linear", 8, [4], split="ratio")
    with pytest.raises(ConfigError, match="horizon must be a positive integer, got 0"):
        LinearForecaster(0)
    with pytest.raises(ConfigError, match="predict_windows called before fit"):
        LinearForecaster(4).predict_windows(values[None, :8])
    model = LinearForecaster(4).fit(values, 8)
    with pytest.raises(ConfigError, match=r"expects windows of shape \(batch, lookback 8, features\), got \(1, 9, 2\)"):
        model.predict_windows(values[None, :9])
    with pytest.raises(DataValidationError, match="10 training samples .* for 21 unknowns \\(lookback 20 \\+ bias\\)"):
        LinearForecaster(4, target_indices=[0]).fit(values[:33], 20)
    with pytest.raises(DataValidationError, match="give 0 windows of lookback 90 \\+ horizon 20"):
        LinearForecaster(20).fit(values, 90)
    with pytest.raises(ConfigError, match="target_indices \\[5\\] out of range for 2 columns"):
        LinearForecaster(4, target_indices=[5]).fit(values, 8)


def test_cli_eval_ett_linear_writes_the_table(capsys, tmp_path):
    code = main(["eval", "ett", "--data", str(bundled_path("ETTh1")), "--model", "linear", "--horizons", "96",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [[cell.strip() for cell in line.split("│")[1:5]] for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and rows[0][0] == "96" and rows[0][3] == str(3216 - 336 - 96 + 1)
    assert 0.3 < float(rows[0][1]) < 0.45  # repeat-last scores 1.295 on the same windows
    table = pd.read_csv(tmp_path / "ett_results.csv")
    assert table[["model", "horizon", "windows"]].values.tolist() == [["linear", 96, 3216 - 336 - 96 + 1]]
    assert f"{table['mse'][0]:.3f}" == rows[0][1]
