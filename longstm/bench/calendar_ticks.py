"""Calendar models in the benchmarks: their levels, chunks of real tick timestamps, and depth.

`longstm bench speed` times `CalendarLSTM`s on chunks whose boundary flags come from real
quote timestamps (Oanda EUR/USD of `../shared/data/ticks`, or `$LONGSTM_SHARED_DATA/ticks`),
so that groups are as ragged as they are in the data; `longstm bench stream` times one tick of
a 3-level calendar model with its flags computed by the feature pipeline per tick.

    levels = CALENDAR_LEVELS["calendar_1s_1min"](64)
    inputs = tick_chunk_inputs(levels, lanes=16, steps=4096, features=8)   # flags last
    sequential_depth(inputs[..., -1:])     # {"longest_group": ..., "groups": [...], "depth": ...}

The sequential depth of a parallel calendar model on a chunk is about its longest level-0 group
(the packed level-0 scan) plus the number of groups of each level below the top (each closed
group is one step of the level above): T for a flat LSTM.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from longstm.data.calendar_kinds import CalendarBoundaries, boundary_levels
from longstm.data.features import FeaturePipeline
from longstm.data.sources import discover, read_batches
from longstm.errors import DataValidationError

SHARED_DATA = Path(os.environ.get("LONGSTM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
TICK_SERIES = SHARED_DATA / "ticks" / "oanda_eurusd"

# name -> levels for `units`: (a) ticks -> 1 s -> 1 min, the model; (b) groups near
# sqrt(4096) = 64 ticks, by time (10 s) and by count (64 events).
CALENDAR_LEVELS: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "calendar_1s_1min": lambda units: [{"units": max(units // 2, 8), "every": "1s"}, {"units": units, "every": "1min"}, {"units": units}],
    "calendar_10s": lambda units: [{"units": max(units // 2, 8), "every": "10s"}, {"units": units}],
    "calendar_events64": lambda units: [{"units": max(units // 2, 8), "every_events": 64}, {"units": units}],
}
CALENDAR_DESCRIPTIONS = {
    "calendar_1s_1min": "CalendarLSTM ticks -> 1 s -> 1 min (units/2, units, units), parallel, real tick times",
    "calendar_10s": "CalendarLSTM ticks -> 10 s (units/2, units), parallel, real tick times",
    "calendar_events64": "CalendarLSTM ticks -> 64 events (units/2, units), parallel",
}


def missing_ticks() -> str | None:
    """None when the real tick files are there, else why a calendar benchmark is skipped."""
    if any(TICK_SERIES.glob("*_quote.zip")):
        return None
    return f"no tick files under {TICK_SERIES} (set LONGSTM_SHARED_DATA to the folder holding ticks/)"


@lru_cache(maxsize=4)
def real_tick_timestamps(count: int) -> np.ndarray:
    """The first `count` UTC nanosecond timestamps of Oanda EUR/USD, day files in order.

    Raises:
        DataValidationError: the files are absent or hold fewer ticks.
    """
    reason = missing_ticks()
    if reason is not None:
        raise DataValidationError(f"bench: {reason}")
    parts, total = [], 0
    for source in discover(TICK_SERIES):
        for batch in read_batches(source):
            stamps = batch.table.column("timestamp").to_numpy().astype("datetime64[ns]").astype(np.int64)
            parts.append(stamps)
            total += len(stamps)
            if total >= count:
                return np.concatenate(parts)[:count]
    raise DataValidationError(f"bench: {TICK_SERIES} holds {total} ticks; {count} are needed")


def tick_chunk_inputs(levels: list[dict[str, Any]], lanes: int, steps: int, features: int, seed: int = 0) -> np.ndarray:
    """`(lanes, steps, features)` float32: random features, then the boundary flags of `levels`
    computed from consecutive chunks of real tick timestamps (each lane's chunk a fresh segment)."""
    boundaries = boundary_levels(levels, "bench levels")
    pipeline = FeaturePipeline([{"kind": CalendarBoundaries.kind, "levels": boundaries}], ["x"], source=str(TICK_SERIES))
    if features <= len(boundaries):
        raise DataValidationError(f"bench: --features must exceed the {len(boundaries)} boundary flag column(s); got {features}")
    needs_times = pipeline.needs_timestamps
    stamps = real_tick_timestamps(lanes * steps).reshape(lanes, steps) if needs_times else None
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(lanes, steps, features)).astype(np.float32)
    for lane in range(lanes):
        lane_stamps = None if stamps is None else stamps[lane]
        inputs[lane, :, -len(boundaries) :] = pipeline.compute(np.zeros((steps, 1)), lane_stamps)
    return inputs


def sequential_depth(flags: np.ndarray) -> dict[str, Any]:
    """Longest level-0 group, groups per level (most in any lane) and their sum, the depth,
    of flags `(lanes, steps, levels)` (level 0 first, nested, each lane's row 0 a start)."""
    starts = flags > 0.5
    longest = 0
    for lane in starts[..., 0]:
        rows = np.flatnonzero(lane)
        longest = max(longest, int(np.diff(np.append(rows, len(lane))).max()))
    groups = [int(starts[..., level].sum(axis=1).max()) for level in range(flags.shape[-1])]
    return {"longest_group": longest, "groups": groups, "depth": longest + sum(groups)}
