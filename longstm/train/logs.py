"""What a training run reports: the step log, epoch metrics, the loss plot, TensorBoard, progress.

    steps.csv     one row per update (step, epoch, loss, learning_rate), flushed as it goes
    metrics.csv   one row per epoch; metrics.json the same as {"epochs": [...]}
    loss.png      per-update loss and per-epoch train/validation MSE
    tensorboard/  train/loss, train/learning_rate per update, epoch/* per epoch

Example:

>>> read_step_log("runs/etth1")[0]
{'step': 1.0, 'epoch': 1.0, 'loss': 0.93, 'learning_rate': 0.001}
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import tensorflow as tf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tensorflow.core.framework import summary_pb2

from longstm.atomic import save_figure
from longstm.train.rundir import RunDir


class StepLog:
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


def truncate_step_log(path: Path, last_step: int) -> None:
    """Drop the rows after `last_step` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= last_step] if rows else []
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def read_step_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The per-update log of a run as dicts (step, epoch, loss, learning_rate).

    Args:
        run_dir: the run directory.

    Returns:
        One dict of floats per update, in order.
    """
    with open(RunDir(run_dir).step_log, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def write_metrics(run_dir: str | Path, history: list[dict[str, Any]]) -> None:
    """metrics.csv, metrics.json and loss.png of a run (nothing for an empty history)."""
    if not history:
        return
    run = RunDir(run_dir)
    keys = list(dict.fromkeys(key for record in history for key in record))
    with open(run.epoch_log, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    run.write_metrics({"epochs": history})
    plot_losses(run.path, history)


def plot_losses(run_dir: str | Path, history: list[dict[str, Any]]) -> Path:
    """loss.png: per-update training loss and per-epoch train/validation MSE; returns its path."""
    import matplotlib  # the backend must be chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunDir(run_dir)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    if run.step_log.exists():
        steps = read_step_log(run.path)
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
    save_figure(figure, run.loss_plot, dpi=100)
    plt.close(figure)
    return run.loss_plot


def _scalar_metadata() -> bytes:
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    return metadata.SerializeToString()


_SCALAR_METADATA = _scalar_metadata()


def scalar_summary(tag: str, value: float) -> None:
    """A TensorBoard scalar; written with core `tf.summary.write` because `tf.summary.scalar`
    needs the `tensorboard` package, which tensorflow-cpu does not install."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=_SCALAR_METADATA)


def print_epoch(record: dict[str, Any]) -> None:
    """One line per epoch on stderr (the progress bar is transient)."""
    text = "  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
    Console(stderr=True).print(text, highlight=False)


class EpochProgress:
    """A Rich progress bar for one epoch (a no-op when disabled)."""

    def __init__(self, enabled: bool, description: str, total: int, completed: int):
        self.enabled = enabled
        if enabled:
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
