"""A calendar-aware hierarchical LSTM: groups cut by time (ticks -> seconds -> minutes), not by step counts.

`HierarchicalLSTM` closes a level every fixed number of steps; on ticks, which arrive at
irregular times, 64 steps are not a minute. Here each level but the top names the span of the
groups it summarises (`every = "1s"`, `every_events = 64` or a boundary `column`), and the data
layer turns the timestamps into boundary flags that arrive with every row (the
`calendar_boundaries` pipeline kind), so training, export and streaming all see them.

The input contract. Inputs are `(batch, steps, F)`; the last `n_boundaries = len(levels) - 1`
columns are flags, level 0 first, and the other `F - n_boundaries` columns are the features
level 0 reads. A flag is on when its value is above 0.5 (the data layer writes 0.0 or 1.0):

    inputs[..., F - n_boundaries + l] on at row t  <=>  row t is the first row of a new level-l
                                                         group (the level-l group holding row
                                                         t - 1 has closed)

A level-l flag also closes every level below l (the model takes the maximum), so the flags
need not be nested.

What a row does, at row t of a lane, in this order:

1. Closes, lowest level first. If the level-l group holding row t - 1 closes (a flag at t, and
   the lane has a row t - 1 since its start or last reset), level l + 1 takes one step on that
   group's summary: for l = 0, level 0's output at row t - 1 (possibly the previous chunk's
   last row: it is in the carried state); for l >= 1, level l's output once it has read every
   group that closed at row t (its step of point 1 at this row). A group's summary is thus
   used from the first row at or after the boundary that closes it: knowing that a row is the
   last of its group needs the next timestamp, and this is the causal rule.
2. Level 0 reads row t's features. In `mode = "parallel"` it restarts from a zero state at
   every level-0 group start; in `mode = "sequential"` its state runs straight through.
3. The row's output is the concatenation of level 0's output at row t and every upper level's
   latest output (zeros before its first step): `(batch, steps, sum(units))`.

Empty groups (a second without ticks) have no row and so no flag of their own: the level above
takes no step for them. A gap of ten empty seconds between two ticks gives the same flags, and
so the same outputs, as two ticks one second apart.

Running the groups in parallel. In parallel mode level 0's ragged groups are packed into the
batch axis: each lane is cut into windows of P rows (P = the longest group in the chunk), a
group goes with the window its first row falls in, and one packed row holds the groups of one
window back to back (at most 2P - 1 rows), with a restart at each group start. The sequential
depth of level 0 is then below twice the longest group, not T, and the packed array holds at
most about twice the chunk's rows, however ragged the groups. The group open at a chunk start
continues from the carried level-0 state, so a chunked forward with carried state equals one
pass. Upper levels step only on closes: each lane's closes are gathered to the front of a
`(closes, batch)` array and run in one loop (a lane with fewer closes holds its state), so
their depth is the most closes in any lane of the chunk. Sequential mode runs level 0 over all
T rows. `sequential_depths` gives these depths for a chunk. The packing uses TensorFlow ops
(Keras ops have no ragged gathers).

The state is `((h, c) per level, seen)`: every level's LSTM state (h is also its latest
output) and `seen (batch, 1)`, 1 once the lane has had a row. `step` carries the same state,
so ticks and chunk calls can be mixed.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf
from keras import ops

from longstm.data.calendar_levels import check_boundary_level
from longstm.errors import ConfigError, DataValidationError
from longstm.models.checks import check_choice, check_positive_int
from longstm.models.protocol import RecurrentModel, State

MODES = ("parallel", "sequential")
OWNER = "CalendarLSTM"


def check_levels(levels: Any) -> list[dict[str, Any]]:
    """`levels` checked and normalised: `[{units, every | every_events | column[, tz]}, ..., {units}]`.

    Raises:
        ConfigError: naming the level and key, with what was expected and what was got.
    """
    if not isinstance(levels, (list, tuple)) or len(levels) < 2:
        raise ConfigError(
            f"{OWNER} argument `levels` must be a list of at least two tables like "
            f"[{{units = 32, every = \"1s\"}}, {{units = 64}}]; got {levels!r}."
        )
    checked = []
    for index, level in enumerate(levels):
        key = f"levels[{index}]"
        top = index == len(levels) - 1
        if not isinstance(level, dict):
            raise ConfigError(f"{OWNER} argument `{key}` must be a table like {{units = 32, every = \"1s\"}}; got {level!r}.")
        if top and set(level) - {"units"}:
            unknown = ", ".join(sorted(set(level) - {"units"}))
            raise ConfigError(f"{OWNER} argument `{key}` has unknown key(s) {unknown}; the top level has only units (nothing closes its groups).")
        boundary = {} if top else check_boundary_level(level, key, lambda path: f"{OWNER} argument `{path}`", extra_keys=("units",))
        checked.append({"units": check_positive_int(OWNER, f"{key}.units", level.get("units"))} | boundary)
    return checked


def _advance(cell, x, h, c):
    """One step of `cell`'s arithmetic (`keras.layers.LSTMCell`'s): `(h, c)` after reading `x`.

    In the state's dtype: under mixed precision `step` runs outside any layer call, where the
    weights are not cast for it."""
    kernel, recurrent_kernel, bias = (ops.cast(w, h.dtype) for w in (cell.kernel, cell.recurrent_kernel, cell.bias))
    z = ops.matmul(ops.cast(x, h.dtype), kernel) + ops.matmul(h, recurrent_kernel) + bias
    i, f, g, o = ops.split(z, 4, axis=-1)
    c = cell.recurrent_activation(f) * c + cell.recurrent_activation(i) * cell.activation(g)
    return cell.recurrent_activation(o) * cell.activation(c), c


def _recur(cell, inputs, h, c, restart=None, active=None):
    """`cell` over time-major `inputs (steps, rows, width)` from `(h, c)`.

    `restart (steps, rows, 1)`: where 1, the state is zeroed before the step. `active`: where
    0, the step leaves the state as it was (padding). Returns every step's h `(steps, rows,
    units)` and the final `(h, c)`. A `tf.while_loop` like Keras' own RNN loop, with narrow
    inputs (projected inside the loop) and only h stacked: its backward pass ran 2-3x faster
    than `tf.scan` over inputs projected beforehand, with both h and c stacked.
    """
    width = inputs.shape[-1]
    controls = [ops.cast(t, inputs.dtype) for t in (restart, active) if t is not None]
    sequence = ops.concatenate([inputs, *controls], axis=-1) if controls else inputs
    steps = tf.shape(sequence)[0]
    rows = tf.TensorArray(sequence.dtype, size=steps).unstack(sequence)
    outputs = tf.TensorArray(h.dtype, size=steps, element_shape=h.shape)

    def body(t, h, c, outputs):
        row = rows.read(t)
        keep = 1.0 - row[:, width : width + 1] if restart is not None else 1.0
        new_h, new_c = _advance(cell, row[:, :width], h * keep, c * keep)
        if active is not None:
            on = row[:, -1:]
            new_h, new_c = on * new_h + (1.0 - on) * h, on * new_c + (1.0 - on) * c
        return t + 1, new_h, new_c, outputs.write(t, new_h)

    _, h, c, outputs = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), h, c, outputs),
        maximum_iterations=steps, parallel_iterations=32, swap_memory=True,
    )
    return outputs.stack(), h, c


def _pack_groups(starts):
    """Where each row of `starts (batch, steps)` (true at row 0 and at every group start) goes
    when whole groups are packed into rows: `(row, position, rows, length, lane_of_row,
    first_window)` for the flat rows `n = lane * steps + t` (see the module docstring)."""
    batch, steps = tf.shape(starts)[0], tf.shape(starts)[1]
    flat = tf.reshape(starts, [-1])
    n = tf.range(batch * steps)
    group = tf.cumsum(tf.cast(flat, tf.int32)) - 1
    group_start = tf.gather(tf.boolean_mask(n, flat), group)  # the flat first row of n's group
    window = tf.reduce_max(n - group_start) + 1  # P: the longest group of the chunk
    windows = (steps + window - 1) // window
    lane = n // steps
    row = lane * windows + (group_start - lane * steps) // window
    rows = batch * windows
    row_start = tf.math.unsorted_segment_min(group_start, row, rows)
    position = n - tf.gather(row_start, row)
    length = tf.reduce_max(position) + 1
    row_ids = tf.range(rows)
    return row, position, rows, length, row_ids // windows, tf.equal(row_ids % windows, 0)


@keras.saving.register_keras_serializable(package="longstm")
class CalendarLSTM(RecurrentModel):
    """A hierarchy of LSTM levels whose groups are cut by boundary flags that come with the rows.

    See the module docstring for the input contract, what a row does, the two modes and how
    ragged groups run in parallel.

    Args:
        levels: a list of at least two dicts, level 0 first. Each has `units` (the level's LSTM
            width); each but the top also has exactly one of `every` (a fixed pandas offset such
            as `"1s"`), `every_events` (a positive integer) or `column` (the name of a boundary
            column), and optionally `tz` (an IANA zone, with `every`). The model only records
            these (the data layer builds the flags from them: `boundaries`).
        mode: `"parallel"` (level 0 restarts at every group, the groups run side by side) or
            `"sequential"` (level 0 runs straight through).

    Call arguments:
        inputs: `(batch, steps, features + n_boundaries)`, the flags last.
        state: as returned by `initial_state` / the previous call; `None` for zeros.
        training: unused (no dropout).

    Returns:
        `(outputs, new_state)`: outputs `(batch, steps, sum(units))`, level 0 first.

    Example:

    >>> model = CalendarLSTM([{"units": 32, "every": "1s"}, {"units": 64, "every": "1min"}, {"units": 64}])
    >>> model.boundaries                      # what the data layer turns into two flag columns
    ({'every': '1s'}, {'every': '1min'})
    >>> outputs, state = model(chunk)         # chunk: (16, 4096, 4 features + 2 flags)
    >>> outputs.shape                         # (16, 4096, 160)
    """

    def __init__(self, levels: Sequence[dict], mode: str = "parallel", **kwargs):
        super().__init__(**kwargs)
        self.levels = check_levels(levels)
        self.mode = check_choice(OWNER, "mode", mode, MODES)
        self.level_widths = tuple(level["units"] for level in self.levels)
        self.units = sum(self.level_widths)
        self.cells = [keras.layers.LSTMCell(width, name=f"level_{index}") for index, width in enumerate(self.level_widths)]

    @property
    def n_boundaries(self) -> int:
        """How many flag columns close the inputs: one per level but the top."""
        return len(self.levels) - 1

    @property
    def boundaries(self) -> tuple[dict[str, Any], ...]:
        """The boundary specs, level 0 first, as the data layer's `calendar_boundaries` reads them
        (each level's `every`, `every_events` or `column`, and `tz`; fresh copies)."""
        return tuple({key: value for key, value in level.items() if key != "units"} for level in self.levels[:-1])

    def check_columns(self, columns: int) -> int:
        """The feature count of `columns` input columns, or a DataValidationError."""
        features = columns - self.n_boundaries
        if features < 1:
            raise DataValidationError(
                f"{OWNER} with {len(self.levels)} levels reads its features then {self.n_boundaries} boundary flag "
                f"column(s): expected at least {self.n_boundaries + 1} input columns; got {columns}."
            )
        return features

    def build(self, input_shape):
        inputs = self.check_columns(int(input_shape[-1]))
        for cell in self.cells:
            cell.build((None, inputs))
            inputs = cell.units
        self.built = True

    def initial_state(self, batch_size: int) -> State:
        levels = tuple(
            (ops.zeros((batch_size, width), self.compute_dtype), ops.zeros((batch_size, width), self.compute_dtype))
            for width in self.level_widths
        )
        return levels + (ops.zeros((batch_size, 1), self.compute_dtype),)

    def _split(self, inputs):
        """Features and the closing flags: `closes[l]` is on where a level-l group starts, here or above."""
        features = inputs[..., : inputs.shape[-1] - self.n_boundaries]
        flags = ops.cast(inputs[..., inputs.shape[-1] - self.n_boundaries :] > 0.5, features.dtype)
        closes = ops.flip(ops.cumsum(ops.flip(flags, axis=-1), axis=-1), axis=-1) > 0  # max over l' >= l
        return features, [closes[..., level] for level in range(self.n_boundaries)]

    def call(self, inputs, state=None, training=None):
        self.check_columns(inputs.shape[-1])
        batch = ops.shape(inputs)[0]
        state = self.initial_state(batch) if state is None else state
        if len(state) != len(self.levels) + 1:
            raise ValueError(f"{OWNER} state must hold one (h, c) per level and `seen`: expected {len(self.levels) + 1} entries; got {len(state)}.")
        features, closes = self._split(inputs)
        seen = state[-1]
        (h, c) = state[0]
        lowest, (last_h, last_c) = self._lowest(features, closes[0], h, c)
        # A flag closes the group holding row t - 1 only where the lane has such a row.
        has_previous = ops.concatenate([seen > 0.5, ops.ones_like(closes[0][:, 1:])], axis=1)
        summaries = ops.concatenate([ops.expand_dims(h, 1), lowest[:, :-1]], axis=1)  # level 0 at t - 1
        per_row, new_state = [lowest], [(last_h, last_c)]
        for cell, close, (h, c) in zip(self.cells[1:], closes, state[1:-1]):
            summaries, (h, c) = self._upper(cell, summaries, ops.logical_and(close, has_previous), h, c)
            per_row.append(summaries)  # this level's latest output: what the next level reads
            new_state.append((h, c))
        new_state.append(ops.ones_like(seen))
        return ops.concatenate(per_row, axis=-1), tuple(new_state)

    def _lowest(self, features, starts, h, c):
        """Level 0 over the chunk: its output at every row and its `(h, c)` after the last row."""
        cell = self.cells[0]
        if self.mode == "sequential":
            hs, h, c = _recur(cell, ops.transpose(features, (1, 0, 2)), h, c)
            return ops.transpose(hs, (1, 0, 2)), (h, c)
        batch, steps = tf.shape(features)[0], tf.shape(features)[1]
        row_starts = tf.logical_or(starts, tf.range(steps)[None, :] == 0)
        row, position, rows, length, lane_of_row, first_window = _pack_groups(row_starts)
        where = tf.stack([position, row], axis=1)  # time-major (length, rows)

        def packed(values):
            values = tf.reshape(values, [batch * steps, -1])
            return tf.scatter_nd(where, values, tf.stack([length, rows, tf.shape(values)[1]]))

        carried = tf.cast(first_window, h.dtype)[:, None]  # a lane's first packed row continues its open group
        hs, last_h, last_c = _recur(
            cell,
            tf.ensure_shape(packed(features), [None, None, features.shape[-1]]),
            tf.gather(h, lane_of_row) * carried,
            tf.gather(c, lane_of_row) * carried,
            restart=packed(tf.cast(starts, features.dtype)),
            active=packed(tf.ones_like(starts, features.dtype)),
        )
        outputs = tf.reshape(tf.gather_nd(hs, where), [batch, steps, cell.units])
        last = tf.gather(row, tf.range(1, batch + 1) * steps - 1)  # the packed row of each lane's last row
        return outputs, (tf.gather(last_h, last), tf.gather(last_c, last))

    @staticmethod
    def _upper(cell, summaries, close, h, c):
        """One upper level: a step on `summaries` at each row where `close`; its latest output at
        every row and its `(h, c)` after the chunk."""
        batch = tf.shape(close)[0]
        count = tf.cumsum(tf.cast(close, tf.int32), axis=1)  # steps taken up to and including row t
        at = tf.where(close)  # (closes, 2): lane, row; row-major, so in order within a lane
        where = tf.stack([tf.gather_nd(count, at) - 1, tf.cast(at[:, 0], tf.int32)], axis=1)
        depth = tf.maximum(tf.reduce_max(count[:, -1]), 1)
        packed = tf.scatter_nd(where, tf.gather_nd(summaries, at), tf.stack([depth, batch, summaries.shape[-1]]))
        active = tf.scatter_nd(where, tf.ones_like(where[:, :1], summaries.dtype), tf.stack([depth, batch, 1]))
        hs, h_after, c_after = _recur(cell, tf.ensure_shape(packed, [None, None, summaries.shape[-1]]), h, c, active=active)
        hs = ops.concatenate([h[None], hs], axis=0)  # index 0: the carried output, before any step
        lane_ids = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(count))
        return tf.gather_nd(hs, tf.stack([count, lane_ids], axis=-1)), (h_after, c_after)

    # ---- one row at a time ---------------------------------------------------------------------

    def step(self, x_t, state):
        """One row, flags included: the same closes, then level 0, as `call` does for a row."""
        features, closes = self._split(x_t[:, None])
        seen = state[-1]
        h, c = state[0]
        summary, new_state = h, [None]
        for cell, close, (upper_h, upper_c) in zip(self.cells[1:], closes, state[1:-1]):
            step_now = ops.cast(ops.logical_and(close, seen > 0.5), h.dtype)  # (batch, 1)
            new_h, new_c = _advance(cell, summary, upper_h, upper_c)
            summary = step_now * new_h + (1.0 - step_now) * upper_h
            new_state.append((summary, step_now * new_c + (1.0 - step_now) * upper_c))
        lowest = self.cells[0]
        if self.mode == "parallel":
            keep = 1.0 - ops.cast(closes[0], h.dtype)
            h, c = h * keep, c * keep
        h, c = _advance(lowest, features[:, 0], h, c)
        new_state[0] = (h, c)
        outputs = ops.concatenate([h] + [level_h for level_h, _ in new_state[1:]], axis=-1)
        return outputs, tuple(new_state) + (ops.ones_like(seen),)

    def sequential_depths(self, inputs, state=None) -> tuple[int, ...]:
        """How many steps each level runs in sequence on the chunk `inputs` (what a chunk's time
        grows with): level 0's packed row length (T in sequential mode), then each upper level's
        most closes in any lane.

        Args:
            inputs: `(batch, steps, features + n_boundaries)`, as for `call`.
            state: the state before the chunk (`None`: a fresh one, so a flag at row 0 closes nothing).

        Returns:
            one int per level, level 0 first.
        """
        self.check_columns(inputs.shape[-1])
        seen = self.initial_state(inputs.shape[0])[-1] if state is None else state[-1]
        features, closes = self._split(ops.convert_to_tensor(inputs))
        steps = int(features.shape[1])
        if self.mode == "sequential":
            depths = [steps]
        else:
            depths = [int(_pack_groups(tf.logical_or(closes[0], tf.range(steps)[None, :] == 0))[3])]
        has_previous = ops.concatenate([seen > 0.5, ops.ones_like(closes[0][:, 1:])], axis=1)
        for close in closes:
            depths.append(int(ops.max(ops.sum(ops.cast(ops.logical_and(close, has_previous), "int32"), axis=1))))
        return tuple(depths)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(levels=[dict(level) for level in self.levels], mode=self.mode)
        return config
