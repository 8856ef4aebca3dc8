"""The run-directory layout: which weights a reader gets, and the errors for what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from longstm.errors import ConfigError
from longstm.train.config import config_from_dict
from longstm.train.rundir import RunDir


def _weights(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, model_0=np.array([value]))


def test_weights_prefer_best_then_latest_then_latest_old(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(ConfigError, match="has no checkpoint yet"):
        run.weights()
    _weights(tmp_path / "checkpoints" / "latest.old" / "variables.npz", 3)
    assert run.weights() == tmp_path / "checkpoints" / "latest.old" / "variables.npz"
    assert run.latest_checkpoint() == tmp_path / "checkpoints" / "latest.old"
    _weights(tmp_path / "checkpoints" / "latest" / "variables.npz", 2)
    assert run.weights() == tmp_path / "checkpoints" / "latest" / "variables.npz"
    assert run.latest_checkpoint() == tmp_path / "checkpoints" / "latest"
    _weights(tmp_path / "checkpoints" / "best.npz", 1)
    assert run.weights("best") == tmp_path / "checkpoints" / "best.npz"
    assert run.weights("latest") == tmp_path / "checkpoints" / "latest" / "variables.npz"
    with pytest.raises(ConfigError, match="weights must be one of"):
        run.weights("newest")


def test_a_folder_without_config_or_data_record_is_not_a_run(tmp_path):
    run = RunDir(tmp_path)
    assert not run.is_run()
    with pytest.raises(ConfigError, match="not a run directory"):
        run.read_config()
    config = config_from_dict({"data": {"path": "x.csv"}})
    run.write_config(config)
    assert run.is_run()
    with pytest.raises(ConfigError, match="expected config.toml and data.json"):
        run.read_data_record()
    run.write_data_record({"columns": ["a"]})
    assert run.read_data_record() == {"columns": ["a"]}
    assert run.read_config().data.path == "x.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "data.json"]  # no temporaries left
