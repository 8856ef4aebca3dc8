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

Each measurement runs in a fresh subprocess (`longstm.bench.memory_worker`, which imports
TensorFlow; this module does not). A row reports the process's peak RSS over
its whole life (`peak_rss_mb`, `ru_maxrss`: TensorFlow's ~600 MB import included), the RSS
just before the epoch (`rss_before_epoch_mb`, after the imports, model and optimizer are
built and the series opened or loaded), and `epoch_extra_mb` = peak during the epoch minus
that (the kernel's high-water mark is reset through `/proc/self/clear_refs` first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.progress import Progress

from longstm.errors import ConfigError

FEATURES, UNITS, LANES, CHUNK = 8, 64, 16, 256

# Measured here: full BPTT at 16 lanes needs about 2.7 kB per time step (10^6: +2.6 GB).
FULL_BPTT_MB_PER_STEP = 2.7e-3


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


def measure(method: str, path: Path, timeout: float | None = None) -> dict:
    """One measurement in a fresh Python process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "longstm.bench.memory_worker", method, str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"method": method, "status": f"failed (exit {done.returncode}): {tail[0]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(sizes: list[int], methods: list[str], cap_mb: float, folder: Path | None = None, progress: bool = True) -> list[dict]:
    """All rows: for each size, write the series once, then measure each method."""
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
    """`--sizes`: comma-separated series lengths (1e4 allowed), each at least one chunk per lane."""
    try:
        sizes = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated numbers like 1e4,1e5,1e6; got {text!r}") from None
    if not sizes or any(size < LANES * CHUNK + 1 for size in sizes):
        raise ConfigError(f"--sizes must each be at least {LANES * CHUNK + 1} (16 lanes of one 256-step chunk); got {text!r}")
    return sizes


METHODS = ("tbptt", "full_bptt")


def parse_methods(text: str) -> list[str]:
    """`--methods`: tbptt, full_bptt or both, comma-separated."""
    chosen = [method.strip() for method in text.split(",") if method.strip()]
    if not chosen or any(method not in METHODS for method in chosen):
        raise ConfigError(f"--methods must be tbptt, full_bptt or both; got {text!r}")
    return chosen
