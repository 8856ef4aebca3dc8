"""A disk that fills up while a checkpoint, best.npz, config.toml/data.json, a store conversion or a
report is written: the write fails with one clear line, and nothing half-written is taken as valid.

The full disk is a fault-injecting writer: every file opened for writing under a folder accepts
`budget` bytes in all and then raises `OSError(ENOSPC)` part-way through a write (Python's writers,
NumPy's `savez` and `Path.write_text` go through `io.open`; the store's Arrow writer is wrapped).
"""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from longstm.cli import main
from longstm.data.store import Store, convert
from longstm.errors import DataValidationError, LongstmError, TrainingError
from longstm.evaluate.report import build_report
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.train.checkpoint import load_weights, read_checkpoint, save_weights, write_checkpoint
from longstm.train.config import config_from_dict
from longstm.train.engine import build_model_for
from longstm.train.rundir import RunDir

FULL = os.strerror(errno.ENOSPC)  # "No space left on device"


class _Limited:
    """A file object that writes until the shared budget is spent, then raises ENOSPC part-way."""

    def __init__(self, handle, disk: "_FullDisk"):
        self._handle, self._disk = handle, disk

    def write(self, data):
        self._disk.written[Path(self._handle.name).name] = self._disk.written.get(Path(self._handle.name).name, 0) + len(data)
        room = self._disk.budget
        if len(data) > room:
            self._handle.write(data[:room])  # the part that fitted reaches the file
            self._disk.budget = 0
            self._disk.failures += 1
            raise OSError(errno.ENOSPC, FULL)
        self._disk.budget -= len(data)
        return self._handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def __iter__(self):
        return iter(self._handle)

    def __getattr__(self, name):
        return getattr(self._handle, name)


class _FullDisk:
    def __init__(self, folder: Path, budget: int):
        self.folder, self.budget, self.failures = str(Path(folder).resolve()), budget, 0
        self.written: dict[str, int] = {}  # bytes offered per file name
        self._open = io.open

    def open(self, file, mode="r", *args, **kwargs):
        handle = self._open(file, mode, *args, **kwargs)
        writing = any(flag in mode for flag in "wax+")
        if writing and isinstance(file, (str, os.PathLike)) and str(Path(file).resolve()).startswith(self.folder):
            return _Limited(handle, self)
        return handle


@pytest.fixture
def full_disk(monkeypatch):
    """`full_disk(folder, budget)`: from now on, writes under `folder` fail after `budget` bytes."""

    def fill(folder: Path, budget: int) -> _FullDisk:
        disk = _FullDisk(folder, budget)
        monkeypatch.setattr(io, "open", disk.open)
        return disk

    return fill


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert isinstance(error, LongstmError) and "\n" not in message and FULL in message
    return message


# ---- checkpoints ------------------------------------------------------------------------------


def _model(seed: int):
    keras.utils.set_random_seed(seed)
    model = Forecaster(KerasRNNStack([keras.layers.LSTM(3)]), outputs=1)
    build_model_for(model, 2, 4, 2)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def _values(variables):
    return [np.asarray(v).copy() for v in variables]


POSITION = {"epoch": 1, "step_in_epoch": 3, "global_step": 7, "best": 0.5, "bad_epochs": 0, "finished": False, "history": []}


def _variables_bytes(tmp_path, full_disk) -> int:
    """How many bytes writing this model's variables.npz offers to the disk (measured, with room to spare)."""
    run = RunDir(tmp_path / "size")
    model, optimizer = _model(0)
    disk = full_disk(run.path, 1 << 30)
    write_checkpoint(run, model, optimizer, [np.zeros((2, 3), np.float32)], POSITION)
    return disk.written["variables.npz"]


