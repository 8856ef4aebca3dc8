"""minLSTM / minGRU / MinRNNStack: modes agree, chunking with carry, causality, saving, errors, a latch."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from longstm.errors import ConfigError, DataValidationError
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.minrnn import MinGRU, MinLSTM
from longstm.models.minrnn_stack import MinRNNStack
from longstm.models.protocol import Forecaster
from longstm.train.engine import TBPTTEngine
from tests.train.test_long_memory import reset_bound


def _inputs(steps, batch=2, features=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, steps, features)).astype("float32")


def _twin(layer, **changes):
    """The same layer (same weights) with some constructor arguments changed."""
    twin = type(layer).from_config(layer.get_config() | changes)
    twin(_inputs(2, batch=1, features=layer.kernel.shape[0]))
    twin.set_weights(layer.get_weights())
    return twin


LONG = _inputs(10_000)
LONG_H0 = (np.random.default_rng(1).normal(size=(2, 8)).astype("float32"),)  # negative entries too
_STEP_LOOP_RUNS = {}


def _step_loop_run(cls, long_memory: bool):
    """`(layer, outputs, last state)`: one `cls(8)` per cell (and memory setting) run by its step
    loop over the 10^4 steps of LONG from LONG_H0. The reference of every scan, computed once per
    cell: each scan's layer is a twin with these weights."""
    key = (cls, long_memory)
    if key not in _STEP_LOOP_RUNS:
        sequential = cls(8, mode="sequential")
        sequential(LONG[:, :2])
        if long_memory:
            _long_memory(sequential)
        h, (last,) = tf.function(lambda x, s: sequential(x, state=s))(LONG, LONG_H0)
        _STEP_LOOP_RUNS[key] = sequential, np.asarray(h), np.asarray(last)
    return _STEP_LOOP_RUNS[key]


# Every scan, the two log-space ones included, in float32 over one 10^4-step chunk.
@pytest.mark.parametrize("scan", ["blocked", "associative", "logcumsumexp"])
@pytest.mark.parametrize("cls", [MinLSTM, MinGRU])
def test_parallel_equals_sequential_over_ten_thousand_steps_from_a_signed_state(cls, scan):
    sequential, h_sequential, last_sequential = _step_loop_run(cls, long_memory=False)
    parallel = _twin(sequential, mode="parallel", scan=scan)
    h_parallel, (last_parallel,) = tf.function(lambda x, s: parallel(x, state=s))(LONG, LONG_H0)
    assert np.isfinite(h_parallel).all()
    assert np.abs(np.asarray(h_parallel) - np.asarray(h_sequential)).max() < 1e-4
    np.testing.assert_array_equal(last_parallel, h_parallel[:, -1])
    np.testing.assert_allclose(last_parallel, last_sequential, atol=1e-4)


def _long_memory(layer, units=8):
    """Set the gate biases so that the keep coefficient is about 0.999 (a memory of ~1000 steps)
    and the kernel small, so the gates stay near their biases whatever the input."""
    kernel, bias = layer.kernel.numpy(), np.zeros(layer.bias.shape, "float32")
    if isinstance(layer, MinGRU):
        bias[:units] = -6.9  # update logit: keep = sigmoid(+6.9) = 0.999
    else:
        bias[:units], bias[units : 2 * units] = 6.9, -6.9  # forget ~0.999, input ~0.001: keep = f / (f + i) ~ 0.999
    layer.kernel.assign(kernel * 0.01)
    layer.bias.assign(bias)
    return layer


