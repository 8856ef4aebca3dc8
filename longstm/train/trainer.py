"""`Trainer`: the explicit TBPTT loop, its checkpoints, logs and early stopping.

    trainer = Trainer(model, config.train, run_dir="runs/x")
    history = trainer.fit(train_lanes, val_lanes)        # LaneWindows
    metrics = trainer.evaluate(test_lanes)                # {"mse", "mae", "rows"}
    rows, predictions = trainer.predict(test_lanes)       # one prediction per target row

Lanes are `longstm.data.lanes.LaneWindows`; each update takes one window per lane. The
state of the lanes lives in the trainer (`trainer.state`), not in the model.

The jobs around the loop live in their own modules: the checkpoint format in
`longstm.train.checkpoint`, logs/plots/TensorBoard/progress in `longstm.train.logs`, the
optimizer in `longstm.train.optimizers`, the compiled steps in `longstm.train.engine` (one
device) and `longstm.train.distribute` (a strategy); both engines take `train_step(batch,
state)`.

Checkpoints (`run_dir/checkpoints/latest/`): `variables.npz` holds the model variables
(weights and dropout seed-generator states), the optimizer variables (moments, iteration
count, loss scale) and the carried lane states; `position.json` holds epoch, update within
the epoch, global step, history and early-stopping counters. A checkpoint is written to a
temporary folder and renamed into place, so a process killed while saving leaves the
previous one intact. `Trainer.fit(..., resume=True)` continues from it exactly: the lanes
restart at the saved update (it is built from an index range), the states are the
saved ones, and with `deterministic = true` the subsequent losses equal an uninterrupted run.

`train.max_seconds` (0: none) is a wall-time budget, counted from the start of `fit` (a resumed
run gets the whole budget again) and including validation: training stops at the end of the
epoch during which it runs out (an epoch is never cut), the best validation epoch is kept as
always, and `metrics.json` records `{"budget": {"max_seconds", "seconds", "stopped"}}`.

A NaN or inf loss stops training with `TrainingError`; nothing is saved after the bad update,
so the last checkpoint is the last good one.

Under a `tf.distribute` strategy (`train.strategy`, or `Trainer(..., strategy=...)`; see
`longstm.train.distribute`) the lanes are sharded across the replicas, each replica carries
its own lanes' state, and the checkpoint holds the same global `(lanes, ...)` state arrays
as a single-device run, so either can resume the other. Only the chief (worker 0) writes
files; every worker reads the checkpoint on resume. Validation, `evaluate` and `predict`
run on one device.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from longstm.errors import ConfigError, TrainingError
from longstm.train import distribute
from longstm.train.checkpoint import load_weights, read_checkpoint, read_position, save_weights, write_checkpoint
from longstm.train.config import Config, TrainConfig
from longstm.train.engine import TBPTTEngine, build_model_for
from longstm.train.logs import EpochProgress, StepLog, print_epoch, scalar_summary, truncate_step_log, write_metrics
from longstm.train.optimizers import make_optimizer
from longstm.train.rundir import RunDir

clock = time.perf_counter  # the wall-time budget's clock (a test replaces it)


class Trainer:
    """Trains a `RecurrentModel` with TBPTT(k1, k2) over lanes.

    Args:
        model: a longstm `RecurrentModel` (e.g. `Forecaster(KerasRNNStack([LSTM(64)]))`).
        config: a `TrainConfig` (or a whole `Config`, whose `train` table is used).
        run_dir: where checkpoints, logs, metrics and plots go (None: keep nothing).
        callbacks: objects with optional `on_step_end(trainer, step, logs)` and
            `on_epoch_end(trainer, epoch, logs)` methods; setting `trainer.stop_training`
            ends training after the current update.
        progress: show a Rich progress bar with loss and updates/s.
        strategy: "default", "mirrored", "multiworker" or a `tf.distribute.Strategy`
            (None: `config.strategy`). Under a strategy the model must have been created
            under `strategy.scope()`, and the training lanes must be a multiple of the
            replica count.

    Example:

    >>> trainer = Trainer(model, TrainConfig(k1=128, k2=128, epochs=5), run_dir="runs/x")
    >>> history = trainer.fit(train_lanes, val_lanes)
    >>> rows, predictions = trainer.predict(test_lanes)
    """

    def __init__(
        self,
        model,
        config: TrainConfig | Config,
        *,
        run_dir: str | Path | None = None,
        callbacks: Sequence[Any] = (),
        progress: bool = True,
        strategy: Any = None,
    ):
        self.config = config.train if isinstance(config, Config) else config
        if not isinstance(self.config, TrainConfig):
            raise ConfigError(f"Trainer config must be a TrainConfig or Config; got {type(config).__name__}")
        self.strategy = distribute.get_strategy(self.config.strategy if strategy is None else strategy)
        self.chief = distribute.is_chief(self.strategy)
        self.model = model
        self.run = None if run_dir is None else RunDir(run_dir)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.engine = None
        self.optimizer = None
        self.state = None
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        self.stop_training = False
        self._eval_engine = None

    @property
    def run_dir(self) -> Path | None:
        """The run directory's folder (None: nothing is kept)."""
        return None if self.run is None else self.run.path

    # ---- set-up ---------------------------------------------------------------------------

    def _check_lanes(self, train) -> None:
        if train.k1 != self.config.k1 or train.k2 != self.config.k2:
            raise ConfigError(
                f"the training lanes have k1={train.k1}, k2={train.k2} but the trainer's config says "
                f"k1={self.config.k1}, k2={self.config.k2}"
            )

    def _prepare(self, train, total_steps: int) -> None:
        """Build the model and, once, the engine: one device or the strategy's replicas."""
        if self.strategy is None:
            build_model_for(self.model, train.lanes, train.k2, train.n_features)
            if self.engine is None:
                self.optimizer = make_optimizer(self.config, total_steps)
                self.engine = TBPTTEngine(self.model, self.optimizer, self.config.k1)
            return
        per_replica = distribute.check_lanes(self.strategy, train.lanes)
        with self.strategy.scope():
            build_model_for(self.model, per_replica, train.k2, train.n_features)
        outside = [v.path for v in self.model.variables if not self.strategy.extended.variable_created_in_scope(v.value)]
        if outside:
            raise ConfigError(
                f"under a distribution strategy the model must be created inside `strategy.scope()`; "
                f"{len(outside)} variables were not (e.g. {outside[0]})"
            )
        if self.engine is None:
            with self.strategy.scope():
                self.optimizer = make_optimizer(self.config, total_steps, reduced_gradients=True)
            self.engine = distribute.DistributedEngine(self.strategy, self.model, self.optimizer, self.config.k1, train.lanes)

    def _evaluator(self, lanes):
        build_model_for(self.model, lanes.lanes, lanes.k2, lanes.n_features)
        if self.engine is not None:
            return self.engine.evaluator
        if self._eval_engine is None:
            # Evaluation before (or without) training: an engine whose optimizer is never applied.
            self._eval_engine = TBPTTEngine(self.model)
        return self._eval_engine

    # ---- training -------------------------------------------------------------------------

    def fit(self, train, validation=None, *, resume: bool = False) -> list[dict[str, Any]]:
        """Train for `config.epochs` epochs; returns the per-epoch history.

        Args:
            train: the training `LaneWindows`, with the config's k1 and k2.
            validation: `LaneWindows` evaluated after each epoch, or None; `config.monitor`
                (its MSE or MAE) keeps the best weights and stops early.
            resume: continue from the run directory's latest checkpoint if there is one.

        Returns:
            One dict per epoch (epoch, train_mse, train_rows, learning_rate, seconds,
            updates_per_s, and val_mse/val_mae with validation).
        """
        self._check_lanes(train)
        if self.run is not None and self.chief:  # one writer per run directory
            with self.run.lock():
                return self._fit(train, validation, resume)
        return self._fit(train, validation, resume)

    def _fit(self, train, validation, resume: bool) -> list[dict[str, Any]]:
        config = self.config
        steps_per_epoch = len(train)
        self._prepare(train, config.epochs * steps_per_epoch)
        start_epoch, start_step = 0, 0
        best, bad_epochs = math.inf, 0
        self.state = self.engine.initial_state(train.lanes)
        writing = self.run is not None and self.chief
        if resume and self.run is not None and self.run.latest_checkpoint().exists():
            position = self.restore(self.run.path)
            start_epoch, start_step = position["epoch"], position["step_in_epoch"]
            best, bad_epochs = position["best"], position["bad_epochs"]
            if writing:
                truncate_step_log(self.run.step_log, self.global_step)
        elif writing:
            self.run.path.mkdir(parents=True, exist_ok=True)
            for path in (self.run.step_log, self.run.epoch_log):
                path.unlink(missing_ok=True)
        writer = tf.summary.create_file_writer(str(self.run.tensorboard)) if writing else None
        step_log = StepLog(self.run.step_log) if writing else None
        started, budget_spent = clock(), False
        try:
            for epoch in range(start_epoch, config.epochs):
                if start_step >= steps_per_epoch:
                    start_step = 0
                    continue
                train_sums = self._train_epoch(train, epoch, start_step, writer, step_log, (best, bad_epochs))
                start_step = 0
                record = {"epoch": epoch + 1, **train_sums}
                if validation is not None:
                    scores = self.evaluate(validation)
                    record.update(val_mse=scores["mse"], val_mae=scores["mae"])
                    if record[config.monitor] < best:
                        best, bad_epochs = record[config.monitor], 0
                        if writing:
                            save_weights(self.run.best_weights, self.model)
                    else:
                        bad_epochs += 1
                self.history.append(record)
                self._log_epoch(record, writer)
                self.state = self.engine.initial_state(train.lanes)
                stop = (
                    validation is not None
                    and config.early_stopping_patience > 0
                    and bad_epochs >= config.early_stopping_patience
                )
                budget_spent = config.max_seconds > 0 and clock() - started >= config.max_seconds
                stop = stop or budget_spent
                if self.run is not None:
                    self.save(epoch + 1, 0, best, bad_epochs, finished=stop or epoch + 1 == config.epochs)
                for callback in self.callbacks:
                    if hasattr(callback, "on_epoch_end"):
                        callback.on_epoch_end(self, epoch + 1, record)
                if stop or self.stop_training:
                    break
        finally:
            if step_log is not None:
                step_log.close()
            if writer is not None:
                writer.close()
        if writing:
            write_metrics(self.run.path, self.history)
            if config.max_seconds > 0:
                budget = {"max_seconds": config.max_seconds, "seconds": clock() - started, "stopped": budget_spent}
                self.run.write_metrics((self.run.read_metrics() or {"epochs": self.history}) | {"budget": budget})
        return self.history

    def _train_epoch(self, train, epoch, first_step, writer, step_log, early):
        config = self.config
        loss_total, count_total, started = 0.0, 0.0, time.perf_counter()
        progress = EpochProgress(self.progress and self.chief, f"epoch {epoch + 1}/{config.epochs}", len(train), first_step)
        with progress:
            for step_in_epoch, batch in enumerate(self.engine.local_windows(train).dataset(first_step), start=first_step):
                loss_sum, count, self.state = self.engine.train_step(batch, self.state)
                loss_sum, count = float(loss_sum), float(count)
                loss = loss_sum / max(count, 1.0)
                self.global_step += 1
                if not math.isfinite(loss):
                    raise TrainingError(self._nan_message(loss, epoch, step_in_epoch))
                loss_total += loss_sum
                count_total += count
                learning_rate = float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))
                logs = {"loss": loss, "learning_rate": learning_rate}
                if step_log is not None:
                    step_log.write(self.global_step, epoch + 1, loss, learning_rate)
                if writer is not None:
                    with writer.as_default(step=self.global_step):
                        scalar_summary("train/loss", loss)
                        scalar_summary("train/learning_rate", learning_rate)
                elapsed = time.perf_counter() - started
                progress.advance(loss, (step_in_epoch + 1 - first_step) / max(elapsed, 1e-9))
                every = config.checkpoint_every
                if self.run is not None and every and self.global_step % every == 0 and step_in_epoch + 1 < len(train):
                    self.save(epoch, step_in_epoch + 1, *early)
                for callback in self.callbacks:
                    if hasattr(callback, "on_step_end"):
                        callback.on_step_end(self, self.global_step, logs)
                if self.stop_training:
                    break
        seconds = time.perf_counter() - started
        updates = len(train) - first_step
        return {
            "train_mse": loss_total / max(count_total, 1.0),
            "train_rows": int(count_total),
            "learning_rate": float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
            "seconds": seconds,
            "updates_per_s": updates / max(seconds, 1e-9),
        }

    def _nan_message(self, loss, epoch, step_in_epoch) -> str:
        where = f"epoch {epoch + 1}, update {step_in_epoch + 1} (global step {self.global_step})"
        kept = None if self.run is None else read_position(self.run)
        if kept is not None:
            keep = f"the last good checkpoint (global step {kept['global_step']}) is kept in {self.run.latest_checkpoint()}"
        else:
            keep = "no checkpoint had been written yet"
        return (
            f"training stopped: the loss became {loss} at {where}; {keep}. Lower train.learning_rate, "
            f"set train.clipnorm, or check the data for extreme values."
        )

    def _log_epoch(self, record, writer) -> None:
        if writer is not None:
            with writer.as_default(step=record["epoch"]):
                for key, value in record.items():
                    if key != "epoch":
                        scalar_summary(f"epoch/{key}", value)
        if self.progress and self.chief:
            print_epoch(record)

    # ---- evaluation -----------------------------------------------------------------------

    def _evaluate_lanes(self, lanes, collect: bool):
        engine = self._evaluator(lanes)
        state = engine.initial_state(lanes.lanes)
        sq, ab, count = 0.0, 0.0, 0.0
        rows, predictions = [], []
        positions = np.arange(lanes.k2)
        for batch in lanes.dataset():
            sq_sum, abs_sum, n, y_pred, state = engine.eval_step(
                batch["x"], batch["y"], batch["mask"], batch["reset"], state, lanes.k1
            )
            sq, ab, count = sq + float(sq_sum), ab + float(abs_sum), count + float(n)
            if collect:
                mask = batch["mask"].numpy() > 0
                start = batch["start"].numpy()
                rows.append((start[:, None] + positions[None, :])[mask])
                predictions.append(y_pred.numpy()[mask])
        scores = {"mse": sq / max(count, 1.0), "mae": ab / max(count, 1.0), "rows": int(count)}
        if not collect:
            return scores, None, None
        rows = np.concatenate(rows) if rows else np.zeros((0,), np.int64)
        predictions = np.concatenate(predictions) if predictions else np.zeros((0, lanes.n_outputs), np.float32)
        order = np.argsort(rows, kind="stable")
        return scores, rows[order], predictions[order]

    def evaluate(self, lanes) -> dict[str, float]:
        """Mean squared and absolute error over every target row of `lanes` (scaled units)."""
        return self._evaluate_lanes(lanes, collect=False)[0]

    def predict(self, lanes) -> tuple[np.ndarray, np.ndarray]:
        """Per-row predictions with warm-up: `(rows, predictions)` sorted by row.

        `rows` are the series rows that carry a target in `lanes` (each exactly once);
        `predictions[i]` is the model's output at row `rows[i]`, the forecast of the targets
        at `rows[i] + offset (+ h)`, horizon-major, computed from a state that saw only the
        past (each lane's warm-up rows and then its own rows).
        """
        _, rows, predictions = self._evaluate_lanes(lanes, collect=True)
        return rows, predictions

    # ---- checkpoints ----------------------------------------------------------------------

    def state_arrays(self) -> list[np.ndarray]:
        """The carried lane states as global `(lanes, ...)` arrays, lanes in order.

        Under a multi-worker strategy this is a collective: every worker must call it.
        """
        return self.engine.gather_state(self.state)

    def save(self, epoch: int, step_in_epoch: int, best: float, bad_epochs: int, finished: bool = False) -> Path:
        """Write the checkpoint: variables, optimizer, lane states and data position.

        Every worker calls it (the states are gathered across them); only the chief writes.
        """
        states = self.state_arrays()
        if not self.chief:
            return self.run.latest
        position = {
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "best": best,
            "bad_epochs": bad_epochs,
            "finished": finished,
            "history": self.history,
        }
        return write_checkpoint(self.run, self.model, self.optimizer, states, position)

    def restore(self, run_dir: str | Path) -> dict[str, Any]:
        """Load the latest checkpoint of `run_dir` into model, optimizer and lane states."""
        leaves, position = read_checkpoint(RunDir(run_dir), self.model, self.optimizer, len(tf.nest.flatten(self.state)))
        self.state = self.engine.scatter_state(self.state, leaves)
        self.global_step = position["global_step"]
        self.history = position["history"]
        return position

    def load_weights(self, path: str | Path, lanes) -> None:
        """Load model variables saved by a run (`checkpoints/best.npz` or a latest checkpoint).

        Args:
            path: the weights file (`RunDir.weights()` finds it).
            lanes: `LaneWindows` of the shape the model is built for before assigning.
        """
        build_model_for(self.model, lanes.lanes, lanes.k2, lanes.n_features)
        load_weights(self.model, path)
