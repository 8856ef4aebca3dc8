"""An out-of-core store of many series: converted once, memory-mapped, never loaded whole.

`convert(SOURCES, STORE)` streams the sources (`longstm.data.sources`) batch by batch, checks
each batch, and writes one Arrow IPC file (uncompressed, so it can be memory-mapped) per series
per source file. `Store(STORE)` reads the index and hands out series whose rows are read from
the memory map on demand. Peak memory is set by the batch (and a Parquet source's row group,
which pyarrow decodes whole), not by the data; a reader thread decodes the next batch while
the current one is checked and written.

Layout:

    STORE/store.json                        {"format": "longstm-store", "version": 1}
    STORE/shards/<series>/<source>.<run>.arrow   timestamp (ns, UTC), the numeric columns[, crossed][, tick_gap]
    STORE/runs/<run>.json                   the shards one convert run published, with their stats
    STORE/.staging/<run>/                   a run's shards while it writes (never read), and owner.json

A convert run publishes its shards all at once, by writing its `runs/<run>.json` last (an
atomic rename); until then nothing of it is visible. A run that fails removes what it wrote (a
full disk is one `DataValidationError` line, and the shards it had moved into place are removed
again); one that is killed leaves files no reader sees, which the next convert removes with a
warning (`longstm.data.store_orphans`). Several processes can convert disjoint sources into one store at the same
time (each writes its own run file: this is how a cluster converts 10^10 rows), and converting
new days later appends. Converting a source again replaces its shards (the newest run wins).

Checks, each a one-line `DataValidationError` naming the file, row and column: timestamps that go
backwards within a series, NaN/inf, non-numeric values; shards of one series that overlap in time.
Ticks that share a timestamp are kept in file order. Quotes with `ask < bid` are kept and marked
in a `crossed` column by default (`crossed="drop"` removes them); both are counted. A bar store's
`tick_gap` (`longstm.data.bars`), like `crossed`, is not among `columns`; a source may not have it.

Example:

>>> report = convert(["../shared/data/ticks"], "runs/ticks.store", tz={"fxcm_*": "-05:00"})
>>> store = Store("runs/ticks.store")
>>> series = store.series("oanda_eurusd")
>>> series.read(0, 1000, ["bid", "ask"])                 # rows 0..999, read from the memory map
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from longstm.atomic import write_atomically
from longstm.data.sources import DEFAULT_BLOCK_ROWS, Source, discover, prefetched, read_batches
from longstm.data.store_orphans import claim, remove_orphans
from longstm.data.validation import DataWarning
from longstm.errors import DataValidationError

FORMAT = {"format": "longstm-store", "version": 1}
CROSSED_POLICIES = ("mark", "drop")
SESSION_BLOCK_ROWS = 1 << 18
TICK_GAP_COLUMN = "tick_gap"  # a bar store's: ns from the tick before a bar's first tick to it


def is_store(path: str | Path) -> bool:
    return (Path(path) / "store.json").is_file()


def _in_the_way(root: Path) -> list[Path]:
    """What is at `root` that a new store would not own: its entries (or `root` itself when it is
    a file), less the temporary `store.json` of a convert creating the store at this moment
    (two converts into one new store, started together). Each existence is looked up once, and
    before `store.json` is: that convert writes `store.json` before anything else, so whatever
    it made that is listed here is covered by a `store.json` looked for after."""
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return [root]
    return [entry for entry in entries if not (entry.name.startswith(".store.json.") and entry.name.endswith(".tmp"))]


def _write_json_atomic(path: Path, payload) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(json.dumps(payload, indent=1)))


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "_"


@dataclass
class ShardWriter:
    """One open Arrow file: the rows of one series from one source, with running checks."""

    series: str
    source: Path
    path: Path
    writer: pa.ipc.RecordBatchFileWriter | None = None
    schema: pa.Schema | None = None
    rows: int = 0
    first: int | None = None
    last: int | None = None
    crossed: int = 0
    dropped: int = 0
    ties: int = 0
    columns: list[str] = field(default_factory=list)

    def write(self, table: pa.Table, first_row: int, crossed_policy: str) -> None:
        stamps = table.column("timestamp").cast(pa.int64()).to_numpy()
        self._check(table, stamps, first_row)
        if "bid" in table.column_names and "ask" in table.column_names:
            crossed = pc.less(table.column("ask"), table.column("bid"))
            count = pc.sum(crossed).as_py() or 0
            if crossed_policy == "drop":
                self.dropped += count
                table = table.filter(pc.invert(crossed))
                stamps = table.column("timestamp").cast(pa.int64()).to_numpy()
            else:
                self.crossed += count
                table = table.append_column("crossed", crossed)
        if table.num_rows == 0:
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.columns = [name for name in table.column_names if name not in ("timestamp", "crossed", TICK_GAP_COLUMN)]
            self.schema = table.schema
            self.writer = pa.ipc.new_file(str(self.path), table.schema)
        elif table.schema != self.schema:
            raise DataValidationError(f"{self.source}: series {self.series!r} row {first_row + 1}: columns changed to "
                                      f"{table.schema}; expected {self.schema}")
        self.ties += int(np.count_nonzero(np.diff(stamps) == 0)) + int(self.last is not None and stamps[0] == self.last)
        self.first = int(stamps[0]) if self.first is None else self.first
        self.last = int(stamps[-1])
        self.rows += table.num_rows
        self.writer.write_table(table)

    def _check(self, table: pa.Table, stamps: np.ndarray, first_row: int) -> None:
        previous = np.concatenate([[self.last if self.last is not None else stamps[0]], stamps[:-1]])
        backwards = np.flatnonzero(stamps < previous)
        if backwards.size:
            row = first_row + int(backwards[0]) + 1
            raise DataValidationError(
                f"{self.source}: series {self.series!r} row {row}: timestamp {_iso(stamps[backwards[0]])} goes back "
                f"before {_iso(previous[backwards[0]])}; expected non-decreasing timestamps within a series"
            )
        for name in table.column_names[1:]:
            values = table.column(name).to_numpy()
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise DataValidationError(
                    f"{self.source}: series {self.series!r} column {name!r} row {first_row + int(bad[0]) + 1}: "
                    f"expected a finite number, got {values[bad[0]]}"
                )

    def close(self) -> dict | None:
        if self.writer is None:
            return None
        self.writer.close()
        return {
            "series": self.series, "source": str(self.source), "rows": self.rows, "first": self.first, "last": self.last,
            "columns": self.columns, "crossed": self.crossed, "dropped": self.dropped, "ties": self.ties,
        }


def _shard_stem(path: Path) -> str:
    """A file name unique to the source: its name and a hash of its full path (hive folders
    hold many files called part-0.parquet)."""
    return f"{_safe(path.name)}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"


def _iso(nanoseconds) -> str:
    return str(np.datetime64(int(nanoseconds), "ns")) + "Z"


def convert(
    inputs: Sequence[str | Path] | str | Path | Sequence[Source],
    out: str | Path,
    *,
    layout: str = "auto",
    tz: Mapping[str, str] | str | None = None,
    series_column: str | None = None,
    timestamp_column: str | None = None,
    crossed: str = "mark",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    on_source: Callable[[Source, int], None] | None = None,
) -> dict:
    """Convert `inputs` into the store at `out` (created if absent) as one atomic run.

    Args:
        inputs: files, folders, globs (see `longstm.data.sources.discover`), or `Source`s.
        out: the store folder.
        layout, tz, series_column, timestamp_column: how to read the sources (see `discover`).
        crossed: `"mark"` (keep quotes with ask < bid, flagged in a `crossed` column) or `"drop"`.
        block_rows: rows per batch read; with a Parquet source's row group, bounds the memory
            the conversion needs.
        on_source: called after each source with the source and its row count (progress).

    Returns:
        The run record: `{"run": id, "shards": [...], "rows": total, "seconds": ...}`, and
        `"orphans_removed"`: the shard files of killed runs this run removed first.
    """
    if crossed not in CROSSED_POLICIES:
        raise DataValidationError(f"crossed must be one of {CROSSED_POLICIES}; got {crossed!r}")
    started = time.perf_counter()
    root = Path(out)
    if _in_the_way(root) and not is_store(root):  # listed first: see `_in_the_way`
        raise DataValidationError(f"{root}: exists and is not a longstm store (no store.json); choose an empty or new folder")
    given = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    sources = given if given and all(isinstance(s, Source) for s in given) else discover(given, layout=layout, tz=tz)
    run = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    staging = root / ".staging" / run
    records: list[dict] = []
    published: list[Path] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not is_store(root):  # first: a folder it could not be written to stays empty, so a retry can use it
            _write_json_atomic(root / "store.json", FORMAT)
        for folder in ("shards", "runs", ".staging"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        orphans = remove_orphans(root)
        if orphans:
            warnings.warn(f"{root}: removed {len(orphans)} shard file(s) of convert runs killed before they published them "
                          f"(none was ever visible to readers), e.g. {orphans[0]}", DataWarning, stacklevel=2)
        claim(staging)
        writers: dict[str, ShardWriter] = {}
        rows = 0
        # the next batch is read (decoded) by a thread while this one is checked and written
        for source, batch in prefetched(_batches_of(sources, block_rows, series_column, timestamp_column), depth=1):
            if batch is None:  # the end of this source: its shards are complete
                for writer in writers.values():
                    record = writer.close()
                    if record is not None:
                        record["file"] = str(writer.path.relative_to(staging))
                        records.append(record)
                if on_source is not None:
                    on_source(source, rows)
                writers, rows = {}, 0
                continue
            if TICK_GAP_COLUMN in batch.table.column_names:  # a bar store's sessions are read from it
                raise DataValidationError(f"{source.path}: series {batch.series!r} has a column {TICK_GAP_COLUMN!r}; expected none (reserved)")
            writer = writers.get(batch.series)
            if writer is None:
                name = f"{_safe(batch.series)}/{_shard_stem(source.path)}.{run}.arrow"
                writer = writers[batch.series] = ShardWriter(batch.series, source.path, staging / name)
            writer.write(batch.table, batch.first_row, crossed)
            rows += batch.table.num_rows
        for record in records:  # publish: the shards first, then the run file that makes them visible
            target = root / "shards" / record["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / record["file"], target)
            published.append(target)
        payload = {"run": run, "shards": records, "rows": sum(r["rows"] for r in records)}
        _write_json_atomic(root / "runs" / f"{run}.json", payload)
    except BaseException as failure:  # the shards moved so far are not in any run file; remove them too
        for target in published:
            target.unlink(missing_ok=True)
        if not isinstance(failure, OSError):
            raise
        where = getattr(failure, "filename", None) or root  # a full disk
        raise DataValidationError(
            f"{where}: could not be written ({failure.strerror or failure}); nothing of this conversion was published "
            f"(the store is as it was before it)"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    payload["seconds"] = time.perf_counter() - started
    payload["orphans_removed"] = orphans
    return payload


def _batches_of(sources: Sequence[Source], block_rows: int, series_column, timestamp_column) -> Iterator[tuple[Source, object]]:
    """`(source, batch)` for every batch of every source, then `(source, None)` at its end."""
    for source in sources:
        for batch in read_batches(source, block_rows=block_rows, series_column=series_column, timestamp_column=timestamp_column):
            yield source, batch
        yield source, None


def spans(offsets: np.ndarray, start: int, stop: int) -> Iterator[tuple[int, int, int, int]]:
    """Rows `[start, stop)` of parts laid end to end (part i holds rows `offsets[i]..offsets[i+1]`)
    as `(part, first row in the part, stop row in the part, where it starts in the output)`."""
    first = max(int(np.searchsorted(offsets, start, side="right") - 1), 0)
    for index in range(first, len(offsets) - 1):
        lo, hi = int(offsets[index]), int(offsets[index + 1])
        if lo >= stop:
            break
        a, b = max(start, lo), min(stop, hi)
        if b > a:
            yield index, a - lo, b - lo, a - start


class StoreSeries:
    """The rows of one series in a store, read from memory-mapped shards on demand.

    `len(series)`, `series.columns`, `series.read(start, stop, columns)` (a float64 array, copying
    only the rows asked for), `series.timestamps(start, stop)` (int64 ns UTC), `series.sessions(gap)`.
    """

    def __init__(self, name: str, root: Path, shards: list[dict]):
        self.name = name
        self.shards = shards
        self._paths = [root / "shards" / s["file"] for s in shards]
        self._tables: list[pa.Table | None] = [None] * len(shards)
        self.offsets = np.concatenate([[0], np.cumsum([s["rows"] for s in shards])]).astype(np.int64)
        self.columns = list(shards[0]["columns"])
        self.has_crossed, self.has_tick_gap = (name in self._table(0).column_names for name in ("crossed", TICK_GAP_COLUMN))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _table(self, index: int) -> pa.Table:
        if self._tables[index] is None:
            self._tables[index] = pa.ipc.open_file(pa.memory_map(str(self._paths[index]), "r")).read_all()
        return self._tables[index]

    def _column(self, name: str, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(len(self), stop)
        pieces = [self._table(index).column(name).slice(a, b - a).to_numpy() for index, a, b, _ in spans(self.offsets, start, stop)]
        return np.concatenate(pieces) if len(pieces) != 1 else pieces[0]

    def read(self, start: int = 0, stop: int | None = None, columns: Sequence[str] | None = None) -> np.ndarray:
        """Rows `[start, stop)` of `columns` (default all numeric columns) as `(rows, columns)` float64."""
        stop = len(self) if stop is None else stop
        names = self.columns if columns is None else list(columns)
        missing = [n for n in names if n not in self.columns and not (n == "crossed" and self.has_crossed)]
        if missing:
            raise DataValidationError(f"series {self.name!r}: no column(s) {missing}; it has {self.columns}")
        return np.stack([self._column(n, start, stop).astype(np.float64, copy=False) for n in names], axis=1)

    def timestamps(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Timestamps of rows `[start, stop)` as int64 nanoseconds since the epoch, UTC."""
        stop = len(self) if stop is None else stop
        return self._column("timestamp", start, stop).astype("datetime64[ns]").view(np.int64)

    def gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """`(rows, lengths)`: every row whose timestamp is later than the previous row's, and by how
        many nanoseconds; read shard by shard, so memory stays at one shard's timestamps."""
        rows, lengths, previous = [], [], None
        for index in range(len(self.shards)):
            offset = int(self.offsets[index])
            stamps = self.timestamps(offset, int(self.offsets[index + 1]))
            joined = stamps if previous is None else np.concatenate([[previous], stamps])
            steps = np.diff(joined)
            moved = np.flatnonzero(steps > 0)
            rows.append(moved + offset + (1 if previous is None else 0))
            lengths.append(steps[moved])
            previous = stamps[-1]
        return np.concatenate(rows), np.concatenate(lengths)

    def sessions(self, rule: str | np.timedelta64 = "1h") -> np.ndarray:
        """Start rows of the sessions (see `parse_session_rule`): with a gap (`"1h"`), row 0 and
        every row more than the gap after the previous one (for FX, one hour finds the weekend
        close and not UTC midnight, which cuts through trading); with a calendar rule
        (`"1D@America/New_York"`), row 0 and the first row of every new calendar period in that
        time zone. A gap rule reads `SESSION_BLOCK_ROWS` timestamps at a time, a calendar rule
        a shard at a time: memory stays at one block's or one shard's timestamps. A bar store's gap
        rule reads its `tick_gap` column, not its stamps: a bar starts a session when its first
        tick does, so bars shorter than the gap split exactly where their ticks do."""
        kind, value, zone = parse_session_rule(rule)
        if kind == "gap":
            starts = [np.zeros(1, np.int64)]
            for start in range(0, len(self), SESSION_BLOCK_ROWS):
                stop = min(len(self), start + SESSION_BLOCK_ROWS)
                if self.has_tick_gap:  # bar stamps (interval ends) can be nearer or farther apart than their ticks
                    starts.append(np.flatnonzero(self._column(TICK_GAP_COLUMN, start, stop) > int(value)) + start)
                    continue
                first = max(start - 1, 0)  # each block with the row before it
                starts.append(np.flatnonzero(np.diff(self.timestamps(first, stop)) > int(value)) + first + 1)
            return np.concatenate(starts).astype(np.int64)
        starts, previous = [np.zeros(1, np.int64)], None
        for index in range(len(self.shards)):
            offset = int(self.offsets[index])
            local = pd.to_datetime(self.timestamps(offset, int(self.offsets[index + 1])), utc=True).tz_convert(zone)
            period = local.tz_localize(None).floor(value).asi8  # the wall-clock period each tick falls in
            joined = period if previous is None else np.concatenate([[previous], period])
            changed = np.flatnonzero(np.diff(joined) != 0) + (1 if previous is None else 0)
            starts.append(changed + offset)
            previous = period[-1]
        return np.unique(np.concatenate(starts)).astype(np.int64)


