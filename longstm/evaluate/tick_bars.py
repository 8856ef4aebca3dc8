"""A model trained on bars, scored on the ticks the bars were made from.

The tick protocol (`longstm.evaluate.ticks`) scores every model on the same test ticks, so a
model trained on a bar store (`longstm data bars`) must give a forecast at each tick. It gives
the forecast of the last bar stamped at or before the tick (an as-of join): a bar is stamped
at its interval's end, when all its ticks are past, so a tick never sees a forecast made from
data after it. A bar only serves ticks of its own session (its stamp is after the session's
first tick; with bars no longer than the session gap, that bar holds ticks of this session
only); a tick before its session's first bar, or whose bar has no forecast (before the test
part), gets none (NaN: the protocol scores it as 0, does not trade on it, and counts it). The
bar model's own sessions split where the ticks' do (a bar store's `tick_gap` column,
`longstm.data.bars`), so its state and targets never run across a tick session break.

`longstm eval ticks --model CONFIG` treats CONFIG as a bar model when its `data.path` is a bar
store (its `store.json` names its source, `longstm.data.bars.bar_source`); the bar store must
have been made from the `--data` store as it is now (`check_bar_store`).

Example:

>>> check_bar_store("runs/ticks_1s.store", store, "configs/ticks_bars_lstm.toml")      # doctest: +SKIP
>>> lookup = bar_lookup(store, predict_panel(run_dir, part="test"), session_gap="1h")  # doctest: +SKIP
>>> lookup("fxcm_eurusd", "60s", test_rows)                                            # bp, NaN: no forecast  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from longstm.data.bars import bar_source, check_bar_sessions, remake_advice, source_runs
from longstm.data.store import Store
from longstm.errors import DataValidationError
from longstm.evaluate.ticks import BASIS_POINTS, forecast_column


def check_bar_store(path, store: Store, where: str, session_gap: str = "1h") -> dict | None:
    """What the bar store at `path` was made from, or None when `path` is not a bar store (a
    list of raw sources, a tick store, a file).

    Raises:
        DataValidationError: the bars were made from another store, or from `store` before
            more was converted into it (its run files differ), or their sessions under
            `session_gap` would not be the ticks' (`longstm.data.bars.check_bar_sessions`: bars
            without a `tick_gap` column, bars not shorter than the gap, a calendar rule).
    """
    if isinstance(path, list):
        return None
    meta = bar_source(path)
    if meta is None:
        return None
    remake = remake_advice(store.path, meta["every"])
    if meta["source"] != str(store.path.resolve()):
        raise DataValidationError(f"{where}: data.path {path} holds bars made from {meta['source']}, not from the --data store "
                                  f"{store.path.resolve()}; {remake}")
    if meta["source_runs"] != source_runs(store):
        raise DataValidationError(f"{where}: data.path {path} holds bars made from {store.path} before its last conversion "
                                  f"(runs {meta['source_runs']}, now {source_runs(store)}); {remake}")
    return check_bar_sessions(path, where, session_gap)


def as_of(bar_stamps: np.ndarray, tick_stamps: np.ndarray, session_first: np.ndarray) -> np.ndarray:
    """For each tick, the index of the last bar stamped at or before it within its session (the
    bar's stamp after `session_first`, the time of the session's first tick); -1 where none.

    Example:

    >>> as_of(np.array([10, 20, 30]), np.array([5, 10, 19, 35, 36]), np.array([0, 0, 0, 0, 32]))
    array([-1,  0,  0,  2, -1])
    """
    index = np.searchsorted(bar_stamps, tick_stamps, side="right") - 1
    ok = (index >= 0) & (bar_stamps[np.maximum(index, 0)] > session_first)
    return np.where(ok, index, -1)


def bar_lookup(store: Store, frame: pd.DataFrame, session_gap: str) -> Callable[[str, str, np.ndarray], np.ndarray]:
    """A bar model's forecasts (`longstm.train.panel.predict_panel`'s frame on the bar store)
    as `lookup(series, horizon, rows)` at rows of the tick store `store`, in bp; NaN where no
    bar forecast is in force (see `as_of`)."""
    by_series = {name: part.sort_values("timestamp") for name, part in frame.groupby("series")}
    # Session starts and their times, found once per series (a scan of all its timestamps), not
    # once per horizon; small, unlike the timestamps themselves, which are read per call.
    session_starts: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def lookup(series: str, horizon: str, rows: np.ndarray) -> np.ndarray:
        bars, column = forecast_column(by_series, series, horizon, "the bar model's")
        ticks = store.series(series)
        stamps = ticks.timestamps()
        if series not in session_starts:
            starts = ticks.sessions(session_gap)
            session_starts[series] = starts, stamps[starts]
        starts, start_stamps = session_starts[series]
        session_first = start_stamps[np.searchsorted(starts, rows, side="right") - 1]
        bar_stamps = pd.DatetimeIndex(bars["timestamp"]).as_unit("ns").asi8
        index = as_of(bar_stamps, stamps[rows], session_first)
        forecasts = BASIS_POINTS * bars[column].to_numpy(np.float64)
        return np.where(index >= 0, forecasts[np.maximum(index, 0)], np.nan)

    return lookup
