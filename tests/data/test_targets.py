"""Tick targets: the as-of join in time (ties, the stretch's end) and targets in events."""

from __future__ import annotations

import numpy as np
import pytest

from longstm.data.targets import event_targets, time_targets
from longstm.errors import ConfigError, DataValidationError

SECOND = 10**9


def brute_force(stamps, mid, horizon, stop):
    """The mid in force at t + Δ by a plain loop: the last tick whose time is <= t + Δ."""
    out = []
    for t in range(len(mid)):
        when = stamps[t] + horizon
        if when >= stop:
            out.append(None)
            continue
        last = max(i for i in range(len(mid)) if stamps[i] <= when)
        out.append(np.log(mid[last] / mid[t]))
    return out


def test_time_targets_equal_a_brute_force_as_of_join_with_ties():
    rng = np.random.default_rng(0)
    stamps = np.cumsum(rng.choice([0, 0, 200_000_000, 700_000_000, 3 * SECOND], 300)).astype(np.int64)  # ties included
    mid = 1.1 + np.cumsum(rng.normal(0, 1e-4, 300))
    stop = int(stamps[-1]) - 5 * SECOND
    values, valid = time_targets(stamps, mid, [SECOND, 10 * SECOND], stop_ns=stop)
    for j, horizon in enumerate((SECOND, 10 * SECOND)):
        expected = brute_force(stamps, mid, horizon, stop)
        assert valid[:, j].tolist() == [e is not None for e in expected]
        np.testing.assert_allclose(values[valid[:, j], j], [e for e in expected if e is not None], rtol=1e-12)
        assert (values[~valid[:, j], j] == 0).all()


def test_a_target_never_reads_past_the_end_of_its_stretch():
    stamps = np.arange(10, dtype=np.int64) * SECOND
    mid = np.linspace(1.0, 2.0, 10)
    values, valid = time_targets(stamps, mid, [3 * SECOND], stop_ns=int(stamps[7]))
    assert valid[:, 0].tolist() == [True] * 4 + [False] * 6  # t + 3 s must be before row 7's time
    poisoned = mid.copy()
    poisoned[7:] = 1e6
    np.testing.assert_array_equal(time_targets(stamps, poisoned, [3 * SECOND], stop_ns=int(stamps[7]))[0], values)
    # without an end, the last tick bounds what is known
    assert time_targets(stamps, mid, [3 * SECOND])[1][:, 0].tolist() == [True] * 7 + [False] * 3


def test_look_ahead_rows_give_targets_to_the_stretch_only():
    stamps = np.arange(12, dtype=np.int64) * SECOND
    mid = np.linspace(1.0, 2.0, 12)
    values, valid = time_targets(stamps, mid, [2 * SECOND], rows=8)
    assert values.shape == (8, 1) and valid.all()
    np.testing.assert_allclose(values[:, 0], np.log(mid[2:10] / mid[:8]))


def test_event_targets():
    mid = np.array([1.0, 2.0, 4.0, 8.0])
    values, valid = event_targets(mid, [1, 2])
    np.testing.assert_allclose(values[:, 0], [np.log(2)] * 3 + [0])
    assert valid[:, 1].tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: time_targets([0, 2, 1], [1.0, 1.0, 1.0], [1]), DataValidationError, "row 2: goes back in time"),
        (lambda: time_targets([0, 1], [1.0, -1.0], [1]), DataValidationError, "mid row 1: expected a price > 0"),
        (lambda: time_targets([0, 1], [1.0, 1.0], [0]), ConfigError, "positive durations"),
        (lambda: event_targets([1.0, 1.0], [0]), ConfigError, "integers >= 1"),
    ],
)
def test_bad_input_is_named(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
