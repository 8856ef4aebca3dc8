"""One step of a stack of Keras LSTM/GRU layers through their cells, and their weights as NumPy.

`KerasRNNStack` and `StackedLSTM` share this one-step path: a single step of a
`keras.layers.LSTM` is its cell's arithmetic, so calling the cell skips the layer's `while`
loop (and converts to built-in TFLite ops). A stack is described as a list of
`(layer, residual, norm)`: the recurrent layer, whether its input is added to its output, and
the layer norm after it (or None).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

ONE_STEP_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell)


def has_cell_step(layers: Sequence[tuple[Any, bool, Any]]) -> bool:
    """True when every layer is a forward LSTM/GRU whose cell can be called for one step."""
    return all(isinstance(layer.cell, ONE_STEP_CELLS) and not layer.go_backwards for layer, _, _ in layers)


def cells_step(layers: Sequence[tuple[Any, bool, Any]], x_t, state):
    """One step of the stack: `x_t (batch, features)` -> `(outputs (batch, units), new_state)`."""
    outputs, new_state = x_t, []
    for (layer, residual, norm), layer_state in zip(layers, state):
        layer_input = outputs
        outputs, cell_state = layer.cell(outputs, list(layer_state), training=False)
        if not isinstance(cell_state, (list, tuple)):
            cell_state = [cell_state]
        new_state.append(tuple(cell_state))
        if residual:
            outputs = outputs + layer_input
        if norm is not None:
            outputs = norm(outputs)
    return outputs, tuple(new_state)


def _array(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), np.float32)


def numpy_cells(layers: Sequence[tuple[Any, bool, Any]], owner: str) -> list[dict[str, Any]] | str:
    """The stack's weights as NumPy (see `RecurrentModel.numpy_layers`), or why it has none."""
    if not has_cell_step(layers):
        return f"its core {owner} is not an LSTM/GRU stack"
    described = []
    for layer, residual, norm in layers:
        cell = layer.cell
        kind = "gru" if isinstance(cell, keras.layers.GRUCell) else "lstm"
        if norm is not None and (norm.axis not in (-1, [-1]) or getattr(norm, "rms_scaling", False)):
            return "a layer norm over other axes than the last, or RMS scaling"
        if cell.activation is not keras.activations.tanh or cell.recurrent_activation is not keras.activations.sigmoid:
            return f"a {type(cell).__name__} with non-default activations"
        if kind == "gru" and not cell.reset_after:
            return "a GRU with reset_after=False"
        if norm is not None:
            norm = (
                _array(norm.gamma) if norm.scale else np.float32(1.0),
                _array(norm.beta) if norm.center else np.float32(0.0),
                np.float32(norm.epsilon),
            )
        described.append(
            {
                "cell": kind,
                "kernel": _array(cell.kernel),
                "recurrent_kernel": _array(cell.recurrent_kernel),
                "bias": _array(cell.bias) if cell.use_bias else None,
                "units": int(cell.units),
                "residual": bool(residual),
                "norm": norm,
            }
        )
    return described
