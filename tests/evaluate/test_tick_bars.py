"""A bar model scored on ticks: each tick gets the forecast of the last bar stamped at or before
it in its session (never a later one), the bar store must come from the scored tick store, and
`longstm eval ticks` trains a bar config on its bars and scores it on the protocol's ticks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from longstm.cli import main
from longstm.data.bars import make_bars
from longstm.data.store import Store, convert
from longstm.errors import DataValidationError
from longstm.evaluate.tick_bars import bar_lookup, check_bar_store
from longstm.evaluate.ticks import TicksConfig, evaluate_ticks
from longstm.models.hft_baselines import ZeroReturn
from longstm.train.config import read_config
from longstm.train.panel import predict_panel
from longstm.train.run import load_panel
from tests.evaluate.test_ticks import SESSION, TRAIN_UNTIL, VAL_UNTIL, make_tick_store
from tests.evaluate.test_trained import write_config

BASE_NS = pd.Timestamp("2024-01-01", tz="UTC").value


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The tick store of test_ticks (4 daily sessions of one tick a second) and its 2-s bars."""
    root = tmp_path_factory.mktemp("tick_bars")
    ticks = make_tick_store(root / "ticks")
    make_bars(ticks, root / "bars.store", every="2s")
    return ticks, Store(root / "bars.store")


def stamp_coded_frame(bars: Store, name: str) -> pd.DataFrame:
    """A forecast frame like predict_panel's whose forecast is the bar's own stamp: seconds since
    BASE in bp (as a log return, 1e-4 per second), so a lookup tells which bar served a tick."""
    stamps = bars.series(name).timestamps()
    return pd.DataFrame({"series": name, "row": np.arange(stamps.size), "timestamp": pd.to_datetime(stamps, utc=True),
                         "pred_mid_log_return_30s": (stamps - BASE_NS) / 1e9 * 1e-4})


