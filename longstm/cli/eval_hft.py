"""`longstm eval hft`: load OHLCV bars, run the HFT protocol, print tables, save files and plots.

The protocol itself (bars, targets, decision steps, walk-forward, `evaluate_hft`) lives in
`longstm.evaluate.hft`; this module is its shell: `--model` parsing, Rich tables, the
`--out` folder (metrics.csv/.json/.md, equity and prediction plots).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from rich.console import Console
from rich.progress import Progress

from longstm.atomic import save_figure
from longstm.cli.options import parse_int_list, predictor_factories
from longstm.cli.tables import markdown_table, metric_table, write_metric_files
from longstm.data.loaders import load_series
from longstm.evaluate.hft import Bars, HFTConfig, HFTEvaluation, Predictor, evaluate_hft
from longstm.models.hft_baselines import LinearAR, Momentum, ZeroReturn

TABLE_COLUMNS = (
    ("model", "model", "{}"),
    ("mse_bp2", "MSE bp²", "{:.2f}"),
    ("directional_accuracy", "dir.acc", "{:.4f}"),
    ("information_coefficient", "IC", "{:+.4f}"),
    ("sharpe", "Sharpe", "{:+.2f}"),
    ("total_return", "return", "{:+.1%}"),
    ("max_drawdown", "max DD", "{:.2%}"),
    ("turnover", "turn", "{:.3f}"),
)
MARKDOWN_COLUMNS = (("horizon", "k", "{:d}"), ("n_test", "n", "{:d}")) + TABLE_COLUMNS
BASELINE_NAMES = ("zero", "momentum", "ar")


def _bars(count: int) -> str:
    return f"{count} bar{'s' if count > 1 else ''}"


def rich_tables(evaluation: HFTEvaluation, title_prefix: str = "") -> list:
    """One `rich.table.Table` per horizon, one row per model (buy-and-hold last)."""
    rows = evaluation.rows()
    tables = []
    for horizon in evaluation.config.horizons:
        horizon_rows = [row for row in rows if row["horizon"] == horizon]
        count = horizon_rows[0]["n_test"] if horizon_rows else 0
        caption = (
            "dir.acc: zero moves skipped, zero forecasts count ½; IC: Spearman; sign strategy "
            f"held {_bars(horizon)}, {evaluation.config.cost_bps:g} bp per unit traded; "
            "Sharpe annualised; turn: mean |Δposition| per bar"
        )
        title = f"{title_prefix}k = {_bars(horizon)} ahead ({count:,} test steps)"
        tables.append(metric_table(title, horizon_rows, TABLE_COLUMNS, caption))
    return tables


def _save_figure(figure: Figure, path: Path) -> Path:
    figure.autofmt_xdate()
    figure.tight_layout()
    return save_figure(figure, path, dpi=110)


def plot_equity(evaluation: HFTEvaluation, horizon: int, path: Path) -> Path:
    """Equity curves of every model and buy-and-hold over the test bars at one horizon."""
    results = [result for result in evaluation.results if result.horizon == horizon]
    market = evaluation.buy_and_hold[horizon]
    first = results[0].backtest_first_row if results else 0
    rows_axis = np.arange(first, first + market.equity.size)
    x = evaluation.timestamps[rows_axis] if evaluation.timestamps is not None else rows_axis
    figure = Figure(figsize=(10, 4.5))
    axis = figure.subplots()
    axis.plot(x, market.equity, color="0.5", linewidth=1.0, label="buy and hold")
    for result in results:
        axis.plot(x, result.backtest.equity, linewidth=1.0, label=result.model)
    axis.set_title(f"Sign strategy, k = {horizon}, costs {evaluation.config.cost_bps:g} bp per unit traded (test split)")
    axis.set_ylabel("equity (start = 1)")
    axis.legend(loc="best")
    axis.grid(alpha=0.3)
    return _save_figure(figure, path)


def plot_predictions(evaluation: HFTEvaluation, horizon: int, path: Path, tail: int = 300) -> Path | None:
    """The last `tail` test predictions of every model against the actual returns at one
    horizon; None (nothing drawn) when no model ran at that horizon."""
    results = [result for result in evaluation.results if result.horizon == horizon]
    if not results:
        return None
    steps = results[0].decision_steps[-tail:]
    x = evaluation.timestamps[steps] if evaluation.timestamps is not None else steps
    figure = Figure(figsize=(10, 4.5))
    axis = figure.subplots()
    axis.plot(x, results[0].actuals[-tail:], color="black", linewidth=1.0, label="actual")
    for result in results:
        axis.plot(x, result.predictions[-tail:], linewidth=1.0, label=result.model)
    axis.set_title(f"Predicted vs actual {horizon}-bar log return (bp), last {steps.size} test steps")
    axis.set_ylabel("basis points")
    axis.legend(loc="best")
    axis.grid(alpha=0.3)
    return _save_figure(figure, path)


def save_hft_outputs(evaluation: HFTEvaluation, out_dir: str | Path, *, tail: int = 300) -> list[Path]:
    """Write `metrics.csv`, `metrics.json`, `metrics.md`, and per horizon `equity_h{k}.png`
    (equity curves of every model and buy-and-hold over the test bars) and
    `predictions_h{k}.png` (the last `tail` test predictions against the actual returns).

    Args:
        evaluation: what `evaluate_hft` returned.
        out_dir: the folder (created if needed).
        tail: how many of the last test steps the prediction plots show.

    Returns:
        The paths written.

    Example:

    >>> evaluation = evaluate_hft(bars, {"zero": ZeroReturn}, HFTConfig(horizons=(1,)))  # doctest: +SKIP
    >>> [path.name for path in save_hft_outputs(evaluation, "runs/hft")]                 # doctest: +SKIP
    ['metrics.csv', 'metrics.json', 'metrics.md', 'equity_h1.png', 'predictions_h1.png']
    """
    out_dir = Path(out_dir)
    rows = evaluation.rows()
    markdown = markdown_table(sorted(rows, key=lambda row: row["horizon"]), MARKDOWN_COLUMNS)
    paths = write_metric_files(out_dir, rows, evaluation.to_json_dict(), markdown)
    for horizon in evaluation.config.horizons:
        paths.append(plot_equity(evaluation, horizon, out_dir / f"equity_h{horizon}.png"))
        drawn = plot_predictions(evaluation, horizon, out_dir / f"predictions_h{horizon}.png", tail)
        if drawn is not None:
            paths.append(drawn)
    return paths


def _trained_hft_factory(config, **options):
    """`longstm.evaluate.trained.hft_factory`, imported here: it loads TensorFlow, which a run of
    baselines alone never needs (they take a second; TensorFlow's import takes longer)."""
    from longstm.evaluate.trained import hft_factory

    return hft_factory(config, **options)


def model_factories(
    model: str, ridge: float = 0.0, run_root: str | Path | None = None, overrides: Sequence[str] = ()
) -> dict[str, Callable[[], Predictor]]:
    """Predictor factories for `--model`: baseline names (zero, momentum, ar) and training
    config `.toml` files (each read once with `overrides` and trained as a
    `longstm.evaluate.trained.TrainedHFTPredictor`), in the order given.

    Example:

    >>> list(model_factories("zero,ar", ridge=0.1))
    ['zero', 'ar']
    """
    LinearAR(ridge=ridge)  # validates ridge before any work
    baselines = {"zero": ZeroReturn, "momentum": Momentum, "ar": lambda: LinearAR(ridge=ridge)}
    return predictor_factories(
        model, baselines, _trained_hft_factory, protocol="the HFT protocol", overrides=overrides, run_root=run_root
    )


def run_hft_command(
    data,
    *,
    model: str = "zero,momentum,ar",
    horizons: str = "1,5,15",
    lookback: int = 60,
    cost_bps: float = 1.0,
    ridge: float = 0.0,
    walk_forward: bool = False,
    retrain_every: int | None = None,
    train_window: int | None = None,
    periods_per_year: float | None = None,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    console: Console | None = None,
) -> HFTEvaluation:
    """What `longstm eval hft` does: load bars, run the protocol, print tables, write files.

    The arguments are the command's options (`overrides` is `--set`); see
    `longstm eval hft --help`.

    Returns:
        The `HFTEvaluation`.
    """
    console = console or Console()
    config = HFTConfig(
        horizons=parse_int_list(horizons, "--horizons"),
        lookback=lookback,
        cost_bps=cost_bps,
        walk_forward=walk_forward,
        retrain_every=retrain_every,
        train_window=train_window,
        periods_per_year=periods_per_year,
    )
    factories = model_factories(model, ridge, run_root=None if out is None else Path(out) / "runs", overrides=overrides)
    bars = Bars.from_series(load_series(data, kind="ohlcv", gap_policy="split"))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("HFT protocol", total=len(factories) * len(config.horizons))
        evaluation = evaluate_hft(
            bars, factories, config, on_progress=lambda what: progress.update(task, advance=1, description=what)
        )
    summary = evaluation.data_summary
    console.print(
        f"[bold]{summary['source']}[/]: {summary['bars']:,} bars, test rows {summary['test_rows'][0]:,}–"
        f"{summary['test_rows'][1]:,}" + (f" (from {summary['test_first']})" if "test_first" in summary else "")
        + f"; lookback {config.lookback}, costs {config.cost_bps:g} bp"
        + (", walk-forward" if config.walk_forward else "")
    )
    for table in rich_tables(evaluation):
        console.print(table)
    if out is not None:
        paths = save_hft_outputs(evaluation, out)
        console.print(f"wrote {len(paths)} files to {out}")
    return evaluation
