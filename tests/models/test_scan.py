"""The scans of h_t = a_t h_{t-1} + b_t against a float64 loop, values and gradients."""

import numpy as np
import pytest
import tensorflow as tf

from longstm.models.scan import (
    associative_log_scan,
    blocked_scan,
    fused_projected_scan,
    logcumsumexp_scan,
    sequential_scan,
)


def _reference(a, b, h0):
    h = h0.astype(np.float64)
    out = np.empty(a.shape, np.float64)
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out


def _coefficients(rng, batch, steps, units):
    a = rng.uniform(0.3, 1.0, size=(batch, steps, units)).astype("float32")
    b = rng.uniform(0.01, 1.0, size=(batch, steps, units)).astype("float32")
    h0 = rng.normal(size=(batch, units)).astype("float32")  # any sign
    return a, b, h0


# 1 step, shorter than a block, exactly a block, a ragged tail, and two recursion levels.
@pytest.mark.parametrize("steps", [1, 7, 64, 65, 200, 64 * 64 + 3])
def test_blocked_scan_matches_the_float64_loop(steps):
    a, b, h0 = _coefficients(np.random.default_rng(steps), 2, steps, 3)
    h = tf.function(blocked_scan)(tf.constant(a), tf.constant(b), tf.constant(h0))
    np.testing.assert_allclose(h, _reference(a, b, h0), atol=2e-6)


@pytest.mark.parametrize("scan", [associative_log_scan, logcumsumexp_scan])
def test_log_space_scans_match_the_float64_loop_and_take_h0_of_any_sign(scan):
    a, b, h0 = _coefficients(np.random.default_rng(3), 2, 300, 3)
    h = scan(tf.constant(np.log(a)), tf.constant(np.log(b)), tf.constant(h0))
    assert h.shape == (2, 300, 3)
    np.testing.assert_allclose(h, _reference(a, b, h0), atol=1e-5)


def test_sequential_scan_matches_the_float64_loop():
    a, b, h0 = _coefficients(np.random.default_rng(4), 2, 50, 3)
    np.testing.assert_allclose(sequential_scan(a, b, h0), _reference(a, b, h0), atol=1e-6)


@pytest.mark.parametrize("steps", [65, 300])
def test_hand_written_blocked_scan_gradient_equals_autodiff_of_the_loop(steps):
    a, b, h0 = (tf.Variable(v) for v in _coefficients(np.random.default_rng(5), 2, steps, 3))
    weights = tf.constant(np.random.default_rng(6).normal(size=(2, steps, 3)).astype("float32"))

    def gradients(scan):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(scan(a, b, h0) * weights)
        return tape.gradient(loss, [a, b, h0])

    for got, expected in zip(tf.function(lambda: gradients(blocked_scan))(), gradients(sequential_scan)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _softplus_input_coefficient_gradient(projections, a, grad_a, grad_b):
    decay_logit, input_logit = tf.split(projections, 2, axis=-1)
    return tf.concat([grad_a * a * (1.0 - a), grad_b * tf.sigmoid(input_logit)], axis=-1)


# The tape inside the sub-chunk loop or a closed-form gradient, each compiled with XLA or not;
# with and without a bias (which the fused path folds into the kernel as a row); lane counts
# that split into equal, unequal and no groups (`LANE_GROUPS`).
@pytest.mark.parametrize(
    "coefficient_gradient, jit_compile, use_bias, lanes",
    [
        (None, False, True, 2),
        (None, True, False, 3),
        (_softplus_input_coefficient_gradient, False, False, 1),
        (_softplus_input_coefficient_gradient, True, True, 2),
        (_softplus_input_coefficient_gradient, True, False, 1),
    ],
)
def test_fused_projected_scan_values_and_gradients_equal_the_unfused_computation(
    coefficient_gradient, jit_compile, use_bias, lanes
):
    rng = np.random.default_rng(7)
    steps, features, units = 300, 4, 3  # two sub-chunks of 128 and a ragged third
    x = tf.Variable(rng.normal(size=(lanes, steps, features)).astype("float32"))
    kernel = tf.Variable(rng.normal(size=(features, 2 * units)).astype("float32"))
    bias = tf.Variable(rng.normal(size=(2 * units,)).astype("float32")) if use_bias else None
    h0 = tf.Variable(rng.normal(size=(lanes, units)).astype("float32"))
    weights = tf.constant(rng.normal(size=(lanes, steps, units)).astype("float32"))
    variables = [x, kernel, h0] + ([bias] if use_bias else [])

    def coefficients(projections):
        decay_logit, input_logit = tf.split(projections, 2, axis=-1)
        return tf.sigmoid(decay_logit), tf.nn.softplus(input_logit)

    def unfused(x, kernel, bias, h0):
        projections = tf.matmul(x, kernel)
        return sequential_scan(*coefficients(projections if bias is None else projections + bias), h0)

    def fused(x, kernel, bias, h0):
        return fused_projected_scan(
            x, kernel, bias, h0, coefficients, 128, 8, coefficient_gradient=coefficient_gradient, jit_compile=jit_compile
        )

    def run(scan):
        with tf.GradientTape() as tape:
            h = scan(x, kernel, bias, h0)
            loss = tf.reduce_sum(h * weights)
        return h, tape.gradient(loss, variables)

    h_fused, grads_fused = tf.function(lambda: run(fused))()
    h_plain, grads_plain = run(unfused)
    np.testing.assert_allclose(h_fused, h_plain, atol=1e-5)
    for got, expected in zip(grads_fused, grads_plain):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_blocked_scan_refuses_an_unknown_number_of_steps():
    @tf.function(input_signature=[tf.TensorSpec((2, None, 3))] * 2 + [tf.TensorSpec((2, 3))])
    def scan(a, b, h0):
        return blocked_scan(a, b, h0)

    with pytest.raises(ValueError, match="static number of steps; got None"):
        scan.get_concrete_function()
