"""`longstm demo` end to end (one epoch): scores on the test split, baselines, plot, run directory."""

import numpy as np
import pandas as pd

from longstm.data import bundled_path
from longstm.demo import run_demo


def test_demo_trains_scores_against_baselines_on_the_same_rows_and_plots(tmp_path):
    scores, plot_path = run_demo(tmp_path / "demo", epochs=1, horizon=4, progress=False)
    by_name = {score.name: score for score in scores}
    assert set(by_name) == {"longstm LSTM (carried state)", "repeat last value", "train mean"}

    # Recompute both baselines independently from the raw CSV: the same test rows, train-only scaling.
    ot = pd.read_csv(bundled_path("ETTh1"))["OT"].to_numpy(np.float64)
    n_train, n_test = int(len(ot) * 0.7), int(len(ot) * 0.2)
    mean, std = ot[:n_train].mean(), ot[:n_train].std()
    scaled = (ot - mean) / std
    # Forecasts are made at test rows whose 4-hour target lies inside the file.
    made_at = np.arange(len(ot) - n_test, len(ot) - 4)
    truth = scaled[made_at[:, None] + 1 + np.arange(4)]
    np.testing.assert_allclose(by_name["train mean"].mse, np.mean(truth**2), rtol=1e-4)
    np.testing.assert_allclose(by_name["repeat last value"].mse, np.mean((truth - scaled[made_at, None]) ** 2), rtol=1e-4)
    assert np.isfinite(by_name["longstm LSTM (carried state)"].mse)

    assert plot_path.stat().st_size > 20_000  # a real figure, not an empty canvas
    for name in ("config.toml", "metrics.json", "loss.png", "checkpoints/best.npz"):
        assert (tmp_path / "demo" / name).exists(), name
