"""A linear skip over the last `lags` inputs, beside any recurrent core, carried as state.

Why: on long-horizon benchmarks such as ETT, a linear map over the raw look-back window
(DLinear/NLinear, L=336) beats an LSTM(64) by a wide margin (MSE about 0.37 against
0.45 on ETTh1 at H=96). The LSTM has to squeeze the recent past into 64 numbers and loses its
exact shape (yesterday's daily cycle, last week's level); a linear map over the window reads
it directly. `LinearLagSkip` gives a recurrent model both: at every step t the core's output
is concatenated with a learned linear projection of the window x[t - lags + 1 .. t], so a
`Forecaster`'s Dense head computes

    forecast(t) = last value (model.residual) + linear(window(t)) + f(recurrent state(t))

-- NLinear with a recurrent correction. (NLinear subtracts the last value from the window
before its map; with the last value inside the window, this map can represent that too.)

The window is not materialised: the projection is a `Conv1D(width, kernel_size=lags,
padding="valid")` over the previous `lags - 1` inputs (the carried buffer) followed by the
chunk. The buffer is part of the state, so chunked processing with carried state, lane
resets, checkpoints and streaming work as for any other model. At the start of a series (or
after a lane reset) the buffer is zeros: the first `lags - 1` steps see a zero-padded window.
The projection's weights get their full gradient whatever the TBPTT chunk length, because
the buffer holds data, not anything computed from weights.

Relative inputs (`relative=True`, config `lag_relative = true`): the core reads the step
changes x_t - x_{t-1} and the window is taken relative to the current value, x - x_t, as
NLinear does. The model then sees no levels at all: shifting a series (and its carried buffer)
by a constant leaves every output unchanged, and with `model.residual` the forecast moves by
exactly that constant. Why (the RevIN / NLinear argument; the ETT gain below is measured, this
explanation of it is not): ETT's validation and test months sit at other levels than its
training months, and a level-reading LSTM must extrapolate there, a level-free one need not. It needs `lags >= 2` (the previous input comes from the buffer).

Config: `[model] lags = L` (0: off), `lag_width` and `lag_relative` wrap the core of any model
(`longstm.models.registry.build_model`). Streaming runs on the TensorFlow engine (the NumPy
engine copies only plain LSTM/GRU stacks).

Measured (docs/RESULTS.md, ETT protocol, channel-independent, L = 336, CPU, one run each):
on ETTh1 at H = 96 the LSTM(64) alone scores test MSE 0.462, with `lags = 336` 0.392, and with
`relative=True` as well 0.374 (`configs/ett_lstm_lags_ci.toml`: 0.374 / 0.411 / 0.436 / 0.457
at H = 96 / 192 / 336 / 720, against DLinear's published 0.375 / 0.405 / 0.439 / 0.472).
"""

from __future__ import annotations

import keras
from keras import ops

from longstm.errors import ConfigError
from longstm.models.protocol import RecurrentModel, State, build_core, build_sublayer
from longstm.models.checks import check_positive_int


