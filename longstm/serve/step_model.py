"""One tick of a protocol model as a plain Keras model, the form every export starts from."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

import longstm.models.registry  # noqa: F401  (imports every model class: Keras deserialises them by name)
from longstm.serve.checks import check_streamable
from longstm.serve.state import zero_step_state


class _Template:
    """A plain holder (not a list/tuple attribute), so Keras does not track the state template."""

    def __init__(self, structure):
        self.structure = structure


@keras.saving.register_keras_serializable(package="longstm")
class StreamingStep(keras.Model):
    """One tick of a protocol model as a plain Keras model: `[x_t, *state] -> [prediction, *new_state]`.

    The state is flattened (`keras.tree.flatten` order of the model's step state) so every
    input and output is a tensor with the batch axis first.

    Args:
        model: a built, streamable longstm `RecurrentModel`.
        metadata: JSON-able dict (columns, scaler, ...) kept in the config.
        n_features: inputs per tick (read from `metadata["n_features"]` when omitted).

    Call arguments:
        inputs: a list `[x_t, state_0, ..., state_{k-1}]`.

    Returns:
        a list `[prediction, new_state_0, ..., new_state_{k-1}]`.

    Example:

    >>> step = StreamingStep(model, metadata={"n_features": 7})
    >>> outputs = step([x_t, *step.zero_state(4)])
    """

    def __init__(self, model, metadata: dict[str, Any] | None = None, n_features: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        check_streamable(model)
        self.model = model
        self.metadata = dict(metadata or {})
        self.n_features = int(n_features if n_features is not None else self.metadata.get("n_features") or 0) or None
        self._state_template = _Template(keras.tree.map_structure(lambda _: 0, zero_step_state(model, 1)))

    def zero_state(self, batch_size: int) -> list[np.ndarray]:
        """The flattened zero state for `batch_size` lanes."""
        return keras.tree.flatten(zero_step_state(self.model, batch_size))

    def state_shapes(self) -> list[tuple[int, ...]]:
        """Per-lane shapes of the flattened state (without the batch axis)."""
        return [tuple(leaf.shape[1:]) for leaf in self.zero_state(1)]

    def build(self, input_shape=None):
        if not self.model.built:
            self.model.build_for_features(self.n_features or int(input_shape[0][-1]))
        self.built = True

    def call(self, inputs):
        x_t, leaves = inputs[0], list(inputs[1:])
        structure = self._state_template.structure
        expected = len(keras.tree.flatten(structure))
        if len(leaves) != expected:
            raise ValueError(f"StreamingStep expects x_t and {expected} state tensors; got {len(leaves)} state tensors.")
        prediction, new_state = self.model.step(x_t, keras.tree.pack_sequence_as(structure, leaves))
        return [prediction, *keras.tree.flatten(new_state)]

    def get_config(self):
        config = super().get_config()
        config.update(model=keras.saving.serialize_keras_object(self.model), metadata=self.metadata, n_features=self.n_features)
        return config
