"""One causal feature pipeline, computed over a whole series or one row at a time.

A `FeaturePipeline` is built from plain dicts, the `[[pipeline]]` tables of a training
config, and the input columns it will read. Every feature at row t uses rows <= t of its own
segment only: nothing looks ahead, and nothing reaches back across a segment start (a gap).
Where a feature has no past yet (a return at the first row of a segment) it is 0, so the
output keeps the input's rows and timestamps.

Kinds (keys in brackets are optional; `longstm.data.feature_kinds` has the details):

- `raw`: `[columns]` the columns as they are (default all).
- `log_return`: `[columns, periods=1]` `log(x[t] / x[t - periods])`; values must be > 0.
- `diff`: `[columns, periods=1]` `x[t] - x[t - periods]`.
- `rolling_volatility`: `window, [columns, of="log_return"]` population std of the last
  `window` one-step log returns (or `"diff"`s, or the `"value"`s) up to and including t.
- `rolling_mean`: `window, [columns]` mean of the last `window` values up to and including t.
- `time_of_day`: `tod_sin`, `tod_cos`: the time within the day on the unit circle.
- `day_of_week`: `dow_sin`, `dow_cos`: the weekday (Monday 0) on the unit circle.
- `bar`: `[open, high, low, close, volume]` OHLCV bars -> `log_return_bp`, `range_bp`,
  `body_bp`, `log_volume` (the HFT protocol's bar features).
- `lob_inputs`: `[mid="mid_price"]` -> `mid_change_bp` and the other columns as they are
  (what a trained LOBSTER classifier reads).
- `per_column`: `transforms, [columns]` `"value"`/`"diff"`/`"log_return"` per column (the
  streaming predictor's former `{"kind": "causal", "transforms": [...]}`).
- `calendar_boundaries`: `levels` -> `boundary_0`, ...: 1.0 where a row starts a new group of
  that level (`every = "1s"`, `every_events = N` or a boundary `column`; see
  `longstm.data.calendar_kinds`), the flags a `calendar_lstm` model reads.

Example, batch (training) and incremental (serving several instruments tick by tick); the
two give the same numbers:

    pipeline = FeaturePipeline(
        [{"kind": "log_return", "columns": ["close"]},
         {"kind": "rolling_volatility", "columns": ["close"], "window": 60},
         {"kind": "time_of_day"}],
        input_columns=["close", "volume"],
    )
    features = pipeline.transform(series)            # a TimeSeries of pipeline.output_columns

    state = pipeline.start(lanes=3)                   # plain arrays: np.savez(path, **state)
    for rows, stamps in ticks:                        # rows (3, 2) in input order, stamps (3,)
        outputs, state = pipeline.step(rows, state, timestamps=stamps)   # (3, 4)
    state = pipeline.reset(state, [1])                # lane 1 starts a new segment

In a config:

    [[pipeline]]
    kind = "log_return"
    columns = ["close"]

    [[pipeline]]
    kind = "time_of_day"

`pipeline.to_dict()` is what a run's data.json keeps as "feature_pipeline";
`FeaturePipeline.from_dict` rebuilds it (and reads the streaming predictor's older form).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np

from longstm.data.calendar_kinds import CalendarBoundaries
from longstm.data.feature_kinds import FEATURE_KINDS, FeatureKind
from longstm.data.series import TimeSeries
from longstm.data.validation import _rows
from longstm.errors import ConfigError, DataValidationError

# Its own module (it builds on FeatureKind), registered beside the others.
FEATURE_KINDS[CalendarBoundaries.kind] = CalendarBoundaries


def _kinds(specs: Any, name: str, input_columns: Sequence[str] | None, source: str) -> list[FeatureKind]:
    """The validated kinds of `specs`; messages name `name[i]`, the kind, the key."""
    if isinstance(specs, dict) or not isinstance(specs, (list, tuple)):
        raise ConfigError(f"{name} must be a list of dicts like {{kind = 'log_return'}}, got {type(specs).__name__}")
    if not specs:
        raise ConfigError(f"{name}: the list is empty; give at least one feature (e.g. {{kind = 'raw'}})")
    kinds: list[FeatureKind] = []
    made: list[str] = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ConfigError(f"{name}[{index}] must be a table/dict with a 'kind' key, got {spec!r}")
        kind = spec["kind"]
        if kind not in FEATURE_KINDS:
            raise ConfigError(f"{name}[{index}]: unknown kind {kind!r}; expected one of {', '.join(FEATURE_KINDS)}")
        cls = FEATURE_KINDS[kind]
        where = f"{name}[{index}] ({kind})"
        unknown = sorted(set(spec) - {"kind", *cls.required, *cls.optional})
        if unknown:
            allowed = ", ".join((*cls.required, *cls.optional)) or "none"
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys: {allowed}")
        missing = [key for key in cls.required if key not in spec]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
        feature = cls(spec, where, input_columns, source)
        clash = sorted({out for out in feature.outputs if out in made or feature.outputs.count(out) > 1})
        if clash:
            raise ConfigError(f"{where} produces column(s) {clash} that an earlier feature already made")
        made.extend(feature.outputs)
        kinds.append(feature)
    return kinds


def check_pipeline_specs(specs: Any, name: str = "pipeline") -> None:
    """Check the kinds and keys of `specs` before any data is loaded (columns are checked later).

    Raises:
        ConfigError: naming `name[i]`, the kind, the key, what was expected and what was got.
    """
    _kinds(specs, name, None, "<config>")


def as_nanoseconds(timestamps) -> np.ndarray:
    """`datetime64` values (any unit) or integer nanoseconds as int64 nanoseconds."""
    stamps = np.asarray(timestamps)
    if np.issubdtype(stamps.dtype, np.datetime64):
        return stamps.astype("datetime64[ns]").astype(np.int64)
    return stamps.astype(np.int64)


class FeaturePipeline:
    """Causal features of a series, all rows at once (`transform`) or one row per lane (`step`).

    Args:
        specs: a list of dicts, each with `kind` (see the module docstring) and its keys.
        input_columns: the columns of the series it reads: `transform` picks them by name,
            `step` takes rows with these columns in this order.
        name: how messages name the list (`"pipeline"`: `pipeline[2] (diff): ...`).
        source: the data's name, for messages about columns and values.

    Attributes:
        specs: the dicts it was built from (what `to_dict` saves).
        input_columns: as given.
        required_columns: the input columns some feature reads, in input order.
        output_columns: the columns it makes, in order.

    Raises:
        ConfigError: an unknown kind or key, a missing key, a bad value, a repeated output
            name, naming `pipeline[i]`, the kind and the key.
        DataValidationError: a column that `input_columns` lacks.

    Example:

    >>> pipeline = FeaturePipeline([{"kind": "raw"}, {"kind": "diff"}], ["x"])
    >>> pipeline.output_columns
    ['x', 'x_diff']
    >>> state = pipeline.start(lanes=1)
    >>> for value in (1.0, 4.0):
    ...     outputs, state = pipeline.step(np.array([[value]]), state)
    >>> outputs.tolist()
    [[4.0, 3.0]]
    """

    def __init__(self, specs: Sequence[dict[str, Any]], input_columns: Sequence[str], *, name: str = "pipeline", source: str = "<data>"):
        if isinstance(input_columns, str) or not all(isinstance(column, str) for column in input_columns):
            raise ConfigError(f"{name}: input_columns must be a list of column names, got {input_columns!r}")
        self.specs = copy.deepcopy(list(specs)) if isinstance(specs, (list, tuple)) else specs
        self.input_columns = list(input_columns)
        self.name = name
        self.source = str(source)
        self.kinds = _kinds(self.specs, name, self.input_columns, self.source)
        read = {column for kind in self.kinds for column in kind.columns}
        self.required_columns = [column for column in self.input_columns if column in read]
        self.output_columns = [out for kind in self.kinds for out in kind.outputs]
        self.needs_timestamps = any(kind.needs_timestamps for kind in self.kinds)
        self.memory = max(kind.history for kind in self.kinds)  # rows of the past `step` carries
        # A read from mid-segment must start a multiple of this many rows after the segment start.
        self.row_period = math.lcm(*(kind.row_period for kind in self.kinds))
        # Positions of each kind's columns: in the input row, and in the required columns.
        self._reads = [self.input_columns.index(column) for column in self.required_columns]
        self._kind_columns = [[self.required_columns.index(column) for column in kind.columns] for kind in self.kinds]

    @property
    def n_inputs(self) -> int:
        return len(self.input_columns)

    @property
    def n_outputs(self) -> int:
        return len(self.output_columns)

    # ---- checks ---------------------------------------------------------------------------

    def _check_positive(self, values: np.ndarray, unit: str) -> None:
        """`values` are the required columns; `unit` names an axis-0 position ("row"/"lane")."""
        for kind in self.kinds:
            for name in kind.positive:
                column = values[:, self.required_columns.index(name)]
                bad = np.flatnonzero(column <= 0)
                if bad.size:
                    raise DataValidationError(
                        f"{self.source}: {kind.where}: {kind.positive_reason}, column {name!r} holds {column[bad[0]]} "
                        f"at {unit} {bad[0]} ({bad.size} such {unit}s, {unit}s {_rows(bad)}); {kind.positive_advice}"
                    )

    def _timestamps(self, timestamps, length: int, what: str) -> np.ndarray | None:
        if not self.needs_timestamps:
            return None
        kind = next(kind for kind in self.kinds if kind.needs_timestamps)
        if timestamps is None:
            raise kind.missing_timestamps(self.source, what)
        stamps = as_nanoseconds(timestamps)
        if stamps.shape != (length,):
            raise DataValidationError(f"{self.source}: {what} needs {length} timestamps, got shape {stamps.shape}")
        return stamps

    # ---- batch ----------------------------------------------------------------------------

    def compute(self, values: np.ndarray, timestamps=None, segments=None) -> np.ndarray:
        """Features of whole rows `values (rows, n_inputs)` in input order, float64.

        Args:
            values: the input rows, columns in `input_columns` order.
            timestamps: `(rows,)` datetime64 or int nanoseconds; needed by the time kinds.
            segments: segment start rows (`[0, ...]`); None: one segment.

        Returns:
            `(rows, n_outputs)` float64, columns `output_columns`.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.n_inputs:
            raise DataValidationError(
                f"{self.source}: the pipeline reads rows of {self.n_inputs} columns {self.input_columns}; got shape {values.shape}"
            )
        needed = values[:, self._reads]
        self._check_positive(needed, "row")
        stamps = self._timestamps(timestamps, len(values), "this series")
        starts = [0] if segments is None else sorted({int(start) for start in segments} | {0})
        bounds = list(zip(starts, [*starts[1:], len(values)]))
        out = np.empty((len(values), self.n_outputs), np.float64)
        column = 0
        for kind, columns in zip(self.kinds, self._kind_columns):
            width = len(kind.outputs)
            for start, stop in bounds:
                if stop > start:
                    part = None if stamps is None else stamps[start:stop]
                    out[start:stop, column : column + width] = kind.segment(needed[start:stop][:, columns], part)
            column += width
        return out

    def transform(self, series: TimeSeries) -> TimeSeries:
        """The features of `series` (its `input_columns`, by name) as a new `TimeSeries`.

        Returns:
            A series of `output_columns` (float32), the same timestamps and segment starts.
        """
        values = series.values[:, series.column_indices(self.input_columns)]
        features = self.compute(values, series.timestamps, series.segments)
        return TimeSeries(features.astype(np.float32), self.output_columns, series.timestamps, series.segments, series.source)

    # ---- incremental ----------------------------------------------------------------------

    def start(self, lanes: int) -> dict[str, np.ndarray]:
        """The state of `lanes` lanes before their first row: plain arrays (save with `np.savez`).

        `history` holds each lane's last `memory` rows of `required_columns`, `seen` the rows
        of its current segment so far (0: the next row starts a segment).
        """
        if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
            raise ConfigError(f"{self.name}: lanes must be a positive integer, got {lanes!r}")
        state = {
            "history": np.zeros((int(lanes), self.memory, len(self.required_columns)), np.float64),
            "seen": np.zeros(int(lanes), np.int64),
        }
        if self.needs_timestamps:  # the time kinds read the timestamps of the same window of rows
            state["stamps"] = np.zeros((int(lanes), self.memory), np.int64)
        return state

    def _check_state(self, state: dict[str, np.ndarray]) -> int:
        history, seen = (state.get(key) if isinstance(state, dict) else None for key in ("history", "seen"))
        lanes = None if seen is None else np.shape(seen)[0] if np.ndim(seen) == 1 else None
        expected = (lanes, self.memory, len(self.required_columns))
        stamps_ok = not self.needs_timestamps or np.shape(state.get("stamps")) == (lanes, self.memory)
        if lanes is None or np.shape(history) != expected or not stamps_ok:
            got = {key: np.shape(value) for key, value in state.items()} if isinstance(state, dict) else state
            raise DataValidationError(
                f"{self.source}: feature pipeline state must be {{'history': (lanes, {self.memory}, "
                f"{len(self.required_columns)}), 'seen': (lanes,)}} (from start(lanes)); got {got!r}"
            )
        return lanes

    def step(self, rows, state: dict[str, np.ndarray], timestamps=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The features of one new row per lane. `state` is not changed; the new one is returned.

        Args:
            rows: `(lanes, n_inputs)`, columns in `input_columns` order.
            state: from `start`, a previous `step`, or `reset`.
            timestamps: `(lanes,)` datetime64 or int nanoseconds; needed by the time kinds.

        Returns:
            `(outputs, new_state)`: outputs `(lanes, n_outputs)` float64, equal to the rows of
            `transform` at the same positions.

        Raises:
            DataValidationError: rows of the wrong shape, a value a feature cannot take (the
                column and the lane), missing timestamps, a state of the wrong shape.
        """
        lanes = self._check_state(state)
        rows = np.asarray(rows, dtype=np.float64)
        if rows.shape != (lanes, self.n_inputs):
            raise DataValidationError(
                f"{self.source}: step rows must have shape (lanes, inputs) = ({lanes}, {self.n_inputs}), columns "
                f"{self.input_columns}; got {rows.shape}"
            )
        needed = rows[:, self._reads]
        self._check_positive(needed, "lane")
        stamps = self._timestamps(timestamps, lanes, "this step")
        history = np.concatenate([np.asarray(state["history"], np.float64)[:, 1:], needed[:, None]], axis=1)
        seen = np.asarray(state["seen"], np.int64) + 1
        new_state = {"history": history, "seen": seen}
        if stamps is not None:
            stamps = np.concatenate([np.asarray(state["stamps"], np.int64)[:, 1:], stamps[:, None]], axis=1)
            new_state["stamps"] = stamps
        # Window rows older than a lane's segment are stale (or the zeros it started with): the
        # kinds mask them out, but computing on them first may divide by zero or log a zero.
        with np.errstate(divide="ignore", invalid="ignore"):
            outputs = [
                kind.latest(
                    history[:, self.memory - kind.history :][..., columns],
                    seen,
                    None if stamps is None else stamps[:, self.memory - kind.history :],
                )
                for kind, columns in zip(self.kinds, self._kind_columns)
            ]
        return np.concatenate(outputs, axis=1), new_state

    def step_many(self, rows, state: dict[str, np.ndarray], timestamps=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`step` over `rows (ticks, lanes, n_inputs)` (timestamps `(ticks, lanes)`).

        Returns:
            `(outputs (ticks, lanes, n_outputs), new_state)`; a bad row raises before any
            state is returned, so the caller's state stays as it was.
        """
        rows = np.asarray(rows, dtype=np.float64)
        lanes = self._check_state(state)
        if rows.ndim != 3:
            raise DataValidationError(f"{self.source}: step_many rows must have shape (ticks, {lanes}, {self.n_inputs}); got {rows.shape}")
        outputs = np.empty((len(rows), lanes, self.n_outputs), np.float64)
        for tick, row in enumerate(rows):
            outputs[tick], state = self.step(row, state, None if timestamps is None else np.asarray(timestamps)[tick])
        return outputs, state

    def reset(self, state: dict[str, np.ndarray], lanes=None) -> dict[str, np.ndarray]:
        """A copy of `state` where `lanes` (an index, a list of them, or None for all) start a
        new segment at their next row: nothing of their past reaches their next features."""
        count = self._check_state(state)
        seen = np.array(state["seen"], np.int64)
        chosen = np.arange(count) if lanes is None else np.atleast_1d(np.asarray(lanes))
        if chosen.dtype.kind not in "iu" or (chosen.size and (chosen.min() < 0 or chosen.max() >= count)):
            raise DataValidationError(f"{self.source}: reset expects lane indices in [0, {count}); got {lanes!r}")
        seen[chosen] = 0
        return {**{key: np.array(value) for key, value in state.items()}, "seen": seen}

    # ---- saving ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: what a run's data.json keeps as "feature_pipeline"."""
        return {"input_columns": list(self.input_columns), "pipeline": copy.deepcopy(self.specs)}

    @classmethod
    def from_dict(cls, state: dict[str, Any], input_columns: Sequence[str] | None = None, source: str = "<data>") -> "FeaturePipeline":
        """The pipeline `to_dict` saved, or the streaming predictor's former
        `{"kind": "causal", "transforms": [...]}` (one transform per input column).

        Args:
            state: the saved dict.
            input_columns: for the former form, which saved no column names: the names of
                its columns (default `x0, x1, ...`).
            source: the data's name, for messages.
        """
        if isinstance(state, dict) and state.get("kind") == "causal" and "transforms" in state:
            transforms = list(state["transforms"])
            columns = list(input_columns) if input_columns is not None else [f"x{i}" for i in range(len(transforms))]
            return cls([{"kind": "per_column", "transforms": transforms}], columns, source=source)
        if not isinstance(state, dict) or set(state) != {"input_columns", "pipeline"}:
            raise ConfigError(
                "a saved feature pipeline must be {'input_columns': [...], 'pipeline': [...]} (or the former "
                f"{{'kind': 'causal', 'transforms': [...]}}); got {state!r}"
            )
        return cls(state["pipeline"], state["input_columns"], source=source)


def build_features(series: TimeSeries, specs: Sequence[dict[str, Any]]) -> TimeSeries:
    """Compute the features `specs` describe, in order, as a new `TimeSeries`.

    A thin function over `FeaturePipeline(specs, series.columns).transform(series)`, whose
    messages name the list `features`.

    Args:
        series: the input series.
        specs: a list of dicts, each with `kind` (see the module docstring) and that kind's keys.

    Returns:
        A series with the produced columns only (add `{"kind": "raw"}` to keep the inputs), the
        same timestamps and segment starts.

    Raises:
        ConfigError: an unknown kind or key, a missing key, or a bad value, naming `features[i]`.
        DataValidationError: a column that does not exist, values a feature cannot take.

    Example:

    >>> features = build_features(series, [{"kind": "log_return", "columns": ["close"]}])   # doctest: +SKIP
    """
    return FeaturePipeline(specs, series.columns, name="features", source=series.source).transform(series)
