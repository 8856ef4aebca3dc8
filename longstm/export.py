"""Export a trained model as a single-step serving function: `(x_t, state) -> (prediction, new_state)`.

Three formats (`longstm export RUN_DIR --format ...`):

- `keras`: a `.keras` file holding a `StreamingStep` model (the protocol model inside, plus
  the run's columns and scaler in its config). `StreamingPredictor.from_saved(path)` loads it.
- `savedmodel`: a TensorFlow SavedModel folder with one endpoint, `serve`, and the same
  `serving_default` signature: inputs `x_t (batch, features)` and `state_0 .. state_{k-1}`
  (the flattened state, batch first), outputs `prediction` and `state_0 ..`. The batch size
  is free. `longstm_stream.json` beside it holds columns, scaler and state shapes.
- `tflite`: a `.tflite` flat buffer of the same signature with a fixed batch
  (`n_instruments`); `PATH.json` beside it holds the metadata. Plain LSTM/GRU stacks convert
  to built-in TFLite ops (their one-step function is cell arithmetic, no `while` loop);
  models whose step needs other TensorFlow ops are converted with `SELECT_TF_OPS` (the
  interpreter of the full `tensorflow` package runs them; a bare `tflite-runtime` does not).

Inputs and outputs of every artefact are in the model's (scaled) units: the scaler is
metadata, applied by `StreamingPredictor`, so a caller in another language can apply it too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from longstm.errors import ConfigError
from longstm.stream import StreamingPredictor, _core_and_head, check_streamable, initial_stream_state, model_step

FORMATS = ("savedmodel", "keras", "tflite")


def _import_model_modules() -> None:
    """Import every model module so their classes are registered for deserialisation."""
    from longstm.stream import _import_model_builders

    _import_model_builders()


@keras.saving.register_keras_serializable(package="longstm")
class StreamingStep(keras.Model):
    """One tick of a protocol model as a plain Keras model: `[x_t, *state] -> [prediction, *new_state]`.

    The state is flattened (`keras.tree.flatten` order of the streaming state) so every
    input and output is a tensor with the batch axis first.

    Args:
        model: a built, streamable longstm `RecurrentModel` (see `longstm.stream`).
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
            _import_model_modules()
            model = keras.saving.deserialize_keras_object(model)
        check_streamable(model)
        self.model = model
        self.metadata = dict(metadata or {})
        self.n_features = int(n_features if n_features is not None else self.metadata.get("n_features") or 0) or None
        # A plain holder (not a list/tuple attribute) so Keras does not track the template.
        self._state_template = _Template(keras.tree.map_structure(lambda _: 0, initial_stream_state(model, 1)))

    def zero_state(self, batch_size: int) -> list[np.ndarray]:
        """The flattened zero state for `batch_size` lanes."""
        return keras.tree.flatten(initial_stream_state(self.model, batch_size))

    def build(self, input_shape=None):
        if not self.model.built:
            features = self.n_features or int(input_shape[0][-1])
            core, _ = _core_and_head(self.model)
            steps = getattr(core, "period", 1)
            self.model(np.zeros((1, steps, features), np.float32), state=self.model.initial_state(1))
        self.built = True

    def call(self, inputs):
        x_t, leaves = inputs[0], list(inputs[1:])
        structure = self._state_template.structure
        expected = len(keras.tree.flatten(structure))
        if len(leaves) != expected:
            raise ValueError(f"StreamingStep expects x_t and {expected} state tensors; got {len(leaves)} state tensors.")
        state = keras.tree.pack_sequence_as(structure, leaves)
        prediction, new_state = model_step(self.model, x_t, state)
        return [prediction, *keras.tree.flatten(new_state)]

    def get_config(self):
        config = super().get_config()
        config.update(model=keras.saving.serialize_keras_object(self.model), metadata=self.metadata, n_features=self.n_features)
        return config


class _Template:
    def __init__(self, structure):
        self.structure = structure


def _state_shapes(model) -> list[tuple[int, ...]]:
    """Per-lane shapes of the flattened streaming state (without the batch axis)."""
    return [tuple(leaf.shape[1:]) for leaf in keras.tree.flatten(initial_stream_state(model, 1))]


def _serving_function(step: StreamingStep):
    def serve(x_t, *state):
        outputs = step([x_t, *state])
        return {"prediction": outputs[0], **{f"state_{i}": leaf for i, leaf in enumerate(outputs[1:])}}

    return serve


def _signature(model, n_features: int, batch: int | None):
    import tensorflow as tf

    specs = [tf.TensorSpec((batch, n_features), tf.float32, name="x_t")]
    specs += [tf.TensorSpec((batch, *shape), tf.float32, name=f"state_{i}") for i, shape in enumerate(_state_shapes(model))]
    return specs


