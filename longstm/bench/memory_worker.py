"""The child process of `longstm bench memory`: one training epoch, and its memory.

    python -m longstm.bench.memory_worker tbptt|full_bptt SERIES.npy   # prints one JSON row

Run in a fresh process per measurement (by `longstm.bench.memory.measure`), so its peak RSS
is this epoch's alone (`measure` also quiets TensorFlow's C++ log through the environment);
see `longstm.bench.memory` for the set-up and what the row reports.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import keras
import tensorflow as tf

from longstm.bench.memory import CHUNK, FEATURES, LANES, UNITS
from longstm.data.lanes import LaneWindows, open_npy
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train.config import TrainConfig
from longstm.train.trainer import Trainer


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


def measure_epoch(method: str, path: str) -> dict:
    """One epoch by `method` ("tbptt" or "full_bptt") on the `.npy` series at `path`, and its memory."""
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


if __name__ == "__main__":
    print(json.dumps(measure_epoch(sys.argv[1], sys.argv[2])))
