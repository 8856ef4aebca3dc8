"""Window-style training (`[train] mode = "windows"`): the literature's way, inside the one trainer.

TBPTT (the default) runs lanes through the training rows with carried state. Window-style
training is how SegRNN, PatchTST and the LTSF-Linear models are trained, and what ETT's
`window` scoring reads:

    each epoch: every look-back window of the training rows, shuffled, in batches of B
    each window: L steps from a zero state; the loss is the MSE (or, `train.loss = "mae"`, the
    MAE: SegRNN's loss on ETT) of the one forecast made at its last step (its H values), never
    of the L - 1 steps before; validation is always the MSE

The `Trainer` loop, its checkpoints, resume, early stopping and best-epoch weights are the
same; only the batches (`LookbackWindows`, which the trainer reads as it reads `LaneWindows`:
`lanes` = B windows, `k2` = L, `k1` = 1) and the compiled steps (`WindowEngine`) differ.
`use_window_training(trainer, windows)` puts the engine in place before `fit`.

The forward computes the head at the last step only (`longstm.train.carried.last_step_forecast`);
a core with a `last_step` of its own (`SegmentGRU`, alone or inside a `LinearLagSkip`) also
skips its per-step outputs.

A model trained this way is still a `RecurrentModel`: it chunks, carries state and streams
like any other; it has only ever seen windows that start from a zero state, so reading it
window by window (ETT `window` mode) is its natural use.

Example:

>>> windows = LookbackWindows(values, starts, lookback=720, horizon=96, batch_size=256, seed=0)
>>> trainer = build_trainer(config, columns, run_dir="runs/x")
>>> use_window_training(trainer, windows)
>>> history = trainer.fit(windows, validation_windows)
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from longstm.data.series import TimeSeries
from longstm.errors import ConfigError, DataValidationError
from longstm.models.lags import LinearLagSkip
from longstm.models.linear_baseline import LinearForecaster
from longstm.models.segment_decoder import SegmentDecoder
from longstm.train.carried import last_step_forecast
from longstm.train.engine import build_model_for, masked_absolute_error, masked_squared_error
from longstm.train.optimizers import make_optimizer


def _masked_absolute_error_and_count(y_true, y_pred, mask):
    return masked_absolute_error(y_true, y_pred, mask), tf.reduce_sum(mask)


# `train.loss` -> (loss sum over the masked windows, their count).
TRAINING_LOSSES = {"mse": masked_squared_error, "mae": _masked_absolute_error_and_count}


class LookbackWindows:
    """Batches of look-back windows with their H-step targets, read like `LaneWindows`.

    Args:
        values: `(rows, columns)` float32, already scaled.
        starts: the first row of each window (its `lookback + horizon` rows must lie in `values`).
        lookback: L, the rows a window reads.
        horizon: H, the target rows after it.
        batch_size: windows per update (the trainer's `lanes`).
        feature_columns: input columns (default all).
        target_columns: forecast columns (default all); targets are horizon-major, `H x targets`.
        shuffle: a new order every epoch (seeded by `seed` and the epoch), else in order.
        seed: the shuffling seed.
        epoch: the epoch whose order `dataset` yields (`for_epoch` gives a view at another).

    `dataset(first_step)` yields dicts `x (B, L, F)`, `y (B, H * targets)`, `mask (B,)` (0 for
    the padding of the last batch), `reset (B,)` (all 1: every window starts from zero) and
    `start (B,)`, the windows of the epoch set by `for_epoch` from update `first_step` on, so a
    resumed epoch continues with the windows an uninterrupted one would have used.

    Example:

    >>> windows = LookbackWindows(values, WindowIndex(len(values), 720, 96).starts(), 720, 96, batch_size=256)
    >>> batch = next(iter(windows.dataset()))       # batch["x"].shape == (256, 720, 7)
    """

    def __init__(self, values: np.ndarray, starts: np.ndarray, lookback: int, horizon: int, batch_size: int,
                 feature_columns: Sequence[int] | None = None, target_columns: Sequence[int] | None = None,
                 shuffle: bool = True, seed: int = 0, epoch: int = 0):
        self.values = np.asarray(values, np.float32)
        self.starts = np.asarray(starts, np.int64)
        self.lookback, self.horizon, self.batch_size = int(lookback), int(horizon), int(batch_size)
        columns = self.values.shape[1]
        self.feature_columns = list(range(columns)) if feature_columns is None else [int(c) for c in feature_columns]
        self.target_columns = list(range(columns)) if target_columns is None else [int(c) for c in target_columns]
        self.shuffle, self.seed, self.epoch = bool(shuffle), int(seed), int(epoch)
        if len(self.starts) == 0:
            raise DataValidationError(f"no look-back windows of {self.lookback} + {self.horizon} rows to train or validate on")
        if self.starts.min() < 0 or self.starts.max() + self.lookback + self.horizon > len(self.values):
            raise DataValidationError(
                f"window starts must leave {self.lookback} + {self.horizon} rows inside the {len(self.values)} rows; "
                f"got starts from {self.starts.min()} to {self.starts.max()}"
            )

    # What the trainer reads of `LaneWindows`.
    @property
    def lanes(self) -> int:
        return self.batch_size

    @property
    def k2(self) -> int:
        return self.lookback

    @property
    def k1(self) -> int:
        return 1  # one forecast per window carries the loss

    @property
    def n_features(self) -> int:
        return len(self.feature_columns)

    @property
    def n_outputs(self) -> int:
        return self.horizon * len(self.target_columns)

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    def for_epoch(self, epoch: int) -> "LookbackWindows":
        """The same windows in the order of `epoch` (a view: the values are shared)."""
        view = object.__new__(LookbackWindows)
        view.__dict__.update(self.__dict__, epoch=int(epoch))
        return view

    def order(self) -> np.ndarray:
        """The window starts in this epoch's order."""
        if not self.shuffle:
            return self.starts
        return self.starts[np.random.default_rng([self.seed, self.epoch]).permutation(len(self.starts))]

    def batch(self, starts: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of one batch of windows (padded with the first window up to `batch_size`)."""
        count = len(starts)
        padded = np.concatenate([starts, np.full(self.batch_size - count, starts[0], np.int64)])
        rows = padded[:, None] + np.arange(self.lookback + self.horizon)
        x = self.values[rows[:, : self.lookback]][:, :, self.feature_columns]
        y = self.values[rows[:, self.lookback :]][:, :, self.target_columns].reshape(self.batch_size, -1)
        mask = (np.arange(self.batch_size) < count).astype(np.float32)
        return {"x": x, "y": y, "mask": mask, "reset": np.ones(self.batch_size, np.float32), "start": padded}

    def dataset(self, first_step: int = 0):
        """The batches of this epoch from update `first_step` on, as tensors."""
        order = self.order()
        for step in range(first_step, len(self)):
            arrays = self.batch(order[step * self.batch_size : (step + 1) * self.batch_size])
            yield {key: tf.constant(value) for key, value in arrays.items()}


class WindowEngine:
    """The compiled steps of window-style training, with the calls `Trainer` makes of an engine.

    Args:
        model: a built `Forecaster`.
        optimizer: a Keras optimizer (None: evaluation only).
        loss: `"mse"` or `"mae"`, the training loss (`train.loss`).

    - `train_step(batch, state) -> (loss_sum, count, state)`: one update on a batch of
      `LookbackWindows`; the loss is the mean over the batch's real windows of the per-window
      MSE (or MAE) over its `H x targets` values (the TBPTT engine's per-step MSE, at one step).
    - `eval_step(x, y, mask, reset, state, k1) -> (loss_sum, abs_sum, count, y_pred, state)`.

    There is no carried state: `state` is an empty tuple passed through.
    """

    def __init__(self, model, optimizer=None, loss: str = "mse"):
        if loss not in TRAINING_LOSSES:
            raise ConfigError(f"'train.loss' must be one of {sorted(TRAINING_LOSSES)}; got {loss!r}")
        self.model, self.optimizer, self.loss = model, optimizer, loss
        if optimizer is not None:
            optimizer.build(model.trainable_variables)
        self._scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.compiled_train_step = tf.function(self._train_step)
        self.compiled_eval_step = tf.function(self._eval_step)

    @property
    def evaluator(self) -> "WindowEngine":
        return self

    def local_windows(self, windows: LookbackWindows) -> LookbackWindows:
        """The windows in the order of the current epoch: every update so far counts, so a
        resumed run (whose optimizer iterations are restored) continues the same order."""
        return windows.for_epoch(int(self.optimizer.iterations.numpy()) // len(windows))

    def initial_state(self, lanes: int):
        return ()

    def gather_state(self, state) -> list[np.ndarray]:
        return []

    def scatter_state(self, template, leaves):
        return ()

    def train_step(self, batch, state):
        loss_sum, count = self.compiled_train_step(batch["x"], batch["y"], batch["mask"])
        return loss_sum, count, state

    def eval_step(self, x, y, mask, reset, state, k1: int):
        return (*self.compiled_eval_step(x, y, mask), state)

    def _train_step(self, x, y, mask):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            forecast = last_step_forecast(self.model, x, training=True)
            loss_sum, count = TRAINING_LOSSES[self.loss](y, forecast, mask)
            loss = loss_sum / tf.maximum(count, 1.0)
            scaled = self.optimizer.scale_loss(loss) if self._scales_loss else loss
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return loss_sum, count

    def _eval_step(self, x, y, mask):
        forecast = last_step_forecast(self.model, x, training=False)
        loss_sum, count = masked_squared_error(y, forecast, mask)
        return loss_sum, masked_absolute_error(y, forecast, mask), count, tf.cast(forecast, tf.float32)


def use_window_training(trainer, windows: LookbackWindows) -> None:
    """Make `trainer` (from `build_trainer`) train on look-back windows: its model is built,
    and its optimizer (scheduled over `epochs x len(windows)` updates) and a `WindowEngine`
    are put in place, so `trainer.fit(windows, validation_windows)` runs the usual loop."""
    if trainer.strategy is not None:
        raise ConfigError("train.mode = \"windows\" runs on one device; got a distribution strategy")
    if (trainer.config.k1, trainer.config.k2) != (windows.k1, windows.k2):
        raise ConfigError(
            f"window training reads windows of k2 = L = {windows.k2} steps with the loss at k1 = 1 step; the trainer's "
            f"config says k1={trainer.config.k1}, k2={trainer.config.k2}"
        )
    # Built on one window: a full call puts the head on every step (at H = 720, 256 windows of
    # L = 720 would hold 2.8 million decoder rows).
    if trainer.model.window_only:  # no per-step call: built by the forward window training runs
        last_step_forecast(trainer.model, np.zeros((1, windows.k2, windows.n_features), np.float32))
        trainer.model.built = True  # its variables exist; nothing may build it with a per-step call
    else:
        build_model_for(trainer.model, 1, windows.k2, windows.n_features)
    trainer.optimizer = make_optimizer(trainer.config, trainer.config.epochs * len(windows))
    trainer.engine = WindowEngine(trainer.model, trainer.optimizer, loss=trainer.config.loss)


def init_linear_forecast(model, windows: LookbackWindows, ridge: float = 1e-6) -> LinearForecaster | None:
    """Start a segment model's linear forecast at the closed-form NLinear fit on `windows`.

    For a `Forecaster(LinearLagSkip(SegmentGRU(linear_width=...)), SegmentDecoder(linear=...))`
    (`model.options.linear = true`), univariate, with `lag_width >= H`: the lag projection's
    first H outputs become NLinear's map of `window - last value` (the last tap takes minus
    the sum of the weights; `model.residual` adds the last value back), the decoder's linear
    map the identity on them, and the decoder's own projection zero, so the untrained model
    forecasts exactly what NLinear does and training refines it. Other models: None.

    Returns:
        The fitted `LinearForecaster` (its `weights (L, H)` and `bias (H,)`), or None.
    """
    head, skip = getattr(model, "head", None), getattr(model, "core", None)
    if not (isinstance(head, SegmentDecoder) and head.linear and isinstance(skip, LinearLagSkip)):
        return None
    horizon, lags = windows.horizon, skip.lags
    if windows.n_features != 1 or len(windows.target_columns) != 1 or model.residual_inputs != [0]:
        raise ConfigError("model.options.linear = true starts from NLinear, which is univariate: use it channel-independent "
                          f"with model.residual = true; got {windows.n_features} inputs, {len(windows.target_columns)} targets")
    if skip.width < horizon or lags > windows.lookback:
        raise ConfigError(f"model.options.linear = true needs model.lag_width >= H = {horizon} and model.lags <= L = "
                          f"{windows.lookback}; got lag_width={skip.width}, lags={lags}")
    column = windows.target_columns[0]
    # Segment starts between non-adjacent windows: every start begins a segment, so NLinear sees
    # exactly the training windows (each once, whatever the overlap).
    series = TimeSeries(windows.values[:, [column]], ["value"], None, _window_segments(windows, lags), source="windows")
    linear = LinearForecaster(horizon, subtract_last=True, ridge=ridge).fit(series, lags)
    kernel = np.zeros((lags, 1, skip.width), np.float32)
    kernel[:, 0, :horizon] = linear.weights
    kernel[-1, 0, :horizon] -= linear.weights.sum(axis=0)
    bias = np.zeros(skip.width, np.float32)
    bias[:horizon] = linear.bias
    skip.projection.kernel.assign(kernel)
    skip.projection.bias.assign(bias)
    head.linear_map.kernel.assign(np.eye(skip.width, horizon, dtype=np.float32))
    head.linear_map.bias.assign(np.zeros(horizon, np.float32))
    head.project.kernel.assign(np.zeros(head.project.kernel.shape, np.float32))
    head.project.bias.assign(np.zeros(head.project.bias.shape, np.float32))
    return linear


def _window_segments(windows: LookbackWindows, lags: int) -> np.ndarray:
    """Segment starts under which the `(lags + H)`-row windows of `values` are the training
    windows' last `lags` rows and their targets, and no others."""
    starts = np.unique(windows.starts + windows.lookback - lags)
    # A run of consecutive starts is one segment holding them all; a gap starts a new one.
    breaks = np.flatnonzero(np.diff(starts) != 1) + 1
    firsts, lasts = starts[np.r_[0, breaks]], starts[np.r_[breaks - 1, len(starts) - 1]]
    ends = lasts + lags + windows.horizon
    # The rows between runs become segments of their own; none may hold a window of its own.
    gaps = np.diff(np.concatenate([[0], np.column_stack([firsts, ends]).ravel(), [len(windows.values)]]))[::2]
    if np.any(gaps < 0) or np.any(gaps >= lags + windows.horizon):
        raise DataValidationError(
            "NLinear's start needs training windows in runs of consecutive starts (as the protocol gives them), "
            f"with less than lags + H = {lags + windows.horizon} rows between runs; got gaps of {sorted(set(gaps.tolist()))} rows"
        )
    bounds = np.unique(np.concatenate([[0], firsts, ends]))
    return bounds[bounds < len(windows.values)]
