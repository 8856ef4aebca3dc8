"""The checkpoint format: model, optimizer and lane-state arrays by position, and their position.

A latest checkpoint (`RunDir.latest`) is a folder of two files:

    variables.npz   model_0 .. model_n    the model variables in creation order (weights and
                                          dropout seed-generator states)
                    optimizer_0 .. _m     the optimizer variables (moments, iteration, loss scale)
                    state_0 .. state_k    the carried lane states, global `(lanes, ...)` arrays
    position.json   epoch, update within the epoch, global step, history, early-stopping counters

`best.npz` holds the `model_*` arrays only. Variables are stored by position, so a model must
create its variables in the same order to read an old checkpoint.

A new latest checkpoint is written to `latest.tmp/`, the old one is moved to `latest.old/`,
the new one renamed into place and the old one removed: a process killed at any point
leaves a complete checkpoint (`RunDir.latest_checkpoint` finds `latest.old/` when the kill
fell between the two renames).

Example:

>>> save_weights(run.best_weights, model)
>>> load_weights(model, run.weights("best"))
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from longstm.atomic import write_atomically
from longstm.errors import LongstmError, TrainingError
from longstm.train.rundir import POSITION, VARIABLES, RunDir


def variable_arrays(variables, prefix: str) -> dict[str, np.ndarray]:
    """`{prefix}_{i}` arrays of `variables`, in their order."""
    return {f"{prefix}_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An `.npz` written through a temporary file and renamed into place; a write that fails (a
    full disk) removes the temporary file, leaves `path` as it was and is one `TrainingError` line."""
    try:
        write_atomically(path, lambda temporary: np.savez(temporary, **arrays), suffix=".tmp.npz")
    except OSError as reason:
        raise TrainingError(f"{path}: could not be written ({reason.strerror or reason}); the previous {path.name}, if any, is kept") from None


def save_weights(path: Path, model) -> None:
    """The model's variables alone (`best.npz`)."""
    write_arrays(path, variable_arrays(model.variables, "model"))


def assign_checkpoint_arrays(variables, arrays, prefix: str, source, error=TrainingError) -> None:
    """Load the `{prefix}_{i}` arrays of a checkpoint `.npz` into `variables`, checking count and shapes.

    Args:
        variables: the variables to assign, in creation order.
        arrays: the opened `.npz`.
        prefix: "model" or "optimizer".
        source: the file, named in errors.
        error: the exception type to raise on a mismatch (serving raises `ConfigError`).
    """
    expected = len(variables)
    found = sum(1 for key in arrays.files if key.startswith(prefix + "_"))
    if found != expected:
        raise error(
            f"{source}: the checkpoint holds {found} {prefix} variables but the {prefix} has {expected}; "
            f"was it written with a different model configuration?"
        )
    for i, variable in enumerate(variables):
        value = arrays[f"{prefix}_{i}"]
        if tuple(value.shape) != tuple(variable.shape):
            raise error(
                f"{source}: {prefix} variable {variable.path} has shape {tuple(variable.shape)}; "
                f"the checkpoint has {tuple(value.shape)}"
            )
        variable.assign(value)


RECOVERY = "train again without --resume (or delete the checkpoints folder) to start over"


PICKLED = "holds pickled Python objects, which longstm never loads (unpickling a file can run any code)"


@contextlib.contextmanager
def open_arrays(path: str | Path, error=TrainingError, what: str = "checkpoint file", recovery: str = RECOVERY):
    """The arrays of an `.npz` written by longstm (a checkpoint, a serving state), or one clear
    `error` when the file is missing, truncated or not an `.npz` (a disk that filled up, a copy
    cut short), or holds pickled objects (never unpickled: `allow_pickle=False`) — never a raw
    `BadZipFile`.

    Args:
        path: the `.npz` file.
        error: the exception type raised (serving raises `ConfigError` or `DataValidationError`).
        what, recovery: how the message names the file and what it tells the user to do.
    """
    path = Path(path)

    def damaged(reason: BaseException) -> LongstmError:
        if "allow_pickle" in str(reason):
            return error(f"{path}: the {what} {PICKLED}; {recovery}")
        return error(f"{path}: the {what} is damaged or truncated ({reason}); {recovery}")

    try:
        arrays = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise error(f"{path}: the {what} is missing; {recovery}") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as reason:
        raise damaged(reason) from None
    with arrays:
        try:
            yield arrays
        except LongstmError:  # the caller's own checks (shapes, counts) pass through as they are
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as reason:  # a member cut short, a pickle
            raise damaged(reason) from None


