"""`longstm bench all`: every sweep in its own process, saved as JSON and drawn as PNG.

Each sweep is the same command a user would run (`longstm bench speed|memory|stream --json
...`), started as a fresh subprocess so one sweep's allocations and threads do not colour the
next. The plots are drawn from the JSON files, so `plot_sweep` also redraws an old run.
The command itself is in `longstm.cli.bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from matplotlib.figure import Figure

from longstm.atomic import save_figure
from longstm.errors import ConfigError

# The arguments of each sweep for `make bench`: the sizes the issues and docs/RESULTS.md use.
SWEEPS: dict[str, list[str]] = {
    "speed": ["--models", "keras_lstm,stacked,hierarchical,attention,minlstm,mingru", "--chunks", "256,1024,4096"],
    "speed_long": ["--models", "keras_lstm,minlstm,mingru", "--chunks", "512,4096,32768", "--repeats", "3"],
    "memory": ["--sizes", "1e4,1e5,1e6,1e7"],
    "stream": ["--units", "64"],
}


def run_sweep(name: str, out_dir: Path) -> Path:
    """Run one sweep as `longstm bench ...` in a subprocess; returns its JSON path."""
    if name not in SWEEPS:
        raise ConfigError(f"unknown sweep {name!r}; expected some of {sorted(SWEEPS)}")
    command = name.split("_")[0]
    json_path = out_dir / f"{name}.json"
    subprocess.run(
        [sys.executable, "-m", "longstm", "bench", command, *SWEEPS[name], "--json", str(json_path)], check=True
    )
    return json_path


def plot_sweep(json_path: Path) -> Path:
    """Draw a sweep's JSON rows: time or memory against T per model/method, or latency per method."""
    rows = json.loads(Path(json_path).read_text())
    figure = Figure(figsize=(7.5, 4.5))
    axis = figure.subplots()
    if rows and "ms_per_step" in rows[0]:
        _lines(axis, rows, "model", "ms_per_step", "train-step time (ms)")
        axis.set_title("train step (forward + backward + update) vs chunk length")
    elif rows and "peak_rss_mb" in rows[0]:
        _lines(axis, [row for row in rows if row.get("peak_rss_mb")], "method", "peak_rss_mb", "peak RSS (MB)")
        axis.set_title("peak memory of one training epoch vs series length")
    elif rows and "p50_us" in rows[0]:
        names = [row["method"] for row in rows]
        axis.barh(names, [row["p99_us"] for row in rows], color="tab:orange", label="p99")
        axis.barh(names, [row["p50_us"] for row in rows], color="tab:blue", label="p50")
        axis.set_xscale("log")
        axis.set_xlabel("per-tick latency (µs)")
        axis.set_title("streaming inference latency per tick")
        axis.legend()
    else:
        raise ConfigError(f"{json_path}: not a longstm bench JSON (no ms_per_step, peak_rss_mb or p50_us rows)")
    axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return save_figure(figure, Path(json_path).with_suffix(".png"), dpi=110)


def _lines(axis, rows, key: str, value: str, label: str) -> None:
    for name in dict.fromkeys(row[key] for row in rows):
        points = sorted((row["T"], row[value]) for row in rows if row[key] == name)
        axis.plot(*zip(*points), marker="o", label=name)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("T (steps)")
    axis.set_ylabel(label)
    axis.legend()


def parse_sweeps(text: str | None) -> list[str]:
    """`--only`: comma-separated names of `SWEEPS`; None: all of them, in order."""
    if text is None:
        return list(SWEEPS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SWEEPS]
    if unknown:
        raise ConfigError(f"--only: unknown sweeps {unknown}; expected some of {sorted(SWEEPS)}")
    return names
