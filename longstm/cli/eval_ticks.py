"""`longstm eval ticks`: the tick protocol on a store, per series and pooled; tables, files and plots.

The protocol (targets, decision ticks, baselines' fitting, the backtest at the quoted spread,
pooling) lives in `longstm.evaluate.ticks`; this module is its shell: `--model` parsing, Rich
tables (one per horizon: a row per model and series, then the pooled row) and the `--out`
folder (metrics.csv/.json/.md, a pooled equity plot per horizon).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from rich.console import Console
from rich.progress import Progress

from longstm.atomic import save_figure
from longstm.cli.options import is_config_path, model_entries, read_configs
from longstm.cli.tables import markdown_table, metric_table, write_metric_files
from longstm.data.store import Store
from longstm.errors import ConfigError
from longstm.evaluate.tick_bars import bar_lookup, check_bar_store
from longstm.evaluate.ticks import TicksConfig, TicksEvaluation, evaluate_ticks, frame_lookup
from longstm.models.hft_baselines import LinearAR, MeanReversion, Momentum, ZeroReturn

MARKDOWN_COLUMNS = (
    ("horizon", "Δ", "{}"),
    ("model", "model", "{}"),
    ("series", "series", "{}"),
    ("n", "n", "{:d}"),
    ("mse_bp2", "MSE bp²", "{:.4f}"),
    ("mse_ratio", "MSE/zero", "{:.4f}"),
    ("directional_accuracy", "dir.acc", "{:.4f}"),
    ("information_coefficient", "IC", "{:+.4f}"),
    ("sharpe", "Sharpe", "{:+.1f}"),
    ("total_return", "return", "{:+.2%}"),
    ("max_drawdown", "max DD", "{:.2%}"),
    ("units_traded", "traded", "{:.0f}"),
    ("spread_paid_bp", "spread bp", "{:.0f}"),
)
# The terminal table leaves out the MSE itself, drawdown and units traded to fit 80 columns (metrics.md has them).
TABLE_COLUMNS = tuple(c for c in MARKDOWN_COLUMNS if c[0] not in ("horizon", "mse_bp2", "max_drawdown", "units_traded"))
BASELINE_NAMES = ("zero", "momentum", "ar", "meanrev")


def baseline_factories(model: str, ridge: float = 0.0) -> tuple[dict[str, Callable[[], object]], list[str]]:
    """The `--model` entries: predictor factories of the baselines and the training config paths,
    each in the order given.

    Raises:
        ConfigError: no entry, or an unknown baseline.

    Example:

    >>> factories, configs = baseline_factories("zero,meanrev,configs/ticks_lstm.toml")
    >>> list(factories), configs
    (['zero', 'meanrev'], ['configs/ticks_lstm.toml'])
    """
    LinearAR(ridge=ridge)  # validates ridge before any work
    baselines = {"zero": ZeroReturn, "momentum": Momentum, "ar": lambda: LinearAR(ridge=ridge), "meanrev": MeanReversion}
    entries = model_entries(model)
    if not entries:
        raise ConfigError(f"--model needs at least one of {', '.join(BASELINE_NAMES)} or a training config .toml; got {model!r}")
    unknown = [entry for entry in entries if not is_config_path(entry) and entry not in baselines]
    if unknown:
        raise ConfigError(f"unknown model {unknown[0]!r} for the tick protocol; choose from {', '.join(BASELINE_NAMES)} "
                          "or a training config .toml")
    return {e: baselines[e] for e in entries if not is_config_path(e)}, [e for e in entries if is_config_path(e)]


def train_configs(configs: Sequence[str], store: Store, config: TicksConfig, *, overrides: Sequence[str] = (),
                  run_root: str | Path | None = None, progress: bool = True) -> dict[str, Callable]:
    """Train each config on the store and return its test forecasts as `evaluate_ticks` lookups.

    The protocol's data settings replace the config's (`data.path` = the store, the calendar
    split, `data.time_targets` = the horizons, the series and the session gap), so a trained
    model is scored on exactly the baselines' task. A config whose `data.path` is a bar store
    made from the store (`longstm data bars`) keeps it: it trains on the bars and each test
    tick gets the forecast of the last bar at or before it (`longstm.evaluate.tick_bars`).
    Each run goes to `run_root/<config stem>` (a temporary folder without `run_root`).
    """
    lookups, every = {}, dict(zip(configs, read_configs(configs, tuple(overrides))))  # all read before any training
    from longstm.train.panel import predict_panel  # TensorFlow: imported only when a config is named (and read)
    from longstm.train.run import resolve_data_path, train_from_config

    bars = {entry: check_bar_store(resolve_data_path(settings, raw_ok=True), store, entry, config.session_gap)
            if settings.data.path else None
            for entry, settings in every.items()}
    for entry, settings in every.items():
        name = Path(entry).stem
        path = resolve_data_path(settings, raw_ok=True) if bars[entry] else store.path
        data = dataclasses.replace(settings.data, path=str(Path(path).resolve()), series=list(config.series or []),
                                   split={"train_until": config.train_until, "val_until": config.val_until},
                                   time_targets=list(config.horizons), session_gap=config.session_gap)
        settings = dataclasses.replace(settings, data=data)
        with tempfile.TemporaryDirectory(prefix=f"longstm-ticks-{name}-") as scratch:
            run_dir = Path(run_root) / name if run_root is not None else Path(scratch)
            train_from_config(settings, run_dir, progress=progress)
            frame = predict_panel(run_dir, part="test")
            lookups[name] = bar_lookup(store, frame, config.session_gap) if bars[entry] else frame_lookup(frame)
    return lookups


def rich_tables(evaluation: TicksEvaluation) -> list:
    """One Rich table per horizon: a row per (model, series), the pooled row after each model's series."""
    rows = evaluation.rows()
    caption = ("MSE/zero: MSE over the zero forecast's; dir.acc: zero moves skipped; IC: Spearman; sign held Δ, "
               f"bought at the ask, sold at the bid; Sharpe on {evaluation.config.sharpe_bar} equity samples, annualised; "
               "pooled: all ticks, an equal-weight book, the spread paid summed")
    return [metric_table(f"Δ = {horizon} ahead (test from {evaluation.config.val_until})",
                         [row for row in rows if row["horizon"] == horizon], TABLE_COLUMNS, caption)
            for horizon in evaluation.config.horizons]


