"""Splits reproduce the ETT protocol; the scaler sees training rows only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from longstm.data.scaling import StandardScaler
from longstm.data.series import TimeSeries
from longstm.data.splits import chronological_counts, chronological_split, ett_split, split_rows
from longstm.errors import DataValidationError
from longstm.evaluate.ett import prepare_ett
from longstm.train.config import config_from_dict
from longstm.train.run import load_data


@pytest.mark.parametrize("lookback", [96, 336, 512])
def test_ett_split_borders_hourly_and_minute(lookback):
    hourly = ett_split(17420, lookback, "h")
    assert hourly.train == (0, 8640)
    assert hourly.val == (8640 - lookback, 11520)
    assert hourly.test == (11520 - lookback, 14400)
    minute = ett_split(69680, lookback, "m")
    assert minute.train == (0, 4 * 8640)
    assert minute.val == (4 * 8640 - lookback, 4 * 11520)
    assert minute.test == (4 * 11520 - lookback, 4 * 14400)
    # DLinear's test loader length: len(data_x) - seq_len - pred_len + 1
    assert hourly.num_windows("test", 96) == (14400 - (11520 - lookback)) - lookback - 96 + 1


def test_chronological_split_matches_informer_custom_convention():
    n, lookback = 26304, 96  # the size of the Electricity data set
    split = chronological_split(n, lookback)
    num_train, num_test = int(n * 0.7), int(n * 0.2)
    num_val = n - num_train - num_test
    assert split.train == (0, num_train)
    assert split.val == (num_train - lookback, num_train + num_val)
    assert split.test == (n - num_test - lookback, n)
    assert split.test[0] + lookback == num_train + num_val  # first test target follows the last val row


def test_split_errors():
    with pytest.raises(DataValidationError, match=r"the ETTh split needs at least 14400 rows \(12/4/4 months\), got 1000"):
        ett_split(1000, 96)
    with pytest.raises(DataValidationError, match="freq must be 'h' .* or 'm'"):
        ett_split(17420, 96, "d")
    with pytest.raises(DataValidationError, match="lookback must be a positive integer, got 0"):
        ett_split(17420, 0)
    with pytest.raises(DataValidationError, match="fractions must be three non-negative numbers summing to 1"):
        chronological_split(100, 5, (0.7, 0.2, 0.2))
    with pytest.raises(DataValidationError, match="cannot split 20 rows"):
        chronological_split(20, 16)
    with pytest.raises(DataValidationError, match="split part must be"):
        ett_split(17420, 96).part("validation")


def test_scaler_matches_population_std_and_round_trips():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, size=(500, 3)).astype(np.float32)
    values[:, 2] = 7.0  # a constant column gets scale 1, as in scikit-learn
    scaler = StandardScaler(["a", "b", "c"]).fit(values, block_rows=64)
    np.testing.assert_allclose(scaler.mean, values.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.scale[:2], values[:, :2].astype(np.float64).std(axis=0, ddof=0), rtol=1e-12)
    assert scaler.scale[2] == 1.0
    scaled = scaler.transform(values)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled[:, :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), values, rtol=1e-6, atol=1e-5)
    restored = StandardScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(restored.transform(values), scaled)
    assert restored.columns == ["a", "b", "c"]
    target = scaler.subset([1])
    np.testing.assert_array_equal(target.transform(values[:, 1:2]), scaled[:, 1:2])


def test_scaler_errors():
    with pytest.raises(DataValidationError, match="not fitted"):
        StandardScaler().transform(np.zeros((2, 2)))
    scaler = StandardScaler().fit(np.ones((4, 2)))
    with pytest.raises(DataValidationError, match="fitted on 2 columns, got data with 3"):
        scaler.transform(np.zeros((1, 3)))
    with pytest.raises(DataValidationError, match="missing key 'scale'"):
        StandardScaler.from_dict({"mean": [0.0]})


def _series_whose_later_rows_move_the_statistics(rows=17420):
    """Hourly rows; everything after the first 70 % is shifted by +1000, so a scaler fitted on any
    row past the training part has a mean near 300 instead of near 0."""
    rng = np.random.default_rng(1)
    values = rng.normal(size=(rows, 3))
    values[int(rows * 0.5):] += 1000.0
    stamps = pd.date_range("2016-07-01", periods=rows, freq="h")
    return pd.DataFrame({"date": stamps.astype(str), "a": values[:, 0], "b": values[:, 1], "OT": values[:, 2]}), values


def test_the_training_run_fits_its_scaler_on_training_rows_only(tmp_path):
    """The real path (`train.run.load_data`), not a slice the test takes itself."""
    frame, values = _series_whose_later_rows_move_the_statistics(2000)
    frame.to_csv(tmp_path / "s.csv", index=False)
    shifted = int(2000 * 0.5)
    config = config_from_dict({"data": {"path": str(tmp_path / "s.csv"), "targets": ["OT"], "split": [0.4, 0.3, 0.3]}})
    data = load_data(config)
    train = values[: data.splits["train"][1]]
    assert data.splits["train"][1] <= shifted  # the shift starts after the training rows
    np.testing.assert_allclose(data.mean, train.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.std, train.std(axis=0), rtol=1e-5)
    assert np.abs(data.mean).max() < 1.0


def test_the_ett_protocol_fits_its_scaler_on_training_rows_only():
    """`evaluate.ett.prepare_ett` (used by the baselines and the trained ETT models)."""
    frame, values = _series_whose_later_rows_move_the_statistics()
    series = TimeSeries(values.astype(np.float32), ["a", "b", "OT"], pd.to_datetime(frame["date"]).to_numpy())
    _, _, split, scaler = prepare_ett(series, 336, "M", "OT")
    assert split.train == (0, 8640) and int(17420 * 0.5) >= split.train[1]
    np.testing.assert_allclose(scaler.mean, values[:8640].astype(np.float32).astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(scaler.mean).max() < 1.0


@pytest.mark.parametrize("n_rows", [7, 100, 1000, 17420])
@pytest.mark.parametrize("fractions", [(0.7, 0.1, 0.2), (0.6, 0.2, 0.2), (0.8, 0.0, 0.2), (1.0, 0.0, 0.0)])
def test_run_splits_and_the_protocol_split_share_one_rounding(n_rows, fractions):
    train, val, test = chronological_counts(n_rows, fractions)
    assert (train, test) == (int(n_rows * fractions[0]), int(n_rows * fractions[2])) and train + val + test == n_rows
    rows = split_rows(n_rows, fractions)
    assert rows == {"train": (0, train), "val": (train, train + val), "test": (train + val, n_rows)}
    if min(train, val, test) >= 1:  # the protocol split, with no lookback overlap, cuts at the same rows
        split = chronological_split(n_rows, 1, fractions)
        assert (split.train[1], split.val[1], split.test[1]) == (train, train + val, n_rows)
