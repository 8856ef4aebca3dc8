"""Groups of series for a panel run over several workers, without any TensorFlow: the groups come
from the store's index, each worker's share of a `PanelDataset` gets the whole panel's scaler
from summed moments, and `LaneGroups` gives each worker exactly its block of the one-process
schedule."""

from __future__ import annotations

import numpy as np
import pytest

from longstm.data.lane_groups import LaneGroups, series_groups
from longstm.data.lanes import LaneWindows
from longstm.data.panel import CalendarSplit, PanelDataset
from longstm.data.store import Store
from longstm.errors import ConfigError, DataValidationError
from tests.train.test_panel_run import TRAIN_UNTIL, VAL_UNTIL, make_quote_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(make_quote_store(tmp_path_factory.mktemp("groups"), ticks_per_day=200))


def _panel(store, **kwargs):
    return PanelDataset(store, CalendarSplit(TRAIN_UNTIL, VAL_UNTIL), ["10s"], [{"kind": "quote", "window": 5}],
                        scaling="pooled", **kwargs)


def test_series_groups_balance_the_indexed_rows_without_opening_a_shard(store, monkeypatch):
    monkeypatch.setattr("longstm.data.store.StoreSeries._table", lambda *a: pytest.fail("a shard was opened"))
    assert series_groups(store, ["a", "b", "c"], 2) == [["a", "c"], ["b"]]
    assert series_groups(store, ["c", "b", "a"], 3) == [["c"], ["b"], ["a"]]
    with pytest.raises(ConfigError, match=r"3 workers need at least 3 series to share out; the panel has 2: \['a', 'b'\]"):
        series_groups(store, ["a", "b"], 3)


def test_each_share_gets_the_whole_panels_scaler_and_split_rows_from_summed_moments(store):
    whole = _panel(store)
    groups = series_groups(store, ["a", "b", "c"], 2)
    contributions = []
    for group in groups:  # first pass: what each worker would contribute to the sum
        _panel(store, series=group, all_series=["a", "b", "c"], all_reduce=lambda array: contributions.append(array) or array)
    total = sum(contributions)
    for group in groups:
        share = _panel(store, series=group, all_series=["a", "b", "c"], all_reduce=lambda array: total)
        assert share.panel.names == group and share.bounds == whole.panel.bounds
        assert share.record()["series"] == ["a", "b", "c"] and share.record()["rows"] == whole.record()["rows"]
        for name in "abc":
            for got, want in zip(share.scaler[name], whole.scaler[name]):
                np.testing.assert_allclose(got, want, rtol=1e-12)


def test_lane_groups_give_each_worker_its_block_of_the_one_process_schedule(store):
    data = _panel(store)
    groups = series_groups(store, ["a", "b", "c"], 2)
    blocks = []
    for names in groups:
        rows = data.rows("train", series=names)
        blocks.append(LaneWindows(rows, lanes=2, k1=16, k2=16, segments=rows.segments, **data.lane_columns()))
    whole = LaneGroups(blocks)
    assert whole.lanes == 4 and len(whole) == max(len(b) for b in blocks) > len(min(blocks, key=len))
    short = int(np.argmin([len(b) for b in blocks]))
    for index, block in enumerate(blocks):
        placeholders = [block if i == index else 2 for i in range(2)]
        local = LaneGroups(placeholders, len(whole)).lane_block(2 * index, 2 * index + 2)
        assert len(local) == len(whole)
        for step in (0, len(block) - 1, len(whole) - 1):
            got, want = local.batch(step), whole.batch(step)
            for key in got:
                np.testing.assert_array_equal(got[key], want[key][2 * index : 2 * index + 2])
    past = whole.batch(len(whole) - 1)  # the shorter group ran out: empty windows, reset, no loss
    lanes = slice(2 * short, 2 * short + 2)
    assert (past["start"][lanes] == -1).all() and past["reset"][lanes].all() and past["mask"][lanes].sum() == 0
    with pytest.raises(DataValidationError, match=r"a lane block must start and stop at group edges \[0, 2, 4\]; got \(1, 3\)"):
        whole.lane_block(1, 3)
    with pytest.raises(DataValidationError, match="lanes of another process \\(2 lanes\\) cannot be read here"):
        LaneGroups([blocks[0], 2]).batch(0)
    with pytest.raises(DataValidationError, match="steps must be at least the longest group's"):
        LaneGroups(blocks, steps=1)
