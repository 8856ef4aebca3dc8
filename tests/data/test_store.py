"""The out-of-core store: every source layout, checks that name file/row/column, atomic runs,
appends, concurrent writers, sessions — on small panels generated here."""

from __future__ import annotations

import json
import multiprocessing
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import longstm.data.store as store_module
from longstm.data.sources import discover
from longstm.data.store import Store, convert
from longstm.errors import DataValidationError

DAY_MS = 86_400_000


def write_tick_day(folder: Path, day: str, millis, bid, ask) -> Path:
    """One vendor tick zip: a headerless `ms,bid,ask` CSV inside `<folder>/<day>_quote.zip`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{m},{b},{a}\n" for m, b, a in zip(millis, bid, ask))
    path = folder / f"{day}_quote.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{day}_x_tick_quote.csv", text)
    return path


def tick_panel(root: Path, days=("20140501", "20140502", "20140505"), rows: int = 50, seed: int = 0) -> dict:
    """Two venues' series; returns the expected UTC nanoseconds and quotes per series."""
    rng = np.random.default_rng(seed)
    expected = {}
    for series, offset_hours in (("fxcm_eurusd", 5), ("oanda_eurusd", 0)):
        stamps, bids, asks = [], [], []
        for day in days:
            # evenly spread over the day (about 29 minutes apart), so only the weekend is a gap of over an hour
            millis = np.sort(np.linspace(0, DAY_MS - 60_000, rows).astype(np.int64) + rng.integers(0, 60_000, rows))
            millis[3] = millis[2]  # a tie: kept, in file order
            bid = np.round(1.3 + rng.normal(0, 1e-3, rows), 5)
            ask = np.round(bid + 2e-5, 5)
            ask[5] = bid[5] - 1e-5  # a crossed quote
            write_tick_day(root / series, day, millis, bid, ask)
            midnight = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=offset_hours)
            stamps.append(midnight.value + millis * 1_000_000)
            bids.append(bid)
            asks.append(ask)
        expected[series] = (np.concatenate(stamps), np.concatenate(bids), np.concatenate(asks))
    return expected


def test_tick_zips_become_utc_series_with_ties_kept_and_crossed_quotes_marked(tmp_path):
    expected = tick_panel(tmp_path / "ticks")
    report = convert([tmp_path / "ticks"], tmp_path / "store", tz={"fxcm_*": "-05:00"}, block_rows=16)
    store = Store(tmp_path / "store")
    assert store.names == ["fxcm_eurusd", "oanda_eurusd"]
    assert report["rows"] == 2 * 3 * 50
    for name, (stamps, bid, ask) in expected.items():
        series = store.series(name)
        np.testing.assert_array_equal(series.timestamps(), stamps)
        np.testing.assert_array_equal(series.read(columns=["bid", "ask"]), np.stack([bid, ask], axis=1))
        np.testing.assert_array_equal(series.read(columns=["crossed"])[:, 0], (ask < bid).astype(float))
    rows = {row["series"]: row for row in store.describe()}
    assert rows["fxcm_eurusd"]["crossed"] == 3 and rows["oanda_eurusd"]["ties"] == 3
    # May 2 (Fri) -> May 5 (Mon) is a gap of more than an hour: two sessions; UTC midnight is not a boundary
    assert rows["oanda_eurusd"]["sessions"] == 2


def test_crossed_quotes_can_be_dropped(tmp_path):
    expected = tick_panel(tmp_path / "ticks", days=("20140501",))
    convert([tmp_path / "ticks"], tmp_path / "store", crossed="drop")
    series = Store(tmp_path / "store").series("oanda_eurusd")
    stamps, bid, ask = expected["oanda_eurusd"]
    keep = ~(ask < bid)
    assert len(series) == keep.sum() == 49
    np.testing.assert_array_equal(series.read(columns=["bid"])[:, 0], bid[keep])
    assert "crossed" not in pa.ipc.open_file(pa.memory_map(str(series._paths[0]))).schema.names


def test_long_table_with_unique_id_csv_and_parquet(tmp_path):
    frame = pd.DataFrame({
        "unique_id": ["a", "b", "a", "b", "a"],
        "ds": pd.date_range("2024-01-01", periods=5, freq="min").astype(str),
        "y": [1.0, 10.0, 2.0, 20.0, 3.0],
    })
    frame.to_csv(tmp_path / "long.csv", index=False)
    frame.assign(ds=pd.to_datetime(frame["ds"])).to_parquet(tmp_path / "long.parquet")
    for name in ("long.csv", "long.parquet"):
        convert([tmp_path / name], tmp_path / f"{name}.store", block_rows=2)
        store = Store(tmp_path / f"{name}.store")
        assert store.names == ["a", "b"]
        np.testing.assert_array_equal(store.series("a").read()[:, 0], [1.0, 2.0, 3.0])
        np.testing.assert_array_equal(store.series("b").read()[:, 0], [10.0, 20.0])
        minutes = store.series("b").timestamps() // 60_000_000_000 - pd.Timestamp("2024-01-01").value // 60_000_000_000
        np.testing.assert_array_equal(minutes, [1, 3])


