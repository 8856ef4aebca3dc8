"""The run directory: the one module that knows its layout.

`longstm train` leaves everything about a run in one folder; every reader and writer
(training, resume, `evaluate`, `predict`, serving, reports, plots) goes through `RunDir`
instead of joining file names itself:

    config.toml               the resolved config (what `evaluate`/`predict`/serving rebuild from)
    data.json                 columns, features, targets, split rows, the train-only scaler
    checkpoints/best.npz      the weights of the best validation epoch
    checkpoints/latest/       variables.npz (weights, optimizer, lane states) + position.json
    checkpoints/latest.old/   the previous latest, present only while a save is being replaced
    steps.csv                 loss and learning rate of every update
    metrics.csv/.json         per-epoch scores (+ final val/test in the JSON)
    loss.png                  loss curves
    tensorboard/              tf.summary logs

Writes are atomic (a temporary file, then `os.replace`), so a reader never sees half a file.
A training run holds `.lock` (an advisory `flock`, which the kernel releases when the process
dies, so a killed run leaves no stale lock): a second run into the same folder stops at once
with one line naming the holder instead of overwriting the first one's files.

Example:

>>> run = RunDir("runs/etth1")
>>> config = run.read_config()            # raises ConfigError if this is not a run directory
>>> weights = run.weights("best")         # best.npz, else latest, else latest.old
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from longstm.atomic import write_atomically
from longstm.errors import ConfigError, TrainingError
from longstm.train.config import Config, load_config

CONFIG = "config.toml"
DATA_RECORD = "data.json"
CHECKPOINTS = "checkpoints"
BEST = "best.npz"
LATEST = "latest"
LATEST_OLD = "latest.old"
LATEST_TEMPORARY = "latest.tmp"
VARIABLES = "variables.npz"
POSITION = "position.json"
STEP_LOG = "steps.csv"
EPOCH_LOG = "metrics.csv"
METRICS = "metrics.json"
LOSS_PLOT = "loss.png"
TENSORBOARD = "tensorboard"
PROTOCOL_SUMMARY = "protocol.json"
LOCK = ".lock"
WEIGHTS = ("best", "latest")
_HELD: dict[str, list[int]] = {}  # run folder -> [file descriptor, depth]: this process's locks


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, then rename.

    A write that fails (a full disk) removes the temporary file and leaves `path` as it was;
    it is one `TrainingError` line naming the file.
    """
    try:
        write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    except OSError as reason:
        raise TrainingError(f"{path}: could not be written ({reason.strerror or reason}); the previous file, if any, is unchanged") from None


class RunDir:
    """A run directory and the paths of everything in it.

    Args:
        path: the folder (it need not exist yet when a run is about to be written).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- paths -----------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def data_record_path(self) -> Path:
        return self.path / DATA_RECORD

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def best_weights(self) -> Path:
        return self.checkpoints / BEST

    @property
    def latest(self) -> Path:
        """Where the next latest checkpoint is written (see `latest_checkpoint` for reading)."""
        return self.checkpoints / LATEST

    @property
    def latest_old(self) -> Path:
        """Where the previous latest checkpoint waits while a new one is put in place."""
        return self.checkpoints / LATEST_OLD

    @property
    def latest_temporary(self) -> Path:
        """Where a new latest checkpoint is written before it is renamed into place."""
        return self.checkpoints / LATEST_TEMPORARY

    @property
    def protocol_summary(self) -> Path:
        """`protocol.json`: what an evaluation protocol (`longstm eval ...`) trained here and how."""
        return self.path / PROTOCOL_SUMMARY

    @property
    def step_log(self) -> Path:
        return self.path / STEP_LOG

    @property
    def epoch_log(self) -> Path:
        return self.path / EPOCH_LOG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def loss_plot(self) -> Path:
        return self.path / LOSS_PLOT

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    # ---- what is there ---------------------------------------------------------------------

    def is_run(self) -> bool:
        """True when the folder holds a run's config (what `longstm plot` and reports look for)."""
        return self.path.is_dir() and self.config_path.is_file()

    def require(self) -> "RunDir":
        """Self, or a ConfigError when config.toml or data.json is missing."""
        if not self.config_path.is_file() or not self.data_record_path.is_file():
            raise ConfigError(f"{self.path}: not a run directory (expected {CONFIG} and {DATA_RECORD} from `longstm train`)")
        return self

    def latest_checkpoint(self) -> Path:
        """The folder of the latest checkpoint; `latest.old` when a save was interrupted after
        moving the old one aside and before putting the new one in place."""
        previous = self.checkpoints / LATEST_OLD
        if not self.latest.exists() and previous.exists():
            return previous
        return self.latest

    def has_checkpoint(self) -> bool:
        return (self.latest_checkpoint() / VARIABLES).is_file()

    def weights(self, which: str = "best") -> Path:
        """The weights file to load: `"best"` tries best.npz, then the latest checkpoint (and
        its `latest.old` fallback); `"latest"` skips best.npz. ConfigError when there is none."""
        if which not in WEIGHTS:
            raise ConfigError(f"weights must be one of {list(WEIGHTS)}; got {which!r}")
        candidates = [self.best_weights] if which == "best" else []
        candidates += [self.latest / VARIABLES, self.checkpoints / LATEST_OLD / VARIABLES]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise ConfigError(f"{self.path}: has no checkpoint yet ({CHECKPOINTS}/{BEST} or {CHECKPOINTS}/{LATEST}/{VARIABLES})")
        return found

    # ---- one writer at a time -------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, job: str = "training") -> Iterator[None]:
        """Hold the run directory for `job` while the block runs (re-entrant in one process).

        Raises:
            TrainingError: another live process holds it; the message names its pid, host, job
                and start time.
        """
        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            try:
                yield
            finally:
                _HELD[key][1] -= 1
            return
        self.path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 4096, 0).decode(errors="replace")
            os.close(descriptor)
            try:
                who = json.loads(holder)
                holder = f"{who['job']} (pid {who['pid']} on {who['host']}, since {who['since']})"
            except (ValueError, KeyError, TypeError):
                holder = "in use"
            raise TrainingError(f"{self.path}: this run directory is held by {holder}; wait for it to finish or choose another run directory") from None
        record = {"job": job, "pid": os.getpid(), "host": socket.gethostname(), "since": dt.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(record).encode(), 0)
        _HELD[key] = [descriptor, 1]
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    # ---- reading and writing ---------------------------------------------------------------

    def read_config(self) -> Config:
        if not self.config_path.is_file():
            raise ConfigError(f"{self.path}: not a run directory (no {CONFIG}); train one with `longstm train`")
        return load_config(self.config_path)

    def write_config(self, config: Config) -> None:
        write_atomic(self.config_path, config.to_toml())

    def read_data_record(self) -> dict[str, Any]:
        self.require()
        return json.loads(self.data_record_path.read_text())

    def write_data_record(self, record: dict[str, Any]) -> None:
        write_atomic(self.data_record_path, json.dumps(record, indent=1))

    def read_metrics(self) -> dict[str, Any] | None:
        return json.loads(self.metrics_path.read_text()) if self.metrics_path.is_file() else None

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_atomic(self.metrics_path, json.dumps(metrics, indent=1))
