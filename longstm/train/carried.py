"""One pass over a series with carried state: the model's outputs at chosen rows.

The evaluation protocols (`longstm.evaluate`) read a trained model in two ways, both here:

- `carried_outputs`: run a whole series from its first row (state reset at segment starts)
  in chunks, and keep the outputs at the rows that are wanted. The HFT and LOBSTER
  predictors and the ETT `stream` mode all forecast this way.
- `last_step_forecast`: each window from a zero state, the forecast at its last step (the
  ETT `window` mode).

Example:

>>> compiled = CompiledModel(trainer.model)
>>> outputs = carried_outputs(compiled, scaled_inputs, segments=[0], rows=decision_steps, chunk=128)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
from keras import ops

from longstm.errors import DataValidationError
from longstm.models.protocol import Forecaster


def last_step_forecast(model, x, training: bool = False):
    """The forecast at the last step of `x` run from a zero state: `(batch, outputs)`.

    For a `Forecaster` the head is applied at the last step only (a full-window head would
    hold `batch x L x outputs` values: 1.7 GB for 256 windows of L = 336 at H = 720, M), and
    the core computes what its `last_step` computes (`SegmentGRU`: that step only).
    """
    state = model.initial_state(ops.shape(x)[0])
    if not isinstance(model, Forecaster):
        outputs, _ = model(x, state=state, training=training)
        return outputs[:, -1]
    features, _ = model.core.last_step(x, state=state, training=training)
    return model.forecast_at_step(features, x[:, -1], training=training)


class CompiledModel:
    """The model's window and chunk forward passes, each traced once per input shape.

    Args:
        model: a built `RecurrentModel`.

    Attributes:
        window: `x -> last_step_forecast(model, x)`.
        chunk: `(x, state) -> (outputs, new_state)`, inference mode.
    """

    def __init__(self, model):
        self.model = model
        self.window = tf.function(lambda x: last_step_forecast(model, x))
        self.chunk = tf.function(lambda x, state: model(x, state=state, training=False))


def carried_outputs(compiled: CompiledModel, inputs: np.ndarray, segments: Sequence[int], rows: np.ndarray,
                    chunk: int) -> np.ndarray:
    """The model's outputs at `rows`, from one pass over `inputs` with carried state.

    Each segment (starting at the rows in `segments`) is run from a zero state in chunks of
    `chunk` rows (the last chunk zero-padded: the model is causal, so padding after a row
    cannot change its output); nothing past `max(rows)` is read.

    Args:
        compiled: the model's compiled passes.
        inputs: `(n, features)` scaled inputs, or `(lanes, n, features)` for several series on
            the same timeline (run side by side as the lanes of one batch, e.g. the channels of
            a channel-independent model); rows past `max(rows)` are ignored.
        segments: start rows of segments (0 implied).
        rows: the rows whose outputs are wanted (any order, each < n).
        chunk: rows per model call.

    Returns:
        `(len(rows), outputs)` float32 in the order of `rows`; `(lanes, len(rows), outputs)`
        for lanes.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    single = inputs.ndim == 2
    if single:
        inputs = inputs[None]
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise DataValidationError("no rows to forecast")
    length = inputs.shape[1]
    stop = int(rows.max()) + 1
    if rows.min() < 0 or stop > length:
        raise DataValidationError(f"rows to forecast must lie in [0, {length}); got [{rows.min()}, {stop - 1}]")
    lanes = inputs.shape[0]
    bounds = sorted({0, *(int(s) for s in segments if 0 < int(s) < stop)}) + [stop]
    wanted = np.zeros(stop, dtype=bool)
    wanted[rows] = True
    kept: dict[int, np.ndarray] = {}
    for seg_start, seg_stop in zip(bounds[:-1], bounds[1:]):
        if not wanted[seg_start:seg_stop].any():
            continue
        last = seg_start + int(np.flatnonzero(wanted[seg_start:seg_stop]).max()) + 1
        state = compiled.model.initial_state(lanes)
        for first in range(seg_start, last, chunk):
            block = inputs[:, first : min(first + chunk, last)]
            padded = np.zeros((lanes, chunk, inputs.shape[2]), np.float32)
            padded[:, : block.shape[1]] = block
            outputs, state = compiled.chunk(tf.constant(padded), state)
            here = np.flatnonzero(wanted[first : first + block.shape[1]])
            if here.size:
                values = outputs.numpy()
                for offset in here:
                    kept[first + int(offset)] = values[:, offset]
    result = np.stack([kept[int(row)] for row in rows], axis=1).astype(np.float32)
    return result[0] if single else result
