"""`longstm bench memory`: peak RSS of one training epoch, TBPTT streaming vs full BPTT.

Set-up (issue 4): 8 features, LSTM(64) + Dense(1), 16 lanes, chunk 256 (k1 = k2 = 256),
next-step forecasting of column 0, Adam. For each series length T:

- `tbptt`: the series is an on-disk `.npy` (written chunk by chunk by the parent process);
  one epoch of `Trainer.fit` streams it through `LaneWindows` with positioned reads, so
  nothing of size O(T) is held: memory should not grow with T.
- `full_bptt`: `keras.layers.LSTM` over the whole sequence, the series reshaped into 16
  lanes of T/16 steps and loaded into RAM; one epoch is one update (a gradient through all
  T/16 steps). Its activations grow linearly with T; sizes whose estimated peak exceeds
  `--cap-mb` are skipped and the row says so.

Each measurement runs in a fresh subprocess. A row reports the process's peak RSS over
its whole life (`peak_rss_mb`, `ru_maxrss`: TensorFlow's ~600 MB import included), the RSS
just before the epoch (`rss_before_epoch_mb`, after the imports, model and optimizer are
built and the series opened or loaded), and `epoch_extra_mb` = peak during the epoch minus
that (the kernel's high-water mark is reset through `/proc/self/clear_refs` first).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import typer

FEATURES, UNITS, LANES, CHUNK = 8, 64, 16, 256
# Measured here: full BPTT at 16 lanes needs about 2.7 kB per time step (10^6: +2.6 GB).
FULL_BPTT_MB_PER_STEP = 2.7e-3


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def write_series(path: Path, rows: int, chunk_rows: int = 1 << 18) -> Path:
    """A reproducible (rows, 8) float32 random walk as `.npy`, written without holding it all."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, FEATURES))
    rng = np.random.default_rng(0)
    level = np.zeros(FEATURES)
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        block = level + np.cumsum(rng.normal(scale=0.01, size=(stop - start, FEATURES)), axis=0)
        level = block[-1]
        array[start:stop] = np.sin(block) + 0.1 * rng.normal(size=block.shape)
        array.flush()
    del array
    return path


def _worker(method: str, path: str) -> dict:
    """Runs in the fresh subprocess: one epoch, and its memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from longstm.data.lanes import LaneWindows, open_npy
    from longstm.models.protocol import Forecaster, KerasRNNStack
    from longstm.train.config import TrainConfig
    from longstm.train.trainer import Trainer

    keras.utils.set_random_seed(0)
    source = open_npy(path)
    rows = source.shape[0]
    if method == "tbptt":
        model = Forecaster(KerasRNNStack([keras.layers.LSTM(UNITS)]), outputs=1)
        stream = LaneWindows(source, lanes=LANES, k1=CHUNK, k2=CHUNK, target_columns=[0])
        trainer = Trainer(model, TrainConfig(lanes=LANES, k1=CHUNK, k2=CHUNK, epochs=1, clipnorm=0.0), progress=False)
        trainer._prepare(stream, len(stream))
        updates = len(stream)
        before = _status_mb("VmRSS")
        reset = _reset_peak()
        started = time.perf_counter()
        trainer.fit(stream)
    else:
        steps = (rows - 1) // LANES
        values = source[0 : steps * LANES + 1]
        x = values[:-1].reshape(LANES, steps, FEATURES)
        y = values[1:, :1].reshape(LANES, steps, 1)
        del values
        model = keras.Sequential([keras.Input((steps, FEATURES)), keras.layers.LSTM(UNITS, return_sequences=True), keras.layers.Dense(1)])
        optimizer = keras.optimizers.Adam()
        optimizer.build(model.trainable_variables)

        @tf.function
        def update(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss

        updates = 1
        before = _status_mb("VmRSS")
        reset = _reset_peak()
        started = time.perf_counter()
        float(update(tf.constant(x), tf.constant(y)))
    seconds = time.perf_counter() - started
    peak_during = _status_mb("VmHWM") if reset else float("nan")
    return {
        "method": method,
        "T": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "rss_before_epoch_mb": round(before, 1),
        "epoch_extra_mb": round(peak_during - before, 1),
        "updates": updates,
        "seconds": round(seconds, 2),
        "status": "ok",
    }


def measure(method: str, path: Path, timeout: float | None = None) -> dict:
    """One measurement in a fresh Python process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "longstm.bench.memory", method, str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"method": method, "status": f"failed (exit {done.returncode}): {tail[0]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(sizes: list[int], methods: list[str], cap_mb: float, folder: Path | None = None, progress: bool = True) -> list[dict]:
    """All rows: for each size, write the series once, then measure each method."""
    from rich.progress import Progress

    rows_out = []
    with tempfile.TemporaryDirectory(dir=folder) as scratch, Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("bench memory", total=len(sizes) * len(methods))
        for size in sizes:
            path = write_series(Path(scratch) / f"series_{size}.npy", size)
            for method in methods:
                bar.update(task, description=f"{method} T={size:.0e}")
                estimate = FULL_BPTT_MB_PER_STEP * size
                if method == "full_bptt" and estimate > cap_mb:
                    row = {"method": method, "T": size, "peak_rss_mb": None,
                           "status": f"skipped: estimated +{estimate:,.0f} MB exceeds the cap of {cap_mb:,.0f} MB"}
                else:
                    row = measure(method, path) | {"T": size}
                rows_out.append(row)
                bar.advance(task)
            path.unlink()
    return rows_out


def parse_sizes(text: str) -> list[int]:
    from longstm.errors import ConfigError

    try:
        sizes = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated numbers like 1e4,1e5,1e6; got {text!r}") from None
    if not sizes or any(size < LANES * CHUNK + 1 for size in sizes):
        raise ConfigError(f"--sizes must each be at least {LANES * CHUNK + 1} (16 lanes of one 256-step chunk); got {text!r}")
    return sizes


def command(
    sizes: str = typer.Option("1e4,1e5,1e6,1e7", "--sizes", help="Series lengths T, comma-separated."),
    json_path: Path = typer.Option(None, "--json", help="Also write the rows as a JSON list here."),
    methods: str = typer.Option("tbptt,full_bptt", "--methods", help="tbptt, full_bptt or both."),
    cap_mb: float = typer.Option(6000.0, "--cap-mb", help="Skip full BPTT where its estimated extra memory exceeds this."),
) -> None:
    """Peak RSS of one training epoch at each T: TBPTT streaming from disk vs full BPTT."""
    from rich.console import Console
    from rich.table import Table

    from longstm.errors import ConfigError

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    if not chosen or any(m not in ("tbptt", "full_bptt") for m in chosen):
        raise ConfigError(f"--methods must be tbptt, full_bptt or both; got {methods!r}")
    rows = run(parse_sizes(sizes), chosen, cap_mb)
    table = Table(title="one training epoch: 8 features, LSTM(64), 16 lanes, chunk 256")
    for name in ("method", "T", "peak RSS MB", "before epoch MB", "epoch extra MB", "updates", "s", "status"):
        table.add_column(name)
    for row in rows:
        table.add_row(*[str(row.get(key, "")) for key in ("method", "T", "peak_rss_mb", "rss_before_epoch_mb", "epoch_extra_mb", "updates", "seconds", "status")])
    Console().print(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], sys.argv[2])))
