"""Lanes and TBPTT(k1, k2) windows over a long series, served through `tf.data`.

A series of N rows (possibly several segments, possibly a memory-mapped `.npy` far larger
than RAM) is cut into B contiguous *lanes* that are processed side by side, one window per
lane per update:

    lane 0: |--w0--|--w1--|--w2--| ...      rows [0, N/B)
    lane 1: |--w0--|--w1--|--w2--| ...      rows [N/B, 2N/B)
    ...

TBPTT(k1, k2) windows (Williams & Peng): every window reads k2 steps of its lane, the loss
covers its last k1 steps (the first k2 - k1 are context the gradient still flows through),
and the state carried to the next window is the state after the first k1 steps, where the
next window starts. Consecutive windows of a lane therefore start k1 rows apart and their
loss regions tile the lane without gaps or double counting. k1 = k2 is classic TBPTT.

Policies (all deliberate, all without retracing: shapes never change, resets are masks):

- **Segments.** `segments` are the rows where a new independent piece of series starts
  (a gap, a new series in a multi-series file). A window never straddles a segment
  boundary: the last window of a segment is padded with zeros past the segment's end (loss
  masked there) and the next window of that lane starts at the next segment with its
  `reset` flag set, so the trainer zeroes that lane's state before the window. Resets
  therefore only happen at window starts.
- **Lane starts.** Every lane starts with a reset (zero state). A lane that begins in the
  middle of a segment first reads up to `burn_in` (at least k2 - k1) rows *before* its
  first loss row, from the same segment, with the loss masked: its state is warmed up on
  the past, never on the future, and no row loses its loss.
- **Burn-in.** After a reset at a true segment start, the first `max(burn_in, k2 - k1)`
  steps are run with the loss masked (with k1 < k2 the first window's context steps
  cannot carry a loss: nothing runs before them). Validation and test use the same mechanism with a larger
  `burn_in` (their "warm-up"): each lane runs over the rows preceding it, e.g. the end of
  the training split, before its loss counts.
- **Tail.** Lanes carry nearly equal numbers of loss rows (cut at multiples of k1); lanes
  that run out of windows before the others get empty windows (all-zero inputs, loss
  mask 0, reset set). Nothing else is dropped: every other target row gets exactly one
  loss term per epoch.

Targets: `offset`-step-ahead values of the target columns (`offset=1` is next-step
forecasting). With `horizon=H > 1` each step predicts the H values at
`t+offset, ..., t+offset+H-1` (direct multi-horizon); the target vector is horizon-major,
index `h * n_targets + j`. A row only carries a loss if all its targets lie inside its
segment.

Each batch is gathered from the base array with one read of `k2 + offset + H - 1` rows per
lane. `np.memmap` bases and `.npy` files (`open_npy`) are read with positioned reads
(`os.pread`) instead of through the mapping, so an epoch over a 10^7-row file does not leave
320 MB of file pages resident in the process: memory stays O(B * k2), not O(N).

Example:

>>> lanes = LaneWindows(values, lanes=16, k1=256, k2=256, target_columns=[0])
>>> for batch in lanes.dataset():        # dict of x, y, mask, reset, start
...     ...
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from longstm.errors import DataValidationError


class NpyRows:
    """Rows of a 2-D C-ordered `.npy` file (or an `np.memmap`), read on demand with `os.pread`.

    Behaves like a read-only array for row slices: `rows[a:b]` returns a fresh
    `(b - a, F)` array; nothing else of the file is held in memory or mapped.

    Args:
        path: the `.npy` file (or the raw file behind a memmap).
        shape: `(rows, features)`; read from the header when `offset` is None.
        dtype: element type; read from the header when `offset` is None.
        offset: byte offset of row 0 in the file (None: parse the `.npy` header).
    """

    def __init__(self, path, shape=None, dtype=None, offset: int | None = None):
        self.path = os.fspath(path)
        if offset is None:
            with open(self.path, "rb") as handle:
                try:
                    major, _ = np.lib.format.read_magic(handle)
                    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = read_header(handle)
                except ValueError as error:
                    raise DataValidationError(f"{self.path}: not a readable .npy file ({error}).") from error
                offset = handle.tell()
            if fortran:
                raise DataValidationError(f"{self.path}: expected a C-ordered array; got Fortran order.")
        self.dtype = np.dtype(dtype)
        if len(shape) == 1:
            shape = (shape[0], 1)
        if len(shape) != 2:
            raise DataValidationError(f"{self.path}: expected a 2-D array (rows, features); got shape {tuple(shape)}.")
        self.shape = (int(shape[0]), int(shape[1]))
        self.offset = int(offset)
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 2

    def _descriptor(self) -> int:
        # Opened lazily and per process: a forked tf.data worker must not share an offset.
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __getitem__(self, index):
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"NpyRows supports contiguous row slices only; got {index!r}.")
        start, stop, _ = index.indices(self.shape[0])
        count = max(0, stop - start)
        buffer = os.pread(self._descriptor(), count * self._row_bytes, self.offset + start * self._row_bytes)
        return np.frombuffer(buffer, dtype=self.dtype).reshape(count, self.shape[1]).copy()

    def __getstate__(self):
        return {key: value for key, value in self.__dict__.items() if key != "_fd"} | {"_fd": None}

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


def open_npy(path) -> NpyRows:
    """A `.npy` file of shape `(rows, features)` as a row source that stays on disk."""
    return NpyRows(path)


def as_row_source(values: Any):
    """The base array as something that can be sliced by rows without filling RAM.

    An `np.memmap` over a C-ordered file becomes an `NpyRows` reader (positioned reads instead
    of mapped pages, which would otherwise stay resident); other arrays are returned as is,
    and so is any object with a 2-D `shape` whose `source[a:b]` returns rows `a..b-1` (a
    reader of Arrow or Parquet row groups, say).
    """
    if isinstance(values, NpyRows):
        return values
    # Only a memmap that owns its mapping (np.load(..., mmap_mode="r")) has a trustworthy
    # `offset`; a slice of one keeps its parent's offset, so it is read through the mapping.
    if (
        isinstance(values, np.memmap)
        and isinstance(values.base, mmap.mmap)
        and getattr(values, "filename", None)
        and values.flags.c_contiguous
        and values.ndim in (1, 2)
    ):
        shape = values.shape if values.ndim == 2 else (values.shape[0], 1)
        return NpyRows(values.filename, shape=shape, dtype=values.dtype, offset=int(values.offset))
    if not isinstance(values, np.ndarray) and len(getattr(values, "shape", ())) == 2 and hasattr(values, "__getitem__"):
        return values  # any row source: `shape == (rows, features)` and `source[a:b]` -> array
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataValidationError(f"values must be 2-D (rows, features); got shape {array.shape}.")
    return array


@dataclass(frozen=True)
class _Piece:
    """A stretch of one lane inside one segment: read from `read_start`, loss on [loss_start, loss_end)."""

    read_start: int
    loss_start: int
    loss_end: int
    mask_from: int  # max(loss_start, read_start + burn_in)


class LaneWindows:
    """B lanes of TBPTT(k1, k2) windows over a series, as a fixed-shape `tf.data` pipeline.

    Args:
        values: `(rows, features)` array, `np.memmap` or `NpyRows`.
        lanes: number of lanes B processed side by side (the batch size).
        k1: stride and loss length of a window; the state is carried from step k1.
        k2: length of a window (k2 >= k1); the first k2 - k1 steps are context.
        feature_columns: input columns (default: all).
        target_columns: columns to forecast (default: all).
        offset: forecast distance in rows (1 = next step).
        horizon: number of future values per target column (direct multi-horizon).
        segments: start rows of independent segments (state resets there); 0 is implied.
        rows: `(first, stop)` rows whose targets carry a loss (default: the whole series);
            rows before `first` may be read as warm-up (never rows at or after `stop` as inputs
            that carry loss).
        burn_in: steps run after each reset before the loss counts; a lane starting inside a
            segment reads up to this many rows of the past first.
        mean, std: per-column scaling applied to every gathered row, `(x - mean) / std`.
        weight_column: a column (not scaled) whose value at a row multiplies that row's loss
            mask: 0 for a target that is not valid (a time target past its stretch's end), or
            a series weight. Default None: every row weighs 1.

    Each element of `dataset()` is a dict:
        x: `(B, k2, n_features)` float32 inputs,
        y: `(B, k2, horizon * n_targets)` float32 targets,
        mask: `(B, k2)` float32, 1 where the step carries a loss,
        reset: `(B,)` bool, true where the lane's state must be zeroed before the window,
        start: `(B,)` int64 row of the window's first step (-1 for empty windows).
    """

    def __init__(
        self,
        values: Any,
        *,
        lanes: int,
        k1: int,
        k2: int | None = None,
        feature_columns: Sequence[int] | None = None,
        target_columns: Sequence[int] | None = None,
        offset: int = 1,
        horizon: int = 1,
        segments: Sequence[int] | None = None,
        rows: tuple[int, int] | None = None,
        burn_in: int = 0,
        mean: Any = None,
        std: Any = None,
        weight_column: int | None = None,
    ):
        k2 = k1 if k2 is None else k2
        _check_int("lanes", lanes, 1)
        _check_int("k1", k1, 1)
        _check_int("k2", k2, 1)
        if k1 > k2:
            raise DataValidationError(f"k1 must be <= k2 (the loss covers the last k1 of k2 steps); got k1={k1}, k2={k2}.")
        _check_int("offset", offset, 0)
        _check_int("horizon", horizon, 1)
        _check_int("burn_in", burn_in, 0)
        self.source = as_row_source(values)
        n_rows, n_columns = self.source.shape
        self.feature_columns = _columns("feature_columns", feature_columns, n_columns)
        self.target_columns = _columns("target_columns", target_columns, n_columns)
        self.lanes, self.k1, self.k2 = lanes, k1, k2
        self.offset, self.horizon, self.burn_in = offset, horizon, burn_in
        self.n_rows = n_rows
        first, stop = (0, n_rows) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= first < stop <= n_rows:
            raise DataValidationError(f"rows must satisfy 0 <= first < stop <= {n_rows}; got ({first}, {stop}).")
        self.rows = (first, stop)
        if weight_column is not None and not 0 <= int(weight_column) < n_columns:
            raise DataValidationError(f"weight_column must be a column index in [0, {n_columns}); got {weight_column!r}.")
        self.weight_column = None if weight_column is None else int(weight_column)
        self.segments = _segment_starts(segments, n_rows)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        if (self.mean is None) != (self.std is None):
            raise DataValidationError("mean and std must be given together.")
        if self.std is not None and np.any(self.std <= 0):
            raise DataValidationError(f"std must be positive in every column; got {self.std.tolist()}.")
        self._build_schedule()

    # ---- schedule: which rows each lane reads at each update -------------------------------

    def _segment_ranges(self) -> list[tuple[int, int, int]]:
        """(segment start, first loss row, loss end) of every segment with rows to learn."""
        first, stop = self.rows
        reach = self.offset + self.horizon - 1  # the farthest target of a row, in rows ahead
        bounds = list(self.segments) + [self.n_rows]
        ranges = []
        for seg_start, seg_stop in zip(bounds[:-1], bounds[1:]):
            loss_start = max(seg_start, first)
            loss_end = min(seg_stop - reach, stop)
            if loss_end > loss_start:
                ranges.append((seg_start, loss_start, loss_end))
        return ranges

    def _build_schedule(self) -> None:
        ranges = self._segment_ranges()
        total = sum(end - start for _, start, end in ranges)
        if total == 0:
            raise DataValidationError(
                f"no rows to learn from: rows {self.rows} with offset={self.offset}, horizon={self.horizon} "
                f"leave no target inside any segment."
            )
        per_lane = self.k1 * math.ceil(total / self.lanes / self.k1)
        lane_pieces: list[list[_Piece]] = [[] for _ in range(self.lanes)]
        lane, used = 0, 0
        for seg_start, loss_start, loss_end in ranges:
            cursor = loss_start
            while cursor < loss_end:
                take = min(loss_end - cursor, per_lane - used)
                lookback = max(self.burn_in, self.k2 - self.k1)
                read_start = max(seg_start, cursor - lookback)
                lane_pieces[lane].append(
                    _Piece(read_start, cursor, cursor + take, max(cursor, read_start + self.burn_in))
                )
                cursor += take
                used += take
                if used == per_lane and lane < self.lanes - 1:
                    lane, used = lane + 1, 0
        context = self.k2 - self.k1
        columns = []  # per lane: (start, mask_from, loss_end, reset) arrays, one entry per window
        for pieces in lane_pieces:
            parts = []
            for piece in pieces:
                count = max(1, math.ceil((piece.loss_end - piece.read_start - context) / self.k1))
                start = piece.read_start + self.k1 * np.arange(count, dtype=np.int64)
                reset = np.zeros(count, dtype=bool)
                reset[0] = True
                parts.append((start, np.full(count, piece.mask_from), np.full(count, piece.loss_end), reset))
            columns.append([np.concatenate(field) if parts else np.zeros(0, np.int64) for field in zip(*parts)] if parts else None)
        self.steps = max(len(lane[0]) for lane in columns if lane is not None)
        shape = (self.steps, self.lanes)
        self._start = np.full(shape, -1, dtype=np.int64)
        self._mask_from = np.zeros(shape, dtype=np.int64)
        self._loss_end = np.zeros(shape, dtype=np.int64)
        self._reset = np.ones(shape, dtype=bool)
        for lane, fields in enumerate(columns):
            if fields is None:
                continue
            count = len(fields[0])
            self._start[:count, lane], self._mask_from[:count, lane] = fields[0], fields[1]
            self._loss_end[:count, lane], self._reset[:count, lane] = fields[2], fields[3]
        self.loss_rows = total

    def __len__(self) -> int:
        return self.steps

    @property
    def n_features(self) -> int:
        return len(self.feature_columns)

    @property
    def n_outputs(self) -> int:
        return len(self.target_columns) * self.horizon

    # ---- gathering one update's batch ------------------------------------------------------

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The arrays of update `step` (0 <= step < len(self)), gathered from the base array."""
        k2, reach = self.k2, self.offset + self.horizon - 1
        n_targets = len(self.target_columns)
        x = np.zeros((self.lanes, k2, self.n_features), np.float32)
        y = np.zeros((self.lanes, k2, self.n_outputs), np.float32)
        mask = np.zeros((self.lanes, k2), np.float32)
        positions = np.arange(k2)
        for lane in range(self.lanes):
            start = int(self._start[step, lane])
            if start < 0:
                continue
            loss_end = int(self._loss_end[step, lane])
            # Inputs are read up to loss_end only: past it the lane pads zeros (causal, so
            # the masked padding cannot change the steps before it).
            steps = min(k2, loss_end - start)
            block = np.asarray(self.source[start : start + steps + reach], dtype=np.float32)
            weight = None if self.weight_column is None else block[:steps, self.weight_column].copy()
            if self.mean is not None:
                block = (block - self.mean) / self.std
            x[lane, :steps] = block[:steps, self.feature_columns]
            for h in range(self.horizon):
                lo = self.offset + h
                y[lane, :steps, h * n_targets : (h + 1) * n_targets] = block[lo : lo + steps, self.target_columns]
            rows = start + positions
            mask[lane] = (
                (positions >= k2 - self.k1) & (rows >= self._mask_from[step, lane]) & (rows < loss_end)
            )
            if weight is not None:
                mask[lane, :steps] *= weight
        return {
            "x": x,
            "y": y,
            "mask": mask,
            "reset": self._reset[step].copy(),
            "start": self._start[step].copy(),
        }

    def dataset(self, first_step: int = 0):
        """A `tf.data.Dataset` of the updates `first_step, ..., len(self) - 1`, in order.

        Built from an index range, so its cardinality is known; each element is gathered
        by `batch(step)` in a `tf.numpy_function`. Order is fixed (TBPTT needs it).
        """
        return lanes_dataset(self, first_step)


def lanes_dataset(lanes, first_step: int):
    """`lanes.batch(step)` for the updates `first_step .. len(lanes) - 1` as a `tf.data.Dataset`."""
    import tensorflow as tf

    count, k2 = lanes.lanes, lanes.k2
    keys = ("x", "y", "mask", "reset", "start")
    dtypes = (tf.float32, tf.float32, tf.float32, tf.bool, tf.int64)
    shapes = ((count, k2, lanes.n_features), (count, k2, lanes.n_outputs), (count, k2), (count,), (count,))

    def gather(step):
        arrays = lanes.batch(int(step))
        return tuple(arrays[key] for key in keys)

    def to_dict(step):
        tensors = tf.numpy_function(gather, [step], dtypes, stateful=False)
        return {key: tf.ensure_shape(tensor, shape) for key, tensor, shape in zip(keys, tensors, shapes)}

    steps = tf.data.Dataset.range(first_step, len(lanes))
    return steps.map(to_dict, num_parallel_calls=1, deterministic=True).prefetch(2)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataValidationError(f"{name} must be an integer >= {minimum}; got {value!r}.")


def _columns(name: str, columns: Sequence[int] | None, n_columns: int) -> list[int]:
    if columns is None:
        return list(range(n_columns))
    columns = [int(c) for c in columns]
    if not columns:
        raise DataValidationError(f"{name} must name at least one column; got an empty list.")
    bad = [c for c in columns if not 0 <= c < n_columns]
    if bad:
        raise DataValidationError(f"{name} must be column indices in [0, {n_columns}); got {bad}.")
    return columns


def _segment_starts(segments: Sequence[int] | None, n_rows: int) -> list[int]:
    starts = [0] if segments is None else sorted({0, *(int(s) for s in np.asarray(segments).ravel())})
    bad = [s for s in starts if not 0 <= s < n_rows]
    if bad:
        raise DataValidationError(f"segment starts must be rows in [0, {n_rows}); got {bad}.")
    return starts
