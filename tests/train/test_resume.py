"""Checkpoint/resume after SIGKILL continues from the checkpoint (it runs only the updates after it)
and gives the same losses as an uninterrupted run; NaN stops cleanly."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

from longstm.data.lanes import LaneWindows
from longstm.errors import TrainingError
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train.config import TrainConfig
from longstm.train.logs import read_step_log
from longstm.train.trainer import Trainer

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from longstm.train.config import load_config
    from longstm.train.run import train_from_config

    class Slow:  # gives the test time to kill the process mid-epoch, and records the updates this process ran
        def on_step_end(self, trainer, step, logs):
            with open(sys.argv[2] + ".updates", "a") as handle:
                handle.write(f"{step}\\n")
            time.sleep(float(sys.argv[3]))

    train_from_config(load_config(sys.argv[1]), sys.argv[2], resume="--resume" in sys.argv,
                      progress=False, callbacks=[Slow()])
    """
)

CONFIG = """
seed = 3
deterministic = true
[data]
path = "{path}"
targets = ["x1"]
split = [0.8, 0.2, 0.0]
[model]
units = 5
dropout = 0.2
[train]
lanes = 4
k1 = 12
k2 = 16
burn_in = 2
epochs = 2
learning_rate = 1e-2
schedule = "cosine"
warmup_steps = 4
checkpoint_every = 4
[eval]
lanes = 2
warmup = 16
"""


def _start(tmp_path, run, delay, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, str(tmp_path / "train.py"), str(tmp_path / "c.toml"), str(run), str(delay), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _rows(path):
    if not path.exists():
        return 0
    return max(0, len(path.read_text().splitlines()) - 1)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path):
    rng = np.random.default_rng(0)
    series = np.cumsum(rng.normal(size=(600, 2)), axis=0).astype(np.float32)
    np.save(tmp_path / "s.npy", series)
    (tmp_path / "c.toml").write_text(CONFIG.format(path=tmp_path / "s.npy"))
    (tmp_path / "train.py").write_text(SCRIPT)

    reference = _start(tmp_path, tmp_path / "reference", 0.0)
    killed = _start(tmp_path, tmp_path / "killed", 0.15)
    steps = tmp_path / "killed" / "steps.csv"
    deadline = time.time() + 120
    while _rows(steps) < 14 and killed.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert killed.poll() is None, "the run finished before it could be killed: " + killed.stderr.read()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert reference.wait(timeout=120) == 0, reference.stderr.read()

    position = json.loads((tmp_path / "killed" / "checkpoints" / "latest" / "position.json").read_text())
    per_epoch = _rows(tmp_path / "reference" / "steps.csv") // 2
    assert position["epoch"] == 1 and 0 < position["step_in_epoch"] < per_epoch  # mid-epoch 2
    killed_at = _rows(steps)
    assert killed_at > position["global_step"]  # updates after the checkpoint were lost

    (tmp_path / "killed.updates").unlink()
    resumed = _start(tmp_path, tmp_path / "killed", 0.0, "--resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()

    # The resumed process starts at the update after the checkpoint and runs only the rest: a
    # run that ignored --resume would start again at update 1 (and, being deterministic, would
    # still reproduce the reference losses, so the losses alone cannot tell).
    total = _rows(tmp_path / "reference" / "steps.csv")
    ran = [int(line) for line in (tmp_path / "killed.updates").read_text().split()]
    assert ran == list(range(position["global_step"] + 1, total + 1))

    expected = read_step_log(tmp_path / "reference")
    got = read_step_log(tmp_path / "killed")
    assert [row["step"] for row in got] == [row["step"] for row in expected]
    np.testing.assert_array_equal([row["loss"] for row in got], [row["loss"] for row in expected])
    np.testing.assert_array_equal([row["learning_rate"] for row in got], [row["learning_rate"] for row in expected])
    final = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    reference_final = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert final["val"] == reference_final["val"]


def test_nan_loss_stops_with_training_error_and_keeps_the_last_good_checkpoint(tmp_path):
    values = np.random.default_rng(0).normal(size=(800, 2)).astype(np.float32)
    values[700:, 1] = np.nan  # reached by the last lane in its 6th update
    keras.utils.set_random_seed(0)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(4)]), outputs=1)
    stream = LaneWindows(values, lanes=4, k1=20, k2=20, target_columns=[0])
    trainer = Trainer(model, TrainConfig(k1=20, k2=20, epochs=2, checkpoint_every=2), run_dir=tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, update 6 .*last good checkpoint \(global step 4\)"):
        trainer.fit(stream)
    position = json.loads((tmp_path / "checkpoints" / "latest" / "position.json").read_text())
    assert position["global_step"] == 4
    with np.load(tmp_path / "checkpoints" / "latest" / "variables.npz") as arrays:
        assert all(np.isfinite(arrays[key]).all() for key in arrays.files)
    assert [row["step"] for row in read_step_log(tmp_path)] == [1, 2, 3, 4, 5]
