"""The model part of a streaming state as NumPy: copy, zero rows, flatten, check against a model."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from longstm.errors import DataValidationError
from longstm.train.checkpoint import open_arrays


def zero_step_state(model, batch_size: int):
    """The zero state `model.step` carries for `batch_size` instruments, NumPy leaves."""
    state = model.initial_step_state(batch_size)
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t), np.float32), state)


def as_numpy(state):
    """A copy of a nested state with NumPy float32 leaves."""
    return keras.tree.map_structure(lambda t: np.asarray(t, np.float32), state)


def zero_rows(state, keep: np.ndarray):
    """`state` with the rows where `keep` is 0 set to zeros."""
    return keras.tree.map_structure(lambda t: np.asarray(t) * keep.reshape((-1,) + (1,) * (np.ndim(t) - 1)), state)


def flatten(state) -> list[np.ndarray]:
    return keras.tree.flatten(state)


def fitted_state(model, n_instruments: int, got):
    """`got` packed as `model`'s step state for `n_instruments`; DataValidationError when it does not fit."""
    reference = zero_step_state(model, n_instruments)
    try:
        leaves = keras.tree.flatten(got)
        reference_leaves = keras.tree.flatten(reference)
    except Exception:  # noqa: BLE001 - any malformed structure is a user error here
        leaves, reference_leaves = [], [None]
    if got is None or len(leaves) != len(reference_leaves) or any(
        np.shape(a) != np.shape(b) for a, b in zip(leaves, reference_leaves)
    ):
        expected = [np.shape(t) for t in keras.tree.flatten(reference)]
        raise DataValidationError(
            f"streaming state does not fit this model and {n_instruments} instruments: expected model state "
            f"leaves of shapes {expected}; got {[np.shape(t) for t in leaves] if got is not None else got!r}"
        )
    return keras.tree.pack_sequence_as(reference, [np.asarray(t, np.float32) for t in leaves])


def read_state_file(path: Path, model, n_instruments: int) -> dict:
    """The arrays of a `save_state` file by name, the model state (`model`) packed as `model`'s structure."""
    if not path.is_file():
        raise DataValidationError(f"{path}: no such state file")
    reference = zero_step_state(model, n_instruments)
    count = len(keras.tree.flatten(reference))
    with open_arrays(path, DataValidationError, "state file", "save the state again") as arrays:  # no pickles
        found = sum(1 for key in arrays.files if key.startswith("model_"))
        if found != count:
            raise DataValidationError(
                f"{path}: holds {found} model state arrays; this model's state has {count}. Was it saved from a "
                f"different model?"
            )
        leaves = [arrays[f"model_{i}"] for i in range(count)]
        others = {key: arrays[key] for key in arrays.files if not key.startswith("model_")}
        return {"model": keras.tree.pack_sequence_as(reference, leaves), **others}


def select_rows(on: np.ndarray, new_state, old_state):
    """Per lane, the row of `new_state` where `on` is True, else the row of `old_state` (NumPy leaves)."""
    return keras.tree.map_structure(
        lambda new, old: np.where(on.reshape((-1,) + (1,) * (np.ndim(new) - 1)), np.asarray(new), np.asarray(old)),
        new_state,
        old_state,
    )


def take_rows(state, lanes: np.ndarray):
    """The rows `lanes` of every leaf of a nested NumPy state."""
    return keras.tree.map_structure(lambda t: t[lanes], state)


def put_rows(state, lanes: np.ndarray, rows):
    """A copy of `state` with the rows `lanes` of every leaf replaced by `rows` (the original is kept)."""

    def put(leaf, new):
        leaf = np.array(leaf, copy=True)
        leaf[lanes] = new
        return leaf

    return keras.tree.map_structure(put, state, rows)
