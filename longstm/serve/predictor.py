"""Streaming inference: one tick at a time, the recurrent state carried between ticks.

A trained model is used on live data: every new row (one per instrument) updates the state
and gives a prediction at once, without re-running any history.

    predictor = StreamingPredictor.from_run("runs/etth1")       # scaler and columns of the run
    predictor.warm_up(history)                                   # (T, columns) raw rows
    for row in live_rows:                                        # (columns,) raw, data units
        forecast = predictor.update(row)                         # (outputs,) data units

Rows may also come the way users hold them (a pandas row or DataFrame, a dict, an Arrow batch),
matched by column name, timestamps parsed, and rows of mixed instruments routed to their own
state by an id column (`longstm.serve.rows`, `longstm.serve.routing`).

What a tick does, for `n_instruments` lanes at once (one state row per instrument):

    features = pipeline.step(raw_row, its state)     # optional, causal (e.g. log returns)
    scaled   = (features - mean) / std               # the run's train-only scaler
    y, state = model.step(scaled[feature_columns], state)   # the model's own one-step update
    forecast = y * std[targets] + mean[targets]      # back to data units

Two engines run the model step (`engine=`):

- `"numpy"`: a dependency-light NumPy copy of an LSTM/GRU stack with a Dense head
  (`longstm.serve.numpy_engine`, weights from `Forecaster.numpy_weights`); the fastest at a
  few instruments because it pays no TensorFlow dispatch per tick.
- `"tf"`: the model's `step` as a `tf.function` with a fixed input signature, traced once
  (`longstm.serve.compiled`); many ticks (`update_many`, `warm_up`) run as compiled chunks.

`engine="auto"` takes NumPy where the model has a NumPy form, else TensorFlow.

The feature pipeline is the training one (`longstm.data.features.FeaturePipeline`, saved in
data.json as "feature_pipeline"), run in its incremental mode; its state (each instrument's
recent raw rows) is part of the streaming state.

Which models stream: the model answers itself (`model.streamable()`: None, or the reason,
raised as `ConfigError`). Bad input (wrong shape, NaN/inf values) raises
`DataValidationError` and leaves the state unchanged.

Why some imports sit inside methods: `from longstm import StreamingPredictor` must not import
TensorFlow (a test pins it), so this module imports only NumPy-level code at the top and
reaches the TensorFlow half of serving (`compiled`, `state`, `loading`, `step_model`) when a
predictor first needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from longstm.data.features import FeaturePipeline
from longstm.data.scaling import StandardScaler
from longstm.errors import ConfigError, DataValidationError
from longstm.serve.checks import check_streamable, model_input_width
from longstm.serve.numpy_engine import NumpyRNNStack
from longstm.serve.routing import RowsByName
from longstm.serve.rows import is_table

ENGINES = ("auto", "numpy", "tf")
WARM_UP_CHUNK = 256  # steps per compiled model call when `update_many` runs on TensorFlow


def _tensorflow_engine(model, n_instruments: int, n_features: int):
    from longstm.serve.compiled import TensorFlowEngine  # TensorFlow: see the module docstring

    return TensorFlowEngine(model, n_instruments, n_features)


def _states():
    """`longstm.serve.state` (nested model states through `keras.tree`), imported on first use."""
    from longstm.serve import state  # TensorFlow: see the module docstring

    return state


class StreamingPredictor(RowsByName):
    """Per-tick predictions of a trained recurrent model, its state carried between ticks.

    Args:
        model: a built longstm `RecurrentModel` (usually a `Forecaster`).
        n_instruments: how many series are updated together (one state row each).
        scaler: a fitted `StandardScaler` over the feature columns (the pipeline's outputs);
            inputs are standardised with it and outputs brought back to data units with its
            `target_columns` statistics. `None`: values go in and out unchanged.
        feature_pipeline: a `FeaturePipeline` applied to raw rows first (rows then have its
            `input_columns`), in its incremental mode; its state is part of the streaming state.
        feature_columns: which columns (after pipeline) the model reads; default all.
        target_columns: which columns the outputs forecast (for un-scaling), repeated
            `horizon` times (horizon-major, as the trainer lays them out); default: outputs
            are returned in the model's units.
        horizon: how many horizons the outputs hold per target.
        engine: `"auto"`, `"numpy"` or `"tf"` (see the module docstring).
        column_names: names of the raw columns: what `follow` matches a file's header against and
            what pandas / dict / Arrow rows are matched against by name.
        instruments: the instrument ids of the lanes, in lane order (default `0 .. n_instruments - 1`):
            rows with an instrument column are routed to their instrument's state by these ids.

    Example:

    >>> predictor = StreamingPredictor(model, n_instruments=3)
    >>> predictor.warm_up(history)            # (T, 3, features)
    >>> y = predictor.update(x_t)             # (3, features) -> (3, outputs)
    >>> predictor.save_state("state.npz")

    Rows the way users hold them, matched by column name (`column_names`; extra columns are
    ignored, a timestamp column is parsed when the pipeline needs it):

    >>> predictor = StreamingPredictor.from_run("runs/etth1")
    >>> predictor.warm_up(pd.read_csv("etth1.csv"))          # its `date` column is not a feature
    >>> predictor.update({"HUFL": 5.8, "OT": 30.5, ...})     # a dict, a pandas row or an Arrow batch

    Many instruments, rows of mixed instruments in order, routed by an id column:

    >>> predictor = StreamingPredictor.from_run(run, n_instruments=2, instruments=["EURUSD", "NZDUSD"])
    >>> predictor.update_many(ticks)        # a DataFrame with a `series` column: (rows, outputs)
    """

    def __init__(
        self,
        model,
        *,
        n_instruments: int = 1,
        scaler=None,
        feature_pipeline=None,
        feature_columns: Sequence[int] | None = None,
        target_columns: Sequence[int] | None = None,
        horizon: int = 1,
        engine: str = "auto",
        column_names: Sequence[str] | None = None,
        instruments: Sequence[Any] | None = None,
    ):
        check_streamable(model)
        if isinstance(n_instruments, bool) or not isinstance(n_instruments, int) or n_instruments < 1:
            raise ConfigError(f"StreamingPredictor n_instruments must be an integer >= 1; got {n_instruments!r}.")
        if engine not in ENGINES:
            raise ConfigError(f"StreamingPredictor engine must be one of {ENGINES}; got {engine!r}.")
        if not getattr(model, "built", False):
            raise ConfigError("StreamingPredictor needs a built model: call it once on a chunk (or load weights) first.")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ConfigError(f"StreamingPredictor horizon must be an integer >= 1; got {horizon!r}.")
        if scaler is not None and getattr(scaler, "mean", None) is None:
            raise ConfigError("StreamingPredictor scaler is not fitted: fit it on the training rows first.")
        if scaler is not None and feature_pipeline is not None and len(scaler.mean) != feature_pipeline.n_outputs:
            raise ConfigError(
                f"the scaler has {len(scaler.mean)} columns but the feature pipeline gives {feature_pipeline.n_outputs}; "
                f"fit the scaler on the pipeline's output."
            )
        self.model = model
        self.n_instruments = n_instruments
        self.scaler = scaler
        self.feature_pipeline = feature_pipeline
        self.column_names = None if column_names is None else list(column_names)
        self.instruments = list(range(n_instruments)) if instruments is None else list(instruments)
        self._lane_of = {instrument: lane for lane, instrument in enumerate(self.instruments)}
        if len(self.instruments) != n_instruments or len(self._lane_of) != n_instruments:
            raise ConfigError(
                f"StreamingPredictor instruments must be {n_instruments} distinct ids (one per lane); got {self.instruments!r}"
            )
        feature_width = self._infer_columns(scaler, feature_pipeline)  # columns after the pipeline
        # Raw columns per row: the pipeline's inputs, else the feature columns themselves.
        self.n_columns = feature_pipeline.n_inputs if feature_pipeline is not None else feature_width
        model_features = model_input_width(model)
        self.feature_columns = None if feature_columns is None else np.asarray(list(feature_columns), np.intp)
        self.n_features = feature_width if self.feature_columns is None else len(self.feature_columns)
        if self.n_features is None:
            self.n_features = self.n_columns = feature_width = model_features
        if model_features is not None and self.n_features != model_features:
            raise ConfigError(
                f"the model reads {model_features} features per step but the scaler/pipeline/feature_columns give "
                f"{self.n_features}"
            )
        if self.n_features is None:
            raise ConfigError("cannot tell how many features the model reads; pass feature_columns or a scaler")
        for name, columns in (("feature_columns", feature_columns), ("target_columns", target_columns)):
            if columns is not None and feature_width is not None and any(not 0 <= c < feature_width for c in columns):
                raise ConfigError(f"StreamingPredictor {name} must be column indices in [0, {feature_width}); got {list(columns)}.")
        self.horizon = horizon
        self.target_columns = None if target_columns is None else list(target_columns)
        outputs = getattr(model, "n_outputs", None)
        if self.target_columns is not None and outputs is not None and len(self.target_columns) * horizon != outputs:
            raise ConfigError(
                f"the model gives {outputs} outputs per step but target_columns x horizon = "
                f"{len(self.target_columns)} x {horizon} = {len(self.target_columns) * horizon}."
            )
        self._input_mean = self._input_scale = self._output_mean = self._output_scale = None
        self._panel_meta = None
        if scaler is not None:
            self._input_mean = np.asarray(scaler.mean, np.float64)
            self._input_scale = np.asarray(scaler.scale, np.float64)
            if self.target_columns is not None:
                self._output_mean = np.tile(self._input_mean[self.target_columns], self.horizon)
                self._output_scale = np.tile(self._input_scale[self.target_columns], self.horizon)
        if engine == "auto":
            engine = "numpy" if NumpyRNNStack.supports(model) else "tf"
        self.engine = engine
        self._engine = NumpyRNNStack(model) if engine == "numpy" else _tensorflow_engine(model, n_instruments, self.n_features)
        self.reset()

    @staticmethod
    def _infer_columns(scaler, pipeline) -> int | None:
        if pipeline is not None:
            return pipeline.n_outputs
        if scaler is not None:
            return int(np.asarray(scaler.mean).shape[0])
        return None

    # ---- construction from a run or a saved model ------------------------------------------

    @classmethod
    def from_run(
        cls, run_dir: str | Path, *, n_instruments: int | None = None, engine: str = "auto", weights: str = "best", instruments=None
    ):
        """The model, scaler and columns of a training run directory (`longstm train`).

        Reads `config.toml`, `data.json` and `checkpoints/best.npz` (or the latest
        checkpoint when there is no best, or with `weights="latest"`). `n_instruments`
        defaults to 1; for a run on a store's panel, to one lane per series (`instruments`: the
        series names, or the ones given), each with its series' scaler.
        """
        from longstm.serve.loading import load_run_model  # TensorFlow: see the module docstring

        model, meta = load_run_model(run_dir, weights=weights)
        return cls.from_metadata(model, meta, n_instruments=n_instruments, engine=engine, instruments=instruments)

    @classmethod
    def from_metadata(
        cls, model, meta: dict[str, Any], *, n_instruments: int | None = None, engine: str = "auto", instruments=None
    ):
        """A predictor from a model and the metadata saved beside it (`load_run_model`, `metadata()`)."""
        saved = meta.get("feature_pipeline")
        column_names = meta.get("columns")
        pipeline = None
        if saved is not None:
            # The former {"kind": "causal", ...} form saved no names: its inputs are the columns.
            pipeline = FeaturePipeline.from_dict(saved, input_columns=column_names)
            column_names = pipeline.input_columns  # raw rows carry the pipeline's inputs
        if meta.get("series") is not None:
            return cls._from_panel(model, meta, pipeline, n_instruments=n_instruments, engine=engine, instruments=instruments)
        scaler = None if meta.get("scaler") is None else StandardScaler.from_dict(meta["scaler"])
        return cls(
            model,
            n_instruments=1 if n_instruments is None else n_instruments,
            scaler=scaler,
            feature_pipeline=pipeline,
            feature_columns=meta.get("feature_columns"),
            target_columns=meta.get("target_columns"),
            horizon=meta.get("horizon", 1),
            engine=engine,
            column_names=column_names,
            instruments=instruments,
        )

    @classmethod
    def from_saved(cls, path: str | Path, *, n_instruments: int | None = None, engine: str = "auto"):
        """A predictor from a `.keras` file: a `StreamingStep` export or a plain protocol model."""
        path = Path(path)
        if not path.is_file() or path.suffix != ".keras":
            raise ConfigError(f"{path}: expected an existing .keras file (from `longstm export --format keras`)")
        from longstm.serve.loading import load_keras_file  # TensorFlow: see the module docstring
        from longstm.serve.step_model import StreamingStep

        loaded = load_keras_file(path)  # safe mode: a Lambda layer (code) is refused, never run
        if isinstance(loaded, StreamingStep):
            return cls.from_metadata(loaded.model, loaded.metadata, n_instruments=n_instruments, engine=engine)
        return cls(loaded, n_instruments=1 if n_instruments is None else n_instruments, engine=engine)

    def metadata(self) -> dict[str, Any]:
        """Columns, scaler and pipeline as plain JSON: what `from_metadata` rebuilds from."""
        panel = self._panel_meta or {}  # a panel run's series, their scalers and its columns
        return {
            "columns": self.column_names,
            "scaler": None if self.scaler is None else self.scaler.to_dict(),
            "feature_pipeline": None if self.feature_pipeline is None else self.feature_pipeline.to_dict(),
            "feature_columns": None if self.feature_columns is None else self.feature_columns.tolist(),
            "target_columns": self.target_columns,
            "horizon": self.horizon,
            "n_features": self.n_features,
        } | panel

    # ---- state ------------------------------------------------------------------------------

    def reset(self, instrument: int | Sequence[int] | None = None) -> None:
        """Zero the state of one instrument (its lane index, or its id), a list of them, or (None) all of them."""
        if instrument is None:
            self._model_state = _states().zero_step_state(self.model, self.n_instruments)
            self._pipeline_state = None if self.feature_pipeline is None else self.feature_pipeline.start(self.n_instruments)
            self.ticks = np.zeros(self.n_instruments, np.int64)
            self._to_engine()
            return
        lanes = np.atleast_1d(np.asarray(instrument))
        if lanes.dtype.kind not in "iu" and lanes.size and all(i in self._lane_of for i in lanes.tolist()):
            lanes = np.array([self._lane_of[i] for i in lanes.tolist()], np.intp)  # ids, e.g. a panel's series names
        if lanes.dtype.kind not in "iu" or lanes.size == 0 or lanes.min() < 0 or lanes.max() >= self.n_instruments:
            raise DataValidationError(
                f"reset(instrument) expects instrument indices in [0, {self.n_instruments}); got {instrument!r} "
                f"(or ids of {self.instruments})"
            )
        keep = np.ones(self.n_instruments, np.float32)
        keep[lanes] = 0.0
        self._model_state = _states().zero_rows(self._numpy_state(), keep)
        if self.feature_pipeline is not None:
            self._pipeline_state = self.feature_pipeline.reset(self._pipeline_state, lanes)
        self.ticks[lanes] = 0
        self._to_engine()

    def _numpy_state(self):
        return _states().as_numpy(self._model_state)

    def _to_engine(self) -> None:
        if self.engine == "tf":
            self._model_state = self._engine.to_engine(self._numpy_state())

    @property
    def state(self) -> dict[str, Any]:
        """The whole streaming state (NumPy copies): model state, feature pipeline state, tick counts."""
        return {
            "model": self._numpy_state(),
            "pipeline": None if self._pipeline_state is None else {k: v.copy() for k, v in self._pipeline_state.items()},
            "ticks": self.ticks.copy(),
        }

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        got = value.get("model") if isinstance(value, dict) else None
        model_state = _states().fitted_state(self.model, self.n_instruments, got)
        if self.feature_pipeline is not None:
            self._pipeline_state = self._fitted_pipeline_state(value)
        self._model_state = model_state
        self.ticks = np.asarray(value.get("ticks", np.zeros(self.n_instruments)), np.int64).copy()
        self._to_engine()

    def _fitted_pipeline_state(self, value: dict[str, Any]) -> dict[str, np.ndarray]:
        """The pipeline part of a state dict, also from files of the former layout (the previous raw row)."""
        pipeline = self.feature_pipeline
        state = value.get("pipeline")
        if state is None:  # a `save_state` file: one `pipeline_<key>` array per key of the state
            state = {key[len("pipeline_") :]: array for key, array in value.items() if key.startswith("pipeline_")} or None
        if state is None and value.get("previous") is not None:  # saved before the FeaturePipeline
            state = pipeline.start(self.n_instruments)
            read = [pipeline.input_columns.index(column) for column in pipeline.required_columns]
            state["history"][:, -1] = np.asarray(value["previous"], np.float64)[:, read]
            state["seen"] = np.asarray(value["has_previous"], bool).astype(np.int64)
        reference = pipeline.start(self.n_instruments)
        if state is None or any(np.shape(state.get(key)) != np.shape(reference[key]) for key in reference):
            raise DataValidationError(
                f"streaming state does not fit this feature pipeline and {self.n_instruments} instruments: expected "
                f"{ {key: np.shape(array) for key, array in reference.items()} }"
            )
        return {key: np.array(state[key], reference[key].dtype) for key in reference}

    def save_state(self, path: str | Path) -> Path:
        """Write the streaming state to an `.npz` file (restore with `restore_state`)."""
        state = self.state
        arrays = {f"model_{i}": leaf for i, leaf in enumerate(_states().flatten(state["model"]))}
        arrays["ticks"] = state["ticks"]
        if state["pipeline"] is not None:
            arrays.update({f"pipeline_{key}": array for key, array in state["pipeline"].items()})
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        return path

    def restore_state(self, path: str | Path) -> None:
        """Load a state written by `save_state`; its shapes must fit this model and instruments."""
        path = Path(path)
        value = _states().read_state_file(path, self.model, self.n_instruments)
        try:
            self.state = value
        except DataValidationError as error:
            raise DataValidationError(f"{path}: {error}") from None

    # ---- ticks ------------------------------------------------------------------------------

    def _check_rows(self, rows: np.ndarray, what: str) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        if self.n_instruments == 1 and rows.ndim == (1 if what == "x_t" else 2):
            rows = rows[..., None, :]
        expected_columns = self.n_columns
        leading = "(n_instruments, columns)" if what == "x_t" else "(ticks, n_instruments, columns)"
        ndim = 2 if what == "x_t" else 3
        if expected_columns is None and self.feature_columns is not None and rows.ndim:  # only a minimum is known
            expected_columns = rows.shape[-1] if rows.shape[-1] > self.feature_columns.max() else f">{self.feature_columns.max()}"
        if rows.ndim != ndim or rows.shape[-2] != self.n_instruments or rows.shape[-1] != expected_columns:
            raise DataValidationError(
                f"{what} must have shape {leading} = (..., {self.n_instruments}, "
                f"{expected_columns if expected_columns is not None else 'features'}); got {rows.shape}"
            )
        if not np.isfinite(rows).all():
            bad = np.argwhere(~np.isfinite(rows))[0]
            where = ", ".join(f"{axis}={index}" for axis, index in zip(("tick", "instrument", "column")[-rows.ndim :], bad))
            raise DataValidationError(f"{what} has a non-finite value {rows[tuple(bad)]} at {where}; the state was not changed")
        return rows

    def _features(self, rows: np.ndarray, timestamps) -> tuple[np.ndarray, dict | None]:
        """Pipeline, scaler and column choice for rows `(ticks, n_instruments, columns)`; the
        pipeline's state after them (not yet kept: the caller keeps it once the model ran)."""
        values, pipeline_state = rows, None
        if self.feature_pipeline is not None:
            values, pipeline_state = self.feature_pipeline.step_many(rows, self._pipeline_state, timestamps)
            self._check_features(values)
        return self._scaled(values), pipeline_state

    @staticmethod
    def _check_features(values: np.ndarray) -> None:
        if not np.isfinite(values).all():
            raise DataValidationError(
                "the feature pipeline gave a non-finite value (a log return of a zero or negative price, or time "
                "going backwards?); "
                "the state was not changed"
            )

    def _scaled(self, values: np.ndarray) -> np.ndarray:
        """Features in the run's units -> the model's inputs: the scaler, then the column choice."""
        if self._input_mean is not None:
            values = (values - self._input_mean) / self._input_scale
        if self.feature_columns is not None:
            values = values[..., self.feature_columns]
        return values.astype(np.float32)

    def _outputs(self, y: np.ndarray) -> np.ndarray:
        if self._output_mean is None:
            return np.asarray(y, np.float32)
        return (np.asarray(y, np.float64) * self._output_scale + self._output_mean).astype(np.float32)

    def _advance(self, x_scaled: np.ndarray) -> np.ndarray:
        y, self._model_state = self._engine.step(x_scaled, self._model_state)
        return y

    def _advance_many(self, scaled: np.ndarray) -> np.ndarray:
        """`(ticks, n, features)` -> `(ticks, n, outputs)`: NumPy layer by layer, or TensorFlow chunks."""
        if self.engine == "numpy":
            y, self._model_state = self._engine.run(scaled, self._model_state)
        else:
            y, self._model_state = self._engine.run(scaled, self._model_state, WARM_UP_CHUNK)
        return y

    def _n_outputs(self) -> int:
        if self._output_mean is not None:
            return int(np.shape(self._output_mean)[-1])
        units = getattr(self.model, "n_outputs", None)
        return int(units) if units is not None else 0

    def update(self, x_t, timestamps=None, *, instrument: str | None = None) -> np.ndarray:
        """One tick for all instruments: raw `(n_instruments, columns)` in, `(n_instruments, outputs)` out.

        With `n_instruments=1` a `(columns,)` row is accepted and a `(outputs,)` row returned.
        `timestamps` (`(n_instruments,)`) is needed only by a pipeline with time features.
        A pandas row or DataFrame, a dict or an Arrow batch is matched by column name
        (`_update_table`); with an instrument column (`instrument=`, or `series`) each row
        goes to its instrument's state and the outputs are one per row.
        """
        if is_table(x_t):
            return self._update_table(x_t, timestamps, instrument, "x_t", many=False)
        raw = np.asarray(x_t)
        rows = self._check_rows(raw, "x_t")
        stamps = None if timestamps is None else np.atleast_1d(np.asarray(timestamps))[None]
        x_scaled, pipeline_state = self._features(rows[None], stamps)
        y = self._outputs(self._advance(x_scaled[0]))
        self._pipeline_state = pipeline_state
        self.ticks += 1
        return y[0] if self.n_instruments == 1 and raw.ndim == 1 else y

    def update_many(self, xs, timestamps=None, *, instrument: str | None = None) -> np.ndarray:
        """Many ticks: `(ticks, n_instruments, columns)` -> `(ticks, n_instruments, outputs)`.

        The rows are validated before any of them is applied, so a bad row leaves the state
        as it was. With `n_instruments=1`, `(ticks, columns)` gives `(ticks, outputs)`.
        `timestamps` (`(ticks, n_instruments)`) is needed only by a pipeline with time features.
        A DataFrame, a dict of columns or an Arrow table gives `(rows, outputs)`: one
        instrument's ticks, or (with an instrument column) rows of mixed instruments in order.
        """
        if is_table(xs):
            return self._update_table(xs, timestamps, instrument, "xs", many=True)
        raw = np.asarray(xs)
        rows = self._check_rows(raw, "xs")
        if len(rows) == 0:
            outputs = np.zeros((0, self.n_instruments, self._n_outputs()), np.float32)
            return outputs[:, 0] if self.n_instruments == 1 and raw.ndim == 2 else outputs
        stamps = None if timestamps is None else np.asarray(timestamps).reshape(len(rows), self.n_instruments)
        scaled, pipeline_state = self._features(rows, stamps)
        y = self._outputs(self._advance_many(scaled))
        self._pipeline_state = pipeline_state
        self.ticks += len(rows)
        return y[:, 0] if self.n_instruments == 1 and raw.ndim == 2 else y

    def warm_up(self, history, timestamps=None, *, instrument: str | None = None) -> np.ndarray:
        """Run past rows `(ticks, n_instruments, columns)` through the state; returns their predictions.

        The same as `update_many` (a DataFrame too, e.g. the very file the run trained on): on
        the TensorFlow engine the history runs in compiled chunks of `WARM_UP_CHUNK` steps (the
        remainder tick by tick), so a long history costs a few model calls, not one per row.
        """
        return self.update_many(history, timestamps, instrument=instrument)
