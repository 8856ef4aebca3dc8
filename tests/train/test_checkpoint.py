"""The checkpoint format (`longstm.train.checkpoint`): arrays by position, the latest.old dance."""

import json

import keras
import numpy as np
import pytest

from longstm.errors import ConfigError, TrainingError
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train.checkpoint import load_weights, read_checkpoint, read_position, save_weights, write_checkpoint
from longstm.train.engine import build_model_for
from longstm.train.rundir import RunDir


def _model(units=3, seed=0):
    keras.utils.set_random_seed(seed)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(units)]), outputs=1)
    build_model_for(model, 2, 4, 2)
    return model


def _optimizer(model):
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    return optimizer


def _values(variables):
    return [np.asarray(v) for v in variables]


def test_a_checkpoint_reads_back_into_fresh_variables_and_survives_a_kill_between_the_renames(tmp_path):
    run = RunDir(tmp_path)
    model = _model(seed=0)
    optimizer = _optimizer(model)
    states = [np.full((2, 3), 0.5, np.float32), np.arange(6, dtype=np.float32).reshape(2, 3)]
    position = {"epoch": 1, "step_in_epoch": 3, "global_step": 7, "best": float("inf"), "bad_epochs": 0,
                "finished": False, "history": []}
    assert write_checkpoint(run, model, optimizer, states, position) == run.latest
    write_checkpoint(run, model, optimizer, states, {**position, "global_step": 8, "best": 0.25})
    assert not run.latest_old.exists() and not run.latest_temporary.exists()
    # Killed after moving the old checkpoint aside and before renaming the new one into place.
    run.latest.rename(run.latest_old)
    assert read_position(run)["global_step"] == 8

    other = _model(seed=1)
    other_optimizer = _optimizer(other)
    assert not np.allclose(_values(other.variables)[0], _values(model.variables)[0])
    leaves, restored = read_checkpoint(run, other, other_optimizer, n_states=2)
    for got, want in zip(_values(other.variables) + _values(other_optimizer.variables),
                         _values(model.variables) + _values(optimizer.variables)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(leaves, states):
        np.testing.assert_array_equal(got, want)
    assert restored["best"] == 0.25 and restored["global_step"] == 8
    json.loads((run.latest_old / "position.json").read_text())  # a complete file


def test_best_weights_hold_the_model_alone_and_a_different_model_is_refused(tmp_path):
    run = RunDir(tmp_path)
    model = _model()
    save_weights(run.best_weights, model)
    with np.load(run.best_weights) as arrays:
        assert sorted(arrays.files) == sorted(f"model_{i}" for i in range(len(model.variables)))
    twin = _model(seed=5)
    load_weights(twin, run.weights("best"))
    for got, want in zip(_values(twin.variables), _values(model.variables)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TrainingError, match=r"has shape \(2, 16\); the checkpoint has \(2, 12\)"):
        load_weights(_model(units=4), run.best_weights)
    with pytest.raises(ConfigError, match="has shape"):  # serving asks for its own error type
        load_weights(_model(units=4), run.best_weights, error=ConfigError)
