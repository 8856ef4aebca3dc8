"""`longstm export` and `longstm follow`: serving a trained run.

    longstm export runs/etth1 --format savedmodel --out serving/etth1
    longstm follow runs/etth1 live.csv --out forecasts.csv          # as live.csv grows
    tail -f live.csv | longstm follow runs/etth1 -                  # or from stdin

`follow` is the `predict --follow` of issue 9; its reading loop is `longstm.serve.follow`.
The commands import the serving package (and with it TensorFlow) when they run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from longstm.errors import ConfigError
from longstm.serve.follow import error_console, follow_stream
from longstm.serve.predictor import StreamingPredictor


def export(
    run_dir: Path = typer.Argument(..., help="A run directory written by `longstm train`."),
    format: str = typer.Option("savedmodel", "--format", help="savedmodel, keras or tflite."),
    out: Path = typer.Option(None, "--out", help="Output path (default RUN_DIR/export/step.<format>)."),
    instruments: int = typer.Option(1, "--instruments", help="Fixed batch (instruments) of a tflite model."),
) -> None:
    """Export a run's model as a single-step function: (x_t, state) -> (prediction, new state)."""
    from longstm.serve.export import FORMATS, export_run

    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")
    if instruments < 1:
        raise ConfigError(f"--instruments must be an integer >= 1; got {instruments}")
    path = export_run(run_dir, format, out, n_instruments=instruments)
    where = "in its config" if format == "keras" else ("in longstm_stream.json" if format == "savedmodel" else f"in {path.name}.json")
    Console().print(f"exported {run_dir} as {format} to {path} (inputs and outputs in scaled units; scaler and columns {where})")


def follow(
    run_dir: Path = typer.Argument(..., help="A run directory written by `longstm train`."),
    source: str = typer.Argument(..., help="CSV or Parquet file to follow as it grows, or - for stdin (CSV)."),
    out: Path = typer.Option(None, "--out", help="Forecast CSV to write (default: stdout)."),
    max_rows: int = typer.Option(None, "--max-rows", help="Stop after this many data rows."),
    idle_timeout: float = typer.Option(None, "--idle-timeout", help="Stop when the file has not grown for this many seconds."),
    poll: float = typer.Option(0.05, "--poll", help="Seconds between looks at a file that has not grown."),
    state_in: Path = typer.Option(None, "--state-in", help="Start from a state saved by --state-out."),
    state_out: Path = typer.Option(None, "--state-out", help="Save the streaming state here at the end."),
) -> None:
    """Forecast each new row of a growing file as it arrives (the `predict --follow` mode)."""
    if max_rows is not None and max_rows < 1:
        raise ConfigError(f"--max-rows must be an integer >= 1; got {max_rows}")
    if idle_timeout is not None and idle_timeout < 0:
        raise ConfigError(f"--idle-timeout must be >= 0 seconds; got {idle_timeout}")
    if poll <= 0:
        raise ConfigError(f"--poll must be > 0 seconds; got {poll}")
    from longstm.serve.loading import load_run_model  # TensorFlow: at the command boundary

    model, meta = load_run_model(run_dir)
    predictor = StreamingPredictor.from_metadata(model, meta)
    if state_in is not None:
        predictor.restore_state(state_in)
    handle = open(out, "w", newline="") if out is not None else sys.stdout
    try:
        report = follow_stream(
            predictor, source, handle, target_names=meta["targets"], max_rows=max_rows, idle_timeout=idle_timeout, poll=poll
        )
    finally:
        if out is not None:
            handle.close()
    if state_out is not None:
        predictor.save_state(state_out)
    error_console.print(
        f"{report.rows} rows read, {report.forecasts} forecasts written, {len(report.skipped)} malformed rows skipped",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add `export` and `follow` to the top-level app."""
    app.command("export")(export)
    app.command("follow")(follow)
