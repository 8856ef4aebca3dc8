"""Where the rows of many series come from: files, folders, globs and their layouts.

A *source* is one input file together with how to read it. `discover` turns what a user
types (`data.path`, `--data`, `longstm data convert SOURCE...`: a file, a folder, a glob, or
a list of those) into sources, and `read_batches` streams one source as Arrow record batches
of a single series each, with UTC timestamps — never the whole file in memory.

Layouts:

- `table`: a CSV (`.csv`, `.csv.gz`) or Parquet file with a timestamp column and numeric
  columns. With a series-id column (`unique_id`, the convention of the forecasting libraries,
  or the one named by `series_column`) it is a *long table* holding many series; without one
  the whole file is one series named after the file.
- `hive`: Parquet files under `key=value/` folders (`instrument=EURUSD/date=2014-05-01/x.parquet`):
  the series id is the value of the `series_key` folder (default: the first key).
- `ticks`: the vendor tick layout, one zip per series per day, `<series>/YYYYMMDD_quote.zip`
  holding a headerless CSV of `milliseconds_since_midnight,bid,ask` in the day's own time
  zone (`tz` rules, e.g. `{"fxcm_*": "-05:00", "oanda_*": "UTC"}`).

Timestamps become `timestamp[ns, UTC]`; naive ones are read in the source's time zone (UTC
unless a `tz` rule names another). Pyarrow's streaming CSV reader and Parquet batch iterator
do the reading (`block_rows` bounds the memory of one batch).

Example:

>>> sources = discover(["../shared/data/ticks"], tz={"fxcm_*": "-05:00"})
>>> for batch in read_batches(sources[0]):          # SeriesBatch(series, first_row, table)
...     pass
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import glob
import queue
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from longstm.data import loaders
from longstm.errors import DataValidationError

LAYOUTS = ("auto", "table", "hive", "ticks")
SERIES_COLUMNS = ("unique_id", "series", "series_id", "instrument", "symbol")
# The single-file loader's timestamp names, and `ds`: the forecasting libraries' long-table convention.
TIMESTAMP_NAMES = (*loaders.TIMESTAMP_NAMES, "ds")
TICK_FILE = re.compile(r"^(\d{8})_quote\.zip$")
TICK_COLUMNS = ("milliseconds", "bid", "ask")
DEFAULT_BLOCK_ROWS = 1 << 16


@dataclass(frozen=True)
class Source:
    """One input file and how to read it.

    Args:
        path: the file.
        layout: `"table"`, `"hive"` or `"ticks"`.
        series: the series id when the path fixes it (ticks: the folder; hive: the partition;
            a one-series table: the file stem); None when a column holds it.
        tz: the time zone of naive timestamps in this file (`"UTC"`, `"-05:00"`, `"America/New_York"`).
        day: ticks only, the file's calendar day in `tz`.
    """

    path: Path
    layout: str
    series: str | None = None
    tz: str = "UTC"
    day: dt.date | None = None


@dataclass(frozen=True)
class SeriesBatch:
    """Consecutive rows of one series from one source: `table` has `timestamp` (ns, UTC) first,
    then the numeric columns; `first_row` is the file row of its first row (for error messages)."""

    series: str
    first_row: int
    table: pa.Table


def convert_advice(path: str | Path) -> str:
    """The one command that turns raw sources into a store, for an error message.

    Only `longstm train` converts raw sources itself (into its run directory); everywhere else
    a conversion is asked for once, explicitly: the vendor tick zips hold local times whose
    zone per venue only the user knows (`--tz`), a conversion at scale is a job of its own
    (several processes, appends), and one store serves every run, `eval ticks` and `data
    inspect`. Where `path` holds tick zips the command names `--tz`.
    """
    try:
        ticks = sorted({s.series for s in discover(path) if s.layout == "ticks"})
    except DataValidationError:
        ticks = []
    zones = f" --tz '{ticks[0]}=<zone>'  (tick zips hold local times: name each venue's zone, e.g. 'fxcm_*=-05:00')" if ticks else ""
    return f"convert them into a store first: `longstm data convert {path} --out STORE{zones}` and set data.path to the store"


def zone_for(path: Path, tz: Mapping[str, str] | str | None) -> str | None:
    """The time zone a rule gives `path` (patterns match any part of the path), or None."""
    if tz is None or isinstance(tz, str):
        return tz
    for pattern, zone in tz.items():
        if any(fnmatch.fnmatch(part, pattern) for part in path.parts) or fnmatch.fnmatch(str(path), pattern):
            return zone
    return None


def _expand(inputs: Sequence[str | Path] | str | Path) -> list[Path]:
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files: list[Path] = []
    for entry in inputs:
        text = str(entry)
        if any(ch in text for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matched:
                raise DataValidationError(f"{text}: the pattern matches no file")
            files.extend(p for m in matched for p in (sorted(m.rglob("*")) if m.is_dir() else [m]))
        elif Path(text).is_dir():
            files.extend(sorted(Path(text).rglob("*")))
        elif Path(text).is_file():
            files.append(Path(text))
        else:
            raise DataValidationError(f"{text}: no such file or folder")
    return [f for f in files if f.is_file() and not f.name.startswith(".") and f.suffix.lower() not in (".md", ".txt", ".json")
            and f.name != "SHA256SUMS"]


def _layout_of(path: Path) -> str:
    if TICK_FILE.match(path.name):
        return "ticks"
    if any("=" in part for part in path.parent.parts) and path.suffix in (".parquet", ".pq"):
        return "hive"
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".parquet", ".pq")):
        return "table"
    raise DataValidationError(
        f"{path}: cannot tell the layout from the name; expected .csv, .csv.gz, .parquet, a hive folder "
        f"key=value/, or a tick zip YYYYMMDD_quote.zip"
    )


def discover(
    inputs: Sequence[str | Path] | str | Path,
    *,
    layout: str = "auto",
    tz: Mapping[str, str] | str | None = None,
    series_key: str | None = None,
) -> list[Source]:
    """The sources under `inputs` (files, folders searched recursively, globs), sorted by path.

    Raises:
        DataValidationError: a path that does not exist, a glob that matches nothing, a file
            whose layout cannot be told, a tick zip whose name is not `YYYYMMDD_quote.zip`.
    """
    if layout not in LAYOUTS:
        raise DataValidationError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    sources = []
    for path in _expand(inputs):
        kind = _layout_of(path) if layout == "auto" else layout
        zone = zone_for(path, tz) or "UTC"
        if kind == "ticks":
            match = TICK_FILE.match(path.name)
            if match is None:
                raise DataValidationError(f"{path}: a tick file must be named YYYYMMDD_quote.zip")
            day = dt.datetime.strptime(match.group(1), "%Y%m%d").date()
            sources.append(Source(path, "ticks", series=path.parent.name, tz=zone, day=day))
        elif kind == "hive":
            keys = dict(part.split("=", 1) for part in path.parent.parts if "=" in part)
            key = series_key or next(iter(keys))
            if key not in keys:
                raise DataValidationError(f"{path}: no {key}=... folder above it; it has {sorted(keys)}")
            sources.append(Source(path, "hive", series=keys[key], tz=zone))
        else:
            sources.append(Source(path, "table", tz=zone))
    if not sources:
        raise DataValidationError(f"{list(map(str, inputs)) if not isinstance(inputs, (str, Path)) else inputs}: holds no data file")
    return sources


def _utc(timestamps: pa.Array, tz: str, source: Path) -> pa.Array:
    """`timestamps` as `timestamp[ns, UTC]`; naive values are taken in `tz`."""
    if pa.types.is_string(timestamps.type) or pa.types.is_large_string(timestamps.type):
        try:
            timestamps = pc.strptime(timestamps, format="%Y-%m-%d %H:%M:%S", unit="ns", error_is_null=False)
        except pa.ArrowInvalid:
            timestamps = pa.array(np.asarray(timestamps.to_numpy(zero_copy_only=False), dtype="datetime64[ns]"))
    if not pa.types.is_timestamp(timestamps.type):
        raise DataValidationError(f"{source}: the timestamp column has type {timestamps.type}; expected dates/times")
    if timestamps.type.tz is None:
        timestamps = pc.assume_timezone(timestamps.cast(pa.timestamp("ns")), timezone=_zone_name(tz))
    return timestamps.cast(pa.timestamp("ns", tz="UTC"))


def _zone_name(tz: str) -> str:
    """Arrow takes IANA names and fixed offsets `+HH:MM`; accept `UTC-05:00` and `-5` too."""
    text = tz.strip().upper().removeprefix("UTC") if tz.upper().startswith("UTC") and len(tz) > 3 else tz.strip()
    match = re.fullmatch(r"([+-])(\d{1,2})(?::?(\d{2}))?", text)
    if match:
        return f"{match.group(1)}{int(match.group(2)):02d}:{match.group(3) or '00'}"
    return tz


def _tick_batches(source: Source, block_rows: int) -> Iterator[SeriesBatch]:
    midnight = dt.datetime.combine(source.day, dt.time())
    start = pa.scalar(midnight, type=pa.timestamp("ns"))
    start_utc = pc.assume_timezone(pa.array([start]), timezone=_zone_name(source.tz)).cast(pa.timestamp("ns", tz="UTC"))[0]
    base = start_utc.value
    with zipfile.ZipFile(source.path) as archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise DataValidationError(f"{source.path}: a tick zip must hold one CSV; it holds {members}")
        with archive.open(members[0]) as handle:
            read_options = pa_csv.ReadOptions(column_names=list(TICK_COLUMNS), block_size=max(block_rows * 24, 1 << 16))
            convert_options = pa_csv.ConvertOptions(column_types={name: pa.float64() for name in TICK_COLUMNS})
            row = 0
            for batch in _checked(lambda: pa_csv.open_csv(handle, read_options=read_options, convert_options=convert_options),
                                  source.path, lambda: archive.open(members[0]), read_options):
                millis = batch.column(0).to_numpy(zero_copy_only=False)
                nanos = base + np.rint(millis * 1e6).astype(np.int64)
                stamps = pa.array(nanos, type=pa.timestamp("ns", tz="UTC"))
                table = pa.table({"timestamp": stamps, "bid": batch.column(1), "ask": batch.column(2)})
                yield SeriesBatch(source.series, row, table)
                row += batch.num_rows


def _checked(open_reader, path: Path, reopen=None, read_options=None):
    """Batches of the pyarrow reader that `open_reader()` makes, its parse errors re-raised as
    one-line DataValidationErrors. Arrow's conversion errors name the column but not the row,
    so on one the file is read again as text (`reopen()`, the error path only) to find it."""
    try:
        yield from open_reader()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        message = str(error).splitlines()[0]
        located = _locate_non_numeric(reopen, read_options) if reopen is not None and "conversion error" in message else None
        raise DataValidationError(f"{path}: {located or message}") from None


def _locate_non_numeric(reopen, read_options) -> str | None:
    """`column 'x' row N: expected a number, got '...'` for the first value that does not parse."""
    with reopen() as handle:
        names = pa_csv.open_csv(handle, read_options=read_options).schema.names
    text = pa_csv.ConvertOptions(column_types={name: pa.string() for name in names})
    with reopen() as handle:
        row = 0
        for batch in pa_csv.open_csv(handle, read_options=read_options, convert_options=text):
            for name in names:
                index = _first_non_numeric(batch.column(name))
                if index is not None:
                    return f"column {name!r} row {row + index + 1}: expected a number, got {batch.column(name)[index].as_py()!r}"
            row += batch.num_rows
    return None


def _table_batches(source: Source, block_rows: int, series_column: str | None, timestamp_column: str | None) -> Iterator[SeriesBatch]:
    name = source.path.name.lower()
    if name.endswith((".parquet", ".pq")):
        parquet = pq.ParquetFile(source.path, pre_buffer=False)
        names = parquet.schema_arrow.names
        batches = _parquet_batches(parquet, block_rows)
    else:
        read_options = pa_csv.ReadOptions(block_size=max(block_rows * 64, 1 << 16))
        reader = pa_csv.open_csv(source.path, read_options=read_options)
        names = reader.schema.names
        batches = _checked(lambda: reader, source.path, lambda: pa.input_stream(str(source.path)), read_options)
    time_name = timestamp_column or next((n for n in names if n.lower() in TIMESTAMP_NAMES), None)
    if time_name is None or time_name not in names:
        raise DataValidationError(f"{source.path}: no timestamp column (looked for {timestamp_column or TIMESTAMP_NAMES}); columns are {names}")
    id_name = series_column if series_column else next((n for n in names if n.lower() in SERIES_COLUMNS), None)
    if series_column and series_column not in names:
        raise DataValidationError(f"{source.path}: no series column {series_column!r}; columns are {names}")
    if source.layout == "hive" and not series_column:
        id_name = None  # the key=value folder names the series
    value_names = [n for n in names if n not in (time_name, id_name)]
    row = 0
    for batch in batches:
        columns = {"timestamp": _utc(batch.column(time_name), source.tz, source.path)}
        for value_name in value_names:
            column = batch.column(value_name)
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                bad = _first_non_numeric(column) or 0
                raise DataValidationError(
                    f"{source.path}: column {value_name!r} row {row + bad + 1}: expected a number, got {column[bad].as_py()!r}"
                )
            columns[value_name] = column.cast(pa.float64())
        table = pa.table(columns)
        if id_name is None:
            yield SeriesBatch(source.series or _stem(source.path), row, table)
        else:
            ids = batch.column(id_name).cast(pa.string())
            for series in pc.unique(ids).to_pylist():
                picked = pc.equal(ids, series)
                first = int(np.flatnonzero(picked.to_numpy(zero_copy_only=False))[0])
                yield SeriesBatch(str(series), row + first, table.filter(picked))
        row += batch.num_rows


def _parquet_batches(parquet: pq.ParquetFile, block_rows: int) -> Iterator[pa.RecordBatch]:
    """`block_rows`-row batches of a Parquet file, one row group after the other. Asked for all
    row groups at once, pyarrow reads ahead and holds several; asked for one, it holds that one
    (it decodes a row group's column chunks whole), so memory is one row group and one batch
    however long the file is. One thread decodes (a thread pool keeps an allocator arena per
    thread); a buffered stream (`buffer_size`) was measured to hold more, not less."""
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=block_rows, row_groups=[group], use_threads=False)


def _first_non_numeric(column: pa.Array) -> int | None:
    """Index of the first value of `column` that is not a number (an empty cell counts), or None."""
    for index, value in enumerate(column.cast(pa.string()).to_pylist()):
        try:
            float(value)
        except (TypeError, ValueError):
            return index
    return None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv", ".parquet", ".pq"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_batches(
    source: Source,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    series_column: str | None = None,
    timestamp_column: str | None = None,
) -> Iterator[SeriesBatch]:
    """Stream `source` as `SeriesBatch`es in file order (a long table's batch is split by series).

    Raises:
        DataValidationError: a parse error or a non-numeric value (naming the file, column and
            row), a missing timestamp or series column.
    """
    if source.layout == "ticks":
        return _tick_batches(source, block_rows)
    return _table_batches(source, block_rows, series_column, timestamp_column)


def prefetched(items: Iterable, depth: int = 2) -> Iterator:
    """`items`, read ahead by a thread (at most `depth` waiting): pyarrow decodes the next batch
    while the caller writes this one. An error in `items` is raised here; stopping early stops
    the thread."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                waiting.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as error:  # handed to the caller, raised there
            put((end, error))

    thread = threading.Thread(target=produce, name="longstm-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = waiting.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()
