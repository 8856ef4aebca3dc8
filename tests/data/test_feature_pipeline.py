"""FeaturePipeline: batch features equal incremental ones, for every kind, over random data
with several segments and lanes; saving; the bar/LOB/per-column kinds' reference numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longstm.data import FeaturePipeline, TimeSeries
from longstm.data.feature_kinds import FEATURE_KINDS
from longstm.data.features import check_pipeline_specs
from longstm.errors import ConfigError, DataValidationError

COLUMNS = ["open", "high", "low", "close", "volume"]
# Kinds whose incremental numbers are the batch numbers bit for bit (the same float64 operations);
# the rolling kinds sum in another order than pandas' rolling windows.
EXACT = {"raw", "log_return", "diff", "time_of_day", "day_of_week", "bar", "lob_inputs", "per_column"}

columns = st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=3, unique=True)
SPECS = {
    "raw": st.builds(lambda c: {"kind": "raw", "columns": c}, columns),
    "log_return": st.builds(lambda c, p: {"kind": "log_return", "columns": c, "periods": p}, columns, st.integers(1, 4)),
    "diff": st.builds(lambda c, p: {"kind": "diff", "columns": c, "periods": p}, columns, st.integers(1, 4)),
    "rolling_volatility": st.builds(
        lambda c, w, of: {"kind": "rolling_volatility", "columns": c, "window": w, "of": of},
        columns, st.integers(1, 6), st.sampled_from(["log_return", "diff", "value"]),
    ),
    "rolling_mean": st.builds(lambda c, w: {"kind": "rolling_mean", "columns": c, "window": w}, columns, st.integers(1, 6)),
    "time_of_day": st.just({"kind": "time_of_day"}),
    "day_of_week": st.just({"kind": "day_of_week"}),
    "bar": st.just({"kind": "bar"}),
    "lob_inputs": st.just({"kind": "lob_inputs", "mid": "close"}),
    "quote": st.builds(lambda w, times: {"kind": "quote", "bid": "low", "ask": "high", "window": w, "times": times},
                       st.integers(1, 6), st.booleans()),
    "per_column": st.builds(
        lambda t: {"kind": "per_column", "transforms": t}, st.lists(st.sampled_from(["value", "diff", "log_return"]), min_size=5, max_size=5)
    ),
    "calendar_boundaries": st.builds(  # tests/test_calendar_data.py checks it on dense ticks
        lambda levels: {"kind": "calendar_boundaries", "levels": levels},
        st.lists(st.sampled_from([{"every": "10min"}, {"every": "1h"}, {"every": "1D", "tz": "America/New_York"},
                                  {"every_events": 3}, {"column": "volume"}]), min_size=1, max_size=3),
    ),
}


@st.composite
def lanes_of_series(draw):
    """(values (lanes, rows, 5) > 0, timestamps (lanes, rows), segment starts per lane)."""
    lanes, rows = draw(st.integers(1, 3)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = 100 * np.exp(np.cumsum(rng.normal(0, 0.05, (lanes, rows, len(COLUMNS))), axis=1))
    steps = rng.integers(1, 10**12, (lanes, rows))  # irregular steps of up to ~17 minutes
    stamps = np.datetime64("2024-03-01T09:00", "ns").astype(np.int64) + np.cumsum(steps, axis=1)
    segments = [sorted({0, *draw(st.lists(st.integers(1, max(rows - 1, 1)), max_size=4))} - {rows}) for _ in range(lanes)]
    return values, stamps.astype("datetime64[ns]"), segments


def _incremental(pipeline, values, stamps, segments, state=None):
    """Step all lanes row by row, resetting a lane at each of its segment starts."""
    state = pipeline.start(len(values)) if state is None else state
    outputs = []
    for t in range(values.shape[1]):
        starting = [lane for lane, starts in enumerate(segments) if t in starts and t > 0]
        if starting:
            state = pipeline.reset(state, starting)
        step, state = pipeline.step(values[:, t], state, timestamps=stamps[:, t])
        outputs.append(step)
    return np.stack(outputs, axis=1), state


@pytest.mark.parametrize("kind", sorted(FEATURE_KINDS))
def test_batch_equals_incremental_and_is_causal(kind):
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=SPECS[kind], data=lanes_of_series(), cut=st.floats(0, 1))
    def check(spec, data, cut):
        values, stamps, segments = data
        pipeline = FeaturePipeline([spec], COLUMNS)
        batch = np.stack([pipeline.compute(v, s, g) for v, s, g in zip(values, stamps, segments)])
        incremental, _ = _incremental(pipeline, values, stamps, segments)
        assert batch.shape == incremental.shape == (*values.shape[:2], pipeline.n_outputs)
        if kind in EXACT:
            np.testing.assert_array_equal(incremental, batch)
        else:
            np.testing.assert_allclose(incremental, batch, rtol=1e-7, atol=1e-9)
        # Causality: rewriting every row after t leaves rows <= t as they were.
        t = int(cut * (values.shape[1] - 1))
        changed = values[0].copy()
        changed[t + 1 :] *= 1.5
        perturbed = pipeline.compute(changed, stamps[0], segments[0])
        np.testing.assert_array_equal(perturbed[: t + 1], batch[0, : t + 1])

    check()


def test_every_kind_has_a_strategy():
    assert set(SPECS) == set(FEATURE_KINDS)


ALL = [
    {"kind": "raw"},
    {"kind": "log_return", "columns": "close", "periods": 2},
    {"kind": "rolling_volatility", "columns": ["close"], "window": 5},
    {"kind": "rolling_mean", "columns": ["volume"], "window": 3},
    {"kind": "time_of_day"},
    {"kind": "bar"},
]


def test_state_saved_mid_stream_continues_the_same(tmp_path):
    rng = np.random.default_rng(1)
    values = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (2, 30, 5)), axis=1))
    stamps = (np.arange(60).reshape(2, 30) * 60 * 10**9).astype("datetime64[ns]")
    pipeline = FeaturePipeline(ALL, COLUMNS)
    segments = [[0, 12], [0]]
    whole, _ = _incremental(pipeline, values, stamps, segments)
    first, state = _incremental(pipeline, values[:, :20], stamps[:, :20], segments)
    np.savez(tmp_path / "state.npz", **state)
    restored = FeaturePipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())))
    with np.load(tmp_path / "state.npz") as saved:
        rest, _ = _incremental(restored, values[:, 20:], stamps[:, 20:], [[], []], state=dict(saved))
    np.testing.assert_array_equal(np.concatenate([first, rest], axis=1), whole)
    batch = pipeline.compute(values[0], stamps[0], segments[0])
    np.testing.assert_allclose(whole[0], batch, rtol=1e-7, atol=1e-9)


def test_step_does_not_change_the_state_it_is_given():
    pipeline = FeaturePipeline([{"kind": "diff"}], ["x"])
    state = pipeline.start(2)
    _, after = pipeline.step(np.ones((2, 1)), state)
    assert state["seen"].tolist() == [0, 0] and after["seen"].tolist() == [1, 1]
    many, last = pipeline.step_many(np.array([[[1.0], [5.0]], [[3.0], [4.0]]]), after)
    np.testing.assert_array_equal(many[:, :, 0], [[0.0, 4.0], [2.0, -1.0]])
    assert last["seen"].tolist() == [3, 3] and after["seen"].tolist() == [1, 1]


def test_reference_numbers_of_the_bar_lob_and_per_column_kinds():
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 50)))
    bars = np.stack([close * 1.001, close * 1.003, close * 0.997, close, rng.uniform(0, 9, 50)], axis=1)
    got = FeaturePipeline([{"kind": "bar"}], COLUMNS).compute(bars, segments=[0, 20])
    log_return = np.concatenate([[0.0], np.diff(np.log(close))])
    log_return[20] = 0.0  # a segment starts there
    expected = np.stack(
        [1e4 * log_return, 1e4 * np.log(bars[:, 1] / bars[:, 2]), 1e4 * np.log(close / bars[:, 0]), np.log1p(bars[:, 4])], axis=1
    )
    np.testing.assert_array_equal(got, expected)

    events = np.stack([close, rng.uniform(0.01, 0.1, 50), rng.normal(size=50)], axis=1)
    lob = FeaturePipeline([{"kind": "lob_inputs"}], ["spread", "mid_price", "imbalance"])
    got = lob.compute(events[:, [1, 0, 2]])
    assert lob.output_columns == ["mid_change_bp", "spread", "imbalance"]
    np.testing.assert_array_equal(got[1:, 0], np.diff(close) / close[:-1] * 1e4)
    np.testing.assert_array_equal(got[:, 1:], events[:, 1:])
    assert got[0, 0] == 0.0

    per_column = FeaturePipeline.from_dict({"kind": "causal", "transforms": ["log_return", "diff", "value"]})
    assert per_column.output_columns == ["x0_log_return", "x1_diff", "x2"]
    got = per_column.compute(events)
    np.testing.assert_array_equal(got[1:, 0], np.log(close[1:] / close[:-1]))
    np.testing.assert_array_equal(got[1:, 1], np.diff(events[:, 1]))
    np.testing.assert_array_equal(got[:, 2], events[:, 2])
    assert got[0, :2].tolist() == [0.0, 0.0]


def test_transform_picks_input_columns_by_name_and_keeps_segments():
    values = np.arange(1, 13, dtype=np.float32).reshape(6, 2)
    series = TimeSeries(values, ["b", "a"], segments=np.array([0, 3]))
    out = FeaturePipeline([{"kind": "diff", "columns": "a"}], ["a", "b"]).transform(series)
    assert out.columns == ["a_diff"] and out.segments.tolist() == [0, 3] and out.values.dtype == np.float32
    assert out.values[:, 0].tolist() == [0.0, 2.0, 2.0, 0.0, 2.0, 2.0]


def test_names_and_saving():
    pipeline = FeaturePipeline(ALL, COLUMNS)
    assert pipeline.required_columns == COLUMNS and pipeline.memory == 6
    assert pipeline.output_columns[:6] == COLUMNS + ["close_log_return_2"]
    assert pipeline.output_columns[-4:] == ["log_return_bp", "range_bp", "body_bp", "log_volume"]
    only_close = FeaturePipeline([{"kind": "log_return", "columns": ["close"]}], COLUMNS)
    assert only_close.required_columns == ["close"] and only_close.start(3)["history"].shape == (3, 2, 1)
    again = FeaturePipeline.from_dict(pipeline.to_dict())
    assert again.to_dict() == pipeline.to_dict() and again.output_columns == pipeline.output_columns


def test_incremental_errors_name_the_lane_column_and_shape():
    pipeline = FeaturePipeline([{"kind": "log_return", "columns": ["close"]}, {"kind": "day_of_week"}], ["close", "volume"])
    state = pipeline.start(2)
    stamps = np.array(["2024-03-01", "2024-03-02"], dtype="datetime64[ns]")
    with pytest.raises(DataValidationError, match=r"pipeline\[0\] \(log_return\): log returns need positive values, column 'close' holds -1.0 at lane 1"):
        pipeline.step(np.array([[1.0, 1.0], [-1.0, 1.0]]), state, stamps)
    with pytest.raises(DataValidationError, match=r"step rows must have shape \(lanes, inputs\) = \(2, 2\).*got \(2, 3\)"):
        pipeline.step(np.ones((2, 3)), state, stamps)
    with pytest.raises(DataValidationError, match="feature 'day_of_week' needs timestamps, and this step has none"):
        pipeline.step(np.ones((2, 2)), state)
    with pytest.raises(DataValidationError, match=r"this step needs 2 timestamps, got shape \(1,\)"):
        pipeline.step(np.ones((2, 2)), state, stamps[:1])
    with pytest.raises(DataValidationError, match=r"state must be \{'history': \(lanes, 2, 1\), 'seen': \(lanes,\)\}"):
        pipeline.step(np.ones((2, 2)), {"history": np.zeros((2, 3, 1)), "seen": np.zeros(2)}, stamps)
    with pytest.raises(DataValidationError, match=r"reset expects lane indices in \[0, 2\); got 2"):
        pipeline.reset(state, 2)
    with pytest.raises(ConfigError, match="lanes must be a positive integer, got 0"):
        pipeline.start(0)
    with pytest.raises(DataValidationError, match=r"step_many rows must have shape \(ticks, 2, 2\); got \(2, 2\)"):
        pipeline.step_many(np.ones((2, 2)), state)


def test_spec_errors_of_the_new_kinds():
    cases = [
        ({"kind": "bar", "close": "last"}, DataValidationError, r"pipeline\[0\] \(bar\): no column 'last'; available columns: open, high"),
        ({"kind": "lob_inputs"}, DataValidationError, r"pipeline\[0\] \(lob_inputs\): the LOBSTER task needs a 'mid_price' column, got open"),
        ({"kind": "per_column", "transforms": ["value"]}, ConfigError, r"one transform per column: 5 columns .* got 1 transforms"),
        ({"kind": "per_column", "transforms": ["value", "pct"], "columns": ["open", "close"]}, ConfigError, "transform 1 must be one of .*got 'pct'"),
        ({"kind": "per_column", "transforms": "value"}, ConfigError, "transforms must be a non-empty list"),
        ({"kind": "diff", "columns": 3}, ConfigError, "columns must be a column name or a list of them, got 3"),
        ({"kind": "raw", "columns": [1]}, ConfigError, "column names must be strings, got 1"),
    ]
    for spec, error, message in cases:
        with pytest.raises(error, match=message):
            FeaturePipeline([spec], COLUMNS)
    with pytest.raises(DataValidationError, match=r"pipeline\[0\] \(bar\): bar features need positive prices, column 'low' holds 0.0 at row 1"):
        FeaturePipeline([{"kind": "bar"}], COLUMNS).compute(np.array([[1.0, 1, 1, 1, 1], [1, 1, 0, 1, 1]]))
    with pytest.raises(DataValidationError, match=r"reads rows of 5 columns .* got shape \(2, 4\)"):
        FeaturePipeline([{"kind": "bar"}], COLUMNS).compute(np.ones((2, 4)))
    with pytest.raises(ConfigError, match="pipeline: input_columns must be a list of column names, got 'close'"):
        FeaturePipeline([{"kind": "raw"}], "close")
    with pytest.raises(ConfigError, match=r"a saved feature pipeline must be \{'input_columns'"):
        FeaturePipeline.from_dict({"kind": "other"})


def test_config_specs_are_checked_before_the_data_is_read():
    check_pipeline_specs([{"kind": "diff", "columns": ["anything"]}, {"kind": "lob_inputs"}])
    with pytest.raises(ConfigError, match=r"pipeline\[1\] \(rolling_mean\): missing required key\(s\) window"):
        check_pipeline_specs([{"kind": "raw"}, {"kind": "rolling_mean"}])
    with pytest.raises(ConfigError, match=r"pipeline\[0\] \(log_return\): periods must be a positive integer, got 0"):
        check_pipeline_specs([{"kind": "log_return", "periods": 0}])
    with pytest.raises(ConfigError, match=r"pipeline\[0\]: unknown kind 'ema'; expected one of raw, log_return, .*per_column"):
        check_pipeline_specs([{"kind": "ema"}])


def test_quote_features_by_hand():
    stamps = np.array([0, 500, 500, 2_500], dtype=np.int64) * 1_000_000  # ms: a tie at 0.5 s
    bid = np.array([1.0, 1.1, 1.2, 1.3])
    ask = bid + 0.02
    pipeline = FeaturePipeline([{"kind": "quote", "window": 2}], ["bid", "ask"])
    out = pipeline.compute(np.stack([bid, ask], axis=1), stamps)
    mid = bid + 0.01
    np.testing.assert_allclose(out[:, 0], [0, *(1e4 * np.diff(np.log(mid)))])
    np.testing.assert_allclose(out[:, 1], 1e4 * 0.02 / mid)
    np.testing.assert_allclose(out[:, 2], np.log1p([0, 0.5, 0.0, 2.0]))
    # ticks per second over the last min(t, 2) ticks: 1/0.5, 2/0.5, 2/2.0
    np.testing.assert_allclose(out[:, 3], np.log1p([0, 2.0, 4.0, 1.0]))
    assert pipeline.output_columns == ["mid_return_bp", "spread_bp", "log_dt", "log_tick_rate"]
    with pytest.raises(DataValidationError, match="needs timestamps"):
        pipeline.compute(np.stack([bid, ask], axis=1))
