"""Honest baselines for the HFT and LOBSTER protocols (`longstm.evaluate.hft`, `lobster_task`).

Each baseline implements the predictor interface the protocols use:

- `fit(inputs, targets)` (optional): learn from the training split. `inputs` is the
  protocol's view of the data (`HFTInputs` / `LOBInputs`): causal features or prices up to
  the last decision step, the decision steps, the lookback and the horizon.
- `predict(inputs)`: one prediction per decision step of `inputs`.

Regression baselines (HFT: the next-k-bar log return in basis points; ticks: the mid's
log return over the next Δ, `longstm.evaluate.ticks`):
    `ZeroReturn`, `Momentum`, `LinearAR`, `MeanReversion`.
Classification baselines (LOBSTER: −1 down, 0 flat, +1 up):
    `MajorityClass`, `Persistence`.
"""

from __future__ import annotations

import numpy as np

from longstm.errors import ConfigError, DataValidationError

RETURN_COLUMN = "log_return_bp"


class ZeroReturn:
    """Predicts a zero return: the random-walk forecast. Never trades in the backtest."""

    name = "zero"

    def predict(self, inputs) -> np.ndarray:
        return np.zeros(len(inputs.decision_steps), dtype=np.float64)


class Momentum:
    """Predicts that the last k-bar log return repeats (k = the forecast horizon).

    At decision step t the prediction is `log close[t] − log close[t−k]`, the sum of the last
    k one-bar returns, so its sign is the direction of the last k bars.
    """

    name = "momentum"

    def predict(self, inputs) -> np.ndarray:
        returns = inputs.features[:, inputs.column(RETURN_COLUMN)].astype(np.float64)
        cumulative = np.concatenate([[0.0], np.cumsum(returns)])
        steps = np.asarray(inputs.decision_steps)
        start = np.maximum(steps + 1 - inputs.horizon, 0)
        return cumulative[steps + 1] - cumulative[start]


class LinearAR:
    """Linear autoregression of the k-bar return on the last `lookback` one-bar returns.

    Fitted by least squares (or ridge, with `ridge > 0`) with an unpenalised intercept on the
    training split only.

    Args:
        ridge: L2 penalty on the lag coefficients (≥ 0). 0 means ordinary least squares.
        lags: how many of the most recent one-bar returns to use; default: the protocol's
            whole lookback.

    Example:

    >>> model = LinearAR(ridge=0.0)
    >>> model.fit(train_inputs, train_targets)       # doctest: +SKIP
    >>> predictions = model.predict(test_inputs)     # doctest: +SKIP
    """

    name = "ar"

    def __init__(self, ridge: float = 0.0, lags: int | None = None):
        if not np.isfinite(ridge) or ridge < 0:
            raise ConfigError(f"LinearAR ridge must be a finite number >= 0, got {ridge}")
        if lags is not None and (int(lags) != lags or lags < 1):
            raise ConfigError(f"LinearAR lags must be a positive integer or None, got {lags!r}")
        self.ridge = float(ridge)
        self.lags = lags
        self.coefficients: np.ndarray | None = None
        self.intercept: float = 0.0

    def _lag_matrix(self, inputs) -> np.ndarray:
        lags = self.lags or inputs.lookback
        if lags > inputs.lookback:
            raise ConfigError(f"LinearAR lags ({lags}) must not exceed the lookback ({inputs.lookback})")
        windows = inputs.windows()[:, :, inputs.column(RETURN_COLUMN)]
        return np.asarray(windows[:, -lags:], dtype=np.float64)

    def fit(self, inputs, targets) -> None:
        design = self._lag_matrix(inputs)
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if design.shape[0] != targets.size:
            raise DataValidationError(
                f"LinearAR.fit: {design.shape[0]} input windows but {targets.size} targets"
            )
        if design.shape[0] <= design.shape[1]:
            raise DataValidationError(
                f"LinearAR.fit: needs more training windows than lags, got {design.shape[0]} "
                f"windows for {design.shape[1]} lags"
            )
        # Centre so the intercept stays out of the penalty. Solve the (lags x lags) normal
        # equations: lagged returns are well conditioned, and an SVD of the whole
        # (windows x lags) design is ~50x slower on a busy CPU. lstsq on the small system
        # still gives the minimum-norm solution if a lag column is constant.
        design_mean = design.mean(axis=0)
        target_mean = targets.mean()
        centred = design - design_mean
        gram = centred.T @ centred + self.ridge * np.eye(centred.shape[1])
        coefficients, *_ = np.linalg.lstsq(gram, centred.T @ (targets - target_mean), rcond=None)
        self.coefficients = coefficients
        self.intercept = float(target_mean - design_mean @ coefficients)

    def predict(self, inputs) -> np.ndarray:
        if self.coefficients is None:
            raise RuntimeError("LinearAR.predict called before fit")
        return self._lag_matrix(inputs) @ self.coefficients + self.intercept


