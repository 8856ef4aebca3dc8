"""`longstm data` commands: look at a data file before training on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from longstm.data.inspect import inspect_file

app = typer.Typer(no_args_is_help=True)


def format_duration(delta: np.timedelta64 | None) -> str:
    """`np.timedelta64` as '1h', '15min', '2 days 03:00:00', '0.62 ms'."""
    if delta is None:
        return "-"
    value = pd.Timedelta(int(delta.astype("timedelta64[ns]").astype(np.int64)), "ns")
    if value < pd.Timedelta(1, "s"):
        return f"{value.value / 1e6:.3g} ms"
    if value < pd.Timedelta(1, "min") and value != value.round("s"):
        return f"{value.total_seconds():.3g} s"
    if value < pd.Timedelta(1, "D") and value == value.round("s"):
        seconds = int(value.total_seconds())
        for unit, size in (("h", 3600), ("min", 60), ("s", 1)):
            if seconds % size == 0 and (unit != "s" or seconds < 3600):
                return f"{seconds // size}{unit}"
    return str(value)


def _stamp(value: np.datetime64) -> str:
    return str(pd.Timestamp(value))


@app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="A .csv, .csv.gz, .parquet, .npy or LOBSTER *_message_N.csv file."),
    kind: str = typer.Option("auto", "--kind", help="auto, csv, parquet, ett, ohlcv, lobster or npy."),
    timestamp_column: str = typer.Option(None, "--timestamp-column", help="Timestamp column (detected when omitted)."),
    bar: str = typer.Option(None, "--bar", help="LOBSTER: aggregate events to bars of this length (e.g. 1s)."),
) -> None:
    """Print rows, columns, time span, resolution, gaps and NaNs of a data file."""
    summary = inspect_file(path, kind, timestamp_column=timestamp_column, bar=bar)
    console = Console()
    overview = Table(title=f"{path.name} ({summary.kind})", show_header=False)
    overview.add_column("", style="bold")
    overview.add_column("")
    span = "-" if summary.first is None else (
        f"{_stamp(summary.first)} .. {_stamp(summary.last)} "
        f"({format_duration(summary.last - summary.first)})"
    )
    if summary.event_data:
        resolution = f"event data: median step {format_duration(summary.resolution)}, longest pause {format_duration(summary.largest_gap)}"
        gaps = "n/a (event-indexed)"
    else:
        resolution = format_duration(summary.resolution) if summary.first is not None else "none (no timestamps; rows are steps)"
        gaps = "none" if summary.gaps == 0 else (
            f"{summary.gaps} (largest {format_duration(summary.largest_gap)}; after rows "
            f"{', '.join(map(str, summary.gap_rows))}{' ...' if summary.gaps > len(summary.gap_rows) else ''})"
        )
    for label, value in (
        ("rows", f"{summary.rows:,}"),
        ("columns", f"{len(summary.columns)}: {', '.join(c.name for c in summary.columns)}"),
        ("time span", span),
        ("resolution", resolution),
        ("gaps", gaps),
        ("NaNs", "none" if summary.nans == 0 else f"{summary.nans} (load with nan_policy='ffill' or fix the file)"),
    ):
        overview.add_row(label, value)
    console.print(overview)
    columns = Table(title="columns")
    for name in ("column", "NaNs", "min", "max", "mean"):
        columns.add_column(name, justify="left" if name == "column" else "right")
    for column in summary.columns:
        columns.add_row(column.name, str(column.nans), f"{column.minimum:.6g}", f"{column.maximum:.6g}", f"{column.mean:.6g}")
    console.print(columns)
    for note in summary.warnings:
        console.print(f"[yellow]warning:[/] {note}", highlight=False)
