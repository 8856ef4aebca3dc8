"""`longstm eval ett|hft|lobster`: benchmark protocols that train and score models on a data file.

Not to be confused with `longstm evaluate RUN_DIR` (in `longstm.cli.train`), which scores a
run directory that `longstm train` wrote.

Each command imports its implementation at the command boundary, so `longstm --help` loads
neither pandas, matplotlib nor TensorFlow: `eval ett` uses `longstm.evaluate.ett` and
`longstm.evaluate.trained`, `eval hft` is `longstm.cli.eval_hft`, `eval lobster` is
`longstm.cli.eval_lobster`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from longstm.cli.options import SET_HELP, is_config_path, parse_int_list, require_config_models
from longstm.errors import ConfigError
from longstm.train.config import read_config

app = typer.Typer(no_args_is_help=True)
ETT_HORIZONS_EXAMPLE = "96,192,336,720"


@app.command("ett")
def ett(
    data: Path = typer.Option(..., "--data", help="ETT-format CSV: a timestamp column and numeric columns."),
    model: str = typer.Option("repeat", "--model", help="Baseline (repeat: last value; mean: of the lookback window; linear / nlinear: LTSF-Linear's map, least squares on the train windows) or a training config .toml: train it on the train split, select epochs on validation, score on test."),
    lookback: int = typer.Option(336, "--lookback", help="Input length L."),
    horizons: str = typer.Option("96,192,336,720", "--horizons", help="Comma-separated forecast lengths H."),
    drop_last_batch: int = typer.Option(None, "--drop-last-batch", help="Score only whole batches of this size (DLinear: 32). Default: all windows."),
    features: str = typer.Option("M", "--features", help="M (all in, all out), S (target only), MS (all in, target out)."),
    target: str = typer.Option("OT", "--target", help="Target column for S and MS."),
    split: str = typer.Option("auto", "--split", help="auto, etth, ettm (12/4/4 months) or ratio (70/10/20)."),
    mode: str = typer.Option("both", "--mode", help="Trained models: window (each window from a zero state, lookback L), stream (state carried through the whole past), or both."),
    out: Path = typer.Option(None, "--out", help="Directory for ett_results.csv/.md (and, for a trained model, its runs)."),
    channel_independent: bool = typer.Option(False, "--channel-independent", help="Trained models, features M: one univariate model shared by all channels."),
    overrides: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """Score a model on the ETT protocol's test part: MSE and MAE on train-scaled data, per horizon."""
    from longstm.data import load_series
    from longstm.evaluate.ett import choose_split, evaluate_ett
    from longstm.evaluate.ett_trained import write_ett_table

    horizon_list = list(parse_int_list(horizons, "--horizons", ETT_HORIZONS_EXAMPLE))
    require_config_models(overrides, model)
    series = load_series(data, gap_policy="report")
    chosen = choose_split(series, lookback, split)
    console = Console()
    if is_config_path(model):
        _ett_trained(console, series, data, model, lookback, horizon_list, drop_last_batch, features, target, split, mode, out,
                     chosen, channel_independent, overrides or ())
        return
    if channel_independent:
        raise ConfigError("--channel-independent applies to a trained model (--model CONFIG.toml), not to a baseline")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{model} on {data.name}", total=None)
        results = evaluate_ett(
            series, model, lookback, horizon_list, drop_last_batch=drop_last_batch, features=features,
            target=target, split=split, on_batch=lambda n: progress.advance(task, n),
        )
    table = Table(
        title=f"{model} on {data.name}",
        caption=f"{chosen.protocol} split, test rows [{chosen.test[0]}, {chosen.test[1]}), L={lookback}, "
        f"features {features}, metrics on train-scaled data"
        + (f", last incomplete batch of {drop_last_batch} dropped" if drop_last_batch else ""),
    )
    table.add_column("H", justify="right")
    table.add_column("MSE", justify="right")
    table.add_column("MAE", justify="right")
    table.add_column("windows", justify="right")
    for result in results:
        table.add_row(str(result.horizon), f"{result.mse:.3f}", f"{result.mae:.3f}", str(result.windows))
    console.print(table)
    if out is not None:
        rows = [{"model": model, "mode": "window", "horizon": r.horizon, "lookback": r.lookback, "features": r.features,
                 "mse": r.mse, "mae": r.mae, "windows": r.windows} for r in results]
        paths = write_ett_table(rows, out)
        console.print(f"wrote {', '.join(str(p) for p in paths)}")


