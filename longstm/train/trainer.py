"""`Trainer`: the explicit TBPTT loop, its checkpoints, logs and early stopping.

    trainer = Trainer(model, config.train, run_dir="runs/x")
    history = trainer.fit(train_lanes, val_lanes)        # LaneWindows streams
    metrics = trainer.evaluate(test_lanes)                # {"mse", "mae", "rows"}
    rows, predictions = trainer.predict(test_lanes)       # one prediction per target row

Streams are `longstm.data.lanes.LaneWindows`; each update takes one window per lane. The
state of the lanes lives in the trainer (`trainer.state`), not in the model.

Checkpoints (`run_dir/checkpoints/latest/`): `variables.npz` holds the model variables
(weights and dropout seed-generator states), the optimizer variables (moments, iteration
count, loss scale) and the carried lane states; `position.json` holds epoch, update within
the epoch, global step, history and early-stopping counters. A checkpoint is written to a
temporary folder and renamed into place, so a process killed while saving leaves the
previous one intact. `Trainer.fit(..., resume=True)` continues from it exactly: the data
stream restarts at the saved update (it is built from an index range), the states are the
saved ones, and with `deterministic = true` the subsequent losses equal an uninterrupted run.

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

import csv
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from longstm.errors import ConfigError, TrainingError
from longstm.train.config import Config, TrainConfig
from longstm.train import distribute
from longstm.train.engine import TBPTTEngine, build_model_for

STEP_LOG = "steps.csv"
EPOCH_LOG = "metrics.csv"


def make_optimizer(config: TrainConfig, total_steps: int, reduced_gradients: bool = False):
    """Adam/AdamW with global-norm clipping and a warm-up + constant/cosine schedule.

    `reduced_gradients=True` (under a strategy): the optimizer is given gradients already
    summed over the replicas and clips and applies them as they are
    (`longstm.train.distribute.PreReducedGradients`).
    """
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    if config.schedule == "cosine" or warmup > 0:
        alpha = config.min_learning_rate / config.learning_rate if config.schedule == "cosine" else 1.0
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else config.learning_rate,
            decay_steps=max(total_steps - warmup, 1),
            alpha=alpha,
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    else:
        learning_rate = config.learning_rate
    clip = {"global_clipnorm": config.clipnorm} if config.clipnorm > 0 else {}
    adam, adamw = keras.optimizers.Adam, keras.optimizers.AdamW
    if reduced_gradients:
        adam, adamw = distribute.pre_reduced(adam), distribute.pre_reduced(adamw)
    if config.optimizer == "adamw":
        optimizer = adamw(learning_rate=learning_rate, weight_decay=config.weight_decay, **clip)
    else:
        optimizer = adam(learning_rate=learning_rate, **clip)
    if config.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class Trainer:
    """Trains a `RecurrentModel` with TBPTT(k1, k2) over lane streams.

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
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.engine: TBPTTEngine | None = None
        self.optimizer = None
        self.state = None
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        self.stop_training = False
        self._eval_engine = None

    # ---- set-up ---------------------------------------------------------------------------

    def _check_stream(self, stream, role: str) -> None:
        if role == "train" and (stream.k1 != self.config.k1 or stream.k2 != self.config.k2):
            raise ConfigError(
                f"the training stream has k1={stream.k1}, k2={stream.k2} but the trainer's config says "
                f"k1={self.config.k1}, k2={self.config.k2}"
            )

    def _prepare(self, stream, total_steps: int) -> None:
        if self.strategy is None:
            build_model_for(self.model, stream.lanes, stream.k2, stream.n_features)
            if self.engine is None:
                self.optimizer = make_optimizer(self.config, total_steps)
                self.engine = TBPTTEngine(self.model, self.optimizer, self.config.k1)
            return
        per_replica = distribute.check_lanes(self.strategy, stream.lanes)
        with self.strategy.scope():
            build_model_for(self.model, per_replica, stream.k2, stream.n_features)
        outside = [v.path for v in self.model.variables if not self.strategy.extended.variable_created_in_scope(v.value)]
        if outside:
            raise ConfigError(
                f"under a distribution strategy the model must be created inside `strategy.scope()`; "
                f"{len(outside)} variables were not (e.g. {outside[0]})"
            )
        if self.engine is None:
            with self.strategy.scope():
                self.optimizer = make_optimizer(self.config, total_steps, reduced_gradients=True)
            self.engine = distribute.DistributedEngine(
                self.strategy, self.model, self.optimizer, self.config.k1, stream.lanes
            )

    def _evaluator(self, stream):
        build_model_for(self.model, stream.lanes, stream.k2, stream.n_features)
        if self.engine is not None and self.strategy is None:
            return self.engine
        if self._eval_engine is None:
            # Evaluation only: an engine whose optimizer is never applied.
            self._eval_engine = TBPTTEngine(self.model)
        return self._eval_engine

    # ---- training -------------------------------------------------------------------------

    def fit(self, train, validation=None, *, resume: bool = False) -> list[dict[str, Any]]:
        """Train for `config.epochs` epochs; returns the per-epoch history.

        Args:
            train: a `LaneWindows` stream with the config's k1 and k2.
            validation: a `LaneWindows` stream evaluated after each epoch (early stopping,
                best weights), or None.
            resume: continue from `run_dir/checkpoints/latest` if there is one.
        """
        self._check_stream(train, "train")
        config = self.config
        steps_per_epoch = len(train)
        self._prepare(train, config.epochs * steps_per_epoch)
        start_epoch, start_step = 0, 0
        best, bad_epochs = math.inf, 0
        self.state = self.engine.initial_state(train.lanes)
        writing = self.run_dir is not None and self.chief
        if resume and self.run_dir is not None and checkpoint_path(self.run_dir).exists():
            position = self.restore(self.run_dir)
            start_epoch, start_step = position["epoch"], position["step_in_epoch"]
            best, bad_epochs = position["best"], position["bad_epochs"]
            if writing:
                _truncate_step_log(self.run_dir / STEP_LOG, self.global_step)
        elif writing:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for name in (STEP_LOG, EPOCH_LOG):
                (self.run_dir / name).unlink(missing_ok=True)
        writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard")) if writing else None
        step_log = _StepLog(self.run_dir / STEP_LOG) if writing else None
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
                    if scores["mse"] < best:
                        best, bad_epochs = scores["mse"], 0
                        if writing:
                            self._save_variables(self.run_dir / "checkpoints" / "best.npz", with_optimizer=False)
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
                if self.run_dir is not None:
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
            write_metrics(self.run_dir, self.history)
        return self.history

    def _train_epoch(self, train, epoch, first_step, writer, step_log, early):
        config = self.config
        loss_total, count_total, started = 0.0, 0.0, time.perf_counter()
        progress = _Progress(self.progress and self.chief, f"epoch {epoch + 1}/{config.epochs}", len(train), first_step)
        if self.strategy is None:
            stream = train
        else:  # this worker's lanes only: it reads no other worker's rows
            stream = distribute.lane_block(train, self.engine.first_lane, self.engine.first_lane + self.engine.local_lanes)
        with progress:
            for step_in_epoch, batch in enumerate(stream.dataset(first_step), start=first_step):
                if self.strategy is None:
                    loss_sum, count, self.state = self.engine.train_step(
                        batch["x"], batch["y"], batch["mask"], batch["reset"], self.state
                    )
                else:
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
                        _scalar_summary("train/loss", loss)
                        _scalar_summary("train/learning_rate", learning_rate)
                elapsed = time.perf_counter() - started
                progress.advance(loss, (step_in_epoch + 1 - first_step) / max(elapsed, 1e-9))
                every = config.checkpoint_every
                if self.run_dir is not None and every and self.global_step % every == 0 and step_in_epoch + 1 < len(train):
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
        if self.run_dir is not None and checkpoint_path(self.run_dir).exists():
            kept = json.loads((checkpoint_path(self.run_dir) / "position.json").read_text())
            keep = f"the last good checkpoint (global step {kept['global_step']}) is kept in {checkpoint_path(self.run_dir)}"
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
                        _scalar_summary(f"epoch/{key}", value)
        if self.progress and self.chief:
            from rich.console import Console

            text = "  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            Console(stderr=True).print(text, highlight=False)

    # ---- evaluation -----------------------------------------------------------------------

    def _stream_eval(self, stream, collect: bool):
        engine = self._evaluator(stream)
        state = engine.initial_state(stream.lanes)
        sq, ab, count = 0.0, 0.0, 0.0
        rows, predictions = [], []
        positions = np.arange(stream.k2)
        for batch in stream.dataset():
            sq_sum, abs_sum, n, y_pred, state = engine.eval_step(
                batch["x"], batch["y"], batch["mask"], batch["reset"], state, stream.k1
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
        predictions = np.concatenate(predictions) if predictions else np.zeros((0, stream.n_outputs), np.float32)
        order = np.argsort(rows, kind="stable")
        return scores, rows[order], predictions[order]

    def evaluate(self, stream) -> dict[str, float]:
        """Mean squared and absolute error over every target row of `stream` (scaled units)."""
        return self._stream_eval(stream, collect=False)[0]

    def predict(self, stream) -> tuple[np.ndarray, np.ndarray]:
        """Per-row predictions with warm-up: `(rows, predictions)` sorted by row.

        `rows` are the series rows that carry a target in `stream` (each exactly once);
        `predictions[i]` is the model's output at row `rows[i]`, the forecast of the targets
        at `rows[i] + offset (+ h)`, horizon-major, computed from a state that saw only the
        past (each lane's warm-up rows and then its own rows).
        """
        _, rows, predictions = self._stream_eval(stream, collect=True)
        return rows, predictions

    # ---- checkpoints ----------------------------------------------------------------------

    def state_arrays(self) -> list[np.ndarray]:
        """The carried lane states as global `(lanes, ...)` arrays, lanes in order.

        Under a multi-worker strategy this is a collective: every worker must call it.
        """
        if self.strategy is None:
            return [np.asarray(t) for t in tf.nest.flatten(self.state)]
        return self.engine.gather_state(self.state)

    def _save_variables(self, path: Path, with_optimizer: bool = True, states=None) -> None:
        arrays = {f"model_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(self.model.variables)}
        if with_optimizer:
            states = self.state_arrays() if states is None else states
            arrays |= {f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(self.optimizer.variables)}
            arrays |= {f"state_{i}": leaf for i, leaf in enumerate(states)}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(temporary, **arrays)
        os.replace(temporary, path)

    def save(self, epoch: int, step_in_epoch: int, best: float, bad_epochs: int, finished: bool = False) -> Path:
        """Write the checkpoint: variables, optimizer, lane states and data position.

        Every worker calls it (the states are gathered across them); only the chief writes.
        """
        states = self.state_arrays()
        target = checkpoint_path(self.run_dir)
        if not self.chief:
            return target
        temporary = target.with_name("latest.tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        self._save_variables(temporary / "variables.npz", states=states)
        position = {
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "best": best if math.isfinite(best) else None,
            "bad_epochs": bad_epochs,
            "finished": finished,
            "history": self.history,
        }
        (temporary / "position.json").write_text(json.dumps(position, indent=1))
        previous = target.with_name("latest.old")
        shutil.rmtree(previous, ignore_errors=True)
        if target.exists():
            os.replace(target, previous)
        os.replace(temporary, target)
        shutil.rmtree(previous, ignore_errors=True)
        return target

    def restore(self, run_dir: str | Path) -> dict[str, Any]:
        """Load the latest checkpoint of `run_dir` into model, optimizer and lane states."""
        folder = checkpoint_path(Path(run_dir))
        with np.load(folder / "variables.npz") as arrays:
            assign_checkpoint_arrays(self.model.variables, arrays, "model", folder)
            assign_checkpoint_arrays(self.optimizer.variables, arrays, "optimizer", folder)
            leaves = [arrays[f"state_{i}"] for i in range(len(tf.nest.flatten(self.state)))]
        if self.strategy is None:
            self.state = tf.nest.pack_sequence_as(self.state, [tf.constant(leaf) for leaf in leaves])
        else:
            self.state = self.engine.scatter_state(self.state, leaves)
        position = json.loads((folder / "position.json").read_text())
        self.global_step = position["global_step"]
        self.history = position["history"]
        position["best"] = math.inf if position["best"] is None else position["best"]
        return position

    def load_weights(self, path: str | Path, stream) -> None:
        """Load model variables saved by a run (`checkpoints/best.npz` or a latest checkpoint)."""
        build_model_for(self.model, stream.lanes, stream.k2, stream.n_features)
        path = Path(path)
        with np.load(path) as arrays:
            assign_checkpoint_arrays(self.model.variables, arrays, "model", path)


def _scalar_metadata() -> bytes:
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    return metadata.SerializeToString()


_SCALAR_METADATA = _scalar_metadata()


def _scalar_summary(tag: str, value: float) -> None:
    """A TensorBoard scalar; written with core `tf.summary.write` because `tf.summary.scalar`
    needs the `tensorboard` package, which tensorflow-cpu does not install."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=_SCALAR_METADATA)


def checkpoint_path(run_dir: Path) -> Path:
    """The folder of the latest checkpoint (falls back to one left by an interrupted save)."""
    target = Path(run_dir) / "checkpoints" / "latest"
    previous = target.with_name("latest.old")
    if not target.exists() and previous.exists():
        return previous
    return target


def assign_checkpoint_arrays(variables, arrays, prefix: str, source, error=TrainingError) -> None:
    """Load the `{prefix}_{i}` arrays of a checkpoint `.npz` into `variables`, checking count and shapes.

    `error` is the exception type to raise on a mismatch (streaming raises `ConfigError`).
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


class _StepLog:
    """`steps.csv`: one row per update, flushed as it goes (a killed run keeps its rows)."""

    def __init__(self, path: Path):
        new = not path.exists() or path.stat().st_size == 0
        self.handle = open(path, "a", newline="")
        self.writer = csv.writer(self.handle)
        if new:
            self.writer.writerow(["step", "epoch", "loss", "learning_rate"])

    def write(self, step, epoch, loss, learning_rate) -> None:
        self.writer.writerow([step, epoch, repr(loss), repr(learning_rate)])
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _truncate_step_log(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= last_step] if rows else []
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def read_step_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The per-update log of a run as dicts (step, epoch, loss, learning_rate)."""
    with open(Path(run_dir) / STEP_LOG, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.csv, metrics.json and loss.png of a run."""
    if not history:
        return
    keys = list(dict.fromkeys(key for record in history for key in record))
    with open(run_dir / EPOCH_LOG, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    (run_dir / "metrics.json").write_text(json.dumps({"epochs": history}, indent=1))
    plot_losses(run_dir, history)


def plot_losses(run_dir: Path, history: list[dict[str, Any]]) -> Path:
    """loss.png: per-update training loss and per-epoch train/validation MSE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    step_log = run_dir / STEP_LOG
    if step_log.exists():
        steps = read_step_log(run_dir)
        left.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8)
        left.set_yscale("log")
    left.set(title="training loss per update", xlabel="update", ylabel="MSE (scaled)")
    epochs = [record["epoch"] for record in history]
    right.plot(epochs, [record["train_mse"] for record in history], "o-", label="train")
    if "val_mse" in history[0]:
        right.plot(epochs, [record["val_mse"] for record in history], "o-", label="validation")
    right.set(title="per epoch", xlabel="epoch", ylabel="MSE (scaled)")
    right.legend()
    figure.tight_layout()
    path = run_dir / "loss.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


class _Progress:
    """A Rich progress bar for one epoch (a no-op when disabled)."""

    def __init__(self, enabled: bool, description: str, total: int, completed: int):
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4g}  {task.fields[rate]:.1f} upd/s"),
                TimeElapsedColumn(),
                transient=True,
            )
            self.task = self.bar.add_task(description, total=total, completed=completed, loss=float("nan"), rate=0.0)

    def __enter__(self):
        if self.enabled:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)

    def advance(self, loss: float, rate: float) -> None:
        if self.enabled:
            self.bar.update(self.task, advance=1, loss=loss, rate=rate)
