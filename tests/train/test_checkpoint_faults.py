"""Checkpoint faults a user meets: a truncated or missing file, a lost position, a kill inside the
save (the latest.old fallback must really be used), a checkpoint of another model — each one clear
line, or a documented recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from longstm.cli import main
from longstm.data.lanes import LaneWindows
from longstm.errors import TrainingError
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train.config import TrainConfig
from longstm.train.logs import read_step_log
from longstm.train.trainer import Trainer


class RecordUpdates:
    """The updates a trainer ran in this process."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, trainer, step, logs):
        self.steps.append(step)


def _trainer(run_dir, seed=0, epochs=2, units=4, callbacks=()):
    keras.utils.set_random_seed(seed)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(units)]), outputs=1)
    config = TrainConfig(k1=10, k2=10, lanes=2, epochs=epochs, checkpoint_every=3)
    return Trainer(model, config, run_dir=run_dir, progress=False, callbacks=callbacks)


def _lanes():
    values = np.cumsum(np.random.default_rng(0).normal(size=(400, 2)), axis=0).astype(np.float32)
    return LaneWindows(values, lanes=2, k1=10, k2=10, target_columns=[0])


def test_a_truncated_checkpoint_is_one_clear_error_not_a_bad_zip_traceback(tmp_path):
    _trainer(tmp_path, epochs=1).fit(_lanes())
    variables = tmp_path / "checkpoints" / "latest" / "variables.npz"
    variables.write_bytes(variables.read_bytes()[: variables.stat().st_size // 2])
    with pytest.raises(TrainingError, match=r"variables.npz: the checkpoint file is damaged or truncated .*without --resume"):
        _trainer(tmp_path).fit(_lanes(), resume=True)
    variables.write_bytes(b"")
    with pytest.raises(TrainingError, match="damaged or truncated"):
        _trainer(tmp_path).fit(_lanes(), resume=True)


def test_a_missing_or_damaged_position_is_one_clear_error(tmp_path):
    _trainer(tmp_path, epochs=1).fit(_lanes())
    position = tmp_path / "checkpoints" / "latest" / "position.json"
    text = position.read_text()
    position.write_text(text[: len(text) // 3])
    with pytest.raises(TrainingError, match=r"position.json: damaged checkpoint position"):
        _trainer(tmp_path).fit(_lanes(), resume=True)
    position.unlink()
    with pytest.raises(TrainingError, match=r"incomplete checkpoint, position.json is missing"):
        _trainer(tmp_path).fit(_lanes(), resume=True)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    _trainer(tmp_path, epochs=1, units=4).fit(_lanes())
    with pytest.raises(TrainingError, match="different model configuration|has shape"):
        _trainer(tmp_path, units=5).fit(_lanes(), resume=True)


KILL_IN_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import keras, numpy as np
    from longstm.train import checkpoint
    sys.path.insert(0, sys.argv[2])
    from test_checkpoint_faults import _lanes, _trainer

    saves = {"count": 0}
    real_replace = os.replace

    def replace_then_die(source, target):
        real_replace(source, target)
        # the second save: killed right after the old checkpoint was moved aside to latest.old
        if str(target).endswith("latest.old"):
            saves["count"] += 1
            if saves["count"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.os.replace = replace_then_die
    _trainer(sys.argv[1]).fit(_lanes())
    """
)


def test_a_kill_inside_the_save_resumes_from_latest_old(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_IN_SAVE)
    run = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, str(script), str(run), os.path.dirname(__file__)], env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    checkpoints = run / "checkpoints"
    assert not (checkpoints / "latest").exists() and (checkpoints / "latest.old").exists()
    kept = json.loads((checkpoints / "latest.old" / "position.json").read_text())["global_step"]

    reference = _trainer(tmp_path / "reference")
    reference.fit(_lanes())
    updates = RecordUpdates()
    _trainer(run, callbacks=[updates]).fit(_lanes(), resume=True)
    assert kept == 6  # the first save (update 3) was replaced by the second (6), whose successor was killed
    assert updates.steps[0] == kept + 1  # resumed from latest.old, not from scratch
    got, expected = read_step_log(run), read_step_log(tmp_path / "reference")
    assert [row["step"] for row in got] == [row["step"] for row in expected]
    np.testing.assert_allclose([row["loss"] for row in got], [row["loss"] for row in expected], rtol=1e-6)
    assert (checkpoints / "latest").exists() and not (checkpoints / "latest.old").exists()


def test_evaluate_on_a_truncated_best_checkpoint_is_one_line_with_exit_code_2(tmp_path, capsys):
    from tests.serve.run_fixture import make_run

    run = make_run(tmp_path)
    best = run / "checkpoints" / "best.npz"
    best.write_bytes(best.read_bytes()[:100])
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "best.npz: the checkpoint file is damaged or truncated" in err and "Traceback" not in err
