"""Raw sources as `data.path`: converted once into a store inside the run directory.

`data.path` may name a folder, a glob or a list of raw sources (CSV/Parquet long tables with a
series-id column, hive-partitioned Parquet, vendor tick zips). `longstm train` then converts
them with `longstm.data.store.convert` (the same streaming conversion as `longstm data convert`,
batch by batch, with a progress bar) into `RUN/store`, and the run's saved config names that
store: resume, `longstm evaluate`, `predict` and serving read it, and a resumed run reuses it
instead of converting again. `convert` publishes its shards atomically, so a conversion killed
part-way leaves no half store looking valid; the next attempt starts it again.

Reading keys: `data.tz`, a table PATTERN = ZONE for naive timestamps (as `longstm data convert
--tz`); vendor tick zips hold local times, so each must match a pattern (there is no safe
default). `data.series_column` names a long table's series-id column (default: detected).

One run converting its own copy is the convenient path for one machine. For 10^9 rows and more,
or several runs on the same data, convert once with `longstm data convert` (several processes
into one store; docs/distributed.md) and set `data.path` to that store. Multi-worker runs need
that: every worker must read the same store.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from longstm.data.sources import discover, zone_for
from longstm.data.store import convert, is_store
from longstm.errors import ConfigError

STORE_FOLDER = "store"


def is_raw_sources(path: str | Path | Sequence[str]) -> bool:
    """True for a list, a glob, or a folder that is not a store: what `store_in_run` converts."""
    if isinstance(path, (list, tuple)):
        return True
    text = str(path)
    return not is_store(text) and (Path(text).is_dir() or any(char in text for char in "*?["))


def store_in_run(config, sources: str | Path | Sequence[str], run_path: Path, *, progress: bool, chief: bool) -> Path:
    """The store `RUN/store` converted from `sources` (reused when a complete one is there).

    Raises:
        ConfigError: a non-chief worker (convert once, beforehand), a tick zip whose local
            time zone `data.tz` does not name.
        DataValidationError: from the conversion, naming the file, row and column.
    """
    store = Path(run_path) / STORE_FOLDER
    if is_store(store) and any(store.glob("*/*")):  # converted by an earlier attempt of this run
        return store
    if not chief:
        raise ConfigError(
            f"{config.source}: under a multi-worker strategy data.path must be a store every worker reads; "
            f"convert the sources once first: `longstm data convert {_shown(sources)} --out STORE`"
        )
    zones = dict(config.data.tz)
    found = discover(list(sources) if isinstance(sources, (list, tuple)) else sources, tz=zones or None)
    unplaced = sorted({s.series for s in found if s.layout == "ticks" and zone_for(s.path, zones) is None})
    if unplaced:
        raise ConfigError(
            f"{config.source}: tick zips hold local times; data.tz must name the zone of {', '.join(unplaced)}, "
            f"e.g. data.tz = {{ \"{unplaced[0]}\" = \"-05:00\" }}"
        )
    if store.exists():  # an attempt killed before its first shard was published: start again
        shutil.rmtree(store)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not progress) as bar:
        task = bar.add_task(f"converting data.path into {store}", total=len(found))
        convert(found, store, series_column=config.data.series_column or None, on_source=lambda source, rows: bar.advance(task))
    return store


def _shown(sources) -> str:
    return " ".join(map(str, sources)) if isinstance(sources, (list, tuple)) else str(sources)