def _ett_trained(console, series, data, config_path, lookback, horizons, drop_last_batch, features, target, split, mode, out,
                 chosen, channel_independent=False, overrides=()) -> None:
    """`eval ett --model CONFIG.toml`: train per horizon, score in window and/or stream mode."""
    from longstm.evaluate.ett import evaluate_ett
    from longstm.evaluate.ett_trained import MODES, TrainedEtt, ett_table_rows, write_ett_table

    modes = MODES if mode == "both" else (mode,)
    if any(m not in MODES for m in modes):
        raise ConfigError(f"--mode must be window, stream or both, got {mode!r}")
    run_dir = None if out is None else Path(out) / "runs"
    trained = TrainedEtt(read_config(config_path, overrides), series, lookback, features=features, target=target, split=split,
                         run_dir=run_dir, progress=True, channel_independent=channel_independent)
    baseline = evaluate_ett(series, "repeat", lookback, horizons, drop_last_batch=drop_last_batch, features=features,
                            target=target, split=split)

    def announce(horizon, summary):
        console.print(
            f"H={horizon}: trained {summary['epochs_run']} epochs in {summary['train_seconds']:.0f} s, "
            f"best epoch {summary['best_epoch']} (validation MSE {summary['val_mse']:.4f})" if summary.get("val_mse") is not None
            else f"H={horizon}: trained {summary['epochs_run']} epochs in {summary['train_seconds']:.0f} s"
        )

    name = Path(config_path).stem + (" (channel-independent)" if channel_independent else "")
    results: dict[str, list] = {m: [] for m in modes}
    for horizon in horizons:  # one horizon at a time: the table on disk grows as each finishes
        for m, scored in trained.evaluate([horizon], modes, drop_last_batch=drop_last_batch, on_horizon=announce).items():
            results[m] += scored
        rows = ett_table_rows(results, baseline, {h: t.summary for h, t in trained.models.items()}, name)
        if out is not None:
            write_ett_table(rows, out)
    table = Table(
        title=f"{name} ({trained.config.model.name}) on {data.name}",
        caption=f"{chosen.protocol} split, test rows [{chosen.test[0]}, {chosen.test[1]}), L={lookback}, features {features}, "
        "metrics on train-scaled data; window: each window from a zero state (lookback L); stream: state carried "
        "through the whole past (more history than L)"
        + (f"; last incomplete batch of {drop_last_batch} dropped" if drop_last_batch else ""),
    )
    for column in ("H", "mode", "MSE", "MAE", "repeat MSE", "repeat MAE", "windows", "epochs (best)"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for row in rows:
        table.add_row(str(row["horizon"]), row["mode"], f"{row['mse']:.3f}", f"{row['mae']:.3f}", f"{row['repeat_mse']:.3f}",
                      f"{row['repeat_mae']:.3f}", str(row["windows"]), f"{row['epochs_run']} ({row['best_epoch']})")
    console.print(table)
    if out is not None:
        paths = write_ett_table(rows, out)
        console.print(f"wrote {', '.join(str(p) for p in paths)}")


@app.command("hft")
def hft(
    data: Path = typer.Option(..., "--data", help="OHLCV bars file: timestamp, open, high, low, close, volume."),
    model: str = typer.Option("zero,momentum,ar", "--model", help="Comma-separated: zero, momentum, ar, or training config .toml files (trained on the train split, carried state)."),
    horizons: str = typer.Option("1,5,15", "--horizons", help="Forecast horizons k in bars."),
    lookback: int = typer.Option(60, "--lookback", help="Bars of features per decision (the AR's lags)."),
    cost_bps: float = typer.Option(1.0, "--cost-bps", help="Backtest cost per unit of position change, bp."),
    ridge: float = typer.Option(0.0, "--ridge", help="L2 penalty of the AR baseline (0: least squares)."),
    walk_forward: bool = typer.Option(False, "--walk-forward", help="Refit before each block of test steps."),
    retrain_every: int = typer.Option(None, "--retrain-every", help="Test steps per walk-forward block."),
    train_window: int = typer.Option(None, "--train-window", help="Training steps per walk-forward refit."),
    periods_per_year: float = typer.Option(None, "--periods-per-year", help="Bars per year (default: from timestamps)."),
    out: Path = typer.Option(None, "--out", help="Directory for metrics CSV/JSON/Markdown and PNG plots."),
    overrides: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """HFT protocol on OHLCV bars: next-k-bar returns, direction, IC, and a costed sign-strategy backtest."""
    from longstm.cli.eval_hft import run_hft_command

    require_config_models(overrides, model)
    run_hft_command(
        data, model=model, horizons=horizons, lookback=lookback, cost_bps=cost_bps, ridge=ridge,
        walk_forward=walk_forward, retrain_every=retrain_every, train_window=train_window,
        periods_per_year=periods_per_year, out=out, overrides=overrides or (),
    )


@app.command("lobster")
def lobster(
    data: Path = typer.Option(..., "--data", help="LOBSTER *_message_N.csv (its *_orderbook_N.csv beside it)."),
    k: str = typer.Option("10", "--k", help="Events ahead whose mean mid is compared (comma-separated for several)."),
    alpha: float = typer.Option(2e-5, "--alpha", help="Flat band as a fraction of the mid price."),
    model: str = typer.Option("majority,persistence", "--model", help="Comma-separated: majority, persistence, or training config .toml files (a recurrent classifier trained on the train split with carried state; shown beside both baselines)."),
    out: Path = typer.Option(None, "--out", help="Directory for metrics CSV/JSON/Markdown."),
    overrides: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """LOBSTER mid-price direction (up/flat/down over the next k events): accuracy and macro-F1."""
    from longstm.cli.eval_lobster import run_lobster_command

    require_config_models(overrides, model)
    run_lobster_command(data, k=k, alpha=alpha, model=model, out=out, overrides=overrides or ())
