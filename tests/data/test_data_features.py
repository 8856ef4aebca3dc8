"""Features: right values, driven by dicts, and nothing at step t depends on anything after t."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.data import StandardScaler, TimeSeries, ett_split
from longstm.data.features import build_features
from longstm.data.feature_kinds import FEATURE_KINDS
from longstm.errors import ConfigError, DataValidationError

ALL_SPECS = [
    {"kind": "raw"},
    {"kind": "log_return", "columns": ["close"]},
    {"kind": "log_return", "columns": ["close"], "periods": 3},
    {"kind": "diff", "columns": ["close", "volume"]},
    {"kind": "rolling_volatility", "columns": ["close"], "window": 5},
    {"kind": "rolling_volatility", "columns": ["volume"], "window": 4, "of": "value"},
    {"kind": "rolling_mean", "columns": ["volume"], "window": 3},
    {"kind": "time_of_day"},
    {"kind": "day_of_week"},
    {"kind": "calendar_boundaries", "levels": [{"every": "1h"}, {"every_events": 5}]},  # flags read t - 1 and t
]
# The kinds that read bars or LOB events, over `_ohlcv`.
OHLCV_SPECS = [
    {"kind": "bar"},
    {"kind": "lob_inputs", "mid": "close"},
    {"kind": "per_column", "columns": ["open", "close", "volume"], "transforms": ["diff", "log_return", "diff"]},
    {"kind": "quote", "bid": "low", "ask": "high", "window": 4},
]


def _bars(rows=200, segments=(0,), seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    volume = rng.uniform(1, 10, rows)
    stamps = pd.date_range("2024-03-01 09:00", periods=rows, freq="17min").to_numpy()
    return TimeSeries(np.stack([close, volume], axis=1), ["close", "volume"], stamps, np.array(segments))


def _ohlcv(rows=200, segments=(0,), seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    open_ = close * np.exp(rng.normal(0, 0.002, rows))
    high = np.maximum(open_, close) * np.exp(rng.uniform(0, 0.003, rows))
    low = np.minimum(open_, close) * np.exp(-rng.uniform(0, 0.003, rows))
    values = np.stack([open_, high, low, close, rng.uniform(1, 10, rows)], axis=1)
    stamps = pd.date_range("2024-03-01 09:00", periods=rows, freq="1min").to_numpy()
    return TimeSeries(values, ["open", "high", "low", "close", "volume"], stamps, np.array(segments))


def test_every_kind_is_covered_by_the_causality_specs():
    assert {spec["kind"] for spec in ALL_SPECS + OHLCV_SPECS} == set(FEATURE_KINDS)


def test_values():
    series = _bars(segments=(0, 50))
    out = build_features(series, ALL_SPECS)
    close = series.values[:, 0].astype(np.float64)
    returns = out.values[:, out.column_index("close_log_return")]
    assert returns[0] == 0 and returns[50] == 0  # no past inside the segment yet
    np.testing.assert_allclose(returns[1:50], np.diff(np.log(close[:50])), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.values[60, out.column_index("close_log_return_3")], np.log(close[60] / close[57]), rtol=1e-5)
    volatility = out.values[:, out.column_index("close_vol_5")]
    log_returns = np.concatenate([[0.0], np.diff(np.log(close[:50]))])
    np.testing.assert_allclose(volatility[20], log_returns[16:21].std(), rtol=1e-4)
    np.testing.assert_allclose(out.values[10, out.column_index("volume_mean_3")], series.values[8:11, 1].mean(), rtol=1e-6)
    np.testing.assert_allclose(out.values[10, out.column_index("volume_vol_4")], series.values[7:11, 1].astype(np.float64).std(), rtol=1e-5)
    first = pd.Timestamp(series.timestamps[0])  # 09:00 on Friday 2024-03-01
    assert out.values[0, out.column_index("tod_sin")] == pytest.approx(np.sin(2 * np.pi * 9 / 24), abs=1e-6)
    assert first.weekday() == 4
    assert out.values[0, out.column_index("dow_cos")] == pytest.approx(np.cos(2 * np.pi * 4 / 7), abs=1e-6)
    assert out.columns[:2] == ["close", "volume"] and out.segments.tolist() == [0, 50]
    assert out.values.dtype == np.float32 and len(out) == len(series)


@pytest.mark.parametrize("t", [0, 1, 49, 50, 123, 198])
@pytest.mark.parametrize("make, specs", [(_bars, ALL_SPECS), (_ohlcv, OHLCV_SPECS)], ids=["bars", "ohlcv"])
def test_no_feature_at_step_t_depends_on_values_after_t(t, make, specs):
    series = make(segments=(0, 50))
    reference = build_features(series, specs)
    changed = series.values.copy()
    changed[t + 1 :] *= np.random.default_rng(t).uniform(0.5, 2.0, size=changed[t + 1 :].shape).astype(np.float32)
    perturbed = build_features(TimeSeries(changed, series.columns, series.timestamps, series.segments), specs)
    np.testing.assert_array_equal(perturbed.values[: t + 1], reference.values[: t + 1])
    assert not np.array_equal(perturbed.values[t + 1 :], reference.values[t + 1 :])


def test_no_validation_or_test_value_reaches_training_features_or_scaler():
    rows = 17420
    series = _bars(rows=rows, seed=3)
    split = ett_split(rows, 96)
    specs = [{"kind": "log_return"}, {"kind": "rolling_volatility", "window": 24}, {"kind": "time_of_day"}]

    def pipeline(values):
        features = build_features(TimeSeries(values, series.columns, series.timestamps), specs)
        scaler = StandardScaler().fit(features.values[slice(*split.train)])
        return scaler, scaler.transform(features.values)

    scaler, scaled = pipeline(series.values)
    changed = series.values.copy()
    changed[split.train[1] :] *= 3.0  # rewrite every validation and test row
    other_scaler, other_scaled = pipeline(changed)
    np.testing.assert_array_equal(scaler.mean, other_scaler.mean)
    np.testing.assert_array_equal(scaler.scale, other_scaler.scale)
    np.testing.assert_array_equal(scaled[: split.train[1]], other_scaled[: split.train[1]])


def test_spec_errors_name_the_entry_and_the_key():
    series = _bars(rows=20)
    cases = [
        ({"kind": "ema"}, ConfigError, r"features\[0\]: unknown kind 'ema'; expected one of raw, log_return"),
        ({"kind": "diff", "lag": 2}, ConfigError, r"features\[0\] \(diff\): unknown key\(s\) lag; allowed keys: columns, periods"),
        ({"kind": "rolling_mean"}, ConfigError, r"features\[0\] \(rolling_mean\): missing required key\(s\) window"),
        ({"kind": "rolling_mean", "window": 0}, ConfigError, "window must be a positive integer, got 0"),
        ({"kind": "diff", "periods": 1.5}, ConfigError, "periods must be a positive integer, got 1.5"),
        ({"kind": "rolling_volatility", "window": 3, "of": "range"}, ConfigError, "of must be one of"),
        ({"kind": "diff", "columns": ["open"]}, DataValidationError, "no column 'open'; available columns: close, volume"),
        ({"columns": ["close"]}, ConfigError, r"features\[0\] must be a table/dict with a 'kind' key"),
    ]
    for spec, error, message in cases:
        with pytest.raises(error, match=message):
            build_features(series, [spec])
    with pytest.raises(ConfigError, match="must be a list of dicts"):
        build_features(series, {"kind": "raw"})
    with pytest.raises(ConfigError, match="the list is empty"):
        build_features(series, [])
    with pytest.raises(ConfigError, match=r"features\[1\] \(diff\) produces column\(s\) \['close_diff'\]"):
        build_features(series, [{"kind": "diff", "columns": ["close"]}, {"kind": "diff"}])


def test_data_errors():
    negative = TimeSeries(np.array([[1.0], [-2.0], [3.0]]), ["x"])
    with pytest.raises(DataValidationError, match="log returns need positive values, column 'x' holds -2.0 at row 1"):
        build_features(negative, [{"kind": "log_return"}])
    assert build_features(negative, [{"kind": "diff"}]).values[:, 0].tolist() == [0.0, -3.0, 5.0]
    with pytest.raises(DataValidationError, match="feature 'time_of_day' needs timestamps"):
        build_features(negative, [{"kind": "time_of_day"}])
