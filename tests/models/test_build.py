"""Every model family has a `build(input_shape)` of its own (keras/src/layers/rnn/lstm.py style).

Without one Keras traces `call` to build a model and, when that first call fails (a bad state, a
bad chunk length), warns "looks like it has unbuilt state" and marks the model built with no
variables. Here warnings are errors: `build` alone creates exactly the variables (shapes and
seeded values) a first call creates, and a bad first call raises the model's own error.
"""

import warnings

import keras
import numpy as np
import pytest

from longstm.errors import DataValidationError
from longstm.models.attention import AttentionLSTM
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.lags import LinearLagSkip
from longstm.models.protocol import Forecaster, KerasRNNStack, build_core
from longstm.models.registry import build_model
from longstm.models.stacked import StackedLSTM
from longstm.train.carried import last_step_forecast
from longstm.train.config import ModelConfig

FEATURES = 3
CONFIGS = {
    "lstm_with_lags": dict(name="lstm", units=4, layers=2, lags=3, lag_width=2),
    "gru": dict(name="gru", units=4),
    "stacked_lstm": dict(name="stacked_lstm", units=4, layers=2),
    "hierarchical_parallel": dict(name="hierarchical_lstm", units=4, options={"levels": [[2, 4], [4, 1]]}),
    "hierarchical_sequential": dict(
        name="hierarchical_lstm", units=4, options={"levels": [[2, 4], [4, 2]], "mode": "sequential"}
    ),
    "attention_lstm": dict(name="attention_lstm", units=4, options={"heads": 2, "memory": 4, "window": 3}),
    "segment_window_only_with_lags": dict(
        name="segment_gru", units=4, lags=4, lag_width=2, options={"segment": 4, "norm": "window"}
    ),
}


def _model(name):
    keras.utils.set_random_seed(0)
    return build_model(ModelConfig(**CONFIGS[name]), FEATURES, 2, residual_inputs=[0])


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_build_alone_creates_what_a_first_call_creates(name):
    x = np.random.default_rng(1).normal(size=(2, 8, FEATURES)).astype("float32")
    called = _model(name)
    if called.window_only:  # as window training builds it: its last step only
        expected = last_step_forecast(called, x)
    else:
        expected, _ = called(x, state=called.initial_state(2))
    built = _model(name)
    built.build((2, 8, FEATURES))
    assert built.built and built.core.built and built.head.built
    assert [tuple(v.shape) for v in built.variables] == [tuple(v.shape) for v in called.variables]
    for made, reference in zip(built.variables, called.variables):
        np.testing.assert_array_equal(made, reference)
    got = last_step_forecast(built, x) if built.window_only else built(x, state=built.initial_state(2))[0]
    np.testing.assert_array_equal(got, expected)


def _wrong_state(model, drop=1):
    return model.initial_state(2)[:-drop]


@pytest.mark.parametrize(
    "make, inputs, error, message",
    [
        (lambda: StackedLSTM(4, layers=2), (2, 8, 3), ValueError, "expected 2 entries; got 1"),
        (lambda: KerasRNNStack([keras.layers.GRU(4), keras.layers.GRU(4)]), (2, 8, 3), ValueError, "2 layers but the state has 1"),
        (lambda: AttentionLSTM(4, heads=2, memory=4), (2, 8, 3), ValueError, "must have 3 entries"),
        (lambda: HierarchicalLSTM([(2, 4), (4, 1)], mode="sequential"), (2, 8, 3), ValueError, "one entry per level"),
        (lambda: Forecaster(StackedLSTM(4, layers=2)), (2, 8, 3), ValueError, "expected 2 entries; got 1"),
    ],
)
def test_a_bad_state_on_the_first_call_raises_the_model_s_own_error(make, inputs, error, message):
    model = make()
    with pytest.raises(error, match=message):
        model(np.zeros(inputs, "float32"), state=_wrong_state(model))


def test_a_bad_chunk_length_on_the_first_call_raises_the_model_s_own_error():
    model = Forecaster(HierarchicalLSTM([(2, 4), (4, 1)]))
    with pytest.raises(DataValidationError, match="multiple of the product of the strides 4 x 1 = 4; got 6"):
        model(np.zeros((2, 6, 3), "float32"), state=model.initial_state(2))
    skip = LinearLagSkip(StackedLSTM(4), lags=3, features=2)
    with pytest.raises(ValueError, match=r"buffer must have shape \(batch, lags - 1, features\) = \(batch, 2, 3\)"):
        skip(np.zeros((2, 5, 3), "float32"), state=skip.initial_state(2))


class _NoBuild(KerasRNNStack):
    """A core without a `build` or a `compute_output_shape` of its own, like a user's."""

    build = keras.layers.Layer.build
    compute_output_shape = keras.layers.Layer.compute_output_shape


def test_a_core_without_its_own_build_is_built_by_one_symbolic_pass():
    core = _NoBuild([keras.layers.LSTM(5)])
    assert build_core(core, (2, 8, 3)) == (2, 8, 5)
    assert core.rnn_layers[0].built


def test_a_keras_rnn_stack_still_steps_on_symbolic_inputs():
    """Its default `step` (a SimpleRNN has no cell arithmetic of its own) calls the stack on a
    one-step chunk: on symbolic inputs that call must still give `(outputs, state)`."""
    model = Forecaster(KerasRNNStack([keras.layers.SimpleRNN(3)]))
    model.build((1, 1, 2))
    forecast, state = model.step(keras.KerasTensor((4, 2)), model.initial_step_state(4))
    assert tuple(forecast.shape) == (4, 1) and tuple(state[0][0].shape) == (4, 3)
