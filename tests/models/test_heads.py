import keras
import numpy as np
import pytest
import tensorflow as tf

from longstm.errors import ConfigError
from longstm.models.heads import MultiHorizonHead, NextStepHead, QuantileHead
from longstm.models.losses import PinballLoss, pinball_loss
from longstm.models.protocol import Forecaster
from longstm.models.stacked import StackedLSTM


def _x(seed=0):
    return np.random.default_rng(seed).normal(size=(2, 10, 3)).astype("float32")


def test_head_output_shapes_inside_a_forecaster():
    x = _x()
    core = StackedLSTM(4)
    assert Forecaster(core, head=NextStepHead(2))(x)[0].shape == (2, 10, 2)
    assert Forecaster(StackedLSTM(4), head=MultiHorizonHead(5, 2, hidden=8))(x)[0].shape == (2, 10, 5, 2)
    assert Forecaster(StackedLSTM(4), head=QuantileHead((0.1, 0.5, 0.9), horizons=5, targets=2))(x)[0].shape == (
        2, 10, 5, 2, 3,
    )


def test_quantiles_never_cross():
    features = np.random.default_rng(3).normal(scale=10.0, size=(4, 50, 6)).astype("float32")
    head = QuantileHead((0.05, 0.25, 0.5, 0.75, 0.95), horizons=3)
    predicted = np.asarray(head(features))
    assert np.all(np.diff(predicted, axis=-1) >= 0)
    assert np.mean(np.diff(predicted, axis=-1) > 0) > 0.5


def test_pinball_loss_matches_hand_computation():
    y = np.array([[1.0], [3.0]], "float32")
    y_hat = np.array([[[0.0, 2.0]], [[4.0, 1.0]]], "float32")  # levels 0.2, 0.8
    # errors y - ŷ: [1, -1], [-1, 2]; losses: [0.2, 0.2], [0.8, 1.6]
    expected = np.mean([0.2, 0.2, 0.8, 1.6])
    assert float(pinball_loss(y, y_hat, (0.2, 0.8))) == pytest.approx(expected)
    assert float(PinballLoss((0.2, 0.8))(y, y_hat)) == pytest.approx(expected)


def test_pinball_loss_is_minimised_by_the_empirical_quantile():
    samples = np.random.default_rng(0).exponential(size=2000).astype("float32")
    candidates = np.linspace(0.0, 4.0, 401).astype("float32")
    losses = [float(pinball_loss(samples, np.full((2000, 1), c, "float32"), (0.9,))) for c in candidates]
    best = candidates[int(np.argmin(losses))]
    assert abs(best - np.quantile(samples, 0.9)) < 0.02


def test_quantile_model_learns_to_spread_its_quantiles():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16, 1)).astype("float32")
    y = rng.normal(scale=2.0, size=(8, 16, 1, 1)).astype("float32")
    quantiles = (0.1, 0.5, 0.9)
    model = Forecaster(StackedLSTM(4), head=QuantileHead(quantiles))
    optimizer = keras.optimizers.Adam(0.05)
    loss_fn = PinballLoss(quantiles)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x)[0])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    for _ in range(150):
        train_step()
    predicted = np.asarray(model(x)[0])
    coverage = [(y[..., None] <= predicted[..., i : i + 1]).mean() for i in range(3)]
    assert coverage[0] < 0.3 and 0.3 < coverage[1] < 0.7 and coverage[2] > 0.7


def test_heads_and_loss_round_trip(tmp_path):
    x = _x(1)
    model = Forecaster(StackedLSTM(4), head=QuantileHead((0.2, 0.8), horizons=2))
    expected, _ = model(x)
    model.save(tmp_path / "q.keras")
    loaded = keras.saving.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(loaded(x)[0], expected)
    assert loaded.head.get_config()["quantiles"] == [0.2, 0.8]
    loss = keras.losses.deserialize(keras.losses.serialize(PinballLoss((0.3, 0.7))))
    assert loss.quantiles == (0.3, 0.7)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: QuantileHead((0.5, 0.1)), r"strictly increasing; got \[0.5, 0.1\]"),
        (lambda: QuantileHead((0.0, 0.5)), r"strictly between 0 and 1; got \[0.0, 0.5\]"),
        (lambda: QuantileHead(()), r"must not be empty"),
        (lambda: PinballLoss("abc"), r"PinballLoss argument `quantiles` must be a list of numbers"),
        (lambda: MultiHorizonHead(0), r"MultiHorizonHead argument `horizons` must be an integer >= 1; got 0"),
        (lambda: NextStepHead(targets=-1), r"`targets` must be an integer >= 1; got -1"),
    ],
)
def test_bad_head_arguments(build, message):
    with pytest.raises(ConfigError, match=message):
        build()
