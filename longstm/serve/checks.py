"""What serving asks of a model before it streams it: the protocol, the model's own answer, its width.

Kept free of Keras and TensorFlow (the model answers for itself), so `longstm.StreamingPredictor`
can be looked up without importing them.
"""

from __future__ import annotations

from longstm.errors import ConfigError


def check_streamable(model) -> None:
    """Raise `ConfigError` unless `model` follows the one-step protocol and says it can stream.

    Args:
        model: a longstm `RecurrentModel` (it offers `step` and `streamable`).
    """
    if not callable(getattr(model, "step", None)) or not callable(getattr(model, "streamable", None)):
        raise ConfigError(
            f"StreamingPredictor needs a longstm RecurrentModel (state in, state out); got {type(model).__name__}."
        )
    reason = model.streamable()
    if reason is not None:
        raise ConfigError(reason)


def model_input_width(model) -> int | None:
    """Features per step the built `model` was called with (None when unknown)."""
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    shape = shapes.get("input_shape") or shapes.get("inputs_shape")
    if shape is None or not shape or shape[-1] is None:
        return None
    return int(shape[-1])
