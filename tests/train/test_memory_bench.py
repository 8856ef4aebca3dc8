"""`longstm bench memory`: the series file, size parsing, skips, and one real measurement."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from longstm.bench import memory
from longstm.errors import ConfigError


def test_series_file_is_reproducible_float32_on_disk(tmp_path):
    first = np.load(memory.write_series(tmp_path / "a.npy", 5000, chunk_rows=700))
    second = np.load(memory.write_series(tmp_path / "b.npy", 5000, chunk_rows=700))
    assert first.shape == (5000, 8) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    assert first[:700].std() > 0 and first[4300:].std() > 0  # every chunk written
    assert np.isfinite(first).all()


def test_sizes_are_parsed_and_checked():
    assert memory.parse_sizes("1e4, 1e5") == [10_000, 100_000]
    with pytest.raises(ConfigError, match="--sizes must be comma-separated numbers"):
        memory.parse_sizes("1e4,lots")
    with pytest.raises(ConfigError, match="at least 4097"):
        memory.parse_sizes("100")


def test_one_tbptt_epoch_is_measured_in_a_fresh_process_and_full_bptt_over_the_cap_is_skipped(tmp_path, monkeypatch):
    children = []
    spawn = subprocess.run

    def recorded(command, **kwargs):
        if "longstm.bench.memory_worker" in command:  # not e.g. a `uname` some import runs
            children.append(list(command))
        return spawn(command, **kwargs)

    monkeypatch.setattr(memory.subprocess, "run", recorded)
    rows = memory.run([5000], ["tbptt", "full_bptt"], cap_mb=1.0, folder=tmp_path, progress=False)
    tbptt, full = rows
    # One child Python process ran the worker on the series file, for tbptt only (the skipped
    # full BPTT started none); the series file was written under the given folder.
    assert len(children) == 1
    assert children[0][:4] == [sys.executable, "-m", "longstm.bench.memory_worker", "tbptt"]
    assert Path(children[0][4]).parent.parent == tmp_path
    assert tbptt["status"] == "ok", tbptt
    assert tbptt["method"] == "tbptt" and tbptt["T"] == 5000 and tbptt["updates"] == 2
    assert tbptt["seconds"] > 0
    assert 0 < tbptt["epoch_extra_mb"] < tbptt["peak_rss_mb"]
    # The life-long peak covers the epoch's: RSS before it plus what the epoch added (0.1 MB rounding).
    assert tbptt["peak_rss_mb"] >= tbptt["rss_before_epoch_mb"] + tbptt["epoch_extra_mb"] - 0.2
    assert tbptt["rss_before_epoch_mb"] > 300  # TensorFlow is imported in the measured process
    assert full["peak_rss_mb"] is None and full["status"].startswith("skipped: estimated +14 MB exceeds the cap of 1 MB")
