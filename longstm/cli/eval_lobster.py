"""`longstm eval lobster`: load a LOBSTER sample, run the direction task, print tables, save files.

The task itself (labels, splits, `evaluate_lobster`) lives in `longstm.evaluate.lobster_task`;
this module is its shell: `--model` parsing, Rich tables and the `--out` folder
(metrics.csv/.json/.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from longstm.cli.options import parse_int_list, predictor_factories
from longstm.cli.tables import markdown_table, metric_table, write_metric_files
from longstm.data.loaders import load_series
from longstm.data.lobster import LobsterSeries
from longstm.evaluate.lobster_task import DEFAULT_ALPHA, LOBConfig, LOBEvaluation, evaluate_lobster
from longstm.models.hft_baselines import MajorityClass, Persistence

TABLE_COLUMNS = (
    ("model", "model", "{}"),
    ("n_test", "n", "{:d}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("macro_f1", "macro-F1", "{:.4f}"),
    ("f1_down", "F1 down", "{:.4f}"),
    ("f1_flat", "F1 flat", "{:.4f}"),
    ("f1_up", "F1 up", "{:.4f}"),
)
MARKDOWN_COLUMNS = (("horizon", "k", "{:d}"),) + TABLE_COLUMNS
BASELINES = {"majority": MajorityClass, "persistence": Persistence}


def _trained_lobster_factory(config, **options):
    """`longstm.evaluate.trained.lobster_factory`, imported here: it loads TensorFlow, which a run of
    baselines alone never needs (they take a second; TensorFlow's import takes longer)."""
    from longstm.evaluate.trained import lobster_factory

    return lobster_factory(config, **options)


def model_factories(
    model: str, run_root: str | Path | None = None, progress: bool = False, overrides: Sequence[str] = ()
) -> dict[str, Callable[[], object]]:
    """Predictor factories for `--model`: baseline names (majority, persistence) and training
    config `.toml` files (each read once with `overrides` and trained as a
    `longstm.evaluate.trained.TrainedLOBPredictor` on the task's train split), in the order
    given. Config files alone get the majority and persistence baselines added in front.

    Example:

    >>> list(model_factories("persistence"))
    ['persistence']
    """
    return predictor_factories(
        model, BASELINES, _trained_lobster_factory, protocol="the LOBSTER task", overrides=overrides, run_root=run_root,
        progress=progress, beside_configs=tuple(BASELINES),
    )


def rich_tables(evaluation: LOBEvaluation) -> list:
    """One `rich.table.Table` per k, one row per model; the title gives the test label shares."""
    tables = []
    for horizon in evaluation.config.horizons:
        test_shares = evaluation.label_shares[str(horizon)]["test"]
        title = f"k = {horizon} events ahead (test labels: " + ", ".join(
            f"{name} {share:.1%}" for name, share in test_shares.items()
        ) + ")"
        rows = [row for row in evaluation.rows() if row["horizon"] == horizon]
        tables.append(metric_table(title, rows, TABLE_COLUMNS))
    return tables


def save_lobster_outputs(evaluation: LOBEvaluation, out_dir: str | Path) -> list[Path]:
    """Write `metrics.csv`, `metrics.json` and `metrics.md` of the task into `out_dir`.

    Returns:
        The paths written.
    """
    rows = evaluation.rows()
    return write_metric_files(out_dir, rows, evaluation.to_json_dict(), markdown_table(rows, MARKDOWN_COLUMNS))


def run_lobster_command(
    data,
    *,
    k: str = "10",
    alpha: float = DEFAULT_ALPHA,
    model: str = "majority,persistence",
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    console: Console | None = None,
) -> LOBEvaluation:
    """What `longstm eval lobster` does: load a LOBSTER sample, run the task, print, write files.

    The arguments are the command's options (`overrides` is `--set`); see
    `longstm eval lobster --help`.

    Returns:
        The `LOBEvaluation`.
    """
    console = console or Console()
    config = LOBConfig(horizons=parse_int_list(k, "--k"), alpha=alpha)
    factories = model_factories(model, None if out is None else Path(out) / "runs", progress=True, overrides=overrides)
    series = load_series(data, kind="lobster")
    features = series.values64 if isinstance(series, LobsterSeries) else series.values  # exact mids for the labels
    evaluation = evaluate_lobster(features, series.columns, factories, config, source=str(series.source))
    summary = evaluation.data_summary
    console.print(
        f"[bold]{summary['source']}[/]: {summary['events']:,} events, test events "
        f"{summary['test_rows'][0]:,}–{summary['test_rows'][1]:,}; alpha {config.alpha:g}"
    )
    for table in rich_tables(evaluation):
        console.print(table)
    if out is not None:
        save_lobster_outputs(evaluation, out)
        console.print(f"wrote metrics.csv, metrics.json, metrics.md to {out}")
    return evaluation
