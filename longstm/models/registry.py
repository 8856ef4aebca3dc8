"""Models by name, for configs and the CLI: `[model] name = "..."` → a forecaster.

`MODELS` maps a name to a builder `build(model_config, n_features) -> RecurrentModel`, the
recurrent core. `build_model` puts the forecasting head on it (a `Forecaster`, with
`residual_inputs` when `model.residual` is set), after wrapping the core in a `LinearLagSkip`
when `model.lags > 0`.

The registry sits above the model classes: it imports them, and no model module imports it, so
the models stay a layer below `train` (which reads configs and calls `build_model`). A model of
your own joins with `register_model`:

>>> @register_model("my_lstm")
... def build_my_lstm(config, n_features):
...     return StackedLSTM(config.units, layers=config.layers)

`model.options` (a TOML table) carries a model's own arguments; a builder reads it with
`model_options(config, defaults)`, which rejects unknown keys.
"""

from __future__ import annotations

from typing import Callable

import keras

from longstm.errors import ConfigError
from longstm.models.attention import AttentionLSTM
from longstm.models.calendar import CalendarLSTM
from longstm.models.checks import model_options
from longstm.models.hierarchical import HierarchicalLSTM
from longstm.models.lags import LinearLagSkip
from longstm.models.minrnn_stack import MinRNNStack
from longstm.models.protocol import Forecaster, KerasRNNStack, RecurrentModel
from longstm.models.segment import NORMS, SegmentGRU
from longstm.models.segment_decoder import INITS
from longstm.models.stacked import StackedLSTM

Builder = Callable[..., RecurrentModel]


def build_lstm(config, n_features: int) -> RecurrentModel:
    """`layers` stacked `keras.layers.LSTM(units)` (cuDNN-eligible)."""
    model_options(config, {})
    return KerasRNNStack([keras.layers.LSTM(config.units, dropout=config.dropout) for _ in range(config.layers)])


def build_gru(config, n_features: int) -> RecurrentModel:
    """`layers` stacked `keras.layers.GRU(units)`."""
    model_options(config, {})
    return KerasRNNStack([keras.layers.GRU(config.units, dropout=config.dropout) for _ in range(config.layers)])


def build_stacked_lstm(config, n_features: int) -> RecurrentModel:
    """`StackedLSTM(units, layers, dropout)`; residual + layer norm default to on when layers > 1."""
    deep = config.layers > 1
    options = model_options(config, {"residual": deep, "layer_norm": deep})
    return StackedLSTM(config.units, layers=config.layers, dropout=config.dropout, **options)


