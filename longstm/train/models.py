"""Model construction by name, for configs and the CLI.

`MODELS` maps a name to a builder `build(model_config, n_features) -> RecurrentModel`, the
recurrent core; `build_model` puts the forecasting head on it (a `Forecaster`, with
`residual_inputs` when `model.residual` is set), after wrapping the core in a
`LinearLagSkip` when `model.lags > 0`. Other model modules add themselves with
`register_model`:

>>> @register_model("stacked_lstm")
... def build_stacked(config, n_features):
...     return StackedLSTM(config.units, layers=config.layers)

`model.options` (a TOML table) carries a model's own arguments; a builder reads it with
`model_options(config, allowed)`, which rejects unknown keys.

Builders import Keras inside the function, so reading a config stays free of TensorFlow.
"""

from __future__ import annotations

from typing import Callable

from longstm.errors import ConfigError

MODELS: dict[str, Callable] = {}


def register_model(name: str):
    """Decorator: make a model builder available as `[model] name = "<name>"`."""

    def decorate(builder: Callable) -> Callable:
        MODELS[name] = builder
        return builder

    return decorate


def model_options(config, allowed: dict) -> dict:
    """`config.options` merged over the defaults in `allowed`; unknown keys are a ConfigError."""
    unknown = sorted(set(config.options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"'model.options' for model {config.name!r} has unknown keys {unknown}; expected some of {sorted(allowed)}"
        )
    return {**allowed, **config.options}


@register_model("lstm")
def build_lstm(config, n_features: int):
    """`layers` stacked `keras.layers.LSTM(units)` (cuDNN-eligible)."""
    import keras

    from longstm.models.protocol import KerasRNNStack

    model_options(config, {})
    return KerasRNNStack([keras.layers.LSTM(config.units, dropout=config.dropout) for _ in range(config.layers)])


@register_model("gru")
def build_gru(config, n_features: int):
    """`layers` stacked `keras.layers.GRU(units)`."""
    import keras

    from longstm.models.protocol import KerasRNNStack

    model_options(config, {})
    return KerasRNNStack([keras.layers.GRU(config.units, dropout=config.dropout) for _ in range(config.layers)])


# Model modules that register builders when imported; imported only when a config names a
# model that is not registered yet (they import Keras).
MODEL_MODULES = ("longstm.models.stacked", "longstm.models.hierarchical", "longstm.models.attention", "longstm.models.minrnn")


def known_models(name: str | None = None) -> dict[str, Callable]:
    """`MODELS`, after importing the model modules if `name` (or any name) is not there yet."""
    if name is None or name not in MODELS:
        import importlib

        for module in MODEL_MODULES:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
    return MODELS


def build_model(config, n_features: int, n_outputs: int, residual_inputs=()):
    """The model named by `config.name` (a `ModelConfig`) with a Dense head of `n_outputs`.

    `residual_inputs`: input columns whose current value the head adds to its forecast
    (used when `model.residual` is true; see `Forecaster`).
    """
    from longstm.models.protocol import Forecaster

    if config.name not in known_models(config.name):
        raise ConfigError(f"'model.name' must be one of {sorted(MODELS)}; got {config.name!r}")
    core = MODELS[config.name](config, n_features)
    if getattr(config, "lags", 0) > 0:  # a linear skip over the last `lags` inputs (longstm.models.lags)
        from longstm.models.lags import LinearLagSkip

        core = LinearLagSkip(
            core, lags=config.lags, width=config.lag_width, features=n_features, relative=config.lag_relative
        )
    return Forecaster(core, outputs=n_outputs, residual_inputs=list(residual_inputs))
