"""A convert that fails or is killed while it publishes leaves no shard a later convert or reader
takes for data (longstm/data/store.py, longstm/data/store_orphans.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from longstm.data.store import Store, convert
from longstm.data.store_orphans import OWNER_FILE, remove_orphans
from longstm.data.validation import DataWarning

ROOT = Path(__file__).resolve().parents[2]


def _long_table(folder: Path) -> Path:
    """One source holding two series, `a` (3 rows) and `b` (2 rows): one convert moves two shards."""
    frame = pd.DataFrame({
        "unique_id": ["a", "b", "a", "b", "a"],
        "ds": pd.date_range("2024-01-01", periods=5, freq="min").astype(str),
        "y": [1.0, 10.0, 2.0, 20.0, 3.0],
    })
    path = folder / "long.csv"
    frame.to_csv(path, index=False)
    return path


def _shard_files(store: Path) -> list[Path]:
    return sorted((store / "shards").rglob("*.arrow"))


def _named_by_run_files(store: Path) -> set[Path]:
    return {store / "shards" / shard["file"] for run in (store / "runs").glob("*.json")
            for shard in json.loads(run.read_text())["shards"]}


def _assert_reads_the_table(store: Path) -> None:
    reader = Store(store)
    assert reader.names == ["a", "b"]
    np.testing.assert_array_equal(reader.series("a").read()[:, 0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(reader.series("b").read()[:, 0], [10.0, 20.0])
    assert set(_shard_files(store)) == _named_by_run_files(store)  # no shard outside a run file


def test_a_convert_failing_while_it_publishes_removes_the_shards_it_moved(tmp_path, monkeypatch):
    source, store = _long_table(tmp_path), tmp_path / "store"
    real_replace, moved = os.replace, []

    def replace_then_fail(src, dst):
        if "shards" in Path(dst).parts:
            if moved:
                raise RuntimeError("stopped between two shard moves")
            moved.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_fail)
    with pytest.raises(RuntimeError, match="stopped between two shard moves"):
        convert([source], store)
    monkeypatch.setattr(os, "replace", real_replace)
    assert moved and _shard_files(store) == []  # the shard moved before the failure went again
    assert list((store / ".staging").iterdir()) == []
    convert([source], store)
    _assert_reads_the_table(store)


KILLED_CONVERT = """
import os, sys
from pathlib import Path
from longstm.data.store import convert
real_replace = os.replace
def replace_then_die(src, dst):
    real_replace(src, dst)
    if "shards" in Path(dst).parts:
        os._exit(9)  # like SIGKILL: no except, no finally
os.replace = replace_then_die
convert([sys.argv[1]], sys.argv[2])
"""


def test_the_next_convert_removes_what_a_killed_convert_left(tmp_path):
    source, store = _long_table(tmp_path), tmp_path / "store"
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_CONVERT), str(source), str(store)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    left = _shard_files(store)
    assert len(left) == 1 and len(list((store / ".staging").iterdir())) == 1  # one shard published, no run file
    assert Store(store).names == []  # invisible to readers
    with pytest.warns(DataWarning, match=r"removed 1 shard file\(s\) of convert runs killed before they published them"):
        report = convert([source], store)
    assert report["orphans_removed"] == [str(left[0].relative_to(store))]
    assert not left[0].exists() and list((store / ".staging").iterdir()) == []
    _assert_reads_the_table(store)


def test_runs_that_may_still_be_running_are_left_alone(tmp_path):
    convert([_long_table(tmp_path)], tmp_path / "store")
    store = tmp_path / "store"
    owners = {  # this process (alive), a process on another host, a run that has not written its owner yet
        "00000000000000000001-1-aaaaaa": {"host": socket.gethostname(), "pid": os.getpid()},
        "00000000000000000002-1-bbbbbb": {"host": "another-node", "pid": 1},
        "00000000000000000003-1-cccccc": None,
    }
    for run, owner in owners.items():
        (store / ".staging" / run).mkdir()
        if owner is not None:
            (store / ".staging" / run / OWNER_FILE).write_text(json.dumps(owner))
        (store / "shards" / "a" / f"long.{run}.arrow").write_bytes(b"moved in, run file not written yet")
    assert remove_orphans(store) == []
    assert len(_shard_files(store)) == 2 + len(owners)
    Store(store)  # readers still see only the published run
    assert Store(store).indexed_rows("a") == 3