# With zero biases the keep coefficient is ~0.5 and memory lasts ~13 steps: long-range drift of
# the parallel scan would not show. Here keep ~0.999, so the state of step 0 still weighs
# ~0.999^10000 ~ 5e-5 at the end and every step's rounding error is carried for ~1000 steps.
@pytest.mark.parametrize("scan", ["blocked", "associative", "logcumsumexp"])
@pytest.mark.parametrize("cls", [MinLSTM, MinGRU])
def test_parallel_equals_sequential_over_ten_thousand_steps_with_a_memory_of_a_thousand(cls, scan):
    sequential, h_sequential, last_sequential = _step_loop_run(cls, long_memory=True)
    parallel = _twin(sequential, mode="parallel", scan=scan)
    keep, _ = parallel.coefficients(ops.matmul(LONG[:, :100], parallel.kernel) + parallel.bias)
    assert 0.998 < float(np.min(keep)) and float(np.max(keep)) < 0.9995
    h_parallel, (last_parallel,) = tf.function(lambda x, s: parallel(x, state=s))(LONG, LONG_H0)
    assert np.abs(np.asarray(h_parallel) - np.asarray(h_sequential)).max() < 1e-4
    np.testing.assert_allclose(last_parallel, last_sequential, atol=1e-4)


@pytest.mark.parametrize("cls", [MinLSTM, MinGRU])
def test_gradients_reach_back_over_1100_steps_with_a_long_memory(cls):
    """The gradient of the last output with respect to the first input, parallel (fused path)
    against the step loop: nonzero (the memory carries it) and equal."""
    x = tf.constant(_inputs(1100))
    layer = cls(5)
    layer(x[:, :2])
    _long_memory(layer, units=5)
    sequential = _twin(layer, mode="sequential")

    def first_input_gradient(model):
        with tf.GradientTape() as tape:
            tape.watch(x)
            h, _ = model(x)
            loss = tf.reduce_sum(h[:, -1])
        return tape.gradient(loss, x)[:, 0]

    got = np.asarray(tf.function(lambda: first_input_gradient(layer))())
    expected = np.asarray(first_input_gradient(sequential))
    # ~0.999^1100 = 0.33 of x_0's share (1 - keep) * 0.01-kernel ~ 1e-5 survives; with keep ~0.5 it would be 0.5^1100 = 0
    assert np.abs(expected).max() > 1e-7
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-10)


@pytest.mark.parametrize("scan", ["associative", "logcumsumexp"])
def test_log_space_scans_equal_the_default_scan(scan):
    x = _inputs(300)
    layer = MinLSTM(6)
    expected, _ = layer(x)
    got, _ = _twin(layer, scan=scan)(x)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.min(expected) > 0  # from a zero state h is positive: the candidates are


