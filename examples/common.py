"""Plumbing shared by the numbered examples: data, training, the repeat-last comparison, a plot.

Each numbered example builds its model in full view and hands it to these helpers:

- `parse_args`: `--epochs`, `--out`, and `--rows` (use only the first rows of ETTh1, for a
  quick check).
- `load_etth1`: the bundled ETTh1 as the example's config in `configs/` describes it
  (columns, chronological 70/10/20 split, scaler fitted on the training rows only).
- `train`: the TBPTT trainer with carried state; the best validation weights are kept.
- `compare_with_repeat_last`: test MSE/MAE of the model and of repeating the last value
  (this hour's OT as the forecast of the next), on exactly the same test rows, in scaled
  units as the ETT papers report them.
- `plot_forecast`: the last two weeks of the test split, in degrees Celsius.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def parse_args(description: str, default_out: str, argv=None, default_epochs: int | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=default_epochs, help="training epochs (default: the config's)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="folder for checkpoints, plots, results.json")
    parser.add_argument("--rows", type=int, default=None, help="use only the first ROWS rows of ETTh1 (a quick check)")
    return parser.parse_args(argv)


def load_etth1(config_name: str, args: argparse.Namespace):
    """`(config, data)`: `configs/<config_name>` with `--epochs` applied, and its prepared data."""
    import pandas as pd

    from longstm.data import bundled_path
    from longstm.train import load_config
    from longstm.train.run import load_data

    config = load_config(REPO / "configs" / config_name)
    if args.epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=args.epochs))
    path = bundled_path("ETTh1")
    if args.rows is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"ETTh1_first_{args.rows}_rows.csv"
        pd.read_csv(bundled_path("ETTh1"), nrows=args.rows).to_csv(path, index=False)
    return config, load_data(config, path=path)


def residual_head(config, data):
    """A `Forecaster`'s arguments for `data.horizon` forecasts of the (single) target, each
    added to its current value: the network learns the change, repeat-last is its zero."""
    return {"outputs": config.data.horizon, "residual_inputs": [data.feature_columns.index(data.target_columns[0])]}


def train(model, config, data, out: Path):
    """Fit `model` with TBPTT (state carried from window to window), keep the best validation weights."""
    from longstm.train import Trainer, fit_and_keep_best

    trainer = Trainer(model, config, run_dir=out)
    fit_and_keep_best(trainer, data.lanes(config, "train"), data.lanes(config, "val"))
    return trainer


def compare_with_repeat_last(config, data, trainer) -> tuple[dict, tuple]:
    """Test scores of the model and of repeating the last value, on the same rows (scaled units).

    With `data.horizon = H` each row has H forecasts (1 .. H hours ahead); scores average
    over all of them, as the ETT papers do. Returns `(scores, series)`, `series` for
    `plot_forecast`: rows, truth, forecasts and repeat-last, `(rows, H)`, in degrees Celsius.
    """
    rows, predictions = trainer.predict(data.lanes(config, "test"))
    target = data.target_columns[0]
    scaled = (np.asarray(data.series.values[:, target], np.float64) - data.mean[target]) / data.std[target]
    ahead = config.data.offset + np.arange(config.data.horizon)
    truth = scaled[rows[:, None] + ahead[None, :]]
    last = np.repeat(scaled[rows][:, None], config.data.horizon, axis=1)
    forecast = predictions.astype(np.float64)
    scores = {
        "test_rows": int(len(rows)),
        "horizon": config.data.horizon,
        "model_mse": float(np.mean((forecast - truth) ** 2)),
        "model_mae": float(np.mean(np.abs(forecast - truth))),
        "repeat_last_mse": float(np.mean((last - truth) ** 2)),
        "repeat_last_mae": float(np.mean(np.abs(last - truth))),
        "val_mse": float(trainer.evaluate(data.lanes(config, "val"))["mse"]),
    }
    unscale = lambda values: values * data.std[target] + data.mean[target]  # noqa: E731
    return scores, (rows, unscale(truth), unscale(forecast), unscale(last))


def plot_forecast(path: Path, series, title: str, hours: int = 336) -> Path:
    """The last `hours` test rows: actual OT and the forecasts 1 hour and H hours ahead, each
    drawn at the hour it forecasts, beside repeat-last."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, truth, forecast, last = (values[-hours:] for values in series)
    horizons = sorted({0, truth.shape[1] - 1})
    figure, axes = plt.subplots(len(horizons), 1, figsize=(11, 3.2 * len(horizons)), squeeze=False)
    for axis, h in zip(axes[:, 0], horizons):
        hour = rows + 1 + h
        axis.plot(hour, truth[:, h], color="black", linewidth=1.2, label="actual OT")
        axis.plot(hour, forecast[:, h], color="tab:blue", linewidth=1, label=f"model, {h + 1} h ahead")
        axis.plot(hour, last[:, h], color="tab:orange", linewidth=0.8, linestyle="--", label=f"repeat last ({h + 1} h old)")
        axis.set_ylabel("oil temperature (°C)")
        axis.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("row (hour) of ETTh1")
    axes[0, 0].set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def report(name: str, scores: dict, out: Path) -> None:
    """Print the scores and write them to `out/results.json`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"example": name, **scores}, indent=1))
    print(f"{name}: test MSE {scores['model_mse']:.4f} (repeat-last {scores['repeat_last_mse']:.4f}), "
          f"MAE {scores['model_mae']:.4f} (repeat-last {scores['repeat_last_mae']:.4f}) "
          f"on {scores['test_rows']} test rows; val MSE {scores['val_mse']:.4f}; results in {out}")
