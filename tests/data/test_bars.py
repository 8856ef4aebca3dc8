"""Bars from a tick store: equal to a pandas resample, no row for an empty interval, stamped
after all their ticks, written atomically, bad input named in one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.cli import main
from longstm.data.bars import bar_source, make_bars
from longstm.data.panel import CalendarSplit, PanelDataset
from longstm.data.store import Store, convert
from longstm.errors import ConfigError, DataValidationError

START = pd.Timestamp("2024-01-01T00:00:00", tz="UTC")


def tick_frame(name: str, seed: int, rows: int = 3000) -> pd.DataFrame:
    """Irregular ticks over ~10 minutes with bursts, ties, pauses of several seconds (empty
    intervals) and a few crossed quotes."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(0.15, rows) * np.where(rng.random(rows) < 0.01, 40.0, 1.0)
    gaps[rng.random(rows) < 0.05] = 0.0  # ties
    stamps = START + pd.to_timedelta(np.round(np.cumsum(gaps), 3), unit="s")
    bid = np.round(1.3 + np.cumsum(rng.normal(0, 1e-5, rows)), 6)
    ask = bid + 2e-5
    ask[rng.random(rows) < 0.02] -= 5e-5
    return pd.DataFrame({"unique_id": name, "ds": stamps, "bid": bid, "ask": ask})


@pytest.fixture(scope="module")
def ticks(tmp_path_factory):
    root = tmp_path_factory.mktemp("bars")
    frame = pd.concat([tick_frame("a", 0), tick_frame("b", 1, rows=1000)], ignore_index=True)
    frame.to_parquet(root / "ticks.parquet")
    convert([root / "ticks.parquet"], root / "ticks.store")
    return root, frame


@pytest.fixture(scope="module")
def bars(ticks):
    root, _ = ticks
    make_bars(root / "ticks.store", root / "bars.store", every="1s", block_rows=97)  # intervals straddle blocks
    return Store(root / "bars.store")


def test_bars_equal_a_pandas_resample_and_skip_empty_intervals(ticks, bars):
    _, frame = ticks
    for name, part in frame.groupby("unique_id"):
        indexed = part.set_index("ds")[["bid", "ask"]]
        # label="right": a bar is stamped at its interval's end; origin="epoch": boundaries at multiples of 1 s
        expected = indexed.resample("1s", label="right", closed="left", origin="epoch").last().dropna()
        counts = indexed["bid"].resample("1s", label="right", closed="left", origin="epoch").count()
        counts = counts[counts > 0]
        series = bars.series(name)
        assert series.columns == ["bid", "ask", "ticks"]
        stamps = series.timestamps()
        np.testing.assert_array_equal(stamps, expected.index.asi8)
        np.testing.assert_array_equal(series.read(columns=["bid", "ask"]), expected.to_numpy())
        np.testing.assert_array_equal(series.read(columns=["ticks"])[:, 0], counts.to_numpy())
        np.testing.assert_array_equal(series.read(columns=["crossed"])[:, 0] > 0, expected["ask"] < expected["bid"])
        assert len(stamps) < int((stamps[-1] - stamps[0]) / 1e9)  # the pauses left intervals without a row
        assert series.read(columns=["ticks"]).sum() == len(part)


def test_a_bar_is_stamped_after_all_its_ticks_and_holds_the_quote_then_in_force(ticks, bars):
    root, _ = ticks
    source = Store(root / "ticks.store").series("a")
    tick_stamps, quotes = source.timestamps(), source.read(columns=["bid", "ask"])
    series = bars.series("a")
    bar_stamps, bar_quotes, counts = series.timestamps(), series.read(columns=["bid", "ask"]), series.read(columns=["ticks"])[:, 0]
    last = np.cumsum(counts).astype(np.int64) - 1  # each bar's last tick
    assert np.all(tick_stamps[last] < bar_stamps)  # causality: every tick of a bar is strictly before its stamp
    assert np.all(tick_stamps[last] >= bar_stamps - 10**9)
    in_force = np.searchsorted(tick_stamps, bar_stamps, side="left") - 1  # the last tick strictly before the stamp
    np.testing.assert_array_equal(bar_quotes, quotes[in_force])
    assert np.all(bar_stamps % 10**9 == 0)


