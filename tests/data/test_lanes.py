"""Lanes and TBPTT(k1, k2) windows: every target row exactly once, resets, burn-in, memmaps."""

import numpy as np
import pytest

from longstm.data.lanes import LaneWindows, NpyRows, as_row_source, open_npy
from longstm.errors import DataValidationError


def _series(rows=300, features=3, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, features)).astype(np.float32)


def _loss_rows(lanes: LaneWindows):
    """(row, lane, update) of every step that carries a loss, with the checks every batch must pass."""
    found = []
    positions = np.arange(lanes.k2)
    for step in range(len(lanes)):
        batch = lanes.batch(step)
        for lane in range(lanes.lanes):
            rows = batch["start"][lane] + positions[batch["mask"][lane] > 0]
            found += [(int(row), lane, step) for row in rows]
    return found


CASES = [
    dict(lanes=1, k1=16, k2=16),
    dict(lanes=4, k1=16, k2=16),
    dict(lanes=3, k1=10, k2=24),
    dict(lanes=5, k1=7, k2=7, burn_in=5, segments=[50, 51, 130, 220]),
    dict(lanes=2, k1=8, k2=20, burn_in=3, segments=[100], offset=2, horizon=3),
]


@pytest.mark.parametrize("case", CASES)
def test_every_target_row_gets_exactly_one_loss_term_except_after_resets(case):
    values = _series()
    lanes = LaneWindows(values, target_columns=[0, 2], **case)
    found = _loss_rows(lanes)
    rows = [row for row, _, _ in found]
    assert len(rows) == len(set(rows)), "a row got two loss terms"
    reach = case.get("offset", 1) + case.get("horizon", 1) - 1
    masked_after_reset = max(case.get("burn_in", 0), case["k2"] - case["k1"])
    bounds = [0, *case.get("segments", []), len(values)]
    expected = set()
    for start, stop in zip(bounds[:-1], bounds[1:]):
        expected |= set(range(start + masked_after_reset, stop - reach))
    assert set(rows) == expected


@pytest.mark.parametrize("case", CASES)
def test_inputs_and_targets_are_the_rows_they_claim(case):
    values = _series()
    lanes = LaneWindows(values, feature_columns=[2, 0], target_columns=[1], **case)
    offset, horizon = case.get("offset", 1), case.get("horizon", 1)
    for step in range(len(lanes)):
        batch = lanes.batch(step)
        for lane in range(lanes.lanes):
            start = batch["start"][lane]
            for position in np.flatnonzero(batch["mask"][lane]):
                row = start + position
                np.testing.assert_array_equal(batch["x"][lane, position], values[row, [2, 0]])
                expected = [values[row + offset + h, 1] for h in range(horizon)]
                np.testing.assert_array_equal(batch["y"][lane, position], expected)


def test_windows_never_straddle_a_segment_and_reset_at_each_segment_start():
    values = np.ones((200, 1), np.float32)
    segments = [64, 90, 150]
    lanes = LaneWindows(values, lanes=2, k1=16, k2=16, segments=segments)
    bounds = np.array([0, *segments, 200])
    seen_starts = set()
    for step in range(len(lanes)):
        batch = lanes.batch(step)
        for lane in range(2):
            start = batch["start"][lane]
            if start < 0:
                assert batch["reset"][lane] and not batch["mask"][lane].any()
                continue
            segment = np.searchsorted(bounds, start, side="right") - 1
            nonzero = np.flatnonzero(batch["x"][lane, :, 0])
            # inputs past the segment's end are zero padding
            assert start + nonzero.max() < bounds[segment + 1]
            if start in bounds:
                assert batch["reset"][lane], f"window at segment start {start} without reset"
                seen_starts.add(int(start))
            elif step > 0 and not batch["reset"][lane]:
                previous = lanes.batch(step - 1)["start"][lane]
                assert start == previous + 16  # carried state continues exactly where it stopped
    assert {64, 90, 150} <= seen_starts


def test_lane_starting_mid_segment_warms_up_on_the_past_only():
    # Burn-in (30) longer than a window (20): the warm-up spans two windows of each lane, so the
    # first loss row is found by following the lane across windows, not in its first window.
    values = _series(400)
    lanes = LaneWindows(values, lanes=4, k1=20, k2=20, burn_in=30)
    found = _loss_rows(lanes)
    first_batch = lanes.batch(0)
    assert first_batch["reset"].all()
    for lane in range(4):
        read_from = int(first_batch["start"][lane])
        loss_from, loss_step = min((row, step) for row, owner, step in found if owner == lane)
        # Lane 0 starts at the segment start and masks its first 30 steps; lanes 1-3 start at
        # their share of the rows (100, 200, 300) after reading the 30 rows before it.
        assert loss_from == 100 * lane + 30 * (lane == 0)
        assert loss_from - read_from == 30
        assert loss_step == 1  # the burn-in runs through the whole first window
        # The warm-up is one carried-state pass over consecutive past rows: no reset after the
        # first window, and the inputs are exactly rows read_from .. loss_from - 1.
        warm_up = []
        for step in range(loss_step + 1):
            batch = lanes.batch(step)
            assert batch["start"][lane] == read_from + 20 * step
            assert batch["reset"][lane] == (step == 0)
            warm_up.append(batch["x"][lane])
        np.testing.assert_array_equal(np.concatenate(warm_up)[: loss_from - read_from], values[read_from:loss_from])


