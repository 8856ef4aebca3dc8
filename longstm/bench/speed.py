"""`longstm bench speed`: train-step time of longstm's models vs `keras.layers.LSTM`.

One train step is forward + backward + optimizer update on one chunk of `(lanes, T,
features)`, in a `tf.function`, with a `Dense(1)` head and an MSE loss. Every model and chunk
length is measured in the same process: two warm-up steps (tracing, first allocation) are
excluded, then the models' timed steps are interleaved for `repeats` rounds and the median
per model is taken. Absolute times depend on the machine and its load; compare the ratios of
one run.

Models are built by `MODEL_BUILDERS[name](units)`: a function returning a Keras layer whose
call on `(lanes, T, features)` returns per-step outputs, or `(outputs, state)` for longstm's
recurrent models. Builders import TensorFlow inside, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable

import typer

from longstm.errors import ConfigError

BASELINE = "keras_lstm"


def _keras_lstm(units: int):
    import keras

    return keras.layers.LSTM(units, return_sequences=True)


def _stacked(units: int):
    from longstm.models.stacked import StackedLSTM

    return StackedLSTM(units, layers=2, residual=True, layer_norm=True)


def _hierarchical(units: int):
    from longstm.models.hierarchical import HierarchicalLSTM

    # A small level 0 over sub-chunks of 64 steps (run as parallel lanes), the full-width level
    # over the summaries: about 64 + T/64 sequential steps instead of T.
    return HierarchicalLSTM([(16, 64), (units, 1)], mode="parallel")


def _attention(units: int):
    from longstm.models.attention import AttentionLSTM

    return AttentionLSTM(units, heads=4, memory=64, window=65)


def _minlstm(units: int):
    from longstm.models.minrnn import MinLSTM

    return MinLSTM(units)


def _mingru(units: int):
    from longstm.models.minrnn import MinGRU

    return MinGRU(units)


MODEL_BUILDERS: dict[str, Callable[[int], object]] = {
    BASELINE: _keras_lstm,
    "stacked": _stacked,
    "hierarchical": _hierarchical,
    "attention": _attention,
    "minlstm": _minlstm,
    "mingru": _mingru,
}

MODEL_DESCRIPTIONS: dict[str, str] = {
    BASELINE: "keras.layers.LSTM(units)",
    "stacked": "StackedLSTM(units, layers=2, residual, layer_norm)",
    "hierarchical": "HierarchicalLSTM([(16, 64), (units, 1)], mode='parallel')",
    "attention": "AttentionLSTM(units, heads=4, memory=64, window=65)",
    "minlstm": "MinLSTM(units), parallel blocked scan",
    "mingru": "MinGRU(units), parallel blocked scan",
}


def parse_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODEL_BUILDERS]
    if not names or unknown:
        raise ConfigError(f"--models must name some of {', '.join(MODEL_BUILDERS)}; got {text!r}.")
    return names


def parse_chunks(text: str) -> list[int]:
    try:
        chunks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        chunks = []
    if not chunks or any(chunk < 1 for chunk in chunks):
        raise ConfigError(f"--chunks must be a comma-separated list of positive integers; got {text!r}.")
    return chunks


def prepare_train_step(model, lanes: int, steps: int, features: int, seed: int = 0) -> Callable[[], float]:
    """A function that runs one train step (forward, backward, Adam update) and returns its seconds.

    The step is traced and run twice here (warm-up: tracing, first allocations).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    inputs = tf.constant(rng.normal(size=(lanes, steps, features)).astype("float32"))
    targets = tf.constant(rng.normal(size=(lanes, steps, 1)).astype("float32"))
    head = keras.layers.Dense(1)
    optimizer = keras.optimizers.Adam(1e-3)

    def forward(x):
        outputs = model(x)
        return head(outputs[0] if isinstance(outputs, tuple) else outputs)

    forward(inputs)
    variables = model.trainable_variables + head.trainable_variables
    optimizer.build(variables)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(forward(x) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def timed_step() -> float:
        start = time.perf_counter()
        train_step(inputs, targets).numpy()  # .numpy() waits for the step to finish
        return time.perf_counter() - start

    for _ in range(2):
        timed_step()
    return timed_step


def run_speed(
    models: list[str],
    chunks: list[int],
    units: int = 64,
    lanes: int = 16,
    features: int = 8,
    repeats: int = 5,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Measure every model at every chunk length; the baseline is always measured (first).

    At each chunk length the models' timed steps are interleaved (round robin, `repeats`
    rounds), so a change in machine load hits all of them alike and the ratios stay fair.
    """
    models = [BASELINE] + [name for name in models if name != BASELINE]
    for name, value in (("units", units), ("lanes", lanes), ("features", features), ("repeats", repeats)):
        if value < 1:
            raise ConfigError(f"--{name} must be a positive integer; got {value}.")
    results = []
    for steps in chunks:
        steppers = {name: prepare_train_step(MODEL_BUILDERS[name](units), lanes, steps, features) for name in models}
        seconds = {name: [] for name in models}
        for _ in range(repeats):
            for name in models:
                seconds[name].append(steppers[name]())
        baseline_ms = 1000.0 * statistics.median(seconds[BASELINE])
        for name in models:
            ms = 1000.0 * statistics.median(seconds[name])
            result = {
                "model": name,
                "description": MODEL_DESCRIPTIONS.get(name, name),
                "T": steps,
                "lanes": lanes,
                "units": units,
                "features": features,
                "ms_per_step": round(ms, 3),
                "steps_per_s": round(1000.0 / ms, 3),
                "ratio_vs_keras_lstm": round(ms / baseline_ms, 4),
                "speedup_vs_keras_lstm": round(baseline_ms / ms, 3),
                "samples_ms": [round(1000.0 * s, 3) for s in seconds[name]],
            }
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def speed_command(
    models: str = typer.Option("keras_lstm,stacked,hierarchical,attention", help="Comma-separated model names."),
    chunks: str = typer.Option("256,1024,4096", help="Comma-separated chunk lengths T."),
    units: int = typer.Option(64, help="Units of every model (the baseline LSTM included)."),
    lanes: int = typer.Option(16, help="Lanes (batch size)."),
    features: int = typer.Option(8, help="Input features."),
    repeats: int = typer.Option(5, help="Timed steps per model and chunk length (after 2 warm-up steps)."),
    json_path: Path = typer.Option(None, "--json", help="Write the results as a JSON list here."),
) -> None:
    """Train-step time of longstm models vs keras.layers.LSTM, as ratios from one process."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    names, lengths = parse_names(models), parse_chunks(chunks)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per model is intended, not "retracing"
    console = Console()
    total = len(lengths) * len(set(names) | {BASELINE})
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("timing train steps", total=total)
        results = run_speed(
            names, lengths, units, lanes, features, repeats, on_result=lambda _: progress.advance(task)
        )
    table = Table(title=f"train step, {lanes} lanes, {units} units, {features} features (median of {repeats})")
    for column in ("model", "T", "ms/step", "steps/s", "time vs keras_lstm", "speed-up"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in results:
        table.add_row(
            row["model"], str(row["T"]), f"{row['ms_per_step']:.1f}", f"{row['steps_per_s']:.2f}",
            f"{row['ratio_vs_keras_lstm']:.3f}", f"{row['speedup_vs_keras_lstm']:.2f}x",
        )
    console.print(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"wrote {json_path}")
