"""`longstm train`, `longstm evaluate`, `longstm predict`.

    longstm train --config configs/tbptt_lstm_etth1.toml --run-dir runs/etth1
    longstm train --config configs/tbptt_lstm_etth1.toml --run-dir runs/etth1 --resume
    longstm train --config configs/tbptt_lstm_etth1.toml --strategy mirrored   # all local GPUs
    longstm train --config configs/tbptt_lstm_etth1.toml --set train.epochs=3 --set model.name=gru
    longstm evaluate runs/etth1
    longstm predict runs/etth1 --data new.csv --out forecasts.csv

TensorFlow is imported inside the commands, so `longstm --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from longstm.cli.stream import follow as follow_command
from longstm.errors import ConfigError
from longstm.train.config import STRATEGIES, load_config

console = Console()


def _scores_table(scores: dict, title: str) -> Table:
    table = Table(title=title)
    for column in ("split", "MSE", "MAE", "rows"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for part, values in scores.items():
        table.add_row(part, f"{values['mse']:.4f}", f"{values['mae']:.4f}", str(values["rows"]))
    return table


def train(
    config: Path = typer.Option(..., "--config", help="TOML config (see configs/ and longstm.train.config)."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Where checkpoints, metrics and plots go (default runs/<config name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its latest checkpoint."),
    strategy: str = typer.Option(
        None,
        "--strategy",
        help="default | mirrored (all local GPUs) | multiworker (TF_CONFIG or Slurm); overrides train.strategy. "
        "See docs/distributed.md.",
    ),
    overrides: list[str] = typer.Option(
        None,
        "--set",
        metavar="KEY=VALUE",
        help="Override a config value (repeatable): --set train.epochs=10 --set model.options.mode=sequential. "
        "VALUE is read as TOML (10, 3e-3, true, [1, 2]), else as a string. The run directory's config.toml keeps the result.",
    ),
) -> None:
    """Train a recurrent model with truncated BPTT and carried state."""
    settings = load_config(config, overrides or ())
    if strategy is not None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {STRATEGIES}; got {strategy!r}")
        settings = dataclasses.replace(settings, train=dataclasses.replace(settings.train, strategy=strategy))
    run_dir = run_dir or Path("runs") / config.stem
    from longstm.train.run import train_from_config

    scores = train_from_config(settings, run_dir, resume=resume)
    console.print(_scores_table(scores, f"{run_dir} (scaled units, best validation weights)"))
    console.print(f"run directory: {run_dir}  (metrics.csv, loss.png, tensorboard/)")


def evaluate(run_dir: Path = typer.Argument(..., help="A run directory written by `longstm train`.")) -> None:
    """Score a run directory from `longstm train` on its validation and test splits.

    Not `longstm eval ett|hft|lobster`: those are the benchmark protocols, which train and score models on a data file.
    """
    from longstm.train.run import evaluate_run

    scores = evaluate_run(run_dir)
    console.print(_scores_table(scores, f"{run_dir} (scaled units)"))
    print(json.dumps(scores))


def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `longstm train`."),
    data: Path = typer.Option(..., "--data", help="A series file with the same columns as the training data."),
    out: Path = typer.Option(None, "--out", help="CSV to write (default RUN_DIR/predictions.csv; stdout with --follow)."),
    follow: bool = typer.Option(
        False, "--follow", help="Read DATA as it grows (or - for stdin) and write a forecast per new row; see `longstm follow`."
    ),
    idle_timeout: float = typer.Option(None, "--idle-timeout", help="With --follow: stop when DATA has not grown for this many seconds."),
) -> None:
    """Per-row forecasts of a trained run on a series, in the data's units."""
    if follow:
        follow_command(
            run_dir, str(data), out=out, max_rows=None, idle_timeout=idle_timeout, poll=0.05, state_in=None, state_out=None
        )
        return
    from longstm.train.run import predict_run

    out = out or Path(run_dir) / "predictions.csv"
    frame = predict_run(run_dir, data, out=out)
    names = [c for c in frame.columns if c not in ("row", "timestamp")]
    console.print(f"{len(frame)} forecasts of {', '.join(names)} written to {out}")


def register(app: typer.Typer) -> None:
    """Add the training commands to the top-level app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)
