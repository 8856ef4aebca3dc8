"""The remaining bad inputs of the data layer each raise a clear, specific error."""

from __future__ import annotations

import numpy as np
import pytest

from longstm.data import StandardScaler, TimeSeries, ett_split, load_series, window_dataset
from longstm.data.windows import iter_window_batches
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate import evaluate_ett


def test_timeseries_rejects_bad_arrays(tmp_path):
    values = np.zeros((4, 2), np.float32)
    cases = [
        (lambda: TimeSeries(np.zeros((2, 2, 2)), ["a", "b"]), r"values must have shape \(rows, features\), got shape \(2, 2, 2\)"),
        (lambda: TimeSeries(np.array([["x", "y"]]), ["a", "b"]), "values must be real numbers, got dtype <U1"),
        (lambda: TimeSeries(values, ["a", "b"], np.arange(3)), "timestamps must be datetime64, got dtype int64"),
        (lambda: TimeSeries(values, ["a", "b"], np.arange(3).astype("datetime64[s]")), "4 rows but 3 timestamps"),
        (lambda: TimeSeries(values, ["a", "b"], segments=np.array([0, 2, 2])), "segment starts must be strictly increasing"),
        (lambda: TimeSeries(values, ["a", "b"], segments=np.array([0, 4])), "segment starts must be strictly increasing rows below 4"),
    ]
    for make, message in cases:
        with pytest.raises(DataValidationError, match=message):
            make()
    mapped = np.memmap(tmp_path / "x.bin", dtype=np.float64, mode="w+", shape=(4, 2))
    with pytest.raises(DataValidationError, match="a memory-mapped array must already be float32"):
        TimeSeries(mapped, ["a", "b"])
    assert TimeSeries(np.arange(3), ["a"]).values.dtype == np.float32  # other dtypes are converted


def test_loader_argument_and_format_errors(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("date,a\n2024-01-01,1\n")
    with pytest.raises(DataValidationError, match="nan_policy must be one of"):
        load_series(good, nan_policy="drop")
    only_time = tmp_path / "only_time.csv"
    only_time.write_text("date\n2024-01-01\n")
    with pytest.raises(DataValidationError, match="no feature columns besides the timestamp column 'date'"):
        load_series(only_time)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(DataValidationError, match="broken.parquet: cannot read as parquet"):
        load_series(broken)
    no_time = tmp_path / "plain.csv"
    no_time.write_text("a,b\n1,2\n3,4\n")
    series = load_series(no_time)
    assert series.timestamps is None and series.values.tolist() == [[1, 2], [3, 4]]


def _lobster(tmp_path, messages, book, name="X_2012-06-21_0_1_message_1.csv"):
    (tmp_path / name).write_text(messages)
    (tmp_path / name.replace("_message_", "_orderbook_")).write_text(book)
    return tmp_path / name


def test_lobster_format_errors(tmp_path):
    book = "2239500,100,2231800,100\n2239500,100,2238100,21\n"
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataValidationError, match="not a LOBSTER message file name"):
        load_series(tmp_path / "x.csv", kind="lobster")
    short = _lobster(tmp_path, "34200.1,1,5,100,2238100\n34200.2,1,6,100,2238200\n", book)
    with pytest.raises(DataValidationError, match="a LOBSTER message file needs 6 columns here, got 5"):
        load_series(short)
    text = _lobster(tmp_path, "34200.1,1,5,100,2238100,1\n34200.2,new,6,100,2238200,-1\n", book)
    with pytest.raises(DataValidationError, match="column 1 is not numeric, row 1 holds 'new'"):
        load_series(text)
    good = _lobster(tmp_path, "34200.1,1,5,100,2238100,1\n34200.2,1,6,100,2238200,-1\n", book)
    with pytest.raises(DataValidationError, match="bar='1 second' is not a pandas frequency"):
        load_series(good, bar="1 second")
    with pytest.raises(DataValidationError, match="no LOBSTER feature\\(s\\) \\['vwap'\\]; available: mid_price"):
        load_series(good, columns=["vwap"])
    empty_ask = "9999999999,0,2231800,100\n2239500,100,2238100,21\n"
    _lobster(tmp_path, "34200.1,1,5,100,2238100,1\n34200.2,1,6,100,2238200,-1\n", empty_ask)
    with pytest.raises(DataValidationError, match="the book has an empty side from row 0 to row 0"):
        with pytest.warns(UserWarning, match="empty book side"):
            load_series(good)
    later_empty = "2239500,100,2231800,100\n9999999999,0,2238100,21\n"
    _lobster(tmp_path, "34200.1,1,5,100,2238100,1\n34200.2,1,6,100,2238200,-1\n", later_empty)
    with pytest.warns(UserWarning, match="1 events with an empty book side \\(rows 1\\)"):
        carried = load_series(good)
    assert carried.values[1, 0] == carried.values[0, 0]


def test_window_scaler_split_and_evaluation_argument_errors():
    values = np.zeros((50, 2), np.float32)
    with pytest.raises(DataValidationError, match="batch_size must be a positive integer, got 0"):
        next(iter_window_batches(values, 4, 1, batch_size=0))
    with pytest.raises(DataValidationError, match="stride must be a positive integer, got -1"):
        window_dataset(values, 4, 1, stride=-1)
    with pytest.raises(DataValidationError, match="windows need a TimeSeries or a \\(rows, features\\) array, got list"):
        window_dataset([[1.0]], 4, 1)
    with pytest.raises(DataValidationError, match=r"array: rows \[0, 50\) give 0 windows of lookback 40 \+ horizon 20"):
        window_dataset(values, 40, 20)
    with pytest.raises(DataValidationError, match=r"non-empty \(rows, features\) array, got shape \(0, 2\)"):
        StandardScaler().fit(values[:0])
    with pytest.raises(DataValidationError, match="has 3 column names but the data has 2 columns"):
        StandardScaler(["a", "b", "c"]).fit(values)
    with pytest.raises(DataValidationError, match="scaler state has kind 'minmax'"):
        StandardScaler.from_dict({"kind": "minmax", "mean": [0], "scale": [1]})
    with pytest.raises(DataValidationError, match="lookback 9000 is longer than the ETTh training part \\(8640 rows\\)"):
        ett_split(17420, 9000)
    series = TimeSeries(np.random.default_rng(0).normal(size=(300, 2)), ["a", "OT"])
    with pytest.raises(ConfigError, match="drop_last_batch must be a positive batch size or None, got 0"):
        evaluate_ett(series, "repeat", 24, [12], drop_last_batch=0)
    with pytest.raises(ConfigError, match="split must be one of"):
        evaluate_ett(series, "repeat", 24, [12], split="holdout")
    with pytest.raises(ConfigError, match="model must be a baseline name, an object with predict_windows"):
        evaluate_ett(series, 42, 24, [12])
