"""A segment-level recurrent forecaster (after SegRNN, Lin et al. 2023) behind the state protocol.

SegRNN cuts the look-back window into segments of `w` steps, embeds each segment, runs a GRU
over the segments (L/w recurrent steps instead of L), and decodes all H future steps at once:
one GRU step per output segment from the last hidden state, each fed a learned position
embedding, and a linear map from the GRU's output to the segment's `w` values.

Here the encoder is `SegmentGRU`, a `RecurrentModel` whose state carries across chunks (and
so holds history beyond any window), and the decoder is `SegmentDecoder`
(`longstm.models.segment_decoder`), a per-step head for
`Forecaster`:

    x (batch, T, F) -> segments of w steps -> Dense + ReLU -> GRU over segments -> h
    at every step t: the h of the last segment closed at or before t (the standing summary)
    head: for m in 0..M-1: GRUCell(pos_m, h) -> Dense(w)  ->  the next M * w values

Level-free inputs (the role of SegRNN's last-value normalisation, kept valid across chunks):
each segment is embedded as its values minus its own last value, plus the change of that last
value since the previous segment's; with `Forecaster(residual_inputs=...)` the forecast is
added to the current value, so the model never sees a level.

Channel embedding (`channels=C`, SegRNN's channel-position embedding): the last input column
is the channel id (0..C-1) of a channel-independent series, a constant the protocol appends
and never scales. The encoder does not embed it; it passes a one-hot of it to the decoder,
whose input for each output segment is then [position embedding (units/2); channel embedding
(units/2)] instead of a position embedding of full width.

Window normalisation (`norm="window"`, SegRNN's own): every value of a look-back window minus
the window's last value, embedded segment by segment, the GRU from a zero state, the decoder
from its last state (no open segment, no phase: the features are the GRU state alone). The
reference is the window's last value, which no state carried from earlier chunks can know, so
such a model is `window_only`: it forecasts from whole windows (`last_step`; `train.mode =
"windows"`, window scoring) and has no per-step `call`, `step` or stream.

RevIN (`norm="revin"`, Kim et al. 2022, as SegRNN's `--revin 1` without the affine part): the
window is standardised by its own mean and standard deviation instead, and the decoded values
are mapped back (times the deviation, plus the mean). Window-only too, and univariate (one value
column, as in channel-independent use). The core passes the deviation and the mean minus the last
value to its decoder (`rescale`), so with `Forecaster(residual_inputs=[0])` the forecast is
`decoded * std + mean`.

A segment is used from its last step on: the summary at step t reads steps <= t only (causal).
Chunks passed to `call` must be a multiple of `w` long (`chunk_multiple`), starting at a
segment boundary; `step` advances one tick at a time, closing a segment every `w` ticks, and
keeps the standing summary in between. So a streaming forecast gets a new encoder summary when a
segment closes; between closes it is the standing summary's forecast, updated tick by tick only
by the open segment's values so far (relative to the current one) and the residual of the
current value, the same numbers `call` gives at those steps. (A stream that wants SegRNN's
once-per-segment forecast reads it at the closing ticks.)
"""

from __future__ import annotations

import keras
from keras import ops

from longstm.models.checks import check_positive_int
from longstm.models.protocol import RecurrentModel, State
from longstm.models.segment_decoder import INITS, SegmentDecoder, start_weights

# "segment": level-free segments, carried across chunks; "window": SegRNN's last-value
# normalisation of one look-back window; "revin": its mean and standard deviation.
NORMS = ("segment", "window", "revin")
REVIN_EPSILON = 1e-5  # added to the variance: a flat window has no spread to divide by


