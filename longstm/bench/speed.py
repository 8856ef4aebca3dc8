"""`longstm bench speed`: train-step time of longstm's models vs `keras.layers.LSTM`.

One train step is forward + backward + optimizer update on one chunk of `(lanes, T,
features)`, in a `tf.function`, with a `Dense(1)` head and an MSE loss. Every model and chunk
length is measured in the same process: two warm-up steps (tracing, first allocation) are
excluded, then the models' timed steps are interleaved for `repeats` rounds and the median
per model is taken. Absolute times depend on the machine and its load; compare the ratios of
one run.

Models are built by `MODEL_BUILDERS[name](units)`: a function returning a Keras layer whose
call on `(lanes, T, features)` returns per-step outputs, or `(outputs, state)` for longstm's
recurrent models. This module imports TensorFlow and the models; `longstm bench speed`
(`longstm.cli.bench`) imports it when the command runs.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from longstm.bench.calendar_ticks import (
    CALENDAR_DESCRIPTIONS, CALENDAR_LEVELS, missing_ticks, sequential_depth, tick_chunk_inputs,
)
from longstm.errors import ConfigError
from longstm.models.attention import AttentionLSTM
from longstm.models.calendar import CalendarLSTM
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.minrnn import MinGRU, MinLSTM
from longstm.models.stacked import StackedLSTM

BASELINE = "keras_lstm"


def _keras_lstm(units: int):
    return keras.layers.LSTM(units, return_sequences=True)


def _stacked(units: int):
    return StackedLSTM(units, layers=2, residual=True, layer_norm=True)


def _hierarchical(units: int):
    # A small level 0 over sub-chunks of 64 steps (run as parallel lanes), the full-width level
    # over the summaries: about 64 + T/64 sequential steps instead of T.
    return HierarchicalLSTM([(16, 64), (units, 1)], mode="parallel")


def _attention(units: int):
    return AttentionLSTM(units, heads=4, memory=64, window=65)


MODEL_BUILDERS: dict[str, Callable[[int], object]] = {
    BASELINE: _keras_lstm,
    "stacked": _stacked,
    "hierarchical": _hierarchical,
    "attention": _attention,
    "minlstm": MinLSTM,
    "mingru": MinGRU,
    # Calendar hierarchies (issue 16): their chunks carry boundary flags from real tick times.
    **{name: (lambda units, levels=levels: CalendarLSTM(levels(units), mode="parallel")) for name, levels in CALENDAR_LEVELS.items()},
}

MODEL_DESCRIPTIONS: dict[str, str] = {
    BASELINE: "keras.layers.LSTM(units)",
    "stacked": "StackedLSTM(units, layers=2, residual, layer_norm)",
    "hierarchical": "HierarchicalLSTM([(16, 64), (units, 1)], mode='parallel')",
    "attention": "AttentionLSTM(units, heads=4, memory=64, window=65)",
    "minlstm": "MinLSTM(units), parallel blocked scan",
    "mingru": "MinGRU(units), parallel blocked scan",
    **CALENDAR_DESCRIPTIONS,
}


def parse_names(text: str) -> list[str]:
    """`--models`: comma-separated names of `MODEL_BUILDERS`."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODEL_BUILDERS]
    if not names or unknown:
        raise ConfigError(f"--models must name some of {', '.join(MODEL_BUILDERS)}; got {text!r}.")
    return names


def parse_chunks(text: str) -> list[int]:
    """`--chunks`: comma-separated positive chunk lengths T."""
    try:
        chunks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        chunks = []
    if not chunks or any(chunk < 1 for chunk in chunks):
        raise ConfigError(f"--chunks must be a comma-separated list of positive integers; got {text!r}.")
    return chunks


def prepare_train_step(model, lanes: int, steps: int, features: int, seed: int = 0, chunk: np.ndarray | None = None) -> Callable[[], float]:
    """A function that runs one train step (forward, backward, Adam update) and returns its seconds.

    The step is traced and run twice here (warm-up: tracing, first allocations). `chunk`: the
    `(lanes, steps, features)` inputs (default random normal).
    """
    rng = np.random.default_rng(seed)
    inputs = tf.constant(rng.normal(size=(lanes, steps, features)).astype("float32") if chunk is None else chunk)
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
    timed = [name for name in models if any("every" in level for level in CALENDAR_LEVELS.get(name, lambda _: [])(units))]
    if timed and missing_ticks() is not None:  # calendar models whose groups are cut by real tick times
        print(f"bench speed: skipping {', '.join(timed)}: {missing_ticks()}", file=sys.stderr)
        models = [name for name in models if name not in timed]
    results = []
    for steps in chunks:
        # A calendar model's chunk: the same shape, its last columns boundary flags of real ticks.
        inputs = {name: tick_chunk_inputs(CALENDAR_LEVELS[name](units), lanes, steps, features) for name in models if name in CALENDAR_LEVELS}
        steppers = {
            name: prepare_train_step(MODEL_BUILDERS[name](units), lanes, steps, features, **({"chunk": inputs[name]} if name in inputs else {}))
            for name in models
        }
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
                # Steps run one after the other: T for a flat LSTM; for a calendar model its
                # longest level-0 group plus the groups of each level below the top.
                **({"sequential_depth": steps} if name == BASELINE else {}),
                **({} if name not in inputs else _depth(inputs[name], len(CALENDAR_LEVELS[name](units)) - 1)),
            }
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def _depth(chunk: np.ndarray, n_boundaries: int) -> dict:
    depth = sequential_depth(chunk[..., -n_boundaries:])
    return {"sequential_depth": depth["depth"], "longest_group": depth["longest_group"], "groups_per_level": depth["groups"]}
