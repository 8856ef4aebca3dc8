"""Bars from a tick store: the last quote of every interval, stamped when the interval ends.

`make_bars(STORE, OUT, every="1s")` resamples every series of a store (`longstm data convert`)
into a new store of bars, one series at a time and `BLOCK_ROWS` ticks at a time (read from the
memory maps; the whole panel is never in memory). Intervals follow UTC epoch multiples of
`every`: tick t falls in `[k·every, (k+1)·every)` with `k = floor(t / every)`. Each interval that
holds at least one tick gives one row:

- `timestamp`: the interval's end `(k+1)·every`, the instant the bar is known (every tick in it
  is strictly earlier), so a model fed bars never reads a tick before its time;
- every numeric column of the source (`bid`, `ask`, ...): its value at the interval's last tick
  (ticks that share a timestamp: the last in the store's order), i.e. the quote in force at the
  bar's stamp; `crossed` marks a bar whose quote has ask < bid, as `convert` marks ticks;
- `ticks`: how many ticks the interval holds;
- `tick_gap` (int64 ns, not among the series' `columns`): from the tick before the interval's
  first tick to that tick (0 for a series' first bar). A gap session rule (`Store` sessions,
  `--session-gap 1h`) reads it instead of the stamps, so bars shorter than the gap split into
  sessions exactly where their ticks do. Stamps at interval ends can be nearer or farther apart than the ticks
  across a pause: ticks 1 h 0.5 s apart in 1-s bars stamped 1 h apart (one session by the
  stamps, two by the ticks under `1h`); ticks 10.2 s apart, stamps 11 s apart (two by the
  stamps, one by the ticks under `10500ms`).

Empty intervals give no row (a pause is a gap in the timestamps, as it is in the ticks), so
the `quote` feature kind and `time_targets` read a bar store as they read a tick store. The new
store's `store.json` records where it came from (`bar_source(OUT)`): the source store's path,
the run files it was made of, and `every`; `longstm eval ticks` uses that to score a bar model
on the source's ticks (`longstm.evaluate.tick_bars`).

Writing is atomic: the store is built in a hidden folder beside `OUT` and renamed onto `OUT`
when complete, so a run that is killed or fails leaves no `OUT` at all.

Example:

>>> report = make_bars("runs/ticks.store", "runs/ticks_1s.store", every="1s")    # doctest: +SKIP
>>> bar_source("runs/ticks_1s.store")["every"]                                  # doctest: +SKIP
'1s'
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from longstm.data.store import FORMAT, TICK_GAP_COLUMN, Store, ShardWriter, is_store, parse_session_rule, unit_duration_ns
from longstm.errors import ConfigError, DataValidationError

BLOCK_ROWS = 1 << 18
COUNT_COLUMN = "ticks"
REQUIRED = ("bid", "ask")


def parse_every(every: str) -> int:
    """`"1s"` → 10⁹: a positive duration with a unit, in nanoseconds.

    Raises:
        ConfigError: no unit, not a duration, or not positive.
    """
    nanoseconds = unit_duration_ns(every)
    if nanoseconds <= 0:
        raise ConfigError(f"every must be a positive duration with a unit like '1s', '500ms' or '1min'; got {every!r}")
    return nanoseconds


def source_runs(store: Store) -> list[str]:
    """The run files a store is made of: converting more into it changes the list."""
    return sorted(path.name for path in (store.path / "runs").glob("*.json"))


def bar_source(path: str | Path) -> dict | None:
    """What a bar store was made from (`{"source", "source_runs", "every", "every_ns"}`), or None
    for a store that is not a bar store."""
    path = Path(path)
    if not is_store(path):
        return None
    return json.loads((path / "store.json").read_text()).get("bars")


def remake_advice(source: str | Path, every: str) -> str:
    """What to do about a bar store that cannot be used: the one command that makes it again."""
    return f"make them again with `longstm data bars {source} --every {every} --out NEW_STORE`"


def check_bar_sessions(path, where: str, session_gap: str = "1h") -> dict | None:
    """What the bar store at `path` was made from (`bar_source`), or None when `path` is not a
    bar store (a list of raw sources, a tick store, a file), after checking that `session_gap`
    splits its bars into sessions where their ticks split. Every use of a bar store's sessions
    (`longstm train` through `longstm.train.run.load_panel`, `longstm eval ticks` through
    `longstm.evaluate.tick_bars.check_bar_store`) goes through this one check.

    Args:
        path: the config's `data.path`.
        where: what the message names first (the config file).
        session_gap: the session rule, a gap (`"1h"`) or a calendar rule (`"1D@America/New_York"`).

    Returns:
        `{"source", "source_runs", "every", "every_ns"}` for a bar store, else None.

    Raises:
        DataValidationError: the bars were made by a longstm that did not write their
            `tick_gap` column (their sessions would be read from their stamps, which can join
            two sessions of the ticks), or they are not shorter than a gap `session_gap` (a bar
            could then hold the end of one session and the start of the next), or `session_gap`
            is a calendar rule: a bar is stamped at its interval's end, so the bar of a period's
            last ticks is stamped at or after the period's end and that rule counts it in the
            next session.

    Example:

    >>> check_bar_sessions("runs/ticks_1s.store", "configs/ticks_bars_lstm.toml", "1h")["every"]  # doctest: +SKIP
    '1s'
    """
    if isinstance(path, list):
        return None
    meta = bar_source(path)
    if meta is None:
        return None
    older = [series.name for series in Store(path) if not series.has_tick_gap]
    if older:
        raise DataValidationError(f"{where}: data.path {path} holds bars without a {TICK_GAP_COLUMN!r} column (series "
                                  f"{older[0]!r}), made before bar sessions followed the tick sessions; "
                                  f"{remake_advice(meta['source'], meta['every'])}")
    kind, gap, _ = parse_session_rule(session_gap)
    if kind == "calendar":
        raise DataValidationError(f"{where}: data.path {path} holds bars, stamped at their interval's end, so the calendar "
                                  f"session rule {session_gap} would count the bar of a session's last ticks in the next "
                                  f"session; use a gap rule like '1h' for a bar model")
    if meta["every_ns"] >= int(gap):
        raise DataValidationError(f"{where}: data.path {path} holds bars of {meta['every']}, not shorter than the session gap "
                                  f"{session_gap}: a bar could join the end of one session to the start of the next; use "
                                  f"bars shorter than the gap")
    return meta


def _bars_of_block(stamps: np.ndarray, values: np.ndarray, every_ns: int, previous: int | None):
    """`(interval ids, last row of each interval, tick count of each interval, tick gap before
    each interval's first tick)` of one block; `previous`: the time of the tick before it."""
    ids = np.floor_divide(stamps, every_ns)
    last = np.concatenate([np.flatnonzero(np.diff(ids) != 0), [ids.size - 1]])
    counts = np.diff(np.concatenate([[-1], last]))
    first = last - counts + 1
    before = np.concatenate([[stamps[0] if previous is None else previous], stamps[:-1]])
    return ids[last], values[last], counts, stamps[first] - before[first]


class _SeriesBars:
    """Bars of one series, block by block; the last interval of a block may go on in the next,
    so it is held back until a later tick (or the end of the series) closes it."""

    def __init__(self, writer: ShardWriter, columns: list[str], every_ns: int):
        self.writer, self.columns, self.every_ns = writer, columns, every_ns
        self.pending: tuple[int, np.ndarray, int, int] | None = None  # id, values, count, tick gap
        self.previous: int | None = None  # the time of the last tick read
        self.written = 0

    def add(self, stamps: np.ndarray, values: np.ndarray) -> None:
        ids, last_values, counts, gaps = _bars_of_block(stamps, values, self.every_ns, self.previous)
        self.previous = int(stamps[-1])
        if self.pending is not None:
            if self.pending[0] == ids[0]:  # the held interval goes on: this block's first group closes it
                counts[0] += self.pending[2]
                gaps[0] = self.pending[3]  # its first tick was in an earlier block
            else:
                self._write_pending()
        self.pending = (int(ids[-1]), last_values[-1], int(counts[-1]), int(gaps[-1]))
        if ids.size > 1:
            self._write(ids[:-1], last_values[:-1], counts[:-1], gaps[:-1])

    def finish(self) -> dict | None:
        if self.pending is not None:
            self._write_pending()
        return self.writer.close()

    def _write_pending(self) -> None:
        ident, values, count, gap = self.pending
        self._write(np.array([ident]), values[None, :], np.array([count]), np.array([gap]))

    def _write(self, ids: np.ndarray, values: np.ndarray, counts: np.ndarray, gaps: np.ndarray) -> None:
        arrays = {"timestamp": pa.array((ids + 1) * self.every_ns, type=pa.timestamp("ns", tz="UTC"))}
        arrays |= {name: pa.array(values[:, j]) for j, name in enumerate(self.columns)}
        arrays[COUNT_COLUMN] = pa.array(counts.astype(np.int64))
        arrays[TICK_GAP_COLUMN] = pa.array(gaps.astype(np.int64))
        self.writer.write(pa.table(arrays), self.written, "mark")
        self.written += ids.size


def make_bars(
    store: Store | str | Path,
    out: str | Path,
    every: str = "1s",
    *,
    block_rows: int = BLOCK_ROWS,
    on_block: Callable[[str, int], None] | None = None,
) -> dict:
    """Resample every series of `store` into a new bar store at `out`.

    Args:
        store: a tick store (`Store` or its path) whose series have `bid` and `ask` columns.
        out: the bar store's folder; must not exist yet (or be empty).
        every: the bar length, a duration like `"1s"`; bars follow UTC epoch multiples of it.
        block_rows: ticks read at a time (bounds the memory used).
        on_block: called with the series name and the ticks read after each block (progress).

    Returns:
        `{"rows_in", "rows_out", "series", "seconds"}`.

    Raises:
        ConfigError: a bad `every`.
        DataValidationError: a series without `bid`/`ask`, or with a column named `ticks`;
            `out` exists and is not empty; `out` could not be written.
    """
    every_ns = parse_every(every)
    started = time.perf_counter()
    store = store if isinstance(store, Store) else Store(store)
    out = Path(out)
    for series in store:  # every series checked before any work
        missing = [name for name in REQUIRED if name not in series.columns]
        if missing:
            raise DataValidationError(f"{store.path}: series {series.name!r} has no column(s) {missing}; bars need "
                                      f"{list(REQUIRED)}, it has {series.columns}")
        if COUNT_COLUMN in series.columns:
            raise DataValidationError(f"{store.path}: series {series.name!r} has a column {COUNT_COLUMN!r}; expected none "
                                      f"(bars add their tick count under that name)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataValidationError(f"{out}: exists; bars are written to a new folder (remove it or choose another --out)")
    run = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    staging = out.parent / f".{out.name}.{run}.partial"
    meta = {"source": str(store.path.resolve()), "source_runs": source_runs(store), "every": str(every), "every_ns": every_ns}
    records, rows_in = [], 0
    try:
        for series in store:
            columns = list(series.columns)
            name = f"{series.name}/bars.{run}.arrow"
            bars = _SeriesBars(ShardWriter(series.name, store.path / series.name, staging / "shards" / name), columns, every_ns)
            for start in range(0, len(series), block_rows):
                stop = min(len(series), start + block_rows)
                bars.add(series.timestamps(start, stop), series.read(start, stop, columns))
                rows_in += stop - start
                if on_block is not None:
                    on_block(series.name, stop - start)
            record = bars.finish()
            if record is not None:
                records.append(record | {"file": name})
        (staging / "runs").mkdir(parents=True, exist_ok=True)
        payload = {"run": run, "shards": records, "rows": sum(r["rows"] for r in records)}
        (staging / "runs" / f"{run}.json").write_text(json.dumps(payload, indent=1))
        (staging / "store.json").write_text(json.dumps(FORMAT | {"bars": meta}, indent=1))
        os.replace(staging, out)  # the whole store appears at once
    except OSError as reason:
        raise DataValidationError(f"{getattr(reason, 'filename', None) or out}: could not be written "
                                  f"({reason.strerror or reason}); no bar store was made") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"rows_in": rows_in, "rows_out": payload["rows"], "series": len(records), "seconds": time.perf_counter() - started}
