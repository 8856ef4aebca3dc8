"""Naive forecasters every model must beat (NumPy only, no TensorFlow).

Both take a batch of input windows `x` of shape `(batch, lookback, features)` and return
`(batch, horizon, targets)`:

- `RepeatLastForecaster`: every future step equals the last observed value (the "Repeat"
  rows of the DLinear paper).
- `MeanForecaster`: every future step equals the mean of the lookback window.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from longstm.errors import ConfigError
from longstm.models.checks import check_horizon

BASELINES = ("repeat", "mean")


class _WindowForecaster:
    def __init__(self, horizon: int, target_indices: Sequence[int] | None = None):
        self.horizon = check_horizon(horizon)
        self.target_indices = None if target_indices is None else [int(i) for i in target_indices]

    def _level(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_windows(self, x: np.ndarray) -> np.ndarray:
        """Forecasts `(batch, horizon, targets)` for input windows `x` `(batch, lookback, features)`."""
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[1] == 0:
            raise ConfigError(f"{type(self).__name__} expects windows of shape (batch, lookback, features), got {x.shape}")
        if self.target_indices is not None:
            x = x[:, :, self.target_indices]
        level = self._level(x)  # (batch, 1, targets)
        return np.broadcast_to(level, (x.shape[0], self.horizon, x.shape[2])).copy()


class RepeatLastForecaster(_WindowForecaster):
    """Predict the last value of the lookback window for every future step.

    Args:
        horizon: steps to forecast.
        target_indices: which input features to forecast (default all).

    Example:

    >>> RepeatLastForecaster(2).predict_windows(np.array([[[1.0], [3.0]]]))[0, :, 0].tolist()
    [3.0, 3.0]
    """

    def _level(self, x):
        return x[:, -1:, :]


class MeanForecaster(_WindowForecaster):
    """Predict the mean of the lookback window for every future step (see `RepeatLastForecaster`)."""

    def _level(self, x):
        return x.mean(axis=1, keepdims=True, dtype=np.float64).astype(x.dtype)


def make_baseline(name: str, horizon: int, target_indices: Sequence[int] | None = None) -> _WindowForecaster:
    """A baseline by name: `"repeat"` or `"mean"`."""
    classes = {"repeat": RepeatLastForecaster, "mean": MeanForecaster}
    if name not in classes:
        raise ConfigError(f"unknown baseline model {name!r}; expected one of {', '.join(BASELINES)}")
    return classes[name](horizon, target_indices)
