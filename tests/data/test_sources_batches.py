"""Reading a Parquet source holds one row group at a time, however long the file is: the memory
of a conversion is set by the batch and the file's row groups, not by the data's length."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from longstm.data.sources import discover, read_batches

ROW_GROUP = 16_384


def test_a_long_parquet_file_is_read_one_row_group_at_a_time(tmp_path):
    rows = 16 * ROW_GROUP
    rng = np.random.default_rng(0)
    table = pa.table({
        "timestamp": pa.array(np.arange(rows, dtype=np.int64) * 10**6, pa.timestamp("ns", tz="UTC")),
        "bid": rng.random(rows), "ask": rng.random(rows),
    })
    pq.write_table(table, tmp_path / "long.parquet", row_group_size=ROW_GROUP)
    source = discover([tmp_path / "long.parquet"])[0]
    before, held, pieces = pa.total_allocated_bytes(), 0, []
    for batch in read_batches(source, block_rows=4_096):
        held = max(held, pa.total_allocated_bytes() - before)  # Arrow memory alive while this batch is
        assert batch.table.num_rows <= 4_096
        pieces.append(batch.table.column("bid").to_numpy().copy())  # a view would keep its row group alive
    np.testing.assert_array_equal(np.concatenate(pieces), table.column("bid").to_numpy())
    # one row group is 16,384 rows x 24 bytes; reading all row groups at once held about 20 of them
    assert held <= 5 * ROW_GROUP * 24


def test_prefetched_keeps_the_order_raises_the_readers_error_here_and_stops_its_thread():
    import threading

    import pytest

    from longstm.data.sources import prefetched

    assert list(prefetched(iter(range(50)), depth=1)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("row 7 of x.csv")

    with pytest.raises(ValueError, match="row 7 of x.csv"):
        list(prefetched(failing()))
    endless = prefetched(iter(range(10**9)), depth=2)
    assert next(endless) == 0
    endless.close()  # the caller stops early: the reader thread ends too
    assert not any(t.name == "longstm-prefetch" for t in threading.enumerate())
