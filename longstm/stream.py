"""Streaming inference: one tick at a time, the recurrent state carried between ticks.

A trained model is used on live data: every new row (one per instrument) updates the state
and gives a prediction at once, without re-running any history.

    predictor = StreamingPredictor.from_run("runs/etth1")       # scaler and columns of the run
    predictor.warm_up(history)                                   # (T, columns) raw rows
    for row in live_rows:                                        # (columns,) raw, data units
        forecast = predictor.update(row)                         # (outputs,) data units

What a tick does, for `n_instruments` lanes at once (one state row per instrument):

    features = pipeline(raw_row, previous raw row)   # optional, causal (e.g. log returns)
    scaled   = (features - mean) / std               # the run's train-only scaler
    y, state = step(scaled[feature_columns], state)  # the model, one step
    forecast = y * std[targets] + mean[targets]      # back to data units

Two engines run the model step (`engine=`):

- `"numpy"`: a dependency-light NumPy re-implementation of an LSTM/GRU stack with a Dense
  head (`KerasRNNStack`, `StackedLSTM`, inside a `Forecaster`). Its
  outputs equal the Keras model's (tested to < 1e-5); it is the fastest at batch sizes of a
  few instruments because it pays no TensorFlow dispatch per tick.
- `"tf"`: a `tf.function` with a fixed input signature (traced once). For LSTM/GRU stacks it
  calls the layers' cells directly (no `while` loop for one step); for other models it calls
  the model on a one-step chunk.

`engine="auto"` takes NumPy where the model supports it, else TensorFlow.

Which models stream: any `RecurrentModel` whose one-step call continues a chunk exactly
(the protocol's promise), with these exceptions, refused with `ConfigError`:

- `HierarchicalLSTM(mode="parallel")`: level 0 restarts at every sub-chunk from zeros,
  which a single step cannot reproduce; `HierarchicalLSTM(mode="sequential",
  outputs="per_step")` streams with its own per-tick rule (a phase counter per instrument
  decides when an upper level receives a summary), and `outputs="per_summary"` has no
  output at most ticks.
- `AttentionLSTM(window=None)`: a one-step chunk attends to the memory only, not to all
  earlier steps of a chunk, so it differs from the batch model; use `window <= memory + 1`.
- `LinearLagSkip` (`model.lags > 0`) streams on the TensorFlow engine (its buffer of the last
  `lags - 1` inputs is state like any other) when its core does, except around a
  `HierarchicalLSTM`, whose per-tick rule does not reach inside the wrapper.

Bad input (wrong shape, NaN/inf values) raises `DataValidationError` and leaves the state
unchanged.
"""

from __future__ import annotations

import json
import math
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from longstm.errors import ConfigError, DataValidationError

ENGINES = ("auto", "numpy", "tf")
WARM_UP_CHUNK = 256  # steps per compiled model call when `update_many` runs on TensorFlow


# ---- incremental causal features ---------------------------------------------------------------


class CausalFeatures:
    """Per-column causal transforms computed one row at a time, the previous raw row carried.

    Args:
        transforms: one entry per raw column: `"value"` (the value itself), `"diff"`
            (`x_t - x_{t-1}`) or `"log_return"` (`log(x_t / x_{t-1})`). The first row of a
            series (or after a reset) has no previous row; its diff/log-return is 0.

    `transform(values)` (whole series) and `step(row, previous)` (one tick) give the same
    numbers, so a model trained on `transform` output can be streamed.

    Example:

    >>> features = CausalFeatures(["log_return", "value"])
    >>> features.transform(np.array([[100.0, 1.0], [101.0, 2.0]]))   # doctest: +SKIP
    """

    KINDS = ("value", "diff", "log_return")

    def __init__(self, transforms: Sequence[str]):
        transforms = list(transforms)
        if not transforms:
            raise ConfigError("CausalFeatures needs one transform per column; got an empty list.")
        for index, kind in enumerate(transforms):
            if kind not in self.KINDS:
                raise ConfigError(f"CausalFeatures transform {index} must be one of {self.KINDS}; got {kind!r}.")
        self.transforms = transforms
        kinds = np.asarray(transforms)
        self._diff = kinds == "diff"
        self._log = kinds == "log_return"

    @property
    def n_columns(self) -> int:
        return len(self.transforms)

    def _apply(self, current: np.ndarray, previous: np.ndarray, has_previous: np.ndarray) -> np.ndarray:
        out = np.array(current, dtype=np.float64)
        if self._log.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.log(current[..., self._log] / previous[..., self._log])
            out[..., self._log] = np.where(has_previous[..., None], ratio, 0.0)
        if self._diff.any():
            out[..., self._diff] = np.where(has_previous[..., None], current[..., self._diff] - previous[..., self._diff], 0.0)
        return out

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Features of a whole series `(rows, columns)` (or `(rows, lanes, columns)`)."""
        values = np.asarray(values, dtype=np.float64)
        previous = np.concatenate([values[:1], values[:-1]], axis=0)
        has_previous = np.ones(values.shape[:-1], bool)
        has_previous[0] = False
        return self._apply(values, previous, has_previous)

    def step(self, row: np.ndarray, previous: np.ndarray, has_previous: np.ndarray) -> np.ndarray:
        """Features of one row per lane `(lanes, columns)` given each lane's previous raw row."""
        return self._apply(np.asarray(row, np.float64), previous, has_previous)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "causal", "transforms": self.transforms}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "CausalFeatures":
        if state.get("kind") != "causal" or "transforms" not in state:
            raise ConfigError(f"feature pipeline state must be {{'kind': 'causal', 'transforms': [...]}}; got {state!r}")
        return cls(state["transforms"])