@pytest.mark.parametrize("cls", [MinLSTM, MinGRU])
@pytest.mark.parametrize("steps", [200, 1100])  # one piece; the fused path (> FUSED_MIN_STEPS)
def test_gradients_of_the_parallel_layer_equal_those_of_the_step_loop(cls, steps):
    x = tf.constant(_inputs(steps))
    layer = cls(5)
    layer(x[:, :2])
    sequential = _twin(layer, mode="sequential")

    def gradients(model):
        with tf.GradientTape() as tape:
            h, _ = model(x)
            loss = tf.reduce_sum(tf.sin(h))
        return tape.gradient(loss, model.trainable_variables)

    for got, expected in zip(tf.function(lambda: gradients(layer))(), gradients(sequential)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _paper_minlstm_coefficients(projections):
    """The first implementation's normalised gates, sigmoid(softplus(-k_i) - softplus(-k_f))."""
    forget_logit, input_logit, candidate_logit = tf.split(tf.cast(projections, tf.float64), 3, axis=-1)
    keep = tf.sigmoid(tf.nn.softplus(-input_logit) - tf.nn.softplus(-forget_logit))
    candidate = tf.where(candidate_logit >= 0, candidate_logit + 0.5, tf.sigmoid(candidate_logit))
    return keep, (1.0 - keep) * candidate


def _extreme_projections(units, seed=0):
    """Logits over +-200 in every combination, both gates underflowing included."""
    rng = np.random.default_rng(seed)
    columns = [rng.uniform(-200, 200, 400), rng.normal(0, 4, 400), np.full(400, -150.0), np.full(400, 150.0)]
    values = np.stack([rng.choice(columns[rng.integers(4)], size=(3, 50, 3 * units)) for _ in range(4)])
    return values.reshape(12, 50, 3 * units).astype("float32")


def test_min_lstm_gates_equal_the_log_space_formula_at_any_logit():
    layer = MinLSTM(4)
    layer.build((1, 1, 2))
    projections = _extreme_projections(4)
    keep, b = layer.coefficients(tf.constant(projections))
    expected_keep, expected_b = _paper_minlstm_coefficients(projections)
    assert np.isfinite(keep).all() and np.isfinite(b).all()
    np.testing.assert_allclose(keep, expected_keep, atol=1e-6)  # float32 against float64
    # b = (1 - keep) g(k_h): keep's float32 rounding (6e-8) times a candidate up to 200.
    candidate = np.maximum(projections[..., 8:], 0) + 0.5
    assert (np.abs(np.asarray(b, np.float64) - expected_b) <= 1e-6 * candidate).all()
    # Both gates underflow in float32 (logits below about -87): the ratio is still exact, not 0/0.
    both_closed = tf.constant([[[-120.0, -125.0, 0.0]]])
    np.testing.assert_allclose(MinLSTM(1).coefficients(both_closed)[0], [[[1 / (1 + np.exp(-5.0))]]], rtol=1e-6)


@pytest.mark.parametrize("cls", [MinLSTM, MinGRU])
def test_closed_form_coefficient_gradient_equals_autodiff(cls):
    layer = cls(4)
    layer.build((1, 1, 2))
    rng = np.random.default_rng(3)
    projections = tf.constant(rng.normal(0, 3, size=(2, 30, cls.gate_count * 4)).astype("float32"))
    grad_a, grad_b = (tf.constant(rng.normal(size=(2, 30, 4)).astype("float32")) for _ in range(2))
    with tf.GradientTape() as tape:
        tape.watch(projections)
        a, b = layer.coefficients(projections)
    expected = tape.gradient([a, b], projections, output_gradients=[grad_a, grad_b])
    got = layer.coefficient_gradient(projections, a, grad_a, grad_b)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _stack_forecaster(cell="minlstm", **kwargs):
    return Forecaster(MinRNNStack(8, layers=2, cell=cell, **kwargs), outputs=2)


# T = 1200 runs on the fused path; one-piece chunks that divide T, that do not, and fused chunks.
@pytest.mark.parametrize("cell, chunk", [("minlstm", 70), ("mingru", 100), ("minlstm", 1100), ("mingru", 300)])
def test_chunked_forward_with_carried_state_equals_full_forward(cell, chunk):
    x = _inputs(1200, features=4)
    model = _stack_forecaster(cell)
    full, full_state = model(x)
    state = model.initial_state(2)
    pieces = []
    for start in range(0, 1200, chunk):
        y, state = model(x[:, start : start + chunk], state=state)
        pieces.append(y)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-5)
    for got, expected in zip(tf.nest.flatten(state), tf.nest.flatten(full_state)):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_streaming_one_step_at_a_time_in_sequential_mode_equals_the_parallel_forward():
    x = _inputs(20, features=4)
    parallel = _stack_forecaster("mingru")
    expected, _ = parallel(x)
    streaming = Forecaster(MinRNNStack(8, layers=2, cell="mingru", mode="sequential"), outputs=2)
    streaming(x[:, :1])
    streaming.set_weights(parallel.get_weights())
    state, steps = streaming.initial_state(2), []
    for t in range(20):
        y, state = streaming(x[:, t : t + 1], state=state)
        steps.append(y)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), expected, atol=1e-5)


# parallel: 1100 steps take the fused path, t = 700 is inside its third sub-chunk.
@pytest.mark.parametrize("mode, steps, t", [("parallel", 1100, 700), ("sequential", 300, 131)])
def test_outputs_before_a_perturbed_step_do_not_change(mode, steps, t):
    x = _inputs(steps, features=4)
    model = _stack_forecaster(mode=mode)
    before, _ = model(x)
    x_changed = x.copy()
    x_changed[:, t] += 5.0
    after, _ = model(x_changed)
    np.testing.assert_array_equal(np.asarray(after)[:, :t], np.asarray(before)[:, :t])
    assert np.abs(np.asarray(after)[:, t:] - np.asarray(before)[:, t:]).max() > 1e-3


