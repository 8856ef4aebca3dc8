"""A stack of LSTM layers behind longstm's state protocol: chunked TBPTT done right.

Chunks of a long series are run one after the other with each layer's `(h, c)` carried from
the end of one chunk to the start of the next. The layers are plain `keras.layers.LSTM`
called with `initial_state`, so Keras' fused/cuDNN kernel stays usable.
"""

from __future__ import annotations

import keras
from keras import ops

from longstm.models.cells import cells_step, numpy_cells
from longstm.models.checks import check_fraction, check_positive_int
from longstm.models.protocol import RecurrentModel, State, build_sublayer


@keras.saving.register_keras_serializable(package="longstm")
class StackedLSTM(RecurrentModel):
    """`layers` LSTM layers of `units` units each, with their states carried between chunks.

    Between two layers the model can add a residual connection (`y = lstm(x) + x`, from the
    second layer on, where input and output widths match), a layer norm, and dropout on the
    next layer's input. None of them mixes time steps, so the model stays causal and a chunked
    forward with carried state equals the full-sequence forward (up to float rounding).

    Args:
        units: width of every layer (positive integer).
        layers: number of LSTM layers (positive integer).
        residual: add each layer's input to its output, from the second layer on.
        layer_norm: normalise the output of every layer but the last.
        dropout: fraction of the inputs of layers 2..n dropped during training.

    Call arguments:
        inputs: `(batch, steps, features)`.
        state: a tuple with one `(h, c)` per layer, each `(batch, units)`; `None` for zeros.
        training: turns dropout on.

    Returns:
        `(outputs, new_state)`: the last layer's outputs `(batch, steps, units)` and the
        state after the last step.

    Example:

    >>> model = StackedLSTM(64, layers=2, residual=True, layer_norm=True)
    >>> state = model.initial_state(16)
    >>> for chunk in chunks:                      # (16, 256, features) each
    ...     outputs, state = model(chunk, state=state)
    """

    def __init__(
        self,
        units: int,
        layers: int = 1,
        residual: bool = False,
        layer_norm: bool = False,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_positive_int("StackedLSTM", "units", units)
        self.num_layers = check_positive_int("StackedLSTM", "layers", layers)
        self.residual = bool(residual)
        self.layer_norm = bool(layer_norm)
        self.dropout = check_fraction("StackedLSTM", "dropout", dropout)
        self.lstm_layers = [
            keras.layers.LSTM(units, return_sequences=True, return_state=True, name=f"lstm_{index}")
            for index in range(self.num_layers)
        ]
        between = self.num_layers - 1
        self.norms = [keras.layers.LayerNormalization(name=f"norm_{i}") for i in range(between)] if layer_norm else []
        self.dropouts = [keras.layers.Dropout(self.dropout, name=f"dropout_{i}") for i in range(between)] if self.dropout else []

    def build(self, input_shape):
        # Each layer in the order `call` runs them: layer 0 reads the inputs, every later one
        # (and every norm) `units` features.
        layer_input = tuple(input_shape)
        for index, lstm in enumerate(self.lstm_layers):
            build_sublayer(lstm, layer_input)
            layer_input = tuple(input_shape[:2]) + (self.units,)
            if index < self.num_layers - 1 and self.norms:
                build_sublayer(self.norms[index], layer_input)
        self.built = True

    def initial_state(self, batch_size: int) -> State:
        return tuple(
            (ops.zeros((batch_size, self.units), self.compute_dtype), ops.zeros((batch_size, self.units), self.compute_dtype))
            for _ in range(self.num_layers)
        )

    def call(self, inputs, state=None, training=None):
        if state is None:
            state = self.initial_state(ops.shape(inputs)[0])
        if len(state) != self.num_layers:
            raise ValueError(
                f"StackedLSTM state must have one (h, c) per layer: expected {self.num_layers} entries; got {len(state)}."
            )
        outputs = inputs
        new_state = []
        for index, (lstm, (h, c)) in enumerate(zip(self.lstm_layers, state)):
            layer_input = outputs
            if index > 0 and self.dropouts:
                layer_input = self.dropouts[index - 1](layer_input, training=training)
            outputs, h, c = lstm(layer_input, initial_state=[h, c], training=training)
            if index > 0 and self.residual:
                outputs = outputs + layer_input
            if index < self.num_layers - 1 and self.norms:
                outputs = self.norms[index](outputs)
            new_state.append((h, c))
        return outputs, tuple(new_state)

    def _cell_stack(self):
        """`(layer, residual, norm)` per layer: what one step does (dropout is off when serving)."""
        last = self.num_layers - 1
        return [
            (layer, self.residual and index > 0, self.norms[index] if self.norms and index < last else None)
            for index, layer in enumerate(self.lstm_layers)
        ]

    def step(self, x_t, state):
        # The cells' arithmetic: no `while` loop for a single step.
        return cells_step(self._cell_stack(), x_t, state)

    def numpy_layers(self):
        return numpy_cells(self._cell_stack(), type(self).__name__)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            layers=self.num_layers,
            residual=self.residual,
            layer_norm=self.layer_norm,
            dropout=self.dropout,
        )
        return config
