import keras
import numpy as np
import pytest
import tensorflow as tf

from longstm.errors import ConfigError
from longstm.models.attention import AttentionLSTM
from longstm.models.protocol import Forecaster, reset_lanes
from tests.models.trainer_check import assert_trains_through_the_tbptt_trainer

STEPS = 40


def _series(seed=0, batch=2, steps=STEPS, features=3):
    return np.random.default_rng(seed).normal(size=(batch, steps, features)).astype("float32")


def _chunked(model, x, chunk):
    state = model.initial_state(x.shape[0])
    pieces = []
    for start in range(0, x.shape[1], chunk):
        y, state = model(x[:, start : start + chunk], state=state)
        pieces.append(np.asarray(y))
    return np.concatenate(pieces, axis=1)


@pytest.mark.parametrize(
    "memory, window, chunk",
    [(8, 9, 10), (12, 13, 4), (7, 5, 10)],  # window = memory + 1; chunk shorter than memory; narrower window
)
def test_sliding_window_chunked_with_carried_memory_equals_full_forward(memory, window, chunk):
    x = _series()
    model = AttentionLSTM(6, heads=2, memory=memory, window=window)
    np.testing.assert_allclose(_chunked(model, x, chunk), model(x)[0], atol=1e-5)


@pytest.mark.parametrize("memory, window, steps", [(8, 9, 40), (7, 5, 40), (6, 7, 35), (4, 2, 12)])
def test_blocked_window_attention_equals_the_dense_masked_computation(memory, window, steps):
    x = _series(steps=steps)
    model = AttentionLSTM(6, heads=2, memory=memory, window=window)
    state = model(x)[1]  # a state with a full, valid memory
    blocked, _, blocked_weights = model(x, state=state, return_attention=True)
    model._use_blocks = False
    dense, _, dense_weights = model(x, state=state, return_attention=True)
    np.testing.assert_allclose(blocked, dense, atol=1e-5)
    np.testing.assert_allclose(blocked_weights, dense_weights, atol=1e-6)


def test_unwindowed_chunking_equals_full_forward_only_while_the_memory_holds_the_past():
    x = _series()
    whole_past = AttentionLSTM(6, heads=2, memory=STEPS)
    np.testing.assert_allclose(_chunked(whole_past, x, 10), whole_past(x)[0], atol=1e-5)
    short = AttentionLSTM(6, heads=2, memory=4)
    short(x)
    short.set_weights(whole_past.get_weights())
    chunked = _chunked(short, x, 10)
    np.testing.assert_allclose(chunked[:, :10], whole_past(x)[0][:, :10], atol=1e-5)  # first chunk: all of the past
    assert np.abs(chunked[:, 10:] - np.asarray(whole_past(x)[0])[:, 10:]).max() > 1e-4


def test_attention_weights_respect_causality_window_and_memory_validity():
    memory, window, chunk = 6, 5, 10
    x = _series()
    model = AttentionLSTM(6, heads=3, memory=memory, window=window)
    first = model.attention_weights(x[:, :chunk])
    second = model.attention_weights(x[:, chunk : 2 * chunk], state=model(x[:, :chunk])[1])
    assert first.shape == (2, 3, chunk, memory + chunk)
    for weights, start in ((first, 0), (second, chunk)):
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
        query = start + np.arange(chunk)[:, None]
        key = start - memory + np.arange(memory + chunk)[None, :]
        allowed = (key <= query) & (query - key < window) & (key >= 0)
        assert np.all(weights[:, :, ~allowed] == 0.0)
        assert np.all(weights[:, :, allowed] > 0.0)


@pytest.mark.parametrize("window", [None, 7])
@pytest.mark.parametrize("t", [3, 9, 10, 12, 29])  # 10 opens chunk 2; 3 and 9 are in chunk 2's memory
def test_causal_across_chunks_with_memory(window, t):
    x = _series()
    model = AttentionLSTM(6, heads=2, memory=6, window=window)
    base = _chunked(model, x, 10)
    bumped = x.copy()
    bumped[:, t] += 3.0
    moved = _chunked(model, bumped, 10)
    np.testing.assert_array_equal(moved[:, :t], base[:, :t])
    assert np.abs(moved[:, t] - base[:, t]).max() > 1e-4


