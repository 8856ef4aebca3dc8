"""An LSTM followed by causal multi-head attention over its outputs and a carried memory.

Within a chunk, an LSTM's information about the distant past has to survive in `(h, c)`.
Here every step can also look back directly: causal multi-head self-attention over the LSTM
outputs of the current chunk **plus a memory of the last `memory` LSTM outputs** from before
the chunk. The memory is carried like state (and cut from the gradient), with a validity
mask, so at the start of a series (or after `reset_lanes`) it is empty and masked out.

What a step at absolute position t attends to:

- `window=None`: every step it can see: the valid memory (the `memory` steps before its
  chunk) and the steps of its chunk up to and including t. The reach therefore depends on
  where t falls in its chunk, and a chunked forward equals the full-sequence forward only
  while the memory holds every earlier step (`memory >= t - (position in chunk)`, e.g.
  `memory >=` series length).
- `window=w` (`1 <= w <= memory + 1`): exactly the steps t - w + 1 .. t (fewer at the start
  of the series): a sliding causal window. Because the memory always holds the w - 1 steps
  before the chunk, **chunked-with-carry equals the full-sequence forward exactly**, for any
  chunk lengths (chunks shorter than the memory included). This path is also computed in
  blocks, so its cost is about `steps * (w + block)` rather than `steps * (memory + steps)`.

The output at every step is `LayerNorm(h_t + attention_t)`, `(batch, steps, units)`.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from longstm.errors import ConfigError
from longstm.models.protocol import RecurrentModel, State, build_sublayer
from longstm.models.checks import check_fraction, check_positive_int
from longstm.models.stacked import StackedLSTM


def _block_size(steps: int, lookback: int) -> int:
    """The largest divisor of `steps` no larger than `max(lookback, 1)`: queries per block."""
    limit = max(lookback, 1)
    return max(d for d in range(1, min(steps, limit) + 1) if steps % d == 0)


@keras.saving.register_keras_serializable(package="longstm")
class AttentionLSTM(RecurrentModel):
    """LSTM + causal multi-head attention over the chunk and a memory of earlier outputs.

    See the module docstring for exactly what each step attends to and what chunking
    preserves.

    Args:
        units: LSTM width and output width.
        heads: number of attention heads.
        memory: how many LSTM outputs from before the chunk are kept (>= 0).
        window: `None` (attend to everything visible), or the sliding window length w,
            `1 <= w <= memory + 1`.
        key_dim: size of each head's query/key projection (default `units // heads`, >= 1).
        lstm_layers: number of LSTM layers below the attention.
        dropout: dropout on the attention weights during training.

    Call arguments:
        inputs: `(batch, steps, features)`.
        state: `(lstm_state, memory_values, memory_valid)` (just `(lstm_state,)` when
            `memory=0`); `memory_values` is `(batch, memory, units)` and `memory_valid`
            `(batch, memory)`, 1.0 where the slot holds a real earlier output.
        training: turns dropout on.
        return_attention: also return the attention weights.

    Returns:
        `(outputs, new_state)`, or `(outputs, new_state, weights)` with
        `return_attention=True`: weights of shape `(batch, heads, steps, memory + steps)`;
        key column `m < memory` is memory slot m (oldest first), column `memory + s` is
        step s of the chunk.

    Example:

    >>> model = AttentionLSTM(64, heads=4, memory=256, window=257)
    >>> state = model.initial_state(16)
    >>> for chunk in chunks:
    ...     outputs, state = model(chunk, state=state)
    >>> _, _, weights = model(chunk, state=state, return_attention=True)
    """

    def __init__(
        self,
        units: int,
        heads: int = 4,
        memory: int = 0,
        window: int | None = None,
        key_dim: int | None = None,
        lstm_layers: int = 1,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_positive_int("AttentionLSTM", "units", units)
        self.heads = check_positive_int("AttentionLSTM", "heads", heads)
        self.memory = check_positive_int("AttentionLSTM", "memory", memory, minimum=0)
        if window is not None:
            check_positive_int("AttentionLSTM", "window", window)
            if window > self.memory + 1:
                raise ConfigError(
                    f"AttentionLSTM argument `window` must be at most memory + 1 = {self.memory + 1} (the memory must "
                    f"hold the window's earlier steps); got {window}."
                )
        self.window = window
        self.key_dim = check_positive_int("AttentionLSTM", "key_dim", key_dim if key_dim is not None else max(1, units // heads))
        self._key_dim_given = key_dim
        self.lstm_layers = check_positive_int("AttentionLSTM", "lstm_layers", lstm_layers)
        self.dropout = check_fraction("AttentionLSTM", "dropout", dropout)
        self.lstm = StackedLSTM(units, layers=lstm_layers, name="lstm")
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=heads, key_dim=self.key_dim, dropout=self.dropout, name="attention"
        )
        self.norm = keras.layers.LayerNormalization(name="norm")
        self._use_blocks = window is not None  # tests switch it off to compare with the dense path

    def build(self, input_shape):
        hidden = tuple(input_shape[:2]) + (self.units,)
        keys = (hidden[0], None if hidden[1] is None else self.memory + hidden[1], self.units)  # the memory, then the chunk
        build_sublayer(self.lstm, input_shape)
        if not self.attention.built:
            self.attention.build(hidden, keys, keys)
        build_sublayer(self.norm, hidden)
        self.built = True

    def initial_state(self, batch_size: int) -> State:
        lstm_state = self.lstm.initial_state(batch_size)
        if not self.memory:
            return (lstm_state,)
        return (
            lstm_state,
            ops.zeros((batch_size, self.memory, self.units), self.compute_dtype),
            ops.zeros((batch_size, self.memory), self.compute_dtype),
        )

    def call(self, inputs, state=None, training=None, return_attention=False):
        batch = ops.shape(inputs)[0]
        if state is None:
            state = self.initial_state(batch)
        expected = 3 if self.memory else 1
        if len(state) != expected:
            raise ValueError(f"AttentionLSTM state must have {expected} entries (memory={self.memory}); got {len(state)}.")
        if inputs.shape[1] is None:
            raise ValueError(
                "AttentionLSTM needs a static chunk length (inputs axis 1) to build its causal masks; got None. "
                "Use fixed-length chunks (e.g. a tf.function input_signature with the chunk length)."
            )
        hidden, lstm_state = self.lstm(inputs, state=state[0], training=training)
        steps = hidden.shape[1]
        ones = ops.ones_like(hidden[..., 0])
        if self.memory:
            memory_values, memory_valid = ops.stop_gradient(state[1]), state[2]
            keys = ops.concatenate([memory_values, hidden], axis=1)
            valid = ops.concatenate([memory_valid, ones], axis=1)
            new_memory = (ops.stop_gradient(keys[:, -self.memory :]), valid[:, -self.memory :])
        else:
            keys, valid, new_memory = hidden, ones, ()
        if self._use_blocks:
            attended, weights = self._windowed_attention(hidden, keys, valid, steps, training, return_attention)
        else:
            attended, weights = self._dense_attention(hidden, keys, valid, steps, training)
        outputs = self.norm(hidden + attended)
        new_state = (lstm_state,) + new_memory
        if return_attention:
            return outputs, new_state, weights
        return outputs, new_state

    def _allowed(self, query_positions, key_positions):
        """Causal (and windowed) mask between absolute query and key positions, NumPy bool."""
        lag = query_positions[:, None] - key_positions[None, :]
        allowed = lag >= 0
        if self.window is not None:
            allowed &= lag < self.window
        return allowed

    def _dense_attention(self, hidden, keys, valid, steps, training):
        key_positions = np.arange(keys.shape[1]) - (keys.shape[1] - steps)
        allowed = ops.convert_to_tensor(self._allowed(np.arange(steps), key_positions))
        mask = ops.logical_and(ops.expand_dims(allowed, 0), ops.expand_dims(valid > 0.5, 1))
        return self.attention(
            hidden, keys, keys, attention_mask=mask, return_attention_scores=True, training=training
        )

    def _windowed_attention(self, hidden, keys, valid, steps, training, return_attention):
        """Sliding-window attention in blocks of queries; each block sees only the keys it can reach."""
        lookback = self.window - 1
        block = _block_size(steps, lookback)
        blocks = steps // block
        reach = math.ceil(lookback / block)  # whole blocks of keys before a query block
        padded_lookback = reach * block
        # Keys from `padded_lookback` before the chunk; slots before the memory are padding.
        memory_keys = keys[:, keys.shape[1] - steps - min(lookback, keys.shape[1] - steps) :]
        memory_valid = valid[:, valid.shape[1] - steps - min(lookback, valid.shape[1] - steps) :]
        pad = padded_lookback + steps - memory_keys.shape[1]
        memory_keys = ops.pad(memory_keys, [(0, 0), (pad, 0), (0, 0)])
        memory_valid = ops.pad(memory_valid, [(0, 0), (pad, 0)])
        key_blocks = ops.reshape(memory_keys, (-1, reach + blocks, block, self.units))
        valid_blocks = ops.reshape(memory_valid, (-1, reach + blocks, block))
        # Query block j reaches key blocks j .. j + reach (in the padded coordinates).
        block_keys = ops.concatenate([key_blocks[:, i : i + blocks] for i in range(reach + 1)], axis=2)
        block_valid = ops.concatenate([valid_blocks[:, i : i + blocks] for i in range(reach + 1)], axis=2)
        span = (reach + 1) * block
        block_keys = ops.reshape(block_keys, (-1, span, self.units))
        block_valid = ops.reshape(block_valid, (-1, 1, span)) > 0.5
        allowed = self._allowed(np.arange(block) + padded_lookback, np.arange(span))
        mask = ops.logical_and(ops.convert_to_tensor(allowed)[None], block_valid)
        queries = ops.reshape(hidden, (-1, block, self.units))
        attended, block_weights = self.attention(
            queries, block_keys, block_keys, attention_mask=mask, return_attention_scores=True, training=training
        )
        attended = ops.reshape(attended, (-1, steps, self.units))
        if not return_attention:
            return attended, None
        return attended, self._dense_weights(block_weights, blocks, block, span, padded_lookback, steps)

    def _dense_weights(self, block_weights, blocks, block, span, padded_lookback, steps):
        """Blocked weights `(batch*blocks, heads, block, span)` as `(batch, heads, steps, memory + steps)`."""
        per_block = ops.reshape(block_weights, (-1, blocks, self.heads, block, span))
        rows = [
            ops.pad(per_block[:, j], [(0, 0), (0, 0), (0, 0), (j * block, (blocks - 1 - j) * block)])
            for j in range(blocks)
        ]
        padded = ops.concatenate(rows, axis=2)  # key columns from `padded_lookback` before the chunk
        shift = self.memory - padded_lookback
        if shift >= 0:
            return ops.pad(padded, [(0, 0), (0, 0), (0, 0), (shift, 0)])
        return padded[..., -shift:]

    # ---- one step at a time ----------------------------------------------------------------

    def streamable(self) -> str | None:
        if self.window is None:
            return (
                "AttentionLSTM(window=None) cannot stream: a step of a long chunk attends to every earlier step of its "
                "chunk, a single step only to the memory, so streaming would not equal the batch model. Use a sliding "
                f"window, window <= memory + 1 = {self.memory + 1}."
            )
        return None

    def step(self, x_t, state):
        """One step: the LSTM's cells, then attention of this step over the last `window` outputs."""
        hidden, lstm_state = self.lstm.step(x_t, state[0])
        query = ops.expand_dims(hidden, 1)
        ones = ops.ones_like(hidden[:, :1])
        if self.memory:
            keys = ops.concatenate([state[1], query], axis=1)
            valid = ops.concatenate([state[2], ones], axis=1)
            new_memory = (keys[:, -self.memory :], valid[:, -self.memory :])
        else:
            keys, valid, new_memory = query, ones, ()
        # Keys are the memory (oldest first) then this step: the window is the last `window` of them.
        in_window = np.arange(keys.shape[1]) >= keys.shape[1] - self.window
        mask = ops.logical_and(ops.convert_to_tensor(in_window)[None, None, :], ops.expand_dims(valid > 0.5, 1))
        attended = self.attention(query, keys, keys, attention_mask=mask, training=False)
        return self.norm(hidden + attended[:, 0]), (lstm_state,) + new_memory

    def attention_weights(self, inputs, state=None):
        """The attention weights of one chunk, `(batch, heads, steps, memory + steps)`, as NumPy."""
        return ops.convert_to_numpy(self(inputs, state=state, return_attention=True)[2])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            heads=self.heads,
            memory=self.memory,
            window=self.window,
            key_dim=self._key_dim_given,
            lstm_layers=self.lstm_layers,
            dropout=self.dropout,
        )
        return config


def save_attention_weights(path, weights) -> None:
    """Write attention weights where `longstm plot attention` finds them (`attention.npy`)."""
    np.save(path, np.asarray(weights))
