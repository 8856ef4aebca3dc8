"""Each model's own one-step update (`step`) equals its chunked `call`, tick after tick.

Which models refuse to stream, and their reasons (`streamable()`), are tested through the
predictor in tests/serve/test_predictor.py and tests/models/test_lags.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from longstm.models.attention import AttentionLSTM
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.lags import LinearLagSkip
from longstm.models.minrnn import MinGRU, MinLSTM
from longstm.models.minrnn_stack import MinRNNStack
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.models.stacked import StackedLSTM

TOLERANCE = 1e-5
CORES = {
    "keras_lstm_gru": lambda: KerasRNNStack([keras.layers.LSTM(8), keras.layers.GRU(6)]),
    "keras_simple_rnn": lambda: KerasRNNStack([keras.layers.SimpleRNN(5)]),  # the default step: a one-step call
    "stacked_residual_norm": lambda: StackedLSTM(8, layers=2, residual=True, layer_norm=True),
    "hierarchical_sequential": lambda: HierarchicalLSTM([(6, 2), (5, 3), (4, 1)], mode="sequential"),
    "hierarchical_minlstm_level": lambda: HierarchicalLSTM([(MinLSTM(6), 3), (4, 1)], mode="sequential"),
    "attention_window": lambda: AttentionLSTM(8, heads=2, memory=4, window=3),
    "minlstm": lambda: MinLSTM(8),
    "mingru": lambda: MinGRU(8),
    "minrnn_stack": lambda: MinRNNStack(8, layers=2, cell="mingru", norm="layer"),
    "lags": lambda: LinearLagSkip(KerasRNNStack([keras.layers.LSTM(6)]), lags=4, width=3),
    "lags_relative": lambda: LinearLagSkip(MinLSTM(6), lags=3, width=2, relative=True),
}


@pytest.mark.parametrize("name", sorted(CORES))
def test_step_equals_the_chunked_call(name):
    keras.utils.set_random_seed(11)
    model = Forecaster(CORES[name](), outputs=2, residual_inputs=[1, 0])
    x = np.random.default_rng(5).normal(size=(3, 12, 3)).astype(np.float32)
    expected = np.asarray(model(x)[0])  # state=None: zeros
    assert model.streamable() is None
    state = model.initial_step_state(3)
    got = []
    for t in range(x.shape[1]):
        y_t, state = model.step(x[:, t], state)
        got.append(np.asarray(y_t))
    np.testing.assert_allclose(np.stack(got, axis=1), expected, atol=TOLERANCE)
    if model.step_state_is_call_state():  # ticks then a chunk continue exactly as one call
        rest, _ = model(x[:, 6:], state=_after_ticks(model, x[:, :6]))
        np.testing.assert_allclose(np.asarray(rest), expected[:, 6:], atol=TOLERANCE)


def _after_ticks(model, x):
    state = model.initial_step_state(x.shape[0])
    for t in range(x.shape[1]):
        _, state = model.step(x[:, t], state)
    return state


def test_numpy_weights_of_a_stack_and_the_reason_elsewhere():
    model = Forecaster(StackedLSTM(4, layers=2, residual=True, layer_norm=True), outputs=3)
    model.build_for_features(2)
    weights = model.numpy_weights()
    assert [layer["cell"] for layer in weights["layers"]] == ["lstm", "lstm"]
    assert weights["layers"][1]["residual"] and weights["layers"][0]["norm"] is not None
    assert weights["head_kernel"].shape == (4, 3)
    attention = Forecaster(AttentionLSTM(4, heads=1, memory=2, window=3), outputs=1)
    assert attention.numpy_weights() == "its core AttentionLSTM is not an LSTM/GRU stack"