def test_a_tick_gets_the_last_bar_at_or_before_it_in_its_session(stores):
    ticks, bars = stores
    lookup = bar_lookup(ticks, stamp_coded_frame(bars, "a"), session_gap="1h")
    rows = np.arange(len(ticks.series("a")))
    served = lookup("a", "30s", rows)
    tick_stamps = ticks.series("a").timestamps()
    known = np.isfinite(served)
    bar_stamps = BASE_NS + np.round(served[known] * 1e9).astype(np.int64)
    assert np.all(bar_stamps <= tick_stamps[known])  # a forecast is never used before its bar's stamp
    assert np.all(bar_stamps > tick_stamps[known] - 2 * 10**9)  # ... and it is the latest one
    # brute force: pandas' as-of merge, then bars of an earlier session removed
    frame = pd.DataFrame({"t": tick_stamps, "session_first": tick_stamps[(rows // SESSION) * SESSION]})
    merged = pd.merge_asof(frame, pd.DataFrame({"t": bars.series("a").timestamps(), "bar": bars.series("a").timestamps()}),
                           on="t", direction="backward", allow_exact_matches=True)
    expected = np.where(merged["bar"] > merged["session_first"], (merged["bar"] - BASE_NS) / 1e9, np.nan)
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
    # a tick on an even second uses the bar closed at that instant; a session's first two ticks have no bar yet
    start = 3 * SESSION
    assert served[start + 2] == pytest.approx((tick_stamps[start + 2] - BASE_NS) / 1e9)
    assert np.isnan(served[[start, start + 1]]).all() and np.isfinite(served[start + 2:start + SESSION]).all()


def test_a_bar_store_of_another_store_or_of_an_older_conversion_is_refused(stores, tmp_path):
    ticks, bars = stores
    assert check_bar_store(bars.path, ticks, "bars.toml")["every"] == "2s"
    with pytest.raises(DataValidationError, match=r"bars\.toml: data\.path .* holds bars, stamped at their interval's end, so "
                                                  r"the calendar session rule 1D@America/New_York would count"):
        check_bar_store(bars.path, ticks, "bars.toml", "1D@America/New_York")
    with pytest.raises(DataValidationError, match=r"bars\.toml: data\.path .* holds bars of 2s, not shorter than the session gap 2s"):
        check_bar_store(bars.path, ticks, "bars.toml", "2s")
    assert check_bar_store(ticks.path, ticks, "ticks.toml") is None and check_bar_store(["a.csv"], ticks, "x.toml") is None
    other = make_tick_store(tmp_path / "other")
    with pytest.raises(DataValidationError, match=r"bars.toml: data.path .* holds bars made from .*, not from the --data store"):
        check_bar_store(bars.path, other, "bars.toml")
    make_bars(other, tmp_path / "other_bars", every="2s")
    pd.DataFrame({"unique_id": "c", "ds": pd.date_range("2024-01-05", periods=3, freq="s"), "bid": 1.0, "ask": 1.1}).to_parquet(tmp_path / "c.parquet")
    convert([tmp_path / "c.parquet"], other.path)  # more data converted into the store after the bars were made
    with pytest.raises(DataValidationError, match=r"before its last conversion .* make them again with `longstm data bars"):
        check_bar_store(tmp_path / "other_bars", Store(other.path), "bars.toml")


def old_bar_store(bars: Store, folder) -> Store:
    """`bars`' series `a` as a bar store made before `make_bars` wrote `tick_gap`: the same bars
    and metadata, no tick_gap column."""
    series = bars.series("a")
    columns = dict(zip(series.columns, series.read().T))
    pd.DataFrame({"unique_id": "a", "ds": pd.to_datetime(series.timestamps(), utc=True)} | columns).to_parquet(folder / "old.parquet")
    convert([folder / "old.parquet"], folder / "old")
    (folder / "old" / "store.json").write_text((bars.path / "store.json").read_text())
    return Store(folder / "old")


def test_bars_made_without_their_tick_gaps_are_refused(stores, tmp_path):
    """Bars made before `make_bars` wrote `tick_gap` read their sessions from their stamps."""
    ticks, bars = stores
    old = old_bar_store(bars, tmp_path)
    assert not old.series("a").has_tick_gap and bars.series("a").has_tick_gap
    with pytest.raises(DataValidationError, match=r"bars\.toml: data\.path .* holds bars without a 'tick_gap' column \(series "
                                                  r"'a'\), made before .*; make them again with `longstm data bars"):
        check_bar_store(old.path, ticks, "bars.toml")


def bar_train_config(folder, bars_path, session_gap: str):
    """A tiny `longstm train` config on a bar store (TensorFlow is never reached when it is refused)."""
    config = write_config(folder, residual="false")
    config.write_text(config.read_text() + f'[data]\npath = "{bars_path}"\ntime_targets = ["30s"]\nsession_gap = "{session_gap}"\n'
                      f'split = {{ train_until = "{TRAIN_UNTIL}", val_until = "{VAL_UNTIL}" }}\n')
    return config


@pytest.mark.parametrize("case", ["old bars", "calendar rule"])
def test_train_refuses_old_bars_and_a_calendar_rule_on_bars_in_one_line(stores, tmp_path, capsys, case):
    """`longstm train` reads a bar store's sessions as eval ticks does (`check_bar_sessions` in
    `load_panel`): bars without tick_gap, or a calendar rule, are refused before any training."""
    ticks, bars = stores
    path, gap = (old_bar_store(bars, tmp_path).path, "1h") if case == "old bars" else (bars.path, "1D@America/New_York")
    config, run = bar_train_config(tmp_path, path, gap), tmp_path / "run"
    code = main(["train", "--config", str(config), "--run-dir", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{config}: data.path {path} holds bars" in err
    expected = ("without a 'tick_gap' column (series 'a')", f"make them again with `longstm data bars {ticks.path.resolve()} --every 2s")
    if case == "calendar rule":
        expected = ("the calendar session rule 1D@America/New_York would count", "use a gap rule like '1h' for a bar model")
    assert all(part in err for part in expected), err
    assert not (run / "config.toml").exists()  # refused before the run was written


def test_train_reads_bar_sessions_from_tick_gap_under_a_gap_rule(stores, tmp_path):
    """The same check lets current bars under a gap rule through: the panel's sessions are the
    ticks' (one per day), read from tick_gap."""
    _, bars = stores
    data = load_panel(read_config(bar_train_config(tmp_path, bars.path, "1h")))
    for name in ("a", "b"):
        np.testing.assert_array_equal(data.panel.sessions[name], np.arange(4) * SESSION // 2)  # 2-s bars of 4 days of ticks


def test_a_calendar_rule_counts_the_bar_of_a_day_s_last_ticks_in_the_next_day(tmp_path):
    """Why eval ticks refuses a bar model under a calendar session rule: ticks across New York
    midnight (05:00 UTC in January) split into two days, but the 1-s bar of 04:59:59-05:00:00,
    whose ticks are all of the first day, is stamped 05:00:00 and the rule puts it in the second."""
    midnight = pd.Timestamp("2024-01-02T05:00", tz="UTC")
    stamps = midnight + pd.to_timedelta([-2.5, -1.5, -0.5, -0.2, 0.3, 1.1, 2.4], unit="s")
    pd.DataFrame({"unique_id": "a", "ds": stamps, "bid": 1.0, "ask": 1.1}).to_parquet(tmp_path / "t.parquet")
    convert([tmp_path / "t.parquet"], tmp_path / "ticks")
    make_bars(tmp_path / "ticks", tmp_path / "bars", every="1s")
    ticks, bars = Store(tmp_path / "ticks").series("a"), Store(tmp_path / "bars").series("a")
    rule = "1D@America/New_York"
    assert list(ticks.sessions(rule)) == [0, 4]  # 4 ticks of the first day, 3 of the second
    counts = bars.read(0, len(bars), ["ticks"])[:, 0]
    assert bars.timestamps()[2] == midnight.value and counts[2] == 2  # the bar of the first day's last 2 ticks
    assert list(bars.sessions(rule)) == [0, 2]  # ... starts the second day's session
    assert counts[:2].sum() == 2  # so the bars' first session holds 2 of the day's 4 ticks


def test_eval_ticks_refuses_a_bar_config_under_a_calendar_rule_before_training(stores, tmp_path, capsys):
    ticks, bars = stores
    config = write_config(tmp_path, residual="false")
    config.write_text(config.read_text() + f'[data]\npath = "{bars.path}"\n')
    code = main(["eval", "ticks", "--data", str(ticks.path), "--train-until", TRAIN_UNTIL, "--val-until", VAL_UNTIL,
                 "--session-gap", "1D@America/New_York", "--model", f"zero,{config}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "calendar session rule 1D@America/New_York" in err
    assert not (tmp_path / "out" / "runs").exists()  # nothing was trained


def test_eval_ticks_trains_a_bar_config_on_its_bars_and_scores_it_on_the_ticks(stores, tmp_path, capsys):
    ticks, bars = stores
    config = write_config(tmp_path, residual="false")
    config.write_text(config.read_text() + f'[data]\npath = "{bars.path}"\n')
    out = tmp_path / "out"
    code = main(["eval", "ticks", "--data", str(ticks.path), "--train-until", TRAIN_UNTIL, "--val-until", VAL_UNTIL,
                 "--horizons", "30s", "--model", f"zero,{config}", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    run = out / "runs" / "tiny_lstm"
    assert (run / "config.toml").read_text().count(str(bars.path.resolve())) == 1  # trained on the bars
    frame = predict_panel(run, part="test")
    evaluation = evaluate_ticks(ticks, {"zero": ZeroReturn}, TicksConfig(TRAIN_UNTIL, VAL_UNTIL, horizons=("30s",)))
    decisions = next(r for r in evaluation.results if r.series == "b")
    tick_stamps = ticks.series("b").timestamps()[decisions.rows]
    bar_frame = frame[frame["series"] == "b"]
    index = np.searchsorted(pd.DatetimeIndex(bar_frame["timestamp"]).as_unit("ns").asi8, tick_stamps, side="right") - 1
    expected = np.mean((1e4 * bar_frame["pred_mid_log_return_30s"].to_numpy()[index] - decisions.actuals) ** 2)
    table = pd.read_csv(out / "metrics.csv")
    row = table[(table["model"] == "tiny_lstm") & (table["series"] == "b")].iloc[0]
    assert row["mse_bp2"] == pytest.approx(expected, rel=1e-6) and row["n"] == decisions.rows.size
    assert json.loads((out / "metrics.json").read_text())["data"]["abstained"]["tiny_lstm"]["b 30s"] == 0
