"""LOBSTER mids stay exact (longstm/data/lobster.py `LobsterSeries.values64`): labels are computed
from float64 mids, and only model inputs are cast to float32."""

import io

import numpy as np
import pandas as pd
from rich.console import Console

from longstm.cli.eval_lobster import run_lobster_command
from longstm.data.lobster import LobsterSeries, load_lobster
from longstm.data.validation import apply_gap_policy
from longstm.evaluate.lobster_task import direction_labels

HALF_CENT = 50  # LOBSTER prices are USD x 10^4


def _write_sample(folder, events: int = 400, seed: int = 0):
    """A one-level book at $100,000 (where float32 steps by 1/128 USD) moving in half cents."""
    rng = np.random.default_rng(seed)
    bid = 1_000_000_000 + HALF_CENT * np.cumsum(rng.integers(-1, 2, events))
    ask = bid + 2 * HALF_CENT
    times = 34200.0 + np.arange(events) * 0.25
    messages = np.column_stack([times, np.ones(events), np.arange(events), np.full(events, 100), bid, np.ones(events)])
    path = folder / "BRK_2012-06-21_34200000_57600000_message_1.csv"
    np.savetxt(path, messages, delimiter=",", fmt="%.2f,%d,%d,%d,%d,%d")
    book = np.column_stack([ask, np.full(events, 100), bid, np.full(events, 100)])
    np.savetxt(folder / "BRK_2012-06-21_34200000_57600000_orderbook_1.csv", book, delimiter=",", fmt="%d")
    return path, (ask + bid) / 2 / 1e4


def test_mids_keep_the_half_cent_that_float32_loses(tmp_path):
    path, exact = _write_sample(tmp_path)
    series = load_lobster(path)
    mid = series.column_index("mid_price")
    np.testing.assert_array_equal(series.values64[:, mid], exact)
    assert series.values.dtype == np.float32 and series.values64.dtype == np.float64
    np.testing.assert_array_equal(series.values, series.values64.astype(np.float32))
    moves = np.diff(exact) != 0
    assert (np.diff(series.values[:, mid])[moves] == 0).any()  # the premise: float32 hides some moves


def test_eval_lobster_labels_come_from_the_exact_mids(tmp_path):
    path, exact = _write_sample(tmp_path)
    evaluation = run_lobster_command(path, k="1,3", alpha=1e-8, model="persistence", console=Console(file=io.StringIO()))
    rounded = exact.astype(np.float32)
    for result in evaluation.results:
        truth, _ = direction_labels(exact, result.horizon, 1e-8)
        np.testing.assert_array_equal(result.labels, truth[result.decision_steps])
        np.testing.assert_array_equal(result.predictions[result.horizon:], truth[result.decision_steps - result.horizon][result.horizon:])
        from_float32, _ = direction_labels(rounded, result.horizon, 1e-8)
        assert (from_float32[result.decision_steps] != result.labels).any()  # float32 mids would mislabel


def test_splitting_at_gaps_keeps_the_float64_values():
    stamps = pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 00:00:01", "2024-01-01 00:00:02", "2024-01-01 00:00:09"])
    values64 = np.array([[100_000.005], [100_000.01], [100_000.015], [100_000.02]])
    series = LobsterSeries(values64, ["mid_price"], stamps.to_numpy(), values64=values64)
    split = apply_gap_policy(series, "split")
    assert isinstance(split, LobsterSeries) and split.segments.tolist() == [0, 3]
    np.testing.assert_array_equal(split.values64, values64)
