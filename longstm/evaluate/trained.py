"""Trained recurrent models inside the evaluation protocols (ETT and HFT), from a TOML config.

A training config (`longstm.train.config`) names the model (`[model]`), the TBPTT schedule
(`[train]`) and the evaluation lanes (`[eval]`). Under a protocol, the protocol decides the
data: `[data]` is replaced by the protocol's file, columns, splits and scaler (its `path`,
`features`, `targets`, `offset`, `horizon` and `split` are ignored, except as noted for HFT).

ETT (`TrainedEtt`, `longstm eval ett --model CONFIG.toml`)
---------------------------------------------------------
For each horizon H a fresh model is trained:

- Data: the protocol's own series, split and scaler (`longstm.evaluate.ett.prepare_ett`):
  features `M` puts all columns in and out, `S` the target alone, `MS` all in, target out; the
  `StandardScaler` is fitted on the training rows only, exactly as the protocol's.
- Head: direct multi-horizon. At every step t the model outputs the next H values of every
  target column (`data.horizon = H`, horizon-major), so one step's output is one whole
  forecast. `model.residual = true` adds each target's current value to its H forecasts: the
  network learns the change from the last observation (the repeat baseline is its zero),
  which pays on ETT's level shifts.
- Training: TBPTT with carried state (`longstm.train.Trainer`) over lanes of the training rows
  whose H targets all lie in the training part (rows t < train_stop - H).
- Channel independence (`channel_independent=True`, features `M` only; `--channel-independent`):
  one univariate model (1 in, H out) shared by all channels, as PatchTST, DLinear and SegRNN
  do. Each channel's rows are a segment of their own (the state resets between channels); a
  test window's C channels are forecast as C univariate windows.
- Selection: after each epoch the model is scored on the validation windows' forecast rows
  (t = s + L - 1 for every validation window start s), each evaluation lane warmed up on
  `eval.warmup` rows of the past; the epoch with the lowest validation MSE is kept
  (`train.early_stopping_patience` stops early).
- Test: exactly the protocol's test windows (`evaluate_ett` with its own window index, so the
  scored target rows are the repeat baseline's). Two modes, reported separately:

  `window` — each test window's L lookback rows are run from a zero state and the forecast
  is the output at the window's last step: the literature's information set (lookback L).
  The model was trained with carried state, so this is a shorter memory than it was trained
  with; the numbers say what that costs.

  `stream` — one pass over the series from its first row with carried state (reset only at
  segment starts), chunks of `train.k2` rows; the forecast for a window is the output at its
  last input row, from a state that has seen the whole past (the preceding splits and the
  test rows before it), never anything after that row. This is more history than L; it is
  what longstm is for, and it is labelled as such.

HFT (`TrainedHFTPredictor`, `longstm eval hft --model CONFIG.toml`)
--------------------------------------------------------------------
A predictor for `longstm.evaluate.hft.evaluate_hft` (a fresh one per horizon k and per
walk-forward refit):

- `fit(inputs, targets)`: inputs are the protocol's causal bar features up to the last
  training decision step, targets its next-k log returns (bp) at the training decision
  steps. Features are standardised with their own (training-row) statistics, the target is
  divided by its training standard deviation. The target of decision step t is placed at
  row t + k of a target column and read with offset k, so the trainer's lanes carry a loss
  exactly at the decision steps (burn-in = the protocol's lookback after every segment start,
  no target across a segment end; checked). The last `split[1] / (split[0] + split[1])`
  of the training decision steps (an eighth with the default split) is held out for epoch
  selection, after a gap of k rows so no training target reaches into it.
- `predict(inputs)`: one pass over the features from row 0 with carried state (reset at
  segment starts), the output at each decision step, times the target scale. The features
  stop at the last decision step, and the model is causal, so nothing after a decision step
  can reach its prediction (the protocol's no-look-ahead test applies unchanged).

LOBSTER (`TrainedLOBPredictor`, `longstm eval lobster --model CONFIG.toml`)
----------------------------------------------------------------------------
The same scheme for the up / flat / down task of `longstm.evaluate.lobster_task`: three
outputs fitted with MSE to the one-hot label, the class is their argmax (see the class).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from longstm.errors import ConfigError, DataValidationError
from longstm.train.config import Config, read_config

MODES = ("window", "stream")
DEFAULT_WINDOW_BATCH = 256


def is_config_path(model: str | Path) -> bool:
    """True when `--model` names a training config (a `.toml` file) rather than a baseline."""
    return str(model).lower().endswith(".toml")


def _seed(config) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = "float32" if config.train.mixed_precision == "off" else config.train.mixed_precision
    keras.mixed_precision.set_global_policy(policy)


def _new_trainer(config, feature_columns, target_columns, names, run_dir, progress):
    from longstm.train.run import model_for
    from longstm.train.trainer import Trainer

    _seed(config)
    model = model_for(config, list(feature_columns), list(target_columns), list(names))
    return Trainer(model, config, run_dir=run_dir, progress=progress)


def _fit_and_select(trainer, train_stream, validation_stream, run_dir: Path) -> dict[str, Any]:
    """Train, reload the best-validation weights, and summarise the run."""
    started = time.perf_counter()
    history = trainer.fit(train_stream, validation_stream)
    seconds = time.perf_counter() - started
    best = run_dir / "checkpoints" / "best.npz"
    if validation_stream is not None and best.exists():
        trainer.load_weights(best, train_stream)
    scored = [record for record in history if "val_mse" in record]
    best_record = min(scored, key=lambda record: record["val_mse"]) if scored else (history[-1] if history else {})
    return {
        "epochs_run": len(history),
        "best_epoch": best_record.get("epoch"),
        "val_mse": best_record.get("val_mse"),
        "train_seconds": seconds,
    }


# ------------------------------------------------------------------ running a trained model


def last_step_forecast(model, x, training: bool = False):
    """The forecast at the last step of `x` run from a zero state: `(batch, outputs)`.

    For a `Forecaster` the head is applied at the last step only (a full-window head would
    hold `batch x L x outputs` values: 1.7 GB for 256 windows of L = 336 at H = 720, M).
    """
    from keras import ops

    from longstm.models.protocol import Forecaster

    state = model.initial_state(ops.shape(x)[0])
    if not isinstance(model, Forecaster):
        outputs, _ = model(x, state=state, training=training)
        return outputs[:, -1]
    features, _ = model.core(x, state=state, training=training)
    forecast = model.head(features[:, -1:], training=training)[:, 0]
    if model.residual_inputs:
        last = ops.take(x[:, -1], model.residual_inputs, axis=-1)
        repeats = forecast.shape[-1] // len(model.residual_inputs)
        forecast = forecast + ops.cast(ops.tile(last, (1, repeats)), forecast.dtype)
    return forecast


class _CompiledModel:
    """The model's window and chunk forward passes, each traced once per input shape."""

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        self.window = tf.function(lambda x: last_step_forecast(model, x))
        self.chunk = tf.function(lambda x, state: model(x, state=state, training=False))


