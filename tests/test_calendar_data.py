"""The `calendar_boundaries` pipeline kind: boundary flags of a calendar hierarchy from timestamps.

Batch and incremental flags agree, flags are causal (future values and future timestamps
change no earlier flag), levels nest, a day in New York closes at local midnight across both
daylight-saving changes, and bad level specs are one `ConfigError` naming the key.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longstm.data import FeaturePipeline
from longstm.data.calendar_kinds import boundary_levels
from longstm.errors import ConfigError, DataValidationError
from tests.data.test_feature_pipeline import _incremental as step_lanes

COLUMNS = ["price", "mark"]
START = np.datetime64("2024-03-09T23:59:30", "ns").astype(np.int64)

level = st.one_of(
    st.builds(lambda span: {"every": span}, st.sampled_from(["1s", "2s", "10s", "1min", "250ms"])),
    st.builds(lambda span, zone: {"every": span, "tz": zone}, st.sampled_from(["1min", "1h", "1D"]),
              st.sampled_from(["America/New_York", "Asia/Kolkata"])),
    st.builds(lambda n: {"every_events": n}, st.integers(1, 6)),
    st.just({"column": "mark"}),
)


@st.composite
def ticks(draw):
    """(values (lanes, rows, 2), int64 UTC nanoseconds (lanes, rows), segment starts per lane):
    ticks 0-3 s apart with ties, `mark` a 0/1 boundary column."""
    lanes, rows = draw(st.integers(1, 3)), draw(st.integers(1, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.choice([0, 10**6, 3 * 10**8, 10**9, 3 * 10**9], size=(lanes, rows))
    stamps = START + np.cumsum(steps, axis=1)
    values = np.stack([rng.normal(size=(lanes, rows)), rng.random((lanes, rows)) < 0.2], axis=-1).astype(np.float64)
    segments = [sorted({0, *draw(st.lists(st.integers(1, max(rows - 1, 1)), max_size=3))} - {rows}) for _ in range(lanes)]
    return values, stamps, segments


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(levels=st.lists(level, min_size=1, max_size=3), data=ticks(), cut=st.floats(0, 1))
def test_batch_equals_incremental_nested_and_causal(levels, data, cut):
    values, stamps, segments = data
    pipeline = FeaturePipeline([{"kind": "calendar_boundaries", "levels": levels}], COLUMNS)
    batch = np.stack([pipeline.compute(v, s, g) for v, s, g in zip(values, stamps, segments)])
    incremental, _ = step_lanes(pipeline, values, stamps, segments)  # reset at each segment start
    np.testing.assert_array_equal(incremental, batch)
    assert set(np.unique(batch)) <= {0.0, 1.0}
    # Nested: a group start at a level is one at every level below it; a segment starts all.
    assert (np.diff(batch, axis=-1) <= 0).all()
    for lane, starts in enumerate(segments):
        assert (batch[lane, starts] == 1).all()
    # Causal: rewrite the values after t and push the timestamps after t by random (ordered)
    # amounts; no flag at or before t changes.
    t = int(cut * (values.shape[1] - 1))
    rng = np.random.default_rng(t)
    later_values = values[0].copy()
    later_values[t + 1 :] = rng.normal(size=later_values[t + 1 :].shape).round()
    later_stamps = stamps[0].copy()
    later_stamps[t + 1 :] += np.cumsum(rng.integers(0, 5 * 10**9, len(later_stamps) - t - 1))
    perturbed = pipeline.compute(later_values, later_stamps, segments[0])
    np.testing.assert_array_equal(perturbed[: t + 1], batch[0, : t + 1])


def test_reference_flags_nest_and_restart_at_segments():
    stamps = pd.to_datetime([
        "2024-01-02 09:00:00.1", "2024-01-02 09:00:00.9", "2024-01-02 09:00:01.0",  # a new second
        "2024-01-02 09:00:01.0", "2024-01-02 09:00:59.9", "2024-01-02 09:01:00.0",  # a tie; a new minute
        "2024-01-02 09:01:00.2", "2024-01-02 09:01:00.3",
    ]).to_numpy()
    mark = np.array([0, 0, 0, 0, 0, 0, 1, 0], np.float64)
    pipeline = FeaturePipeline(
        [{"kind": "calendar_boundaries", "levels": [{"column": "mark"}, {"every": "1s"}, {"every": "1min"}, {"every_events": 5}]}],
        COLUMNS,
    )
    flags = pipeline.compute(np.column_stack([np.zeros(8), mark]), stamps, [0, 7])
    expected = np.array([
        [1, 1, 1, 1],   # the segment's first row starts every level
        [0, 0, 0, 0],
        [1, 1, 0, 0],   # 09:00:01.0: a new second, so a new group of the level below too
        [0, 0, 0, 0],   # the same instant: no new group
        [1, 1, 0, 0],
        [1, 1, 1, 1],   # 09:01:00.0: a new minute (and 5 events since the segment start)
        [1, 0, 0, 0],   # the boundary column alone
        [1, 1, 1, 1],   # a new segment
    ], np.float64)
    np.testing.assert_array_equal(flags, expected)
    assert pipeline.output_columns == ["boundary_0", "boundary_1", "boundary_2", "boundary_3"]


def test_a_new_york_day_closes_at_local_midnight_across_both_dst_changes():
    # Every 30 minutes from 8 to 12 March and from 1 to 5 November 2024 (the clocks change on
    # 10 March and 3 November): local midnight is 05:00 UTC in winter and 04:00 UTC in summer.
    stamps = np.concatenate([pd.date_range(start, periods=4 * 48, freq="30min", tz="UTC").asi8 * 1000
                             for start in ("2024-03-08", "2024-11-01")])
    pipeline = FeaturePipeline([{"kind": "calendar_boundaries", "levels": [{"every": "1D", "tz": "America/New_York"}]}], COLUMNS)
    flags = pipeline.compute(np.zeros((len(stamps), 2)), stamps, [0, 4 * 48])[:, 0]
    local = pd.DatetimeIndex(stamps.astype("datetime64[ns]"), tz="UTC").tz_convert("America/New_York")
    at_midnight = (local.hour == 0) & (local.minute == 0)
    np.testing.assert_array_equal(flags == 1, at_midnight | np.isin(np.arange(len(stamps)), [0, 4 * 48]))
    utc_hours = pd.DatetimeIndex(stamps[at_midnight].astype("datetime64[ns]")).hour
    assert sorted(set(utc_hours)) == [4, 5]  # both sides of each change are in the test
    # Without the zone, days close at UTC midnight instead.
    utc = FeaturePipeline([{"kind": "calendar_boundaries", "levels": [{"every": "1D"}]}], COLUMNS)
    flags_utc = utc.compute(np.zeros((len(stamps), 2)), stamps)[:, 0]
    assert (pd.DatetimeIndex(stamps[flags_utc == 1][1:].astype("datetime64[ns]")).hour == 0).all()


@pytest.mark.parametrize("levels, message", [
    ([{"every": "1x"}], r"levels\[0\]\.every must be a fixed positive span .* got '1x'"),
    ([{"every": "1W"}], r"levels\[0\]\.every must be a fixed positive span .* got '1W'"),
    ([{"every": "1s"}, {"every": "1min", "every_events": 64}], r"levels\[1\] needs exactly one of every, every_events, column; got every, every_events"),
    ([{}], r"levels\[0\] needs exactly one of every, every_events, column; got none"),
    ([{"every_events": 0}], r"levels\[0\]\.every_events must be a positive integer; got 0"),
    ([{"every": "1D", "tz": "Mars/Olympus"}], r"levels\[0\]\.tz must be an IANA time zone .* got 'Mars/Olympus'"),
    ([{"every_events": 3, "tz": "UTC"}], r"levels\[0\]\.tz applies to every = \"<span>\" only; this level has every_events"),
    ([{"every": "1s", "units": 3}], r"levels\[0\] has unknown key\(s\) units; a level has one of every"),
    ("1s", r"levels must be a non-empty list of tables"),
])
def test_bad_level_specs_name_the_key(levels, message):
    with pytest.raises(ConfigError, match=r"pipeline\[0\] \(calendar_boundaries\): " + message):
        FeaturePipeline([{"kind": "calendar_boundaries", "levels": levels}], COLUMNS)


def test_every_on_data_without_timestamps_and_a_missing_column():
    pipeline = FeaturePipeline([{"kind": "calendar_boundaries", "levels": [{"every_events": 2}, {"every": "1min"}]}], COLUMNS, source="x.csv")
    with pytest.raises(ConfigError, match=r"x.csv: pipeline\[0\] \(calendar_boundaries\): levels\[1\]\.every cuts groups by time "
                                          r"and this series has no timestamps; use every_events"):
        pipeline.compute(np.zeros((3, 2)))
    with pytest.raises(ConfigError, match=r"levels\[1\]\.every cuts groups by time and this step has no timestamps"):
        pipeline.step(np.zeros((1, 2)), pipeline.start(1))
    events = FeaturePipeline([{"kind": "calendar_boundaries", "levels": [{"every_events": 2}]}], COLUMNS)
    np.testing.assert_array_equal(events.compute(np.zeros((5, 2)))[:, 0], [1, 0, 1, 0, 1])  # no timestamps needed
    with pytest.raises(DataValidationError, match=r"pipeline\[0\] \(calendar_boundaries\): no column 'flag'; available columns: price, mark"):
        FeaturePipeline([{"kind": "calendar_boundaries", "levels": [{"column": "flag"}]}], COLUMNS)


def test_boundary_levels_of_a_model_config():
    levels = [{"units": 32, "every": "1s"}, {"units": 64, "every": "1D", "tz": "America/New_York"}, {"units": 64}]
    assert boundary_levels(levels, "m.levels") == [{"every": "1s"}, {"every": "1D", "tz": "America/New_York"}]
    for bad in ([{"units": 8}], "1s", [{"units": 8}, 3]):
        with pytest.raises(ConfigError, match=r"m.levels must be a list of at least two tables"):
            boundary_levels(bad, "m.levels")