# ---- which models stream, and the one-tick step ------------------------------------------------


def _core_and_head(model):
    from longstm.models.protocol import Forecaster

    if isinstance(model, Forecaster):
        return model.core, model.head
    return model, None


def check_streamable(model) -> None:
    """Raise `ConfigError` when `model`'s one-step call cannot reproduce its chunked output."""
    from longstm.models.protocol import RecurrentModel

    if not isinstance(model, RecurrentModel):
        raise ConfigError(
            f"StreamingPredictor needs a longstm RecurrentModel (state in, state out); got {type(model).__name__}."
        )
    core, _ = _core_and_head(model)
    if type(core).__name__ == "LinearLagSkip":
        if type(core.core).__name__ == "HierarchicalLSTM":
            raise ConfigError(
                "LinearLagSkip around a HierarchicalLSTM (model.lags > 0) cannot stream: the hierarchy's per-tick "
                "rule (a phase counter deciding when an upper level updates) is not applied inside the wrapper, so "
                "one step at a time would not equal the chunked model. Set model.lags = 0 or use another core."
            )
        core = core.core  # the skip itself streams exactly: its state is the last lags - 1 inputs
    name = type(core).__name__
    if name == "HierarchicalLSTM":
        if core.mode != "sequential":
            raise ConfigError(
                f"HierarchicalLSTM(mode={core.mode!r}) cannot stream: its level 0 restarts from zeros at every "
                f"sub-chunk of {core.strides[0]} steps, which one step at a time cannot reproduce. Train with "
                f"mode='sequential' to stream."
            )
        if core.outputs_kind != "per_step":
            raise ConfigError(
                "HierarchicalLSTM(outputs='per_summary') cannot stream: it has an output only every "
                f"{core.period} steps. Use outputs='per_step'."
            )
    backwards = [layer.name for layer in getattr(core, "rnn_layers", []) if getattr(layer, "go_backwards", False)]
    if backwards:
        raise ConfigError(
            f"{name} layers {backwards} run backwards in time (go_backwards=True): their output at step t depends "
            f"on later steps, which a stream has not seen yet."
        )
    if name == "AttentionLSTM" and core.window is None:
        raise ConfigError(
            "AttentionLSTM(window=None) cannot stream: a step of a long chunk attends to every earlier step of its "
            "chunk, a single step only to the memory, so streaming would not equal the batch model. Use a sliding "
            f"window, window <= memory + 1 = {core.memory + 1}."
        )


def model_input_width(model) -> int | None:
    """Features per step the built `model` was called with (None when unknown)."""
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    shape = shapes.get("input_shape") or shapes.get("inputs_shape")
    if shape is None or not shape or shape[-1] is None:
        return None
    return int(shape[-1])


def _stack_layers(core) -> list[tuple[Any, str, bool, Any]] | None:
    """`[(cell, kind, residual, layer_norm_or_None)]` of an LSTM/GRU stack, or None for other cores.

    A step of such a stack is its cells' step (plus residual and norm), with no `while` loop.
    """
    from longstm.models.protocol import KerasRNNStack

    if isinstance(core, KerasRNNStack):
        layers = [(layer, False, None) for layer in core.rnn_layers]
    elif type(core).__name__ == "StackedLSTM":
        last = len(core.lstm_layers) - 1
        layers = [
            (layer, core.residual and index > 0, core.norms[index] if core.norms and index < last else None)
            for index, layer in enumerate(core.lstm_layers)
        ]
    else:
        return None
    stack = []
    for layer, residual, norm in layers:
        kind = type(layer.cell).__name__
        if kind not in ("LSTMCell", "GRUCell") or layer.go_backwards:
            return None
        stack.append((layer.cell, kind, residual, norm))
    return stack


def model_step(model, x_t, state):
    """One tick of a protocol model: `x_t (batch, features)` -> `(y_t (batch, outputs), new_state)`.

    Written in `keras.ops`, so it runs eagerly, inside `tf.function` and on symbolic
    tensors (export). `state` is the streaming state: the model's own state, plus a phase
    per lane for a sequential `HierarchicalLSTM`.
    """
    core, head = _core_and_head(model)
    if type(core).__name__ == "HierarchicalLSTM":
        features, new_state = _hierarchical_step(core, x_t, state)
    else:
        layers = _stack_layers(core)
        if layers is not None:
            features, new_state = _cells_step(layers, x_t, state)
        else:
            from keras import ops

            outputs, new_state = core(ops.expand_dims(x_t, 1), state=state, training=False)
            features = outputs[:, 0]
    if head is None:
        return features, new_state
    from keras import ops

    # Heads are written for (batch, steps, features): give them a time axis of one step.
    forecast = head(ops.expand_dims(features, 1), training=False)[:, 0]
    residual = getattr(model, "residual_inputs", None)
    if residual:
        repeats = forecast.shape[-1] // len(residual)
        forecast = forecast + ops.cast(ops.tile(ops.take(x_t, residual, axis=-1), (1, repeats)), forecast.dtype)
    return forecast, new_state


