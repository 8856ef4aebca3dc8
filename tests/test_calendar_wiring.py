"""A calendar model's config gets its boundary flags from the data layer, end to end.

`longstm train` with `[model] name = "calendar_lstm"` on a CSV with timestamps and on a
generated tick store appends the `calendar_boundaries` flags as the model's last inputs (never
scaled, never targets), saves them in the run's pipeline, and `longstm predict` and the
`StreamingPredictor` (flags computed tick by tick, per series) reproduce the batch model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from longstm.bench import calendar_ticks, speed
from longstm.bench.calendar_ticks import CALENDAR_LEVELS, sequential_depth, tick_chunk_inputs
from longstm.cli import main
from longstm.data.store import Store, convert
from longstm.errors import ConfigError
from longstm.serve import StreamingPredictor
from longstm.serve.export import export_predictor
from longstm.train.calendar_data import model_pipeline
from longstm.train.carried import CompiledModel, carried_outputs
from longstm.train.config import config_from_dict, load_config
from longstm.train.panel import predict_panel
from longstm.train.run import load_data, load_panel, load_run, train_from_config
from longstm.train.rundir import RunDir
from tests.conftest import shared_file

SECOND = 10**9
LEVELS = [{"units": 8, "every": "1s"}, {"units": 8, "every": "10s"}, {"units": 8}]
FLAGS = ["boundary_0", "boundary_1"]


def reference_flags(stamps: np.ndarray, spans_ns: list[int]) -> np.ndarray:
    """Flags by hand: a new floor by the span, or the first row; higher levels OR-ed downwards."""
    flags = np.stack([np.r_[True, np.diff(stamps // span) != 0] for span in spans_ns], axis=1)
    return np.flip(np.logical_or.accumulate(np.flip(flags, axis=1), axis=1), axis=1).astype(np.float64)


def write_ticks_csv(path, rows: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Ticks 50-200 ms apart (200 ms the most common spacing: no gaps, one segment), a random walk."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([50, 100, 200], p=[0.3, 0.3, 0.4], size=rows) * 10**6
    stamps = np.datetime64("2024-01-02T09:00:00", "ns").astype(np.int64) + np.cumsum(steps)
    price = 100 + np.cumsum(rng.normal(0, 0.01, rows))
    frame = pd.DataFrame({"timestamp": pd.to_datetime(stamps), "price": price, "volume": rng.integers(1, 9, rows).astype(float)})
    frame.to_csv(path, index=False)
    return frame


def csv_config(path, **model) -> dict:
    return {
        "seed": 0,
        "data": {"path": str(path), "targets": ["price"], "split": [0.6, 0.2, 0.2]},
        "model": {"name": "calendar_lstm", "units": 8, "options": {"levels": LEVELS, "mode": "parallel"}, **model},
        "train": {"lanes": 4, "k1": 32, "k2": 32, "epochs": 1},
        "eval": {"lanes": 2, "warmup": 32},
    }


def write_config(path, raw: dict):
    path.write_text(config_from_dict(raw).to_toml())
    return path


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calendar_csv")
    frame = write_ticks_csv(root / "ticks.csv")
    config = write_config(root / "calendar.toml", csv_config(root / "ticks.csv"))
    assert main(["train", "--config", str(config), "--run-dir", str(root / "run")]) == 0
    return root, frame


def test_a_csv_run_reads_unscaled_flags_last_and_saves_them_in_its_pipeline(csv_run):
    root, frame = csv_run
    record = RunDir(root / "run").read_data_record()
    assert record["columns"] == ["price", "volume", *FLAGS]
    assert record["features"] == ["price", "volume", *FLAGS] and record["targets"] == ["price"]
    assert record["feature_pipeline"]["pipeline"] == [
        {"kind": "raw"}, {"kind": "calendar_boundaries", "levels": [{"every": "1s"}, {"every": "10s"}]}]
    assert record["scaler"]["mean"][2:] == [0.0, 0.0] and record["scaler"]["scale"][2:] == [1.0, 1.0]
    assert record["scaler"]["scale"][0] != 1.0  # the data's own columns are scaled
    config, data, _ = load_run(root / "run")
    stamps = frame["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    expected = reference_flags(stamps, [SECOND, 10 * SECOND])
    np.testing.assert_array_equal(data.series.values[:, 2:], expected)
    assert 100 < expected[:, 0].sum() < 300 and 10 < expected[:, 1].sum() < 40  # ~200 s of ticks
    # What the model reads: the scaled features, then the flags exactly as 0/1.
    scaled = (data.series.values - data.mean) / data.std
    np.testing.assert_array_equal(scaled[:, data.feature_columns][:, -2:], expected)


def test_predict_and_the_streaming_predictor_reproduce_the_batch_model(csv_run):
    root, frame = csv_run
    assert main(["predict", str(root / "run"), "--data", str(root / "ticks.csv"), "--out", str(root / "pred.csv")]) == 0
    assert len(pd.read_csv(root / "pred.csv")) > 0
    config, data, trainer = load_run(root / "run")
    scaled = ((data.series.values - data.mean) / data.std)[:, data.feature_columns].astype(np.float32)
    rows = np.arange(len(scaled))
    batch = carried_outputs(CompiledModel(trainer.model), scaled, [0], rows, chunk=config.train.k2)[:, 0]
    batch = batch * data.std[0] + data.mean[0]
    predictor = StreamingPredictor.from_run(root / "run")
    streamed = predictor.update_many(frame)  # a DataFrame: timestamps parsed, flags computed per tick
    np.testing.assert_allclose(streamed[:, 0], batch, rtol=1e-5, atol=1e-5 * float(data.std[0]))
    # The same tick by tick, after a restart from a state saved in the middle.
    predictor = StreamingPredictor.from_run(root / "run")
    predictor.update_many(frame.iloc[:700])
    predictor.save_state(root / "state.npz")
    again = StreamingPredictor.from_run(root / "run")
    again.restore_state(root / "state.npz")
    ticks = [again.update(frame.iloc[[i]]).reshape(-1)[0] for i in range(700, 760)]
    np.testing.assert_allclose(ticks, batch[700:760], rtol=1e-5, atol=1e-5 * float(data.std[0]))


def test_an_exported_calendar_model_computes_its_flags_from_the_saved_pipeline(csv_run):
    root, frame = csv_run
    expected = StreamingPredictor.from_run(root / "run").update_many(frame.iloc[:300])
    path = export_predictor(StreamingPredictor.from_run(root / "run"), root / "calendar.keras", "keras")
    loaded = StreamingPredictor.from_saved(path)
    assert loaded.feature_pipeline.output_columns[-2:] == FLAGS
    np.testing.assert_allclose(loaded.update_many(frame.iloc[:300]), expected, rtol=1e-6, atol=1e-7)


def test_user_features_keep_the_flags_last_and_bad_levels_name_the_key(csv_run, tmp_path):
    root, frame = csv_run
    raw = csv_config(root / "ticks.csv")
    raw["data"]["features"] = ["boundary_1", "price"]  # flags named anywhere still come last, in level order
    data = load_data(config_from_dict(raw))
    assert [data.column_names[i] for i in data.feature_columns] == ["price", *FLAGS]
    raw["pipeline"] = [{"kind": "log_return", "columns": ["price"]}]
    raw["data"].update(features=[], targets=["price_log_return"])
    config = config_from_dict(raw)
    assert model_pipeline(config) == [{"kind": "log_return", "columns": ["price"]},
                                      {"kind": "calendar_boundaries", "levels": [{"every": "1s"}, {"every": "10s"}]}]
    assert load_data(config).column_names == ["price_log_return", *FLAGS]
    # No timestamps: a level cut by time is one line naming it.
    frame.drop(columns=["timestamp"]).to_csv(tmp_path / "plain.csv", index=False)
    with pytest.raises(ConfigError, match=r"model.options.levels\[0\].every = '1s' cuts groups by time, and .*plain.csv has no "
                                          r"timestamp column; use every_events"):
        load_data(config_from_dict(csv_config(tmp_path / "plain.csv")))
    events = csv_config(tmp_path / "plain.csv")
    events["model"]["options"]["levels"] = [{"units": 8, "every_events": 4}, {"units": 8, "every_events": 16}, {"units": 8}]
    data = load_data(config_from_dict(events))
    np.testing.assert_array_equal(data.series.values[:8, 2:], [[1, 1], [0, 0], [0, 0], [0, 0], [1, 0], [0, 0], [0, 0], [0, 0]])
    for levels, message in (
        ([{"units": 8, "every": "1x"}, {"units": 8}], r"model.options: levels\[0\].every must be a fixed positive span .* got '1x'"),
        ([{"units": 8, "every": "1s", "every_events": 4}, {"units": 8}], r"model.options: levels\[0\] needs exactly one of every, every_events, column"),
        ([{"units": 8}], r"model.options.levels must be a list of at least two tables"),
    ):
        bad = csv_config(root / "ticks.csv")
        bad["model"]["options"]["levels"] = levels
        with pytest.raises(ConfigError, match=message):  # when the config is read, before any data
            config_from_dict(bad)


# ---- a tick store ---------------------------------------------------------------------------

TRAIN_UNTIL, VAL_UNTIL = "2024-01-02", "2024-01-03"


def make_dense_store(root):
    """Two quote series, three days of 500 ticks over 09:00-09:20 UTC (about 2.4 s apart): a
    session per day (the overnight gap), so train, validation and test are a day each."""
    frames = []
    for k, name in enumerate(("a", "b")):
        rng = np.random.default_rng(10 + k)
        days = [pd.Timestamp(f"2024-01-0{d + 1} 09:00") + pd.to_timedelta(np.sort(rng.uniform(0, 1200, 500)).round(1), unit="s")
                for d in range(3)]
        stamps = pd.DatetimeIndex(np.concatenate(days))
        mid = 1.1 + 0.1 * k + np.cumsum(rng.normal(0, 1e-4, len(stamps)))
        frames.append(pd.DataFrame({"unique_id": name, "ds": stamps, "bid": mid - 1e-5, "ask": mid + 1e-5}))
    root.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_parquet(root / "quotes.parquet")
    convert([root / "quotes.parquet"], root / "store")
    return root / "store"


def store_config(store, levels) -> dict:
    return {
        "seed": 0,
        "data": {"path": str(store), "split": {"train_until": TRAIN_UNTIL, "val_until": VAL_UNTIL}, "time_targets": ["10s"]},
        "pipeline": [{"kind": "quote", "window": 20}],
        "model": {"name": "calendar_lstm", "units": 8, "options": {"levels": levels, "mode": "parallel"}},
        "train": {"lanes": 4, "k1": 32, "k2": 32, "epochs": 1},
        "eval": {"lanes": 2, "warmup": 48},
    }


@pytest.fixture(scope="module")
def store_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calendar_store")
    store = make_dense_store(root / "data")
    levels = [{"units": 8, "every": "5s"}, {"units": 8, "every": "1min"}, {"units": 8}]
    config = write_config(root / "calendar.toml", store_config(store, levels))
    assert main(["train", "--config", str(config), "--run-dir", str(root / "run")]) == 0
    return root / "run", store


def test_a_store_run_appends_unscaled_flags_for_every_series(store_run):
    run, store = store_run
    record = RunDir(run).read_data_record()
    assert record["features"] == ["mid_return_bp", "spread_bp", "log_dt", "log_tick_rate", *FLAGS]
    assert record["feature_pipeline"]["pipeline"][-1] == {"kind": "calendar_boundaries", "levels": [{"every": "5s"}, {"every": "1min"}]}
    for name in ("a", "b"):
        scaler = record["scaler"][name]
        flags = [scaler["columns"].index(flag) for flag in FLAGS]
        assert [scaler["mean"][i] for i in flags] == [0.0, 0.0] and [scaler["scale"][i] for i in flags] == [1.0, 1.0]
    # The flags the panel feeds the model, read a block at a time: the hand-made ones of each session.
    config, data, _ = load_run(run)
    rows = data.rows("test")
    values = rows[0 : len(rows)]
    for index, piece in enumerate(rows.pieces):
        first, stop = int(rows.offsets[index]), int(rows.offsets[index + 1])
        stamps = Store(store).series(piece.series).timestamps(piece.start, piece.start + stop - first)
        expected = reference_flags(stamps, [5 * SECOND, 60 * SECOND])
        np.testing.assert_array_equal(values[first:stop][:, [rows.columns.index(f) for f in FLAGS]], expected)
    # Lanes read a few rows at a time from mid-session: the same flags (row t - 1 is read with them).
    blocks = np.concatenate([rows[a : min(a + 37, len(rows))] for a in range(0, len(rows), 37)])
    np.testing.assert_array_equal(blocks, values)


def test_a_store_run_streams_each_series_with_its_own_flags(store_run):
    run, store = store_run
    expected = predict_panel(run, "test")
    predictor = StreamingPredictor.from_run(run, engine="tf")
    frames = []
    for name in predictor.instruments:
        series = Store(store).series(name)
        stamps = series.timestamps(0, len(series))
        first = int(np.searchsorted(stamps, pd.Timestamp(VAL_UNTIL).value))
        frame = pd.DataFrame(series.read(first, len(series), series.columns), columns=series.columns)
        frames.append(frame.assign(timestamp=pd.to_datetime(stamps[first:], utc=True), row=np.arange(first, len(series)), series=name))
    feed = pd.concat(frames).sort_values("timestamp", kind="stable")  # the two series interleaved, as live
    got = predictor.update_many(feed[["series", "timestamp", "bid", "ask"]])
    for name in predictor.instruments:
        mine = (feed["series"] == name).to_numpy()
        want = expected[expected["series"] == name].set_index("row")["pred_mid_log_return_10s"]
        np.testing.assert_allclose(pd.Series(got[mine, 0], index=feed["row"][mine]).loc[want.index], want, rtol=1e-5, atol=1e-7)


def test_every_events_on_a_store_counts_from_the_session_start(store_run):
    """The panel reads a session a block at a time from its middle; an event count must still
    run from the session's first row, as over the whole session."""
    _, store = store_run
    levels = [{"units": 8, "every_events": 7}, {"units": 8, "every": "1min"}, {"units": 8}]
    data = load_panel(config_from_dict(store_config(store, levels)))
    rows = data.rows("test")
    values = rows[0 : len(rows)]
    columns = [rows.columns.index(flag) for flag in FLAGS]
    for index, piece in enumerate(rows.pieces):
        first, stop = int(rows.offsets[index]), int(rows.offsets[index + 1])
        sessions = data.panel.sessions[piece.series]
        session = int(sessions[np.searchsorted(sessions, piece.start, side="right") - 1])
        stamps = Store(store).series(piece.series).timestamps(session, piece.start + stop - first)
        minute = np.r_[True, np.diff(stamps // (60 * SECOND)) != 0]
        counted = np.arange(len(stamps)) % 7 == 0
        expected = np.stack([counted | minute, minute], axis=1).astype(np.float64)[piece.start - session :]
        np.testing.assert_array_equal(values[first:stop][:, columns], expected)
    # Lanes read 37 rows at a time, from the middle of sessions: the same flags.
    blocks = np.concatenate([rows[a : min(a + 37, len(rows))] for a in range(0, len(rows), 37)])
    np.testing.assert_array_equal(blocks, values)


def test_the_shipped_tick_config_is_a_calendar_model():
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "ticks_calendar.toml")
    assert config.model.name == "calendar_lstm"
    assert model_pipeline(config)[-1] == {"kind": "calendar_boundaries", "levels": [{"every": "1s"}, {"every": "1min"}]}


# ---- the benchmarks -----------------------------------------------------------------------


def test_sequential_depth_and_event_chunks_for_the_speed_bench():
    flags = np.zeros((2, 10, 2))
    flags[0, [0, 3, 4, 8], 0] = 1  # groups of 3, 1, 4, 2 rows
    flags[0, [0, 8], 1] = 1
    flags[1, [0, 5], 0] = 1
    flags[1, [0], 1] = 1
    assert sequential_depth(flags) == {"longest_group": 5, "groups": [4, 2], "depth": 11}
    levels = CALENDAR_LEVELS["calendar_events64"](64)
    chunk = tick_chunk_inputs(levels, lanes=2, steps=200, features=4)  # counted groups: no tick files needed
    assert chunk.shape == (2, 200, 4) and chunk.dtype == np.float32
    np.testing.assert_array_equal(np.flatnonzero(chunk[1, :, -1]), [0, 64, 128, 192])
    assert sequential_depth(chunk[..., -1:])["depth"] == 64 + 4


def test_bench_speed_skips_calendar_models_on_tick_times_without_the_tick_files(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(calendar_ticks, "TICK_SERIES", tmp_path / "absent")
    monkeypatch.setattr(speed, "prepare_train_step", lambda model, lanes, steps, features, chunk=None: lambda: 0.01)
    rows = speed.run_speed(["calendar_1s_1min", "calendar_events64"], [128], lanes=2, repeats=1)
    assert [row["model"] for row in rows] == ["keras_lstm", "calendar_events64"]
    assert rows[1]["sequential_depth"] == 64 + 2 and rows[0]["sequential_depth"] == 128
    assert f"bench speed: skipping calendar_1s_1min: no tick files under {tmp_path / 'absent'}" in capsys.readouterr().err


def test_speed_bench_chunks_carry_flags_of_real_tick_times():
    ticks = shared_file("ticks/oanda_eurusd/20140501_quote.zip").parent
    assert ticks == calendar_ticks.TICK_SERIES
    stamps = calendar_ticks.real_tick_timestamps(2 * 512)
    assert stamps.dtype == np.int64 and (np.diff(stamps) >= 0).all()
    assert pd.Timestamp(stamps[0]).date().isoformat() == "2014-05-01"
    chunk = tick_chunk_inputs(CALENDAR_LEVELS["calendar_1s_1min"](64), lanes=2, steps=512, features=5)
    expected = np.stack([reference_flags(lane, [SECOND, 60 * SECOND]) for lane in stamps.reshape(2, 512)])
    np.testing.assert_array_equal(chunk[..., -2:], expected)
