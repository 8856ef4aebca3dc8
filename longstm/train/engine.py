"""The TBPTT engine: an explicit loop around one `tf.function` step that takes and returns state.

The recurrent state never lives inside the model. Each update:

    state = stop_gradient(reset_lanes(state, batch.reset))     # chunk boundary, new segments
    y_k1, carried = model(x[:, :k1], state)                    # the state handed on
    y_rest, _     = model(x[:, k1:], carried)                  # context-only tail (k1 < k2)
    loss = masked MSE over the window (mask: last k1 steps, burn-in, padding)
    apply gradients; return loss, carried

so the gradient flows through all k2 steps of the window but never across a carried state
(Williams & Peng's TBPTT(k1, k2)), and the forward state always does. A pure delay longer
than k2 can therefore never be learned: no gradient reaches that far back. What carried
state does buy is the use of information that is many windows old once the mechanism that
keeps it (a latch, a slowly varying level) can be learned inside one window.

Everything that changes between calls (state, reset flags, masks) is an argument, so the
step is traced once. The state is float32 outside the model whatever the mixed-precision
policy; the loss is computed in float32.

Distribution (`longstm.train.distribute`): the state is a plain nested structure of
`(lanes, ...)` tensors passed in and out, so under a `tf.distribute` strategy each replica
carries the states of its own contiguous block of lanes; the optimizer is built before
the first trace. The steps return the loss *sum* and the masked-step *count* so that
global metrics can be summed across replicas; on one device the gradient is of the mean
`loss_sum / count`, under a strategy of `loss_sum / global_count` (`total_count`: all
replicas' counts summed), so replicas with fewer unmasked steps do not get more weight.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from longstm.models.protocol import reset_lanes, stop_state_gradient


def cast_state(state: Any, dtype) -> Any:
    """The same nested state with every tensor cast to `dtype`."""
    return tf.nest.map_structure(lambda tensor: tf.cast(tensor, dtype), state)


def window_forward(model, x, state, k1: int, training: bool):
    """Run one TBPTT window: outputs for all its steps and the state after its first k1 steps.

    Args:
        model: a `RecurrentModel`.
        x: `(lanes, k2, features)`.
        state: the lanes' state at the window start (model dtype).
        k1: the step after which the state is handed to the next window (static).
        training: passed to the model.

    Returns:
        `(outputs, carried_state)`; outputs cover all k2 steps.
    """
    k2 = x.shape[1]
    if k1 >= k2:
        return model(x, state=state, training=training)
    head, carried = model(x[:, :k1], state=state, training=training)
    tail, _ = model(x[:, k1:], state=carried, training=training)
    return tf.concat([head, tail], axis=1), carried


def masked_squared_error(y_true, y_pred, mask):
    """Sum over masked steps of the per-step mean squared error, and the number of those steps."""
    y_pred = tf.cast(y_pred, tf.float32)
    per_step = tf.reduce_mean(tf.square(y_pred - y_true), axis=-1)
    return tf.reduce_sum(per_step * mask), tf.reduce_sum(mask)


def masked_absolute_error(y_true, y_pred, mask):
    y_pred = tf.cast(y_pred, tf.float32)
    per_step = tf.reduce_mean(tf.abs(y_pred - y_true), axis=-1)
    return tf.reduce_sum(per_step * mask)


class TBPTTEngine:
    """The compiled train / evaluation steps of one model, optimizer and window shape.

    Args:
        model: a `RecurrentModel` (state in, state out), already built.
        optimizer: a Keras optimizer (a `LossScaleOptimizer` under `mixed_float16`).
        k1: loss length and stride of a window; the state carried forward is the one
            after k1 steps.

    The steps:

    - `train_step(batch, state) -> (loss_sum, count, new_state)`: `batch` a dict with the
      window's `x`, `y`, `mask` and `reset` (as `LaneWindows.dataset` yields it); the same
      call as `DistributedEngine.train_step`. It runs `compiled_train_step(x, y, mask,
      reset, state)`, traced once.
    - `eval_step(x, y, mask, reset, state, k1) -> (loss_sum, abs_sum, count, y_pred, new_state)`
      (`k1` a Python int: the evaluation lanes' own stride; one trace per value)

    `optimizer=None` gives an engine for evaluation only.

    States going in and out are float32 nested structures with one row per lane.
    """

    def __init__(self, model, optimizer=None, k1: int = 1):
        self.model = model
        self.optimizer = optimizer
        self.k1 = int(k1)
        if optimizer is not None:
            # Built outside tf.function: lazily created slots are fatal under a strategy.
            optimizer.build(model.trainable_variables)
        self._scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.compiled_train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    def train_step(self, batch, state):
        """One update on `batch` (x, y, mask, reset of every lane); `(loss_sum, count, new_state)`."""
        return self.compiled_train_step(batch["x"], batch["y"], batch["mask"], batch["reset"], state)

    @property
    def evaluator(self) -> "TBPTTEngine":
        """The engine whose `eval_step` validation and prediction use: this one."""
        return self

    def local_windows(self, windows):
        """The lanes this process trains: all of them on one device."""
        return windows

    def gather_state(self, state) -> list[np.ndarray]:
        """The lane states as `(lanes, ...)` arrays, as a checkpoint stores them."""
        return [np.asarray(leaf) for leaf in tf.nest.flatten(state)]

    def scatter_state(self, template, leaves: list[np.ndarray]):
        """A state shaped like `template` from the arrays `gather_state` returns."""
        return tf.nest.pack_sequence_as(template, [tf.constant(leaf) for leaf in leaves])

    def _enter(self, state, reset):
        state = reset_lanes(state, reset)
        return cast_state(stop_state_gradient(state), self.model.compute_dtype)

    def window_gradients(self, x, y, mask, reset, state, total_count=None):
        """Loss sum, count, gradients of the window's mean masked loss, and the carried state.

        The gradients are of the (loss-scaled, under `mixed_float16`) mean over the masked
        steps with respect to `model.trainable_variables`; none flows into `state`. With
        `total_count` (the count of all replicas' masked steps) the loss sum is divided by
        it instead of by this window's own count, so that the replicas' gradients sum to
        the gradient of the global mean.
        """
        state = self._enter(state, reset)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred, carried = window_forward(self.model, x, state, self.k1, training=True)
            loss_sum, count = masked_squared_error(y, y_pred, mask)
            denominator = count if total_count is None else total_count
            loss = loss_sum / tf.maximum(denominator, 1.0)
            scaled = self.optimizer.scale_loss(loss) if self._scales_loss else loss
        return loss_sum, count, tape.gradient(scaled, variables), cast_state(carried, tf.float32)

    def _train_step(self, x, y, mask, reset, state):
        loss_sum, count, gradients, carried = self.window_gradients(x, y, mask, reset, state)
        self.optimizer.apply(gradients, self.model.trainable_variables)
        return loss_sum, count, carried

    def _eval_step(self, x, y, mask, reset, state, k1: int):
        state = self._enter(state, reset)
        y_pred, carried = window_forward(self.model, x, state, k1, training=False)
        loss_sum, count = masked_squared_error(y, y_pred, mask)
        abs_sum = masked_absolute_error(y, y_pred, mask)
        return loss_sum, abs_sum, count, tf.cast(y_pred, tf.float32), cast_state(carried, tf.float32)

    def initial_state(self, lanes: int):
        return cast_state(self.model.initial_state(lanes), tf.float32)


def build_model_for(model, lanes: int, steps: int, features: int) -> None:
    """Create the model's variables with one forward pass on zeros (the optimizer needs them)."""
    if not model.built or not model.trainable_variables:
        model(np.zeros((lanes, steps, features), np.float32), state=model.initial_state(lanes))
