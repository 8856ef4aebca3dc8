"""The run-directory layout: which weights a reader gets, the errors for what is missing, and
the lock that keeps two training runs out of one folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from longstm.data.lanes import LaneWindows
from longstm.errors import ConfigError, TrainingError
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train.config import TrainConfig, config_from_dict
from longstm.train.rundir import RunDir
from longstm.train.trainer import Trainer


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


HOLD = """
import os, signal, sys, time
from longstm.train.rundir import RunDir
with RunDir(sys.argv[1]).lock("training"):
    print("held", flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
"""


def _holder(path, mode):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), mode], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_process_cannot_take_a_held_run_directory(tmp_path):
    holder = _holder(tmp_path, "hold")
    try:
        with pytest.raises(TrainingError, match=rf"held by training \(pid {holder.pid} on .*, since .*\); wait for it"):
            with RunDir(tmp_path).lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunDir(tmp_path).lock():  # released when its holder is gone
        with RunDir(tmp_path).lock():  # and re-entrant within one process
            pass


def test_a_lock_left_by_a_killed_process_is_recovered(tmp_path):
    holder = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path), "die"], capture_output=True, text=True)
    assert holder.returncode == -signal.SIGKILL and (tmp_path / ".lock").exists()
    with RunDir(tmp_path).lock():
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_training_into_a_held_run_directory_stops_before_writing(tmp_path):
    keras.utils.set_random_seed(0)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(3)]), outputs=1)
    trainer = Trainer(model, TrainConfig(k1=8, k2=8, lanes=2, epochs=1), run_dir=tmp_path, progress=False)
    values = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    holder = _holder(tmp_path, "hold")
    try:
        with pytest.raises(TrainingError, match="held by training"):
            trainer.fit(LaneWindows(values, lanes=2, k1=8, k2=8, target_columns=[0]))
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_a_second_longstm_train_into_a_held_run_directory_is_one_line_and_overwrites_nothing(tmp_path, capsys):
    from longstm.cli import main

    values = np.cumsum(np.random.default_rng(0).normal(size=(300, 2)), axis=0)
    np.save(tmp_path / "s.npy", values.astype(np.float32))
    (tmp_path / "c.toml").write_text(
        f'[data]\npath = "{tmp_path / "s.npy"}"\n[model]\nunits = 3\n[train]\nlanes = 2\nk1 = 8\nk2 = 8\nepochs = 1\n'
        "[eval]\nlanes = 1\nwarmup = 0\n"
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("# the first run's config\n")
    holder = _holder(run, "hold")
    try:
        assert main(["train", "--config", str(tmp_path / "c.toml"), "--run-dir", str(run)]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"held by training (pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
    assert (run / "config.toml").read_text() == "# the first run's config\n"
