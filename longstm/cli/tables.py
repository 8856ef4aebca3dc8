"""Metric tables of the `longstm eval` protocols: Rich tables on the terminal, and the
CSV / Markdown (/ JSON) files an `--out` folder gets.

A table is described by columns `(key, header, format pattern)`; a row is a dict of metrics
(`HFTEvaluation.rows()`, `LOBEvaluation.rows()`). Missing or NaN values print as "—".

Example:

>>> columns = (("model", "model", "{}"), ("mse", "MSE", "{:.2f}"))
>>> print(markdown_table([{"model": "zero", "mse": 1.234}, {"model": "ar", "mse": float("nan")}], columns))
| model | MSE |
|---|---|
| zero | 1.23 |
| ar | — |
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich import box
from rich.table import Table

Column = tuple[str, str, str]  # (row key, header, format pattern)


def format_cell(value, pattern: str) -> str:
    """A table cell: `pattern.format(value)`, or "—" for a missing or NaN value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return pattern.format(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    """A Markdown table of metric rows with the given columns."""
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(key), pattern) for key, _, pattern in columns) + " |")
    return "\n".join(lines)


def metric_table(title: str, rows: Sequence[dict], columns: Sequence[Column], caption: str | None = None) -> Table:
    """A compact Rich table of metric rows, the first (model) column left-aligned.

    Args:
        title: printed above the table.
        rows: metric dicts.
        columns: `(key, header, pattern)` per column.
        caption: printed below the table (what the columns mean).

    Returns:
        A `rich.table.Table`.
    """
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for index, (_, header, _) in enumerate(columns):
        table.add_column(header, justify="left" if index == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(format_cell(row.get(key), pattern) for key, _, pattern in columns))
    return table


def write_table_files(out_dir: str | Path, stem: str, rows: Sequence[dict], markdown: str) -> list[Path]:
    """Write `<stem>.csv` (the rows) and `<stem>.md` (`markdown`) into `out_dir`, creating it.

    Returns:
        The two paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.csv", out_dir / f"{stem}.md"]
    pd.DataFrame(list(rows)).to_csv(paths[0], index=False)
    paths[1].write_text(markdown + "\n")
    return paths


def write_metric_files(out_dir: str | Path, rows: Sequence[dict], json_record: dict, markdown: str) -> list[Path]:
    """Write `metrics.csv` (the rows), `metrics.json` (`json_record`) and `metrics.md`
    (`markdown`) into `out_dir`, creating it.

    Returns:
        The three paths.
    """
    csv_path, markdown_path = write_table_files(out_dir, "metrics", rows, markdown)
    json_path = Path(out_dir) / "metrics.json"
    json_path.write_text(json.dumps(json_record, indent=2))
    return [csv_path, json_path, markdown_path]
