"""`longstm report RUN_DIR`: a self-contained HTML and a Markdown report of a run directory.

The command imports `longstm.evaluate.report` (pandas, matplotlib) when it runs, so
`longstm --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def report(
    run_dir: Path = typer.Argument(..., help="Run directory (from `longstm train`, `eval hft --out`, ...)."),
    out: Path = typer.Option(None, "--out", help="Where to write report.html and report.md (default: RUN_DIR)."),
    title: str = typer.Option(None, "--title", help="Report title (default: from the directory name)."),
) -> None:
    """Config, data summary, metric tables, learning curves and plots of a run, as HTML + Markdown."""
    from longstm.evaluate.report import build_report

    html_path, md_path = build_report(run_dir, out, title)
    Console().print(f"wrote {html_path} ({html_path.stat().st_size / 1024:.0f} KiB, images embedded) and {md_path}")


def register(app: typer.Typer) -> None:
    """Add the top-level `report` command to `app`."""
    app.command("report")(report)
