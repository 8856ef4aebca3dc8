"""Losses for probabilistic forecasts: the pinball (quantile) loss."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from longstm.models.checks import check_quantiles


def pinball_loss(y_true, y_pred, quantiles: Sequence[float]):
    """Mean pinball loss of quantile forecasts.

    For level q and error e = y - ŷ the loss is max(q·e, (q-1)·e): under-forecasts cost q per
    unit, over-forecasts 1 - q, so its minimiser is the q-quantile of y.

    Args:
        y_true: targets, shape `S` (any).
        y_pred: quantile forecasts, shape `S + (len(quantiles),)`.
        quantiles: the levels of the last axis of `y_pred`.

    Returns:
        The mean over all elements and quantiles; per-sample reduction is left to callers.
    """
    levels = ops.convert_to_tensor(list(quantiles), dtype=y_pred.dtype)
    errors = ops.expand_dims(ops.cast(y_true, y_pred.dtype), -1) - y_pred
    return ops.mean(ops.maximum(levels * errors, (levels - 1.0) * errors))


@keras.saving.register_keras_serializable(package="longstm")
class PinballLoss(keras.losses.Loss):
    """The pinball (quantile) loss as a Keras loss, for models ending in `QuantileHead`.

    Args:
        quantiles: strictly increasing levels in (0, 1), the last axis of the predictions.

    Call arguments:
        y_true: targets of shape `S`.
        y_pred: forecasts of shape `S + (len(quantiles),)`.

    Example:

    >>> loss = PinballLoss((0.1, 0.5, 0.9))
    >>> loss(y, model_output)      # y: (batch, steps, horizons, targets)
    """

    def __init__(self, quantiles: Sequence[float] = (0.1, 0.5, 0.9), name: str = "pinball", **kwargs):
        super().__init__(name=name, **kwargs)
        self.quantiles = check_quantiles("PinballLoss", quantiles)

    def call(self, y_true, y_pred):
        levels = ops.convert_to_tensor(list(self.quantiles), dtype=y_pred.dtype)
        errors = ops.expand_dims(ops.cast(y_true, y_pred.dtype), -1) - y_pred
        # Mean over quantiles here; Keras' reduction averages the rest.
        return ops.mean(ops.maximum(levels * errors, (levels - 1.0) * errors), axis=-1)

    def get_config(self):
        return super().get_config() | {"quantiles": list(self.quantiles)}
