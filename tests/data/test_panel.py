"""A panel over a store: calendar splits with exclusive bounds, sessions as segments, per-series
train-only scaling, lanes over many series — and no leakage past the split instant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.data.lanes import LaneWindows
from longstm.data.panel import CalendarSplit, Panel
from longstm.data.store import Store, convert
from longstm.errors import ConfigError, DataValidationError

TRAIN_UNTIL, VAL_UNTIL = "2024-01-03", "2024-01-04"


def make_panel_store(tmp_path, poison_after_train: float | None = None):
    """Three series of minute rows over 5 days with a 6-hour overnight gap; rows at or after
    `TRAIN_UNTIL` get `poison_after_train` added when given (to make leakage visible)."""
    frames = []
    for k, name in enumerate(("a", "b", "c")):
        stamps = pd.date_range("2024-01-01", "2024-01-06", freq="min", inclusive="left")
        stamps = stamps[(stamps.hour < 18)]  # trading 00:00-18:00 UTC: sessions split at the 6-hour gap
        values = np.cumsum(np.random.default_rng(k).normal(0, 1, (len(stamps), 2)), axis=0) + 100 * (k + 1)
        if poison_after_train is not None:
            values[stamps >= pd.Timestamp(TRAIN_UNTIL)] += poison_after_train
        frames.append(pd.DataFrame({"unique_id": name, "ds": stamps, "x": values[:, 0], "y": values[:, 1]}))
    tmp_path.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_parquet(tmp_path / "panel.parquet")
    convert([tmp_path / "panel.parquet"], tmp_path / "store")
    return Store(tmp_path / "store")


def test_calendar_bounds_are_exclusive_and_the_same_instants_for_every_series(tmp_path):
    store = make_panel_store(tmp_path)
    panel = Panel(store, ["x", "y"], CalendarSplit(TRAIN_UNTIL, VAL_UNTIL))
    train_until, val_until = CalendarSplit(TRAIN_UNTIL, VAL_UNTIL).bounds
    for name in panel.names:
        stamps = store.series(name).timestamps()
        train_end, val_end, end = panel.bounds[name]
        assert stamps[train_end - 1] < train_until <= stamps[train_end]
        assert stamps[val_end - 1] < val_until <= stamps[val_end]
        assert end == len(stamps)
    # two overnight gaps before TRAIN_UNTIL: three train sessions per series, each a segment
    train = panel.rows("train")
    assert len(train.segments) == 3 * 2 and train.shape == (3 * 2 * 18 * 60, 2)
    assert train.locate(18 * 60 * 2 + 5) == ("b", 5)


def test_no_scaler_statistic_or_training_target_reads_past_the_split(tmp_path):
    clean = Panel(make_panel_store(tmp_path / "clean"), ["x", "y"], CalendarSplit(TRAIN_UNTIL, VAL_UNTIL))
    poisoned = Panel(make_panel_store(tmp_path / "poisoned", 1e6), ["x", "y"], CalendarSplit(TRAIN_UNTIL, VAL_UNTIL))
    for per_series in (True, False):
        a, b = clean.fit_scaler(per_series), poisoned.fit_scaler(per_series)
        for name in clean.names:
            np.testing.assert_array_equal(a[name][0], b[name][0])
            np.testing.assert_array_equal(a[name][1], b[name][1])
    scaler = poisoned.fit_scaler()
    train = poisoned.rows("train", scaler)
    lanes = LaneWindows(train, lanes=4, k1=32, k2=48, target_columns=[1], offset=5, horizon=3, segments=train.segments)
    for step in range(len(lanes)):
        batch = lanes.batch(step)
        assert np.abs(batch["x"]).max() < 100 and np.abs(batch["y"][batch["mask"] > 0]).max() < 100


def test_per_series_scaling_standardises_each_series_on_its_training_rows(tmp_path):
    panel = Panel(make_panel_store(tmp_path), ["x", "y"], CalendarSplit(TRAIN_UNTIL, VAL_UNTIL))
    train = panel.rows("train", panel.fit_scaler(per_series=True))
    values = train[0 : len(train)]
    for index, piece in enumerate(train.pieces):
        block = values[train.offsets[index] : train.offsets[index + 1]]
        np.testing.assert_allclose(block.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(block.std(0), 1, atol=1e-4)
    pooled = panel.rows("train", panel.fit_scaler(per_series=False))[0 : len(train)]
    np.testing.assert_allclose(pooled.mean(0), 0, atol=1e-4)
    assert abs(pooled[: train.offsets[1]].mean()) > 0.5  # series differ in level once pooled


def test_validation_pieces_warm_up_on_the_past_with_the_loss_masked(tmp_path):
    panel = Panel(make_panel_store(tmp_path), ["x", "y"], CalendarSplit(TRAIN_UNTIL, VAL_UNTIL))
    val = panel.rows("val", warmup=30)
    for piece in val.pieces:
        assert piece.loss_from - piece.start == 30
    lanes = LaneWindows(val, lanes=3, k1=16, k2=16, target_columns=[0], segments=val.segments, burn_in=30)
    counted = np.zeros(len(val), bool)
    for step in range(len(lanes)):
        batch = lanes.batch(step)
        for lane in range(3):
            start = batch["start"][lane]
            if start >= 0:
                counted[start + np.flatnonzero(batch["mask"][lane] > 0)] = True
    for index, piece in enumerate(val.pieces):
        first = val.offsets[index]
        assert not counted[first : first + 30].any()  # the warm-up rows belong to the training part


def test_lanes_over_the_panel_equal_lanes_over_the_materialised_rows(tmp_path):
    panel = Panel(make_panel_store(tmp_path), ["x", "y"], CalendarSplit(TRAIN_UNTIL, VAL_UNTIL))
    train = panel.rows("train", panel.fit_scaler())
    dense = train[0 : len(train)]
    a = LaneWindows(train, lanes=5, k1=40, k2=64, target_columns=[0, 1], segments=train.segments, burn_in=8)
    b = LaneWindows(dense, lanes=5, k1=40, k2=64, target_columns=[0, 1], segments=train.segments, burn_in=8)
    assert len(a) == len(b)
    for step in (0, len(a) // 2, len(a) - 1):
        for key, value in a.batch(step).items():
            np.testing.assert_array_equal(value, b.batch(step)[key])


def test_bad_splits_are_named(tmp_path):
    store = make_panel_store(tmp_path)
    with pytest.raises(ConfigError, match="must not be after val_until"):
        CalendarSplit("2024-01-04", "2024-01-03")
    with pytest.raises(ConfigError, match="split.train_until must be a date"):
        CalendarSplit("soon", "2024-01-03")
    with pytest.raises(ConfigError, match="split must be"):
        CalendarSplit.from_dict({"train_until": "2024-01-02"})
    with pytest.raises(DataValidationError, match="no series has a row before train_until"):
        Panel(store, ["x"], CalendarSplit("2023-01-01", "2023-02-01"))
    with pytest.raises(DataValidationError, match="has no column"):
        Panel(store, ["volume"], CalendarSplit(TRAIN_UNTIL, VAL_UNTIL))
