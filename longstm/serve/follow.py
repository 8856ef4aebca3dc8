"""Follow a growing file: one forecast per new row, written as soon as the row arrives.

This is the reading loop of `longstm follow` (and `longstm predict --follow`): it streams a
CSV (or Parquet) file as rows are appended to it, one `StreamingPredictor.update` per row,
and writes one forecast row per input row (flushed). A malformed row (wrong number of
fields, a value that is not a finite number) is reported with its line number and skipped;
the state is not touched, so later forecasts are the same as if the row had never been
written. When the run's feature pipeline has time features, the timestamp column is parsed
(time zones converted to UTC) and passed to `update`. A predictor of several instruments (a
run on a store's panel) routes each row by its instrument column (`series`, `unique_id` or
`instrument`) and writes that id beside the forecast. It stops at the end of stdin, after `max_rows` data rows, or when the file has not
grown for `idle_timeout` seconds (default: never).
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Iterator, TextIO

import pyarrow.parquet as pq
from rich.console import Console

from longstm.data.loaders import TIMESTAMP_NAMES
from longstm.errors import ConfigError, DataValidationError
from longstm.serve.rows import INSTRUMENT_COLUMNS, parse_stamp

error_console = Console(stderr=True)


def _growing_lines(handle: TextIO, poll: float, idle_timeout: float | None, is_stdin: bool) -> Iterator[str]:
    """Complete lines of a file as it grows; a partial last line waits for its newline."""
    pending = ""
    last_growth = time.monotonic()
    while True:
        piece = handle.readline()
        if piece:
            last_growth = time.monotonic()
            pending += piece
            if pending.endswith("\n"):
                yield pending
                pending = ""
            continue
        if is_stdin:  # readline blocks on a pipe; an empty string is the end of input
            if pending:
                yield pending
            return
        if idle_timeout is not None and time.monotonic() - last_growth >= idle_timeout:
            if pending:
                yield pending
            return
        time.sleep(poll)


def _parquet_rows(path: Path, poll: float, idle_timeout: float | None) -> Iterator[tuple[list[str], list]]:
    """`(header, row)` of a Parquet file rewritten with more rows; re-read when it changes."""
    seen, signature, last_growth = 0, None, time.monotonic()
    while True:
        stat = path.stat() if path.exists() else None
        current = None if stat is None else (stat.st_size, stat.st_mtime_ns)
        if current is not None and current != signature:
            try:
                table = pq.read_table(path)
            except Exception:  # noqa: BLE001 - a file caught mid-write; read it at the next poll
                table = None
            if table is not None:
                signature = current
                if table.num_rows > seen:
                    columns = table.column_names
                    for row in table.slice(seen).to_pylist():
                        yield columns, [row[name] for name in columns]
                    seen = table.num_rows
                    last_growth = time.monotonic()
        if idle_timeout is not None and time.monotonic() - last_growth >= idle_timeout:
            return
        time.sleep(poll)


class FollowReport:
    """Counts of a follow run: rows read, forecasts written, rows skipped (with reasons)."""

    def __init__(self):
        self.rows = 0
        self.forecasts = 0
        self.skipped: list[str] = []


def _plan_columns(
    header: list[str], columns: list[str], source: str, routed: bool = False, required: list[str] | None = None
) -> tuple[list[int | None], int | None, int | None]:
    """Where each run column sits in `header` (None: a column no feature reads, absent: 0), the
    timestamp column (by name, else the first other one) and, when `routed`, the instrument column."""
    missing = [name for name in (columns if required is None else required) if name not in header]
    if missing:
        raise DataValidationError(f"{source}: header {header} lacks the run's columns {missing}; the run was trained on {columns}")
    instrument = next((header.index(name) for name in INSTRUMENT_COLUMNS if name in header), None)
    if routed and instrument is None:
        raise DataValidationError(
            f"{source}: header {header} has no instrument column (one of {list(INSTRUMENT_COLUMNS)}) to route rows to "
            f"the run's series"
        )
    others = [i for i, name in enumerate(header) if name not in columns and (i != instrument or not routed)]
    named = [i for i in others if header[i].lower() in TIMESTAMP_NAMES]
    plan = [header.index(name) if name in header else None for name in columns]
    return plan, (named or others or [None])[0], instrument if routed else None


def follow_stream(
    predictor,
    source: str | Path,
    out: TextIO,
    *,
    target_names: list[str],
    max_rows: int | None = None,
    idle_timeout: float | None = None,
    poll: float = 0.05,
    report_skip=None,
) -> FollowReport:
    """Forecast every row of `source` (a growing CSV/Parquet file, or "-" for stdin) into `out`.

    Args:
        predictor: a `StreamingPredictor` with `column_names` set; with several instruments the
            rows are routed by their instrument column.
        source: file path, or "-" for standard input (CSV).
        out: text stream for the forecast CSV: `row` (the 0-based data row, as in `longstm
            predict`; malformed rows count), the timestamp column if the input has one, the
            instrument column when routed, then `target_names`; flushed after every row.
        max_rows: stop after this many data rows (good and malformed).
        idle_timeout: stop when the file has not grown for this many seconds (None: never).
        poll: seconds between looks at a file that has not grown.
        report_skip: called with a message for each malformed row (default: stderr).
    """
    routed = predictor.n_instruments > 1
    columns = predictor.column_names
    if columns is None:
        raise ConfigError("follow needs a predictor that knows its column names (StreamingPredictor.from_run)")
    report_skip = report_skip or (lambda message: error_console.print(f"[yellow]skipped:[/] {message}", highlight=False))
    report = FollowReport()
    writer = csv.writer(out)
    is_stdin = str(source) == "-"
    path = None if is_stdin else Path(source)
    if path is not None and not path.exists():
        raise DataValidationError(f"{path}: no such file to follow")

    def records() -> Iterator[tuple[int, list[str] | None, list]]:
        """`(line_number, header_or_None, fields)`; the header comes first with fields=[]."""
        if path is not None and path.suffix == ".parquet":
            first = True
            for number, (header, row) in enumerate(_parquet_rows(path, poll, idle_timeout), start=1):
                if first:
                    yield 0, header, []
                    first = False
                yield number, None, row
            return
        handle = sys.stdin if is_stdin else open(path, newline="")
        try:
            header = None
            for number, line in enumerate(_growing_lines(handle, poll, idle_timeout, is_stdin), start=1):
                if not line.strip():
                    continue
                fields = next(csv.reader(io.StringIO(line)))
                if header is None:
                    header = [name.strip() for name in fields]
                    yield number, header, []
                    continue
                yield number, None, fields
        finally:
            if not is_stdin:
                handle.close()

    pipeline = predictor.feature_pipeline
    needs_time = pipeline is not None and pipeline.needs_timestamps
    plan, stamp, instrument = None, None, None
    for number, header, fields in records():
        if header is not None:
            required = None if pipeline is None else pipeline.required_columns
            plan, stamp, instrument = _plan_columns(header, columns, str(source), routed, required)
            if needs_time and stamp is None:
                raise DataValidationError(
                    f"{source}: the run's feature pipeline needs timestamps, and header {header} has no timestamp column "
                    f"(expected one of {list(TIMESTAMP_NAMES)})"
                )
            ids = [header[stamp]] if stamp is not None else []
            ids += [header[instrument]] if instrument is not None else []
            writer.writerow(["row"] + ids + list(target_names))
            out.flush()
            width, header_names = len(header), header
            continue
        report.rows += 1
        problem, values = None, []
        if len(fields) != width:
            problem = f"has {len(fields)} fields, the header has {width}"
        else:
            for name, index in zip(columns, plan):
                if index is None:  # an input column no feature reads
                    values.append(0.0)
                    continue
                value = fields[index]
                try:
                    number_value = float(value)
                except (TypeError, ValueError):
                    problem = f"column {name!r}: expected a number, got {value!r}"
                    break
                if not math.isfinite(number_value):
                    problem = f"column {name!r}: expected a finite number, got {value!r}"
                    break
                values.append(number_value)
        where = f"line {number}" if not (path is not None and path.suffix == ".parquet") else f"row {number - 1}"
        stamps = None
        if problem is None and needs_time:
            try:
                stamps = [parse_stamp(fields[stamp], str(source), header_names[stamp])]
            except DataValidationError:
                problem = f"column {header_names[stamp]!r}: expected a timestamp, got {fields[stamp]!r}"
        if problem is None:
            try:
                if instrument is None:
                    forecast = predictor.update(values, stamps)
                else:
                    forecast = predictor.update_instrument(fields[instrument], values, None if stamps is None else stamps[0])
            except DataValidationError as error:
                problem = str(error)
        if problem is not None:
            name = "stdin" if is_stdin else str(source)
            report.skipped.append(f"{name} {where}: {problem}")
            report_skip(f"{name} {where}: {problem}")
        else:
            ids = [fields[stamp]] if stamp is not None else []
            ids += [fields[instrument]] if instrument is not None else []
            writer.writerow([report.rows - 1] + ids + [repr(float(v)) for v in forecast])
            out.flush()
            report.forecasts += 1
        if max_rows is not None and report.rows >= max_rows:
            break
    return report
