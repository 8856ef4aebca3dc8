"""`longstm bench scale`: reading, converting and training on a panel larger than RAM.

Stages, each in a fresh subprocess so one stage's memory cannot hide in another's:

1. `write` (not timed as a stage): a synthetic hive-partitioned Parquet dataset of `rows` quote
   ticks over `series` series (`instrument=S000/part-0000.parquet`, ...), written in row groups
   by a streaming writer, never whole in memory.
2. `pyarrow_scan`: a plain pyarrow scan of the same files (every batch read and its columns
   summed) — the reference for how fast reading can be.
3. `convert`: `longstm.data.store.convert` of those files into a store.
4. `train`: a fixed number of TBPTT updates of a small LSTM, 64 lanes spread over the whole
   store (each lane starts in a different part of the panel), rows read from its memory maps.

A row: `{stage, rows, series, seconds, cpu_seconds, rows_per_s, peak_rss_mb, rss_before_mb}`;
`cpu_seconds` is the process's CPU time over the stage (all its threads): beside the wall time,
a view that other processes on the machine do not inflate. `peak_rss_mb`
is the stage's peak *anonymous* resident memory (`RssAnon` in /proc/self/status, sampled every
5 ms by a thread): the process's own allocations, the TensorFlow import included for `train`,
not the page cache of memory-mapped or read files, which the kernel can drop at any time.
`rss_before_mb` is `RssAnon` just before the stage's work (after imports, a one-row-group
warm-up read, and for `train` the traced first update).

Row groups are 65,536 rows (1.5 MB): pyarrow decodes a row group's column chunks whole, so a
reader's memory is one row group and one batch (see `longstm.data.sources`); a file written in
larger row groups needs about twice their size more. The dataset is flushed to disk (`os.sync`)
before the stages, as a user's data at rest would be.

Disk: the Parquet files and the store each take about 24 bytes a row (timestamp, bid, ask):
about 5 GB at 10^8 rows. Everything is written under a temporary folder and removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from longstm.data.store import convert
from longstm.errors import ConfigError

STAGES = ("pyarrow_scan", "convert", "train")
ROWS_PER_FILE = 1 << 21
ROW_GROUP = 1 << 16
LANES, CHUNK, UNITS = 64, 256, 32
BYTES_PER_ROW = 24


def rss_anon_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class PeakSampler:
    """The largest `RssAnon` seen while the `with` block runs (a thread samples every 5 ms)."""

    def __enter__(self):
        self.peak = rss_anon_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_anon_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mb())


def write_dataset(folder: Path, rows: int, series: int, seed: int = 0) -> list[Path]:
    """The synthetic Parquet dataset: per series a random-walk mid with a spread, one tick every
    ~100 ms, files of `ROWS_PER_FILE` rows written row group by row group."""
    rng = np.random.default_rng(seed)
    per_series = rows // series
    schema = pa.schema([("timestamp", pa.timestamp("ns", tz="UTC")), ("bid", pa.float64()), ("ask", pa.float64())])
    files = []
    start = np.datetime64("2024-01-01T00:00:00", "ns").astype(np.int64)
    for s in range(series):
        clock, level, written, part = start, 1.0 + s / 10, 0, 0
        while written < per_series:
            path = folder / f"instrument=S{s:03d}" / f"part-{part:04d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            with pq.ParquetWriter(path, schema) as writer:
                in_file = min(ROWS_PER_FILE, per_series - written)
                for a in range(0, in_file, ROW_GROUP):
                    n = min(ROW_GROUP, in_file - a)
                    steps = rng.integers(1, 200_000_000, n)
                    stamps = clock + np.cumsum(steps)
                    mid = level + np.cumsum(rng.normal(0, 1e-5, n))
                    spread = 1e-5 * (1 + rng.integers(0, 3, n))
                    writer.write_table(pa.table([pa.array(stamps, pa.timestamp("ns", tz="UTC")), mid - spread / 2, mid + spread / 2], schema=schema))
                    clock, level = int(stamps[-1]), float(mid[-1])
                written += in_file
            files.append(path)
            part += 1
    return files


def _warm_up(folder: Path) -> None:
    """Read a few rows first, so that neither reader's timing holds pyarrow's one-time set-up
    (a page at a time: a whole row group would leave its buffers in the allocator's cache)."""
    first = next(iter(sorted(folder.rglob("*.parquet"))))
    next(pq.ParquetFile(first).iter_batches(batch_size=1024, row_groups=[0], use_threads=False))


def _scan(folder: Path) -> dict:
    rows, total = 0, 0.0
    _warm_up(folder)
    before = rss_anon_mb()
    with PeakSampler() as peak:
        started, cpu = time.perf_counter(), time.process_time()
        for path in sorted(folder.rglob("*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP):
                rows += batch.num_rows
                total += float(np.sum(batch.column(1).to_numpy()))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rows": rows, "seconds": seconds, "cpu": cpu, "peak": peak.peak, "before": before, "checksum": total}


def _convert(folder: Path, store: Path) -> dict:
    _warm_up(folder)
    before = rss_anon_mb()
    with PeakSampler() as peak:
        cpu = time.process_time()
        report = convert([folder], store)
        cpu = time.process_time() - cpu
    return {"rows": report["rows"], "seconds": report["seconds"], "cpu": cpu, "peak": peak.peak, "before": before}


def _train(store: Path, updates: int) -> dict:
    # TensorFlow is imported here, in the train stage's own process only: the scan and convert
    # stages' memory must not include its ~600 MB.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from longstm.data.lanes import LaneWindows
    from longstm.data.panel import CalendarSplit, Panel
    from longstm.models.protocol import Forecaster, KerasRNNStack
    from longstm.train.engine import TBPTTEngine, build_model_for

    keras.utils.set_random_seed(0)
    panel = Panel(store, ["bid", "ask"], CalendarSplit("2100-01-01", "2100-01-01"))
    rows = panel.rows("train", panel.fit_scaler(per_series=True))
    lanes = LaneWindows(rows, lanes=LANES, k1=CHUNK, k2=CHUNK, target_columns=[0], segments=rows.segments)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(UNITS)]), outputs=1)
    build_model_for(model, LANES, CHUNK, 2)
    engine = TBPTTEngine(model, keras.optimizers.Adam(1e-3), k1=CHUNK)
    state = engine.initial_state(LANES)
    engine.train_step(lanes.batch(0), state)  # trace outside the timed part
    count = min(updates, len(lanes))
    before = rss_anon_mb()
    with PeakSampler() as peak:
        started, cpu = time.perf_counter(), time.process_time()
        for step in range(count):
            _, _, state = engine.train_step(lanes.batch(step), state)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rows": count * LANES * CHUNK, "seconds": seconds, "cpu": cpu, "peak": peak.peak, "before": before}