def load_weights(model, path: str | Path, error=TrainingError) -> None:
    """Assign the model variables saved in `path` (`best.npz` or a latest `variables.npz`)."""
    path = Path(path)
    with open_arrays(path, error) as arrays:
        assign_checkpoint_arrays(model.variables, arrays, "model", path, error=error)


def write_checkpoint(run: RunDir, model, optimizer, states: Sequence[np.ndarray], position: dict[str, Any]) -> Path:
    """Write the latest checkpoint of `run` (see the module docstring); returns its folder.

    Args:
        run: the run directory.
        model, optimizer: whose variables are saved.
        states: the carried lane states as global `(lanes, ...)` arrays.
        position: epoch, step_in_epoch, global_step, best (inf allowed), bad_epochs,
            finished, history.
    """
    temporary, target, previous = run.latest_temporary, run.latest, run.latest_old
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    arrays = variable_arrays(model.variables, "model") | variable_arrays(optimizer.variables, "optimizer")
    arrays |= {f"state_{i}": leaf for i, leaf in enumerate(states)}
    best = position["best"]
    position = {**position, "best": best if math.isfinite(best) else None}
    writing = temporary / VARIABLES
    try:  # a failed write (a full disk) leaves the previous latest checkpoint the one read
        np.savez(writing, **arrays)
        writing = temporary / POSITION
        writing.write_text(json.dumps(position, indent=1))
    except OSError as reason:
        shutil.rmtree(temporary, ignore_errors=True)
        raise TrainingError(
            f"{writing}: could not be written ({reason.strerror or reason}); the latest checkpoint is still the "
            f"previous one ({target})"
        ) from None
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        os.replace(target, previous)
    os.replace(temporary, target)
    shutil.rmtree(previous, ignore_errors=True)
    return target


def read_position(run: RunDir) -> dict[str, Any] | None:
    """`position.json` of the latest checkpoint, or None when there is none."""
    path = run.latest_checkpoint() / POSITION
    return json.loads(path.read_text()) if path.is_file() else None


def read_checkpoint(run: RunDir, model, optimizer, n_states: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Assign the latest checkpoint's model and optimizer variables; `(state arrays, position)`.

    `position["best"]` is a float (inf where none was recorded).
    """
    folder = run.latest_checkpoint()
    try:
        position = json.loads((folder / POSITION).read_text())
        position["best"] = math.inf if position["best"] is None else position["best"]
        position["global_step"]
    except FileNotFoundError:
        raise TrainingError(f"{folder}: incomplete checkpoint, {POSITION} is missing; {RECOVERY}") from None
    except (ValueError, KeyError, TypeError) as reason:
        raise TrainingError(f"{folder / POSITION}: damaged checkpoint position ({reason!r}); {RECOVERY}") from None
    with open_arrays(folder / VARIABLES) as arrays:
        missing = [f"state_{i}" for i in range(n_states) if f"state_{i}" not in arrays.files]
        if missing:
            raise TrainingError(
                f"{folder / VARIABLES}: holds no lane states {missing[:3]}; it was not written by a training run of this "
                f"config (lanes, model); {RECOVERY}"
            )
        assign_checkpoint_arrays(model.variables, arrays, "model", folder)
        assign_checkpoint_arrays(optimizer.variables, arrays, "optimizer", folder)
        states = [arrays[f"state_{i}"] for i in range(n_states)]
    return states, position
