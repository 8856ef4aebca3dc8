"""(lookback, horizon) windows served lazily: index views gathered one batch at a time.

A window starting at row `s` is the input `values[s : s + L]` and the target
`values[s + L : s + L + H]`. Nothing here materialises all windows: `WindowIndex` describes
the valid starts as a few runs (one per segment, so no window crosses a segment start), and
each batch is gathered from the base array (which may be a memmap) when it is needed. Memory
is one batch plus, when shuffling, a permutation of 4 bytes per window.

- `WindowIndex`: which windows exist, and the start row of window number `i`.
- `gather_windows`: the (x, y) arrays for some start rows (NumPy).
- `iter_window_batches`: NumPy batches in order (no TensorFlow needed; used by evaluation).
- `window_dataset`: the same as a `tf.data.Dataset` of (x, y), optionally shuffled per epoch.

Example:

    train = window_dataset(series, lookback=336, horizon=96, stop=8640,
                           batch_size=32, shuffle=True, seed=0, scaler=scaler)
    model.fit(train, epochs=10)
"""

from __future__ import annotations

import threading
from typing import Iterator, Sequence

import numpy as np

from longstm.data.scaling import StandardScaler
from longstm.data.series import TimeSeries
from longstm.errors import DataValidationError


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataValidationError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class WindowIndex:
    """The windows of `lookback + horizon` rows that lie inside `[start, stop)` and inside one segment.

    Args:
        n_rows: rows of the series.
        lookback: input rows L.
        horizon: target rows H.
        start, stop: the row range windows must lie in (a split part), default all rows.
        segments: segment start rows (windows never cross one); default `[0]`.
        stride: rows between consecutive window starts.

    Window `i` (0 <= i < len(index)) starts at `index.starts([i])[0]`; starts increase with `i`.
    """

    def __init__(self, n_rows: int, lookback: int, horizon: int, *, start: int = 0, stop: int | None = None,
                 segments: Sequence[int] | np.ndarray | None = None, stride: int = 1):
        self.lookback = _positive("lookback", lookback)
        self.horizon = _positive("horizon", horizon)
        self.stride = _positive("stride", stride)
        stop = n_rows if stop is None else stop
        if not 0 <= start <= stop <= n_rows:
            raise DataValidationError(f"window range [{start}, {stop}) must lie inside the series' {n_rows} rows")
        segments = np.zeros(1, np.int64) if segments is None else np.asarray(segments, np.int64)
        bounds = np.append(segments, n_rows)
        firsts, counts = [], []
        width = self.lookback + self.horizon
        for seg_start, seg_stop in zip(bounds[:-1], bounds[1:]):
            lo, hi = max(seg_start, start), min(seg_stop, stop)
            count = (hi - lo - width) // self.stride + 1 if hi - lo >= width else 0
            if count > 0:
                firsts.append(lo)
                counts.append(count)
        self.n_rows, self.start, self.stop = int(n_rows), int(start), int(stop)
        self.firsts = np.asarray(firsts, np.int64)
        self.counts = np.asarray(counts, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def starts(self, ordinals: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Start rows of windows number `ordinals` (all windows when None: 8 bytes each)."""
        ordinals = np.arange(len(self), dtype=np.int64) if ordinals is None else np.asarray(ordinals, np.int64)
        run = np.searchsorted(self.offsets, ordinals, side="right") - 1
        return self.firsts[run] + (ordinals - self.offsets[run]) * self.stride

    def require(self, at_least: int = 1, what: str = "") -> None:
        """Raise unless there are `at_least` windows, explaining the sizes involved."""
        if len(self) < at_least:
            raise DataValidationError(
                f"{what or 'series'}: rows [{self.start}, {self.stop}) give {len(self)} windows of lookback "
                f"{self.lookback} + horizon {self.horizon} (inside segments), need at least {at_least}"
            )


class _EpochPermutations:
    """The window order of the current epoch, rebuilt when a new epoch seed arrives."""

    def __init__(self, total: int):
        self.total = total
        self.seed: int | None = None
        self.order: np.ndarray | None = None
        self.lock = threading.Lock()

    def get(self, epoch_seed: int) -> np.ndarray:
        with self.lock:
            if epoch_seed != self.seed:
                self.order = None  # free the old order before drawing the new one
                order = np.arange(self.total, dtype=np.int32 if self.total < 2**31 else np.int64)
                np.random.default_rng(epoch_seed % 2**63).shuffle(order)
                self.seed, self.order = epoch_seed, order
            return self.order


def _column_indices(series: TimeSeries | np.ndarray, columns) -> list[int] | None:
    if columns is None:
        return None
    if isinstance(columns, (str, int, np.integer)):
        columns = [columns]
    if isinstance(series, TimeSeries):
        return [c if isinstance(c, (int, np.integer)) else series.column_index(c) for c in columns]
    if not all(isinstance(c, (int, np.integer)) for c in columns):
        raise DataValidationError(f"columns of a plain array are given by position, got {list(columns)}")
    return [int(c) for c in columns]


def gather_windows(values: np.ndarray, starts: np.ndarray, lookback: int, horizon: int, *,
                   input_columns: Sequence[int] | None = None, target_columns: Sequence[int] | None = None,
                   scaler: StandardScaler | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs `(B, L, F_in)` and targets `(B, H, F_out)` (float32) for windows at `starts`.

    Only these B windows are copied out of `values`; `scaler` (fitted on all columns of
    `values`) is applied to the copies.
    """
    starts = np.asarray(starts, np.int64)
    rows = starts[:, None] + np.arange(lookback + horizon)
    block = np.asarray(values[rows.reshape(-1)]).reshape(len(starts), lookback + horizon, values.shape[1])
    if scaler is not None:
        block = scaler.transform(block)
    x, y = block[:, :lookback], block[:, lookback:]
    if input_columns is not None:
        x = x[:, :, input_columns]
    if target_columns is not None:
        y = y[:, :, target_columns]
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32)


def _prepare(series, lookback, horizon, start, stop, stride, input_columns, target_columns):
    values = series.values if isinstance(series, TimeSeries) else series
    if not isinstance(values, np.ndarray) or values.ndim != 2:
        raise DataValidationError(f"windows need a TimeSeries or a (rows, features) array, got {type(series).__name__}")
    segments = series.segments if isinstance(series, TimeSeries) else None
    index = WindowIndex(len(values), lookback, horizon, start=start, stop=stop, segments=segments, stride=stride)
    index.require(1, series.source if isinstance(series, TimeSeries) else "array")  # an empty epoch is a mistake
    return values, index, _column_indices(series, input_columns), _column_indices(series, target_columns)


def iter_window_batches(series: TimeSeries | np.ndarray, lookback: int, horizon: int, *, start: int = 0,
                        stop: int | None = None, batch_size: int = 32, drop_remainder: bool = False,
                        stride: int = 1, input_columns=None, target_columns=None,
                        scaler: StandardScaler | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """NumPy (x, y) batches of the windows in `[start, stop)`, in order. See `window_dataset`."""
    values, index, inputs, targets = _prepare(series, lookback, horizon, start, stop, stride, input_columns, target_columns)
    batch_size = _positive("batch_size", batch_size)
    total = len(index) - (len(index) % batch_size if drop_remainder else 0)
    for first in range(0, total, batch_size):
        ordinals = np.arange(first, min(first + batch_size, total))
        yield gather_windows(values, index.starts(ordinals), index.lookback, index.horizon,
                             input_columns=inputs, target_columns=targets, scaler=scaler)


def window_dataset(series: TimeSeries | np.ndarray, lookback: int, horizon: int, *, start: int = 0,
                   stop: int | None = None, batch_size: int = 32, shuffle: bool = False, seed: int | None = None,
                   drop_remainder: bool = False, stride: int = 1, input_columns=None, target_columns=None,
                   scaler: StandardScaler | None = None, prefetch: int = 2):
    """A `tf.data.Dataset` of `(x, y)` window batches gathered lazily from `series`.

    Args:
        series: a `TimeSeries` (windows never cross its segment starts) or a `(rows, features)`
            array; a memmap is read batch by batch, never loaded whole.
        lookback: input rows L per window.
        horizon: target rows H per window.
        start, stop: rows the windows must lie in, e.g. `split.val` unpacked.
        batch_size: windows per batch.
        shuffle: visit the windows in a new random order every epoch (every iteration of the
            dataset); costs a permutation of 4 bytes per window (8 above 2**31 windows).
        seed: makes the sequence of epoch orders reproducible.
        drop_remainder: drop the last incomplete batch (static batch size).
        stride: rows between consecutive window starts.
        input_columns, target_columns: names (for a `TimeSeries`) or positions of the columns in
            x and y; default all columns.
        scaler: a fitted `StandardScaler` over all columns, applied per batch.
        prefetch: batches prepared ahead.

    Returns:
        A dataset of `(x, y)`: x float32 `(B, L, F_in)`, y float32 `(B, H, F_out)`, with known
        cardinality (batches per epoch).
    """
    values, index, inputs, targets = _prepare(series, lookback, horizon, start, stop, stride, input_columns, target_columns)
    batch_size = _positive("batch_size", batch_size)
    import tensorflow as tf  # after the argument checks, so bad arguments fail fast

    total = len(index)
    full, remainder = divmod(total, batch_size)
    num_batches = full + (1 if remainder and not drop_remainder else 0)
    permutations = _EpochPermutations(total)

    # Each element names one batch: (epoch seed, batch number). The order of an epoch is a
    # permutation kept in NumPy (4 bytes per window), drawn from a seed that tf.data redraws
    # every time the dataset is iterated again.
    if shuffle:
        epoch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    else:
        epoch_seeds = tf.data.Dataset.from_tensors(tf.constant(-1, tf.int64))
    batch_keys = epoch_seeds.flat_map(
        lambda epoch_seed: tf.data.Dataset.range(num_batches).map(lambda b: tf.stack([epoch_seed, b]))
    ).apply(tf.data.experimental.assert_cardinality(num_batches))

    in_features = values.shape[1] if inputs is None else len(inputs)
    out_features = values.shape[1] if targets is None else len(targets)
    static_batch = batch_size if drop_remainder else None

    def gather(key: np.ndarray):
        epoch_seed, batch = int(key[0]), int(key[1])
        first, last = batch * batch_size, min((batch + 1) * batch_size, total)
        if shuffle:
            ordinals = permutations.get(epoch_seed)[first:last]
        else:
            ordinals = np.arange(first, last)
        return gather_windows(values, index.starts(ordinals), index.lookback, index.horizon,
                              input_columns=inputs, target_columns=targets, scaler=scaler)

    def to_tensors(key):
        x, y = tf.numpy_function(gather, [key], [tf.float32, tf.float32], stateful=False)
        x.set_shape([static_batch, index.lookback, in_features])
        y.set_shape([static_batch, index.horizon, out_features])
        return x, y

    dataset = batch_keys.map(to_tensors)
    return dataset.prefetch(prefetch) if prefetch else dataset
