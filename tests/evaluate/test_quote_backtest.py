"""The spread-aware backtest: trades cross the quoted spread at the decision tick, never at a
crossed quote; marked to the mid."""

from __future__ import annotations

import numpy as np
import pytest

from longstm.errors import DataValidationError
from longstm.evaluate.backtest import execution_ticks, run_backtest, run_quote_backtest

YEAR = 1e6


def test_a_round_trip_at_unchanged_quotes_loses_one_spread():
    bid, ask = np.full(4, 1.0), np.full(4, 1.002)
    result = run_quote_backtest(bid, ask, [1.0, 1.0, 0.0], periods_per_year=YEAR)
    np.testing.assert_allclose(result.costs, [0.001 / 1.001, 0.0, 0.001 / 1.001])
    np.testing.assert_allclose(result.equity[-1], (1 - 0.001 / 1.001) ** 2)
    flip = run_quote_backtest(bid, ask, [1.0, -1.0, -1.0], periods_per_year=YEAR)
    np.testing.assert_allclose(flip.costs, [0.001 / 1.001, 2 * 0.001 / 1.001, 0.0])  # a flip crosses twice


def test_with_a_constant_spread_it_is_the_fixed_cost_backtest_at_the_half_spread():
    rng = np.random.default_rng(0)
    mid = 1.3 * np.exp(np.cumsum(rng.normal(0, 1e-4, 201)))
    half = 1e-4  # relative half spread, the same at every tick
    bid, ask = mid * (1 - half), mid * (1 + half)
    positions = np.sign(rng.normal(size=200))
    quoted = run_quote_backtest(bid, ask, positions, periods_per_year=YEAR)
    fixed = run_backtest(mid, positions, cost_bps=half * 1e4, periods_per_year=YEAR)
    np.testing.assert_allclose(quoted.strategy_returns, fixed.strategy_returns, rtol=1e-9, atol=1e-15)


def test_an_order_at_a_crossed_quote_fills_at_the_next_valid_one():
    bid = np.array([1.0, 1.0, 1.010, 1.0, 1.0])
    ask = np.array([1.002, 1.002, 1.000, 1.002, 1.002])  # tick 2 is crossed
    assert execution_ticks(ask < bid).tolist() == [0, 1, 3, 3, 4]
    result = run_quote_backtest(bid, ask, [0.0, 0.0, 1.0, 1.0], periods_per_year=YEAR)
    assert result.positions.tolist() == [0.0, 0.0, 0.0, 1.0]  # wanted at tick 2, held from tick 3
    assert result.costs[2] == 0.0 and result.costs[3] == pytest.approx(0.001 / 1.001)
    # the crossed quote's mid (1.005) is not used for marking: the last valid mid carries over
    np.testing.assert_allclose(result.asset_returns, [0.0, 0.0, 0.0, 0.0])


def test_bad_quotes_are_named():
    with pytest.raises(DataValidationError, match="the first quote is crossed"):
        run_quote_backtest([1.1, 1.0], [1.0, 1.1], [1.0], periods_per_year=YEAR)
    with pytest.raises(DataValidationError, match="tick 1 has"):
        run_quote_backtest([1.0, np.nan], [1.1, 1.1], [1.0], periods_per_year=YEAR)
    with pytest.raises(DataValidationError, match="needs bid and ask at ticks 0..n"):
        run_quote_backtest([1.0, 1.0], [1.1, 1.1], [1.0, 1.0], periods_per_year=YEAR)