def build_hierarchical_lstm(config, n_features: int) -> RecurrentModel:
    """`HierarchicalLSTM`; default levels `[(max(units // 4, 8), 16), (units, 1)]`, parallel mode.

    `model.options`: `levels` (a list of `[units, stride]`), `mode`, `outputs`; the window
    length k2 must be a multiple of the product of the strides.
    """
    default_levels = [[max(config.units // 4, 8), 16], [config.units, 1]]
    options = model_options(config, {"levels": default_levels, "mode": "parallel", "outputs": "per_step"})
    levels = [tuple(level) for level in options.pop("levels")]
    return HierarchicalLSTM(levels, **options)


def build_attention_lstm(config, n_features: int) -> RecurrentModel:
    """`AttentionLSTM(units, lstm_layers=layers)`; `model.options` default `heads=4, memory=128, window=129`."""
    options = model_options(config, {"heads": 4, "memory": 128, "window": 129})
    return AttentionLSTM(config.units, lstm_layers=config.layers, dropout=config.dropout, **options)


def min_rnn_builder(cell: str) -> Builder:
    """The builder of `MinRNNStack(cell=cell)`: `model.options` `norm`, `mlp_ratio`, `mode`, `scan`."""

    def build(config, n_features: int) -> RecurrentModel:
        options = model_options(config, {"norm": "rms", "mlp_ratio": 2, "mode": "parallel", "scan": "blocked"})
        return MinRNNStack(config.units, layers=config.layers, cell=cell, dropout=config.dropout, **options)

    build.__doc__ = f"`MinRNNStack(units, layers, cell={cell!r}, dropout)`; options `norm`, `mlp_ratio`, `mode`, `scan`."
    return build


def build_segment_gru(config, n_features: int) -> RecurrentModel:
    """`SegmentGRU(units, segment)` (after SegRNN) with its parallel decoder as the head;
    `model.options`: `segment` (steps per segment, default 24; TBPTT k1 and k2 must be multiples)
    and `linear` (default false: with `model.lags`, the lag projection is a linear forecast the
    decoder adds to its own, started at NLinear's solution by window training); `model.dropout`
    is the decoder's dropout before its projection; `channels` (default 0; C: the last input
    column is the channel id 0..C-1 of a channel-independent series, which the decoder embeds
    beside each output position, as SegRNN's channel-position embedding); `norm` (default "segment":
    level-free segments carried across chunks; "window": SegRNN's last-value normalisation of each
    look-back window; "revin": its mean and deviation, univariate, with `model.residual = true`;
    both for `train.mode = "windows"` and window scoring only); `init` (default "keras"; "pytorch":
    every Dense and GRU weight and bias starts uniform in +-1/sqrt(fan_in), as SegRNN's do)."""
    options = model_options(config, {"segment": 24, "linear": False, "channels": 0, "norm": "segment", "init": "keras"})
    if options["norm"] not in NORMS:
        raise ConfigError(f"'model.options.norm' must be one of {list(NORMS)}; got {options['norm']!r}")
    if options["init"] not in INITS:
        raise ConfigError(f"'model.options.init' must be one of {list(INITS)}; got {options['init']!r}")
    if options["norm"] == "revin" and not config.residual:
        raise ConfigError("'model.options.norm = \"revin\"' hands its decoder the window's mean relative to the last value, "
                          "so it needs 'model.residual = true'; got model.residual = false")
    if options["linear"] is not False and (options["linear"] is not True or config.lags < 1 or config.lag_relative):
        raise ConfigError(
            f"'model.options.linear = true' needs 'model.lags' >= 1 and 'model.lag_relative = false' (the linear "
            f"forecast reads the raw window); got linear={options['linear']!r}, lags={config.lags}, "
            f"lag_relative={config.lag_relative}"
        )
    channels = options["channels"]
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 0:
        raise ConfigError(f"'model.options.channels' must be an integer >= 0 (the number of channel ids); got {channels!r}")
    linear_width = config.lag_width if options["linear"] else 0
    return SegmentGRU(config.units, segment=options["segment"], features=n_features, linear_width=linear_width,
                      decoder_dropout=config.dropout, channels=channels, norm=options["norm"], init=options["init"])


def build_calendar_lstm(config, n_features: int) -> RecurrentModel:
    """`CalendarLSTM(levels, mode)` (`longstm.models.calendar`); `model.options`: `levels` (required,
    like `[{units = 32, every = "1s"}, {units = 64}]`; the data layer adds one boundary flag column
    per level but the top) and `mode` (default "parallel")."""
    options = model_options(config, {"levels": None, "mode": "parallel"})
    if options["levels"] is None:
        raise ConfigError(
            "'model.options.levels' is required for model 'calendar_lstm': a list like "
            '[{units = 32, every = "1s"}, {units = 64}]'
        )
    model = CalendarLSTM(options["levels"], mode=options["mode"])
    model.check_columns(n_features)
    return model


MODELS: dict[str, Builder] = {
    "lstm": build_lstm,
    "gru": build_gru,
    "stacked_lstm": build_stacked_lstm,
    "hierarchical_lstm": build_hierarchical_lstm,
    "attention_lstm": build_attention_lstm,
    "minlstm": min_rnn_builder("minlstm"),
    "mingru": min_rnn_builder("mingru"),
    "segment_gru": build_segment_gru,
    "calendar_lstm": build_calendar_lstm,
}


def register_model(name: str):
    """Decorator: make a model builder available as `[model] name = "<name>"`."""

    def decorate(builder: Builder) -> Builder:
        MODELS[name] = builder
        return builder

    return decorate


def build_model(config, n_features: int, n_outputs: int, residual_inputs=()) -> Forecaster:
    """The model named by `config.name` (a `ModelConfig`) with a Dense head of `n_outputs`.

    `residual_inputs`: input columns whose current value the head adds to its forecast
    (used when `model.residual` is true; see `Forecaster`).
    """
    if config.name not in MODELS:
        raise ConfigError(f"'model.name' must be one of {sorted(MODELS)}; got {config.name!r}")
    core = MODELS[config.name](config, n_features)
    head = core.make_head(n_outputs)  # None: the Forecaster's Dense head
    if getattr(config, "lags", 0) > 0:  # a linear skip over the last `lags` inputs (longstm.models.lags)
        core = LinearLagSkip(core, lags=config.lags, width=config.lag_width, features=n_features, relative=config.lag_relative)
    return Forecaster(core, head=head, outputs=n_outputs, residual_inputs=list(residual_inputs))
