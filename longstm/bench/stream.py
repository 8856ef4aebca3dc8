"""Per-tick latency of streaming inference: longstm's engines against per-tick Keras calls.

    results = bench_stream(units=64, ticks=2000)      # list of dicts, one per method
    # method, p50_us, p99_us, mean_us, ticks, speedup_vs_predict_p50, ...

Methods, all on the same model (`Forecaster(KerasRNNStack([LSTM(units)]))`, `features` inputs,
`instruments` series per tick, default one), timed one tick at a time with `time.perf_counter`, after a warm-up:

- `numpy`: `StreamingPredictor(engine="numpy").update(x_t)`.
- `tf_function`: `StreamingPredictor(engine="tf").update(x_t)` (one traced `tf.function`).
- `eager`: `model(x_t[:, None], state=state)`, the protocol model called eagerly per tick.
- `predict`: `step_model.predict([x_t, *state])` per tick, the state carried by hand: what a
  Keras user gets from `Model.predict` on a one-step model.

Every method carries its state, and the first ticks' predictions are checked to agree
(to 1e-5) before anything is timed, so the fast paths are measured doing the same work.

Many instruments (`bench_instruments`, `--many 4,64`): the two engines again, one row per
engine and setting, where a tick is one `update` of an `(instruments, features)` array (a new
row for every instrument, each in its own state lane); `us_per_instrument` is p50 / instruments.
Their methods are named with the setting (`numpy x64`, `tf_function x64`; `engine` says which),
so each has its own bar in `bench all`'s plot. `numpy_routed` / `tf_routed` time `update_instrument(id, row)`, one row of one instrument (drawn
at random) as a feed of mixed instruments delivers them; the other lanes keep their state.

A calendar hierarchy (`bench_calendar`): `calendar 3-level` times `update(row, timestamps=t)`
of a `CalendarLSTM` ticks -> 1 s -> 1 min on the compiled engine, its boundary flags computed
by the feature pipeline from each tick's timestamp (irregular ticks, ~3 a second), as a
predictor from a calendar run does; its streamed outputs are checked against the batch model.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import typer

from longstm.errors import ConfigError


def percentile_us(seconds: Sequence[float], q: float) -> float:
    """The q-th percentile of durations in seconds, in microseconds (NaN when there are none)."""
    return float(np.percentile(np.asarray(seconds) * 1e6, q)) if len(seconds) else math.nan


def _time_ticks(tick, inputs: np.ndarray, warmup: int) -> list[float]:
    for x_t in inputs[:warmup]:
        tick(x_t)
    durations = []
    for x_t in inputs[warmup:]:
        start = time.perf_counter()
        tick(x_t)
        durations.append(time.perf_counter() - start)
    return durations


def _forecaster(units: int, layers: int, features: int, seed: int):
    import keras

    from longstm.models.protocol import Forecaster, KerasRNNStack

    keras.utils.set_random_seed(seed)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(units) for _ in range(layers)]), outputs=1)
    model(np.zeros((1, 1, features), np.float32))
    return model


def _record(method: str, durations: list[float], **settings) -> dict[str, Any]:
    return {
        "method": method,
        "p50_us": percentile_us(durations, 50),
        "p99_us": percentile_us(durations, 99),
        "mean_us": float(np.mean(durations) * 1e6),
        "ticks": len(durations),
        **settings,
    }


def _check_integers(checks) -> None:
    for name, value, minimum in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"bench stream: --{name.replace('_', '-')} must be an integer >= {minimum}; got {value!r}")


def parse_many(text: str) -> list[int]:
    """`"4,64"` -> `[4, 64]` (empty: none); ConfigError naming `--many` otherwise."""
    try:
        settings = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        settings = [0]
    if any(n < 1 for n in settings):
        raise ConfigError(f"bench stream: --many must be comma-separated integers >= 1, e.g. 4,64; got {text!r}")
    return settings


def bench_instruments(
    settings: Sequence[int] = (4, 64),
    units: int = 64,
    ticks: int = 2000,
    features: int = 8,
    layers: int = 1,
    warmup: int = 20,
    seed: int = 0,
    on_method=None,
) -> list[dict[str, Any]]:
    """p50/p99 per tick of the NumPy and compiled engines with several instruments; see the module docstring.

    Args:
        settings: instrument counts, four rows each (numpy, tf_function, numpy_routed, tf_routed).
        units, ticks, features, layers, warmup, seed: as in `bench_stream`.
        on_method: called with `"<method> x<instruments>"` before each timing.
    """
    _check_integers([("ticks", ticks, 1), ("units", units, 1), ("features", features, 1), ("layers", layers, 1), ("warmup", warmup, 0)])
    _check_integers([("many", n, 1) for n in settings])
    from longstm.serve import StreamingPredictor

    model = _forecaster(units, layers, features, seed)
    rng = np.random.default_rng(seed)
    results = []
    for instruments in settings:
        inputs = rng.normal(size=(warmup + ticks, instruments, features)).astype(np.float32)
        engines = {"numpy": "numpy", "tf_function": "tf"}
        check = [StreamingPredictor(model, n_instruments=instruments, engine=e).update_many(inputs[:5]) for e in engines.values()]
        if np.abs(check[0] - check[1]).max() > 1e-5:
            raise RuntimeError(f"bench stream: the engines disagree by {np.abs(check[0] - check[1]).max()} at {instruments} instruments")
        for method, engine in engines.items():
            if on_method is not None:
                on_method(f"{method} x{instruments}")
            predictor = StreamingPredictor(model, n_instruments=instruments, engine=engine)
            record = _record(f"{method} x{instruments}", _time_ticks(predictor.update, inputs, warmup), units=units,
                             layers=layers, features=features, instruments=instruments, engine=engine)
            record["us_per_instrument"] = record["p50_us"] / instruments
            results.append(record)
        for method, engine in (("numpy_routed", "numpy"), ("tf_routed", "tf")):
            if on_method is not None:
                on_method(f"{method} x{instruments}")
            predictor = StreamingPredictor(model, n_instruments=instruments, engine=engine)
            ids = iter(rng.integers(0, instruments, len(inputs)).tolist())
            durations = _time_ticks(lambda x_t: predictor.update_instrument(next(ids), x_t[0]), inputs, warmup)
            results.append(_record(f"{method} x{instruments}", durations, units=units, layers=layers, features=features,
                                   instruments=instruments, engine=engine))
    return results


def bench_calendar(units: int = 64, ticks: int = 2000, features: int = 8, warmup: int = 20, seed: int = 0,
                   on_method=None) -> list[dict[str, Any]]:
    """p50/p99 per tick of a 3-level calendar model; see the module docstring.

    Args:
        units: the widths are `(units // 2, units, units)`, level 0 first.
        ticks, warmup, seed: as in `bench_stream`.
        features: inputs per tick before the two boundary flags.
        on_method: called with the method's name before it is timed.

    Raises:
        RuntimeError: the streamed outputs differ from the batch model's by more than 1e-5.
    """
    _check_integers([("ticks", ticks, 1), ("units", units, 1), ("features", features, 1), ("warmup", warmup, 0)])
    import keras

    from longstm.bench.calendar_ticks import CALENDAR_LEVELS
    from longstm.data.calendar_kinds import CalendarBoundaries, boundary_levels
    from longstm.data.features import FeaturePipeline
    from longstm.models.calendar import CalendarLSTM
    from longstm.models.protocol import Forecaster
    from longstm.serve import StreamingPredictor

    levels = CALENDAR_LEVELS["calendar_1s_1min"](units)
    columns = [f"x{i}" for i in range(features)]
    pipeline = FeaturePipeline([{"kind": "raw"}, {"kind": CalendarBoundaries.kind, "levels": boundary_levels(levels, "levels")}], columns)
    keras.utils.set_random_seed(seed)
    model = Forecaster(CalendarLSTM(levels), outputs=1)
    model(np.zeros((1, 1, pipeline.n_outputs), np.float32))
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(warmup + ticks, features))
    stamps = np.datetime64("2024-01-02T09:00", "ns").astype(np.int64) + np.cumsum(rng.exponential(0.3e9, warmup + ticks)).astype(np.int64)
    check = min(200, len(values))
    batch, _ = model(pipeline.compute(values[:check], stamps[:check])[None].astype(np.float32))
    streamed = StreamingPredictor(model, feature_pipeline=pipeline, engine="tf").update_many(values[:check], stamps[:check, None])
    if np.abs(streamed[:, 0] - np.asarray(batch)[0, :, 0]).max() > 1e-5:
        raise RuntimeError(f"bench stream: the calendar model streams {np.abs(streamed[:, 0] - np.asarray(batch)[0, :, 0]).max()} away from its batch outputs")
    if on_method is not None:
        on_method("calendar 3-level")
    predictor = StreamingPredictor(model, feature_pipeline=pipeline, engine="tf")
    durations = _time_ticks(lambda t: predictor.update(values[t], timestamps=stamps[t : t + 1]), np.arange(len(values)), warmup)
    return [_record("calendar 3-level", durations, units=units, layers=3, features=features, instruments=1, engine="tf")]


def bench_stream(
    units: int = 64,
    ticks: int = 2000,
    features: int = 8,
    layers: int = 1,
    instruments: int = 1,
    slow_ticks: int = 200,
    warmup: int = 20,
    seed: int = 0,
    on_method=None,
) -> list[dict[str, Any]]:
    """Measure p50/p99 per-tick latency of each method; see the module docstring.

    Args:
        units: LSTM width.
        ticks: timed ticks of the fast methods (numpy, tf_function).
        features: inputs per tick.
        layers: LSTM layers.
        instruments: series updated together per tick (the batch).
        slow_ticks: timed ticks of the slow baselines (eager, predict), at most `ticks`.
        warmup: untimed ticks before each method's timing.
        seed: weights and inputs.
        on_method: called with each method's name before it is timed (progress display).
    """
    checks = (
        ("units", units, 1), ("ticks", ticks, 1), ("features", features, 1), ("layers", layers, 1),
        ("instruments", instruments, 1), ("slow_ticks", slow_ticks, 1), ("warmup", warmup, 0),
    )
    _check_integers(checks)
    import tensorflow as tf

    from longstm.serve import StreamingPredictor
    from longstm.serve.step_model import StreamingStep

    model = _forecaster(units, layers, features, seed)
    rng = np.random.default_rng(seed)
    slow_ticks = min(slow_ticks, ticks)
    inputs = rng.normal(size=(warmup + ticks, instruments, features)).astype(np.float32)

    step_model = StreamingStep(model, n_features=features)
    eager_state = [model.initial_state(instruments)]
    predict_state = [step_model.zero_state(instruments)]

    def eager_tick(x_t):
        y, eager_state[0] = model(tf.constant(x_t[:, None]), state=eager_state[0])
        return np.asarray(y)[:, 0]

    def predict_tick(x_t):
        outputs = step_model.predict([x_t, *predict_state[0]], verbose=0, batch_size=instruments)
        predict_state[0] = outputs[1:]
        return outputs[0]

    methods = {
        "numpy": StreamingPredictor(model, n_instruments=instruments, engine="numpy").update,
        "tf_function": StreamingPredictor(model, n_instruments=instruments, engine="tf").update,
        "eager": eager_tick,
        "predict": predict_tick,
    }
    check = inputs[:5]
    reference = np.stack([methods["eager"](x_t) for x_t in check])
    eager_state[0] = model.initial_state(instruments)
    for name in ("numpy", "tf_function", "predict"):
        got = np.stack([np.reshape(methods[name](x_t), (instruments, -1)) for x_t in check])
        if np.abs(got - reference).max() > 1e-5:
            raise RuntimeError(f"bench stream: method {name} disagrees with the eager model by {np.abs(got - reference).max()}")
    # Fresh state for timing (the checks advanced it).
    methods["numpy"] = StreamingPredictor(model, n_instruments=instruments, engine="numpy").update
    methods["tf_function"] = StreamingPredictor(model, n_instruments=instruments, engine="tf").update
    predict_state[0] = step_model.zero_state(instruments)

    results = []
    for name, tick in methods.items():
        if on_method is not None:
            on_method(name)
        count = ticks if name in ("numpy", "tf_function") else slow_ticks
        durations = _time_ticks(tick, inputs[: warmup + count], warmup)
        results.append(_record(name, durations, units=units, layers=layers, features=features, instruments=instruments))
    predict_p50 = next(r["p50_us"] for r in results if r["method"] == "predict")
    for record in results:
        record["speedup_vs_predict_p50"] = predict_p50 / record["p50_us"]
    return results


def stream_command(
    units: int = typer.Option(64, "--units", help="LSTM units."),
    ticks: int = typer.Option(2000, "--ticks", help="Timed ticks of the streaming engines."),
    slow_ticks: int = typer.Option(200, "--slow-ticks", help="Timed ticks of the per-tick eager/predict baselines."),
    features: int = typer.Option(8, "--features", help="Inputs per tick."),
    layers: int = typer.Option(1, "--layers", help="LSTM layers."),
    instruments: int = typer.Option(1, "--instruments", help="Instruments updated together per tick (batch)."),
    many: str = typer.Option("4,64", "--many", help="Instrument counts timed again on the two engines (empty: none)."),
    json_path: Path = typer.Option(None, "--json", help="Write the results as a JSON list here."),
) -> None:
    """Per-tick latency (p50/p99) of streaming inference vs per-tick model.predict and model(x)."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    settings = parse_many(many)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("timing ticks", total=5 + 4 * len(settings))
        advance = lambda name: progress.update(task, advance=1, description=f"timing {name}")  # noqa: E731
        results = bench_stream(
            units=units, ticks=ticks, features=features, layers=layers, instruments=instruments, slow_ticks=slow_ticks,
            on_method=advance,
        )
        results += bench_instruments(settings, units=units, ticks=ticks, features=features, layers=layers, on_method=advance)
        results += bench_calendar(units=units, ticks=ticks, features=features, on_method=advance)
    table = Table(title=f"per-tick latency, LSTM({units}) x {layers}, {features} features")
    for column in ("method", "instruments", "ticks", "p50 µs", "p99 µs", "mean µs", "p50 speed-up vs predict"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in results:
        speedup = row.get("speedup_vs_predict_p50")
        table.add_row(
            row["method"], str(row["instruments"]), str(row["ticks"]), f"{row['p50_us']:.1f}", f"{row['p99_us']:.1f}",
            f"{row['mean_us']:.1f}", "" if speedup is None else f"{speedup:.1f}x",
        )
    console.print(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"wrote {json_path}")