def test_hive_partitioned_parquet_names_series_by_folder(tmp_path):
    for instrument in ("EURUSD", "NZDUSD"):
        for day in ("2014-05-01", "2014-05-02"):
            folder = tmp_path / "hive" / f"instrument={instrument}" / f"date={day}"
            folder.mkdir(parents=True)
            table = pa.table({"timestamp": pd.date_range(day, periods=4, freq="h"), "mid": np.arange(4.0)})
            pq.write_table(table, folder / "part-0.parquet")
    sources = discover([tmp_path / "hive"])
    assert {s.layout for s in sources} == {"hive"} and {s.series for s in sources} == {"EURUSD", "NZDUSD"}
    convert(sources, tmp_path / "store")
    store = Store(tmp_path / "store")
    assert store.names == ["EURUSD", "NZDUSD"] and len(store.series("EURUSD")) == 8


def test_a_glob_and_a_list_of_files(tmp_path):
    tick_panel(tmp_path / "ticks")
    assert len(discover(str(tmp_path / "ticks" / "oanda_*" / "*.zip"))) == 3
    files = sorted((tmp_path / "ticks" / "fxcm_eurusd").glob("*.zip"))[:2]
    assert [s.day.day for s in discover(files)] == [1, 2]
    with pytest.raises(DataValidationError, match="matches no file"):
        discover(str(tmp_path / "nothing*" / "*.zip"))


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("100,1.1,1.2\n50,1.1,1.2\n", r"20140501_quote.zip: series 'bad' row 2: timestamp .* goes back"),
        ("100,1.1,1.2\n200,nan,1.2\n", r"20140501_quote.zip: series 'bad' column 'bid' row 2: expected a finite number"),
        ("100,1.1,1.2\n200,x,1.2\n", r"20140501_quote.zip: column 'bid' row 2: expected a number, got 'x'"),
    ],
)
def test_bad_rows_are_named_and_nothing_is_published(tmp_path, text, pattern):
    tick_panel(tmp_path / "ticks", days=("20140430",))
    (tmp_path / "ticks" / "bad").mkdir()
    with zipfile.ZipFile(tmp_path / "ticks" / "bad" / "20140501_quote.zip", "w") as archive:
        archive.writestr("x.csv", text)
    with pytest.raises(DataValidationError, match=pattern):
        convert([tmp_path / "ticks"], tmp_path / "store")
    store = Store(tmp_path / "store")
    assert store.names == []  # the good series of the failed run are invisible too
    assert not any((tmp_path / "store" / ".staging").iterdir())