def stream_outputs(compiled: _CompiledModel, inputs: np.ndarray, segments: Sequence[int], rows: np.ndarray, chunk: int) -> np.ndarray:
    """The model's outputs at `rows`, from one pass over `inputs` with carried state.

    Each segment (starting at the rows in `segments`) is run from a zero state in chunks of
    `chunk` rows (the last chunk zero-padded: the model is causal, so padding after a row
    cannot change its output); nothing past `max(rows)` is read.

    Args:
        compiled: the model's compiled passes.
        inputs: `(n, features)` scaled inputs, or `(lanes, n, features)` for several series on
            the same timeline (run side by side as the lanes of one batch, e.g. the channels of
            a channel-independent model); rows past `max(rows)` are ignored.
        segments: start rows of segments (0 implied).
        rows: the rows whose outputs are wanted (any order, each < n).
        chunk: rows per model call.

    Returns:
        `(len(rows), outputs)` float32 in the order of `rows`; `(lanes, len(rows), outputs)`
        for lanes.
    """
    import tensorflow as tf

    inputs = np.asarray(inputs, dtype=np.float32)
    single = inputs.ndim == 2
    if single:
        inputs = inputs[None]
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise DataValidationError("no rows to forecast")
    length = inputs.shape[1]
    stop = int(rows.max()) + 1
    if rows.min() < 0 or stop > length:
        raise DataValidationError(f"rows to forecast must lie in [0, {length}); got [{rows.min()}, {stop - 1}]")
    lanes = inputs.shape[0]
    bounds = sorted({0, *(int(s) for s in segments if 0 < int(s) < stop)}) + [stop]
    wanted = np.zeros(stop, dtype=bool)
    wanted[rows] = True
    kept: dict[int, np.ndarray] = {}
    for seg_start, seg_stop in zip(bounds[:-1], bounds[1:]):
        if not wanted[seg_start:seg_stop].any():
            continue
        last = seg_start + int(np.flatnonzero(wanted[seg_start:seg_stop]).max()) + 1
        state = compiled.model.initial_state(lanes)
        for first in range(seg_start, last, chunk):
            block = inputs[:, first : min(first + chunk, last)]
            padded = np.zeros((lanes, chunk, inputs.shape[2]), np.float32)
            padded[:, : block.shape[1]] = block
            outputs, state = compiled.chunk(tf.constant(padded), state)
            here = np.flatnonzero(wanted[first : first + block.shape[1]])
            if here.size:
                values = outputs.numpy()
                for offset in here:
                    kept[first + int(offset)] = values[:, offset]
    result = np.stack([kept[int(row)] for row in rows], axis=1).astype(np.float32)
    return result[0] if single else result