@pytest.mark.parametrize("where", ["at the first byte", "inside variables.npz", "inside position.json"])
def test_a_full_disk_during_a_checkpoint_save_keeps_the_previous_checkpoint(where, tmp_path, full_disk):
    run = RunDir(tmp_path / "run")
    model, optimizer = _model(0)
    states = [np.full((2, 3), 0.5, np.float32)]
    write_checkpoint(run, model, optimizer, states, POSITION)
    saved = _values(model.variables) + _values(optimizer.variables)
    size = _variables_bytes(tmp_path, full_disk)
    budget = {"at the first byte": 0, "inside variables.npz": size // 2, "inside position.json": size + 20}[where]

    for variable in model.variables:  # training moved on: the new save holds other numbers
        variable.assign(np.asarray(variable) + 1.0)
    disk = full_disk(run.path, budget)
    with pytest.raises(TrainingError) as caught:
        write_checkpoint(run, model, optimizer, [np.ones((2, 3), np.float32)], {**POSITION, "global_step": 9})
    assert disk.failures >= 1
    message = _one_line(caught.value)
    assert f"the latest checkpoint is still the previous one ({run.latest})" in message
    written = "position.json" if where == "inside position.json" else "variables.npz"
    assert message.startswith(f"{run.latest_temporary / written}: could not be written ({FULL}); ")
    assert not run.latest_temporary.exists() and not run.latest_old.exists()

    fresh, fresh_optimizer = _model(1)
    leaves, position = read_checkpoint(run, fresh, fresh_optimizer, n_states=1)
    assert position["global_step"] == 7
    np.testing.assert_array_equal(leaves[0], states[0])
    for got, want in zip(_values(fresh.variables) + _values(fresh_optimizer.variables), saved):
        np.testing.assert_array_equal(got, want)


def test_a_full_disk_while_best_npz_is_written_keeps_the_previous_best(tmp_path, full_disk):
    run = RunDir(tmp_path / "run")
    model, _ = _model(0)
    save_weights(run.best_weights, model)
    best = _values(model.variables)
    size = run.best_weights.stat().st_size
    for variable in model.variables:
        variable.assign(np.asarray(variable) - 1.0)
    disk = full_disk(run.path, size // 2)
    with pytest.raises(TrainingError) as caught:
        save_weights(run.best_weights, model)
    assert disk.failures >= 1
    assert _one_line(caught.value).startswith(f"{run.best_weights}: could not be written ({FULL}); the previous best.npz")
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["best.npz"]  # no temporary left behind
    fresh, _ = _model(1)
    load_weights(fresh, run.best_weights)
    for got, want in zip(_values(fresh.variables), best):
        np.testing.assert_array_equal(got, want)


# ---- config.toml and data.json ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["config.toml", "data.json"])
def test_a_full_disk_while_the_run_files_are_written_keeps_the_previous_ones(which, tmp_path, full_disk):
    run = RunDir(tmp_path / "run")
    config = config_from_dict({"data": {"path": "a.csv", "targets": ["y"]}, "model": {"units": 4}})
    run.write_config(config)
    run.write_data_record({"columns": ["y"], "features": ["y"], "targets": ["y"]})
    before = {name: (run.path / name).read_text() for name in ("config.toml", "data.json")}
    disk = full_disk(run.path, 10)
    with pytest.raises(TrainingError) as caught:
        if which == "config.toml":
            run.write_config(config_from_dict({"data": {"path": "b.csv", "targets": ["y"]}, "model": {"units": 8}}))
        else:
            run.write_data_record({"columns": ["x", "y"], "features": ["x"], "targets": ["y"]})
    assert disk.failures == 1
    assert _one_line(caught.value) == f"{run.path / which}: could not be written ({FULL}); the previous file, if any, is unchanged"
    assert {name: (run.path / name).read_text() for name in before} == before
    assert sorted(p.name for p in run.path.iterdir()) == ["config.toml", "data.json"]
    assert run.read_config().model.units == 4 and run.read_data_record()["features"] == ["y"]


# ---- a store conversion -----------------------------------------------------------------------


def _source(folder: Path, name: str, rows: int) -> Path:
    frame = pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=rows, freq="s", tz="UTC"),
        "bid": np.linspace(1.0, 2.0, rows), "ask": np.linspace(1.001, 2.001, rows),
    })
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


