"""`longstm eval ett`: score a baseline or a trained config on the ETT protocol, print, save.

The protocol lives in `longstm.evaluate.ett` (baselines) and `longstm.evaluate.ett_trained`
(a training config trained per horizon, scored window by window and with carried state);
this module is their shell: the table on the terminal and `ett_results.csv/.md` in `--out`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from longstm.cli.options import is_config_path, parse_int_list
from longstm.data import load_series
from longstm.errors import ConfigError
from longstm.evaluate.ett import choose_split, evaluate_ett
from longstm.evaluate.ett_trained import MODES, TrainedEtt, ett_table_rows, write_ett_table
from longstm.train.config import read_config

HORIZONS_EXAMPLE = "96,192,336,720"


def _dropped(drop_last_batch: int | None, separator: str) -> str:
    return f"{separator}last incomplete batch of {drop_last_batch} dropped" if drop_last_batch else ""


def run_ett_command(
    data: Path,
    *,
    model: str = "repeat",
    lookback: int = 336,
    horizons: str = HORIZONS_EXAMPLE,
    drop_last_batch: int | None = None,
    features: str = "M",
    target: str = "OT",
    split: str = "auto",
    mode: str = "both",
    out: Path | None = None,
    channel_independent: bool = False,
    overrides: Sequence[str] = (),
    console: Console | None = None,
) -> None:
    """What `longstm eval ett` does: a baseline name or a training config `.toml` in `model`
    (read once, with `overrides` from `--set`); the other arguments are the command's options,
    see `longstm eval ett --help`."""
    horizon_list = list(parse_int_list(horizons, "--horizons", HORIZONS_EXAMPLE))
    series = load_series(data, gap_policy="report")
    chosen = choose_split(series, lookback, split)
    console = console or Console()
    if is_config_path(model):
        modes = MODES if mode == "both" else (mode,)
        if any(m not in MODES for m in modes):
            raise ConfigError(f"--mode must be window, stream or both, got {mode!r}")
        trained = TrainedEtt(read_config(model, overrides), series, lookback, features=features, target=target, split=split,
                             run_dir=None if out is None else Path(out) / "runs", progress=True,
                             channel_independent=channel_independent)
        name = Path(model).stem + (" (channel-independent)" if channel_independent else "")
        rows = _train_and_score(console, series, trained, name, lookback, horizon_list, modes, drop_last_batch, features,
                                target, split, out)
        table = Table(
            title=f"{name} ({trained.config.model.name}) on {data.name}",
            caption=f"{chosen.protocol} split, test rows [{chosen.test[0]}, {chosen.test[1]}), L={lookback}, features {features}, "
            "metrics on train-scaled data; window: each window from a zero state (lookback L); stream: state carried "
            "through the whole past (more history than L)" + _dropped(drop_last_batch, "; "),
        )
        for column in ("H", "mode", "MSE", "MAE", "repeat MSE", "repeat MAE", "windows", "epochs (best)"):
            table.add_column(column, justify="left" if column == "mode" else "right")
        for row in rows:
            table.add_row(str(row["horizon"]), row["mode"], f"{row['mse']:.3f}", f"{row['mae']:.3f}", f"{row['repeat_mse']:.3f}",
                          f"{row['repeat_mae']:.3f}", str(row["windows"]), f"{row['epochs_run']} ({row['best_epoch']})")
    else:
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
            f"features {features}, metrics on train-scaled data" + _dropped(drop_last_batch, ", "),
        )
        for column in ("H", "MSE", "MAE", "windows"):
            table.add_column(column, justify="right")
        for result in results:
            table.add_row(str(result.horizon), f"{result.mse:.3f}", f"{result.mae:.3f}", str(result.windows))
        rows = [{"model": model, "mode": "window", "horizon": r.horizon, "lookback": r.lookback, "features": r.features,
                 "mse": r.mse, "mae": r.mae, "windows": r.windows} for r in results]
    console.print(table)
    if out is not None:
        paths = write_ett_table(rows, out)
        console.print(f"wrote {', '.join(str(p) for p in paths)}")


def _train_and_score(console, series, trained: TrainedEtt, name: str, lookback: int, horizons: list[int], modes,
                     drop_last_batch, features: str, target: str, split: str, out) -> list[dict]:
    """Train per horizon and score in each mode beside the repeat baseline; the table rows.
    With `out`, the table on disk grows as each horizon finishes."""
    baseline = evaluate_ett(series, "repeat", lookback, horizons, drop_last_batch=drop_last_batch, features=features,
                            target=target, split=split)

    def announce(horizon, summary):
        console.print(
            f"H={horizon}: trained {summary['epochs_run']} epochs in {summary['train_seconds']:.0f} s, "
            f"best epoch {summary['best_epoch']} (validation MSE {summary['val_mse']:.4f})" if summary.get("val_mse") is not None
            else f"H={horizon}: trained {summary['epochs_run']} epochs in {summary['train_seconds']:.0f} s"
        )

    results: dict[str, list] = {m: [] for m in modes}
    rows: list[dict] = []
    for horizon in horizons:
        for m, scored in trained.evaluate([horizon], modes, drop_last_batch=drop_last_batch, on_horizon=announce).items():
            results[m] += scored
        rows = ett_table_rows(results, baseline, {h: t.summary for h, t in trained.models.items()}, name)
        if out is not None:
            write_ett_table(rows, out)
    return rows
