"""SegRNN's parallel multi-step decoder (Lin et al. 2023), the head of the segment forecaster.

From an encoder summary h, one GRU step per output segment runs side by side, each fed a learned
position embedding (with SegRNN's channel embedding beside it when the series are channels of
one dataset), and a shared Dense maps each step's output to the segment's `w` values
(`longstm.models.segment.SegmentGRU.make_head` builds it).
"""

from __future__ import annotations

import keras
from keras import ops

from longstm.models.checks import check_positive_int

# How the Dense and GRU weights start: "keras" (Glorot-uniform kernels, orthogonal recurrent
# kernels, zero biases) or "pytorch" (every weight and bias uniform in +-1/sqrt(fan_in), as
# torch.nn.Linear and torch.nn.GRU start; SegRNN's own code starts so).
INITS = ("keras", "pytorch")


def start_weights(layer: keras.layers.Layer, init: str, fan_in: int) -> None:
    """Set how an unbuilt Dense or GRUCell starts: as Keras does ("keras": left as it is), or as
    PyTorch does ("pytorch": every weight and bias U(+-1/sqrt(fan_in))).

    Keras' `VarianceScaling(1/3, "fan_in", "uniform")` gives the kernels that bound too, but not
    the biases (their shape does not hold the fan-in), so one explicit bound serves all.
    """
    if init == "keras":
        return
    bound = float(fan_in) ** -0.5
    for name in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
        if hasattr(layer, name):
            setattr(layer, name, keras.initializers.RandomUniform(-bound, bound))