def test_validation_rows_warm_up_from_the_preceding_split():
    values = _series(500)
    lanes = LaneWindows(values, lanes=1, k1=32, k2=32, rows=(400, 499), burn_in=100)
    first = lanes.batch(0)
    assert first["start"][0] == 300 and first["reset"][0]
    rows = {row for row, _, _ in _loss_rows(lanes)}
    assert rows == set(range(400, 499))


def test_memmap_and_pread_sources_give_the_same_batches(tmp_path):
    values = _series(333, 4)
    np.save(tmp_path / "series.npy", values)
    mapped = np.load(tmp_path / "series.npy", mmap_mode="r")
    assert isinstance(as_row_source(mapped), NpyRows)
    reader = open_npy(tmp_path / "series.npy")
    np.testing.assert_array_equal(reader[10:20], values[10:20])
    kwargs = dict(lanes=3, k1=12, k2=20, segments=[100], target_columns=[3])
    in_memory = LaneWindows(values, **kwargs)
    for source in (mapped, reader):
        on_disk = LaneWindows(source, **kwargs)
        assert len(on_disk) == len(in_memory)
        for step in (0, len(in_memory) // 2, len(in_memory) - 1):
            for key, array in in_memory.batch(step).items():
                np.testing.assert_array_equal(on_disk.batch(step)[key], array)


def test_dataset_has_known_cardinality_fixed_shapes_and_resumes_at_a_step():
    import tensorflow as tf

    lanes = LaneWindows(_series(), lanes=4, k1=16, k2=24, target_columns=[0])
    dataset = lanes.dataset()
    assert int(dataset.cardinality()) == len(lanes)
    assert dataset.element_spec["x"].shape == (4, 24, 3)
    elements = list(dataset)
    assert len(elements) == len(lanes)
    resumed = list(lanes.dataset(first_step=3))
    assert int(lanes.dataset(3).cardinality()) == len(lanes) - 3
    for key in ("x", "y", "mask", "reset", "start"):
        np.testing.assert_array_equal(resumed[0][key].numpy(), lanes.batch(3)[key])
        np.testing.assert_array_equal(elements[3][key].numpy(), lanes.batch(3)[key])
    assert all(isinstance(e["x"], tf.Tensor) for e in elements[:1])


def test_scaling_is_applied_to_inputs_and_targets():
    values = _series()
    mean, std = values.mean(0), values.std(0)
    lanes = LaneWindows(values, lanes=1, k1=50, k2=50, mean=mean, std=std, target_columns=[1])
    batch = lanes.batch(0)
    np.testing.assert_allclose(batch["x"][0, 5], (values[5] - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(batch["y"][0, 5, 0], (values[6, 1] - mean[1]) / std[1], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lanes=2, k1=32, k2=16), "k1 must be <= k2.*k1=32, k2=16"),
        (dict(lanes=0, k1=8), "lanes must be an integer >= 1; got 0"),
        (dict(lanes=2, k1=8, target_columns=[5]), r"target_columns must be column indices in \[0, 3\); got \[5\]"),
        (dict(lanes=2, k1=8, segments=[400]), r"segment starts must be rows in \[0, 300\); got \[400\]"),
        (dict(lanes=2, k1=8, rows=(250, 200)), r"rows must satisfy 0 <= first < stop <= 300; got \(250, 200\)"),
        (dict(lanes=2, k1=8, offset=400), "no rows to learn from"),
        (dict(lanes=2, k1=8, mean=np.zeros(3), std=np.zeros(3)), "std must be positive"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(DataValidationError, match=message):
        LaneWindows(_series(), **kwargs)


def test_a_file_that_is_not_npy_is_a_clear_error(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataValidationError, match="not a readable .npy file"):
        open_npy(tmp_path / "bad.npy")


def test_any_object_with_a_2d_shape_and_row_slices_is_a_row_source():
    values = _series(200)

    class Rows:  # e.g. a reader of Parquet row groups
        shape = values.shape

        def __getitem__(self, index):
            return values[index]

    kwargs = dict(lanes=2, k1=16, k2=16)
    for step in (0, 3):
        for key, array in LaneWindows(values, **kwargs).batch(step).items():
            np.testing.assert_array_equal(LaneWindows(Rows(), **kwargs).batch(step)[key], array)


def test_a_weight_column_multiplies_the_loss_mask_and_is_never_scaled():
    values = _series(200, 3)
    weight = np.random.default_rng(1).choice([0.0, 1.0, 2.5], 200).astype(np.float32)
    values = np.concatenate([values, weight[:, None]], axis=1)
    mean, std = np.full(4, 3.0, np.float32), np.full(4, 2.0, np.float32)
    common = dict(lanes=3, k1=8, k2=12, feature_columns=[0, 1], target_columns=[2], segments=[90], burn_in=2, mean=mean, std=std)
    plain, weighted = LaneWindows(values, **common), LaneWindows(values, weight_column=3, **common)
    positions = np.arange(12)
    for step in range(len(plain)):
        a, b = plain.batch(step), weighted.batch(step)
        np.testing.assert_array_equal(a["x"], b["x"])
        for lane in range(3):
            rows = np.clip(a["start"][lane] + positions, 0, 199)
            expected = a["mask"][lane] * np.where(a["start"][lane] >= 0, weight[rows], 0)
            np.testing.assert_array_equal(b["mask"][lane], expected)
    with pytest.raises(DataValidationError, match=r"weight_column must be a column index in \[0, 4\); got 4"):
        LaneWindows(values, lanes=2, k1=8, weight_column=4)
