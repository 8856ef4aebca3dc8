import keras
import numpy as np
import pytest

from longstm.errors import ConfigError
from longstm.models.heads import MultiHorizonHead
from longstm.models.protocol import Forecaster
from longstm.models.stacked import StackedLSTM
from tests.models.trainer_check import assert_trains_through_the_tbptt_trainer


def _series(seed=0, batch=2, steps=48, features=3):
    return np.random.default_rng(seed).normal(size=(batch, steps, features)).astype("float32")


def _chunked(model, x, chunk):
    state = model.initial_state(x.shape[0])
    pieces = []
    for start in range(0, x.shape[1], chunk):
        y, state = model(x[:, start : start + chunk], state=state)
        pieces.append(np.asarray(y))
    return np.concatenate(pieces, axis=1), state


@pytest.mark.parametrize(
    "options",
    [dict(layers=1), dict(layers=3, residual=True, layer_norm=True, dropout=0.2)],
)
def test_chunked_with_carried_state_equals_full_forward(options):
    x = _series()
    model = StackedLSTM(6, **options)
    full, full_state = model(x)
    for chunk in (8, 12, 7):  # 7 does not divide 48: the last chunk is shorter
        pieces, state = _chunked(model, x, chunk)
        np.testing.assert_allclose(pieces, full, atol=1e-5)
    for (h, c), (h_full, c_full) in zip(state, full_state):
        np.testing.assert_allclose(h, h_full, atol=1e-5)
        np.testing.assert_allclose(c, c_full, atol=1e-5)


def test_carried_state_matters():
    x = _series()
    model = StackedLSTM(6, layers=2)
    full, _ = model(x)
    restarted = np.concatenate([np.asarray(model(x[:, s : s + 12])[0]) for s in range(0, 48, 12)], axis=1)
    assert np.abs(restarted[:, 12:] - np.asarray(full)[:, 12:]).max() > 1e-3


@pytest.mark.parametrize("t", [0, 17, 47])
def test_causal_perturbing_step_t_leaves_earlier_outputs_unchanged(t):
    x = _series()
    model = StackedLSTM(5, layers=2, residual=True, layer_norm=True)
    base = np.asarray(model(x)[0])
    bumped = x.copy()
    bumped[:, t] += 3.0
    moved = np.asarray(model(bumped)[0])
    np.testing.assert_array_equal(moved[:, :t], base[:, :t])
    assert np.abs(moved[:, t] - base[:, t]).max() > 1e-4


def test_residual_adds_each_layers_input_to_its_output():
    x = _series()
    plain = StackedLSTM(4, layers=2)
    plain_out = np.asarray(plain(x)[0])
    residual = StackedLSTM(4, layers=2, residual=True)
    residual(x)
    residual.set_weights(plain.get_weights())
    first = StackedLSTM(4, layers=1)
    first(x)
    first.set_weights(plain.get_weights()[:3])
    # y2 = lstm2(y1) + y1, with lstm2(y1) the plain stack's output.
    np.testing.assert_allclose(np.asarray(residual(x)[0]), plain_out + np.asarray(first(x)[0]), atol=1e-6)


def test_dropout_only_in_training():
    x = _series()
    model = StackedLSTM(6, layers=2, dropout=0.5)
    inference = np.asarray(model(x)[0])
    np.testing.assert_array_equal(np.asarray(model(x, training=False)[0]), inference)
    assert not np.allclose(np.asarray(model(x, training=True)[0]), inference)


def test_keras_round_trip_gives_identical_outputs(tmp_path):
    x = _series(1)
    model = Forecaster(StackedLSTM(5, layers=2, residual=True, layer_norm=True, dropout=0.1), head=MultiHorizonHead(3, 2))
    expected, expected_state = model(x)
    model.save(tmp_path / "stacked.keras")
    loaded = keras.saving.load_model(tmp_path / "stacked.keras")
    got, got_state = loaded(x)
    np.testing.assert_array_equal(got, expected)
    for a, b in zip(keras.tree.flatten(got_state), keras.tree.flatten(expected_state)):
        np.testing.assert_array_equal(a, b)
    assert loaded.core.get_config() | {"name": None} == model.core.get_config() | {"name": None}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(units=0), r"`units` must be an integer >= 1; got 0"),
        (dict(units=4.5), r"`units` must be an integer >= 1; got 4.5"),
        (dict(units=4, layers=0), r"`layers` must be an integer >= 1; got 0"),
        (dict(units=4, dropout=1.0), r"`dropout` must be a number in \[0, 1\); got 1.0"),
    ],
)
def test_bad_arguments_raise_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        StackedLSTM(**kwargs)


def test_wrong_state_structure_is_reported():
    model = StackedLSTM(4, layers=2)
    with pytest.raises(ValueError, match="expected 2 entries; got 1"):
        model(_series(), state=model.initial_state(2)[:1])


def test_trains_through_the_tbptt_trainer():
    assert_trains_through_the_tbptt_trainer(StackedLSTM(8, layers=2, residual=True, layer_norm=True), chunk=32)