@keras.saving.register_keras_serializable(package="longstm")
class LinearLagSkip(RecurrentModel):
    """A recurrent core plus a linear projection of its last `lags` inputs at every step.

    The state is `(core_state, buffer)`: the core's own state and the previous `lags - 1`
    inputs, `(batch, lags - 1, features)`, zeros at the start. Running chunks one after the
    other with the returned state equals running them at once (any chunk lengths, also
    shorter than `lags`); the output at step t depends on no input after t.

    Args:
        core: any longstm `RecurrentModel`, run on the inputs unchanged.
        lags: window length L >= 1: the projection at step t reads x[t - L + 1 .. t].
        width: number of projected values per step (>= 1). A `Dense(H)` head over them
            makes the window's contribution a linear map of rank <= `width` to the H
            outputs; `width >= H` allows any linear map (exact NLinear capacity).
        features: input features per step. Needed for `initial_state` before the model
            has been called once (the buffer's shape); read from the inputs otherwise.
        relative: feed the core x_t - x_{t-1} instead of x_t and project the window
            relative to x_t (see the module docstring); needs `lags >= 2`.

    Call arguments:
        inputs: `(batch, steps, features)`.
        state: `(core_state, buffer)` as returned by `initial_state` or a previous call;
            `None` for zeros.
        training: passed to the core.

    Returns:
        `(outputs, new_state)`: `outputs` is `concat(core_outputs, projection)` on the last
        axis, `(batch, steps, core_units + width)`; `new_state` is `(core_state, buffer)`
        after the last step.

    Example:

    >>> core = KerasRNNStack([keras.layers.LSTM(64)])
    >>> model = Forecaster(LinearLagSkip(core, lags=336, width=64, features=1), outputs=96, residual_inputs=[0])
    >>> state = model.initial_state(16)
    >>> for chunk in chunks:                          # (16, steps, 1) each, any steps
    ...     forecast, state = model(chunk, state=state)
    """

    def __init__(
        self, core: RecurrentModel, lags: int, width: int = 64, features: int | None = None, relative: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        if isinstance(core, dict):
            core = keras.saving.deserialize_keras_object(core)
        if not isinstance(core, RecurrentModel):
            raise ConfigError(f"LinearLagSkip argument `core` must be a longstm RecurrentModel; got {type(core).__name__}.")
        self.core = core
        self.lags = check_positive_int("LinearLagSkip", "lags", lags)
        self.width = check_positive_int("LinearLagSkip", "width", width)
        self.features = None if features is None else check_positive_int("LinearLagSkip", "features", features)
        if not isinstance(relative, bool):
            raise ConfigError(f"LinearLagSkip argument `relative` must be True or False; got {relative!r}.")
        if relative and self.lags < 2:
            raise ConfigError(
                f"LinearLagSkip(relative=True) needs lags >= 2 (the previous input comes from the buffer); got lags={self.lags}."
            )
        self.relative = relative
        self.projection = keras.layers.Conv1D(width, kernel_size=lags, padding="valid", name="lag_projection")

    def build(self, input_shape):
        # As `call` runs them: the projection over the previous lags - 1 inputs and the chunk,
        # then the core on the inputs (or their step changes, the same width).
        batch, steps, features = tuple(input_shape)
        build_sublayer(self.projection, (batch, None if steps is None else self.lags - 1 + steps, features))
        build_core(self.core, input_shape)
        self.built = True

    @property
    def period(self) -> int:
        """The multiple of steps the core's chunks need (a HierarchicalLSTM's period; else 1)."""
        return getattr(self.core, "period", 1)

    def initial_state(self, batch_size: int) -> State:
        buffer = ops.zeros((batch_size, self.lags - 1, self._features()), self.compute_dtype)
        return (self.core.initial_state(batch_size), buffer)

    def _features(self) -> int:
        if self.projection.built:
            return int(self.projection.kernel.shape[1])
        if self.features is None:
            raise ConfigError(
                "LinearLagSkip.initial_state needs the number of input features for its buffer: pass "
                "`features=` or call the model once on a chunk (state=None works) first."
            )
        return self.features

    def call(self, inputs, state=None, training=None):
        core_state, inputs, joined = self._joined(inputs, state)
        projection = self._relative(self.projection(joined), inputs)
        core_outputs, core_state = self.core(self._core_inputs(inputs, joined), state=core_state, training=training)
        outputs = ops.concatenate([core_outputs, ops.cast(projection, core_outputs.dtype)], axis=-1)
        return outputs, (core_state, self._next_buffer(joined))

    def last_step(self, inputs, state=None, training=None):
        """As `call` at the last step only: the core's `last_step` and the last window's projection."""
        core_state, inputs, joined = self._joined(inputs, state)
        projection = self._relative(self.projection(joined[:, -self.lags :])[:, 0], inputs[:, -1])
        core_outputs, core_state = self.core.last_step(self._core_inputs(inputs, joined), state=core_state, training=training)
        outputs = ops.concatenate([core_outputs, ops.cast(projection, core_outputs.dtype)], axis=-1)
        return outputs, (core_state, self._next_buffer(joined))

    def _joined(self, inputs, state):
        """`(core_state, inputs, joined)`: the previous lags - 1 inputs, then the chunk."""
        if state is None:
            core_state = None
            buffer = ops.zeros((ops.shape(inputs)[0], self.lags - 1, ops.shape(inputs)[-1]), self.compute_dtype)
        else:
            if len(state) != 2:
                raise ValueError(f"LinearLagSkip state must be (core_state, buffer); got {len(state)} entries.")
            core_state, buffer = state
        expected = (self.lags - 1, inputs.shape[-1])
        if tuple(buffer.shape[1:]) != expected and None not in buffer.shape[1:] and inputs.shape[-1] is not None:
            raise ValueError(
                f"LinearLagSkip buffer must have shape (batch, lags - 1, features) = (batch, {expected[0]}, "
                f"{expected[1]}) for these inputs; got {tuple(buffer.shape)}."
            )
        inputs = ops.cast(inputs, self.compute_dtype)
        # The previous lags - 1 inputs, then the chunk: a "valid" convolution of length lags
        # gives one projection per step of the chunk, each over exactly its own window.
        return core_state, inputs, ops.concatenate([ops.cast(buffer, self.compute_dtype), inputs], axis=1)

    def _core_inputs(self, inputs, joined):
        """What the core reads: the inputs, or with `relative` their step changes (x_t - x_{t-1},
        x_{t-1} being `joined` shifted back by one row)."""
        return inputs - joined[:, self.lags - 2 : -1] if self.relative else inputs

    def _relative(self, projection, inputs):
        """With `relative`, the projection of (window - x_t): the map is linear, so the window's
        projection minus x_t times the kernel summed over its taps."""
        return projection - ops.matmul(inputs, ops.sum(self.projection.kernel, axis=0)) if self.relative else projection

    def _next_buffer(self, joined):
        # joined holds lags - 1 + steps >= lags - 1 rows, so the next buffer is always inside
        # it, also when the chunk is shorter than lags - 1 (part of it is the old buffer).
        return joined[:, -(self.lags - 1) :] if self.lags > 1 else joined[:, :0]

    # ---- one step at a time ----------------------------------------------------------------

    @property
    def chunk_multiple(self) -> int:
        return self.core.chunk_multiple

    @property
    def window_only(self) -> bool:
        return self.core.window_only

    def streamable(self) -> str | None:
        reason = self.core.streamable()
        if reason is None and not self.core.step_state_is_call_state():
            return (
                f"LinearLagSkip around a {type(self.core).__name__} (model.lags > 0) cannot stream: that core carries "
                f"more state when it steps than when it runs chunks (a hierarchy's phase counter), and the wrapper's "
                f"one-step path has not been checked against the chunked model for such a core. Set model.lags = 0 "
                f"or use another core."
            )
        return reason

    def step(self, x_t, state):
        """One step: the window is the buffer plus `x_t`, one "valid" convolution position."""
        core_state, buffer = state
        x_t = ops.cast(x_t, self.compute_dtype)
        joined = ops.concatenate([ops.cast(buffer, self.compute_dtype), ops.expand_dims(x_t, 1)], axis=1)
        projection = self.projection(joined)[:, 0]
        if self.relative:
            core_input = x_t - joined[:, self.lags - 2]
            projection = projection - ops.matmul(x_t, ops.sum(self.projection.kernel, axis=0))
        else:
            core_input = x_t
        core_outputs, core_state = self.core.step(core_input, core_state)
        outputs = ops.concatenate([core_outputs, ops.cast(projection, core_outputs.dtype)], axis=-1)
        return outputs, (core_state, joined[:, 1:])

    def get_config(self):
        config = super().get_config()
        features = int(self.projection.kernel.shape[1]) if self.projection.built else self.features
        config.update(
            core=keras.saving.serialize_keras_object(self.core),
            lags=self.lags,
            width=self.width,
            features=features,
            relative=self.relative,
        )
        return config