def _cells_step(layers, x_t, state):
    """One step of an LSTM/GRU stack through its cells: no `while` loop for a single step."""
    outputs, new_state = x_t, []
    for (cell, kind, residual, norm), layer_state in zip(layers, state):
        layer_input = outputs
        outputs, cell_state = cell(outputs, list(layer_state), training=False)
        if not isinstance(cell_state, (list, tuple)):
            cell_state = [cell_state]
        new_state.append(tuple(cell_state))
        if residual:
            outputs = outputs + layer_input
        if norm is not None:
            outputs = norm(outputs)
    return outputs, tuple(new_state)


def _hierarchical_step(core, x_t, state):
    """One raw step of a sequential HierarchicalLSTM (per-step outputs).

    Level l + 1 receives level l's output at the ticks where `(phase + 1)` is a multiple of
    the product of the strides up to level l — the same steps the chunked model slices out
    with `level_outputs[:, stride - 1 :: stride]`, because chunks start at multiples of the
    whole period. On other ticks the level's candidate update is discarded.
    """
    import keras
    from keras import ops

    model_state, phase = state
    lowest_outputs, lowest_state = core.level_models[0](ops.expand_dims(x_t, 1), state=model_state[0], training=False)
    summary = lowest_outputs[:, 0]
    per_step, new_state = [summary], [lowest_state]
    next_phase = phase + 1.0
    period = core.strides[0]
    for model, stride, (level_state, last_output) in zip(core.level_models[1:], core.strides[1:], model_state[1:]):
        emit = ops.expand_dims(ops.equal(ops.mod(next_phase, float(period)), 0.0), -1)
        level_outputs, candidate = model(ops.expand_dims(summary, 1), state=level_state, training=False)
        summary = level_outputs[:, 0]
        level_state = keras.tree.map_structure(lambda new, old: ops.where(emit, new, old), candidate, level_state)
        last_output = ops.where(emit, summary, last_output)
        per_step.append(last_output)
        new_state.append((level_state, last_output))
        period *= stride
    return ops.concatenate(per_step, axis=-1), (tuple(new_state), ops.mod(next_phase, float(core.period)))


def initial_stream_state(model, batch_size: int):
    """The zero streaming state of `model` for `batch_size` instruments (numpy leaves)."""
    import keras
    from keras import ops

    core, _ = _core_and_head(model)
    state = model.initial_state(batch_size)
    if type(core).__name__ == "HierarchicalLSTM":
        state = (state, ops.zeros((batch_size,), "float32"))
    return keras.tree.map_structure(lambda t: np.asarray(ops.convert_to_numpy(t), np.float32), state)


# ---- the NumPy engine ---------------------------------------------------------------------------


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class NumpyRNNStack:
    """A NumPy copy of an LSTM/GRU stack + Dense head: the same numbers without TensorFlow per tick.

    Built from a `Forecaster` whose core is a `KerasRNNStack` of `LSTM`/`GRU` layers or a
    `StackedLSTM` (residual connections and layer norms included), with default activations,
    and whose head is a linear `Dense`. `NumpyRNNStack.supports(model)` says whether a model
    qualifies. The weights are copied when it is built: build a new predictor after
    changing them.
    """

    def __init__(self, model):
        reason = self.unsupported_reason(model)
        if reason:
            raise ConfigError(f"the NumPy streaming engine cannot run this model: {reason}")
        core, head = _core_and_head(model)
        self.layers = []
        for cell, kind, residual, norm in _stack_layers(core):
            kernel = np.asarray(cell.kernel.numpy(), np.float32)
            recurrent = np.asarray(cell.recurrent_kernel.numpy(), np.float32)
            bias = np.asarray(cell.bias.numpy(), np.float32) if cell.use_bias else None
            if norm is not None:
                norm = (
                    np.asarray(norm.gamma.numpy(), np.float32) if norm.scale else np.float32(1.0),
                    np.asarray(norm.beta.numpy(), np.float32) if norm.center else np.float32(0.0),
                    np.float32(norm.epsilon),
                )
            if kind == "GRUCell":
                input_bias, recurrent_bias = (bias[0], bias[1]) if bias is not None else (0.0, 0.0)
                self.layers.append(("gru", kernel, recurrent, input_bias, recurrent_bias, cell.units, residual, norm))
            else:
                self.layers.append(("lstm", kernel, recurrent, 0.0 if bias is None else bias, None, cell.units, residual, norm))
        self.residual_inputs = list(getattr(model, "residual_inputs", None) or [])
        self.head_kernel = np.asarray(head.kernel.numpy(), np.float32)
        self.head_bias = np.asarray(head.bias.numpy(), np.float32) if head.use_bias else np.float32(0.0)

    @staticmethod
    def unsupported_reason(model) -> str | None:
        import keras

        core, head = _core_and_head(model)
        layers = _stack_layers(core)
        if layers is None:
            return f"its core {type(core).__name__} is not an LSTM/GRU stack"
        if not isinstance(head, keras.layers.Dense):
            return f"its head is {type(head).__name__}, not a Dense layer"
        if head.activation is not keras.activations.linear:
            return "its Dense head has a non-linear activation"
        for cell, kind, _, norm in layers:
            if norm is not None and (norm.axis not in (-1, [-1]) or getattr(norm, "rms_scaling", False)):
                return "a layer norm over other axes than the last, or RMS scaling"
            if cell.activation is not keras.activations.tanh or cell.recurrent_activation is not keras.activations.sigmoid:
                return f"a {kind} with non-default activations"
            if kind == "GRUCell" and not cell.reset_after:
                return "a GRU with reset_after=False"
        return None

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


