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

Every family that can stream exports to all three formats (tests/serve/test_export_families.py);
one that cannot (a parallel `HierarchicalLSTM`) is refused with one line naming the format.
A `.keras` file is loaded without running code it carries (`longstm.serve.loading.load_keras_file`);
a SavedModel or `.tflite` file is a TensorFlow graph, which runs no Python but may hold any
TensorFlow op (file reads and writes included): run only the ones you exported.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
from keras.export import ExportArchive

from longstm.errors import ConfigError
from longstm.serve.loading import load_run_model
from longstm.serve.predictor import StreamingPredictor
from longstm.serve.step_model import StreamingStep

FORMATS = ("savedmodel", "keras", "tflite")


def _serving_function(step: StreamingStep):
    def serve(x_t, *state):
        outputs = step([x_t, *state])
        return {"prediction": outputs[0], **{f"state_{i}": leaf for i, leaf in enumerate(outputs[1:])}}

    return serve


def _signature(step: StreamingStep, batch: int | None):
    specs = [tf.TensorSpec((batch, step.n_features), tf.float32, name="x_t")]
    specs += [tf.TensorSpec((batch, *shape), tf.float32, name=f"state_{i}") for i, shape in enumerate(step.state_shapes())]
    return specs


def _write_savedmodel(step: StreamingStep, path: Path, batch: int | None) -> None:
    archive = ExportArchive()
    archive.track(step)
    archive.add_endpoint("serve", _serving_function(step), input_signature=_signature(step, batch))
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
    step = StreamingStep(predictor.model, n_features=predictor.n_features)
    step.metadata = predictor.metadata() | {"state_shapes": [list(s) for s in step.state_shapes()], "format": format}
    metadata = step.metadata
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


def export_model(model, out: str | Path, format: str, *, n_instruments: int = 1) -> Path:
    """Write a protocol model (no scaler or columns) as a single-step artefact; returns the path.

    A model that cannot stream (its `streamable()` gives a reason, e.g. a parallel
    `HierarchicalLSTM`) is refused with one `ConfigError` line naming the format and the reason.
    """
    check_exportable(model, format, "this model")
    return export_predictor(StreamingPredictor(model), out, format, n_instruments=n_instruments)


def check_exportable(model, format: str, where: str) -> None:
    """`ConfigError` (one line naming `where`, the format and the model's reason) unless `model` can stream."""
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {FORMATS}; got {format!r}")
    reason = model.streamable() if callable(getattr(model, "streamable", None)) else f"{type(model).__name__} is not a longstm RecurrentModel"
    if reason is not None:
        raise ConfigError(f"{where}: cannot export to {format}: {reason}")


def _tflite_bytes(step: StreamingStep, batch: int) -> tuple[bytes, str]:
    """The step as a TFLite flat buffer (built-in ops if they suffice, else with SELECT_TF_OPS) and which."""
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
    """Export the model of a training run directory.

    Args:
        run_dir: a run directory written by `longstm train`.
        format: `"savedmodel"`, `"keras"` or `"tflite"`.
        out: output path (default `RUN_DIR/export/step.keras`, `step_savedmodel` or `step.tflite`).
        n_instruments: the fixed batch of a TFLite model.

    Returns:
        the path written.

    Example:

    >>> path = export_run("runs/etth1", "savedmodel")
    >>> runner = SavedModelStep(path)
    >>> prediction = runner(x_t)                 # (1, features) scaled -> (1, outputs)
    """
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {FORMATS}; got {format!r}")
    model, meta = load_run_model(run_dir)
    check_exportable(model, format, str(run_dir))
    predictor = StreamingPredictor.from_metadata(model, meta, engine="tf")
    if out is None:
        name = {"keras": "step.keras", "savedmodel": "step_savedmodel", "tflite": "step.tflite"}[format]
        out = Path(run_dir) / "export" / name
    return export_predictor(predictor, out, format, n_instruments=n_instruments)


class SavedModelStep:
    """Call an exported SavedModel like a stream: `step(x_t) -> prediction`, state kept inside.

    Args:
        path: the SavedModel folder (`export_run(..., "savedmodel")`).
        batch: instruments per call (the SavedModel takes any batch).
    """

    def __init__(self, path: str | Path, batch: int = 1):
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
    """Call an exported `.tflite` model like a stream (fixed batch), state kept inside.

    Args:
        path: the `.tflite` file; its metadata (`PATH.json`) must lie beside it.
    """

    def __init__(self, path: str | Path):
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
