"""The demo: a small LSTM trained with carried state on real data, against naive baselines.

Data: the bundled ETTh1 (hourly loads and oil temperature of a transformer station, 17,420
rows; provenance and licence in `longstm/data/bundled/README.md`). Task: at every hour,
forecast the oil temperature `OT` for each of the next `horizon` hours from all seven
columns. Training streams the training split as contiguous lanes with truncated BPTT and
carried state; the test split is streamed after a warm-up on the rows before it, so every
forecast comes from a state that saw only the past.

The baselines are scored on exactly the same test rows: repeat-last (the current `OT` for
every future hour) and the training mean (zero in scaled units). Errors are in scaled units
(train-only standardisation), as in the ETT literature.

    from longstm.demo import run_demo
    table = run_demo("runs/demo")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longstm.atomic import save_figure
from longstm.data import bundled_path
from longstm.train.config import config_from_dict
from longstm.train.run import load_run, train_from_config


@dataclass
class DemoScore:
    name: str
    mse: float
    mae: float


def demo_config(epochs: int = 10, horizon: int = 24):
    """The demo's training configuration (a `longstm.train.config.Config`)."""
    return config_from_dict(
        {
            "seed": 0,
            "data": {
                "path": str(bundled_path("ETTh1")),
                "kind": "ett",
                "targets": ["OT"],
                "offset": 1,
                "horizon": horizon,
                "split": [0.7, 0.1, 0.2],
            },
            "model": {"name": "lstm", "units": 32, "layers": 1, "residual": True},
            "train": {
                "lanes": 8,
                "k1": 96,
                "k2": 128,
                "burn_in": 24,
                "epochs": epochs,
                "optimizer": "adamw",
                "learning_rate": 3e-3,
                "weight_decay": 1e-4,
                "schedule": "cosine",
                "warmup_steps": 10,
                "min_learning_rate": 1e-4,
                "early_stopping_patience": 3,
            },
            "eval": {"lanes": 4, "warmup": 336},
        },
        source="longstm demo",
    )


def _future_targets(scaled_target: np.ndarray, rows: np.ndarray, offset: int, horizon: int) -> np.ndarray:
    """`(rows, horizon)` true values at `rows + offset + h`, horizon-major like the model's output."""
    steps = rows[:, None] + offset + np.arange(horizon)[None, :]
    return scaled_target[steps]


def score(name: str, truth: np.ndarray, forecast: np.ndarray) -> DemoScore:
    error = forecast - truth
    return DemoScore(name, float(np.mean(error**2)), float(np.mean(np.abs(error))))


def run_demo(out_dir: str | Path, *, epochs: int = 10, horizon: int = 24, progress: bool = True):
    """Train, evaluate against baselines, plot. Returns `(scores, plot_path)`."""
    out_dir = Path(out_dir)
    train_from_config(demo_config(epochs=epochs, horizon=horizon), out_dir, progress=progress)
    # The run directory is the source of truth: reload it as a user would (best weights).
    config, data, trainer = load_run(out_dir, progress=progress)
    rows, predictions = trainer.predict(data.lanes(config, "test"))
    target = data.target_columns[0]
    mean, std = float(data.mean[target]), float(data.std[target])
    scaled = (np.asarray(data.series.values[:, target], dtype=np.float64) - mean) / std
    truth = _future_targets(scaled, rows, config.data.offset, horizon)
    repeat_last = np.repeat(scaled[rows][:, None], horizon, axis=1)
    scores = [
        score("longstm LSTM (carried state)", truth, predictions),
        score("repeat last value", truth, repeat_last),
        score("train mean", truth, np.zeros_like(truth)),
    ]
    plot_path = plot_forecasts(
        out_dir / "predictions.png", data, rows, truth, predictions, repeat_last, mean, std, config.data.offset
    )
    return scores, plot_path


def plot_forecasts(path: Path, data, rows, truth, predictions, repeat_last, mean: float, std: float, offset: int) -> Path:
    """Actual vs forecast OT (data units) over two test weeks, at the first and last horizon."""
    import matplotlib  # the backend must be chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = slice(0, min(336, len(rows)))
    horizon = truth.shape[1]
    figure, axes = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    for axis, h in zip(axes, (0, horizon - 1)):
        # Each point sits at the time it forecasts, so the curves are comparable by eye.
        target_rows = rows[span] + offset + h
        times = data.series.timestamps[target_rows] if data.series.timestamps is not None else target_rows
        axis.plot(times, truth[span, h] * std + mean, color="black", linewidth=1.4, label="actual")
        axis.plot(times, predictions[span, h] * std + mean, color="tab:blue", label="longstm LSTM")
        axis.plot(times, repeat_last[span, h] * std + mean, color="tab:gray", linestyle="--", label="repeat last")
        axis.set_title(f"oil temperature forecast {h + offset} h ahead, shown at the hour it forecasts")
        axis.set_ylabel("OT")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper right")
    figure.suptitle("ETTh1 test split: forecasts from a state carried through the whole past")
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
    plt.close(figure)
    return path