# Traced step functions per model and batch shape, shared by the predictors of one model (a
# trace costs seconds for attention or hierarchical models).
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_step(model, n_instruments: int, n_features: int, state_example):
    """`model_step` as a `tf.function` with a fixed input signature, traced once per shape."""
    import tensorflow as tf

    cache = _COMPILED.setdefault(model, {})
    key = (n_instruments, n_features)
    if key not in cache:
        state_spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, tf.float32), state_example)
        x_spec = tf.TensorSpec((n_instruments, n_features), tf.float32)
        model_ref = weakref.ref(model)  # a strong reference here would keep the model alive forever
        function = tf.function(
            lambda x_t, state: model_step(model_ref(), x_t, state),
            input_signature=[x_spec, state_spec],
            reduce_retracing=True,
        )
        # Calling the concrete function skips tf.function's argument matching: about half the
        # per-tick dispatch time measured here.
        cache[key] = function.get_concrete_function()
    return cache[key]


def compiled_chunk(model, n_instruments: int, steps: int, n_features: int, state_example):
    """The model on a `(n_instruments, steps, n_features)` chunk, traced once per shape; the state out
    has the structure of `state_example`."""
    import tensorflow as tf

    cache = _COMPILED.setdefault(model, {})
    key = ("chunk", n_instruments, steps, n_features)
    if key not in cache:
        state_spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, tf.float32), state_example)
        x_spec = tf.TensorSpec((n_instruments, steps, n_features), tf.float32)
        model_ref = weakref.ref(model)

        def run(chunk, state):
            outputs, new_state = model_ref()(chunk, state=state, training=False)
            return outputs, tf.nest.pack_sequence_as(state, tf.nest.flatten(new_state))

        cache[key] = tf.function(run, input_signature=[x_spec, state_spec]).get_concrete_function()
    return cache[key]


# ---- the predictor -----------------------------------------------------------------------------


