"""The sign-strategy backtest: hand-computed P&L, timing (no look-ahead), costs, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.backtest import hold_positions, run_backtest
from longstm.evaluate.hft_metrics import max_drawdown, sharpe_ratio


def test_hand_computed_returns_costs_and_equity():
    closes = [100.0, 101.0, 99.99, 100.5]
    positions = [1.0, -1.0, -1.0]
    result = run_backtest(closes, positions, cost_bps=10.0, periods_per_year=365)
    expected = np.array(
        [
            1.0 * (101.0 / 100.0 - 1) - 0.001,  # enter long: |1 - 0| x 10 bp
            -1.0 * (99.99 / 101.0 - 1) - 0.002,  # flip to short: |-1 - 1| x 10 bp
            -1.0 * (100.5 / 99.99 - 1),  # hold short, no cost
        ]
    )
    np.testing.assert_allclose(result.strategy_returns, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(result.equity, np.concatenate([[1.0], np.cumprod(1 + expected)]), rtol=1e-15)
    assert result.turnover == pytest.approx(3.0 / 3)
    assert result.position_changes == 2
    assert result.total_return == pytest.approx(np.prod(1 + expected) - 1, rel=1e-12)
    assert result.sharpe == pytest.approx(expected.mean() / expected.std(ddof=1) * math.sqrt(365), rel=1e-12)


def test_profit_at_close_t_uses_the_position_decided_at_t_minus_1_or_earlier():
    rng = np.random.default_rng(1)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 51)))
    positions = np.sign(rng.normal(size=50))
    base = run_backtest(closes, positions, cost_bps=5.0, periods_per_year=1)
    for t in (1, 17, 49):
        # Change every decision taken at close t or later: nothing realised up to close t may move.
        changed = positions.copy()
        changed[t:] = -changed[t:]
        result = run_backtest(closes, changed, cost_bps=5.0, periods_per_year=1)
        # strategy_returns[i] is realised at close i + 1, so closes 1..t are entries 0..t-1.
        np.testing.assert_array_equal(result.strategy_returns[:t], base.strategy_returns[:t])
        np.testing.assert_array_equal(result.equity[: t + 1], base.equity[: t + 1])
        assert result.strategy_returns[t] != base.strategy_returns[t]


def test_a_move_is_earned_by_the_position_held_before_it():
    # The price jumps 10% at close 2. A long decided at close 1 earns it; a long decided at close 2 does not.
    closes = [100.0, 100.0, 110.0, 110.0]
    early = run_backtest(closes, [0.0, 1.0, 1.0], cost_bps=0.0, periods_per_year=1)
    late = run_backtest(closes, [0.0, 0.0, 1.0], cost_bps=0.0, periods_per_year=1)
    assert early.total_return == pytest.approx(0.10)
    assert late.total_return == pytest.approx(0.0)


def test_hold_positions_acts_every_hold_bars_and_never_on_later_signals():
    signals = np.array([0.3, -1.0, -2.0, 0.5, 0.0, 4.0, -3.0])
    np.testing.assert_array_equal(hold_positions(signals, 1), np.sign(signals))
    np.testing.assert_array_equal(hold_positions(signals, 2), [1, 1, -1, -1, 0, 0, -1])
    np.testing.assert_array_equal(hold_positions(signals, 3), [1, 1, 1, 1, 1, 1, -1])
    rng = np.random.default_rng(0)
    for t in range(signals.size):
        perturbed = signals.copy()
        perturbed[t + 1 :] = rng.normal(size=signals.size - t - 1)
        for hold in (1, 2, 3, 5):
            np.testing.assert_array_equal(hold_positions(perturbed, hold)[: t + 1], hold_positions(signals, hold)[: t + 1])


def test_flat_strategy_has_zero_sharpe_drawdown_and_turnover():
    result = run_backtest([1.0, 2.0, 1.0, 3.0], [0.0, 0.0, 0.0], cost_bps=3.0, periods_per_year=10)
    assert result.summary() == {
        "sharpe": 0.0,
        "total_return": 0.0,
        "max_drawdown": 0.0,
        "turnover": 0.0,
        "position_changes": 0,
        "exposure": 0.0,
    }


def test_max_drawdown_and_sharpe_by_hand():
    assert max_drawdown([1.0, 1.2, 0.9, 1.3, 1.0]) == pytest.approx(0.25)
    assert max_drawdown([1.0, 1.1, 1.2]) == 0.0
    returns = np.array([0.01, -0.02, 0.03, 0.0])
    assert sharpe_ratio(returns, 252) == pytest.approx(0.005 / returns.std(ddof=1) * math.sqrt(252))
    assert sharpe_ratio(np.zeros(5), 252) == 0.0
    assert math.isnan(sharpe_ratio([0.01], 252))


@pytest.mark.parametrize(
    "closes, positions, cost, error, message",
    [
        ([1.0, 2.0], [1.0, 1.0], 0.0, DataValidationError, "one more close than positions"),
        ([1.0, -2.0], [1.0], 0.0, DataValidationError, "got -2.0 at index 1"),
        ([1.0, np.nan], [1.0], 0.0, DataValidationError, "finite and > 0"),
        ([1.0, 2.0], [2.0], 0.0, DataValidationError, "within [-1, 1]"),
        ([1.0, 2.0], [1.0], -1.0, ConfigError, "cost_bps must be a finite number >= 0, got -1.0"),
        ([1.0], [], 0.0, DataValidationError, "at least one period"),
    ],
)
def test_bad_backtest_input_is_a_clear_error(closes, positions, cost, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_backtest(closes, positions, cost_bps=cost, periods_per_year=1)


@pytest.mark.parametrize("hold", [0, -2, 1.5])
def test_bad_hold_is_a_config_error(hold):
    with pytest.raises(ConfigError, match="hold must be a positive whole number"):
        hold_positions([1.0, 2.0], hold)


def test_bad_periods_per_year():
    with pytest.raises(DataValidationError, match="periods_per_year must be > 0, got 0"):
        sharpe_ratio([0.1, 0.2], 0)


def test_docstring_examples_of_the_evaluation_modules_hold():
    import doctest

    from longstm.evaluate import backtest, lobster_task

    for module in (backtest, lobster_task):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
