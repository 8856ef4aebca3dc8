"""The fused minLSTM path (longstm/models/scan.py `fused_projected_scan`, chunks longer than
FUSED_MIN_STEPS) gives gradients with respect to its inputs in eager mode, outside any
`tf.function`, equal to the unfused path's."""

import numpy as np
import tensorflow as tf

from longstm.models import minrnn
from longstm.models.minrnn import MinLSTM

STEPS = 300  # over FUSED_MIN_STEPS: two sub-chunks, the second ragged


def _gradients(layer, x, h0, weights):
    with tf.GradientTape() as tape:
        tape.watch([x, h0])
        h, (last,) = layer(x, state=(h0,))
        loss = tf.reduce_sum(h * weights) + tf.reduce_sum(tf.sin(last))
    return h, tape.gradient(loss, [x, h0, *layer.trainable_variables])


def test_eager_input_gradients_of_the_fused_path_equal_the_unfused_path(monkeypatch):
    assert tf.executing_eagerly() and STEPS > minrnn.FUSED_MIN_STEPS and minrnn.FUSED_XLA
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, STEPS, 3)).astype("float32"))
    h0 = tf.constant(rng.normal(size=(2, 4)).astype("float32"))
    weights = tf.constant(rng.normal(size=(2, STEPS, 4)).astype("float32"))
    layer = MinLSTM(4)
    layer(x[:, :2])
    h_fused, fused = _gradients(layer, x, h0, weights)
    monkeypatch.setattr(minrnn, "FUSED_MIN_STEPS", 10 * STEPS)  # the same layer through blocked_scan
    h_plain, plain = _gradients(layer, x, h0, weights)
    np.testing.assert_allclose(h_fused, h_plain, atol=1e-5)
    names = ["inputs", "initial state", *(variable.path for variable in layer.trainable_variables)]
    assert np.abs(np.asarray(plain[0])).max() > 1e-3  # the inputs' gradient is not trivially zero
    for name, got, expected in zip(names, fused, plain):
        assert got is not None, name
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=name)