def test_metadata_names_the_source_and_a_finished_store_only_appears_whole(ticks, bars, tmp_path, monkeypatch):
    root, _ = ticks
    meta = bar_source(root / "bars.store")
    assert meta["source"] == str((root / "ticks.store").resolve()) and meta["every"] == "1s" and meta["every_ns"] == 10**9
    assert meta["source_runs"] and bar_source(root / "ticks.store") is None

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "half"))

    monkeypatch.setattr("longstm.data.bars.os.replace", fail)
    with pytest.raises(DataValidationError, match="no bar store was made"):
        make_bars(root / "ticks.store", tmp_path / "half", every="1s")
    assert list(tmp_path.iterdir()) == []  # neither the store nor its staging folder


@pytest.mark.parametrize("every", ["0s", "5", "soon", "-1s"])
def test_a_bad_every_is_one_line(ticks, tmp_path, every):
    root, _ = ticks
    with pytest.raises(ConfigError, match=r"every must be a positive duration .*got"):
        make_bars(root / "ticks.store", tmp_path / "out", every=every)


def test_missing_columns_and_an_existing_out_are_named(ticks, tmp_path):
    root, _ = ticks
    pd.DataFrame({"unique_id": "x", "ds": pd.date_range("2024-01-01", periods=5, freq="s"), "bid": 1.0}).to_parquet(tmp_path / "b.parquet")
    convert([tmp_path / "b.parquet"], tmp_path / "bidonly.store")
    with pytest.raises(DataValidationError, match=r"series 'x' has no column\(s\) \['ask'\]; bars need \['bid', 'ask'\]"):
        make_bars(tmp_path / "bidonly.store", tmp_path / "out")
    with pytest.raises(DataValidationError, match="exists; bars are written to a new folder"):
        make_bars(root / "ticks.store", root / "bars.store")


def test_the_cli_writes_a_bar_store_and_errors_are_one_line(ticks, tmp_path, capsys):
    root, _ = ticks
    assert main(["data", "bars", str(root / "ticks.store"), "--every", "2s", "--out", str(tmp_path / "b2")]) == 0
    assert "bars of 2s from 4,000 ticks of 2 series" in " ".join(capsys.readouterr().out.split())
    assert bar_source(tmp_path / "b2")["every_ns"] == 2 * 10**9
    assert main(["data", "bars", str(root / "ticks.store"), "--every", "fast", "--out", str(tmp_path / "b3")]) == 2
    captured = capsys.readouterr()
    message = (captured.out + captured.err).strip()
    assert "every must be a positive duration" in message and len(message.splitlines()) == 1