# ------------------------------------------------------------------ ETT


@dataclass
class TrainedHorizon:
    """One trained model of the ETT protocol: its horizon, trainer and training summary."""

    horizon: int
    trainer: Any
    compiled: Any
    summary: dict[str, Any] = field(default_factory=dict)


class WindowForecaster:
    """`predict_windows(x)`: each window run from a zero state, the forecast at its last step."""

    def __init__(self, trained: TrainedHorizon, n_targets: int, batch_size: int = DEFAULT_WINDOW_BATCH,
                 channel_independent: bool = False):
        self.trained, self.n_targets, self.batch_size = trained, n_targets, batch_size
        self.channel_independent = channel_independent

    def predict_windows(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if not self.channel_independent:
            return self._predict(x, self.n_targets)
        batch, steps, channels = x.shape
        univariate = x.transpose(0, 2, 1).reshape(batch * channels, steps, 1)
        forecast = self._predict(univariate, 1)  # (batch * channels, H, 1)
        return forecast.reshape(batch, channels, self.trained.horizon).transpose(0, 2, 1)

    def _predict(self, x: np.ndarray, n_targets: int) -> np.ndarray:
        import tensorflow as tf

        outputs = []
        for first in range(0, len(x), self.batch_size):
            batch = x[first : first + self.batch_size]
            padded = np.zeros((self.batch_size,) + batch.shape[1:], np.float32)  # one trace for all batches
            padded[: len(batch)] = batch
            outputs.append(self.trained.compiled.window(tf.constant(padded)).numpy()[: len(batch)])
        forecast = np.concatenate(outputs) if outputs else np.zeros((0, self.trained.horizon * n_targets), np.float32)
        return forecast.reshape(len(x), self.trained.horizon, n_targets)


class StreamForecaster:
    """`predict_at_rows(rows)`: the forecast read at each window's last input row from a state
    carried through the whole past (one streaming pass, computed on first use)."""

    def __init__(self, trained: TrainedHorizon, inputs: np.ndarray, segments, n_targets: int, rows: np.ndarray, chunk: int,
                 channel_independent: bool = False):
        self.trained, self.inputs, self.segments = trained, inputs, segments
        self.n_targets, self.chunk = n_targets, chunk
        self.rows = np.asarray(rows, dtype=np.int64)
        self.channel_independent = channel_independent
        self._outputs = None

    def _stream(self) -> np.ndarray:
        if not self.channel_independent:
            return stream_outputs(self.trained.compiled, self.inputs, self.segments, self.rows, self.chunk)
        # The channels share the timeline and its segments: one pass with a lane per channel.
        channels = np.asarray(self.inputs, np.float32).T[:, :, None]  # (channels, n, 1)
        per_channel = stream_outputs(self.trained.compiled, channels, self.segments, self.rows, self.chunk)
        return per_channel.transpose(1, 2, 0).reshape(len(self.rows), -1)  # horizon-major, like a multivariate head

    def predict_at_rows(self, rows: np.ndarray) -> np.ndarray:
        if self._outputs is None:
            self._outputs = self._stream()
        position = np.searchsorted(self.rows, rows)
        if np.any(position >= len(self.rows)) or np.any(self.rows[np.minimum(position, len(self.rows) - 1)] != rows):
            raise DataValidationError("stream forecasts were asked for rows outside the test windows they were computed for")
        return self._outputs[position].reshape(len(rows), self.trained.horizon, self.n_targets)


class TrainedEtt:
    """Train a config's model on an ETT-format series under the protocol, and score it.

    Args:
        config: a training config (path or `longstm.train.Config`); its `[model]`, `[train]`,
            `[eval]` and `seed` are used, `[data]` is replaced by the protocol's.
        data: the ETT-format CSV (or a loaded `TimeSeries`).
        lookback: L, the window length of the protocol.
        features, target, split: as in `evaluate_ett`.
        run_dir: where each horizon's run goes (`h{H}/`: checkpoints, metrics, loss plot);
            None: a temporary folder, removed when this object is.
        progress: show the trainer's progress bars and per-epoch lines.
        channel_independent: one univariate model shared by all channels (features `M`).

    Example:

    >>> trained = TrainedEtt("configs/ett_lstm.toml", "ETTh1.csv", lookback=336)
    >>> results = trained.evaluate([96, 336], drop_last_batch=32)   # {"window": [...], "stream": [...]}
    """

    def __init__(self, config, data, lookback: int, features: str = "M", target: str = "OT", split: str = "auto",
                 run_dir: str | Path | None = None, progress: bool = False, channel_independent: bool = False):
        from longstm.data.loaders import load_series
        from longstm.data.series import TimeSeries
        from longstm.evaluate.ett import prepare_ett

        self.config = read_config(config)
        if isinstance(lookback, bool) or not isinstance(lookback, (int, np.integer)) or lookback < 1:
            raise ConfigError(f"lookback must be a positive integer, got {lookback!r}")
        series = data if isinstance(data, TimeSeries) else load_series(data, gap_policy="report")
        self.series, target_indices, self.split, self.scaler = prepare_ett(series, int(lookback), features, target, split)
        self.lookback, self.features, self.target, self.split_name = int(lookback), features, target, split
        if channel_independent and features != "M":
            raise ConfigError(
                f"channel independence applies to features M (all channels in and out); got features {features!r} "
                f"(S is univariate already)"
            )
        self.channel_independent = bool(channel_independent)
        self.feature_columns = list(range(self.series.num_features))
        self.target_columns = self.feature_columns if target_indices is None else list(target_indices)
        self.scaled = self.scaler.transform(self.series.values).astype(np.float32)
        self.progress = progress
        self._temporary = None
        if run_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="longstm-ett-")
            run_dir = self._temporary.name
        self.run_dir = Path(run_dir)
        self.models: dict[int, TrainedHorizon] = {}

    def protocol_config(self, horizon: int):
        """The config with `[data]` set to what the protocol trains on for `horizon`."""
        names = list(self.series.columns)
        data = dataclasses.replace(
            self.config.data,
            path=str(self.series.source),
            features=names,
            targets=[names[i] for i in self.target_columns],
            offset=1,
            horizon=int(horizon),
            scale=True,
        )
        return dataclasses.replace(self.config, data=data)

    def _lanes(self, config, rows, lanes, k1, k2, burn_in):
        from longstm.data.lanes import LaneWindows

        return LaneWindows(
            self.series.values, lanes=lanes, k1=k1, k2=k2, burn_in=burn_in,
            feature_columns=self.feature_columns, target_columns=self.target_columns,
            offset=1, horizon=config.data.horizon, segments=self.series.segments, rows=rows,
            mean=self.scaler.mean.astype(np.float32), std=self.scaler.scale.astype(np.float32),
        )

    def _stacked_channels(self, start: int, stop: int) -> tuple[np.ndarray, list[int]]:
        """Rows `[start, stop)` of every scaled channel one after another, `(C * rows, 1)`, and the
        segment starts (one per channel, plus the series' own segments inside the range)."""
        inner = [int(s) - start for s in self.series.segments if start < s < stop]
        rows = stop - start
        values = self.scaled[start:stop].T.reshape(-1, 1)
        segments = [c * rows + s for c in range(self.scaled.shape[1]) for s in [0, *inner]]
        return values, segments

    def _channel_streams(self, config, val_rows):
        from longstm.data.lanes import LaneWindows

        horizon = config.data.horizon
        common = dict(feature_columns=[0], target_columns=[0], offset=1, horizon=horizon)
        values, segments = self._stacked_channels(*self.split.train)
        # Each channel's segment ends with the training part: its last H rows carry no loss.
        train_stream = LaneWindows(values, lanes=config.train.lanes, k1=config.train.k1, k2=config.train.k2,
                                   burn_in=config.train.burn_in, segments=segments, **common)
        if val_rows[1] <= val_rows[0]:
            return train_stream, None
        warm_start = max(val_rows[0] - config.eval.warmup, 0)
        values, segments = self._stacked_channels(warm_start, val_rows[1] + horizon)
        # burn_in = the warm-up: each channel's loss starts at the first validation forecast row.
        validation = LaneWindows(values, lanes=config.eval.lanes, k1=config.train.k2, k2=config.train.k2,
                                 burn_in=val_rows[0] - warm_start, segments=segments, **common)
        return train_stream, validation

    def train(self, horizon: int) -> TrainedHorizon:
        """Train (once) the model for `horizon` and return it with its training summary."""
        horizon = int(horizon)
        if horizon in self.models:
            return self.models[horizon]
        config = self.protocol_config(horizon)
        (train_start, train_stop), (val_start, val_stop) = self.split.train, self.split.val
        if train_stop - horizon <= train_start:
            raise DataValidationError(
                f"{self.series.source}: the training part [{train_start}, {train_stop}) is too short for horizon {horizon}"
            )
        val_rows = (val_start + self.lookback - 1, val_stop - horizon)
        if self.channel_independent:
            train_stream, validation = self._channel_streams(config, val_rows)
            columns, names = [0], ["value"]
        else:
            train_stream = self._lanes(config, (train_start, train_stop - horizon), config.train.lanes,
                                       config.train.k1, config.train.k2, config.train.burn_in)
            validation = None
            if val_rows[1] > val_rows[0]:
                validation = self._lanes(config, val_rows, config.eval.lanes, config.train.k2, config.train.k2, config.eval.warmup)
            columns, names = None, self.series.columns
        run_dir = self.run_dir / f"h{horizon}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(config.to_toml())
        trainer = _new_trainer(config, columns or self.feature_columns, columns or self.target_columns, names, run_dir,
                               self.progress)
        summary = _fit_and_select(trainer, train_stream, validation, run_dir)
        summary.update(
            horizon=horizon, lookback=self.lookback, features=self.features, protocol=self.split.protocol,
            train_rows=[train_start, train_stop - horizon], validation_rows=list(val_rows),
            model=config.model.name, units=config.model.units, layers=config.model.layers, residual=config.model.residual,
            channel_independent=self.channel_independent,
        )
        (run_dir / "protocol.json").write_text(json.dumps(summary, indent=1))
        trained = TrainedHorizon(horizon, trainer, _CompiledModel(trainer.model), summary)
        self.models[horizon] = trained
        return trained

    def forecaster(self, horizon: int, mode: str):
        """The trained model for `horizon` as an `evaluate_ett` model in `mode`."""
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        trained = self.train(horizon)
        if mode == "window":
            return WindowForecaster(trained, len(self.target_columns), channel_independent=self.channel_independent)
        from longstm.data.windows import WindowIndex

        test_start, test_stop = self.split.test
        index = WindowIndex(len(self.series), self.lookback, int(horizon), start=test_start, stop=test_stop,
                            segments=self.series.segments)
        rows = index.starts() + self.lookback - 1
        return StreamForecaster(trained, self.scaled, self.series.segments, len(self.target_columns), rows,
                                self.config.train.k2, channel_independent=self.channel_independent)

    def evaluate(self, horizons: Sequence[int], modes: Sequence[str] = MODES, drop_last_batch: int | None = None,
                 on_horizon=None) -> dict[str, list]:
        """`evaluate_ett` of the trained models: `{mode: [EttResult per horizon]}`.

        Each horizon's model is trained once and scored in every mode. `on_horizon(horizon,
        summary)` is called after each horizon is trained.
        """
        from longstm.evaluate.ett import evaluate_ett

        for mode in modes:
            if mode not in MODES:
                raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        results: dict[str, list] = {mode: [] for mode in modes}
        for horizon in horizons:
            trained = self.train(int(horizon))
            if on_horizon is not None:
                on_horizon(int(horizon), trained.summary)
            for mode in modes:
                (result,) = evaluate_ett(
                    self.series, lambda h, mode=mode: self.forecaster(h, mode), self.lookback, [int(horizon)],
                    drop_last_batch=drop_last_batch, features=self.features, target=self.target, split=self.split_name,
                )
                results[mode].append(result)
        return results