def test_converting_new_days_appends_and_overlaps_are_refused(tmp_path):
    tick_panel(tmp_path / "ticks")
    folder = tmp_path / "ticks" / "oanda_eurusd"
    days = sorted(folder.glob("*.zip"))
    convert(days[:2], tmp_path / "store")
    assert len(Store(tmp_path / "store").series("oanda_eurusd")) == 100
    convert(days[2:], tmp_path / "store")
    assert len(Store(tmp_path / "store").series("oanda_eurusd")) == 150
    convert(days[:1], tmp_path / "store")  # the same source again replaces its shard
    assert len(Store(tmp_path / "store").series("oanda_eurusd")) == 150
    write_tick_day(tmp_path / "other" / "oanda_eurusd", "20140502", [DAY_MS // 2, DAY_MS // 2 + 1], [1.0, 1.0], [1.1, 1.1])
    convert([tmp_path / "other"], tmp_path / "store")
    with pytest.raises(DataValidationError, match="must not overlap in time"):
        Store(tmp_path / "store")


def _convert_into(args):
    sources, out = args
    return convert(sources, out, tz={"fxcm_*": "-05:00"})["rows"]


def test_two_processes_convert_disjoint_sources_into_one_store(tmp_path):
    expected = tick_panel(tmp_path / "ticks")
    jobs = [([tmp_path / "ticks" / name], tmp_path / "store") for name in expected]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.map(_convert_into, jobs) == [150, 150]
    store = Store(tmp_path / "store")
    assert store.names == sorted(expected)
    for name, (stamps, _, _) in expected.items():
        np.testing.assert_array_equal(store.series(name).timestamps(), stamps)


def test_reads_across_shards_equal_the_whole_and_sessions_follow_the_gap(tmp_path):
    expected = tick_panel(tmp_path / "ticks")
    convert([tmp_path / "ticks"], tmp_path / "store", block_rows=7)
    series = Store(tmp_path / "store").series("fxcm_eurusd")
    whole = series.read()
    for start, stop in ((0, 150), (45, 55), (49, 101), (99, 100), (140, 400)):
        np.testing.assert_array_equal(series.read(start, stop), whole[start:stop])
    stamps = expected["fxcm_eurusd"][0]
    np.testing.assert_array_equal(series.sessions("1h"), np.concatenate([[0], np.flatnonzero(np.diff(stamps) > 3_600e9) + 1]))
    with pytest.raises(DataValidationError, match="gap must be a duration"):
        series.sessions("soon")


def test_not_a_store(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataValidationError, match="not a longstm store"):
        Store(tmp_path)
    with pytest.raises(DataValidationError, match="exists and is not a longstm store"):
        convert([tmp_path / "x.txt"], tmp_path)


def test_calendar_sessions_start_at_each_local_day_in_the_named_zone(tmp_path):
    """Ticks every 30 minutes for two days: a session per New York calendar day starts at the
    first tick at or after local midnight (04:00 UTC in May), not at UTC midnight."""
    stamps = pd.date_range("2014-05-01 00:00", "2014-05-02 23:30", freq="30min", tz="UTC")
    frame = pd.DataFrame({"unique_id": "s", "ds": stamps, "mid": np.arange(len(stamps), dtype=float) + 1})
    frame.to_parquet(tmp_path / "s.parquet")
    convert([tmp_path / "s.parquet"], tmp_path / "store", block_rows=7)  # several batches: boundaries inside a shard
    series = Store(tmp_path / "store").series("s")
    starts = series.sessions("1D@America/New_York")
    local_days = stamps.tz_convert("America/New_York").normalize()
    expected = np.concatenate([[0], np.flatnonzero(local_days[1:] != local_days[:-1]) + 1])
    np.testing.assert_array_equal(starts, expected)
    assert [str(stamps[i]) for i in starts[1:]] == ["2014-05-01 04:00:00+00:00", "2014-05-02 04:00:00+00:00"]
    np.testing.assert_array_equal(series.sessions("1D@UTC"), [0, 48])
    with pytest.raises(DataValidationError, match="FREQ@ZONE like '1D@America/New_York'"):
        series.sessions("1D@Mars/Olympus")
    with pytest.raises(DataValidationError, match="positive duration"):
        series.sessions("0s")


def test_gap_sessions_read_in_blocks_find_every_gap_at_and_across_block_edges(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    steps = np.where(rng.random(200) < 0.3, 2 * 3_600 * 10**9, 10**9)  # a gap before about every third row
    stamps = pd.to_datetime(np.cumsum(steps), unit="ns")
    pd.DataFrame({"unique_id": "s", "ds": stamps, "bid": 1.0, "ask": 1.1}).to_parquet(tmp_path / "s.parquet")
    convert([tmp_path / "s.parquet"], tmp_path / "store")
    series = Store(tmp_path / "store").series("s")
    expected = np.concatenate([[0], np.flatnonzero(np.diff(stamps.asi8) > 3_600 * 10**9) + 1])
    monkeypatch.setattr("longstm.data.store.SESSION_BLOCK_ROWS", 7)  # 29 blocks: gaps fall on their edges
    np.testing.assert_array_equal(series.sessions("1h"), expected)


def test_a_convert_starting_while_another_creates_the_same_store_joins_it(tmp_path, monkeypatch):
    """Two converts into one new store, started together (1 run in ~100 failed before): one finds
    the other's temporary store.json, or the other's store.json and folders made between its
    look for store.json and its listing of the folder."""
    frame = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=3, freq="min"), "y": [1.0, 2.0, 3.0]})
    frame.to_parquet(tmp_path / "a.parquet")
    being_made = tmp_path / "made_now"
    being_made.mkdir()
    (being_made / ".store.json.0123456789ab.tmp").write_text("{")  # the other convert's store.json, half written
    assert convert([tmp_path / "a.parquet"], being_made)["rows"] == 3
    raced, real_is_store = tmp_path / "raced", store_module.is_store
    raced.mkdir()  # the other convert has made the folder ...

    def the_other_convert_moves_on_right_after(path):
        found = real_is_store(path)
        if not (raced / "shards").exists():  # ... and right after this look writes store.json, then its folders
            (raced / "store.json").write_text(json.dumps(store_module.FORMAT))
            (raced / "shards").mkdir()
        return found

    monkeypatch.setattr(store_module, "is_store", the_other_convert_moves_on_right_after)
    convert([tmp_path / "a.parquet"], raced)
    assert Store(raced).names == ["a"]
    with pytest.raises(DataValidationError, match="exists and is not a longstm store"):
        convert([tmp_path / "a.parquet"], tmp_path / "a.parquet")  # a file in the way: still one line