def parse_session_rule(rule) -> tuple[str, object, str | None]:
    """`("gap", nanoseconds, None)` for a duration (`"1h"`), or `("calendar", freq, zone)` for
    `"FREQ@ZONE"` (`"1D@America/New_York"`: a session per calendar day in New York).

    Raises:
        DataValidationError: neither a positive duration nor FREQ@ZONE with a known zone.
    """
    text = str(rule)
    if "@" not in text:
        gap = as_duration(rule)
        if int(gap) <= 0:
            raise DataValidationError(f"a session gap must be a positive duration like '1h'; got {rule!r}")
        return "gap", gap, None
    freq, _, zone = text.partition("@")
    try:
        pd.Timestamp("2024-01-01", tz=zone)
        offset = pd.tseries.frequencies.to_offset(freq)
        pd.Timestamp("2024-01-01").floor(offset)
    except (ValueError, TypeError, KeyError) as error:
        raise DataValidationError(
            f"a calendar session rule must be FREQ@ZONE like '1D@America/New_York' (a fixed frequency, an IANA "
            f"time zone); got {rule!r} ({error})"
        ) from None
    return "calendar", offset, zone


def unit_duration_ns(text) -> int:
    """`"10s"` → 10**10: a duration written with a unit, in nanoseconds; 0 when `text` is not one
    (no unit, like `"5"`, which pandas would read as 5 ns; an unknown unit; not a number)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?\s*[a-zA-Z]+", text) is None:
        return 0
    try:
        return int(pd.Timedelta(text).value)
    except ValueError:
        return 0


def as_duration(value) -> np.timedelta64:
    """`"1h"`, `"90s"` or a `np.timedelta64` as nanoseconds."""
    try:
        return np.timedelta64(pd.Timedelta(value).value, "ns")
    except (ValueError, TypeError):
        raise DataValidationError(f"gap must be a duration like '1h' or '90s'; got {value!r}") from None


class Store:
    """A converted store, opened read-only: its series, columns and per-series rows.

    Raises:
        DataValidationError: not a store, or two shards of one series that overlap in time.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not is_store(self.path):
            raise DataValidationError(f"{self.path}: not a longstm store (no store.json); make one with `longstm data convert`")
        latest: dict[tuple[str, str], dict] = {}
        for run_file in sorted((self.path / "runs").glob("*.json")):
            for shard in json.loads(run_file.read_text())["shards"]:
                latest[(shard["series"], shard["source"])] = shard  # runs sort by start time: newest wins
        by_series: dict[str, list[dict]] = {}
        for shard in latest.values():
            by_series.setdefault(shard["series"], []).append(shard)
        self._series: dict[str, list[dict]] = {}
        for name, shards in sorted(by_series.items()):
            shards.sort(key=lambda s: (s["first"], s["last"]))
            for a, b in zip(shards, shards[1:]):
                if b["first"] < a["last"]:
                    raise DataValidationError(
                        f"{self.path}: series {name!r}: {b['source']} starts at {_iso(b['first'])}, before {a['source']} "
                        f"ends at {_iso(a['last'])}; the sources of one series must not overlap in time"
                    )
            self._series[name] = shards

    @property
    def names(self) -> list[str]:
        return list(self._series)

    def indexed_rows(self, name: str) -> int:
        """The rows of series `name`, from the run files alone (no shard is opened)."""
        if name not in self._series:
            raise DataValidationError(f"{self.path}: no series {name!r}; it has {self.names}")
        return sum(int(shard["rows"]) for shard in self._series[name])

    def series(self, name: str) -> StoreSeries:
        if name not in self._series:
            raise DataValidationError(f"{self.path}: no series {name!r}; it has {self.names}")
        return StoreSeries(name, self.path, self._series[name])

    def __iter__(self) -> Iterable[StoreSeries]:
        return (self.series(name) for name in self.names)

    def describe(self, gap: str = "1h") -> list[dict]:
        """Per series: rows, first/last timestamp, sessions (gaps over `gap`), the largest gap,
        crossed/dropped quotes and ticks sharing a timestamp — read from the memory maps."""
        kind, value, _ = parse_session_rule(gap)
        rows = []
        for series in self:
            shards = self._series[series.name]
            _, lengths = series.gaps()
            largest = int(lengths.max()) if lengths.size else 0
            # a gap rule counts from the gaps already read; a calendar rule or a bar store reads its columns again
            gaps_read = kind == "gap" and not series.has_tick_gap
            sessions = 1 + int(np.count_nonzero(lengths > int(value))) if gaps_read else series.sessions(gap).size
            rows.append({
                "series": series.name, "rows": len(series), "first": _iso(shards[0]["first"]), "last": _iso(shards[-1]["last"]),
                "sources": len(shards), "sessions": int(sessions), "largest_gap": np.timedelta64(largest, "ns"),
                "crossed": sum(s["crossed"] for s in shards), "dropped": sum(s["dropped"] for s in shards),
                "ties": sum(s["ties"] for s in shards), "columns": series.columns,
            })
        return rows