@keras.saving.register_keras_serializable(package="longstm")
class SegmentGRU(RecurrentModel):
    """GRU over level-free segment embeddings; its state is carried between chunks.

    Args:
        units: width of the segment embedding and of the GRU (SegRNN's `d_model`).
        segment: steps per segment, `w` (SegRNN uses 48 at L = 720).
        features: input columns (the state keeps the last value of each); taken from the first
            call when None, but `initial_state` then needs the model built first.
        linear_width: 0, or the width of a `LinearLagSkip` projection wrapped around this core
            (`model.lags`, `model.lag_width`): its head (`make_head`) then adds a linear map of
            those features to the forecast instead of decoding them (the recurrent part refines
            a linear forecast, as in xLSTM-Mixer; `longstm.train.windows.init_linear_forecast`
            starts the map at the closed-form NLinear solution).
        decoder_dropout: the dropout of the head `make_head` gives (`model.dropout`).
        channels: 0, or C: the last input column is a channel id in 0..C-1 (not embedded as a
            value); the outputs end with its one-hot and `make_head`'s decoder embeds it.
        norm: "segment" (default): level-free segments whose state carries across chunks;
            "window": SegRNN's last-value normalisation of a whole look-back window;
            "revin": its standardisation by the window's mean and deviation (univariate). Both
            are `window_only`: `last_step` only, see the module docstring.
        init: "keras" (default) or "pytorch": how the Dense and GRU weights of this core and of
            its head start (`longstm.models.segment_decoder.INITS`; SegRNN's code starts PyTorch's way).

    Call arguments:
        inputs: `(batch, steps, features)`, `steps` a multiple of `segment` (with `channels`,
            the last of the `features` columns is the channel id).
        state: `(h, last, seen)`: the GRU state `(batch, units)`, the last value of the previous
            segment `(batch, features)` and whether there was one `(batch, 1)` (0 after a reset,
            so the first segment's change is 0, not its level); `None` for zeros.

    Returns:
        `(outputs, new_state)`: `(batch, steps, units + segment * V + segment [+ channels])`, V
        the value columns (`features`, less the id column with `channels`): at step t the GRU
        state after the last segment closed at or before t (the carried one before the chunk's
        first close), the open segment's values so far relative to the value at t, a one-hot of
        how many there are, and with `channels` the one-hot of the channel id at t.

    Example:

    >>> model = Forecaster(SegmentGRU(64, segment=24), head=SegmentDecoder(96, 24, 64), residual_inputs=[0])
    >>> forecasts, state = model(x, state=model.initial_state(x.shape[0]))   # (batch, T, 96)
    """

    def __init__(self, units: int, segment: int = 24, features: int | None = None, linear_width: int = 0,
                 decoder_dropout: float = 0.0, channels: int = 0, norm: str = "segment", init: str = "keras", **kwargs):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"SegmentGRU norm must be one of {NORMS}; got {norm!r}")
        if init not in INITS:
            raise ValueError(f"SegmentGRU init must be one of {INITS}; got {init!r}")
        self.init = init
        self.norm = norm
        self.decoder_dropout = float(decoder_dropout)
        self.channels = 0 if channels == 0 else check_positive_int("SegmentGRU", "channels", channels)
        self.units = check_positive_int("SegmentGRU", "units", units)
        self.linear_width = 0 if linear_width == 0 else check_positive_int("SegmentGRU", "linear_width", linear_width)
        self.segment = check_positive_int("SegmentGRU", "segment", segment)
        self.features = None if features is None else check_positive_int("SegmentGRU", "features", features)
        if self.channels and self.features is not None and self.features < 2:
            raise ValueError(f"SegmentGRU(channels={self.channels}) needs a value column and the channel id column; got features={self.features}")
        self.embed = keras.layers.Dense(self.units, activation="relu", name="segment_embedding")
        self.cell = keras.layers.GRUCell(self.units, name="segment_gru")
        # Started here, not in `build`: the window path (`last_step`) calls both layers unbuilt.
        start_weights(self.cell, self.init, self.units)
        if self.features is not None:
            start_weights(self.embed, self.init, self._embedded_width())

    @property
    def chunk_multiple(self) -> int:
        return self.segment

    @property
    def window_only(self) -> bool:
        return self.norm != "segment"

    def streamable(self) -> str | None:
        if self.window_only:
            return (f"SegmentGRU(norm={self.norm!r}) normalises each look-back window by itself, so it forecasts "
                    f"from whole windows only; use norm='segment' (model.options.norm) to stream")
        return None

    def _refuse_per_step(self, inputs) -> None:
        if self.window_only:
            raise ValueError(
                f"SegmentGRU(norm={self.norm!r}) forecasts from whole look-back windows only (last_step; train.mode = "
                f"\"windows\", window scoring); got a per-step call on inputs of shape {tuple(inputs.shape)}"
            )

    def make_head(self, outputs: int) -> keras.layers.Layer:
        """Its parallel decoder, the head `Forecaster` puts on this core."""
        return SegmentDecoder(outputs, self.segment, self.units, linear=self.linear_width, dropout=self.decoder_dropout,
                              channels=self.channels, rescale=self.norm == "revin", init=self.init)

    @property
    def values(self) -> int:
        """The input columns embedded as values (all but the channel id column with `channels`)."""
        return self.features - (1 if self.channels else 0)

    def _split_id(self, inputs):
        """`inputs (..., features)` -> the value columns and the one-hot of the channel id (None without `channels`)."""
        if not self.channels:
            return inputs, None
        ids = ops.cast(ops.round(inputs[..., -1]), "int32")
        return inputs[..., :-1], ops.cast(ops.one_hot(ids, self.channels), inputs.dtype)

    def build(self, input_shape):
        features_at_init = self.features
        self.features = int(input_shape[-1]) if self.features is None else self.features
        self._check_revin()
        # Built already when a window model was built by `last_step` (Keras builds it again
        # before a per-step call, which `call` then refuses with its own message).
        if not self.embed.built:
            if features_at_init is None:  # its fan-in known only now
                start_weights(self.embed, self.init, self._embedded_width())
            self.embed.build((None, self._embedded_width()))
        if not self.cell.built:
            self.cell.build((None, self.units))
        self.built = True

    def _embedded_width(self) -> int:
        # "segment" also embeds the change of level since the previous segment (V more columns).
        return self.segment * self.values + (self.values if self.norm == "segment" else 0)

    def initial_state(self, batch_size: int) -> State:
        if self.features is None:
            raise ValueError("SegmentGRU needs `features` (or one call) before initial_state: the state keeps the last value of each input column")
        return (ops.zeros((batch_size, self.units)), ops.zeros((batch_size, self.values)), ops.zeros((batch_size, 1)))

    def _embed(self, segments, last_before, has_before):
        """`segments (batch, n, w, F)`, the last value before each `(batch, n, F)` and whether there
        was one `(batch, n, 1)` -> `(batch, n, units)`: level-free values and the change of level."""
        last = segments[:, :, -1]
        shape = ops.shape(segments)
        level_free = ops.reshape(segments - last[:, :, None], (shape[0], shape[1], self.segment * shape[3]))
        return self.embed(ops.concatenate([level_free, has_before * (last - last_before)], axis=-1))

    def _check_chunk(self, inputs):
        steps = inputs.shape[1]
        if inputs.shape[-1] != self.features:
            raise ValueError(f"SegmentGRU was made for {self.features} input columns; got inputs of shape {tuple(inputs.shape)}")
        if steps is not None and steps % self.segment:
            raise ValueError(
                f"SegmentGRU chunks must be a multiple of segment={self.segment} steps; got {steps}. "
                f"Use a chunk length like {max(self.segment, steps // self.segment * self.segment)}."
            )
        return steps

    def _encode(self, inputs, state, training):
        """The GRU over the chunk's segments: `(h0, [h after each segment], segments, new_state)`."""
        batch, steps = ops.shape(inputs)[0], inputs.shape[1]
        h0, last, seen = self.initial_state(batch) if state is None else state
        h = h0
        count = steps // self.segment
        segments = ops.reshape(inputs, (batch, count, self.segment, self.values))
        lasts = segments[:, :, -1]
        last_before = ops.concatenate([last[:, None], lasts[:, :-1]], axis=1)
        has_before = ops.concatenate([seen[:, None], ops.ones((batch, count - 1, 1))], axis=1)
        embedded = self._embed(segments, last_before, has_before)
        summaries = []
        for j in range(count):  # L / w recurrent steps (15 at L = 720, w = 48)
            h, _ = self.cell(embedded[:, j], [h], training=training)
            summaries.append(h)
        return h0, summaries, segments, (h, lasts[:, -1], ops.ones_like(seen))

    def call(self, inputs, state=None, training=None):
        self._refuse_per_step(inputs)
        steps = self._check_chunk(inputs)
        inputs, channel = self._split_id(inputs)
        h0, summaries, segments, new_state = self._encode(inputs, state, training)
        closed = ops.stack(summaries, axis=1)  # (batch, count, units)
        # Step t uses segment j = floor((t + 1) / w) - 1: the carried h before the first close.
        standing = ops.concatenate([ops.expand_dims(h0, 1), closed], axis=1)
        index = (ops.arange(steps) + 1) // self.segment
        outputs = ops.take(standing, index, axis=1)
        # The open segment at step t: its first q + 1 values (q = t mod w), none at a close.
        position = ops.arange(steps) % self.segment
        open_mask = ops.cast(
            (ops.arange(self.segment)[None, :] <= position[:, None]) & (position[:, None] < self.segment - 1), inputs.dtype
        )  # (steps, w)
        current = ops.take(segments, ops.arange(steps) // self.segment, axis=1)  # (batch, steps, w, F)
        return self._with_channel(self._with_open_segment(outputs, current, open_mask[None], inputs), channel), new_state

    def last_step(self, inputs, state=None, training=None):
        """The output of `call` at the chunk's last step only, `(batch, features out)`, and the state.

        A chunk ends at a segment close, so nothing is open there: the features are the last
        summary, zeros for the open segment and the phase of a close. Window-style training
        and scoring read only this step; it skips building the per-step outputs of all steps
        (`batch x steps x w x features` values). A window-only model (`norm="window"` or `"revin"`)
        reads the chunk as one look-back window, from zeros (`state` is not read); its features
        are the GRU state (and RevIN's scale and offset).
        """
        self._check_chunk(inputs)
        inputs, channel = self._split_id(inputs)
        if self.window_only:
            return self._window_last_step(inputs, channel, training)
        _, summaries, _, new_state = self._encode(inputs, state, training)
        h = summaries[-1]
        batch = ops.shape(inputs)[0]
        open_part = ops.zeros((batch, self.segment * self.values), h.dtype)
        phase = ops.one_hot(ops.zeros((batch,), "int32"), self.segment)
        features = ops.concatenate([h, open_part, ops.cast(phase, h.dtype)], axis=-1)
        return self._with_channel(features, None if channel is None else channel[:, -1]), new_state

    def _check_revin(self):
        if self.norm == "revin" and self.features is not None and self.values != 1:
            raise ValueError(f"SegmentGRU(norm='revin') is univariate (one value column, channel-independent use); "
                             f"got {self.values} value columns")

    def _window_last_step(self, inputs, channel, training):
        """SegRNN's reading of whole windows (`norm="window"` or `"revin"`): every value minus
        the window's last, or standardised by the window's mean and deviation; the GRU from
        zeros (a window model reads no carried state). The features are its last state, the
        channel one-hot, and with RevIN the deviation and the mean minus the last value; the
        state `(h, last value, 1)`."""
        self._check_revin()
        batch, count = ops.shape(inputs)[0], inputs.shape[1] // self.segment
        last = inputs[:, -1]
        rescale = None
        if self.norm == "revin":
            mean = ops.mean(inputs, axis=1, keepdims=True)
            deviation = ops.sqrt(ops.var(inputs, axis=1, keepdims=True) + REVIN_EPSILON)
            normalised = (inputs - mean) / deviation
            rescale = ops.concatenate([deviation[:, 0], mean[:, 0] - last], axis=-1)  # (batch, 2)
        else:
            normalised = inputs - last[:, None]
        embedded = self.embed(ops.reshape(normalised, (batch, count, self.segment * self.values)))
        h = ops.zeros((batch, self.units), inputs.dtype)
        for j in range(count):
            h, _ = self.cell(embedded[:, j], [h], training=training)
        new_state = (h, last, ops.ones((batch, 1), inputs.dtype))
        features = self._with_channel(h, None if channel is None else channel[:, -1])
        return (features if rescale is None else ops.concatenate([features, rescale], axis=-1)), new_state

    @staticmethod
    def _with_channel(features, channel):
        """The features with the channel id's one-hot appended (unchanged without `channels`)."""
        return features if channel is None else ops.concatenate([features, ops.cast(channel, features.dtype)], axis=-1)

    def _with_open_segment(self, summary, values, open_mask, x_t):
        """Per-step features: the standing summary, the open segment's values relative to the
        current value (left-aligned, zeros past it) and where in its segment the step is.

        Without the open part the head would see the same summary for all w steps of a segment
        and could not tell how far the series has moved since it closed: a forecast made at the
        segment's third step would have to be the one made at its first.
        """
        relative = (values - x_t[..., None, :]) * open_mask[..., None]
        shape = ops.shape(relative)
        flat = ops.reshape(relative, (shape[0], shape[1], self.segment * self.values))
        count = ops.sum(open_mask, axis=-1)  # values in the open segment: 0 at a close
        phase = ops.one_hot(ops.cast(count, "int32"), self.segment) * ops.ones_like(summary[..., :1])
        return ops.concatenate([summary, flat, phase], axis=-1)

    # ---- one tick at a time ---------------------------------------------------------------

    def initial_step_state(self, batch_size: int) -> State:
        h, last, seen = self.initial_state(batch_size)
        return (h, last, seen, ops.zeros((batch_size, self.segment, self.values)), ops.zeros((batch_size, 1)))

    def step_state_is_call_state(self) -> bool:
        return False

    def step(self, x_t, state):
        self._refuse_per_step(x_t[:, None])
        h, last, seen, buffer, phase = state
        x_t, channel = self._split_id(x_t)
        position = ops.cast(phase[:, 0], "int32")
        slot = ops.one_hot(position, self.segment)[:, :, None]  # (batch, w, 1)
        buffer = buffer * (1.0 - slot) + slot * x_t[:, None]
        closes = ops.equal(position, self.segment - 1)
        embedded = self._embed(buffer[:, None], last[:, None], seen[:, None])[:, 0]
        new_h, _ = self.cell(embedded, [h], training=False)
        keep = ops.cast(closes, h.dtype)[:, None]
        h = keep * new_h + (1.0 - keep) * h
        last = keep * x_t + (1.0 - keep) * last
        seen = keep + (1.0 - keep) * seen
        open_mask = ops.cast(ops.arange(self.segment)[None, :] <= position[:, None], x_t.dtype) * (1.0 - keep)
        features = self._with_open_segment(h[:, None], buffer[:, None], open_mask[:, None], x_t[:, None])[:, 0]
        phase = ops.where(closes[:, None], ops.zeros_like(phase), phase + 1.0)
        return self._with_channel(features, channel), (h, last, seen, buffer, phase)

    def get_config(self):
        return super().get_config() | {"units": self.units, "segment": self.segment, "features": self.features,
                                       "linear_width": self.linear_width, "decoder_dropout": self.decoder_dropout,
                                       "channels": self.channels, "norm": self.norm, "init": self.init}
