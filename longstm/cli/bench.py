"""`longstm bench` commands: speed, memory, stream latency, and all sweeps at once.

The benchmarks live in `longstm/bench/`; each command here imports its benchmark when it runs
(`bench speed` loads TensorFlow and the models, `bench all` matplotlib), so `longstm --help`
stays fast.

    longstm bench speed --models keras_lstm,minlstm --chunks 256,4096 --json runs/speed.json
    longstm bench memory --sizes 1e4,1e6
    longstm bench all --out runs/bench --only speed,memory
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from longstm.bench import stream
from longstm.errors import ConfigError

app = typer.Typer(no_args_is_help=True)


def _write_json(rows: list[dict], json_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(rows, indent=2) + "\n")


@app.command("speed")
def speed(
    models: str = typer.Option("keras_lstm,stacked,hierarchical,attention", help="Comma-separated model names."),
    chunks: str = typer.Option("256,1024,4096", help="Comma-separated chunk lengths T."),
    units: int = typer.Option(64, help="Units of every model (the baseline LSTM included)."),
    lanes: int = typer.Option(16, help="Lanes (batch size)."),
    features: int = typer.Option(8, help="Input features."),
    repeats: int = typer.Option(5, help="Timed steps per model and chunk length (after 2 warm-up steps)."),
    json_path: Path = typer.Option(None, "--json", help="Write the results as a JSON list here."),
) -> None:
    """Train-step time of longstm models vs keras.layers.LSTM, as ratios from one process."""
    import tensorflow as tf

    from longstm.bench import speed as benchmark

    names, lengths = benchmark.parse_names(models), benchmark.parse_chunks(chunks)
    tf.get_logger().setLevel("ERROR")  # one tf.function per model is intended, not "retracing"
    console = Console()
    total = len(lengths) * len(set(names) | {benchmark.BASELINE})
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("timing train steps", total=total)
        results = benchmark.run_speed(
            names, lengths, units, lanes, features, repeats, on_result=lambda _: progress.advance(task)
        )
    table = Table(title=f"train step, {lanes} lanes, {units} units, {features} features (median of {repeats})")
    # Sequential depth (steps run one after another in a chunk) explains the speed-ups of the
    # hierarchies; the calendar models report it with their longest group.
    for column in ("model", "T", "ms/step", "steps/s", "time vs keras_lstm", "speed-up", "depth", "longest group"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in results:
        table.add_row(
            row["model"], str(row["T"]), f"{row['ms_per_step']:.1f}", f"{row['steps_per_s']:.2f}",
            f"{row['ratio_vs_keras_lstm']:.3f}", f"{row['speedup_vs_keras_lstm']:.2f}x",
            str(row.get("sequential_depth", "")), str(row.get("longest_group", "")),
        )
    console.print(table)
    if json_path is not None:
        _write_json(results, json_path)
        console.print(f"wrote {json_path}")


@app.command("memory")
def memory(
    sizes: str = typer.Option("1e4,1e5,1e6,1e7", "--sizes", help="Series lengths T, comma-separated."),
    json_path: Path = typer.Option(None, "--json", help="Also write the rows as a JSON list here."),
    methods: str = typer.Option("tbptt,full_bptt", "--methods", help="tbptt, full_bptt or both."),
    cap_mb: float = typer.Option(6000.0, "--cap-mb", help="Skip full BPTT where its estimated extra memory exceeds this."),
) -> None:
    """Peak RSS of one training epoch at each T: TBPTT streaming from disk vs full BPTT."""
    from longstm.bench import memory as benchmark

    rows = benchmark.run(benchmark.parse_sizes(sizes), benchmark.parse_methods(methods), cap_mb)
    table = Table(title="one training epoch: 8 features, LSTM(64), 16 lanes, chunk 256")
    keys = ("method", "T", "peak_rss_mb", "rss_before_epoch_mb", "epoch_extra_mb", "updates", "seconds", "status")
    for name in ("method", "T", "peak RSS MB", "before epoch MB", "epoch extra MB", "updates", "s", "status"):
        table.add_column(name)
    for row in rows:
        table.add_row(*[str(row.get(key, "")) for key in keys])
    Console().print(table)
    if json_path is not None:
        _write_json(rows, json_path)


app.command("stream")(stream.stream_command)  # beside its benchmark in longstm/bench/stream.py (serving's)


@app.command("all")
def all_sweeps(
    out: Path = typer.Option(Path("runs/bench"), "--out", help="Folder for the JSON and PNG of every sweep."),
    only: str = typer.Option(None, "--only", help="Comma-separated sweeps to run (default: every sweep)."),
) -> None:
    """Run the speed, long-chunk speed, memory and streaming sweeps; save JSON + PNG for each."""
    from longstm.bench import sweeps

    names = sweeps.parse_sweeps(only)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        typer.echo(f"== bench {name}")
        png = sweeps.plot_sweep(sweeps.run_sweep(name, out))
        typer.echo(f"   wrote {png.with_suffix('.json')} and {png}")


@app.command("scale")
def scale(
    rows: str = typer.Option("1e6", "--rows", help="Ticks in the synthetic panel (1e6, 1e8, ...); ~24 bytes a row on disk, twice."),
    series: int = typer.Option(50, "--series", min=1, help="Series (instruments) the rows are spread over."),
    updates: int = typer.Option(50, "--updates", min=1, help="TBPTT updates of the train stage (64 lanes x 256 steps each)."),
    folder: Path = typer.Option(None, "--folder", help="Where the temporary dataset and store go (default: the system temp folder)."),
    json_path: Path = typer.Option(None, "--json", help="Write the rows as JSON here."),
) -> None:
    """Write a synthetic Parquet panel, then time a plain pyarrow scan, the conversion into a store and
    training on it, each in a fresh process with its peak anonymous memory (RssAnon)."""
    from longstm.bench.scale import bench_scale

    try:
        count = int(float(rows))
    except ValueError:
        raise ConfigError(f"--rows must be a number like 1e6 or 100000000; got {rows!r}") from None
    results = bench_scale(count, series, updates=updates, folder=folder, echo=typer.echo)
    table = Table(title=f"bench scale: {count:,} rows over {series} series")
    for name in ("stage", "rows", "seconds", "rows/s", "peak RssAnon MB", "before MB"):
        table.add_column(name, justify="left" if name == "stage" else "right")
    for row in results:
        table.add_row(row["stage"], f"{row['rows']:,}", f"{row['seconds']:.2f}", f"{row['rows_per_s']:,}",
                      f"{row['peak_rss_mb']:.0f}", f"{row['rss_before_mb']:.0f}")
    Console().print(table)
    if json_path is not None:
        _write_json(results, json_path)
