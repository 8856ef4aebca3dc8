"""Streaming a forecaster that adds the targets' current values (`model.residual = true`)."""

import keras
import numpy as np
import pytest

from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.serve import StreamingPredictor


@pytest.mark.parametrize("engine", ["tf", "numpy"])
def test_streaming_a_residual_forecaster_equals_the_batch_model(engine):
    keras.utils.set_random_seed(3)
    inputs = np.random.default_rng(3).normal(size=(2, 30, 3)).astype(np.float32)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(8)]), outputs=4, residual_inputs=[2, 0])
    expected, _ = model(inputs)
    predictor = StreamingPredictor(model, n_instruments=2, engine=engine)
    got = np.stack([predictor.update(inputs[:, t]) for t in range(inputs.shape[1])], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
