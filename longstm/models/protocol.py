"""The state protocol every recurrent model in longstm implements.

A long series is processed chunk by chunk. The recurrent state is not hidden inside the
layer (as with Keras' `stateful=True`); it is passed in and returned explicitly:

    state = model.initial_state(batch_size)
    for chunk in chunks:
        outputs, state = model(chunk, state=state)

so a trainer can keep it outside the model (per replica under `tf.distribute`), stop its
gradient at chunk boundaries, reset single lanes, and checkpoint it. A state is any nested
structure (tuples/lists/dicts) of tensors whose first axis is the batch (lane) axis; stacks
and hierarchies nest the states of their parts.

Every state that `initial_state` returns is all zeros, so resetting a lane is zeroing its
rows (`reset_lanes`).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from longstm.models.cells import cells_step, has_cell_step, numpy_cells

State = Any  # a nested structure of tensors, batch first


class RecurrentModel(keras.Model):
    """Base class of longstm's recurrent models: state in, state out.

    Subclasses implement:

    - `initial_state(batch_size)`: the zero state for `batch_size` lanes, a nested
      structure of tensors with the batch axis first.
    - `call(inputs, state=None, training=None)`: `inputs` of shape
      `(batch, steps, features)`; returns `(outputs, new_state)` where `new_state` is the
      state after the last step. `state=None` means `initial_state(batch)`.

    Running a chunk with the state returned by the previous chunk must give the same
    outputs as running both chunks at once (or, where a model cannot do this exactly, the
    model's docstring says what it does instead).
    """

    def initial_state(self, batch_size: int) -> State:
        raise NotImplementedError(f"{type(self).__name__} must implement initial_state(batch_size)")

    def last_step(self, inputs, state=None, training=None):
        """`call`'s output at the chunk's last step only, `(batch, features)`, and the new state.

        Window-style training and window scoring read only this step. The default runs `call`
        and keeps its last step; a model that can skip the other steps' outputs overrides it
        (`SegmentGRU`, and `LinearLagSkip` around it).
        """
        outputs, new_state = self(inputs, state=state, training=training)
        return outputs[:, -1], new_state

    @property
    def window_only(self) -> bool:
        """True for a model that forecasts from whole look-back windows only: `last_step` from a
        zero state, and no per-step `call` over chunks (`SegmentGRU(norm="window")` normalises
        each window by its own last value, which no carried state can know). Such a model is
        trained with `train.mode = "windows"` and scored in window mode."""
        return False

    # ---- one step at a time (the Keras cell idea): what serving calls -------------------------

    def streamable(self) -> str | None:
        """None when `step` tick by tick reproduces `call` on chunks; else the reason it cannot.

        Returns:
            `None`, or one sentence saying why this model cannot stream and what to change.
        """
        return None

    def initial_step_state(self, batch_size: int) -> State:
        """The zero state `step` carries (by default the state `call` carries)."""
        return self.initial_state(batch_size)

    def step_state_is_call_state(self) -> bool:
        """True when `step` carries the same state as `call`, so ticks and chunk calls can be mixed."""
        return True

    def step(self, x_t, state):
        """One step: `x_t (batch, features)` and the state -> `(y_t (batch, outputs), new_state)`.

        The default calls the model on a one-step chunk; models with a one-step path of their
        own (cells, windows) override it. Written in `keras.ops`, so it runs eagerly, inside a
        `tf.function` and on symbolic tensors (export).

        Args:
            x_t: the inputs of one step, `(batch, features)`.
            state: as returned by `initial_step_state` or the previous `step`.

        Returns:
            `(y_t, new_state)`: the outputs of this step, `(batch, outputs)`, and the state after it.

        Example:

        >>> state = model.initial_step_state(4)
        >>> for x_t in ticks:                      # (4, features) each
        ...     y_t, state = model.step(x_t, state)
        """
        outputs, new_state = self(ops.expand_dims(x_t, 1), state=state, training=False)
        return outputs[:, 0], new_state

    @property
    def chunk_multiple(self) -> int:
        """Chunk lengths must be a multiple of this (a hierarchy's period; else 1)."""
        return 1

    def build_for_features(self, n_features: int) -> None:
        """Create the variables: call the model once on a zero chunk of `chunk_multiple` steps."""
        self(ops.zeros((1, self.chunk_multiple, n_features)), state=self.initial_state(1))

    def numpy_layers(self) -> list[dict[str, Any]] | str:
        """This core as NumPy weights for a dependency-light LSTM/GRU engine, or why it has none.

        Returns:
            a list with one dict per layer, `cell` ("lstm" or "gru"), `kernel`,
            `recurrent_kernel`, `bias` (None without), `units`, `residual` (add the layer's
            input to its output) and `norm` (`(gamma, beta, epsilon)` of a layer norm after
            it, or None); or a string: the reason there is no such form.
        """
        return f"its core {type(self).__name__} is not an LSTM/GRU stack"

    def make_head(self, outputs: int) -> keras.layers.Layer | None:
        """The head `Forecaster` should put on this core for `outputs` values per step, or None
        for the default `Dense(outputs)` (the segment forecaster returns its decoder)."""
        return None

    def numpy_weights(self) -> dict[str, Any] | str:
        """The whole forecaster as NumPy weights (see `Forecaster.numpy_weights`), or why not."""
        return f"{type(self).__name__} has no Dense head (wrap it in a Forecaster)"


def build_sublayer(layer: keras.layers.Layer, input_shape) -> None:
    """Build `layer` for `input_shape` unless it is built already: a model's `build` builds its
    sublayers in the order its `call` first runs them (as `keras.layers.LSTM` builds its cell),
    and a sublayer may have been built before (by `last_step`, or a shared core)."""
    if not layer.built:
        layer.build(tuple(input_shape))


def build_core(core: RecurrentModel, input_shape) -> tuple:
    """Build `core` for inputs of `input_shape` and return the shape of the features a head reads.

    Args:
        core: a `RecurrentModel`.
        input_shape: `(batch, steps, features)`.

    Returns:
        `(batch, steps, width)`, the shape of `core`'s outputs; `(batch, 1, width)` for a
        window-only core, whose head reads its `last_step` only. A core without a `build` and a
        `compute_output_shape` of its own runs once on symbolic inputs instead (which is how
        Keras builds a layer that has no `build`).
    """
    input_shape = tuple(input_shape)
    own_build = type(core).build is not keras.layers.Layer.build
    if own_build:
        build_sublayer(core, input_shape)
    if core.window_only:
        features, _ = core.last_step(keras.KerasTensor(input_shape))
        return (input_shape[0], 1, features.shape[-1])
    if own_build:
        try:
            return tuple(core.compute_output_shape(input_shape))
        except NotImplementedError:
            pass
    # (A model that declares compute_output_shape gives its outputs alone when called on symbolic
    # inputs, not `(outputs, state)`: KerasRNNStack does not, so its default `step` stays symbolic.)
    outputs = core(keras.KerasTensor(input_shape))
    return tuple((outputs[0] if isinstance(outputs, (tuple, list)) else outputs).shape)


def reset_lanes(state: State, reset: Any) -> State:
    """Zero the state rows of the lanes where `reset` is true.

    Args:
        state: a nested structure of tensors, batch axis first.
        reset: shape `(batch,)`, bool or 0/1; true where a lane starts a new segment.

    Works inside `tf.function` without retracing: it is arithmetic, not Python control flow.
    """
    keep = 1.0 - ops.cast(reset, "float32")

    def zero_rows(tensor):
        mask = ops.reshape(ops.cast(keep, tensor.dtype), (-1,) + (1,) * (len(tensor.shape) - 1))
        return tensor * mask

    return keras.tree.map_structure(zero_rows, state)


def stop_state_gradient(state: State) -> State:
    """The same state with its gradient cut: truncated BPTT's chunk boundary."""
    return keras.tree.map_structure(ops.stop_gradient, state)


def _state_sizes(layer: keras.layers.Layer) -> list[int]:
    size = layer.cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


def _output_size(layer: keras.layers.Layer) -> int:
    """Features per step out of a Keras recurrent layer (a cell without `output_size` emits its first state)."""
    return getattr(layer.cell, "output_size", None) or _state_sizes(layer)[0]


@keras.saving.register_keras_serializable(package="longstm")
class KerasRNNStack(RecurrentModel):
    """Stacked Keras recurrent layers (`LSTM`, `GRU`, `SimpleRNN`) behind the state protocol.

    Each layer is re-created with `return_sequences=True, return_state=True`; its state is
    passed as `initial_state`, so Keras' fused/cuDNN kernels are still used.

    Args:
        layers: Keras RNN layers, applied in order.

    Call arguments:
        inputs: `(batch, steps, features)`.
        state: a tuple with one tuple of tensors per layer (`(h, c)` for LSTM, `(h,)` for
            GRU), or `None` for zeros.
        training: passed to the layers (dropout).

    Returns:
        `(outputs, new_state)`: outputs of the last layer, `(batch, steps, units)`.

    Example:

    >>> stack = KerasRNNStack([keras.layers.LSTM(32), keras.layers.LSTM(32)])
    >>> y, state = stack(x_chunk_1)
    >>> y, state = stack(x_chunk_2, state=state)
    """

    def __init__(self, layers: Sequence[keras.layers.Layer], **kwargs):
        super().__init__(**kwargs)
        if not layers:
            raise ValueError("KerasRNNStack needs at least one layer; got an empty list.")
        rebuilt = []
        for index, layer in enumerate(layers):
            if isinstance(layer, dict):
                layer = keras.saving.deserialize_keras_object(layer)
            if not isinstance(layer, keras.layers.RNN) and not hasattr(layer, "cell"):
                raise TypeError(
                    f"KerasRNNStack layer {index} must be a Keras recurrent layer (LSTM, GRU, "
                    f"SimpleRNN); got {type(layer).__name__}."
                )
            config = layer.get_config() | {"return_sequences": True, "return_state": True, "stateful": False}
            rebuilt.append(type(layer).from_config(config))
        self.rnn_layers = rebuilt

    def build(self, input_shape):
        layer_input = tuple(input_shape)
        for layer in self.rnn_layers:
            build_sublayer(layer, layer_input)
            layer_input = layer_input[:2] + (_output_size(layer),)
        self.built = True

    def initial_state(self, batch_size: int) -> State:
        return tuple(
            tuple(ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in _state_sizes(layer))
            for layer in self.rnn_layers
        )

    def call(self, inputs, state=None, training=None):
        if state is None:
            state = self.initial_state(ops.shape(inputs)[0])
        if len(state) != len(self.rnn_layers):
            raise ValueError(
                f"KerasRNNStack has {len(self.rnn_layers)} layers but the state has {len(state)} entries."
            )
        outputs = inputs
        new_state = []
        for layer, layer_state in zip(self.rnn_layers, state):
            results = layer(outputs, initial_state=list(layer_state), training=training)
            outputs, layer_new_state = results[0], tuple(results[1:])
            new_state.append(layer_new_state)
        return outputs, tuple(new_state)

    def _cell_stack(self):
        return [(layer, False, None) for layer in self.rnn_layers]

    def streamable(self) -> str | None:
        backwards = [layer.name for layer in self.rnn_layers if getattr(layer, "go_backwards", False)]
        if backwards:
            return (
                f"{type(self).__name__} layers {backwards} run backwards in time (go_backwards=True): their output at "
                f"step t depends on later steps, which a stream has not seen yet."
            )
        return None

    def step(self, x_t, state):
        # LSTM/GRU: the cells' arithmetic, no `while` loop for a single step.
        if has_cell_step(self._cell_stack()):
            return cells_step(self._cell_stack(), x_t, state)
        return super().step(x_t, state)

    def numpy_layers(self) -> list[dict[str, Any]] | str:
        return numpy_cells(self._cell_stack(), type(self).__name__)

    def get_config(self):
        config = super().get_config()
        config["layers"] = [keras.saving.serialize_keras_object(layer) for layer in self.rnn_layers]
        return config


@keras.saving.register_keras_serializable(package="longstm")
class Forecaster(RecurrentModel):
    """A recurrent core followed by a per-step head: predictions out, the core's state carried.

    Args:
        core: any `RecurrentModel`.
        head: a layer applied to the core's outputs at every step (default: `Dense(outputs)`).
        outputs: width of the default head; ignored when `head` is given.
        residual_inputs: indices of input columns whose current value is added to the
            forecast, tiled over the output width (which must be a multiple of their
            count). The network then learns the change from the last observation, and
            "repeat the last value" is its zero, which matters for smooth targets.

    Call arguments and returns as for `core`, with the head applied to the outputs.
    """

    def __init__(
        self,
        core: RecurrentModel,
        head: keras.layers.Layer | None = None,
        outputs: int = 1,
        residual_inputs: Sequence[int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        residual_inputs = list(residual_inputs or [])
        if any(not isinstance(i, int) or i < 0 for i in residual_inputs):
            raise ValueError(f"Forecaster residual_inputs must be non-negative column indices; got {residual_inputs!r}.")
        if residual_inputs and head is None and outputs % len(residual_inputs):
            raise ValueError(
                f"Forecaster outputs ({outputs}) must be a multiple of len(residual_inputs) "
                f"({len(residual_inputs)}): each output adds the current value of one input column."
            )
        self.residual_inputs = residual_inputs
        if isinstance(core, dict):
            core = keras.saving.deserialize_keras_object(core)
        if isinstance(head, dict):
            head = keras.saving.deserialize_keras_object(head)
        if not isinstance(core, RecurrentModel):
            raise TypeError(f"Forecaster core must be a longstm RecurrentModel; got {type(core).__name__}.")
        if head is None and (not isinstance(outputs, int) or outputs < 1):
            raise ValueError(f"Forecaster outputs must be a positive integer; got {outputs!r}.")
        self.core = core
        self.head = head if head is not None else keras.layers.Dense(outputs, name="head")
        self.outputs_width = outputs

    def build(self, input_shape):
        build_sublayer(self.head, build_core(self.core, input_shape))
        self.built = True

    def initial_state(self, batch_size: int) -> State:
        return self.core.initial_state(batch_size)

    def call(self, inputs, state=None, training=None):
        features, new_state = self.core(inputs, state=state, training=training)
        forecast = self.head(features, training=training)
        if self.residual_inputs:
            last = ops.take(inputs, self.residual_inputs, axis=-1)
            repeats = forecast.shape[-1] // len(self.residual_inputs)
            forecast = forecast + ops.cast(ops.tile(last, (1, 1, repeats)), forecast.dtype)
        return forecast, new_state

    # The one-step protocol: the core's, then the head on one step.

    def streamable(self) -> str | None:
        return self.core.streamable()

    @property
    def window_only(self) -> bool:
        return self.core.window_only

    def initial_step_state(self, batch_size: int) -> State:
        return self.core.initial_step_state(batch_size)

    def step_state_is_call_state(self) -> bool:
        return self.core.step_state_is_call_state()

    @property
    def chunk_multiple(self) -> int:
        return self.core.chunk_multiple

    def step(self, x_t, state):
        features, new_state = self.core.step(x_t, state)
        return self.forecast_at_step(features, x_t, training=False), new_state

    def forecast_at_step(self, features_t, x_t, training=None):
        """The forecast of one step from the core's features and the inputs at that step.

        Args:
            features_t: `(batch, core features)`, the core's output at the step.
            x_t: `(batch, inputs)`, the inputs at the step (for `residual_inputs`).

        Returns:
            `(batch, outputs)`: the head, plus the residual inputs' values.
        """
        # Heads are written for (batch, steps, features): give them a time axis of one step.
        forecast = self.head(ops.expand_dims(features_t, 1), training=training)[:, 0]
        if self.residual_inputs:
            repeats = forecast.shape[-1] // len(self.residual_inputs)
            forecast = forecast + ops.cast(ops.tile(ops.take(x_t, self.residual_inputs, axis=-1), (1, repeats)), forecast.dtype)
        return forecast

    def numpy_weights(self) -> dict[str, Any] | str:
        """The core's `numpy_layers` and the Dense head as NumPy, or the reason there is no such form.

        Returns:
            a dict `layers`, `head_kernel`, `head_bias`, `residual_inputs`; or a string.
        """
        layers = self.core.numpy_layers()
        if isinstance(layers, str):
            return layers
        if not isinstance(self.head, keras.layers.Dense):
            return f"its head is {type(self.head).__name__}, not a Dense layer"
        if self.head.activation is not keras.activations.linear:
            return "its Dense head has a non-linear activation"
        return {
            "layers": layers,
            "head_kernel": ops.convert_to_numpy(self.head.kernel).astype("float32"),
            "head_bias": ops.convert_to_numpy(self.head.bias).astype("float32") if self.head.use_bias else None,
            "residual_inputs": list(self.residual_inputs),
        }

    @property
    def n_outputs(self) -> int | None:
        """Outputs per step of the head (None when the head does not say)."""
        return getattr(self.head, "units", None)

    def get_config(self):
        config = super().get_config()
        config.update(
            core=keras.saving.serialize_keras_object(self.core),
            head=keras.saving.serialize_keras_object(self.head),
            outputs=self.outputs_width,
            residual_inputs=self.residual_inputs,
        )
        return config
