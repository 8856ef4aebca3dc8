"""Model construction by name, for configs and the CLI.

`MODELS` maps a name to a builder `build(model_config, n_features, n_outputs) -> RecurrentModel`.
Other model modules add themselves with `register_model`:

>>> @register_model("stacked_lstm")
... def build_stacked(config, n_features, n_outputs):
...     return Forecaster(StackedLSTM(config.units, layers=config.layers), outputs=n_outputs)

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


@register_model("lstm")
def build_lstm(config, n_features: int, n_outputs: int):
    """`layers` stacked `keras.layers.LSTM(units)` (cuDNN-eligible) and a Dense head."""
    import keras

    from longstm.models.protocol import Forecaster, KerasRNNStack

    stack = KerasRNNStack([keras.layers.LSTM(config.units, dropout=config.dropout) for _ in range(config.layers)])
    return Forecaster(stack, outputs=n_outputs)


@register_model("gru")
def build_gru(config, n_features: int, n_outputs: int):
    """`layers` stacked `keras.layers.GRU(units)` and a Dense head."""
    import keras

    from longstm.models.protocol import Forecaster, KerasRNNStack

    stack = KerasRNNStack([keras.layers.GRU(config.units, dropout=config.dropout) for _ in range(config.layers)])
    return Forecaster(stack, outputs=n_outputs)


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


def build_model(config, n_features: int, n_outputs: int):
    """The model named by `config.name` (a `ModelConfig`)."""
    if config.name not in known_models(config.name):
        raise ConfigError(f"'model.name' must be one of {sorted(MODELS)}; got {config.name!r}")
    return MODELS[config.name](config, n_features, n_outputs)
