"""The TBPTT engine: chunked = full forward, window gradients = a hand-written tape, resets."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from longstm.data.lanes import LaneWindows
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train.config import TrainConfig
from longstm.train.engine import TBPTTEngine, build_model_for, cast_state
from longstm.train.trainer import Trainer


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return Forecaster(KerasRNNStack([keras.layers.LSTM(8), keras.layers.LSTM(6)]), outputs=2)


def _series(rows, features=3, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, features)).astype(np.float32)


@pytest.mark.parametrize("k1, k2", [(25, 25), (30, 30), (20, 32)])  # 25 divides T-1=200, 30 does not
def test_lane_predictions_with_carried_state_equal_one_full_sequence_forward(k1, k2):
    values = _series(201)
    model = _model()
    lanes = LaneWindows(values, lanes=1, k1=k1, k2=k2, feature_columns=[0, 1, 2], target_columns=[0, 1])
    trainer = Trainer(model, TrainConfig(k1=k1, k2=k2), progress=False)
    rows, predictions = trainer.predict(lanes)
    full, _ = model(values[None, :200])
    full = np.asarray(full)[0]
    assert rows.tolist() == list(range(k2 - k1, 200))
    assert np.max(np.abs(predictions - full[rows])) < 1e-5


def _window(k2, lanes=3, features=3, outputs=2, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(lanes, k2, features)).astype(np.float32)
    y = rng.normal(size=(lanes, k2, outputs)).astype(np.float32)
    return x, y


@pytest.mark.parametrize("k1, k2", [(12, 12), (5, 12)])
def test_window_gradients_equal_a_hand_written_tape_from_the_same_stopped_state(k1, k2):
    model = _model()
    x, y = _window(k2)
    mask = np.zeros((3, k2), np.float32)
    mask[:, k2 - k1 :] = 1.0
    mask[1, -2:] = 0.0  # padding at a segment tail
    build_model_for(model, 3, k2, 3)
    rng = np.random.default_rng(2)
    state = tf.nest.map_structure(
        lambda t: tf.constant(rng.normal(size=t.shape).astype(np.float32)), model.initial_state(3)
    )
    engine = TBPTTEngine(model, keras.optimizers.SGD(1.0), k1)
    reset = np.array([False, True, False])
    loss_sum, count, gradients, carried = engine.window_gradients(x, y, mask, reset, state)

    # By hand: lane 1 restarts from zeros, the others from the given state, no gradient into it.
    keep = tf.constant([[1.0], [0.0], [1.0]])
    start = tf.nest.map_structure(lambda t: tf.stop_gradient(t * keep), state)
    with tf.GradientTape() as tape:
        outputs, _ = model(x, state=start)
        per_step = tf.reduce_mean(tf.square(outputs - y), axis=-1)
        loss = tf.reduce_sum(per_step * mask) / tf.reduce_sum(mask)
    expected = tape.gradient(loss, model.trainable_variables)
    _, expected_carried = model(x[:, :k1], state=start)

    assert float(count) == mask.sum()
    np.testing.assert_allclose(float(loss_sum) / float(count), float(loss), rtol=1e-6)
    for got, want in zip(gradients, expected):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)
    for got, want in zip(tf.nest.flatten(carried), tf.nest.flatten(expected_carried)):
        np.testing.assert_allclose(got, want, atol=1e-6)

    # The train step applies exactly these gradients (SGD with learning rate 1).
    before = [v.numpy() for v in model.trainable_variables]
    engine.train_step({"x": x, "y": y, "mask": mask, "reset": reset}, state)
    for old, new, gradient in zip(before, model.trainable_variables, expected):
        np.testing.assert_allclose(new.numpy(), old - gradient.numpy(), atol=1e-6)


def test_no_gradient_crosses_the_carried_state():
    model = _model()
    x, y = _window(8)
    build_model_for(model, 3, 8, 3)
    engine = TBPTTEngine(model, keras.optimizers.SGD(0.1), 8)
    state = tf.nest.map_structure(lambda t: tf.Variable(tf.ones_like(t)), model.initial_state(3))
    with tf.GradientTape() as tape:
        loss_sum, _, _, _ = engine.window_gradients(x, y, np.ones((3, 8), np.float32), np.zeros(3, bool), state)
    assert all(g is None for g in tape.gradient(loss_sum, tf.nest.flatten(state)))


def test_train_step_is_traced_once_for_any_resets_and_masks():
    model = _model()
    build_model_for(model, 2, 6, 3)
    engine = TBPTTEngine(model, keras.optimizers.Adam(1e-3), 4)
    state = engine.initial_state(2)
    rng = np.random.default_rng(0)
    for i in range(4):
        x, y = _window(6, lanes=2, seed=i)
        reset = tf.constant(rng.random(2) < 0.5)
        mask = tf.constant((rng.random((2, 6)) < 0.7).astype(np.float32))
        _, _, state = engine.train_step({"x": tf.constant(x), "y": tf.constant(y), "mask": mask, "reset": reset}, state)
    assert engine.compiled_train_step.experimental_get_tracing_count() == 1


def test_reset_lane_state_equals_a_fresh_start():
    model = _model()
    x, y = _window(10, lanes=2)
    build_model_for(model, 2, 10, 3)
    engine = TBPTTEngine(model)
    dirty = tf.nest.map_structure(lambda t: tf.ones_like(t) * 3.0, engine.initial_state(2))
    mask = np.ones((2, 10), np.float32)
    *_, y_reset, _ = engine.eval_step(x, y, mask, np.array([True, False]), dirty, 10)
    fresh, _ = model(x[:1])
    np.testing.assert_allclose(y_reset[:1], fresh, atol=1e-6)
    assert np.max(np.abs(np.asarray(y_reset[1:]) - np.asarray(model(x[1:])[0]))) > 1e-3


def test_state_is_kept_in_float32_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = Forecaster(KerasRNNStack([keras.layers.LSTM(4)]), outputs=1)
        build_model_for(model, 2, 5, 3)
        engine = TBPTTEngine(model, keras.optimizers.Adam(1e-3), 5)
        x, y = _window(5, lanes=2, outputs=1)
        batch = {"x": x, "y": y, "mask": np.ones((2, 5), np.float32), "reset": np.zeros(2, bool)}
        loss_sum, count, state = engine.train_step(batch, engine.initial_state(2))
        assert all(t.dtype == tf.float32 for t in tf.nest.flatten(state))
        assert loss_sum.dtype == tf.float32 and np.isfinite(float(loss_sum))
        assert model.compute_dtype == "bfloat16"
        assert cast_state(state, "bfloat16")[0][0].dtype == tf.bfloat16
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_lane_predictions_restart_from_zero_state_at_each_segment():
    values = _series(120)
    model = _model()
    segments = [37, 80]
    lanes = LaneWindows(values, lanes=1, k1=10, k2=10, target_columns=[0, 1], segments=segments, burn_in=3)
    rows, predictions = Trainer(model, TrainConfig(k1=10, k2=10), progress=False).predict(lanes)
    expected_rows = []
    for start, stop in zip([0, *segments], [*segments, 120]):
        alone, _ = model(values[None, start : stop - 1])  # the segment run on its own from zeros
        expected_rows += list(range(start + 3, stop - 1))  # burn-in 3, last row has no target
        inside = (rows >= start + 3) & (rows < stop - 1)
        np.testing.assert_allclose(predictions[inside], np.asarray(alone)[0, rows[inside] - start], atol=1e-5)
    assert rows.tolist() == expected_rows