def test_keras_round_trip_gives_identical_outputs_and_config(tmp_path):
    x = _inputs(300, features=4)
    model = _stack_forecaster("mingru", norm="layer", mlp_ratio=3, dropout=0.1)
    expected, _ = model(x)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x)[0], expected)
    core = loaded.core
    assert (core.cell, core.norm, core.mlp_ratio, core.dropout, core.num_layers) == ("mingru", "layer", 3, 0.1, 2)


def test_single_layer_round_trip_keeps_mode_and_scan(tmp_path):
    x = _inputs(50)
    model = Forecaster(MinLSTM(4, mode="sequential", scan="associative"))
    expected, _ = model(x)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert (loaded.core.mode, loaded.core.scan) == ("sequential", "associative")
    np.testing.assert_array_equal(loaded(x)[0], expected)


def test_a_min_rnn_stack_works_as_a_level_of_the_hierarchical_model():
    x = _inputs(256, features=4)
    model = HierarchicalLSTM([(MinRNNStack(8, layers=1, cell="mingru"), 16), (MinRNNStack(6, layers=1), 1)])
    full, _ = model(x)
    assert full.shape == (2, 256, 14)
    state = model.initial_state(2)
    first, state = model(x[:, :128], state=state)
    second, _ = model(x[:, 128:], state=state)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, atol=1e-5)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: MinLSTM(0), r"MinLSTM argument `units` must be an integer >= 1; got 0"),
        (lambda: MinGRU(8, mode="fast"), r"MinGRU argument `mode` must be one of \['parallel', 'sequential'\]; got 'fast'"),
        (lambda: MinLSTM(8, scan="fft"), r"argument `scan` must be one of \['blocked', 'associative', 'logcumsumexp'\]; got 'fft'"),
        (lambda: MinRNNStack(8, cell="lstm"), r"MinRNNStack argument `cell` must be one of \['minlstm', 'mingru'\]; got 'lstm'"),
        (lambda: MinRNNStack(8, norm="batch"), r"`norm` must be one of \['rms', 'layer', None\]; got 'batch'"),
        (lambda: MinRNNStack(8, layers=2.5), r"`layers` must be an integer >= 1; got 2.5"),
        (lambda: MinRNNStack(8, mlp_ratio=-1), r"`mlp_ratio` must be an integer >= 0; got -1"),
        (lambda: MinRNNStack(8, dropout=1.5), r"`dropout` must be a number in \[0, 1\); got 1.5"),
    ],
)
def test_bad_arguments_raise_config_errors_that_say_what_was_expected(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_bad_inputs_and_states_raise_data_validation_errors():
    layer = MinGRU(4)
    with pytest.raises(DataValidationError, match=r"inputs of shape \(batch, steps, features\).*got shape \(2, 10\)"):
        layer(np.zeros((2, 10), "float32"))
    with pytest.raises(DataValidationError, match=r"at least one step; got shape \(2, 0, 3\)"):
        layer(np.zeros((2, 0, 3), "float32"))
    with pytest.raises(DataValidationError, match=r"state h must have shape \(2, 4\); got \(2, 5\)"):
        layer(_inputs(10), state=(np.zeros((2, 5), "float32"),))
    with pytest.raises(DataValidationError, match=r"state must be a tuple with one tensor h of shape \(batch, 4\)"):
        layer(_inputs(10), state=np.zeros((2, 4), "float32"))
    with pytest.raises(DataValidationError, match=r"one \(h,\) per block: expected 2 entries; got 1"):
        MinRNNStack(4, layers=2)(_inputs(10), state=((np.zeros((2, 4), "float32"),),))


def _latch_series(rng, lanes, steps, mean_gap):
    """Sparse +-1 impulses; the target is the sign of the most recent one (0 before any)."""
    impulses = rng.random((lanes, steps)) < 1.0 / mean_gap
    x = np.where(impulses, np.where(rng.random((lanes, steps)) < 0.5, -1.0, 1.0), 0.0)
    latest = np.maximum.accumulate(np.where(impulses, np.arange(steps), -1), axis=1)
    target = np.where(latest >= 0, np.take_along_axis(x, np.maximum(latest, 0), axis=1), 0.0)
    return x[..., None].astype("float32"), target[..., None].astype("float32")


def _latch_test_mse(carry: bool, chunk=32, lanes=32, mean_gap=160, updates=300, seed=0, learning_rate=3e-3):
    """Train with the project's TBPTT engine; carried state across chunks, or reset every chunk."""
    keras.utils.set_random_seed(seed)
    model = Forecaster(MinRNNStack(16, layers=1, cell="mingru", mlp_ratio=0), outputs=1)
    model(np.zeros((lanes, chunk, 1), "float32"))
    engine = TBPTTEngine(model, keras.optimizers.Adam(learning_rate), k1=chunk)
    mask = tf.ones((lanes, chunk))
    reset = tf.constant([not carry] * lanes)
    x, y = _latch_series(np.random.default_rng(seed), lanes, chunk * updates, mean_gap)
    state = engine.initial_state(lanes)
    for i in range(updates):
        window = slice(i * chunk, (i + 1) * chunk)
        _, _, state = engine.train_step({"x": x[:, window], "y": y[:, window], "mask": mask, "reset": reset}, state)
    x, y = _latch_series(np.random.default_rng(seed + 1), lanes, chunk * 60, mean_gap)
    state = engine.initial_state(lanes)
    loss_sum = count = 0.0
    for i in range(60):
        window = slice(i * chunk, (i + 1) * chunk)
        step_loss, _, step_count, _, state = engine.eval_step(x[:, window], y[:, window], mask, reset, state, chunk)
        if i >= 10:  # after a burn-in that holds an impulse for most lanes
            loss_sum, count = loss_sum + float(step_loss), count + float(step_count)
    return loss_sum / count


def test_latch_series_targets_hold_the_latest_impulse():
    x, y = _latch_series(np.random.default_rng(0), 2, 500, 20)
    for lane in range(2):
        latest = 0.0
        for t in range(500):
            latest = x[lane, t, 0] if x[lane, t, 0] != 0 else latest
            assert y[lane, t, 0] == latest


def test_a_latch_older_than_several_chunks_is_learned_only_with_carried_state():
    carried = _latch_test_mse(carry=True)
    # The control, computed on the same test lanes and rows: no model reset every chunk, however
    # trained, scores below it (one trained with resets scored 0.91 when measured).
    x, y = _latch_series(np.random.default_rng(1), 32, 32 * 60, 160)
    reset = float(np.mean([reset_bound(np.concatenate([x[lane], y[lane]], axis=1), 32, first=32 * 10) for lane in range(32)]))
    # The impulse is on average 5 chunks back: without carry a chunk mostly cannot know it.
    assert reset > 0.6
    assert carried < 0.45 and carried < 0.5 * reset  # 0.17-0.30 over seeds 0-3 when written


def test_trainer_model_names_build_min_rnn_stacks_and_reject_unknown_options():
    from longstm.train.config import ModelConfig
    from longstm.models.registry import build_model

    model = build_model(ModelConfig(name="mingru", units=8, layers=2, options={"norm": "layer", "mlp_ratio": 0}), 3, 1)
    assert isinstance(model.core, MinRNNStack)
    assert (model.core.cell, model.core.num_layers, model.core.norm, model.core.mlp_ratio) == ("mingru", 2, "layer", 0)
    outputs, _ = model(_inputs(20))
    assert outputs.shape == (2, 20, 1)
    with pytest.raises(ConfigError, match=r"unknown keys \['cells'\]"):
        build_model(ModelConfig(name="minlstm", options={"cells": 3}), 3, 1)
