"""LOBSTER message + order-book files turned into event or bar features.

A LOBSTER sample is two header-less CSVs with one row per event:

- `TICKER_DATE_START_END_message_N.csv`: time (seconds after midnight), type (1 new limit
  order, 2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution, 7 halt), order
  id, size, price (USD x 10000), direction (1 buy limit order, -1 sell limit order).
- `TICKER_DATE_START_END_orderbook_N.csv`: the book after each event, N levels of
  (ask price, ask size, bid price, bid size).

Event features (one row per message):

- `mid_price`: (best ask + best bid) / 2, USD.
- `spread`: best ask - best bid, USD.
- `imbalance`: (bid size - ask size) / (bid size + ask size) summed over the N levels, in [-1, 1].
- `signed_volume`: shares traded by the event, + for buyer-initiated (an execution against a sell
  limit order), - for seller-initiated, 0 for events that are not executions.
- `dt`: seconds since the previous event (0 for the first).

With `bar="1s"` (any pandas frequency) events are aggregated to time bars labelled by their
end: the book state (`mid_price`, `spread`, `imbalance`) is the last one in the bar (carried
forward through empty bars), `signed_volume` and `volume` are summed, `events` counts messages.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from longstm.data.series import TimeSeries
from longstm.data.validation import DataWarning, _rows, check_timestamps_ordered
from longstm.errors import DataValidationError

MESSAGE_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")
EVENT_FEATURES = ("mid_price", "spread", "imbalance", "signed_volume", "dt")
BAR_FEATURES = ("mid_price", "spread", "imbalance", "signed_volume", "volume", "events")
EXECUTION_TYPES = (4, 5)
PRICE_SCALE = 10_000.0
DUMMY_PRICE = 9_999_999_999  # LOBSTER's placeholder price for an empty book side

_NAME = re.compile(r"^(?P<ticker>.+?)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_message_(?P<levels>\d+)\.csv(\.gz)?$")


@dataclass
class LobsterSeries(TimeSeries):
    """A `TimeSeries` of LOBSTER features that also keeps them in float64.

    LOBSTER prices are integers x 10^4 USD, and float32 (`values`, what models read) holds about
    seven digits: at $220 its mid is off by up to 7e-6 USD, at $100,000 it cannot tell a mid
    from one half a cent away. Labels and returns are computed from `values64`, in which every
    mid is exact to 1e-4 USD; only model inputs are cast.

    Args:
        values64: the features in float64, the same shape as `values`.
        (the rest as `TimeSeries`; `values` is `values64` cast to float32.)
    """

    values64: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.values64 is not None and np.shape(self.values64) != self.values.shape:
            raise DataValidationError(
                f"{self.source}: values64 must have the shape of values {self.values.shape}, got {np.shape(self.values64)}"
            )


def orderbook_path(message_path: Path) -> Path:
    """The order-book file that belongs to a LOBSTER message file (same name, `orderbook`)."""
    return message_path.with_name(message_path.name.replace("_message_", "_orderbook_"))


def _read(path: Path, columns: int, what: str) -> np.ndarray:
    try:
        frame = pd.read_csv(path, header=None)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataValidationError(f"{path}: cannot read as a LOBSTER {what} file: {error}") from error
    if frame.shape[1] != columns:
        raise DataValidationError(
            f"{path}: a LOBSTER {what} file needs {columns} columns here, got {frame.shape[1]}"
        )
    for j in range(columns):
        if not pd.api.types.is_numeric_dtype(frame[j]):
            coerced = pd.to_numeric(frame[j], errors="coerce")
            bad = np.flatnonzero(coerced.isna().to_numpy())
            raise DataValidationError(
                f"{path}: column {j} is not numeric, row {bad[0]} holds {frame[j].iloc[bad[0]]!r} "
                f"(LOBSTER files have no header)"
            )
    return frame.to_numpy(np.float64)


def load_lobster(
    message_path: str | Path,
    *,
    bar: str | None = None,
    levels: int | None = None,
    columns: Sequence[str] | None = None,
) -> LobsterSeries:
    """Read a LOBSTER message file and its order book into event (or bar) features.

    Args:
        message_path: the `..._message_N.csv` file; the `..._orderbook_N.csv` beside it is read too.
        bar: None for one row per event, or a pandas frequency (`"1s"`, `"100ms"`) for time bars.
        levels: book levels in the order-book file; default N from the file name.
        columns: features to keep (default all, see the module docstring).

    Returns:
        A `LobsterSeries`: float32 `values` for models and the same features in float64
        (`values64`, mid prices exact) for labels. Event series have tied timestamps (several
        messages in one nanosecond) and no gap checks; bar series are regular.
    """
    message_path = Path(message_path)
    match = _NAME.match(message_path.name)
    if match is None:
        raise DataValidationError(
            f"{message_path}: not a LOBSTER message file name; expected TICKER_YYYY-MM-DD_START_END_message_N.csv"
        )
    levels = int(match["levels"]) if levels is None else int(levels)
    book_path = orderbook_path(message_path)
    if not book_path.exists():
        raise DataValidationError(f"{message_path}: the matching order-book file {book_path.name} is not beside it")
    messages = _read(message_path, len(MESSAGE_COLUMNS), "message")
    book = _read(book_path, 4 * levels, f"order-book ({levels} levels)")
    if len(messages) != len(book):
        raise DataValidationError(
            f"{message_path}: {len(messages)} messages but {len(book)} order-book rows in {book_path.name}; "
            f"they must pair up row by row"
        )
    source = str(message_path)
    day = np.datetime64(match["date"], "ns")
    timestamps = day + np.round(messages[:, 0] * 1e9).astype(np.int64).astype("timedelta64[ns]")
    check_timestamps_ordered(timestamps, source, allow_ties=True, column="time (column 0)")

    ask_prices, ask_sizes = book[:, 0::4], book[:, 1::4]
    bid_prices, bid_sizes = book[:, 2::4], book[:, 3::4]
    # In USD x 10^4, whole numbers: their sum and difference are exact, and one division rounds the
    # mid to the float64 nearest its true value.
    best_ask = np.where(np.abs(ask_prices[:, 0]) >= DUMMY_PRICE, np.nan, ask_prices[:, 0])
    best_bid = np.where(np.abs(bid_prices[:, 0]) >= DUMMY_PRICE, np.nan, bid_prices[:, 0])
    empty = np.flatnonzero(np.isnan(best_ask) | np.isnan(best_bid))
    if empty.size:
        warnings.warn(
            f"{book_path}: {empty.size} events with an empty book side (rows {_rows(empty)}); "
            f"mid price and spread carried forward there",
            DataWarning,
            stacklevel=3,
        )
    bid_depth, ask_depth = bid_sizes.sum(axis=1), ask_sizes.sum(axis=1)
    depth = bid_depth + ask_depth
    kind = messages[:, 1].astype(np.int64)
    is_execution = np.isin(kind, EXECUTION_TYPES)
    events = pd.DataFrame(
        {
            "mid_price": (best_ask + best_bid) / (2 * PRICE_SCALE),
            "spread": (best_ask - best_bid) / PRICE_SCALE,
            "imbalance": np.divide(bid_depth - ask_depth, depth, out=np.zeros_like(depth), where=depth > 0),
            # An execution of a sell limit order (direction -1) is a buyer-initiated trade.
            "signed_volume": np.where(is_execution, -messages[:, 5] * messages[:, 3], 0.0),
            "volume": np.where(is_execution, messages[:, 3], 0.0),
            "dt": np.diff(messages[:, 0], prepend=messages[0, 0]),
            "events": 1.0,
        },
        index=pd.DatetimeIndex(timestamps),
    )
    events[["mid_price", "spread"]] = events[["mid_price", "spread"]].ffill()
    if events["mid_price"].isna().any():
        first = int(np.flatnonzero(events["mid_price"].notna().to_numpy())[0]) if events["mid_price"].notna().any() else len(events)
        raise DataValidationError(f"{book_path}: the book has an empty side from row 0 to row {first - 1}; no mid price there")

    if bar is None:
        names = list(EVENT_FEATURES)
        frame = events
        stamps = timestamps
    else:
        names = list(BAR_FEATURES)
        try:
            grouped = events.resample(bar, closed="left", label="right", origin="start_day")
        except ValueError as error:
            raise DataValidationError(f"bar={bar!r} is not a pandas frequency like '1s' or '100ms': {error}") from error
        frame = pd.concat(
            [
                grouped[["mid_price", "spread", "imbalance"]].last().ffill(),
                grouped[["signed_volume", "volume", "events"]].sum(),
            ],
            axis=1,
        )
        stamps = frame.index.to_numpy("datetime64[ns]")
    if columns is not None:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise DataValidationError(f"{source}: no LOBSTER feature(s) {unknown}; available: {', '.join(names)}")
        names = list(columns)
    values64 = frame[names].to_numpy(np.float64)
    return LobsterSeries(values64.astype(np.float32), names, stamps, source=source, values64=values64)
