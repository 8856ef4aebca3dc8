"""`bench scale` on a small panel: every stage runs in its own process and reports its rows and
memory; the temporary dataset and store are removed afterwards."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from longstm.bench.scale import LANES, CHUNK, bench_scale, write_dataset
from longstm.errors import ConfigError


def test_the_synthetic_dataset_has_the_rows_asked_for_in_time_order(tmp_path):
    files = write_dataset(tmp_path, rows=30_000, series=3)
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 30_000
    table = pq.read_table(files[0])
    stamps = table.column("timestamp").to_numpy()
    assert (stamps[1:] > stamps[:-1]).all() and (table.column("ask").to_numpy() > table.column("bid").to_numpy()).all()


def test_every_stage_reports_rows_time_and_memory_and_cleans_up(tmp_path):
    rows = bench_scale(20_000, 2, updates=2, folder=tmp_path, echo=lambda line: None)
    assert [row["stage"] for row in rows] == ["pyarrow_scan", "convert", "train"]
    assert rows[0]["rows"] == rows[1]["rows"] == 20_000
    assert rows[2]["rows"] == 2 * LANES * CHUNK
    for row in rows:
        assert row["series"] == 2 and row["seconds"] > 0 and row["rows_per_s"] > 0 and row["cpu_seconds"] > 0
        assert row["peak_rss_mb"] >= row["rss_before_mb"] > 0
    assert list(tmp_path.iterdir()) == []


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="--rows must be >= --series >= 1"):
        bench_scale(5, 10)


def test_the_command_prints_a_table_and_writes_json(tmp_path, capsys):
    import json

    from longstm.cli import main

    assert main(["bench", "scale", "--rows", "2e4", "--series", "2", "--updates", "1", "--folder", str(tmp_path),
                 "--json", str(tmp_path / "scale.json")]) == 0
    rows = json.loads((tmp_path / "scale.json").read_text())
    assert [row["stage"] for row in rows] == ["pyarrow_scan", "convert", "train"]
    assert "bench scale: 20,000 rows over 2 series" in capsys.readouterr().out
    assert main(["bench", "scale", "--rows", "many"]) == 2
