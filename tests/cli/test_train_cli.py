"""`longstm train / evaluate / predict` end to end on a small CSV, in-process."""

import json

import numpy as np
import pandas as pd
import pytest

from longstm.cli import main


def _csv(path, rows=700, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2020-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
            "load": np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=rows),
            "temp": np.cos(2 * np.pi * t / 24) + 0.1 * rng.normal(size=rows),
        }
    )
    frame.to_csv(path, index=False)
    return path


CONFIG = """
seed = 1
[data]
path = "series.csv"
targets = ["temp"]
horizon = 2
[model]
units = 6
[train]
lanes = 4
k1 = 16
k2 = 24
burn_in = 4
epochs = 2
learning_rate = 1e-2
schedule = "cosine"
warmup_steps = 3
[eval]
lanes = 2
warmup = 48
"""


def test_train_evaluate_predict_leave_a_complete_run_directory(tmp_path, capsys):
    _csv(tmp_path / "series.csv")
    (tmp_path / "c.toml").write_text(CONFIG)
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--run-dir", str(run)]) == 0
    for name in ("config.toml", "data.json", "steps.csv", "metrics.csv", "metrics.json", "loss.png"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "latest" / "variables.npz").is_file()
    assert (run / "checkpoints" / "best.npz").is_file()
    assert any((run / "tensorboard").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["test"]["rows"] == 700 - 490 - 70 - 2  # test rows whose two targets lie in the file
    assert np.isfinite(metrics["test"]["mse"])

    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["test"]["mse"] == pytest.approx(metrics["test"]["mse"], rel=1e-6)

    _csv(tmp_path / "new.csv", rows=300, seed=5)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), "--data", str(tmp_path / "new.csv"), "--out", str(out)]) == 0
    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["row", "timestamp", "temp+1", "temp+2"]
    # every row from the warm-up on, up to the last with both targets in the file
    assert predictions["row"].tolist() == list(range(48, 298))
    assert predictions["temp+1"].abs().max() < 5  # data units, not scaled ones


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text('[data]\npath = "x.csv"\n[train]\nk1 = 64\nk2 = 32\n')
    assert main(["train", "--config", str(tmp_path / "bad.toml"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "'train.k1' must be <= 'train.k2'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    (tmp_path / "c.toml").write_text(CONFIG.replace('targets = ["temp"]', 'targets = ["pressure"]'))
    _csv(tmp_path / "series.csv")
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "'data.targets' names columns ['pressure']" in capsys.readouterr().err


def test_train_refuses_window_mode_with_the_command_that_uses_it(tmp_path, capsys):
    """Window mode needs the ETT protocol's look-back; `longstm train` must not silently use TBPTT."""
    _csv(tmp_path / "series.csv")
    (tmp_path / "c.toml").write_text(CONFIG.replace("[train]\n", '[train]\nmode = "windows"\n'))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert 'train.mode = "windows"' in err and "longstm eval ett" in err
    assert not (run / "checkpoints").exists()


def test_train_applies_the_horizon_table_of_its_own_horizon_only(tmp_path):
    _csv(tmp_path / "series.csv")
    (tmp_path / "c.toml").write_text(CONFIG)
    for horizon, epochs in ((2, [1]), (3, [1, 2])):  # data.horizon = 2: only [horizons.2] applies
        run = tmp_path / f"run{horizon}"
        assert main(["train", "--config", str(tmp_path / "c.toml"), "--run-dir", str(run),
                     "--set", f"horizons.{horizon}.train.epochs=1"]) == 0
        assert [e["epoch"] for e in json.loads((run / "metrics.json").read_text())["epochs"]] == epochs
    assert "epochs = 1" in (tmp_path / "run2" / "config.toml").read_text()