def run_stage(stage: str, folder: str, store: str, updates: int) -> dict:
    """One stage in this process (the subprocess entry point)."""
    if stage == "pyarrow_scan":
        result = _scan(Path(folder))
    elif stage == "convert":
        result = _convert(Path(folder), Path(store))
    elif stage == "train":
        result = _train(Path(store), updates)
    else:
        raise ConfigError(f"stage must be one of {STAGES}; got {stage!r}")
    return {"rows": result["rows"], "seconds": round(result["seconds"], 3), "cpu_seconds": round(result["cpu"], 3), "peak_rss_mb": round(result["peak"], 1),
            "rss_before_mb": round(result["before"], 1)}


def bench_scale(rows: int, series: int, updates: int = 50, folder: Path | None = None, echo=print) -> list[dict]:
    """Write the dataset, run every stage in a fresh subprocess, clean up; the JSON rows."""
    if rows < series or series < 1:
        raise ConfigError(f"--rows must be >= --series >= 1; got rows={rows}, series={series}")
    free = shutil.disk_usage(folder or tempfile.gettempdir()).free
    if free < 2.2 * BYTES_PER_ROW * rows:
        raise ConfigError(f"bench scale needs about {2.2 * BYTES_PER_ROW * rows / 1e9:.1f} GB of free disk; {free / 1e9:.1f} GB is free")
    work = Path(tempfile.mkdtemp(prefix="longstm-scale-", dir=folder))
    results = []
    try:
        started = time.perf_counter()
        write_dataset(work / "parquet", rows, series)
        os.sync()  # the dataset at rest on disk, as a user's is: its write-back must not slow the conversion's writes
        echo(f"wrote {rows:,} rows over {series} series in {time.perf_counter() - started:.1f} s")
        for stage in STAGES:
            command = [sys.executable, "-m", "longstm.bench.scale", stage, str(work / "parquet"), str(work / "store"), str(updates)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ConfigError(f"bench scale stage {stage} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row = {"stage": stage, "rows": row["rows"], "series": series, "seconds": row["seconds"], "cpu_seconds": row["cpu_seconds"],
                   "rows_per_s": round(row["rows"] / max(row["seconds"], 1e-9)), "peak_rss_mb": row["peak_rss_mb"],
                   "rss_before_mb": row["rss_before_mb"]}
            echo(json.dumps(row))
            results.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    print(json.dumps(run_stage(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))