def test_memory_is_used_and_a_reset_lane_forgets_it():
    x = _series()
    model = AttentionLSTM(6, heads=2, memory=8)
    _, state = model(x[:, :20])
    lstm_state, values, valid = state
    fresh_lstm = model.lstm.initial_state(2)
    with_memory = np.asarray(model(x[:, 20:], state=(fresh_lstm, values, valid))[0])
    without = np.asarray(model(x[:, 20:], state=(fresh_lstm, values, valid * 0.0))[0])
    assert np.abs(with_memory - without).max() > 1e-4
    reset = reset_lanes(state, np.array([True, False]))
    after_reset = np.asarray(model(x[:, 20:], state=reset)[0])
    np.testing.assert_allclose(after_reset[0], np.asarray(model(x[:, 20:])[0])[0], atol=1e-6)
    assert np.abs(after_reset[1] - np.asarray(model(x[:, 20:])[0])[1]).max() > 1e-4


def test_no_gradient_flows_through_the_memory():
    x = tf.constant(_series())
    model = AttentionLSTM(6, heads=2, memory=8, window=9)
    with tf.GradientTape() as tape:
        tape.watch(x)
        _, (_, values, valid) = model(x[:, :20])
        y, _ = model(x[:, 20:], state=(model.lstm.initial_state(2), values, valid))
        loss = tf.reduce_sum(y)
    gradient = tape.gradient(loss, x)
    assert gradient is None or np.all(np.asarray(gradient)[:, :20] == 0)


def test_keras_round_trip_gives_identical_outputs(tmp_path):
    x = _series(1)
    model = AttentionLSTM(6, heads=2, memory=8, window=5, key_dim=4, lstm_layers=2, dropout=0.1)
    state = model(x)[1]
    expected, expected_state = model(x, state=state)
    model.save(tmp_path / "a.keras")
    loaded = keras.saving.load_model(tmp_path / "a.keras")
    got, got_state = loaded(x, state=state)
    np.testing.assert_array_equal(got, expected)
    for a, b in zip(keras.tree.flatten(got_state), keras.tree.flatten(expected_state)):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in loaded.get_config().items() if k not in ("name",)} == {
        k: v for k, v in model.get_config().items() if k not in ("name",)
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(units=4, memory=4, window=6), r"`window` must be at most memory \+ 1 = 5 .*; got 6"),
        (dict(units=4, window=0), r"`window` must be an integer >= 1; got 0"),
        (dict(units=4, heads=0), r"`heads` must be an integer >= 1; got 0"),
        (dict(units=4, memory=-1), r"`memory` must be an integer >= 0; got -1"),
        (dict(units=4, dropout=-0.1), r"`dropout` must be a number in \[0, 1\); got -0.1"),
    ],
)
def test_bad_arguments_raise_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AttentionLSTM(**kwargs)


def test_plot_attention_draws_a_png_from_a_run_directory(tmp_path):
    from longstm.cli import main
    from longstm.models.attention import save_attention_weights

    model = AttentionLSTM(6, heads=2, memory=4, window=5)
    x = _series(steps=8)
    save_attention_weights(tmp_path / "attention.npy", model.attention_weights(x, state=model(x)[1]))
    assert main(["plot", "attention", str(tmp_path), "--head", "1"]) == 0
    png = (tmp_path / "attention.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_plot_attention_reports_bad_input_in_one_line(tmp_path, capsys):
    from longstm.cli import main

    assert main(["plot", "attention", str(tmp_path)]) == 2
    assert "has no attention weights: expected one of attention.npy" in " ".join(capsys.readouterr().err.split())
    np.save(tmp_path / "attention.npy", np.ones((2, 3, 4, 5)))
    assert main(["plot", "attention", str(tmp_path), "--lane", "2"]) == 2
    assert "--lane must be in [0, 1]" in " ".join(capsys.readouterr().err.split())
    np.save(tmp_path / "attention.npy", np.ones(5))
    assert main(["plot", "attention", str(tmp_path)]) == 2
    assert "got shape (5,)" in " ".join(capsys.readouterr().err.split())


def test_trains_through_the_tbptt_trainer():
    assert_trains_through_the_tbptt_trainer(AttentionLSTM(8, heads=2, memory=16, window=17), chunk=32)


def test_a_dynamic_chunk_length_is_refused_with_a_clear_message():
    model = AttentionLSTM(4, heads=1, memory=2, window=3)
    model(_series(steps=6))
    traced = tf.function(lambda x: model(x)[0], input_signature=[tf.TensorSpec((2, None, 3), tf.float32)])
    with pytest.raises(ValueError, match="needs a static chunk length"):
        traced.get_concrete_function()
