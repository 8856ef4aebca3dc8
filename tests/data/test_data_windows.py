"""Lazy windows: the right rows, never across a segment start, and no materialised copy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from longstm.data import StandardScaler, TimeSeries
from longstm.data.windows import WindowIndex, gather_windows, iter_window_batches, window_dataset
from longstm.errors import DataValidationError
from tests.conftest import REPO_ROOT


def _series(rows=50, features=3, segments=(0,)):
    values = np.arange(rows * features, dtype=np.float32).reshape(rows, features)
    return TimeSeries(values, [f"c{i}" for i in range(features)], segments=np.array(segments))


def test_window_index_respects_range_segments_and_stride():
    index = WindowIndex(50, 4, 2, segments=[0, 20, 23])
    starts = index.starts()
    width = 6
    assert starts.tolist() == list(range(0, 20 - width + 1)) + list(range(23, 50 - width + 1))
    assert len(index) == len(starts)
    part = WindowIndex(50, 4, 2, start=10, stop=30, segments=[0, 20])
    assert part.starts().tolist() == list(range(10, 15)) + list(range(20, 25))
    strided = WindowIndex(50, 4, 2, stride=5)
    assert strided.starts().tolist() == list(range(0, 45, 5))
    assert strided.starts([3, 1]).tolist() == [15, 5]
    with pytest.raises(DataValidationError, match="lookback must be a positive integer, got 0"):
        WindowIndex(50, 0, 2)
    with pytest.raises(DataValidationError, match=r"window range \[0, 60\) must lie inside the series' 50 rows"):
        WindowIndex(50, 4, 2, stop=60)
    with pytest.raises(DataValidationError, match="give 0 windows of lookback 40 \\+ horizon 20"):
        WindowIndex(50, 40, 20).require(1, "tiny")


def test_gathered_windows_equal_sliding_window_view_with_scaler_and_columns():
    series = _series()
    scaler = StandardScaler().fit(series.values[:30])
    windows = sliding_window_view(scaler.transform(series.values), 7, axis=0).transpose(0, 2, 1)
    starts = np.array([0, 5, 43])
    x, y = gather_windows(series.values, starts, 5, 2, input_columns=[2, 0], target_columns=[1], scaler=scaler)
    np.testing.assert_array_equal(x, windows[starts][:, :5][:, :, [2, 0]])
    np.testing.assert_array_equal(y, windows[starts][:, 5:][:, :, [1]])
    batches = list(iter_window_batches(series, 5, 2, batch_size=16, drop_remainder=True))
    assert [b[0].shape for b in batches] == [(16, 5, 3)] * 2  # 44 windows: the last 12 are dropped


def test_dataset_matches_numpy_batches_and_knows_its_length():
    series = _series(rows=60, segments=(0, 31))
    dataset = window_dataset(series, 6, 3, batch_size=8, input_columns=["c1", "c2"], target_columns=["c0"])
    expected = list(iter_window_batches(series, 6, 3, batch_size=8, input_columns=["c1", "c2"], target_columns=["c0"]))
    got = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert int(dataset.cardinality()) == len(expected) == len(got)
    for (x, y), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    # No window crosses the segment start at row 31: every input row follows its predecessor.
    for x, y in got:
        rows = np.concatenate([x[:, :, 1:2], y], axis=1)[:, :, 0] // 3  # c1 = 3*row + 1, c0 = 3*row
        assert np.all(np.diff(rows, axis=1) == 1)
        assert not np.any((rows[:, :1] < 31) & (rows[:, -1:] >= 31))
    fixed = window_dataset(series, 6, 3, batch_size=8, drop_remainder=True)
    assert fixed.element_spec[0].shape.as_list() == [8, 6, 3]
    assert int(fixed.cardinality()) == len(WindowIndex(60, 6, 3, segments=[0, 31])) // 8


def test_shuffle_visits_every_window_once_per_epoch_in_new_orders():
    series = _series(rows=40, features=1)
    dataset = window_dataset(series, 3, 1, batch_size=5, shuffle=True, seed=7)
    epochs = [np.concatenate([x.numpy()[:, 0, 0] for x, _ in dataset]) for _ in range(2)]
    assert sorted(epochs[0].tolist()) == sorted(epochs[1].tolist()) == list(range(37))
    assert epochs[0].tolist() != epochs[1].tolist()
    again = np.concatenate([x.numpy()[:, 0, 0] for x, _ in window_dataset(series, 3, 1, batch_size=5, shuffle=True, seed=7)])
    assert again.tolist() == epochs[0].tolist()  # the seed fixes the sequence of epoch orders
    dropped = window_dataset(series, 3, 1, batch_size=5, shuffle=True, seed=7, drop_remainder=True)
    assert sum(x.shape[0] for x, _ in dropped) == 35


def test_memmap_input_and_plain_array_errors(tmp_path):
    array = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(100, 2))
    array[:] = np.arange(200, dtype=np.float32).reshape(100, 2)
    array.flush()
    values = np.load(tmp_path / "big.npy", mmap_mode="r")
    x, y = next(iter(window_dataset(values, 4, 1, batch_size=2, start=10)))
    assert x.numpy()[1, 0].tolist() == [22.0, 23.0] and y.numpy()[0, 0].tolist() == [28.0, 29.0]
    with pytest.raises(DataValidationError, match="columns of a plain array are given by position"):
        window_dataset(values, 4, 1, target_columns=["OT"])
    with pytest.raises(DataValidationError, match="no column 'OT'; available columns: c0"):
        window_dataset(_series(), 4, 1, target_columns=["OT"])


MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource
    import numpy as np
    import tensorflow as tf
    from longstm.data.windows import window_dataset

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows, features = 10_000_000, 8
    values = np.empty((rows, features), np.float32)
    for start in range(0, rows, 1_000_000):  # touch every page, no float64 temporary
        values[start : start + 1_000_000] = np.arange(start, start + 1_000_000, dtype=np.float32)[:, None]
    base = peak_mib()
    plain = window_dataset(values, 336, 96, batch_size=64)
    cardinality = int(plain.cardinality())
    checksum = sum(float(x[0, 0, 0]) for x, _ in plain.take(200))
    after_plain = peak_mib()
    shuffled = window_dataset(values, 336, 96, batch_size=64, shuffle=True, seed=0)
    batches = sum(1 for _ in shuffled.take(200))
    after_shuffled = peak_mib()
    print(json.dumps(dict(base=base, plain=after_plain, shuffled=after_shuffled, cardinality=cardinality,
                          checksum=checksum, batches=batches, array=values.nbytes / 2**20)))
    """
)


def test_windows_over_1e7_rows_add_under_10_percent_to_peak_rss():
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    windows = 10_000_000 - 336 - 96 + 1
    assert peaks["cardinality"] == -(-windows // 64)
    assert peaks["checksum"] == sum(float(64 * b) for b in range(200))  # batch b starts at row 64*b
    assert peaks["batches"] == 200
    # Materialised, the windows would take windows * 432 * 8 * 4 bytes (about 130 GB).
    assert peaks["plain"] - peaks["base"] < 0.10 * peaks["base"], peaks
    assert peaks["shuffled"] - peaks["base"] < 0.10 * peaks["base"], peaks
