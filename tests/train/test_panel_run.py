"""One model over a store's panel: calendar split, sessions, per-series scaling, time targets.

A small generated store (three quote series, five trading days of 16 hours each, so five
sessions per series split at the overnight gap) is trained end to end; a poisoned copy (every
price at or after `train_until` changed) shows that nothing of training reads past the split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from longstm.data.features import FeaturePipeline
from longstm.data.panel import CalendarSplit, PanelDataset
from longstm.data.store import Store, convert
from longstm.data.targets import event_targets, time_targets
from longstm.errors import ConfigError, DataValidationError
from longstm.train.config import config_from_dict
from longstm.train.panel import predict_panel
from longstm.train.run import evaluate_run, load_panel, part_lanes, predict_run, train_from_config
from longstm.train.rundir import RunDir

TRAIN_UNTIL, VAL_UNTIL = "2024-01-03T12:00", "2024-01-04T12:00"
SINGLE_SERIES_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "lstm_lags"
HORIZONS = ["10s", "60s"]


def make_quote_store(root, poison: bool = False, ticks_per_day: int = 1200):
    """Three series of irregular quotes, 00:00-16:00 UTC on five days; with `poison`, every
    price at or after `TRAIN_UNTIL` is multiplied by a random factor in [1, 1.5)."""
    frames = []
    for k, name in enumerate(("a", "b", "c")):
        rng = np.random.default_rng(k)
        days = [pd.Timestamp("2024-01-01") + pd.Timedelta(days=d) + pd.to_timedelta(np.sort(rng.uniform(0, 16 * 3600, ticks_per_day)), unit="s")
                for d in range(5)]
        stamps = pd.DatetimeIndex(np.concatenate(days))
        mid = 1.0 + 0.1 * k + np.cumsum(rng.normal(0, 1e-4 * (k + 1), len(stamps)))
        half_spread = rng.uniform(0.5e-5, 1.5e-5, len(stamps))
        factor = np.where(stamps >= pd.Timestamp(TRAIN_UNTIL), 1 + rng.uniform(0, 0.5, len(stamps)), 1.0) if poison else 1.0
        frames.append(pd.DataFrame({"unique_id": name, "ds": stamps, "bid": (mid - half_spread) * factor, "ask": (mid + half_spread) * factor}))
    root.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_parquet(root / "quotes.parquet")
    convert([root / "quotes.parquet"], root / "store")
    return root / "store"


def panel_config(store, **data):
    raw = {
        "seed": 0,
        "data": {"path": store if isinstance(store, list) else str(store), "split": {"train_until": TRAIN_UNTIL, "val_until": VAL_UNTIL}, "time_targets": HORIZONS, **data},
        "pipeline": [{"kind": "quote", "window": 20}],
        "model": {"units": 8},
        "train": {"lanes": 4, "k1": 32, "k2": 32, "epochs": 2},
        "eval": {"lanes": 2, "warmup": 48},
    }
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("panel")
    return make_quote_store(root / "clean"), make_quote_store(root / "poisoned", poison=True)


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "ticks"
    scores = train_from_config(panel_config(stores[0]), run_dir, progress=False)
    return run_dir, scores


def test_train_evaluate_and_predict_a_panel_end_to_end(trained, stores):
    run_dir, scores = trained
    assert set(scores) == {"val", "test"} and all(np.isfinite(s["mse"]) for s in scores.values())
    assert evaluate_run(run_dir) == scores  # the saved run gives back the same scores
    record = RunDir(run_dir).read_data_record()
    assert record["store"] == str(stores[0].resolve()) and record["series"] == ["a", "b", "c"]
    assert record["split"] == {"train_until": TRAIN_UNTIL, "val_until": VAL_UNTIL}
    assert record["targets"] == ["mid_log_return_10s", "mid_log_return_60s"] and record["time_targets"] == HORIZONS
    assert set(record["scaler"]) == {"a", "b", "c"} and record["feature_pipeline"]["pipeline"][0]["kind"] == "quote"
    frame = predict_panel(run_dir, part="test")
    assert list(frame.columns[:5]) == ["series", "row", "timestamp", "bid", "ask"]
    assert set(frame["series"]) == {"a", "b", "c"} and not frame.duplicated(["series", "row"]).any()
    assert (frame["timestamp"] >= pd.Timestamp(VAL_UNTIL, tz="UTC")).all()
    assert np.isfinite(frame.filter(like="pred_").to_numpy()).all()
    store = Store(stores[0])
    for name, rows in frame.groupby("series"):
        stamps = store.series(name).timestamps()
        quotes = store.series(name).read(columns=["bid", "ask"])
        mid = quotes.mean(axis=1)
        # every test row is forecast, also where a target is not valid (near a session's end)
        np.testing.assert_array_equal(rows["row"], np.arange(record["rows"][name][1], len(stamps)))
        np.testing.assert_array_equal(rows[["bid", "ask"]].to_numpy(), quotes[rows["row"]])
        # a true value is the as-of log return of the mid from the raw quotes, in its own units, where
        # t + Δ is at or before the last tick of t's session (a day, 00:00-16:00); NaN (not scored) past it
        day = stamps[rows["row"]] // (86400 * 10**9)
        last_tick = {d: stamps[stamps // (86400 * 10**9) == d].max() for d in np.unique(day)}
        for horizon in HORIZONS:
            target_time = stamps[rows["row"]] + pd.Timedelta(horizon).value
            valid = target_time <= np.array([last_tick[d] for d in day])
            truth = rows[f"true_mid_log_return_{horizon}"].to_numpy()
            assert 0 < (~valid).sum() < len(valid) and np.array_equal(np.isfinite(truth), valid)
            later = np.searchsorted(stamps, target_time[valid], side="right") - 1
            np.testing.assert_allclose(truth[valid], np.log(mid[later] / mid[rows["row"].to_numpy()[valid]]), rtol=1e-5, atol=1e-9)


def test_nothing_of_training_reads_a_row_at_or_after_the_split_instant(stores, tmp_path):
    clean, poisoned = (load_panel(panel_config(store)) for store in stores)
    for name in ("a", "b", "c"):
        for a, b in zip(clean.scaler[name], poisoned.scaler[name]):
            np.testing.assert_array_equal(a, b)
    config = panel_config(stores[0])
    train_a, train_b = part_lanes(config, clean, "train"), part_lanes(config, poisoned, "train")
    assert len(train_a) == len(train_b)
    for step in range(len(train_a)):
        batch_a, batch_b = train_a.batch(step), train_b.batch(step)
        for key in ("x", "y", "mask", "reset", "start"):
            np.testing.assert_array_equal(batch_a[key], batch_b[key])
    # the poison is visible once a part reads past the split
    assert not np.array_equal(part_lanes(config, clean, "val").batch(0)["x"], part_lanes(config, poisoned, "val").batch(0)["x"])
    weights = []
    for store, name in zip(stores, ("clean", "poisoned")):
        config = panel_config(store)
        config.train.epochs = 1
        train_from_config(config, tmp_path / name, progress=False)
        with np.load(RunDir(tmp_path / name).weights("best")) as saved:
            weights.append({key: saved[key] for key in saved.files})
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])


def test_features_and_targets_equal_the_batch_pipeline_over_each_session(stores):
    data = load_panel(panel_config(stores[0], scale=False))
    pipeline = FeaturePipeline([{"kind": "quote", "window": 20}], ["bid", "ask"])
    train = data.rows("train")
    assert len(train.segments) == 3 * 3  # sessions on days 1, 2 and the morning of day 3, per series
    series = Store(stores[0]).series("b")
    index = train.pieces.index(next(p for p in train.pieces if p.series == "b"))
    offset = int(train.offsets[index])
    starts = train.segments[(train.segments >= offset) & (train.segments < train.offsets[index + 1])]
    whole = train[offset : int(train.offsets[index + 1])]  # one read across the sessions resets at each
    np.testing.assert_array_equal(whole, np.concatenate([train[int(a) : int(b)] for a, b in zip(starts, [*starts[1:], train.offsets[index + 1]])]))
    for start in starts:
        first = int(start) - offset
        stop = min(first + 1200, data.panel.bounds["b"][0])
        expected = pipeline.compute(series.read(first, stop, ["bid", "ask"]), series.timestamps(first, stop))
        # read in odd slices: every slice recomputes its features from the rows before it
        got = np.concatenate([train[a : min(a + 77, offset + stop)] for a in range(int(start), offset + stop, 77)])
        np.testing.assert_allclose(got[:, :4], expected, rtol=1e-5, atol=1e-5)
        values, valid = time_targets(series.timestamps(first, stop), series.read(first, stop, ["bid", "ask"]).mean(1),
                                     [10 * 10**9, 60 * 10**9])
        np.testing.assert_allclose(got[:, 4:6], values, rtol=1e-5, atol=1e-9)
        np.testing.assert_array_equal(got[:, 6], valid.all(1))


def test_every_session_of_every_series_starts_with_a_state_reset(stores):
    config = panel_config(stores[0])
    data = load_panel(config)
    lanes = part_lanes(config, data, "train")
    reset_rows = {int(s) for step in range(len(lanes)) for s, r in zip(lanes.batch(step)["start"], lanes.batch(step)["reset"]) if r and s >= 0}
    assert {int(s) for s in lanes.segments} <= reset_rows
    rows = data.rows("train")
    for start in rows.segments:
        name, row = rows.locate(int(start))
        assert row in set(data.panel.sessions[name])  # a segment starts where a session starts


def test_scaling_per_series_or_pooled_and_series_weights(stores):
    per_series = load_panel(panel_config(stores[0]))
    pooled = load_panel(panel_config(stores[0], scaling="pooled"))
    target = per_series.target_columns[0]
    scales = [per_series.scaler[name][1][target] for name in "abc"]
    assert scales[0] < scales[1] < scales[2]  # series c moves three times as much as a
    np.testing.assert_array_equal(pooled.scaler["a"][1], pooled.scaler["c"][1])
    assert per_series.scaler["a"][0][target] == 0.0  # targets keep their sign: scaled, not centred
    weighted = load_panel(panel_config(stores[0], series_weights={"b": 0.0, "c": 2.5}))
    rows = weighted.rows("train")
    weight = rows[0 : len(rows)][:, -1]
    pieces = {p.series: (int(rows.offsets[i]), int(rows.offsets[i + 1])) for i, p in enumerate(rows.pieces)}
    assert set(np.unique(weight[slice(*pieces["b"])])) == {0.0}
    assert set(np.unique(weight[slice(*pieces["c"])])) == {0.0, 2.5}


def test_bad_panel_configs_are_named(stores, tmp_path):
    folder = stores[0].parent  # quotes.parquet and the store: raw sources, not a store
    with pytest.raises(ConfigError, match="longstm data convert"):  # only training converts raw sources
        load_panel(panel_config(folder))
    with pytest.raises(ConfigError, match="longstm data convert"):
        load_panel(panel_config(str(folder / "*.parquet")))
    with pytest.raises(ConfigError, match="'data.path' is a list of raw sources.*longstm data convert"):
        load_panel(panel_config([str(folder / "quotes.parquet")]))
    with pytest.raises(ConfigError, match="'data.path' as a list must hold file names"):
        config_from_dict({"data": {"path": [3]}})
    with pytest.raises(ConfigError, match="'data.tz' must be a table of path patterns"):
        panel_config(stores[0], tz={"fxcm_*": 5})
    with pytest.raises(ConfigError, match="a calendar split .* needs a store"):
        train_from_config(panel_config(folder / "quotes.parquet"), tmp_path / "r2", progress=False)
    with pytest.raises(ConfigError, match="set data.time_targets"):
        load_panel(panel_config(stores[0], time_targets=[]))
    with pytest.raises(ConfigError, match="'data.scaling' must be one of"):
        panel_config(stores[0], scaling="global")
    with pytest.raises(ConfigError, match="'data.time_targets' must be a positive duration.*'soon'"):
        panel_config(stores[0], time_targets=["10s", "soon"])
    with pytest.raises(ConfigError, match="series_weights names series \\['z'\\]"):
        load_panel(panel_config(stores[0], series_weights={"z": 1.0}))
    with pytest.raises(ConfigError, match="split.val_until must be a date"):
        panel_config(stores[0], split={"train_until": TRAIN_UNTIL, "val_until": "later"})
    config = panel_config(stores[0])
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))).data.split == config.data.split


def test_panel_and_single_series_forecasts_are_not_mixed_up(trained, stores):
    run_dir, _ = trained
    with pytest.raises(ConfigError, match="trained on the store .*predict_panel"):
        predict_run(run_dir, stores[0])
    with pytest.raises(ConfigError, match="not on a store; use predict_run"):
        predict_panel(SINGLE_SERIES_RUN)
    with pytest.raises(ConfigError, match="part must be one of"):
        predict_panel(run_dir, part="holdout")


def test_a_mid_that_is_not_positive_names_the_series_and_row(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=400, freq="min")
    bid = np.full(400, 1.0)
    bid[300:] = 0.0  # a test-part row (after 2024-01-01 05:00)
    frame = pd.DataFrame({"unique_id": "z", "ds": stamps, "bid": bid, "ask": bid})
    frame.to_parquet(tmp_path / "z.parquet")
    convert([tmp_path / "z.parquet"], tmp_path / "store")
    data = PanelDataset(tmp_path / "store", CalendarSplit("2024-01-01T03:00", "2024-01-01T04:00"), ["5min"])
    rows = data.rows("test")
    with pytest.raises(DataValidationError, match=r"series 'z' row 300: the mid of \['bid', 'ask'\] must be > 0"):
        rows[0 : len(rows)]


def test_event_targets_are_the_next_k_ticks_inside_the_stretch(stores):
    data = load_panel(panel_config(stores[0], scale=False, time_targets=["30s"], event_targets=[1, 5]))
    assert [data.column_names[i] for i in data.target_columns] == ["mid_log_return_30s", "mid_log_return_1ticks", "mid_log_return_5ticks"]
    train = data.rows("train")
    series = Store(stores[0]).series("c")
    index = [p.series for p in train.pieces].index("c")
    first, stop = int(train.offsets[index]), int(train.offsets[index + 1])
    last_session = int(train.segments[(train.segments >= first) & (train.segments < stop)].max()) - first
    got = train[first + last_session : stop]  # the session cut at train_until
    mid = series.read(last_session, stop - first, ["bid", "ask"]).mean(1)
    values, valid = event_targets(mid, [1, 5])
    np.testing.assert_allclose(got[:, 5:7], values, rtol=1e-6, atol=1e-12)
    assert got[-5:, -1].sum() == 0 and got[-6, -1] == 1  # the last 5 ticks before train_until have no 5-tick target
    with pytest.raises(ConfigError, match="'data.event_targets' must be a list of tick counts >= 1"):
        panel_config(stores[0], event_targets=[0])


def test_raw_sources_are_refused_with_the_one_convert_command_naming_the_tick_time_zones(stores, tmp_path):
    """Outside training (which converts them into its run) raw sources are refused with the
    command to run, and for vendor tick zips (local times) it names `--tz`."""
    import re
    import zipfile

    ticks = tmp_path / "ticks"
    (ticks / "fxcm_eurusd").mkdir(parents=True)
    with zipfile.ZipFile(ticks / "fxcm_eurusd" / "20140501_quote.zip", "w") as archive:
        archive.writestr("20140501_quote.csv", "0,1.1,1.2\n1000,1.1,1.2\n")
    message = f"'data.path' '{ticks}' is a folder or glob of raw sources; convert them into a store first: " \
              f"`longstm data convert {ticks} --out STORE --tz 'fxcm_eurusd=<zone>'  (tick zips hold local times"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_panel(panel_config(ticks))
    parquet = stores[0].parent / "quotes.parquet"  # a table: no --tz to name
    with pytest.raises(ConfigError, match=re.escape(f"needs a store; convert them into a store first: `longstm data convert {parquet} --out STORE` and set")):
        train_from_config(panel_config(parquet), tmp_path / "run", progress=False)


def test_training_converts_raw_sources_once_into_its_run_and_reuses_them(stores, trained, tmp_path, monkeypatch):
    """A glob of raw Parquet as data.path trains as the converted store does; the store lives in
    the run (the saved config names it) and a resumed run does not convert again."""
    glob = str(stores[0].parent / "*.parquet")
    run_dir = tmp_path / "raw"
    scores = train_from_config(panel_config(glob), run_dir, progress=False)
    assert RunDir(run_dir).read_config().data.path == str((run_dir / "store").resolve())
    for part in ("val", "test"):
        assert scores[part]["mse"] == pytest.approx(trained[1][part]["mse"], rel=1e-5)
    assert evaluate_run(run_dir) == scores
    import longstm.train.raw_sources as raw_sources

    monkeypatch.setattr(raw_sources, "convert", lambda *a, **k: pytest.fail("converted again"))
    train_from_config(panel_config(glob), run_dir, resume=True, progress=False)


def test_raw_tick_zips_need_their_time_zone_in_data_tz(tmp_path):
    import zipfile

    ticks = tmp_path / "ticks"
    (ticks / "fxcm_eurusd").mkdir(parents=True)
    with zipfile.ZipFile(ticks / "fxcm_eurusd" / "20140501_quote.zip", "w") as archive:
        archive.writestr("20140501_quote.csv", "0,1.1,1.2\n1000,1.1,1.2\n")
    with pytest.raises(ConfigError, match=r"data.tz must name the zone of fxcm_eurusd, e.g. data.tz = \{ \"fxcm_eurusd\" = "):
        train_from_config(panel_config(ticks), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "store").exists()
