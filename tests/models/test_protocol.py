import keras
import numpy as np
import pytest
import tensorflow as tf

from longstm.models.protocol import Forecaster, KerasRNNStack, reset_lanes, stop_state_gradient


def _model():
    return Forecaster(KerasRNNStack([keras.layers.LSTM(8), keras.layers.GRU(5)]), outputs=2)


@pytest.mark.parametrize("chunk", [25, 30])  # divides T and does not
def test_chunked_forward_with_carried_state_equals_full_forward(chunk):
    x = np.random.default_rng(0).normal(size=(3, 100, 4)).astype("float32")
    model = _model()
    full, _ = model(x)
    state = model.initial_state(3)
    pieces = []
    for start in range(0, 100, chunk):
        y, state = model(x[:, start : start + chunk], state=state)
        pieces.append(y)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-5)


def test_reset_lanes_zeroes_only_the_flagged_rows_inside_tf_function():
    model = _model()
    x = np.ones((3, 4, 4), "float32")

    @tf.function
    def step(inputs, state, reset):
        _, new_state = model(inputs, state=state)
        return stop_state_gradient(reset_lanes(new_state, reset))

    state = step(x, model.initial_state(3), tf.constant([True, False, True]))
    for tensor in tf.nest.flatten(state):
        assert np.all(tensor.numpy()[[0, 2]] == 0)
        assert np.any(tensor.numpy()[1] != 0)


def test_keras_round_trip_gives_identical_outputs(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 20, 4)).astype("float32")
    model = _model()
    expected, _ = model(x)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x)[0], expected)


def test_stack_rejects_non_recurrent_layers_with_a_clear_message():
    with pytest.raises(TypeError, match="layer 0 must be a Keras recurrent layer.*got Dense"):
        KerasRNNStack([keras.layers.Dense(3)])


def test_residual_inputs_add_the_current_value_of_those_columns_to_every_horizon():
    x = np.random.default_rng(2).normal(size=(2, 10, 4)).astype("float32")
    plain = Forecaster(KerasRNNStack([keras.layers.LSTM(6)]), outputs=6)
    residual = Forecaster(KerasRNNStack([keras.layers.LSTM(6)]), outputs=6, residual_inputs=[3, 1])
    plain(x)
    residual(x)
    residual.set_weights(plain.get_weights())
    expected = plain(x)[0].numpy() + np.tile(x[..., [3, 1]], (1, 1, 3))
    np.testing.assert_allclose(residual(x)[0], expected, atol=1e-6)


def test_residual_inputs_must_divide_the_output_width():
    with pytest.raises(ValueError, match=r"outputs \(5\) must be a multiple of len\(residual_inputs\) \(2\)"):
        Forecaster(KerasRNNStack([keras.layers.LSTM(4)]), outputs=5, residual_inputs=[0, 1])
