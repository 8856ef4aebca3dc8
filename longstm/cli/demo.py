"""`longstm demo`: train a small LSTM on bundled real data and compare it with naive baselines."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Run directory for checkpoints, metrics and plots."),
    epochs: int = typer.Option(10, min=1, help="Training epochs over the ETTh1 training split."),
    horizon: int = typer.Option(24, min=1, help="Forecast the next HORIZON hours of oil temperature."),
) -> None:
    """Train an LSTM with carried state on the bundled ETTh1 and score it against baselines."""
    from longstm.demo import run_demo

    console = Console()
    console.print(
        f"[bold]longstm demo[/]: ETTh1 (bundled, 17,420 hourly rows) -> OT for the next {horizon} hours; "
        "training streams 8 contiguous lanes with truncated BPTT and carried state."
    )
    started = time.perf_counter()
    scores, plot_path = run_demo(out, epochs=epochs, horizon=horizon)
    table = Table(title=f"ETTh1 test split, next {horizon} h of OT (scaled units, same rows for all)")
    table.add_column("forecaster")
    table.add_column("MSE", justify="right")
    table.add_column("MAE", justify="right")
    best = min(score.mse for score in scores)
    for score in scores:
        style = "bold green" if score.mse == best else ""
        table.add_row(score.name, f"{score.mse:.4f}", f"{score.mae:.4f}", style=style)
    console.print(table)
    console.print(f"plot: {plot_path}   loss curves: {Path(out) / 'loss.png'}   run: {out}")
    console.print(f"done in {time.perf_counter() - started:.0f} s")


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
    app.command("demo")(demo)