def ett_table_rows(results: dict[str, list], baseline: list, summaries: dict[int, dict], model_name: str) -> list[dict]:
    """Rows for the Markdown/CSV table: one per (horizon, mode), with the repeat baseline."""
    repeat = {result.horizon: result for result in baseline}
    rows = []
    for mode, mode_results in results.items():
        for result in mode_results:
            summary = summaries.get(result.horizon, {})
            base = repeat.get(result.horizon)
            rows.append({
                "model": model_name, "mode": mode, "horizon": result.horizon, "lookback": result.lookback,
                "features": result.features, "mse": result.mse, "mae": result.mae, "windows": result.windows,
                "repeat_mse": None if base is None else base.mse, "repeat_mae": None if base is None else base.mae,
                "epochs_run": summary.get("epochs_run"), "best_epoch": summary.get("best_epoch"),
                "val_mse": summary.get("val_mse"), "train_seconds": summary.get("train_seconds"),
            })
    return sorted(rows, key=lambda row: (row["horizon"], row["mode"]))


def ett_markdown(rows: list[dict]) -> str:
    """A Markdown table of `ett_table_rows`."""
    def cell(value, pattern):
        return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else pattern.format(value)

    columns = (("model", "{}"), ("mode", "{}"), ("horizon", "{}"), ("lookback", "{}"), ("features", "{}"),
               ("mse", "{:.3f}"), ("mae", "{:.3f}"), ("windows", "{}"), ("repeat_mse", "{:.3f}"),
               ("repeat_mae", "{:.3f}"), ("epochs_run", "{}"), ("best_epoch", "{}"), ("train_seconds", "{:.0f}"))
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(name), pattern) for name, pattern in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_ett_table(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """`ett_results.csv` and `ett_results.md` in `out_dir`."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "ett_results.csv", out_dir / "ett_results.md"]
    pd.DataFrame(rows).to_csv(paths[0], index=False)
    paths[1].write_text(ett_markdown(rows))
    return paths


# ------------------------------------------------------------------ HFT


def _segment_starts(segment_ids: np.ndarray | None, n: int) -> list[int]:
    if segment_ids is None or n == 0:
        return [0]
    ids = np.asarray(segment_ids[:n])
    return [0, *(int(row) for row in np.flatnonzero(np.diff(ids)) + 1)]


def loss_rows(segments: Sequence[int], n_rows: int, first: int, stop: int, burn_in: int, reach: int) -> np.ndarray:
    """The rows a `LaneWindows` stream carries a loss at: in `[first, stop)`, at least `burn_in`
    rows after their segment's start, with `reach` rows ahead inside the segment."""
    bounds = list(segments) + [n_rows]
    parts = [np.arange(max(a + burn_in, first), min(b - reach, stop)) for a, b in zip(bounds[:-1], bounds[1:])]
    return np.concatenate([p for p in parts if p.size] or [np.zeros(0, np.int64)]).astype(np.int64)


class _ConfigPredictor:
    """A config's model trained on a target that is not an input column (HFT and LOBSTER)."""

    target_description = "target"

    def __init__(self, config, run_dir: str | Path | None = None, progress: bool = False):
        self.config = read_config(config)
        if self.config.model.residual:
            raise ConfigError(
                f"{self.config.source}: 'model.residual = true' adds a target's current value to its forecast; the "
                f"{self.target_description} is not an input column, so set model.residual = false"
            )
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.progress = progress
        self.summary: dict[str, Any] = {}
        self._trained = None


class TrainedHFTPredictor(_ConfigPredictor):
    """A config's model as an HFT-protocol predictor: TBPTT on the training steps, carried state.

    Args:
        config: a training config (path or `Config`); `[model]`, `[train]`, `[eval]`, `seed`
            are used, and `data.split` sets the held-out share for epoch selection.
        run_dir: where the run goes (checkpoints, metrics); None: a temporary folder.
        progress: show the trainer's progress bars.

    See the module docstring for what `fit` and `predict` do.
    """

    target_description = "HFT target (a future log return)"

    def _config(self):
        data = dataclasses.replace(self.config.data, offset=1, horizon=1, scale=False)
        return dataclasses.replace(self.config, data=data)

    def fit(self, inputs, targets) -> None:
        config = self._config()
        features = np.asarray(inputs.features, dtype=np.float64)
        steps = np.asarray(inputs.decision_steps, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if targets.size != steps.size or not np.all(np.isfinite(targets)):
            raise DataValidationError(f"fit needs one finite target per decision step; got {targets.size} for {steps.size}")
        k, n_rows, n_features = int(inputs.horizon), len(features), features.shape[1]
        self.mean = features.mean(axis=0)
        self.std = features.std(axis=0)
        self.std[self.std == 0] = 1.0
        self.target_scale = float(targets.std()) or 1.0
        values = np.zeros((n_rows + k, n_features + 1), np.float32)
        values[:n_rows, :n_features] = (features - self.mean) / self.std
        values[steps + k, n_features] = targets / self.target_scale
        segments = _segment_starts(inputs.segment_ids, n_rows)
        burn_in = max(int(inputs.lookback), config.train.burn_in)
        expected = loss_rows(segments, n_rows + k, int(steps.min()), int(steps.max()) + 1, int(inputs.lookback), k)
        if not np.array_equal(expected, np.sort(steps)):
            raise DataValidationError(
                "the training decision steps are not every row at least `lookback` after a segment start with its "
                "target inside the segment; the trained-model predictor needs inputs.segment_ids from the protocol"
            )
        train_steps, validation_steps = _held_out_split(config, steps, k)
        if train_steps.size == 0:
            raise DataValidationError(f"too few training decision steps ({steps.size}) for a held-out validation part")
        common = dict(feature_columns=list(range(n_features)), target_columns=[n_features], offset=k, horizon=1,
                      segments=segments)
        model, self.summary = _fit_decision_model(
            config, values, common, burn_in, train_steps, validation_steps, self.run_dir, "longstm-hft-",
            [*inputs.columns, "target"], self.progress, horizon=k,
        )
        self._trained = _CompiledModel(model)

    def predict(self, inputs) -> np.ndarray:
        if self._trained is None:
            raise ConfigError("TrainedHFTPredictor.predict called before fit")
        features = (np.asarray(inputs.features, dtype=np.float64) - self.mean) / self.std
        segments = _segment_starts(inputs.segment_ids, len(features))
        outputs = stream_outputs(self._trained, features, segments, inputs.decision_steps, self.config.train.k2)
        return outputs[:, 0].astype(np.float64) * self.target_scale


def _held_out_split(config, steps: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train_steps, validation_steps)`: the last `split[1] / (split[0] + split[1])` of the
    decision steps chose the epoch, the steps before them train.

    The target of step t reads rows up to t + k; stopping those rows before the first held-out
    step keeps every training target off the held-out rows (the first one's own return starts
    at its row), a gap of k rows.
    """
    train_share, val_share = float(config.data.split[0]), float(config.data.split[1])
    held_out = int(steps.size * val_share / (train_share + val_share))
    if not held_out:
        return steps, steps[:0]
    validation_steps = steps[steps.size - held_out:]
    return steps[steps + k < validation_steps[0]], validation_steps


def _fit_decision_model(config, values, common, burn_in, train_steps, validation_steps, run_dir, prefix, names,
                        progress, **summary):
    """Train on the rows of `train_steps`, select the epoch on `validation_steps`; `(model, summary)`.

    Shared by the HFT and LOBSTER predictors. Without `run_dir` the checkpoints go to a
    temporary folder that is removed afterwards; with it, `protocol.json` records the summary.
    """
    from longstm.data.lanes import LaneWindows

    train_stream = LaneWindows(values, lanes=config.train.lanes, k1=config.train.k1, k2=config.train.k2,
                               burn_in=burn_in, rows=(int(train_steps[0]), int(train_steps[-1]) + 1), **common)
    validation = None
    if validation_steps.size:
        validation = LaneWindows(values, lanes=config.eval.lanes, k1=config.train.k2, k2=config.train.k2,
                                 burn_in=max(burn_in, config.eval.warmup),
                                 rows=(int(validation_steps[0]), int(validation_steps[-1]) + 1), **common)
    temporary = None
    work_dir = run_dir
    if work_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix=prefix)
        work_dir = Path(temporary.name)
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        trainer = _new_trainer(config, common["feature_columns"], common["target_columns"], names, work_dir, progress)
        result = _fit_and_select(trainer, train_stream, validation, work_dir)
        horizon = summary.pop("horizon")
        result.update(horizon=horizon, train_steps=int(train_steps.size), validation_steps=int(validation_steps.size),
                      model=config.model.name, units=config.model.units, **summary)
        if run_dir is not None:
            (work_dir / "protocol.json").write_text(json.dumps(result, indent=1))
    finally:
        if temporary is not None:
            temporary.cleanup()
    return trainer.model, result


def _config_factory(predictor_class, config: Config, run_root, progress: bool):
    """`(name, factory)`: a fresh `predictor_class(config)` per call; the name is the stem of
    the config's file.

    With `run_root`, fit number i goes to `run_root/<name>_fit<i>/`.
    """
    if not isinstance(config, Config):
        raise ConfigError(
            f"a trained-model factory takes a Config (read it with longstm.train.config.read_config); "
            f"got {type(config).__name__} {config!r}"
        )
    name = Path(config.source).stem
    count = [0]

    def factory():
        count[0] += 1
        run_dir = None if run_root is None else Path(run_root) / f"{name}_fit{count[0]}"
        return predictor_class(config, run_dir=run_dir, progress=progress)

    return name, factory


def hft_factory(config: Config, run_root: str | Path | None = None, progress: bool = False):
    """`(name, factory)` for `evaluate_hft`: a fresh `TrainedHFTPredictor` per horizon and refit.

    Args:
        config: a validated training `Config` (`read_config(path, overrides)`).
        run_root: where each fit's run goes (`<name>_fit<i>/`); None: temporary folders.
        progress: show the trainer's progress bars.

    Returns:
        `(name, factory)`: the config file's stem and a function returning a new predictor.
    """
    return _config_factory(TrainedHFTPredictor, config, run_root, progress)


# ------------------------------------------------------------------ LOBSTER direction task


LOB_CLASSES = (-1, 0, 1)


def lob_model_inputs(features: np.ndarray, columns: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The event features a trained LOBSTER classifier reads, all causal.

    The mid-price level is replaced by its change since the previous event, in basis points
    (0 at the first event): the level drifts through the day, so its training-row statistics
    do not describe the test rows, while the label depends on the mid only through changes.
    The other columns (spread, imbalance, signed volume, dt, ...) are kept as they are.
    """
    columns = list(columns)
    if "mid_price" not in columns:
        raise DataValidationError(f"the LOBSTER task needs a 'mid_price' column, got {', '.join(columns)}")
    features = np.asarray(features, dtype=np.float64)
    at = columns.index("mid_price")
    mid = features[:, at]
    change = np.zeros_like(mid)
    change[1:] = np.diff(mid) / mid[:-1] * 1e4
    kept = [i for i in range(len(columns)) if i != at]
    return np.column_stack([change, features[:, kept]]), ["mid_change_bp", *(columns[i] for i in kept)]


class TrainedLOBPredictor(_ConfigPredictor):
    """A config's recurrent model as a LOBSTER direction predictor (up / flat / down).

    The head is the trainer's regression head with three outputs: the target at decision
    step t is the one-hot vector of its label (down, flat, up), the loss the trainer's MSE, and
    the predicted class the argmax of the three outputs. (MSE on one-hot targets estimates the
    class probabilities, so the argmax is the most likely class; the trainer needs no new loss.)

    - `fit(inputs, labels)`: inputs are the task's event features up to the last training
      decision step (`lob_model_inputs` of them, standardised with training-row statistics),
      labels its {−1, 0, 1} labels at the training decision steps (`0 .. train_end − k − 1`).
      As for HFT, the one-hot target of step t is placed at row t + k of three target columns
      and read with offset k; lanes carry their state (TBPTT, `train.k1`/`k2`), the first
      `train.burn_in` events carry no loss, and the last `split[1] / (split[0] + split[1])`
      of the training steps, after a gap of k events, choose the epoch.
    - `predict(inputs)`: one pass from event 0 with carried state (chunks of `train.k2`),
      the argmax at each decision step. The features stop at the last decision step and the
      model is causal, so no event after t reaches the prediction at t.

    Args:
        config: a training config (path or `Config`).
        run_dir: where the run goes; None: a temporary folder.
        progress: show the trainer's progress bars.
    """

    target_description = "LOBSTER target (a one-hot direction label)"

    def fit(self, inputs, labels) -> None:
        config = dataclasses.replace(self.config, data=dataclasses.replace(self.config.data, offset=1, horizon=1, scale=False))
        features, names = lob_model_inputs(inputs.features, inputs.columns)
        steps = np.asarray(inputs.decision_steps, dtype=np.int64)
        labels = np.asarray(labels).reshape(-1)
        if labels.size != steps.size or not np.isin(labels, LOB_CLASSES).all():
            raise DataValidationError(
                f"fit needs one label in {{-1, 0, 1}} per decision step; got {labels.size} labels for {steps.size} steps"
                + ("" if labels.size != steps.size else f", values {sorted(set(labels.tolist()) - set(LOB_CLASSES))[:3]}")
            )
        k, n_rows, n_features = int(inputs.horizon), len(features), features.shape[1]
        self.mean = features.mean(axis=0)
        self.std = features.std(axis=0)
        self.std[self.std == 0] = 1.0
        values = np.zeros((n_rows + k, n_features + 3), np.float32)
        values[:n_rows, :n_features] = (features - self.mean) / self.std
        values[steps + k, n_features + labels + 1] = 1.0  # column n_features + {0: down, 1: flat, 2: up}
        train_steps, validation_steps = _held_out_split(config, steps, k)
        burn_in = config.train.burn_in
        if train_steps.size <= burn_in:
            raise DataValidationError(
                f"too few training events ({train_steps.size}) for train.burn_in = {burn_in} and a held-out validation part"
            )
        targets = [n_features, n_features + 1, n_features + 2]
        common = dict(feature_columns=list(range(n_features)), target_columns=targets, offset=k, horizon=1, segments=[0])
        model, self.summary = _fit_decision_model(
            config, values, common, burn_in, train_steps, validation_steps, self.run_dir, "longstm-lob-",
            [*names, "down", "flat", "up"], self.progress, horizon=k, inputs=names,
        )
        self._trained = _CompiledModel(model)

    def scores(self, inputs) -> np.ndarray:
        """`(decision steps, 3)`: the model's outputs for down, flat, up at each decision step."""
        if self._trained is None:
            raise ConfigError("TrainedLOBPredictor.predict called before fit")
        features, _ = lob_model_inputs(inputs.features, inputs.columns)
        scaled = (features - self.mean) / self.std
        return stream_outputs(self._trained, scaled, [0], inputs.decision_steps, self.config.train.k2)

    def predict(self, inputs) -> np.ndarray:
        return np.asarray(LOB_CLASSES)[np.argmax(self.scores(inputs), axis=1)]


def lobster_factory(config: Config, run_root: str | Path | None = None, progress: bool = False):
    """`(name, factory)` for `evaluate_lobster`: a fresh `TrainedLOBPredictor` per k.

    Args:
        config: a validated training `Config` (`read_config(path, overrides)`).
        run_root: where each fit's run goes (`<name>_fit<i>/`); None: temporary folders.
        progress: show the trainer's progress bars.

    Returns:
        `(name, factory)`: the config file's stem and a function returning a new predictor.
    """
    return _config_factory(TrainedLOBPredictor, config, run_root, progress)