class StreamingPredictor:
    """Per-tick predictions of a trained recurrent model, its state carried between ticks.

    Args:
        model: a built longstm `RecurrentModel` (usually a `Forecaster`).
        n_instruments: how many series are updated together (one state row each).
        scaler: a fitted `StandardScaler` over the raw columns (after `feature_pipeline`);
            inputs are standardised with it and outputs brought back to data units with its
            `target_columns` statistics. `None`: values go in and out unchanged.
        feature_pipeline: a `CausalFeatures` (or any object with `transform(values)`,
            `step(row, previous, has_previous)` and `n_columns`) applied to raw rows first;
            the previous raw row of each instrument is part of the streaming state.
        feature_columns: which columns (after pipeline) the model reads; default all.
        target_columns: which columns the outputs forecast (for un-scaling), repeated
            `horizon` times (horizon-major, as the trainer lays them out); default: outputs
            are returned in the model's units.
        horizon: how many horizons the outputs hold per target.
        engine: `"auto"`, `"numpy"` or `"tf"` (see the module docstring).

    Example:

    >>> predictor = StreamingPredictor(model, n_instruments=3)
    >>> predictor.warm_up(history)            # (T, 3, features)
    >>> y = predictor.update(x_t)             # (3, features) -> (3, outputs)
    >>> predictor.save_state("state.npz")
    """

    def __init__(
        self,
        model,
        *,
        n_instruments: int = 1,
        scaler=None,
        feature_pipeline=None,
        feature_columns: Sequence[int] | None = None,
        target_columns: Sequence[int] | None = None,
        horizon: int = 1,
        engine: str = "auto",
        column_names: Sequence[str] | None = None,
    ):
        check_streamable(model)
        if isinstance(n_instruments, bool) or not isinstance(n_instruments, int) or n_instruments < 1:
            raise ConfigError(f"StreamingPredictor n_instruments must be an integer >= 1; got {n_instruments!r}.")
        if engine not in ENGINES:
            raise ConfigError(f"StreamingPredictor engine must be one of {ENGINES}; got {engine!r}.")
        if not getattr(model, "built", False):
            raise ConfigError("StreamingPredictor needs a built model: call it once on a chunk (or load weights) first.")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ConfigError(f"StreamingPredictor horizon must be an integer >= 1; got {horizon!r}.")
        if scaler is not None and getattr(scaler, "mean", None) is None:
            raise ConfigError("StreamingPredictor scaler is not fitted: fit it on the training rows first.")
        if scaler is not None and feature_pipeline is not None and len(scaler.mean) != feature_pipeline.n_columns:
            raise ConfigError(
                f"the scaler has {len(scaler.mean)} columns but the feature pipeline gives {feature_pipeline.n_columns}; "
                f"fit the scaler on the pipeline's output."
            )
        self.model = model
        self.n_instruments = n_instruments
        self.scaler = scaler
        self.feature_pipeline = feature_pipeline
        self.column_names = None if column_names is None else list(column_names)
        self.n_columns = self._infer_columns(scaler, feature_pipeline, feature_columns)
        model_features = model_input_width(model)
        self.feature_columns = None if feature_columns is None else np.asarray(list(feature_columns), np.intp)
        self.n_features = self.n_columns if self.feature_columns is None else len(self.feature_columns)
        if self.n_features is None:
            self.n_features = self.n_columns = model_features
        if model_features is not None and self.n_features != model_features:
            raise ConfigError(
                f"the model reads {model_features} features per step but the scaler/pipeline/feature_columns give "
                f"{self.n_features}"
            )
        if self.n_features is None:
            raise ConfigError("cannot tell how many features the model reads; pass feature_columns or a scaler")
        for name, columns in (("feature_columns", feature_columns), ("target_columns", target_columns)):
            if columns is not None and self.n_columns is not None and any(not 0 <= c < self.n_columns for c in columns):
                raise ConfigError(f"StreamingPredictor {name} must be column indices in [0, {self.n_columns}); got {list(columns)}.")
        self.horizon = horizon
        self.target_columns = None if target_columns is None else list(target_columns)
        outputs = getattr(_core_and_head(model)[1], "units", None)
        if self.target_columns is not None and outputs is not None and len(self.target_columns) * horizon != outputs:
            raise ConfigError(
                f"the model gives {outputs} outputs per step but target_columns x horizon = "
                f"{len(self.target_columns)} x {horizon} = {len(self.target_columns) * horizon}."
            )
        self._input_mean = self._input_scale = self._output_mean = self._output_scale = None
        if scaler is not None:
            self._input_mean = np.asarray(scaler.mean, np.float64)
            self._input_scale = np.asarray(scaler.scale, np.float64)
            if self.target_columns is not None:
                self._output_mean = np.tile(self._input_mean[self.target_columns], self.horizon)
                self._output_scale = np.tile(self._input_scale[self.target_columns], self.horizon)
        if engine == "auto":
            engine = "numpy" if NumpyRNNStack.supports(model) else "tf"
        self.engine = engine
        self._numpy = NumpyRNNStack(model) if engine == "numpy" else None
        self._compiled = None
        self.reset()

    @staticmethod
    def _infer_columns(scaler, pipeline, feature_columns) -> int | None:
        if pipeline is not None:
            return pipeline.n_columns
        if scaler is not None:
            return int(np.asarray(scaler.mean).shape[0])
        return None

    # ---- construction from a run or a saved model ------------------------------------------

    @classmethod
    def from_run(cls, run_dir: str | Path, *, n_instruments: int = 1, engine: str = "auto", weights: str = "best"):
        """The model, scaler and columns of a training run directory (`longstm train`).

        Reads `config.toml`, `data.json` and `checkpoints/best.npz` (or the latest
        checkpoint when there is no best, or with `weights="latest"`).
        """
        model, meta = load_run_model(run_dir, weights=weights)
        return cls.from_metadata(model, meta, n_instruments=n_instruments, engine=engine)

    @classmethod
    def from_metadata(cls, model, meta: dict[str, Any], *, n_instruments: int = 1, engine: str = "auto"):
        """A predictor from a model and the `streaming_metadata` dict saved beside it."""
        from longstm.data import StandardScaler

        scaler = None if meta.get("scaler") is None else StandardScaler.from_dict(meta["scaler"])
        pipeline = None if meta.get("feature_pipeline") is None else CausalFeatures.from_dict(meta["feature_pipeline"])
        return cls(
            model,
            n_instruments=n_instruments,
            scaler=scaler,
            feature_pipeline=pipeline,
            feature_columns=meta.get("feature_columns"),
            target_columns=meta.get("target_columns"),
            horizon=meta.get("horizon", 1),
            engine=engine,
            column_names=meta.get("columns"),
        )

    @classmethod
    def from_saved(cls, path: str | Path, *, n_instruments: int = 1, engine: str = "auto"):
        """A predictor from a `.keras` file: a `StreamingStep` export or a plain protocol model."""
        import keras

        import longstm.models  # noqa: F401  (registers the serialisable classes)
        from longstm.export import StreamingStep, _import_model_modules

        path = Path(path)
        if not path.is_file() or path.suffix != ".keras":
            raise ConfigError(f"{path}: expected an existing .keras file (from `longstm export --format keras`)")
        _import_model_modules()
        loaded = keras.saving.load_model(path, compile=False)
        if isinstance(loaded, StreamingStep):
            return cls.from_metadata(loaded.model, loaded.metadata, n_instruments=n_instruments, engine=engine)
        return cls(loaded, n_instruments=n_instruments, engine=engine)

    def metadata(self) -> dict[str, Any]:
        """Columns, scaler and pipeline as plain JSON: what `from_metadata` rebuilds from."""
        return {
            "columns": self.column_names,
            "scaler": None if self.scaler is None else self.scaler.to_dict(),
            "feature_pipeline": None if self.feature_pipeline is None else self.feature_pipeline.to_dict(),
            "feature_columns": None if self.feature_columns is None else self.feature_columns.tolist(),
            "target_columns": self.target_columns,
            "horizon": self.horizon,
            "n_features": self.n_features,
        }

    # ---- state ------------------------------------------------------------------------------

    def reset(self, instrument: int | Sequence[int] | None = None) -> None:
        """Zero the state of one instrument, a list of them, or (None) all of them."""
        import keras

        if instrument is None:
            self._model_state = initial_stream_state(self.model, self.n_instruments)
            self._previous = None if self.feature_pipeline is None else np.zeros((self.n_instruments, self.n_columns))
            self._has_previous = np.zeros(self.n_instruments, bool)
            self.ticks = np.zeros(self.n_instruments, np.int64)
            self._to_engine()
            return
        lanes = np.atleast_1d(np.asarray(instrument))
        if lanes.dtype.kind not in "iu" or lanes.size == 0 or lanes.min() < 0 or lanes.max() >= self.n_instruments:
            raise DataValidationError(
                f"reset(instrument) expects instrument indices in [0, {self.n_instruments}); got {instrument!r}"
            )
        keep = np.ones(self.n_instruments, np.float32)
        keep[lanes] = 0.0
        state = keras.tree.map_structure(
            lambda t: t * keep.reshape((-1,) + (1,) * (t.ndim - 1)), self._numpy_state()
        )
        self._model_state = state
        self._has_previous[lanes] = False
        self.ticks[lanes] = 0
        self._to_engine()

    def _numpy_state(self):
        import keras

        return keras.tree.map_structure(lambda t: np.asarray(t, np.float32), self._model_state)

    def _to_engine(self) -> None:
        if self.engine == "tf":
            import tensorflow as tf

            self._model_state = tf.nest.map_structure(tf.constant, self._numpy_state())

    @property
    def state(self) -> dict[str, Any]:
        """The whole streaming state (NumPy copies): model state, previous raw rows, tick counts."""
        return {
            "model": self._numpy_state(),
            "previous": None if self._previous is None else self._previous.copy(),
            "has_previous": self._has_previous.copy(),
            "ticks": self.ticks.copy(),
        }

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        import keras

        reference = initial_stream_state(self.model, self.n_instruments)
        got = value.get("model") if isinstance(value, dict) else None
        try:
            leaves = keras.tree.flatten(got)
            reference_leaves = keras.tree.flatten(reference)
        except Exception:  # noqa: BLE001 - any malformed structure is a user error here
            leaves, reference_leaves = [], [None]
        if got is None or len(leaves) != len(reference_leaves) or any(
            np.shape(a) != np.shape(b) for a, b in zip(leaves, reference_leaves)
        ):
            expected = [np.shape(t) for t in keras.tree.flatten(reference)]
            raise DataValidationError(
                f"streaming state does not fit this model and {self.n_instruments} instruments: expected model state "
                f"leaves of shapes {expected}; got {[np.shape(t) for t in leaves] if got is not None else got!r}"
            )
        self._model_state = keras.tree.pack_sequence_as(reference, [np.asarray(t, np.float32) for t in leaves])
        if self.feature_pipeline is not None:
            self._previous = np.asarray(value["previous"], np.float64).copy()
        self._has_previous = np.asarray(value.get("has_previous", np.zeros(self.n_instruments, bool)), bool).copy()
        self.ticks = np.asarray(value.get("ticks", np.zeros(self.n_instruments)), np.int64).copy()
        self._to_engine()

    def save_state(self, path: str | Path) -> Path:
        """Write the streaming state to an `.npz` file (restore with `restore_state`)."""
        import keras

        state = self.state
        arrays = {f"model_{i}": leaf for i, leaf in enumerate(keras.tree.flatten(state["model"]))}
        arrays["has_previous"] = state["has_previous"]
        arrays["ticks"] = state["ticks"]
        if state["previous"] is not None:
            arrays["previous"] = state["previous"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        return path

    def restore_state(self, path: str | Path) -> None:
        """Load a state written by `save_state`; its shapes must fit this model and instruments."""
        import keras

        path = Path(path)
        if not path.is_file():
            raise DataValidationError(f"{path}: no such state file")
        reference = initial_stream_state(self.model, self.n_instruments)
        count = len(keras.tree.flatten(reference))
        with np.load(path) as arrays:
            found = sum(1 for key in arrays.files if key.startswith("model_"))
            if found != count:
                raise DataValidationError(
                    f"{path}: holds {found} model state arrays; this model's state has {count}. Was it saved from a "
                    f"different model?"
                )
            leaves = [arrays[f"model_{i}"] for i in range(count)]
            value = {
                "model": keras.tree.pack_sequence_as(reference, leaves),
                "previous": arrays["previous"] if "previous" in arrays.files else None,
                "has_previous": arrays["has_previous"],
                "ticks": arrays["ticks"],
            }
        try:
            self.state = value
        except DataValidationError as error:
            raise DataValidationError(f"{path}: {error}") from None

    # ---- ticks ------------------------------------------------------------------------------

    def _check_rows(self, rows: np.ndarray, what: str) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        if self.n_instruments == 1 and rows.ndim == (1 if what == "x_t" else 2):
            rows = rows[..., None, :]
        expected_columns = self.n_columns
        leading = "(n_instruments, columns)" if what == "x_t" else "(ticks, n_instruments, columns)"
        ndim = 2 if what == "x_t" else 3
        if expected_columns is None and self.feature_columns is not None and rows.ndim:  # only a minimum is known
            expected_columns = rows.shape[-1] if rows.shape[-1] > self.feature_columns.max() else f">{self.feature_columns.max()}"
        if rows.ndim != ndim or rows.shape[-2] != self.n_instruments or rows.shape[-1] != expected_columns:
            raise DataValidationError(
                f"{what} must have shape {leading} = (..., {self.n_instruments}, "
                f"{expected_columns if expected_columns is not None else 'features'}); got {rows.shape}"
            )
        if not np.isfinite(rows).all():
            bad = np.argwhere(~np.isfinite(rows))[0]
            where = ", ".join(f"{axis}={index}" for axis, index in zip(("tick", "instrument", "column")[-rows.ndim :], bad))
            raise DataValidationError(f"{what} has a non-finite value {rows[tuple(bad)]} at {where}; the state was not changed")
        return rows

    def _features(self, rows: np.ndarray, previous, has_previous) -> np.ndarray:
        """Pipeline, scaler and column choice for rows `(..., n_instruments, columns)`."""
        values = rows
        if self.feature_pipeline is not None:
            values = self.feature_pipeline.step(rows, previous, has_previous)
            if not np.isfinite(values).all():
                raise DataValidationError(
                    "the feature pipeline gave a non-finite value (a log return of a zero or negative price?); "
                    "the state was not changed"
                )
        if self._input_mean is not None:
            values = (values - self._input_mean) / self._input_scale
        if self.feature_columns is not None:
            values = values[..., self.feature_columns]
        return values.astype(np.float32)

    def _outputs(self, y: np.ndarray) -> np.ndarray:
        if self._output_mean is None:
            return np.asarray(y, np.float32)
        return (np.asarray(y, np.float64) * self._output_scale + self._output_mean).astype(np.float32)

    def _step_function(self):
        if self._compiled is None:
            self._compiled = compiled_step(self.model, self.n_instruments, self.n_features, self._model_state)
        return self._compiled

    def _advance(self, x_scaled: np.ndarray) -> np.ndarray:
        if self._numpy is not None:
            y, self._model_state = self._numpy.step(x_scaled, self._model_state)
            return y
        import tensorflow as tf

        y, self._model_state = self._step_function()(tf.constant(x_scaled), self._model_state)
        return y.numpy()

    def _advance_many(self, scaled: np.ndarray) -> np.ndarray:
        """`(ticks, n, features)` -> `(ticks, n, outputs)`: NumPy layer by layer, or TensorFlow chunks.

        With TensorFlow, a chunk call of the model is much faster than as many one-step calls
        and gives the same outputs (the state protocol's promise); a sequential
        HierarchicalLSTM is ticked, since its chunks must start at a multiple of its period.
        """
        if self._numpy is not None:
            y, self._model_state = self._numpy.run(scaled, self._model_state)
            return y
        core, _ = _core_and_head(self.model)
        if type(core).__name__ == "HierarchicalLSTM":
            return np.stack([self._advance(tick) for tick in scaled])
        import tensorflow as tf

        chunk_length = WARM_UP_CHUNK
        whole = len(scaled) // chunk_length * chunk_length
        outputs = []
        if whole:
            run_chunk = compiled_chunk(self.model, self.n_instruments, chunk_length, self.n_features, self._model_state)
            for start in range(0, whole, chunk_length):
                chunk = tf.constant(np.swapaxes(scaled[start : start + chunk_length], 0, 1))
                y, self._model_state = run_chunk(chunk, self._model_state)
                outputs.append(np.swapaxes(y.numpy(), 0, 1))
        # The rest is ticked: one more chunk length would mean one more trace.
        outputs += [self._advance(tick)[None] for tick in scaled[whole:]]
        return np.concatenate(outputs)

    def _n_outputs(self) -> int:
        if self._output_mean is not None:
            return len(self._output_mean)
        _, head = _core_and_head(self.model)
        units = getattr(head, "units", None)
        return int(units) if units is not None else 0

    def update(self, x_t) -> np.ndarray:
        """One tick for all instruments: raw `(n_instruments, columns)` in, `(n_instruments, outputs)` out.

        With `n_instruments=1` a `(columns,)` row is accepted and a `(outputs,)` row returned.
        """
        raw = np.asarray(x_t)
        rows = self._check_rows(raw, "x_t")
        x_scaled = self._features(rows, self._previous, self._has_previous)
        y = self._outputs(self._advance(x_scaled))
        if self.feature_pipeline is not None:
            self._previous = rows.copy()
        self._has_previous[:] = True
        self.ticks += 1
        return y[0] if self.n_instruments == 1 and raw.ndim == 1 else y

    def update_many(self, xs) -> np.ndarray:
        """Many ticks: `(ticks, n_instruments, columns)` -> `(ticks, n_instruments, outputs)`.

        The rows are validated before any of them is applied, so a bad row leaves the state
        as it was. With `n_instruments=1`, `(ticks, columns)` gives `(ticks, outputs)`.
        """
        raw = np.asarray(xs)
        rows = self._check_rows(raw, "xs")
        if len(rows) == 0:
            outputs = np.zeros((0, self.n_instruments, self._n_outputs()), np.float32)
            return outputs[:, 0] if self.n_instruments == 1 and raw.ndim == 2 else outputs
        if self.feature_pipeline is not None:
            previous = np.concatenate([self._previous[None], rows[:-1]], axis=0)
            has_previous = np.concatenate([self._has_previous[None], np.ones((len(rows) - 1, self.n_instruments), bool)])
            scaled = self._features(rows, previous, has_previous)
        else:
            scaled = self._features(rows, None, None)
        y = self._outputs(self._advance_many(scaled))
        if self.feature_pipeline is not None:
            self._previous = rows[-1].copy()
        self._has_previous[:] = True
        self.ticks += len(rows)
        return y[:, 0] if self.n_instruments == 1 and raw.ndim == 2 else y

    def warm_up(self, history) -> np.ndarray:
        """Run past rows `(ticks, n_instruments, columns)` through the state; returns their predictions.

        The same as `update_many`: on the TensorFlow engine the history runs in compiled chunks
        of `WARM_UP_CHUNK` steps (the remainder tick by tick), so a long history costs a few
        model calls, not one per row.
        """
        return self.update_many(history)


# ---- loading a run ------------------------------------------------------------------------------


def load_run_model(run_dir: str | Path, weights: str = "best"):
    """`(model, metadata)` of a run directory: the float32 model with its weights, and its columns/scaler."""
    import keras

    from longstm.train.config import load_config
    from longstm.train.run import model_for

    run_dir = Path(run_dir)
    if weights not in ("best", "latest"):
        raise ConfigError(f"weights must be 'best' or 'latest'; got {weights!r}")
    if not (run_dir / "config.toml").is_file() or not (run_dir / "data.json").is_file():
        raise ConfigError(
            f"{run_dir}: not a run directory (expected config.toml and data.json from `longstm train`)"
        )
    config = load_config(run_dir / "config.toml")
    record = json.loads((run_dir / "data.json").read_text())
    names = list(record["columns"])
    features = [names.index(name) for name in record["features"]]
    targets = [names.index(name) for name in record["targets"]]
    candidates = [run_dir / "checkpoints" / "best.npz"] if weights == "best" else []
    candidates += [run_dir / "checkpoints" / "latest" / "variables.npz", run_dir / "checkpoints" / "latest.old" / "variables.npz"]
    weights_path = next((path for path in candidates if path.is_file()), None)
    if weights_path is None:
        raise ConfigError(f"{run_dir}: has no checkpoint yet (checkpoints/best.npz or checkpoints/latest/variables.npz)")
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # serving runs in float32 whatever training used
    try:
        _import_model_builders()
        model = model_for(config, features, targets, names)
        core, _ = _core_and_head(model)
        steps = getattr(core, "period", 1)
        model(np.zeros((1, steps, len(features)), np.float32), state=model.initial_state(1))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    with np.load(weights_path) as arrays:
        assign_variables(model, arrays, weights_path)
    meta = {
        "columns": names,
        "scaler": record.get("scaler"),
        "feature_pipeline": record.get("feature_pipeline"),
        "feature_columns": features,
        "target_columns": targets,
        "horizon": config.data.horizon,
        "offset": config.data.offset,
        "targets": [f"{names[t]}+{config.data.offset + h}" for h in range(config.data.horizon) for t in targets],
    }
    return model, meta


def _import_model_builders() -> None:
    """Import every model class (through the registry) so Keras can deserialise them by name."""
    import longstm.models.registry  # noqa: F401


def assign_variables(model, arrays, source) -> None:
    """Load `model_{i}` arrays (the trainer's checkpoint layout) into `model.variables`."""
    from longstm.train.trainer import assign_checkpoint_arrays

    assign_checkpoint_arrays(model.variables, arrays, "model", source, error=ConfigError)


def percentile_us(seconds: Sequence[float], q: float) -> float:
    """The q-th percentile of durations in seconds, in microseconds."""
    return float(np.percentile(np.asarray(seconds) * 1e6, q)) if len(seconds) else math.nan
