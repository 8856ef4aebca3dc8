"""`MinRNNStack`: residual blocks of minLSTM/minGRU recurrences (`longstm.models.minrnn`) with
pre-norm and a gated MLP, behind the state protocol."""

from __future__ import annotations

import keras
from keras import ops

from longstm.errors import DataValidationError
from longstm.models.checks import check_choice, check_fraction, check_positive_int
from longstm.models.minrnn import CELLS, MODES, MinGRU, MinLSTM
from longstm.models.protocol import RecurrentModel, State
from longstm.models.scan import SCAN_METHODS

NORMS = ("rms", "layer", None)


def _recurrence_class(cell: str):
    return {"minlstm": MinLSTM, "mingru": MinGRU}[cell]


@keras.saving.register_keras_serializable(package="longstm")
class MinRNNStack(RecurrentModel):
    """Residual blocks of minLSTM/minGRU (pre-norm, optional gated MLP) behind the state protocol.

        x = Dense(units)(inputs)                                    # input projection
        for each block:
            x = x + Dropout(Dense(units)(rnn(norm(x))))             # recurrence, signed output
            x = x + Dropout(MLP(norm(x)))                           # when mlp_ratio > 0
        outputs = norm(x)

    The recurrence's h is positive, so a linear projection after it gives the residual stream
    a sign. MLP(x) = Dense(units)(silu(x W_gate) * (x W_value)), hidden width
    `mlp_ratio * units` (a SwiGLU). Every op but the recurrence works on one step at a time,
    so the stack is causal and chunking with carried state equals the full forward.

    Args:
        units: width of the residual stream and of every recurrence (positive integer).
        layers: number of blocks (positive integer).
        cell: `"minlstm"` or `"mingru"`.
        norm: `"rms"` (RMS norm), `"layer"` (layer norm) or `None`.
        mlp_ratio: hidden width of the gated MLP in units of `units`; 0 for no MLP.
        dropout: fraction dropped on each residual branch during training.
        mode, scan: passed to every recurrence (see `MinLSTM`).

    Call arguments:
        inputs: `(batch, steps, features)`.
        state: a tuple with one `(h,)` per block, each `(batch, units)`; `None` for zeros.
        training: turns dropout on.

    Returns:
        `(outputs, new_state)`: `(batch, steps, units)` and the state after the last step.

    Example:

    >>> model = Forecaster(MinRNNStack(64, layers=3, cell="mingru"), outputs=1)
    >>> state = model.initial_state(16)
    >>> for chunk in chunks:
    ...     y, state = model(chunk, state=state)
    """

    def __init__(
        self,
        units: int,
        layers: int = 2,
        cell: str = "minlstm",
        norm: str | None = "rms",
        mlp_ratio: int = 2,
        dropout: float = 0.0,
        mode: str = "parallel",
        scan: str = "blocked",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_positive_int("MinRNNStack", "units", units)
        self.num_layers = check_positive_int("MinRNNStack", "layers", layers)
        self.cell = check_choice("MinRNNStack", "cell", cell, CELLS)
        self.norm = check_choice("MinRNNStack", "norm", norm, NORMS)
        self.mlp_ratio = check_positive_int("MinRNNStack", "mlp_ratio", mlp_ratio, minimum=0)
        self.dropout = check_fraction("MinRNNStack", "dropout", dropout)
        self.mode = check_choice("MinRNNStack", "mode", mode, MODES)
        self.scan = check_choice("MinRNNStack", "scan", scan, SCAN_METHODS)

        recurrence = _recurrence_class(self.cell)
        self.input_projection = keras.layers.Dense(units, name="input_projection")
        self.recurrences = [recurrence(units, mode=mode, scan=scan, name=f"{cell}_{i}") for i in range(layers)]
        self.output_projections = [keras.layers.Dense(units, name=f"rnn_out_{i}") for i in range(layers)]
        self.rnn_norms = [self._make_norm(f"rnn_norm_{i}") for i in range(layers)]
        self.mlp_norms, self.mlp_gates, self.mlp_outputs = [], [], []
        if self.mlp_ratio:
            hidden = self.mlp_ratio * units
            self.mlp_norms = [self._make_norm(f"mlp_norm_{i}") for i in range(layers)]
            self.mlp_gates = [keras.layers.Dense(2 * hidden, name=f"mlp_in_{i}") for i in range(layers)]
            self.mlp_outputs = [keras.layers.Dense(units, name=f"mlp_out_{i}") for i in range(layers)]
        self.final_norm = self._make_norm("final_norm")
        self.drop = keras.layers.Dropout(self.dropout, name="dropout") if self.dropout else None

    def _make_norm(self, name: str):
        if self.norm == "rms":
            return keras.layers.RMSNormalization(name=name)
        if self.norm == "layer":
            return keras.layers.LayerNormalization(name=name)
        return None

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise DataValidationError(
                f"MinRNNStack expects inputs of shape (batch, steps, features) with a known number of "
                f"features; got shape {tuple(input_shape)}."
            )
        stream_shape = tuple(input_shape[:2]) + (self.units,)
        self.input_projection.build(input_shape)
        for index in range(self.num_layers):
            for layer in (self.rnn_norms[index], self.recurrences[index], self.output_projections[index]):
                if layer is not None:
                    layer.build(stream_shape)
            if self.mlp_ratio:
                for layer in (self.mlp_norms[index], self.mlp_gates[index]):
                    if layer is not None:
                        layer.build(stream_shape)
                self.mlp_outputs[index].build(tuple(input_shape[:2]) + (self.mlp_ratio * self.units,))
        if self.final_norm is not None:
            self.final_norm.build(stream_shape)
        self.built = True

    def initial_state(self, batch_size: int) -> State:
        return tuple(recurrence.initial_state(batch_size) for recurrence in self.recurrences)

    def _branch(self, x, training):
        return self.drop(x, training=training) if self.drop is not None else x

    def call(self, inputs, state=None, training=None):
        if state is None:
            state = self.initial_state(ops.shape(inputs)[0])
        if not isinstance(state, (tuple, list)) or len(state) != self.num_layers:
            got = len(state) if isinstance(state, (tuple, list)) else type(state).__name__
            raise DataValidationError(
                f"MinRNNStack state must have one (h,) per block: expected {self.num_layers} entries; got {got}."
            )
        return self._blocks(inputs, state, training, lambda recurrence, x, s: recurrence(x, state=s, training=training))

    def step(self, x_t, state):
        """One step: every block on `(batch, units)`, each recurrence through its own `step`."""
        return self._blocks(x_t, state, False, lambda recurrence, x, s: recurrence.step(x, s))

    def _blocks(self, inputs, state, training, run_recurrence):
        """The residual blocks over `inputs` (a chunk or one step); `run_recurrence(layer, x, state)`."""
        x = self.input_projection(inputs)
        new_state = []
        for index, recurrence in enumerate(self.recurrences):
            norm = self.rnn_norms[index]
            h, layer_state = run_recurrence(recurrence, norm(x) if norm is not None else x, state[index])
            x = x + self._branch(self.output_projections[index](h), training)
            new_state.append(layer_state)
            if self.mlp_ratio:
                norm = self.mlp_norms[index]
                gate, value = ops.split(self.mlp_gates[index](norm(x) if norm is not None else x), 2, axis=-1)
                x = x + self._branch(self.mlp_outputs[index](ops.silu(gate) * value), training)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, tuple(new_state)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            layers=self.num_layers,
            cell=self.cell,
            norm=self.norm,
            mlp_ratio=self.mlp_ratio,
            dropout=self.dropout,
            mode=self.mode,
            scan=self.scan,
        )
        return config
