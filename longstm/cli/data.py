"""`longstm data` commands: look at data before training on it; convert sources into a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from longstm.data.bars import make_bars
from longstm.data.inspect import inspect_file
from longstm.data.sources import LAYOUTS, discover
from longstm.data.store import CROSSED_POLICIES, Store, convert, is_store
from longstm.errors import ConfigError

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


def parse_time_zones(entries: list[str] | None) -> dict[str, str]:
    """`--tz PATTERN=ZONE` entries as a dict (PATTERN matches a folder or file name)."""
    zones = {}
    for entry in entries or ():
        pattern, sep, zone = entry.partition("=")
        if not sep or not pattern or not zone:
            raise ConfigError(f"--tz must be PATTERN=ZONE, like 'fxcm_*=-05:00' or 'oanda_*=UTC'; got {entry!r}")
        zones[pattern] = zone
    return zones


@app.command("convert")
def convert_command(
    sources: list[str] = typer.Argument(..., help="Files, folders (searched recursively) or globs: CSV/Parquet tables, "
                                       "hive-partitioned Parquet, vendor tick zips (SERIES/YYYYMMDD_quote.zip)."),
    out: Path = typer.Option(..., "--out", help="The store folder (created; converting into an existing store appends)."),
    layout: str = typer.Option("auto", "--layout", help=f"One of {', '.join(LAYOUTS)}."),
    tz: list[str] = typer.Option(None, "--tz", help="PATTERN=ZONE: naive timestamps of matching paths are in ZONE "
                                 "(e.g. 'fxcm_*=-05:00'); default UTC. Repeatable."),
    series_column: str = typer.Option(None, "--series-column", help="The series-id column of a long table (default: unique_id, series, ...)."),
    timestamp_column: str = typer.Option(None, "--timestamp-column", help="The timestamp column (detected when omitted)."),
    crossed: str = typer.Option("mark", "--crossed", help=f"Quotes with ask < bid: {' or '.join(CROSSED_POLICIES)}."),
    batch_rows: int = typer.Option(1 << 18, "--batch-rows", min=1, help="Rows read per batch: bounds the memory used."),
) -> None:
    """Convert many series into one memory-mapped store, batch by batch (never the whole data in memory)."""
    found = discover(sources, layout=layout, tz=parse_time_zones(tz))
    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("converting", total=len(found))
        report = convert(found, out, series_column=series_column, timestamp_column=timestamp_column, crossed=crossed,
                         block_rows=batch_rows, on_source=lambda source, rows: progress.advance(task))
    series = sorted({shard["series"] for shard in report["shards"]})
    console.print(f"converted {report['rows']:,} rows of {len(series)} series from {len(found)} files in "
                  f"{report['seconds']:.1f} s into {out}", highlight=False)


@app.command("bars")
def bars_command(
    store: Path = typer.Argument(..., help="A tick store (from `longstm data convert`) whose series have bid and ask."),
    every: str = typer.Option("1s", "--every", help="The bar length (a duration like 1s, 500ms, 1min); bars follow UTC epoch multiples of it."),
    out: Path = typer.Option(..., "--out", help="The bar store folder (must not exist yet)."),
) -> None:
    """Resample a tick store into bars: per interval with ticks, the last quote and the tick count, stamped at the interval's end."""
    source = Store(store)
    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("bars", total=sum(source.indexed_rows(name) for name in source.names))
        report = make_bars(source, out, every,
                           on_block=lambda name, rows: progress.update(task, advance=rows, description=name))
    console.print(f"made {report['rows_out']:,} bars of {every} from {report['rows_in']:,} ticks of {report['series']} series "
                  f"in {report['seconds']:.1f} s into {out}", highlight=False)


def inspect_store(path: Path, gap: str, console: Console) -> None:
    """The per-series table of a store: rows, span, sessions, largest gap, crossed quotes, ties."""
    rows = Store(path).describe(gap)
    table = Table(title=f"{path} (store, {len(rows)} series, {sum(r['rows'] for r in rows):,} rows)")
    dropped = any(row["dropped"] for row in rows)
    names = ["series", "rows", "first (UTC)", "last (UTC)", "sessions", "largest gap", "crossed", *(["dropped"] if dropped else []), "same ms"]
    for name in names:
        table.add_column(name, justify="left" if name in ("series", "first (UTC)", "last (UTC)") else "right", no_wrap=True)
    for row in rows:
        hours = row["largest_gap"] / np.timedelta64(1, "h")
        cells = [row["series"], f"{row['rows']:,}", row["first"][:16].replace("T", " "), row["last"][:16].replace("T", " "),
                 str(row["sessions"]), f"{hours:.1f} h", f"{row['crossed']:,}", *([f"{row['dropped']:,}"] if dropped else []),
                 f"{row['ties']:,}"]
        table.add_row(*cells)
    console.print(table)
    console.print(f"columns: {', '.join(rows[0]['columns']) if rows else '-'}; sessions split where ticks are more than {gap} "
                  f"apart (--gap); crossed: quotes with ask < bid (kept and marked, or dropped at conversion)", highlight=False)


@app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="A store (from `longstm data convert`), or a .csv, .csv.gz, .parquet, .npy or "
                                "LOBSTER *_message_N.csv file."),
    kind: str = typer.Option("auto", "--kind", help="auto, csv, parquet, ett, ohlcv, lobster or npy."),
    timestamp_column: str = typer.Option(None, "--timestamp-column", help="Timestamp column (detected when omitted)."),
    bar: str = typer.Option(None, "--bar", help="LOBSTER: aggregate events to bars of this length (e.g. 1s)."),
    gap: str = typer.Option("1h", "--gap", help="A store: a pause longer than this starts a new session, or FREQ@ZONE (1D@America/New_York) for calendar sessions."),
    no_header: bool = typer.Option(False, "--no-header", help="CSV: the first line is data, not column names."),
) -> None:
    """Print rows, columns, time span, resolution, gaps and NaNs of a data file, or per series of a store."""
    console = Console()
    if is_store(path):
        # one row per series: wider than 80 columns, and folding it would hide the numbers
        inspect_store(path, gap, Console(width=max(console.width, 110)))
        return
    summary = inspect_file(path, kind, timestamp_column=timestamp_column, bar=bar, header=False if no_header else None)
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