def _write_savedmodel(step: StreamingStep, path: Path, batch: int | None) -> None:
    from keras.export import ExportArchive

    archive = ExportArchive()
    archive.track(step)
    archive.add_endpoint("serve", _serving_function(step), input_signature=_signature(step.model, step.n_features, batch))
    archive.write_out(str(path), verbose=False)


def export_predictor(predictor: StreamingPredictor, out: str | Path, format: str, *, n_instruments: int = 1) -> Path:
    """Write `predictor`'s model as a single-step artefact; returns the path written.

    Args:
        predictor: a `StreamingPredictor` (its model and metadata are exported, not its state).
        out: output path (`.keras` file, SavedModel folder, or `.tflite` file).
        format: `"savedmodel"`, `"keras"` or `"tflite"`.
        n_instruments: the fixed batch of a TFLite model.
    """
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {FORMATS}; got {format!r}")
    out = Path(out)
    metadata = predictor.metadata() | {"state_shapes": [list(s) for s in _state_shapes(predictor.model)], "format": format}
    step = StreamingStep(predictor.model, metadata=metadata, n_features=predictor.n_features)
    zero = [np.zeros((1, predictor.n_features), np.float32), *step.zero_state(1)]
    step(zero)  # builds, and records the input shapes the .keras format rebuilds from
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "keras":
        if out.suffix != ".keras":
            raise ConfigError(f"--format keras writes a .keras file; got --out {out}")
        step.save(out)
    elif format == "savedmodel":
        _write_savedmodel(step, out, batch=None)
        (out / "longstm_stream.json").write_text(json.dumps(metadata | {"batch": None}, indent=1))
    else:
        flat_buffer, ops_used = _tflite_bytes(step, n_instruments)
        out.write_bytes(flat_buffer)
        Path(str(out) + ".json").write_text(json.dumps(metadata | {"batch": n_instruments, "tflite_ops": ops_used}, indent=1))
    return out


def _tflite_bytes(step: StreamingStep, batch: int) -> tuple[bytes, str]:
    """The step as a TFLite flat buffer (built-in ops if they suffice, else with SELECT_TF_OPS) and which."""
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        _write_savedmodel(step, Path(folder), batch=batch)
        errors = []
        for ops_sets in ([tf.lite.OpsSet.TFLITE_BUILTINS], [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]):
            converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["serving_default"])
            converter.target_spec.supported_ops = ops_sets
            try:
                return converter.convert(), "+".join(s.name for s in ops_sets)
            except Exception as error:  # noqa: BLE001 - the converter raises many types; report them all
                errors.append(f"{[s.name for s in ops_sets]}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    raise ConfigError("TFLite could not convert this model's step: " + "; ".join(errors))


def export_run(run_dir: str | Path, format: str, out: str | Path | None = None, *, n_instruments: int = 1) -> Path:
    """Export the model of a training run directory (default path: `RUN_DIR/export/step.<ext>`)."""
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {FORMATS}; got {format!r}")
    predictor = StreamingPredictor.from_run(run_dir, engine="tf")
    if out is None:
        name = {"keras": "step.keras", "savedmodel": "step_savedmodel", "tflite": "step.tflite"}[format]
        out = Path(run_dir) / "export" / name
    return export_predictor(predictor, out, format, n_instruments=n_instruments)


class SavedModelStep:
    """Call an exported SavedModel like a stream: `step(x_t) -> prediction`, state kept inside."""

    def __init__(self, path: str | Path, batch: int = 1):
        import tensorflow as tf

        path = Path(path)
        if not (path / "saved_model.pb").is_file():
            raise ConfigError(f"{path}: not a SavedModel folder (no saved_model.pb)")
        self.loaded = tf.saved_model.load(str(path))
        meta = json.loads((path / "longstm_stream.json").read_text())
        self.state = [np.zeros((batch, *shape), np.float32) for shape in meta["state_shapes"]]

    def __call__(self, x_t: np.ndarray) -> np.ndarray:
        outputs = self.loaded.serve(np.asarray(x_t, np.float32), *self.state)
        self.state = [outputs[f"state_{i}"].numpy() for i in range(len(self.state))]
        return outputs["prediction"].numpy()


class TFLiteStep:
    """Call an exported `.tflite` model like a stream (fixed batch), state kept inside."""

    def __init__(self, path: str | Path):
        import tensorflow as tf

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such .tflite file")
        meta = json.loads(Path(str(path) + ".json").read_text())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            self.interpreter = tf.lite.Interpreter(model_path=str(path))
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.state = [np.zeros((meta["batch"], *shape), np.float32) for shape in meta["state_shapes"]]

    def __call__(self, x_t: np.ndarray) -> np.ndarray:
        feeds = {"x_t": np.asarray(x_t, np.float32), **{f"state_{i}": leaf for i, leaf in enumerate(self.state)}}
        outputs = self.runner(**feeds)
        self.state = [outputs[f"state_{i}"] for i in range(len(self.state))]
        return outputs["prediction"]
