"""A long/short sign-strategy backtest with transaction costs, accounted bar by bar.

The strategy takes the sign of a forecast: +1 (long one unit of equity), −1 (short) or 0
(flat, when the forecast is exactly zero). Time runs over bar closes `0..n`:

- the position decided at the close of bar `t` is held over the period `(t, t+1]`, so the
  profit realised at close `t+1` uses the position decided at `t` — never a later one;
- a forecast for `hold` bars ahead is acted on without overlap: decisions are taken at
  closes `0, hold, 2·hold, ...` and each position is kept for `hold` bars (the forecast
  horizon is the holding period, so a k-bar forecast is judged on exactly the k-bar move
  it predicted); forecasts made in between are not traded;
- the costs of a change of position are `cost_bps / 10_000 × |new − old|` of equity (a flip
  from long to short pays twice), taken from the period in which the new position is held.
  The book starts flat, so the first entry pays; the final exit is not charged.

Each period's strategy return is `position × (close[t+1] / close[t] − 1) − cost`, the equity
curve compounds them from 1.0. Sharpe is annualised from per-bar returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.hft_metrics import max_drawdown, sharpe_ratio


@dataclass(frozen=True)
class BacktestResult:
    """Per-bar record and summary of one backtest.

    Attributes:
        positions: shape `(n,)`, the position held over period `(t, t+1]`, decided at close `t`.
        asset_returns: shape `(n,)`, the simple return of the asset over `(t, t+1]`.
        costs: shape `(n,)`, the cost charged in each period (as a fraction of equity).
        strategy_returns: shape `(n,)`, `positions × asset_returns − costs`.
        equity: shape `(n + 1,)`, equity at each close, starting at 1.0.
        periods_per_year: used to annualise the Sharpe ratio.
    """

    positions: np.ndarray
    asset_returns: np.ndarray
    costs: np.ndarray
    strategy_returns: np.ndarray
    equity: np.ndarray
    periods_per_year: float

    @property
    def sharpe(self) -> float:
        return sharpe_ratio(self.strategy_returns, self.periods_per_year)

    @property
    def total_return(self) -> float:
        return float(self.equity[-1] - 1.0)

    @property
    def max_drawdown(self) -> float:
        return max_drawdown(self.equity)

    @property
    def turnover(self) -> float:
        """Mean absolute change of position per bar (a flip long→short counts 2)."""
        return float(np.mean(np.abs(np.diff(self.positions, prepend=0.0))))

    @property
    def position_changes(self) -> int:
        return int(np.count_nonzero(np.diff(self.positions, prepend=0.0)))

    def summary(self) -> dict[str, float]:
        """The headline numbers, as plain floats (for tables and JSON)."""
        return {
            "sharpe": self.sharpe,
            "total_return": self.total_return,
            "max_drawdown": self.max_drawdown,
            "turnover": self.turnover,
            "position_changes": self.position_changes,
            "exposure": float(np.mean(np.abs(self.positions))),
        }


def hold_positions(signals, hold: int) -> np.ndarray:
    """Positions from forecasts, acted on every `hold` bars and kept for `hold` bars.

    Args:
        signals: forecast at each close `0..n-1`, shape `(n,)`; only its sign is used.
        hold: the holding period in bars (the forecast horizon).

    Returns:
        Shape `(n,)`: `sign(signals[hold · (t // hold)])` at each `t`.

    Example:

    >>> hold_positions([0.3, -1.0, -2.0, 0.5, 0.0], hold=2)
    array([ 1.,  1., -1., -1.,  0.])
    """
    signals = np.asarray(signals, dtype=np.float64).reshape(-1)
    if int(hold) != hold or hold < 1:
        raise ConfigError(f"hold must be a positive whole number of bars, got {hold!r}")
    decision_index = (np.arange(signals.size) // hold) * hold
    return np.sign(signals[decision_index])


def run_backtest(closes, positions, *, cost_bps: float, periods_per_year: float) -> BacktestResult:
    """Backtest given positions against a price path.

    Args:
        closes: shape `(n + 1,)`, positive closing prices at closes `0..n`.
        positions: shape `(n,)`, position decided at close `t` and held over `(t, t+1]`;
            values in [−1, 1] (fractions allowed).
        cost_bps: cost per unit of position change, in basis points of equity (≥ 0).
        periods_per_year: bars per year, for the Sharpe ratio.

    Returns:
        A `BacktestResult`.

    Example:

    >>> result = run_backtest([100.0, 101.0, 100.0], [1.0, -1.0], cost_bps=0.0,
    ...                       periods_per_year=525_600)
    >>> [round(float(x), 6) for x in result.strategy_returns]
    [0.01, 0.009901]
    """
    closes = np.asarray(closes, dtype=np.float64).reshape(-1)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    if closes.size != positions.size + 1:
        raise DataValidationError(
            f"run_backtest: needs one more close than positions (closes at 0..n, positions "
            f"for periods (t, t+1]), got {closes.size} closes and {positions.size} positions"
        )
    if positions.size == 0:
        raise DataValidationError("run_backtest: needs at least one period, got none")
    if not np.all(np.isfinite(closes)) or np.any(closes <= 0):
        bad = int(np.flatnonzero(~np.isfinite(closes) | (closes <= 0))[0])
        raise DataValidationError(
            f"run_backtest: closes must be finite and > 0, got {closes[bad]} at index {bad}"
        )
    if not np.all(np.isfinite(positions)) or np.any(np.abs(positions) > 1):
        raise DataValidationError("run_backtest: positions must be finite and within [-1, 1]")
    if not np.isfinite(cost_bps) or cost_bps < 0:
        raise ConfigError(f"cost_bps must be a finite number >= 0, got {cost_bps}")

    asset_returns = closes[1:] / closes[:-1] - 1.0
    costs = cost_bps / 10_000.0 * np.abs(np.diff(positions, prepend=0.0))
    strategy_returns = positions * asset_returns - costs
    equity = np.concatenate([[1.0], np.cumprod(1.0 + strategy_returns)])
    return BacktestResult(
        positions=positions,
        asset_returns=asset_returns,
        costs=costs,
        strategy_returns=strategy_returns,
        equity=equity,
        periods_per_year=float(periods_per_year),
    )


def valid_mid(bid, ask, crossed) -> np.ndarray:
    """The mid `(bid + ask) / 2` with every crossed quote's mid replaced by the last valid one
    (crossed quotes before the first valid one take the first valid mid): what positions are
    marked to, since a crossed quote is not a price. Needs at least one valid quote."""
    valid = np.flatnonzero(~np.asarray(crossed, dtype=bool))
    last_valid = np.maximum(np.searchsorted(valid, np.arange(np.size(bid)), side="right") - 1, 0)
    return ((np.asarray(bid) + np.asarray(ask)) / 2)[valid[last_valid]]


def execution_ticks(crossed) -> np.ndarray:
    """For each tick, the first tick at or after it whose quote is not crossed (`len` if none):
    an order decided at a crossed quote (ask < bid: not a real price) fills at the next valid one."""
    crossed = np.asarray(crossed, dtype=bool).reshape(-1)
    index = np.where(~crossed, np.arange(crossed.size), crossed.size)
    return np.minimum.accumulate(index[::-1])[::-1]


def run_quote_backtest(bid, ask, positions, *, periods_per_year: float, crossed=None) -> BacktestResult:
    """Backtest positions on a quote stream, trading across the quoted spread.

    Marked to the mid `(bid + ask) / 2`; a change of position `Δ` decided at tick `t` fills at
    the first tick at or after `t` whose quote is not crossed, buying at the ask and selling at
    the bid: it costs `|Δ| × (ask − bid) / (2 × mid)` of equity there, the half spread each way
    (so a round trip at unchanged quotes loses exactly one spread). Until the fill the old
    position is held. Crossed quotes (ask < bid, default: detected) are never traded at and
    their mid is not used for marking (the last valid mid carries forward).

    Args:
        bid, ask: shape `(n + 1,)`, the quotes at ticks `0..n`.
        positions: shape `(n,)`, the position wanted from tick `t` over `(t, t+1]`, in [−1, 1].
        periods_per_year: ticks per year, for the Sharpe ratio.
        crossed: shape `(n + 1,)`, quotes not to trade at; default `ask < bid`.

    Returns:
        A `BacktestResult` whose `positions` are the positions actually held.

    Example:

    >>> result = run_quote_backtest([1.0, 1.0, 1.0], [1.002, 1.002, 1.002], [1.0, 0.0], periods_per_year=1e6)
    >>> round(float(result.equity[-1] - 1.0), 6)       # bought at the ask, sold at the bid: one spread
    -0.001997
    """
    bid = np.asarray(bid, dtype=np.float64).reshape(-1)
    ask = np.asarray(ask, dtype=np.float64).reshape(-1)
    wanted = np.asarray(positions, dtype=np.float64).reshape(-1)
    if not bid.size == ask.size == wanted.size + 1:
        raise DataValidationError(
            f"run_quote_backtest: needs bid and ask at ticks 0..n and positions for (t, t+1]; got {bid.size} bids, "
            f"{ask.size} asks and {wanted.size} positions"
        )
    crossed = ask < bid if crossed is None else np.asarray(crossed, dtype=bool).reshape(-1)
    bad = np.flatnonzero(~(np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask > 0)))
    if bad.size:
        raise DataValidationError(f"run_quote_backtest: bid and ask must be finite and > 0; tick {bad[0]} has {bid[bad[0]]}/{ask[bad[0]]}")
    if crossed[0]:
        raise DataValidationError("run_quote_backtest: the first quote is crossed (ask < bid); start the backtest at a valid quote")
    if not np.all(np.isfinite(wanted)) or np.any(np.abs(wanted) > 1):
        raise DataValidationError("run_quote_backtest: positions must be finite and within [-1, 1]")
    mid = (bid + ask) / 2
    marked = valid_mid(bid, ask, crossed)
    # The position held over (t, t+1] is the latest wish that has filled by tick t.
    fills = execution_ticks(crossed)[: wanted.size]
    held = np.zeros(wanted.size)
    order = np.argsort(fills, kind="stable")
    latest = np.full(wanted.size, -1)
    filled_by = np.searchsorted(fills[order], np.arange(wanted.size), side="right")
    has_fill = filled_by > 0
    latest[has_fill] = np.maximum.accumulate(order)[filled_by[has_fill] - 1]
    held[has_fill] = wanted[latest[has_fill]]
    half_spread = np.where(crossed, 0.0, (ask - bid) / (2 * mid))[: wanted.size]
    costs = np.abs(np.diff(held, prepend=0.0)) * half_spread
    asset_returns = marked[1:] / marked[:-1] - 1.0
    strategy_returns = held * asset_returns - costs
    equity = np.concatenate([[1.0], np.cumprod(1.0 + strategy_returns)])
    return BacktestResult(held, asset_returns, costs, strategy_returns, equity, float(periods_per_year))
