"""Metrics of the HFT and LOBSTER protocols: direction, rank correlation, classes, trading.

Every function takes plain arrays and returns a Python float, so results go straight into
tables and JSON. Conventions that change numbers are stated in each docstring:

- `directional_accuracy` skips steps whose actual return is exactly zero (there is no
  direction to get right) and scores a zero prediction as half a hit (a forecaster that
  abstains is worth a coin flip, not a miss and not a hit).
- `information_coefficient` is Spearman's rank correlation; it is NaN when either side is
  constant (the zero-return baseline has no ranking to correlate).
- `sharpe_ratio` is 0 for a strategy whose returns never vary (flat, never trades).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr

from longstm.errors import DataValidationError


def _paired(predictions, actuals, name: str) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    actuals = np.asarray(actuals, dtype=np.float64).reshape(-1)
    if predictions.shape != actuals.shape:
        raise DataValidationError(
            f"{name}: predictions and actuals must have the same length, "
            f"got {predictions.size} predictions and {actuals.size} actuals"
        )
    if predictions.size == 0:
        raise DataValidationError(f"{name}: needs at least one (prediction, actual) pair, got none")
    if not (np.isfinite(predictions).all() and np.isfinite(actuals).all()):
        raise DataValidationError(f"{name}: predictions and actuals must be finite, got NaN or inf")
    return predictions, actuals


def directional_accuracy(predictions, actuals) -> float:
    """Share of steps where the sign of the prediction matches the sign of the actual.

    Steps with an actual of exactly zero are left out; a prediction of exactly zero scores
    0.5. So the zero-return forecaster scores 0.5, and the score of a forecaster that always
    takes a side is its hit rate over the steps that moved.

    Args:
        predictions: predicted returns (or any signed score), shape `(n,)`.
        actuals: realised returns, shape `(n,)`.

    Returns:
        A float in [0, 1]; NaN when every actual is zero.
    """
    predictions, actuals = _paired(predictions, actuals, "directional_accuracy")
    moved = actuals != 0
    if not moved.any():
        return math.nan
    predicted_sign = np.sign(predictions[moved])
    actual_sign = np.sign(actuals[moved])
    score = np.where(predicted_sign == 0, 0.5, (predicted_sign == actual_sign).astype(np.float64))
    return float(score.mean())


def information_coefficient(predictions, actuals) -> float:
    """Spearman rank correlation between predictions and actuals (`scipy.stats.spearmanr`).

    Returns:
        A float in [-1, 1]; NaN when either input is constant.
    """
    predictions, actuals = _paired(predictions, actuals, "information_coefficient")
    if predictions.size < 2 or np.ptp(predictions) == 0 or np.ptp(actuals) == 0:
        return math.nan
    return float(spearmanr(predictions, actuals).statistic)


def mean_squared_error(predictions, actuals) -> float:
    """Mean of (prediction − actual)²."""
    predictions, actuals = _paired(predictions, actuals, "mean_squared_error")
    return float(np.mean((predictions - actuals) ** 2))


def accuracy(predicted_labels, true_labels) -> float:
    """Share of exactly matching labels."""
    predicted_labels, true_labels = _paired(predicted_labels, true_labels, "accuracy")
    return float(np.mean(predicted_labels == true_labels))


def class_f1_scores(predicted_labels, true_labels, labels) -> dict:
    """F1 score of each class in `labels` (NaN for a class never predicted and never true).

    F1 = 2·TP / (predicted + true), the harmonic mean of precision and recall.
    """
    predicted_labels, true_labels = _paired(predicted_labels, true_labels, "class_f1_scores")
    scores = {}
    for label in labels:
        predicted = predicted_labels == label
        true = true_labels == label
        denominator = predicted.sum() + true.sum()
        scores[label] = math.nan if denominator == 0 else float(2.0 * np.sum(predicted & true) / denominator)
    return scores


def macro_f1(predicted_labels, true_labels, labels=None) -> float:
    """Unweighted mean over classes of the F1 score (hand-written; scikit-learn is not a dependency).

    Args:
        predicted_labels: predicted class of each step.
        true_labels: true class of each step.
        labels: the classes to average over. Default: every class that occurs in either
            input. A class that is never predicted and never true is left out; a class that
            is true but never predicted (or the reverse) scores F1 = 0.

    Returns:
        A float in [0, 1].
    """
    predicted_labels, true_labels = _paired(predicted_labels, true_labels, "macro_f1")
    if labels is None:
        labels = np.union1d(np.unique(predicted_labels), np.unique(true_labels))
    scores = [score for score in class_f1_scores(predicted_labels, true_labels, labels).values() if not math.isnan(score)]
    return float(np.mean(scores)) if scores else math.nan


def sharpe_ratio(period_returns, periods_per_year: float) -> float:
    """Annualised Sharpe ratio (zero risk-free rate): mean / std × sqrt(periods per year).

    Args:
        period_returns: the strategy's simple return in each period, shape `(n,)`.
        periods_per_year: how many such periods make a year (525,600 for 1-minute bars of
            a market that trades around the clock).

    Returns:
        The ratio; 0.0 when the returns never vary (a strategy that never trades).
    """
    returns = np.asarray(period_returns, dtype=np.float64).reshape(-1)
    if periods_per_year <= 0:
        raise DataValidationError(f"sharpe_ratio: periods_per_year must be > 0, got {periods_per_year}")
    if returns.size < 2:
        return math.nan
    spread = returns.std(ddof=1)
    if spread == 0 or not np.isfinite(spread):
        return 0.0
    return float(returns.mean() / spread * math.sqrt(periods_per_year))


def max_drawdown(equity) -> float:
    """Largest fall from a running peak, as a fraction of that peak (0.25 = lost 25%).

    Args:
        equity: the equity curve, shape `(n,)`, positive values (start it at 1.0).

    Returns:
        A float in [0, 1]; 0 for a curve that never falls.
    """
    equity = np.asarray(equity, dtype=np.float64).reshape(-1)
    if equity.size == 0:
        raise DataValidationError("max_drawdown: the equity curve is empty")
    running_peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / running_peak))


def json_safe(row: dict) -> dict:
    """A metrics row for strict JSON: float NaN and infinities (an IC with nothing to rank) become None.

    Example:

    >>> json_safe({"model": "zero", "ic": float("nan"), "mse": 0.5})
    {'model': 'zero', 'ic': None, 'mse': 0.5}
    """
    return {key: (None if isinstance(value, float) and not math.isfinite(value) else value) for key, value in row.items()}
