"""load_series and validation: good files load, each bad input gives a clear error or warning."""

from __future__ import annotations

import hashlib
import gzip
import warnings

import numpy as np
import pytest

from longstm.data import DataWarning, TimeSeries, bundled_path, load_series, require_length
from longstm.errors import DataValidationError
from tests.conftest import shared_file


def _write(tmp_path, text, name="series.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _hourly(rows=6, start="2024-01-01 00:00:00"):
    import pandas as pd

    stamps = pd.date_range(start, periods=rows, freq="h")
    return "date,a,b\n" + "".join(f"{t},{i}.5,{-i}\n" for i, t in enumerate(stamps))


def test_bundled_etth1_is_byte_identical_to_upstream_and_loads():
    path = bundled_path("ETTh1")
    raw = gzip.decompress(path.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"
    series = load_series(path)
    assert len(series) == 17420
    assert series.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert series.values.dtype == np.float32
    assert str(series.timestamps[0]) == "2016-07-01T00:00:00.000000000"
    assert series.step() == np.timedelta64(3600, "s")
    assert series.segments.tolist() == [0]
    assert series.values[1, 6] == np.float32(27.78700065612793)  # OT of the second row


def test_bundled_unknown_name():
    with pytest.raises(DataValidationError, match="no bundled data set 'ETTh9'; bundled: ETTh1"):
        bundled_path("ETTh9")


def test_csv_detects_timestamp_column_and_keeps_order(tmp_path):
    path = _write(tmp_path, "id,when,x\n" + "".join(f"{i},2024-03-0{i + 1} 10:00,{i * 2}\n" for i in range(5)))
    series = load_series(path, columns=["x", "id"])
    assert series.columns == ["x", "id"]
    assert series.values[:, 0].tolist() == [0, 2, 4, 6, 8]
    assert series.timestamps[2] == np.datetime64("2024-03-03T10:00")


def test_epoch_milliseconds_timestamps_and_parquet(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"open_time": [1_700_000_000_000 + 60_000 * i for i in range(4)], "close": [1.0, 2, 3, 4]})
    frame.to_parquet(tmp_path / "bars.parquet")
    series = load_series(tmp_path / "bars.parquet")
    assert series.timestamps[1] - series.timestamps[0] == np.timedelta64(60, "s")
    assert series.timestamps[0] == np.datetime64("2023-11-14T22:13:20")


def test_unsorted_timestamps_name_file_column_row(tmp_path):
    text = "date,a\n2024-01-01 00:00,1\n2024-01-01 02:00,2\n2024-01-01 01:00,3\n"
    path = _write(tmp_path, text)
    with pytest.raises(DataValidationError, match=r"series\.csv: column 'date' is not sorted: row 2 .* before row 1"):
        load_series(path)


def test_duplicate_timestamps(tmp_path):
    path = _write(tmp_path, "date,a\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n2024-01-01 01:00,3\n")
    with pytest.raises(DataValidationError, match="duplicate timestamps: row 2 repeats 2024-01-01T01:00"):
        load_series(path)


def test_unparseable_timestamp(tmp_path):
    path = _write(tmp_path, "date,a\n2024-01-01 00:00,1\nyesterday,2\n")
    with pytest.raises(DataValidationError, match="column 'date' has 1 values that are not timestamps, first at row 1: 'yesterday'"):
        load_series(path, timestamp_column="date")


def test_nan_and_inf_name_column_and_rows(tmp_path):
    path = _write(tmp_path, "date,a,b\n2024-01-01 00:00,1,2\n2024-01-01 01:00,,3\n2024-01-01 02:00,4,inf\n")
    with pytest.raises(DataValidationError, match=r"column 'a' has 1 NaN values, first at rows 1"):
        load_series(path)
    with pytest.raises(DataValidationError, match=r"column 'b' has 1 NaN/inf values, first at rows 2"):
        load_series(path, columns=["b"])
    with pytest.warns(DataWarning, match="forward-filled 2 NaN/inf values"):
        filled = load_series(path, nan_policy="ffill")
    assert filled.values.tolist() == [[1, 2], [1, 3], [4, 3]]


def test_leading_nan_cannot_be_forward_filled(tmp_path):
    path = _write(tmp_path, "date,a\n2024-01-01 00:00,\n2024-01-01 01:00,1\n")
    with pytest.raises(DataValidationError, match="column 'a' has 1 NaN values, first at rows 0"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing could be filled, so nothing is reported as filled
            load_series(path, nan_policy="ffill")


def test_non_numeric_column(tmp_path):
    path = _write(tmp_path, "date,a,label\n2024-01-01 00:00,1,2\n2024-01-01 01:00,2,up\n")
    with pytest.raises(DataValidationError, match="column 'label' is not numeric: row 1 holds 'up'"):
        load_series(path)
    assert load_series(path, columns=["a"]).columns == ["a"]


def test_missing_columns_list_available(tmp_path):
    path = _write(tmp_path, _hourly())
    with pytest.raises(DataValidationError, match="no column\\(s\\) 'close'; available columns: date, a, b"):
        load_series(path, columns=["close"])
    with pytest.raises(DataValidationError, match="no timestamp column 'time'; available columns: date, a, b"):
        load_series(path, timestamp_column="time")
    series = load_series(path)
    with pytest.raises(DataValidationError, match="no column 'c'; available columns: a, b"):
        series.column_index("c")


def _gappy(tmp_path):
    stamps = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 05:00", "2024-01-01 06:00"]
    return _write(tmp_path, "date,a\n" + "".join(f"{t},{i}\n" for i, t in enumerate(stamps)))


def test_gap_policies(tmp_path):
    path = _gappy(tmp_path)
    with pytest.warns(DataWarning, match=r"1 gaps longer than the usual step 3600 seconds: row 3 \(2024-01-01T02:00 -> 2024-01-01T05:00\)"):
        reported = load_series(path)
    assert reported.segments.tolist() == [0] and len(reported) == 5
    split = load_series(path, gap_policy="split")
    assert split.segments.tolist() == [0, 3]
    assert split.segment_bounds() == [(0, 3), (3, 5)]
    filled = load_series(path, gap_policy="ffill")
    assert len(filled) == 7
    assert filled.values[:, 0].tolist() == [0, 1, 2, 2, 2, 3, 4]
    assert np.all(np.diff(filled.timestamps) == np.timedelta64(1, "h"))
    with pytest.raises(DataValidationError, match="gap_policy='error'"):
        load_series(path, gap_policy="error")
    with pytest.raises(DataValidationError, match="gap_policy must be one of"):
        load_series(path, gap_policy="fill")


def test_ffill_inserts_bars_in_which_nothing_traded(tmp_path):
    stamps = ["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:04"]
    rows = ["10,12,9,11,5,3", "11,13,10,12,7,4", "12,14,11,13,2,1"]
    path = _write(tmp_path, "date,Open,High,Low,Close,Volume,trades\n" + "".join(f"{t},{r}\n" for t, r in zip(stamps, rows)))
    filled = load_series(path, gap_policy="ffill")
    assert len(filled) == 5
    # The two inserted bars: every price the last close (12), no volume, no trades.
    np.testing.assert_array_equal(filled.values[2:4], [[12, 12, 12, 12, 0, 0]] * 2)
    np.testing.assert_array_equal(filled.values[[0, 1, 4]], [[10, 12, 9, 11, 5, 3], [11, 13, 10, 12, 7, 4], [12, 14, 11, 13, 2, 1]])


def test_ffill_refuses_off_grid_rows(tmp_path):
    stamps = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 04:30"]
    path = _write(tmp_path, "date,a\n" + "".join(f"{t},{i}\n" for i, t in enumerate(stamps)))
    with pytest.raises(DataValidationError, match="rows 3 are not on the 3600 seconds grid"):
        load_series(path, gap_policy="ffill")


def test_bad_kind_and_file(tmp_path):
    with pytest.raises(DataValidationError, match="no such file"):
        load_series(tmp_path / "absent.csv")
    path = _write(tmp_path, "x", name="data.xlsx")
    with pytest.raises(DataValidationError, match="cannot tell the format from the name"):
        load_series(path)
    with pytest.raises(DataValidationError, match="kind must be one of"):
        load_series(path, kind="excel")
    empty = _write(tmp_path, "date,a\n", name="empty.csv")
    with pytest.raises(DataValidationError, match="header but no rows"):
        load_series(empty)


def test_ohlcv_checks(tmp_path):
    head = "date,open,high,low,close,volume\n"
    good = head + "2024-01-01 00:00,10,11,9,10.5,3\n2024-01-01 00:01,10.5,12,10,11,0\n"
    assert load_series(_write(tmp_path, good), kind="ohlcv").columns == ["open", "high", "low", "close", "volume"]
    negative = head + "2024-01-01 00:00,10,11,9,10.5,-3\n"
    with pytest.raises(DataValidationError, match="column 'volume' must be >= 0, row 0 holds -3"):
        load_series(_write(tmp_path, negative), kind="ohlcv")
    zero_price = head + "2024-01-01 00:00,10,11,9,10.5,3\n2024-01-01 00:01,0,12,10,11,1\n"
    with pytest.raises(DataValidationError, match="column 'open' must be a positive price, row 1"):
        load_series(_write(tmp_path, zero_price))  # detected as OHLCV from the columns
    unbounded = head + "2024-01-01 00:00,10,9.5,9,10.5,3\n"
    with pytest.warns(DataWarning, match="1 bars where high/low do not bound open/close, rows 0"):
        load_series(_write(tmp_path, unbounded))
    with pytest.raises(DataValidationError, match="OHLCV data needs columns open, high, low, close"):
        load_series(_write(tmp_path, _hourly()), kind="ohlcv")


def test_npy_is_memory_mapped_not_copied(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.save(tmp_path / "x.npy", array)
    series = load_series(tmp_path / "x.npy")
    assert isinstance(series.values, np.memmap)
    assert isinstance(series.slice(1, 4).values, np.memmap)
    np.save(tmp_path / "y.npy", array.astype(np.float64))
    with pytest.raises(DataValidationError, match="must be a 2-D float32 array"):
        load_series(tmp_path / "y.npy")


def test_timeseries_helpers_and_argument_errors():
    values = np.arange(20, dtype=np.float32).reshape(10, 2)
    series = TimeSeries(values, ["a", "b"], segments=np.array([0, 4, 7]))
    part = series.slice(3, 8)
    assert part.values.base is not None and part.segments.tolist() == [0, 1, 4]
    assert np.shares_memory(part.values, values)
    assert series.select(["b"]).values[:, 0].tolist() == values[:, 1].tolist()
    assert series.segment_ids().tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(DataValidationError, match="2 feature columns but 1 column names"):
        TimeSeries(values, ["a"])
    with pytest.raises(DataValidationError, match="segments must start with row 0"):
        TimeSeries(values, ["a", "b"], segments=np.array([2]))
    with pytest.raises(DataValidationError, match="duplicate column names \\['a'\\]"):
        TimeSeries(values, ["a", "a"])


def test_require_length(tmp_path):
    series = load_series(_write(tmp_path, _hourly(rows=6)))
    require_length(series, 6, "lookback 4 + horizon 2")
    with pytest.raises(DataValidationError, match=r"series\.csv: series too short: lookback 4 \+ horizon 3 needs at least 7 rows, got 6"):
        require_length(series, 7, "lookback 4 + horizon 3")


@pytest.mark.shared
def test_lobster_events_and_bars(tmp_path):
    path = shared_file("lobster/AMZN_2012-06-21_34200000_57600000_message_1.csv")
    events = load_series(path)
    assert len(events) == 57515
    assert events.columns == ["mid_price", "spread", "imbalance", "signed_volume", "dt"]
    assert events.timestamps is not None and str(events.timestamps[0]).startswith("2012-06-21T09:30:00.017459")
    spread = events.values[:, 1]
    assert spread.min() >= 0.0099 and spread.max() <= 0.7701  # README: $0.01..$0.77
    trades = np.flatnonzero(events.values[:, 3] != 0)
    assert trades.size == 8974 + 2445  # executions of visible + hidden orders
    bars = load_series(path, bar="1s")
    assert len(bars) == 23400  # 09:30:01 .. 16:00:00, one bar per second
    assert bars.values[:, 5].sum() == 57515  # every event lands in one bar
    assert np.isclose(bars.values[:, 3].sum(), events.values[:, 3].sum())


def test_lobster_bad_inputs(tmp_path):
    message = _write(tmp_path, "34200.1,1,5,100,2238100,1\n34200.2,1,6,100,2238200,-1\n", name="X_2012-06-21_0_1_message_1.csv")
    with pytest.raises(DataValidationError, match="matching order-book file X_2012-06-21_0_1_orderbook_1.csv is not beside it"):
        load_series(message)
    _write(tmp_path, "2239500,100,2231800,100\n", name="X_2012-06-21_0_1_orderbook_1.csv")
    with pytest.raises(DataValidationError, match="2 messages but 1 order-book rows"):
        load_series(message)
    _write(tmp_path, "2239500,100,2231800,100\n2239500,100,2238100,21\n", name="X_2012-06-21_0_1_orderbook_1.csv")
    series = load_series(message)
    assert series.values[0, :3].tolist() == pytest.approx([223.565, 0.77, 0.0], abs=1e-4)
    unsorted = _write(tmp_path, "34200.3,1,5,100,2238100,1\n34200.2,1,6,100,2238200,-1\n", name="X_2012-06-21_0_1_message_1.csv")
    with pytest.raises(DataValidationError, match="is not sorted: row 1"):
        load_series(unsorted)
    with pytest.raises(DataValidationError, match="bar='1s' is only for LOBSTER files"):
        load_series(_write(tmp_path, _hourly()), bar="1s")
