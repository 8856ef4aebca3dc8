"""A hierarchical LSTM: a fast lower level summarises sub-chunks, slower levels run over summaries.

Level 0 reads the raw steps and emits one summary (its output at the last step) every
`stride_0` steps; level 1 reads those summaries and emits one every `stride_1` of its own
steps; and so on. A plain LSTM needs `k` sequential steps per chunk of length `k`; here the
upper levels need only `k / stride_0`, `k / (stride_0 stride_1)`, ... steps.

Two modes for level 0:

- `"sequential"` (clockwork style): level 0 runs straight through the chunk with its state
  carried from step to step and from chunk to chunk. Every level's state is carried, so a
  chunked forward with carried state equals the full-sequence forward exactly.
- `"parallel"`: level 0 runs every sub-chunk of `stride_0` steps independently, from a zero
  state, with the sub-chunks reshaped into the batch axis. Its sequential depth is
  `stride_0`, not `k`, so a chunk costs about `stride_0 + k / stride_0` sequential steps.
  What is carried across chunks: the states of levels 1.. (and their last outputs); level 0
  carries nothing, by design: it restarts at every sub-chunk boundary, and chunk boundaries
  are sub-chunk boundaries (the chunk length is a multiple of the strides' product), so a
  chunked forward with carried state again equals the full-sequence forward exactly. What
  differs from `"sequential"` is the model, not the chunking: level 0 never sees past the
  start of its sub-chunk; only the upper levels link sub-chunks.

Outputs:

- `"per_summary"`: the top level's summaries, one every `prod(strides)` steps,
  `(batch, steps / prod(strides), units_top)`.
- `"per_step"`: at every step, the concatenation of every level's most recent output,
  `(batch, steps, sum(units))`. The upper context is broadcast back causally: the output of
  level l at its step j summarises raw steps up to the **last step of the sub-chunk** it
  closes, and it is used from that last step on (it depends only on inputs at or before that
  step). Before a level's first output in a chunk, its last output of the previous chunk is
  used (it is part of the carried state; zeros at the start of the series).
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import ops

from longstm.errors import ConfigError, DataValidationError
from longstm.models.protocol import RecurrentModel, State, build_core
from longstm.models.checks import check_positive_int
from longstm.models.stacked import StackedLSTM

MODES = ("parallel", "sequential")
OUTPUTS = ("per_step", "per_summary")


def _parse_level(index: int, level) -> tuple[RecurrentModel, int, int | None]:
    """`(model, stride, units_if_given_as_int)` from one entry of `levels`."""
    if not isinstance(level, (list, tuple)) or len(level) != 2:
        raise ConfigError(
            f"HierarchicalLSTM argument `levels[{index}]` must be a pair (units or RecurrentModel, stride); got {level!r}."
        )
    spec, stride = level
    stride = check_positive_int("HierarchicalLSTM", f"levels[{index}] stride", stride)
    if isinstance(spec, dict):
        spec = keras.saving.deserialize_keras_object(spec)
    if isinstance(spec, RecurrentModel):
        width = getattr(spec, "units", None)
        if not isinstance(width, int):
            raise ConfigError(
                f"HierarchicalLSTM argument `levels[{index}]`: the model {type(spec).__name__} must have an integer "
                f"`units` attribute (its output width); got {width!r}."
            )
        return spec, stride, None
    units = check_positive_int("HierarchicalLSTM", f"levels[{index}] units", spec)
    return StackedLSTM(units, name=f"level_{index}"), stride, units


@keras.saving.register_keras_serializable(package="longstm")
class HierarchicalLSTM(RecurrentModel):
    """A stack of recurrent levels, each running over the summaries of the level below.

    See the module docstring for the two modes, what is carried across chunks, and the exact
    causal rule of `per_step` outputs.

    Args:
        levels: a list of `(units, stride)` pairs, lowest level first. `units` is the width
            of that level's LSTM, or any `RecurrentModel` with a `units` attribute (e.g. a
            MinLSTM). `stride` is how many of the level's own steps make one summary for the
            level above (for the top level: one `per_summary` output).
        mode: `"parallel"` or `"sequential"`: how level 0 runs (see above).
        outputs: `"per_step"` or `"per_summary"`.

    Call arguments:
        inputs: `(batch, steps, features)`, `steps` a multiple of the product of strides.
        state: as returned by `initial_state` / the previous call; `None` for zeros.
        training: passed to the levels.

    Returns:
        `(outputs, new_state)`; outputs as described under "Outputs" above.

    Example:

    >>> model = HierarchicalLSTM([(16, 64), (64, 1)], mode="parallel")
    >>> state = model.initial_state(16)
    >>> outputs, state = model(chunk, state=state)   # chunk: (16, 4096, 8)
    >>> outputs.shape                                 # (16, 4096, 16 + 64)
    """

    def __init__(
        self,
        levels: Sequence,
        mode: str = "parallel",
        outputs: str = "per_step",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(levels, (list, tuple)) or not levels:
            raise ConfigError(f"HierarchicalLSTM argument `levels` must be a non-empty list of (units, stride); got {levels!r}.")
        if mode not in MODES:
            raise ConfigError(f"HierarchicalLSTM argument `mode` must be one of {MODES}; got {mode!r}.")
        if outputs not in OUTPUTS:
            raise ConfigError(f"HierarchicalLSTM argument `outputs` must be one of {OUTPUTS}; got {outputs!r}.")
        parsed = [_parse_level(index, level) for index, level in enumerate(levels)]
        self.level_models = [model for model, _, _ in parsed]
        self.strides = tuple(stride for _, stride, _ in parsed)
        self._level_units_given = [units for _, _, units in parsed]
        self.level_widths = tuple(model.units for model in self.level_models)
        self.mode = mode
        self.outputs_kind = outputs
        self.period = math.prod(self.strides)

    def build(self, input_shape):
        # Level 0 reads the inputs (in parallel mode as sub-chunks of `stride` steps, one lane
        # each); level l + 1 reads one summary of level l per `stride` of its steps.
        batch, steps, features = tuple(input_shape)
        if self.mode == "parallel":
            batch, steps = None, self.strides[0]
        level_input = (batch, steps, features)
        for model, stride in zip(self.level_models, self.strides):
            width = build_core(model, level_input)[-1]
            level_input = (batch, None if level_input[1] is None else level_input[1] // stride, width)
        self.built = True

    def initial_state(self, batch_size: int) -> State:
        state = [() if self.mode == "parallel" else self.level_models[0].initial_state(batch_size)]
        for model, width in zip(self.level_models[1:], self.level_widths[1:]):
            state.append((model.initial_state(batch_size), ops.zeros((batch_size, width), self.compute_dtype)))
        return tuple(state)

    def _check_steps(self, steps):
        if steps is not None and steps % self.period:
            strides = " x ".join(str(s) for s in self.strides)
            raise DataValidationError(
                f"HierarchicalLSTM chunk length (inputs axis 1) must be a multiple of the product of the strides "
                f"{strides} = {self.period}; got {steps}. Use a chunk length like "
                f"{max(self.period, steps // self.period * self.period)}."
            )

    def call(self, inputs, state=None, training=None):
        self._check_steps(inputs.shape[1])
        batch = ops.shape(inputs)[0]
        steps = ops.shape(inputs)[1]
        if state is None:
            state = self.initial_state(batch)
        if len(state) != len(self.level_models):
            raise ValueError(
                f"HierarchicalLSTM state must have one entry per level: expected {len(self.level_models)}; got {len(state)}."
            )
        stride = self.strides[0]
        lowest = self.level_models[0]
        if self.mode == "parallel":
            # Every sub-chunk becomes its own lane, started from zeros: depth `stride`, not `steps`.
            sub_chunks = ops.reshape(inputs, (-1, stride, inputs.shape[-1]))
            sub_outputs, _ = lowest(sub_chunks, state=None, training=training)
            level_outputs = ops.reshape(sub_outputs, (batch, steps, self.level_widths[0]))
            new_state = [()]
        else:
            level_outputs, lowest_state = lowest(inputs, state=state[0], training=training)
            new_state = [lowest_state]
        per_step = [level_outputs]
        summaries = level_outputs[:, stride - 1 :: stride]
        period = stride  # raw steps per step of the next level up
        for model, stride, (level_state, last_output) in zip(self.level_models[1:], self.strides[1:], state[1:]):
            level_outputs, level_state = model(summaries, state=level_state, training=training)
            if self.outputs_kind == "per_step":
                per_step.append(self._broadcast(level_outputs, last_output, period, steps))
            new_state.append((level_state, level_outputs[:, -1]))
            summaries = level_outputs[:, stride - 1 :: stride]
            period *= stride
        if self.outputs_kind == "per_summary":
            return summaries, tuple(new_state)
        return ops.concatenate(per_step, axis=-1), tuple(new_state)

    @staticmethod
    def _broadcast(level_outputs, last_output, period, steps):
        """Each raw step t gets the level's output j = floor((t + 1) / period) - 1.

        Output j closes raw steps [j * period, (j + 1) * period) and is used from its last
        step (t = (j + 1) * period - 1) on; j = -1 is the previous chunk's last output.
        """
        with_previous = ops.concatenate([ops.expand_dims(last_output, 1), level_outputs], axis=1)
        repeated = ops.repeat(with_previous, period, axis=1)  # position m holds output floor(m / period) - 1
        return repeated[:, 1 : steps + 1]

    # ---- one step at a time ----------------------------------------------------------------

    @property
    def chunk_multiple(self) -> int:
        return self.period

    def streamable(self) -> str | None:
        if self.mode != "sequential":
            return (
                f"HierarchicalLSTM(mode={self.mode!r}) cannot stream: its level 0 restarts from zeros at every "
                f"sub-chunk of {self.strides[0]} steps, which one step at a time cannot reproduce. Train with "
                f"mode='sequential' to stream."
            )
        if self.outputs_kind != "per_step":
            return (
                "HierarchicalLSTM(outputs='per_summary') cannot stream: it has an output only every "
                f"{self.period} steps. Use outputs='per_step'."
            )
        return None

    def initial_step_state(self, batch_size: int) -> State:
        """The chunk state plus a phase per lane: which step of the period comes next."""
        return (self.initial_state(batch_size), ops.zeros((batch_size,), "float32"))

    def step_state_is_call_state(self) -> bool:
        return False  # the phase is extra, and chunks must start at a multiple of the period

    def step(self, x_t, state):
        """One raw step of the sequential model (per-step outputs).

        Level l + 1 receives level l's output at the ticks where `(phase + 1)` is a multiple of
        the product of the strides up to level l: the same steps the chunked model slices out
        with `level_outputs[:, stride - 1 :: stride]`, because chunks start at multiples of the
        whole period. On other ticks the level's candidate update is discarded.
        """
        model_state, phase = state
        summary, lowest_state = self.level_models[0].step(x_t, model_state[0])
        per_step, new_state = [summary], [lowest_state]
        next_phase = phase + 1.0
        period = self.strides[0]
        for model, stride, (level_state, last_output) in zip(self.level_models[1:], self.strides[1:], model_state[1:]):
            emit = ops.expand_dims(ops.equal(ops.mod(next_phase, float(period)), 0.0), -1)
            summary, candidate = model.step(summary, level_state)
            level_state = keras.tree.map_structure(lambda new, old: ops.where(emit, new, old), candidate, level_state)
            last_output = ops.where(emit, summary, last_output)
            per_step.append(last_output)
            new_state.append((level_state, last_output))
            period *= stride
        return ops.concatenate(per_step, axis=-1), (tuple(new_state), ops.mod(next_phase, float(self.period)))

    def compute_output_shape(self, input_shape):
        if self.outputs_kind == "per_summary":
            steps = None if input_shape[1] is None else input_shape[1] // self.period
            return (input_shape[0], steps, self.level_widths[-1])
        return (input_shape[0], input_shape[1], sum(self.level_widths))

    def get_config(self):
        config = super().get_config()
        levels = []
        for model, stride, units in zip(self.level_models, self.strides, self._level_units_given):
            levels.append([units if units is not None else keras.saving.serialize_keras_object(model), stride])
        config.update(levels=levels, mode=self.mode, outputs=self.outputs_kind)
        return config
