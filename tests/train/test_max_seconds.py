"""`train.max_seconds`: training stops at the end of the epoch in which the wall-time budget runs
out, the best validation epoch is still the one kept, and metrics.json records the budget.
The clock is replaced (each validation pass "takes" 10 s), so no real time is measured."""

import json

import keras
import numpy as np
import pytest

from longstm.data.lanes import LaneWindows
from longstm.errors import ConfigError
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train import trainer as trainer_module
from longstm.train.config import TrainConfig, config_from_dict
from longstm.train.run import fit_and_keep_best
from longstm.train.trainer import Trainer
from tests.train.epoch_weights import keep_weights_each_epoch


def _run(tmp_path, monkeypatch, max_seconds: float):
    keras.utils.set_random_seed(0)
    now = [1000.0]
    monkeypatch.setattr(trainer_module, "clock", lambda: now[0])
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(3)]), outputs=1)
    stream = LaneWindows(np.random.default_rng(0).normal(size=(120, 2)).astype(np.float32), lanes=2, k1=20, k2=20,
                         target_columns=[0])
    trainer = Trainer(model, TrainConfig(k1=20, k2=20, epochs=5, max_seconds=max_seconds), run_dir=tmp_path, progress=False)
    scripted = iter([1.0, 0.5, 0.7, 0.6, 0.9])  # the best validation is epoch 2

    def evaluate(_stream):
        now[0] += 10.0  # every epoch ends 10 s after the previous one
        return {"mse": next(scripted), "mae": 0.0, "rows": 1}

    trainer.evaluate = evaluate
    weights = keep_weights_each_epoch(trainer)
    history = fit_and_keep_best(trainer, stream, stream)
    return trainer, history, weights


def test_a_budget_stops_at_the_end_of_the_epoch_it_runs_out_in_and_keeps_the_best_epoch(tmp_path, monkeypatch):
    trainer, history, weights = _run(tmp_path, monkeypatch, max_seconds=25.0)
    assert [record["epoch"] for record in history] == [1, 2, 3]  # 30 s >= 25 s after epoch 3: the epoch is finished
    for variable, kept in zip(trainer.model.variables, weights[2]):
        np.testing.assert_array_equal(variable.numpy(), kept)  # epoch 2's weights, not the last epoch's
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["budget"] == {"max_seconds": 25.0, "seconds": 30.0, "stopped": True}
    assert len(metrics["epochs"]) == 3


def test_no_budget_runs_every_epoch(tmp_path, monkeypatch):
    _, history, _ = _run(tmp_path, monkeypatch, max_seconds=0.0)
    assert len(history) == 5
    assert "budget" not in json.loads((tmp_path / "metrics.json").read_text())


def test_max_seconds_is_read_from_a_config_and_a_negative_one_is_named():
    assert config_from_dict({"train": {"max_seconds": 90}}).train.max_seconds == 90.0
    with pytest.raises(ConfigError, match=r"'train.max_seconds' must be a number of seconds >= 0 \(0: no budget\); got -1.0"):
        config_from_dict({"train": {"max_seconds": -1}})