@keras.saving.register_keras_serializable(package="longstm")
class SegmentDecoder(keras.layers.Layer):
    """SegRNN's parallel multi-step decoder as a per-step head.

    From the encoder's summary h at a step, `M = ceil(outputs / segment)` GRU steps run side by
    side, each from h with the learned embedding of its output position; a shared Dense maps
    each to `segment` values; the first `outputs` of the `M * segment` values are the forecast.

    Args:
        outputs: values forecast per step (H, or H x targets, horizon-major).
        segment: values each output position decodes (SegRNN's w).
        units: width of the decoder GRU (the encoder's units); features of another width (a lag
            skip beside the encoder) are first mapped to it by a Dense layer.
        linear: 0, or how many of the last input features form a linear forecast: they are
            mapped by a Dense layer straight to the `outputs` values and added to the decoded
            ones (not fed to the decoder GRU).
        dropout: dropout on the decoder GRU's outputs before their projection, in training
            (SegRNN's regulariser; 0: none).
        channels: 0, or C: the last C features (before the `linear` ones) are a one-hot channel
            id; each output segment's decoder input is then [its position embedding (units -
            units // 2); the channel's embedding (units // 2)], SegRNN's channel-position
            embedding.
        rescale: the two features before the `linear` ones are a scale and an offset (RevIN's
            deviation, and its mean minus the last value): the decoded values are multiplied by
            the first and shifted by the second (`SegmentGRU(norm="revin")`).
        init: "keras" (default) or "pytorch": how its Dense and GRU weights start (`INITS`).

    Call arguments:
        features: `(batch, steps, width)`, the core's output.

    Returns:
        `(batch, steps, outputs)`.

    Example:

    >>> head = SegmentDecoder(96, segment=48, units=128)
    >>> head(features).shape                     # features (32, 720, 128 + 48 + 48)
    (32, 720, 96)
    """

    def __init__(self, outputs: int, segment: int, units: int, linear: int = 0, dropout: float = 0.0, channels: int = 0,
                 rescale: bool = False, init: str = "keras", **kwargs):
        super().__init__(**kwargs)
        if init not in INITS:
            raise ValueError(f"SegmentDecoder init must be one of {INITS}; got {init!r}")
        self.init = init
        self.rescale = bool(rescale)
        self.channels = 0 if channels == 0 else check_positive_int("SegmentDecoder", "channels", channels)
        if self.channels and units < 2:
            raise ValueError(f"SegmentDecoder(channels={channels}) splits its input between position and channel: units >= 2; got {units}")
        if not 0 <= dropout < 1:
            raise ValueError(f"SegmentDecoder dropout must be in [0, 1); got {dropout!r}")
        self.dropout = float(dropout)
        self.drop = keras.layers.Dropout(self.dropout, name="decoder_dropout")
        self.linear = 0 if linear == 0 else check_positive_int("SegmentDecoder", "linear", linear)
        self.outputs = check_positive_int("SegmentDecoder", "outputs", outputs)
        self.segment = check_positive_int("SegmentDecoder", "segment", segment)
        self.units = check_positive_int("SegmentDecoder", "units", units)
        self.positions = -(-self.outputs // self.segment)
        self.cell = keras.layers.GRUCell(self.units, name="decoder_gru")
        self.project = keras.layers.Dense(self.segment, name="decoder_projection")

    def build(self, input_shape):
        reserved = self.linear + self.channels + (2 if self.rescale else 0)
        width = int(input_shape[-1]) - reserved
        if width < 1:
            raise ValueError(f"SegmentDecoder(linear={self.linear}, channels={self.channels}, rescale={self.rescale}) needs "
                             f"more than {reserved} input features; got {int(input_shape[-1])}")
        self.linear_map = None
        if self.linear:
            self.linear_map = keras.layers.Dense(self.outputs, name="linear_forecast")
            start_weights(self.linear_map, self.init, self.linear)
            self.linear_map.build((None, self.linear))
        self.adapt = None if width == self.units else keras.layers.Dense(self.units, name="decoder_input")
        if self.adapt is not None:
            start_weights(self.adapt, self.init, width)
            self.adapt.build((None, width))
        channel_width = self.units // 2 if self.channels else 0
        # With channels, both embeddings start as SegRNN's do (torch.randn: standard normal).
        initializer = keras.initializers.RandomNormal(stddev=1.0) if self.channels else "random_normal"
        self.position_embedding = self.add_weight(
            name="position_embedding", shape=(self.positions, self.units - channel_width), initializer=initializer
        )
        self.channel_embedding = None
        if self.channels:
            self.channel_embedding = self.add_weight(
                name="channel_embedding", shape=(self.channels, channel_width), initializer=initializer
            )
        start_weights(self.cell, self.init, self.units)
        self.cell.build((None, self.units))
        start_weights(self.project, self.init, self.units)
        self.project.build((None, self.units))
        self.built = True

    def call(self, features, training=None):
        shape = ops.shape(features)  # (batch, steps, width)
        flat = ops.reshape(features, (-1, features.shape[-1]))
        linear_part = None
        if self.linear:
            flat, linear_part = flat[:, : -self.linear], self.linear_map(flat[:, -self.linear :])
        scale = None
        if self.rescale:
            flat, scale, offset = flat[:, :-2], flat[:, -2:-1], flat[:, -1:]
        channel = None
        if self.channels:
            flat, one_hot = flat[:, : -self.channels], flat[:, -self.channels :]
            channel = ops.matmul(one_hot, ops.cast(self.channel_embedding, flat.dtype))  # (rows, units // 2)
        if self.adapt is not None:
            flat = self.adapt(flat)
        rows = ops.shape(flat)[0]
        # Every (row, position) pair is one GRU step: the M positions decode in parallel.
        h = ops.repeat(flat, self.positions, axis=0)
        x = ops.tile(ops.cast(self.position_embedding, flat.dtype), (rows, 1))
        if channel is not None:
            x = ops.concatenate([x, ops.repeat(channel, self.positions, axis=0)], axis=-1)
        decoded, _ = self.cell(x, [h], training=training)
        values = ops.reshape(self.project(self.drop(decoded, training=training)), (rows, self.positions * self.segment))[:, : self.outputs]
        if scale is not None:
            values = values * scale + offset
        if linear_part is not None:
            values = values + linear_part
        return ops.reshape(values, (shape[0], shape[1], self.outputs))

    def get_config(self):
        return super().get_config() | {"outputs": self.outputs, "segment": self.segment, "units": self.units, "linear": self.linear,
                                       "dropout": self.dropout, "channels": self.channels,
                                       "rescale": self.rescale, "init": self.init}
