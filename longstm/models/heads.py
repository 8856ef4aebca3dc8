"""Forecasting heads: what a recurrent core's per-step features are turned into.

Each head is a Keras layer applied to `(batch, steps, features)` at every step, so it plugs
into `protocol.Forecaster(core, head=...)` and keeps the model causal:

- `NextStepHead`: the next value of each target, `(batch, steps, targets)`.
- `MultiHorizonHead`: H future values at once ("direct" multi-horizon forecasting, no
  feeding predictions back), `(batch, steps, horizons, targets)`.
- `QuantileHead`: quantiles of each future value, `(batch, steps, horizons, targets,
  quantiles)`, non-crossing by construction; train it with `losses.PinballLoss`.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from longstm.models.checks import check_positive_int, check_quantiles


@keras.saving.register_keras_serializable(package="longstm")
class NextStepHead(keras.layers.Layer):
    """One-step-ahead forecast: a linear map of each step's features.

    Args:
        targets: number of values predicted per step.

    Call arguments:
        inputs: `(batch, steps, features)`.

    Returns:
        `(batch, steps, targets)`: at step t, the forecast of the targets at step t + 1.
    """

    def __init__(self, targets: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.targets = check_positive_int("NextStepHead", "targets", targets)
        self.dense = keras.layers.Dense(self.targets, name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        return self.dense(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.targets,)

    def get_config(self):
        return super().get_config() | {"targets": self.targets}


@keras.saving.register_keras_serializable(package="longstm")
class MultiHorizonHead(keras.layers.Layer):
    """Direct multi-horizon forecast: all of steps t+1 .. t+H predicted at once at step t.

    Args:
        horizons: number of future steps H predicted at every step.
        targets: number of values per future step.
        hidden: width of an optional ReLU layer before the output (0 for a linear head).

    Call arguments:
        inputs: `(batch, steps, features)`.

    Returns:
        `(batch, steps, horizons, targets)`; `[:, t, h]` forecasts step `t + 1 + h`.
    """

    def __init__(self, horizons: int, targets: int = 1, hidden: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.horizons = check_positive_int("MultiHorizonHead", "horizons", horizons)
        self.targets = check_positive_int("MultiHorizonHead", "targets", targets)
        self.hidden = check_positive_int("MultiHorizonHead", "hidden", hidden, minimum=0)
        self.hidden_layer = keras.layers.Dense(hidden, activation="relu", name="hidden") if hidden else None
        self.dense = keras.layers.Dense(self.horizons * self.targets, name="dense")

    def build(self, input_shape):
        if self.hidden_layer is not None:
            self.hidden_layer.build(input_shape)
            input_shape = tuple(input_shape[:-1]) + (self.hidden,)
        self.dense.build(input_shape)

    def call(self, inputs):
        features = self.hidden_layer(inputs) if self.hidden_layer is not None else inputs
        flat = self.dense(features)
        shape = ops.shape(flat)
        return ops.reshape(flat, (shape[0], shape[1], self.horizons, self.targets))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.horizons, self.targets)

    def get_config(self):
        return super().get_config() | {"horizons": self.horizons, "targets": self.targets, "hidden": self.hidden}


@keras.saving.register_keras_serializable(package="longstm")
class QuantileHead(keras.layers.Layer):
    """Quantile forecasts of the next `horizons` steps, non-crossing by construction.

    The lowest quantile is predicted directly; each higher one adds a softplus (positive)
    increment, so the predicted quantiles are always in increasing order.

    Args:
        quantiles: strictly increasing levels in (0, 1), e.g. `(0.1, 0.5, 0.9)`.
        horizons: number of future steps predicted at every step.
        targets: number of values per future step.

    Call arguments:
        inputs: `(batch, steps, features)`.

    Returns:
        `(batch, steps, horizons, targets, len(quantiles))`.

    Example:

    >>> head = QuantileHead((0.1, 0.5, 0.9), horizons=24)
    >>> model = Forecaster(StackedLSTM(64, layers=2), head=head)
    >>> loss = PinballLoss((0.1, 0.5, 0.9))
    """

    def __init__(self, quantiles: Sequence[float] = (0.1, 0.5, 0.9), horizons: int = 1, targets: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.quantiles = check_quantiles("QuantileHead", quantiles)
        self.horizons = check_positive_int("QuantileHead", "horizons", horizons)
        self.targets = check_positive_int("QuantileHead", "targets", targets)
        self.dense = keras.layers.Dense(self.horizons * self.targets * len(self.quantiles), name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        flat = self.dense(inputs)
        shape = ops.shape(flat)
        raw = ops.reshape(flat, (shape[0], shape[1], self.horizons, self.targets, len(self.quantiles)))
        lowest = raw[..., :1]
        increments = ops.softplus(raw[..., 1:])
        return ops.concatenate([lowest, lowest + ops.cumsum(increments, axis=-1)], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.horizons, self.targets, len(self.quantiles))

    def get_config(self):
        return super().get_config() | {
            "quantiles": list(self.quantiles),
            "horizons": self.horizons,
            "targets": self.targets,
        }