class MeanReversion:
    """Predicts that the price moves back toward its recent mean.

    The signal is the deviation of the log price from the mean of the last `lags + 1` log
    prices (now and `lags` steps back), built from the window of one-step returns:
    `log p_t − mean_k log p_{t−k} = mean_k (r_t + … + r_{t−k+1})`, k = 0..lags. The forecast is
    `−|beta| × signal`: its direction is fixed (it always bets on a return to the mean, so on a
    trending market it loses, which is what it is there to show); the training split only
    sets its size, `beta` by least squares through the origin.

    Args:
        lags: how many of the most recent one-step returns the mean spans; default: the
            protocol's whole lookback.

    Example:

    >>> model = MeanReversion(lags=5)
    >>> model.fit(train_inputs, train_targets)       # doctest: +SKIP
    >>> model.coefficients                           # doctest: +SKIP
    array([-0.021])
    """

    name = "meanrev"

    def __init__(self, lags: int | None = None):
        if lags is not None and (int(lags) != lags or lags < 1):
            raise ConfigError(f"MeanReversion lags must be a positive integer or None, got {lags!r}")
        self.lags = lags
        self.coefficients: np.ndarray | None = None

    def signal(self, inputs) -> np.ndarray:
        """The deviation of the log price from its recent mean, in the return column's units."""
        lags = self.lags or inputs.lookback
        if lags > inputs.lookback:
            raise ConfigError(f"MeanReversion lags ({lags}) must not exceed the lookback ({inputs.lookback})")
        returns = np.asarray(inputs.windows()[:, -lags:, inputs.column(RETURN_COLUMN)], dtype=np.float64)
        tail_sums = np.cumsum(returns[:, ::-1], axis=1)  # the move over the last 1, 2, ..., lags steps
        return tail_sums.sum(axis=1) / (lags + 1)

    def fit(self, inputs, targets) -> None:
        signal = self.signal(inputs)
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if signal.size != targets.size:
            raise DataValidationError(f"MeanReversion.fit: {signal.size} input windows but {targets.size} targets")
        energy = float(signal @ signal)
        beta = float(signal @ targets) / energy if energy > 0 else 0.0
        self.coefficients = np.array([-abs(beta)])

    def predict(self, inputs) -> np.ndarray:
        if self.coefficients is None:
            raise RuntimeError("MeanReversion.predict called before fit")
        return self.signal(inputs) * self.coefficients[0]


class MajorityClass:
    """Predicts the most frequent label of the training split (ties: the smallest label)."""

    name = "majority"

    def __init__(self):
        self.label: int | None = None

    def fit(self, inputs, targets) -> None:
        labels, counts = np.unique(np.asarray(targets), return_counts=True)
        if labels.size == 0:
            raise DataValidationError("MajorityClass.fit: no training labels")
        self.label = int(labels[np.argmax(counts)])

    def predict(self, inputs) -> np.ndarray:
        if self.label is None:
            raise RuntimeError("MajorityClass.predict called before fit")
        return np.full(len(inputs.decision_steps), self.label, dtype=np.int64)


class Persistence:
    """Predicts that the last completed move repeats.

    At event t the label of the window that ended at t is known: the mean of the k mid
    prices after event t−k against the mid at t−k. It uses mids up to t only.
    """

    name = "persistence"

    def predict(self, inputs) -> np.ndarray:
        steps = np.asarray(inputs.decision_steps)
        past = steps - inputs.horizon
        labels = np.zeros(steps.size, dtype=np.int64)
        known = past >= 0
        labels[known] = inputs.past_labels(past[known])
        return labels
