"""Forecast error metrics.

`mse`/`mae` take whole arrays; `ErrorAccumulator` sums batch by batch in float64 so an
evaluation never holds all predictions at once, and gives the same mean as concatenating them.
"""

from __future__ import annotations

import numpy as np

from longstm.errors import DataValidationError


def _pair(prediction, target) -> tuple[np.ndarray, np.ndarray]:
    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    if prediction.shape != target.shape:
        raise DataValidationError(f"prediction shape {prediction.shape} does not match target shape {target.shape}")
    return prediction, target


def mse(prediction, target) -> float:
    """Mean squared error over all elements."""
    prediction, target = _pair(prediction, target)
    return float(np.mean((prediction - target) ** 2))


def mae(prediction, target) -> float:
    """Mean absolute error over all elements."""
    prediction, target = _pair(prediction, target)
    return float(np.mean(np.abs(prediction - target)))


class ErrorAccumulator:
    """Running MSE and MAE over batches (float64 sums).

    Example:

    >>> errors = ErrorAccumulator()
    >>> errors.update(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    >>> errors.mse, errors.mae
    (2.5, 1.5)
    """

    def __init__(self):
        self.squared = 0.0
        self.absolute = 0.0
        self.count = 0

    def update(self, prediction, target) -> None:
        prediction, target = _pair(prediction, target)
        error = prediction - target
        self.squared += float(np.sum(error * error))
        self.absolute += float(np.sum(np.abs(error)))
        self.count += error.size

    def _mean(self, total: float) -> float:
        if self.count == 0:
            raise DataValidationError("no predictions were scored (0 windows)")
        return total / self.count

    @property
    def mse(self) -> float:
        return self._mean(self.squared)

    @property
    def mae(self) -> float:
        return self._mean(self.absolute)
