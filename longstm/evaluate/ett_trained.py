"""A training config's model inside the ETT protocol: trained per horizon, scored in two modes.

A training config (`longstm.train.config`) names the model (`[model]`), the TBPTT schedule
(`[train]`) and the evaluation lanes (`[eval]`). Under a protocol, the protocol decides the
data: `[data]` is replaced by the protocol's file, columns, splits and scaler (its `path`,
`features`, `targets`, `offset`, `horizon` and `split` are ignored).

ETT (`TrainedEtt`, `longstm eval ett --model CONFIG.toml`)
---------------------------------------------------------
For each horizon H a fresh model is trained, with the config's `[horizons.H]` values if it has
them (`Config.at_horizon`: e.g. a learning rate per horizon, all horizons in one command):

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
  A model built with `model.options.channels` (the segment forecaster's channel embedding)
  gets each channel's id (0..C-1, unscaled) as a second, constant input column, in training,
  window scoring and the stream pass alike.
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

The training is set up as `longstm train` sets it up (`longstm.train.run`: `build_trainer`,
`training_lanes`/`evaluation_lanes`, `fit_and_keep_best`); the forecasts come from
`longstm.train.carried`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from longstm.data.loaders import load_series
from longstm.data.series import TimeSeries
from longstm.data.windows import WindowIndex
from longstm.errors import ConfigError, DataValidationError, LongstmError
from longstm.evaluate.ett import evaluate_ett, prepare_ett
from longstm.evaluate.trained import fit_and_summarise
from longstm.models.registry import build_model
from longstm.train.carried import CompiledModel, carried_outputs
from longstm.train.config import read_config
from longstm.train.run import ModelColumns, build_trainer, evaluation_lanes, training_lanes
from longstm.train.rundir import RunDir, write_atomic
from longstm.train.windows import LookbackWindows, init_linear_forecast, use_window_training

MODES = ("window", "stream")
# Windows per compiled call in window mode: 1,024 ran 1.35x faster than 256 (and 4,096 slower)
# for LSTM(64) over L = 336 on the 2-core CPU (one process, 16,384 windows).
DEFAULT_WINDOW_BATCH = 1024


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
                 channel_independent: bool = False, channel_ids: bool = False):
        self.trained, self.n_targets, self.batch_size = trained, n_targets, batch_size
        self.channel_independent, self.channel_ids = channel_independent, channel_ids

    def predict_windows(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if not self.channel_independent:
            return self._predict(x, self.n_targets)
        batch, steps, channels = x.shape
        univariate = x.transpose(0, 2, 1).reshape(batch * channels, steps, 1)
        if self.channel_ids:  # the model reads each window's channel id as a last, constant column
            univariate = with_channel_ids(univariate, np.tile(np.arange(channels), batch))
        forecast = self._predict(univariate, 1)  # (batch * channels, H, 1)
        return forecast.reshape(batch, channels, self.trained.horizon).transpose(0, 2, 1)

    def _predict(self, x: np.ndarray, n_targets: int) -> np.ndarray:
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
                 channel_independent: bool = False, channel_ids: bool = False):
        self.trained, self.inputs, self.segments = trained, inputs, segments
        self.channel_ids = channel_ids
        self.n_targets, self.chunk = n_targets, chunk
        self.rows = np.asarray(rows, dtype=np.int64)
        self.channel_independent = channel_independent
        self._outputs = None

    def _carried_pass(self) -> np.ndarray:
        if not self.channel_independent:
            return carried_outputs(self.trained.compiled, self.inputs, self.segments, self.rows, self.chunk)
        # The channels share the timeline and its segments: one pass with a lane per channel.
        channels = np.asarray(self.inputs, np.float32).T[:, :, None]  # (channels, n, 1)
        if self.channel_ids:
            channels = with_channel_ids(channels, np.arange(len(channels)))
        per_channel = carried_outputs(self.trained.compiled, channels, self.segments, self.rows, self.chunk)
        return per_channel.transpose(1, 2, 0).reshape(len(self.rows), -1)  # horizon-major, like a multivariate head

    def predict_at_rows(self, rows: np.ndarray) -> np.ndarray:
        if self._outputs is None:
            self._outputs = self._carried_pass()
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
                 run_dir: str | Path | None = None, progress: bool = False, channel_independent: bool = False,
                 reuse: bool = False):
        self.config = read_config(config)
        self.reuse = bool(reuse)
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
        # A model with `model.options.channels` reads each channel's id as a last input column.
        self.channel_ids = int(self.config.model.options.get("channels", 0) or 0) > 0
        if self.channel_ids and not (self.channel_independent and self.config.model.options["channels"] >= self.scaled.shape[1]):
            raise ConfigError(
                f"{self.config.source}: 'model.options.channels' needs --channel-independent and at least the series' "
                f"{self.scaled.shape[1]} channels; got channels={self.config.model.options['channels']!r}, "
                f"channel_independent={self.channel_independent}"
            )
        self._inputs = [0, 1] if self.channel_ids else [0]  # channel-independent model inputs: value [, id]
        self.progress = progress
        self._temporary = None
        if run_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="longstm-ett-")
            run_dir = self._temporary.name
        self.run_dir = Path(run_dir)
        self.models: dict[int, TrainedHorizon] = {}
        self._modes: tuple[str, ...] | None = None

    def protocol_config(self, horizon: int):
        """The config of `horizon` (`Config.at_horizon`: its `[horizons.H]` values) with `[data]`
        set to what the protocol trains on for it."""
        config = self.config.at_horizon(horizon)
        names = list(self.series.columns)
        data = dataclasses.replace(
            config.data,
            path=str(self.series.source),
            features=names,
            targets=[names[i] for i in self.target_columns],
            offset=1,
            horizon=int(horizon),
            scale=True,
        )
        train = config.train
        if train.mode == "windows":  # each window of L steps from a zero state, the loss at its last step
            train = dataclasses.replace(train, k1=1, k2=self.lookback)
        return dataclasses.replace(config, data=data, train=train)

    def _series_columns(self, rows) -> dict[str, Any]:
        """The `LaneWindows` arguments that read `rows` of the series, scaled as the protocol scales."""
        return dict(
            feature_columns=self.feature_columns, target_columns=self.target_columns, segments=self.series.segments,
            rows=rows, mean=self.scaler.mean.astype(np.float32), std=self.scaler.scale.astype(np.float32),
        )

    def _stacked_channels(self, start: int, stop: int) -> tuple[np.ndarray, list[int]]:
        """Rows `[start, stop)` of every scaled channel one after another, `(C * rows, 1)`, and the
        segment starts (one per channel, plus the series' own segments inside the range)."""
        inner = [int(s) - start for s in self.series.segments if start < s < stop]
        rows = stop - start
        values = self.scaled[start:stop].T.reshape(-1, 1)
        segments = [c * rows + s for c in range(self.scaled.shape[1]) for s in [0, *inner]]
        if self.channel_ids:
            values = np.column_stack([values, np.repeat(np.arange(self.scaled.shape[1]), rows)]).astype(np.float32)
        return values, segments

    def _channel_lanes(self, config, val_rows):
        """Training and validation lanes of the channels, each channel a segment of its own."""
        values, segments = self._stacked_channels(*self.split.train)
        # Each channel's segment ends with the training part: its last H rows carry no loss.
        train_lanes = training_lanes(config, values, feature_columns=self._inputs, target_columns=[0], segments=segments)
        if val_rows[1] <= val_rows[0]:
            return train_lanes, None
        warm_start = max(val_rows[0] - config.eval.warmup, 0)
        values, segments = self._stacked_channels(warm_start, val_rows[1] + config.data.horizon)
        # burn_in = the warm-up: each channel's loss starts at the first validation forecast row.
        val_lanes = evaluation_lanes(config, values, burn_in=val_rows[0] - warm_start, feature_columns=self._inputs,
                                     target_columns=[0], segments=segments)
        return train_lanes, val_lanes

    def _window_sets(self, config, horizon: int):
        """Training and validation `LookbackWindows` (`train.mode = "windows"`): every window of
        L + H rows inside each part, channel by channel when channel-independent."""
        sets = []
        for part, shuffle in ((self.split.train, True), (self.split.val, False)):
            if self.channel_independent:
                values, segments = self._stacked_channels(*part)
                index, columns = WindowIndex(len(values), self.lookback, horizon, segments=segments), (self._inputs, [0])
            else:
                values, columns = self.scaled, (self.feature_columns, self.target_columns)
                index = WindowIndex(len(values), self.lookback, horizon, start=part[0], stop=part[1], segments=self.series.segments)
            if len(index) == 0 and not shuffle:
                sets.append(None)
                continue
            sets.append(LookbackWindows(values, index.starts(), self.lookback, horizon, config.train.lanes, *columns,
                                        shuffle=shuffle, seed=config.seed))
        return sets

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
        windows = config.train.mode == "windows"
        if windows:
            train_lanes, val_lanes = self._window_sets(config, horizon)
            columns = ModelColumns(self._inputs, [0], ["value", "channel"]) if self.channel_independent else \
                ModelColumns(self.feature_columns, self.target_columns, list(self.series.columns))
        elif self.channel_independent:
            train_lanes, val_lanes = self._channel_lanes(config, val_rows)
            columns = ModelColumns(self._inputs, [0], ["value", "channel"])
        else:
            train_lanes = training_lanes(config, self.series.values, **self._series_columns((train_start, train_stop - horizon)))
            val_lanes = None
            if val_rows[1] > val_rows[0]:
                val_lanes = evaluation_lanes(config, self.series.values, **self._series_columns(val_rows))
            columns = ModelColumns(self.feature_columns, self.target_columns, list(self.series.columns))
        run = RunDir(self.run_dir / f"h{horizon}")
        finished = self._finished_summary(run, config) if self.reuse else None
        if finished is None:
            run.write_config(config)
        trainer = build_trainer(config, columns, run_dir=run.path, progress=self.progress and finished is None)
        if windows:
            use_window_training(trainer, train_lanes)
        if finished is not None:  # trained before with this very config: its best weights, its summary
            trainer.load_weights(run.weights("best"), train_lanes)
            summary = dict(finished, reused=True, horizon_values=self.config.horizon_values(horizon))
            trained = TrainedHorizon(horizon, trainer, CompiledModel(trainer.model), summary)
            self.models[horizon] = trained
            return trained
        started = time.perf_counter()
        if windows:
            init_linear_forecast(trainer.model, train_lanes)  # model.options.linear: start at NLinear
        set_up = time.perf_counter() - started
        summary = fit_and_summarise(trainer, train_lanes, val_lanes)
        summary["train_seconds"] += set_up  # NLinear's fit is part of the training time
        summary.update(
            horizon=horizon, lookback=self.lookback, features=self.features, protocol=self.split.protocol,
            train_rows=[train_start, train_stop - horizon], validation_rows=list(val_rows),
            model=config.model.name, units=config.model.units, layers=config.model.layers, residual=config.model.residual,
            channel_independent=self.channel_independent, train_mode=config.train.mode,
            horizon_values=self.config.horizon_values(horizon),  # what [horizons.H] set for it
        )
        write_atomic(run.protocol_summary, json.dumps(summary, indent=1))
        trained = TrainedHorizon(horizon, trainer, CompiledModel(trainer.model), summary)
        self.models[horizon] = trained
        return trained

    @staticmethod
    def _finished_summary(run: RunDir, config) -> dict[str, Any] | None:
        """With `reuse`: the summary of a horizon this run directory finished training with the
        same config (its `protocol.json` is written last), or None when it holds no finished
        model. A finished model of another config is an error, not something to overwrite."""
        if not run.protocol_summary.is_file():
            return None
        try:  # the same values (a key added since then reads as its default)
            same = run.read_config().to_dict() == config.to_dict()
        except LongstmError:
            same = False
        if not same:
            raise ConfigError(
                f"{run.path} holds a model trained with another config than {config.source} (with its --set values); "
                f"score it with its own config, or use another --out"
            )
        return json.loads(run.protocol_summary.read_text())

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this config's model can be scored in: a `window_only` model (one that
        normalises each look-back window by itself) has no carried-state stream."""
        if self._modes is None:
            n_features = len(self._inputs) if self.channel_independent else len(self.feature_columns)
            model = build_model(self.config.model, n_features, 1)  # a throwaway: only its kind is read
            self._modes = ("window",) if model.window_only else MODES
        return self._modes

    def _check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if mode not in self.modes:
            raise ConfigError(
                f"{self.config.source}: this model normalises each look-back window by itself (model.options.norm = "
                f"{self.config.model.options.get('norm')!r}), so it has no carried-state {mode} mode; score it with --mode window"
            )

    def forecaster(self, horizon: int, mode: str):
        """The trained model for `horizon` as an `evaluate_ett` model in `mode`."""
        self._check_mode(mode)
        trained = self.train(horizon)
        if mode == "window":
            return WindowForecaster(trained, len(self.target_columns), channel_independent=self.channel_independent,
                                    channel_ids=self.channel_ids)
        test_start, test_stop = self.split.test
        index = WindowIndex(len(self.series), self.lookback, int(horizon), start=test_start, stop=test_stop,
                            segments=self.series.segments)
        rows = index.starts() + self.lookback - 1
        return StreamForecaster(trained, self.scaled, self.series.segments, len(self.target_columns), rows,
                                self.config.at_horizon(horizon).train.k2, channel_independent=self.channel_independent,
                                channel_ids=self.channel_ids)

    def windows_per_call(self) -> int:
        """Protocol windows per scoring batch: one compiled call of `DEFAULT_WINDOW_BATCH` model
        windows (channel-independent: each protocol window is one model window per channel)."""
        channels = len(self.target_columns) if self.channel_independent else 1
        return max(1, DEFAULT_WINDOW_BATCH // channels)

    def evaluate(self, horizons: Sequence[int], modes: Sequence[str] = MODES, drop_last_batch: int | None = None,
                 on_horizon=None) -> dict[str, list]:
        """`evaluate_ett` of the trained models: `{mode: [EttResult per horizon]}`.

        Each horizon's model is trained once and scored in every mode. `on_horizon(horizon,
        summary)` is called after each horizon is trained.
        """
        for mode in modes:
            self._check_mode(mode)
        results: dict[str, list] = {mode: [] for mode in modes}
        for horizon in horizons:
            trained = self.train(int(horizon))
            if on_horizon is not None:
                on_horizon(int(horizon), trained.summary)
            for mode in modes:
                started = time.perf_counter()
                (result,) = evaluate_ett(
                    self.series, lambda h, mode=mode: self.forecaster(h, mode), self.lookback, [int(horizon)],
                    drop_last_batch=drop_last_batch, features=self.features, target=self.target, split=self.split_name,
                    batch_size=self.windows_per_call(),
                )
                trained.summary[f"score_seconds_{mode}"] = time.perf_counter() - started  # beside train_seconds
                results[mode].append(result)
        return results


def with_channel_ids(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`values (series, steps, 1)` with a last column holding each series' channel id `ids (series,)`."""
    ids = np.broadcast_to(np.asarray(ids, np.float32)[:, None, None], values.shape[:2] + (1,))
    return np.concatenate([np.asarray(values, np.float32), ids], axis=-1)


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
                "score_seconds": summary.get(f"score_seconds_{mode}"),
            })
            if summary.get("baseline_weight") is not None:  # an ensemble blended on validation
                rows[-1]["baseline_weight"] = summary["baseline_weight"]
    return sorted(rows, key=lambda row: (row["horizon"], row["mode"]))
