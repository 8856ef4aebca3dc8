"""`longstm plot` commands.

    longstm plot attention runs/attention_lstm_etth1           # a trained attention_lstm run
    longstm plot attention runs/x --start 240 --steps 48 --head 0
    longstm plot attention weights.npy                         # weights saved by your own code

For a run directory the weights are computed from the run's best checkpoint over one chunk of
its test split (`longstm.cli.attention_plot.run_attention`), saved as `attention.npy` in the
run and drawn. The command imports that module (Keras, matplotlib) when it runs, so
`longstm --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from longstm.errors import ConfigError
from longstm.train.rundir import RunDir

app = typer.Typer(no_args_is_help=True)


@app.command("attention")
def attention(
    source: Path = typer.Argument(
        ..., help="A trained attention_lstm run directory, a folder with attention.npy/.npz, or such a file."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="PNG to write (default: attention.png beside the weights)."),
    lane: int = typer.Option(0, help="Which lane (batch row) to draw, for 4-D weights."),
    head: int = typer.Option(None, help="Which head to draw (default: the mean over heads)."),
    memory: int = typer.Option(None, help="Memory slots before the chunk (default: keys - queries), drawn as a line."),
    start: int = typer.Option(0, help="Run directory: first row of the chunk, counted from the test split's start."),
    steps: int = typer.Option(None, help="Run directory: rows in the chunk (default: the run's train.k2)."),
    warmup: int = typer.Option(None, help="Run directory: rows before the chunk that warm the state (default: eval.warmup)."),
) -> None:
    """Draw attention weights (queries x keys) as a heatmap PNG.

    Given a run directory of a trained attention_lstm model, the weights are computed first:
    the model runs over one chunk of the test split (its state and memory warmed up on the
    rows before it), and the weights are saved as attention.npy in the run directory.
    """
    from longstm.cli.attention_plot import attention_matrix, draw_attention, load_attention, run_attention
    from longstm.models.attention import save_attention_weights

    console = Console()
    if RunDir(source).is_run():
        with console.status(f"running the model of {source} over a test chunk"):
            weights, run_memory, first = run_attention(source, start=start, steps=steps, warmup=warmup)
        found = Path(source) / "attention.npy"
        save_attention_weights(found, weights)
        console.print(f"wrote {found} (rows {first}..{first + weights.shape[2] - 1}, shape {weights.shape})")
        memory = run_memory if memory is None else memory
    else:
        weights, found = load_attention(source)
    matrix = attention_matrix(weights, lane, head)
    queries, keys = matrix.shape
    memory = keys - queries if memory is None else memory
    if not 0 <= memory <= keys:
        raise ConfigError(f"--memory must be in [0, {keys}] (the weights have {keys} key columns); got {memory}.")
    which = "mean over heads" if head is None or weights.ndim == 2 else f"head {head}"
    out = draw_attention(matrix, out or found.with_name("attention.png"), memory, f"attention weights, lane {lane}, {which}")
    console.print(f"wrote {out}")
