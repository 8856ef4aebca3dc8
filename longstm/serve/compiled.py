"""The TensorFlow engine: the model's own `step` traced once per shape, and whole chunks for history.

Traced functions are cached per model and shape and shared by the predictors of one model (a
trace costs seconds for attention or hierarchical models). With TensorFlow, one chunk call of
the model is much faster than as many one-step calls and gives the same outputs (the state
protocol's promise), so many ticks run in chunks where the model's step state is its call state.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled_step(model, n_instruments: int, n_features: int, state_example):
    """`model.step` as a concrete `tf.function` with a fixed input signature, traced once per shape."""
    cache = _COMPILED.setdefault(model, {})
    key = (n_instruments, n_features)
    if key not in cache:
        state_spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, tf.float32), state_example)
        x_spec = tf.TensorSpec((n_instruments, n_features), tf.float32)
        model_ref = weakref.ref(model)  # a strong reference here would keep the model alive forever
        function = tf.function(
            lambda x_t, state: model_ref().step(x_t, state), input_signature=[x_spec, state_spec], reduce_retracing=True
        )
        # Calling the concrete function skips tf.function's argument matching: about half the
        # per-tick dispatch time measured here.
        cache[key] = function.get_concrete_function()
    return cache[key]


def compiled_chunk(model, n_instruments: int, steps: int, n_features: int, state_example):
    """The model on a `(n_instruments, steps, n_features)` chunk, traced once per shape; the state out
    has the structure of `state_example`."""
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


class TensorFlowEngine:
    """Ticks through the compiled `model.step`; many ticks in compiled chunks where allowed.

    Args:
        model: a built, streamable longstm `RecurrentModel`.
        n_instruments: lanes per tick.
        n_features: inputs per tick.
    """

    def __init__(self, model, n_instruments: int, n_features: int):
        self.model = model
        self.n_instruments = n_instruments
        self.n_features = n_features
        self._step = None

    def to_engine(self, state):
        """NumPy state -> the engine's own (TensorFlow constants)."""
        return tf.nest.map_structure(tf.constant, state)

    def step(self, x_t: np.ndarray, state):
        if self._step is None:
            self._step = compiled_step(self.model, self.n_instruments, self.n_features, state)
        y, state = self._step(tf.constant(x_t), state)
        return y.numpy(), state

    def run(self, scaled: np.ndarray, state, chunk_length: int):
        """`(ticks, n, features)` -> `(ticks, n, outputs)`: compiled chunks of `chunk_length`, the rest ticked.

        A model whose step state is not its call state (a sequential hierarchy's phase) is ticked.
        """
        if not self.model.step_state_is_call_state():
            outputs = []
            for tick in scaled:
                y, state = self.step(tick, state)
                outputs.append(y)
            return np.stack(outputs), state
        whole = len(scaled) // chunk_length * chunk_length
        outputs = []
        if whole:
            run_chunk = compiled_chunk(self.model, self.n_instruments, chunk_length, self.n_features, state)
            for start in range(0, whole, chunk_length):
                chunk = tf.constant(np.swapaxes(scaled[start : start + chunk_length], 0, 1))
                y, state = run_chunk(chunk, state)
                outputs.append(np.swapaxes(y.numpy(), 0, 1))
        # The rest is ticked: one more chunk length would mean one more trace.
        for tick in scaled[whole:]:
            y, state = self.step(tick, state)
            outputs.append(y[None])
        return np.concatenate(outputs), state
