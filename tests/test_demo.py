"""`longstm demo` end to end (three epochs): it trains, beats its baselines on the same test rows, plots."""

import json

import numpy as np
import pandas as pd

from longstm.data import bundled_path
from longstm.demo import run_demo
from longstm.train.run import build_trainer, load_run

HORIZON = 24


def test_demo_trains_beats_both_baselines_on_the_same_rows_and_plots(tmp_path):
    out = tmp_path / "demo"
    scores, plot_path = run_demo(out, epochs=3, horizon=HORIZON, progress=False)
    by_name = {score.name: score for score in scores}
    assert set(by_name) == {"longstm LSTM (carried state)", "repeat last value", "train mean"}

    # Recompute both baselines independently from the raw CSV: the same test rows, train-only scaling.
    ot = pd.read_csv(bundled_path("ETTh1"))["OT"].to_numpy(np.float64)
    n_train, n_test = int(len(ot) * 0.7), int(len(ot) * 0.2)
    mean, std = ot[:n_train].mean(), ot[:n_train].std()
    scaled = (ot - mean) / std
    # Forecasts are made at test rows whose 24-hour target lies inside the file.
    made_at = np.arange(len(ot) - n_test, len(ot) - HORIZON)
    truth = scaled[made_at[:, None] + 1 + np.arange(HORIZON)]
    np.testing.assert_allclose(by_name["train mean"].mse, np.mean(truth**2), rtol=1e-4)
    np.testing.assert_allclose(by_name["repeat last value"].mse, np.mean((truth - scaled[made_at, None]) ** 2), rtol=1e-4)

    # It trained: the loss fell epoch by epoch, and every weight moved from the seeded initial model.
    epochs = json.loads((out / "metrics.json").read_text())["epochs"]
    train_mse = [epoch["train_mse"] for epoch in epochs]
    assert len(train_mse) == 3 and train_mse[2] < train_mse[1] < train_mse[0]
    assert train_mse[2] < 0.9 * train_mse[0]
    config, data, trained = load_run(out)
    initial = build_trainer(config, data, progress=False)  # the same seed: the weights training started from
    rows, untrained_predictions = initial.predict(data.lanes(config, "test"))
    np.testing.assert_array_equal(rows, made_at)
    for before, after in zip(initial.model.trainable_variables, trained.model.trainable_variables):
        assert before.shape == after.shape and np.abs(before.numpy() - after.numpy()).max() > 1e-3, after.path

    # The reported score is the trained model's, and training is what made it good: measured
    # (seed 0) 0.0505 against 0.0963 untrained, 0.0546 repeat-last and 1.22 train mean; with
    # seeds 1 and 2 the LSTM/repeat-last ratio is 0.958 and 0.967, so 0.97 is a margin the
    # three-epoch model clears.
    lstm = by_name["longstm LSTM (carried state)"].mse
    _, trained_predictions = trained.predict(data.lanes(config, "test"))
    np.testing.assert_allclose(lstm, np.mean((trained_predictions - truth) ** 2), rtol=1e-4)
    assert lstm < 0.75 * np.mean((untrained_predictions - truth) ** 2)
    assert lstm < 0.97 * by_name["repeat last value"].mse
    assert lstm < 0.1 * by_name["train mean"].mse

    assert plot_path.stat().st_size > 20_000  # a real figure, not an empty canvas
    for name in ("config.toml", "metrics.json", "loss.png", "checkpoints/best.npz"):
        assert (out / name).exists(), name
