"""`longstm eval ett|hft|lobster|ticks`: benchmark protocols that train and score models on a data file.

Not to be confused with `longstm evaluate RUN_DIR` (in `longstm.cli.train`), which scores a
run directory that `longstm train` wrote.

Each command imports its implementation at the command boundary (`longstm.cli.eval_ett`,
`eval_hft`, `eval_lobster`, `eval_ticks`: they load pandas, matplotlib and TensorFlow), so `longstm --help`
stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from longstm.cli.options import SET_HELP, require_config_models

app = typer.Typer(no_args_is_help=True)


@app.command("ett")
def ett(
    data: Path = typer.Option(..., "--data", help="ETT-format CSV: a timestamp column and numeric columns."),
    model: str = typer.Option("repeat", "--model", help="Baseline (repeat: last value; mean: of the lookback window; linear / nlinear: LTSF-Linear's map, least squares on the train windows) or a training config .toml: train it on the train split, select epochs on validation, score on test. Several comma-separated configs, optionally with baselines: an ensemble (see --seeds)."),
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
    seeds: str = typer.Option(None, "--seeds", help="Trained models: train each config once per seed (e.g. 0,1,2) and score the mean of all their forecasts (an ensemble), beside each member. Several comma-separated config .toml files in --model make an ensemble too."),
    resume: bool = typer.Option(False, "--resume", help="Trained models: load each horizon that a run in --out finished with the same config instead of training it again."),
    weights: str = typer.Option("equal", "--weights", help="Ensembles: equal (the plain mean of all members) or validation (the trained members' mean blended with the baseline members' by the weight in [0, 1] that minimises validation MSE, fitted per horizon; needs a baseline in --model, e.g. A.toml,nlinear)."),
) -> None:
    """Score a model on the ETT protocol's test part: MSE and MAE on train-scaled data, per horizon."""
    from longstm.cli.eval_ett import run_ett_command

    require_config_models(overrides, model)
    run_ett_command(
        data, model=model, lookback=lookback, horizons=horizons, drop_last_batch=drop_last_batch, features=features,
        target=target, split=split, mode=mode, out=out, channel_independent=channel_independent, overrides=overrides or (),
        seeds=seeds, resume=resume, weights=weights,
    )


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


@app.command("ticks")
def ticks(
    data: Path = typer.Option(..., "--data", help="A store made by `longstm data convert` (series with bid and ask columns)."),
    train_until: str = typer.Option(..., "--train-until", help="First instant not in training (UTC unless a zone is named), e.g. 2014-05-10."),
    val_until: str = typer.Option(..., "--val-until", help="First instant of the test part, e.g. 2014-05-13."),
    horizons: str = typer.Option("10s,60s", "--horizons", help="Comma-separated Δs: the mid log return to the mid in force at t + Δ."),
    model: str = typer.Option("zero,momentum,ar,meanrev", "--model", help="Comma-separated: zero, momentum, ar, meanrev (baselines fitted per series on the training part), or training config .toml files (trained on the store with this split and horizons, runs in --out/runs; a config whose data.path is a bar store made from --data by `longstm data bars` trains on the bars and is scored on the ticks)."),
    series: str = typer.Option(None, "--series", help="Comma-separated series to evaluate (default: all in the store)."),
    lags: int = typer.Option(5, "--lags", help="Past Δ-returns a baseline sees (the AR's lags, the mean-reversion window)."),
    session_gap: str = typer.Option("1h", "--session-gap", help="A longer gap between ticks starts a new session (1h: the FX weekend), or FREQ@ZONE for calendar sessions (1D@America/New_York)."),
    sharpe_bar: str = typer.Option("1min", "--sharpe-bar", help="Period on which the equity is sampled for Sharpe and the pooled book."),
    ridge: float = typer.Option(0.0, "--ridge", help="L2 penalty of the AR baseline (0: least squares)."),
    out: Path = typer.Option(None, "--out", help="Directory for metrics CSV/JSON/Markdown, pooled equity PNGs and trained runs."),
    overrides: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """Tick protocol on a store: the mid Δ ahead per series and pooled, traded across the quoted spread."""
    from longstm.cli.eval_ticks import run_ticks_command

    require_config_models(overrides, model)
    run_ticks_command(
        data, train_until=train_until, val_until=val_until, horizons=horizons, model=model, series=series, lags=lags,
        session_gap=session_gap, sharpe_bar=sharpe_bar, ridge=ridge, out=out, overrides=overrides or (),
    )