def plot_pooled_equity(evaluation: TicksEvaluation, horizon: str, path: Path) -> Path:
    """The pooled (equal-weight) equity of every model over the test part at one horizon."""
    times = evaluation.grid_ns.astype("datetime64[ns]")
    figure = Figure(figsize=(10, 4.5))
    axis = figure.subplots()
    for model in dict.fromkeys(r.model for r in evaluation.results if r.horizon == horizon):
        equity = np.concatenate([[1.0], np.cumprod(1.0 + evaluation.pooled_returns(model, horizon))])
        axis.plot(times, equity, linewidth=1.0, label=model)
    axis.set_title(f"Pooled sign strategy, Δ = {horizon}, across the quoted spread (test part, equal weight)")
    axis.set_ylabel("equity (start = 1)")
    axis.legend(loc="best")
    axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    return save_figure(figure, path, dpi=110)


def save_ticks_outputs(evaluation: TicksEvaluation, out_dir: str | Path) -> list[Path]:
    """Write `metrics.csv`, `metrics.json`, `metrics.md` and `equity_<Δ>.png` per horizon into `out_dir`."""
    out_dir = Path(out_dir)
    rows = evaluation.rows()
    paths = write_metric_files(out_dir, rows, evaluation.to_json_dict(), markdown_table(rows, MARKDOWN_COLUMNS))
    for horizon in evaluation.config.horizons:
        paths.append(plot_pooled_equity(evaluation, horizon, out_dir / f"equity_{horizon}.png"))
    return paths


def run_ticks_command(
    data,
    *,
    train_until: str,
    val_until: str,
    horizons: str = "10s,60s",
    model: str = "zero,momentum,ar,meanrev",
    series: str | None = None,
    lags: int = 5,
    session_gap: str = "1h",
    sharpe_bar: str = "1min",
    ridge: float = 0.0,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    console: Console | None = None,
) -> TicksEvaluation:
    """What `longstm eval ticks` does: read the store, run the protocol, print tables, write files.

    The arguments are the command's options (`overrides` is `--set`); see `longstm eval ticks --help`.
    Training configs in `model` are trained first (`train_configs`, runs under `out/runs/`).

    Returns:
        The `TicksEvaluation`.
    """
    console = console or Console()
    names: Sequence[str] | None = model_entries(series) if series else None
    config = TicksConfig(train_until, val_until, horizons=horizons, lags=lags, session_gap=session_gap,
                         sharpe_bar=sharpe_bar, series=names)
    factories, configs = baseline_factories(model, ridge)
    store = Store(data)
    for name in names or ():
        store.series(name)  # an unknown series is named before any work
    count = len(names or store.names)
    run_root = None if out is None else Path(out) / "runs"
    trained = train_configs(configs, store, config, overrides=overrides, run_root=run_root) if configs else {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("tick protocol", total=count * len(config.horizons))
        evaluation = evaluate_ticks(store, factories, config, trained=trained,
                                    on_progress=lambda what: progress.update(task, advance=1, description=what))
    rows = evaluation.data_summary["rows"]
    console.print(f"[bold]{store.path}[/]: {count} series, test from {val_until} "
                  f"({sum(r[3] - r[2] for r in rows.values()):,} ticks); lags {lags}, sessions split at gaps over {session_gap}")
    for table in rich_tables(evaluation):
        console.print(table)
    for name, counts in evaluation.data_summary["abstained"].items():
        if any(counts.values()):
            console.print(f"{name}: no forecast at {sum(counts.values()):,} decision ticks (scored as 0, not traded)")
    if out is not None:
        paths = save_ticks_outputs(evaluation, out)
        console.print(f"wrote {len(paths)} files to {out}")
    return evaluation

