"""A NumPy copy of an LSTM/GRU stack with a Dense head: the model's numbers without TensorFlow per tick.

It pays no TensorFlow dispatch per tick, so at a few instruments it is the fastest engine; its
outputs equal the Keras model's (tested to < 1e-5). The weights come from the model itself
(`Forecaster.numpy_weights`), which says why when a model has no such form.
"""

from __future__ import annotations

import numpy as np

from longstm.errors import ConfigError


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class NumpyRNNStack:
    """An LSTM/GRU stack + Dense head in NumPy, built from a `Forecaster`'s `numpy_weights()`.

    Qualifies: a `Forecaster` whose core is a `KerasRNNStack` of `LSTM`/`GRU` layers or a
    `StackedLSTM` (residual connections and layer norms included), with default activations,
    and whose head is a linear `Dense`. The weights are copied when it is built: build a new
    one after changing them.

    Args:
        model: the forecaster.

    Example:

    >>> engine = NumpyRNNStack(model)
    >>> y, state = engine.step(x_t, state)        # (batch, features) -> (batch, outputs)
    """

    def __init__(self, model):
        weights = model.numpy_weights()
        if isinstance(weights, str):
            raise ConfigError(f"the NumPy streaming engine cannot run this model: {weights}")
        self.layers = []
        for layer in weights["layers"]:
            bias = layer["bias"]
            if layer["cell"] == "gru":
                input_bias, recurrent_bias = (bias[0], bias[1]) if bias is not None else (0.0, 0.0)
            else:
                input_bias, recurrent_bias = (0.0 if bias is None else bias), None
            self.layers.append(
                (layer["cell"], layer["kernel"], layer["recurrent_kernel"], input_bias, recurrent_bias, layer["units"],
                 layer["residual"], layer["norm"])
            )
        self.residual_inputs = weights["residual_inputs"]
        self.head_kernel = weights["head_kernel"]
        self.head_bias = weights["head_bias"] if weights["head_bias"] is not None else np.float32(0.0)

    @staticmethod
    def unsupported_reason(model) -> str | None:
        """None when `model` has a NumPy form, else why not."""
        weights = model.numpy_weights()
        return weights if isinstance(weights, str) else None

    @classmethod
    def supports(cls, model) -> bool:
        return cls.unsupported_reason(model) is None

    @staticmethod
    def _cell(kind, projected, layer_state, recurrent, recurrent_bias, units):
        """One recurrent step given the input projection `x W + b`: `(h, new_layer_state)`."""
        if kind == "lstm":
            h, c = layer_state
            z = projected + h @ recurrent
            i, f = _sigmoid(z[:, :units]), _sigmoid(z[:, units : 2 * units])
            g, o = np.tanh(z[:, 2 * units : 3 * units]), _sigmoid(z[:, 3 * units :])
            c = f * c + i * g
            h = o * np.tanh(c)
            return h, (h, c)
        (h,) = layer_state
        h_part = h @ recurrent + recurrent_bias
        z = _sigmoid(projected[:, :units] + h_part[:, :units])
        r = _sigmoid(projected[:, units : 2 * units] + h_part[:, units : 2 * units])
        candidate = np.tanh(projected[:, 2 * units :] + r * h_part[:, 2 * units :])
        h = z * h + (1.0 - z) * candidate
        return h, (h,)

    @staticmethod
    def _between_layers(outputs, layer_input, residual, norm):
        outputs = outputs + layer_input if residual else outputs
        if norm is not None:
            gamma, beta, epsilon = norm
            centred = outputs - outputs.mean(axis=-1, keepdims=True)
            variance = (centred * centred).mean(axis=-1, keepdims=True)
            outputs = centred / np.sqrt(variance + epsilon) * gamma + beta
        return outputs

    def _head(self, outputs, inputs):
        forecast = outputs @ self.head_kernel + self.head_bias
        if self.residual_inputs:
            forecast = forecast + np.tile(inputs[..., self.residual_inputs], forecast.shape[-1] // len(self.residual_inputs))
        return forecast

    def step(self, x_t: np.ndarray, state):
        """One tick: `x_t (batch, features)` -> `(forecast (batch, outputs), new_state)`."""
        outputs, new_state = x_t, []
        for (kind, kernel, recurrent, bias, recurrent_bias, units, residual, norm), layer_state in zip(self.layers, state):
            h, layer_state = self._cell(kind, outputs @ kernel + bias, layer_state, recurrent, recurrent_bias, units)
            new_state.append(layer_state)
            outputs = self._between_layers(h, outputs, residual, norm)
        return self._head(outputs, x_t), tuple(new_state)

    def run(self, xs: np.ndarray, state):
        """Many ticks `(ticks, batch, features)`, layer by layer: each layer's input projection is
        one matrix product over all ticks, so only `h U` stays inside the loop."""
        outputs, new_state = xs, []
        for (kind, kernel, recurrent, bias, recurrent_bias, units, residual, norm), layer_state in zip(self.layers, state):
            projected = outputs @ kernel + bias
            hidden = np.empty(outputs.shape[:-1] + (units,), np.float32)
            for t in range(len(projected)):
                hidden[t], layer_state = self._cell(kind, projected[t], layer_state, recurrent, recurrent_bias, units)
            new_state.append(layer_state)
            outputs = self._between_layers(hidden, outputs, residual, norm)
        return self._head(outputs, xs), tuple(new_state)
