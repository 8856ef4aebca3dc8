"""A run trained on a store's panel streams one state per series, each with its series' scaler,
and gives the numbers `predict_panel` (the carried-state evaluation pass) gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.data.store import Store
from longstm.errors import ConfigError
from longstm.serve import StreamingPredictor
from tests.train.test_panel_run import make_quote_store, panel_config

LAST_DAY = pd.Timestamp("2024-01-05")  # a whole session inside the test part: it starts from a reset state


@pytest.fixture(scope="module")
def panel_run(tmp_path_factory):
    from longstm.train.run import train_from_config

    root = tmp_path_factory.mktemp("panel_serving")
    store = make_quote_store(root / "data", ticks_per_day=300)
    config = panel_config(store)
    config.train.epochs = 1
    train_from_config(config, root / "run")
    return root / "run", store


def _last_session(store, name):
    """One series' rows of the last day: a DataFrame of its columns and a tz-aware `timestamp`."""
    series = Store(store).series(name)
    stamps = series.timestamps(0, len(series))
    first = int(np.searchsorted(stamps, LAST_DAY.value))
    frame = pd.DataFrame(series.read(first, len(series), series.columns), columns=series.columns)
    frame["timestamp"] = pd.to_datetime(stamps[first:], utc=True)
    frame["row"] = np.arange(first, len(series))
    return frame


@pytest.mark.parametrize("engine", ["numpy", "tf"])
def test_a_panel_run_streams_each_series_in_its_own_state_with_its_own_scaler(panel_run, engine):
    from longstm.train.panel import predict_panel

    run, store = panel_run
    expected = predict_panel(run, "test")
    expected = expected[expected["timestamp"] >= LAST_DAY.tz_localize("UTC")]
    predictor = StreamingPredictor.from_run(run, engine=engine)
    assert predictor.n_instruments == 3 and predictor.instruments == ["a", "b", "c"]
    targets = ["mid_log_return_10s", "mid_log_return_60s"]
    # The three series' rows interleaved in time order, as a live feed delivers them.
    frames = {name: _last_session(store, name) for name in predictor.instruments}
    feed = pd.concat([frame.assign(series=name) for name, frame in frames.items()]).sort_values("timestamp", kind="stable")
    got = predictor.update_many(feed.drop(columns=["__index_level_0__"]))  # an input column no feature reads
    for name in predictor.instruments:
        mine = (feed["series"] == name).to_numpy()
        want = expected[expected["series"] == name].set_index("row")
        assert len(want) == mine.sum()  # every row of the day is forecast, its targets valid or not
        forecasts = pd.DataFrame(got[mine], columns=targets, index=feed["row"][mine])
        np.testing.assert_allclose(
            forecasts.loc[want.index].to_numpy(), want[[f"pred_{t}" for t in targets]].to_numpy(), rtol=1e-4, atol=1e-7, err_msg=name
        )
    # One series alone: a one-lane predictor with that series' scaler gives its numbers.
    alone = StreamingPredictor.from_run(run, engine=engine, instruments=["b"])
    np.testing.assert_allclose(alone.update_many(frames["b"]), got[(feed["series"] == "b").to_numpy()], atol=1e-6)
    with pytest.raises(ConfigError, match=r"instruments \['eurusd'\] are not series of this run; it was trained on \['a', 'b', 'c'\]"):
        StreamingPredictor.from_run(run, instruments=["eurusd"])


def test_follow_routes_a_panel_runs_rows_by_series_and_update_instrument_takes_numpy_rows(panel_run, tmp_path):
    import io

    from longstm.errors import DataValidationError
    from longstm.serve import follow_stream

    run, store = panel_run
    frames = {name: _last_session(store, name).iloc[:40] for name in ("a", "b", "c")}
    feed = pd.concat([frame.assign(series=name) for name, frame in frames.items()]).sort_values("timestamp", kind="stable")
    feed = feed[["series", "timestamp", "bid", "ask"]].reset_index(drop=True)
    expected = StreamingPredictor.from_run(run).update_many(feed)
    source = tmp_path / "live.csv"
    feed.to_csv(source, index=False)
    predictor = StreamingPredictor.from_run(run)
    out = io.StringIO()
    report = follow_stream(predictor, source, out, target_names=["f10", "f60"], idle_timeout=0)
    assert report.forecasts == len(feed) and list(predictor.ticks) == [40, 40, 40]
    written = pd.read_csv(io.StringIO(out.getvalue()))
    assert list(written.columns) == ["row", "timestamp", "series", "f10", "f60"]
    assert list(written["series"]) == list(feed["series"])
    np.testing.assert_allclose(written[["f10", "f60"]].to_numpy(), expected, rtol=1e-5, atol=1e-10)  # float32 rounding x scale 6e-5
    # The same rows as NumPy, one instrument at a time.
    numpy_rows = StreamingPredictor.from_run(run)
    stamps = feed["timestamp"].to_numpy("datetime64[ns]")
    rows = feed.reindex(columns=numpy_rows.column_names, fill_value=0.0).to_numpy()  # NumPy rows hold every input column
    got = [numpy_rows.update_instrument(name, row, stamp) for name, row, stamp in zip(feed["series"], rows, stamps)]
    np.testing.assert_allclose(np.stack(got), expected, rtol=1e-5, atol=1e-10)
    with pytest.raises(DataValidationError, match=r"x_t: row 0: instrument 'd' is not one of this predictor's instruments \['a', 'b', 'c'\]"):
        numpy_rows.update_instrument("d", rows[0], stamps[0])
    # Reset by id: that series starts afresh, as a new one-series predictor would.
    numpy_rows.reset("b")
    assert list(numpy_rows.ticks) == [40, 0, 40]
    later = _last_session(store, "b").iloc[40:45]
    fresh = StreamingPredictor.from_run(run, instruments=["b"]).update_many(later)
    np.testing.assert_allclose(numpy_rows.update_many(later.assign(series="b")), fresh, rtol=1e-5, atol=1e-10)
    with pytest.raises(DataValidationError, match=r"reset\(instrument\) expects instrument indices in \[0, 3\); got 'z'"):
        numpy_rows.reset("z")
    feed.drop(columns="series").to_csv(source, index=False)
    with pytest.raises(DataValidationError, match=r"has no instrument column \(one of \['series', 'unique_id', 'instrument'\]\)"):
        follow_stream(StreamingPredictor.from_run(run), source, io.StringIO(), target_names=["f10", "f60"], idle_timeout=0)


def test_a_panel_predictor_exports_and_loads_back_with_its_series_and_scalers(panel_run, tmp_path):
    from longstm.serve import export_run

    run, store = panel_run
    path = export_run(run, "keras", tmp_path / "step.keras")
    loaded = StreamingPredictor.from_saved(path)
    assert loaded.instruments == ["a", "b", "c"]
    frames = {name: _last_session(store, name).iloc[:30] for name in loaded.instruments}
    feed = pd.concat([frame.assign(series=name) for name, frame in frames.items()]).sort_values("timestamp", kind="stable")
    np.testing.assert_allclose(loaded.update_many(feed), StreamingPredictor.from_run(run).update_many(feed), rtol=1e-5, atol=1e-10)
    subset = StreamingPredictor.from_metadata(loaded.model, StreamingPredictor.from_run(run, instruments=["c"]).metadata())
    assert subset.instruments == ["c"] and np.allclose(subset._input_mean, loaded._input_mean[2:])
