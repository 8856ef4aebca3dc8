"""A run directory -> the float32 model with its weights, and what serving needs to know about its data.

The one loader of serving: the layout comes from `RunDir`, the model from the run's config
through `longstm.train.run.model_for` (as training and `load_run` build it), the weights from the
same checkpoint files with the same fallback (best, else latest, else latest.old). Unlike
`load_run` it reads no data and builds no trainer, and the model runs in float32 whatever
precision training used.

Files from elsewhere are untrusted and never run code: a run directory is TOML, JSON and `.npz`
arrays read with `allow_pickle=False` (a pickled object is one `ConfigError` line), and a
`.keras` file is loaded in Keras safe mode after refusing any `Lambda` layer (`load_keras_file`).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import keras

from longstm.errors import ConfigError
from longstm.train.rundir import RunDir
from longstm.train.run import model_for
from longstm.train.checkpoint import assign_checkpoint_arrays, open_arrays

RETRAIN = "train the run again, or copy its checkpoints from where it was trained"
UNSAFE_LAYERS = ("Lambda", "__lambda__")  # Python code (marshalled bytecode or a function by name)


def load_keras_file(path: Path):
    """The model in a `.keras` file, loaded without running any code the file carries.

    A `.keras` file from elsewhere is untrusted: a `Lambda` layer holds Python code that Keras would
    run. Such a file is refused before Keras reads it (whatever `keras.config` says about safe
    mode), and Keras then loads in safe mode; a damaged file or unknown class is one `ConfigError` line.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as reason:
        raise ConfigError(f"{path}: not a readable .keras file ({reason})") from None
    found = sorted(_class_names(config) & set(UNSAFE_LAYERS))
    if found:
        raise ConfigError(
            f"{path}: holds a {found[0]} layer (Python code); longstm never runs code from a model file, "
            f"so it refuses this one. Rebuild the model without Lambda layers"
        )
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as reason:  # noqa: BLE001 - Keras raises many types for a bad file; each is one line
        first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        raise ConfigError(f"{path}: cannot be loaded as a longstm model ({first})") from None


def _class_names(config) -> set[str]:
    """Every `class_name` in a Keras config tree."""
    names: set[str] = set()
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                names.add(node["class_name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def load_run_model(run_dir: str | Path, weights: str = "best") -> tuple[Any, dict[str, Any]]:
    """`(model, metadata)` of a run directory written by `longstm train`.

    Args:
        run_dir: the run directory.
        weights: `"best"` (best.npz, else the latest checkpoint) or `"latest"`.

    Returns:
        the built float32 model with its weights, and a dict: `columns`, `scaler`,
        `feature_pipeline`, `feature_columns`, `target_columns`, `horizon`, `offset`, `targets`
        (the forecast column names, e.g. `OT+1`); a run on a store's panel also has `series`
        (its series names), its `scaler` is one per series and its `targets` the time targets.

    Example:

    >>> model, meta = load_run_model("runs/etth1")
    >>> predictor = StreamingPredictor.from_metadata(model, meta)
    """
    if weights not in ("best", "latest"):
        raise ConfigError(f"weights must be 'best' or 'latest'; got {weights!r}")
    run = RunDir(run_dir).require()
    config = run.read_config()
    record = run.read_data_record()
    weights_path = run.weights(weights)
    names = list(record["columns"])
    features = [names.index(name) for name in record["features"]]
    targets = [names.index(name) for name in record["targets"]]
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # serving runs in float32 whatever training used
    try:
        model = model_for(config, features, targets, names)
        model.build_for_features(len(features))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    with open_arrays(weights_path, ConfigError, "weights file", RETRAIN) as arrays:  # allow_pickle=False
        assign_checkpoint_arrays(model.variables, arrays, "model", weights_path, error=ConfigError)
    meta = {
        "columns": names,
        "scaler": record.get("scaler"),
        "feature_pipeline": record.get("feature_pipeline"),
        "feature_columns": features,
        "target_columns": targets,
        "horizon": config.data.horizon,
        "offset": config.data.offset,
        "targets": [f"{names[t]}+{config.data.offset + h}" for h in range(config.data.horizon) for t in targets],
    }
    if record.get("time_targets"):  # a panel run: time targets at the row itself, a scaler per series
        meta.update(offset=0, targets=[names[t] for t in targets], series=list(record["series"]))
    return model, meta