def tick_sessions_of_bars(tick_store: Store, bar_store: Store, name: str, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """`(the bars holding each tick session's first tick, the tick session of each bar's first
    and last tick as two columns)`."""
    starts = tick_store.series(name).sessions(rule)
    last = np.cumsum(bar_store.series(name).read(columns=["ticks"])[:, 0]).astype(np.int64) - 1  # each bar's last tick
    first = np.concatenate([[0], last[:-1] + 1])
    holding = np.searchsorted(last, starts, side="left")  # the first bar whose last tick is at or after the start
    ends = np.stack([np.searchsorted(starts, first, side="right"), np.searchsorted(starts, last, side="right")], axis=1)
    return holding, ends


def test_bar_sessions_split_exactly_where_the_tick_sessions_split(tmp_path):
    """Bars of 1 s under a gap rule of 10.5 s. Ticks 10.55 s apart (1.05 -> 11.6) are two
    sessions, but their bars are stamped 2 s and 12 s, only 10 s apart; ticks 10.2 s apart
    (20.9 -> 31.1) are one session, but their bars' stamps (21 s, 32 s) are 11 s apart. The bar
    store must split where the ticks split, both times (so no bar target spans a tick session
    break), and the bars stay as they were."""
    seconds = [0.1, 0.5, 1.05, 11.6, 12.4, 20.9, 31.1, 31.5, 33.0]
    stamps = START + pd.to_timedelta(seconds, unit="s")
    bid = 1.0 + 1e-3 * np.arange(len(seconds))
    pd.DataFrame({"unique_id": "a", "ds": stamps, "bid": bid, "ask": 1.1}).to_parquet(tmp_path / "t.parquet")
    convert([tmp_path / "t.parquet"], tmp_path / "ticks")
    make_bars(tmp_path / "ticks", tmp_path / "bars", every="1s", block_rows=2)  # bars straddle blocks
    ticks, bars = Store(tmp_path / "ticks"), Store(tmp_path / "bars")
    bar_stamps = (bars.series("a").timestamps() - START.value) / 1e9
    np.testing.assert_array_equal(bar_stamps, [1, 2, 12, 13, 21, 32, 34])  # each interval's end, as before
    np.testing.assert_array_equal(bars.series("a").read(columns=["ticks"])[:, 0], [2, 1, 1, 1, 1, 2, 1])
    assert bars.series("a").columns == ["bid", "ask", "ticks"]
    # tick sessions: 10.55 s is more than 10.5 s and 10.2 s, 10.2 s only more than 10 s
    for rule, tick_starts, bar_starts in [("10500ms", [0, 3], [0, 2]), ("10200ms", [0, 3], [0, 2]), ("10s", [0, 3, 6], [0, 2, 5])]:
        assert list(ticks.series("a").sessions(rule)) == tick_starts, rule
        assert list(bars.series("a").sessions(rule)) == bar_starts, rule
        holding, ends = tick_sessions_of_bars(ticks, bars, "a", rule)
        assert list(holding) == bar_starts and np.all(ends[:, 0] == ends[:, 1]), rule
    assert bars.describe("10s")[0]["sessions"] == 3 and bars.describe("10500ms")[0]["sessions"] == 2
    # a bar model's 10-s targets under 10.5 s: valid where stamp + 10 s is in the bar's own session (bars 0-1 end at
    # 2 s, bars 2-6 at 34 s); by the stamps bar 1's target (2 s -> 12 s) would read bar 2, across the tick break
    data = PanelDataset(bars, CalendarSplit("2024-01-02", "2024-01-03"), ["10s"], session_gap="10500ms", scaling=None)
    train = data.rows("train")
    np.testing.assert_array_equal(train[0:7][:, -1], [0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(train[2:5][:, -2], np.log((bid[[5, 5, 5]] + 1.1) / (bid[[3, 4, 5]] + 1.1)), rtol=1e-5)


@pytest.mark.parametrize("rule", ["1500ms", "2s", "3s", "4700ms", "1h"])
def test_bar_sessions_of_irregular_ticks_are_the_tick_sessions(ticks, bars, rule):
    root, _ = ticks
    store = Store(root / "ticks.store")
    for name in ("a", "b"):
        holding, ends = tick_sessions_of_bars(store, bars, name, rule)
        np.testing.assert_array_equal(bars.series(name).sessions(rule), holding)
        assert np.all(ends[:, 0] == ends[:, 1])  # every bar's ticks lie in one tick session


def test_a_source_column_named_tick_gap_is_refused(tmp_path):
    """A bar store's sessions are read from its `tick_gap` column, so a source may not bring one."""
    pd.DataFrame({"unique_id": "x", "ds": pd.date_range("2024-01-01", periods=3, freq="s"), "bid": 1.0, "ask": 1.1,
                  "tick_gap": 5.0}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataValidationError, match=r"t\.parquet: series 'x' has a column 'tick_gap'; expected none \(reserved\)"):
        convert([tmp_path / "t.parquet"], tmp_path / "store")