class _ArrowWriterThatFills:
    """`pa.ipc.new_file` whose writer fails with ENOSPC at its `fail_at`-th table (counted over all writers)."""

    def __init__(self, fail_at: int):
        self.fail_at, self.tables, self._new_file = fail_at, 0, pa.ipc.new_file

    def new_file(self, sink, schema):
        writer, outer = self._new_file(sink, schema), self

        class Writer:
            def write_table(self, table):
                outer.tables += 1
                if outer.tables == outer.fail_at:
                    writer.write_table(table.slice(0, table.num_rows // 2))  # half the batch reached the disk
                    raise OSError(errno.ENOSPC, FULL)
                writer.write_table(table)

            def close(self):
                writer.close()

        return Writer()


def _visible(root: Path) -> dict:
    store = Store(root)
    return {series.name: len(series) for series in store}


@pytest.mark.parametrize("where", ["a shard", "the run file"])
def test_a_full_disk_during_a_store_conversion_publishes_nothing(where, tmp_path, full_disk, monkeypatch):
    root = tmp_path / "store"
    convert([_source(tmp_path, "eurusd", 50)], root)
    before = _visible(root)
    shards_before = sorted(p.relative_to(root) for p in (root / "shards").rglob("*") if p.is_file())
    second = [_source(tmp_path, "gbpusd", 40), _source(tmp_path, "usdjpy", 40)]
    if where == "a shard":
        filling = _ArrowWriterThatFills(fail_at=2)  # the second source's shard, after the first one was written
        monkeypatch.setattr(pa.ipc, "new_file", filling.new_file)
    else:
        filling = full_disk(root / "runs", 20)  # every shard written, then the run file that publishes them
    with pytest.raises(DataValidationError) as caught:
        convert(second, root, block_rows=1000)
    message = _one_line(caught.value)
    if where == "the run file":
        assert message.startswith(f"{root / 'runs'}/") and ".json: could not be written" in message
    assert message.endswith("nothing of this conversion was published (the store is as it was before it)")
    assert _visible(root) == before == {"eurusd": 50}
    assert sorted(p.relative_to(root) for p in (root / "shards").rglob("*") if p.is_file()) == shards_before
    assert [p.name for p in (root / "runs").iterdir() if not p.name.endswith(".json")] == []  # no temporary run file
    assert list((root / ".staging").iterdir()) == []
    monkeypatch.undo()
    convert(second, root)  # space again: the same conversion now publishes
    assert _visible(root) == {"eurusd": 50, "gbpusd": 40, "usdjpy": 40}


def test_a_full_disk_while_a_new_store_is_created_leaves_a_folder_a_retry_can_use(tmp_path, full_disk, monkeypatch):
    root = tmp_path / "store"
    full_disk(root, 5)
    with pytest.raises(DataValidationError) as caught:
        convert([_source(tmp_path, "eurusd", 20)], root)
    assert _one_line(caught.value).startswith(f"{root / 'store.json'}: could not be written ({FULL})")
    assert list(root.iterdir()) == []
    monkeypatch.undo()
    convert([_source(tmp_path, "eurusd", 20)], root)
    assert _visible(root) == {"eurusd": 20}


# ---- a report ---------------------------------------------------------------------------------


def test_a_full_disk_while_a_report_is_written_keeps_the_previous_report(tmp_path, full_disk):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"val_loss": 0.5}))
    html, markdown = build_report(run)
    before = html.read_text(), markdown.read_text()
    (run / "metrics.json").write_text(json.dumps({"val_loss": 0.25}))
    disk = full_disk(run, len(before[0]) // 2)
    with pytest.raises(LongstmError) as caught:
        build_report(run)
    assert disk.failures == 1
    assert _one_line(caught.value).startswith(f"{html}: could not be written ({FULL})")
    assert (html.read_text(), markdown.read_text()) == before
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json", "report.html", "report.md"]


# ---- what a user sees -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["data convert", "report"])
def test_the_cli_prints_a_full_disk_as_one_line(command, tmp_path, full_disk, monkeypatch, capsys):
    if command == "report":
        (tmp_path / "metrics.json").write_text(json.dumps({"val_loss": 0.5}))
        full_disk(tmp_path, 100)
        argv, written = ["report", str(tmp_path)], tmp_path / "report.html"
    else:
        monkeypatch.setattr(pa.ipc, "new_file", _ArrowWriterThatFills(fail_at=1).new_file)
        argv, written = ["data", "convert", str(_source(tmp_path, "eurusd", 30)), "--out", str(tmp_path / "store")], tmp_path / "store"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert FULL in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "could not be written" in err and str(written) in err.replace("\n", "")
