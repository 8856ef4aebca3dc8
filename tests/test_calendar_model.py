"""The calendar hierarchy (`longstm.models.calendar`): the documented row rule against a NumPy
oracle, chunked = full for ragged groups, causality in values and flags, empty groups, step =
call, round trips, the registry and a few TBPTT updates, and the checks of its arguments."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from longstm.data.lanes import LaneWindows
from longstm.errors import ConfigError, DataValidationError
from longstm.models.calendar import CalendarLSTM
from longstm.models.protocol import Forecaster
from longstm.models.registry import build_model
from longstm.serve import StreamingPredictor
from longstm.serve.export import export_model
from longstm.train.config import TrainConfig, config_from_dict
from longstm.train.trainer import Trainer
from tests.serve.test_export_families import _stepped as exported_steps

MODES = ("parallel", "sequential")
LEVELS = [{"units": 4, "every": "1s"}, {"units": 5, "every_events": 3}, {"units": 3}]
WIDTH = 12  # 4 + 5 + 3


def _model(mode, levels=LEVELS, seed=0, features=2):
    """A model with random biases too: from zero biases, a step on zeros from zeros stays zero,
    which would hide a step taken for a group that does not exist."""
    keras.utils.set_random_seed(seed)
    model = CalendarLSTM(levels, mode=mode)
    model.build((None, None, features + len(levels) - 1))
    rng = np.random.default_rng(seed)
    for cell in model.cells:
        cell.bias.assign(rng.normal(scale=0.5, size=cell.bias.shape).astype("float32"))
    return model


def _inputs(steps=40, batch=3, seed=0, p_second=0.25, p_minute=0.08):
    """Two features, then the level-0 and level-1 flags: ragged groups, a level-1 flag without a
    level-0 flag (the model must take the max), and a flag at row 0 (no row before it)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, 2))
    flags = np.stack([rng.random((batch, steps)) < p_second, rng.random((batch, steps)) < p_minute], axis=-1)
    flags[0, 0, 0] = True
    flags[1, 5] = (False, True)
    return np.concatenate([x, flags], axis=-1).astype("float32")


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _lstm_step(cell, x, h, c):
    z = x @ np.asarray(cell.kernel) + h @ np.asarray(cell.recurrent_kernel) + np.asarray(cell.bias)
    i, f, g, o = np.split(z, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def _oracle(model, inputs):
    """The module docstring's row rule, one lane and one row at a time, in NumPy."""
    levels = len(model.cells)
    outputs = np.zeros(inputs.shape[:2] + (model.units,))
    for lane in range(inputs.shape[0]):
        h = [np.zeros(width) for width in model.level_widths]
        c = [np.zeros(width) for width in model.level_widths]
        seen = False
        for t, row in enumerate(inputs[lane]):
            flags = row[2:] > 0.5
            closes = [flags[level:].any() for level in range(levels - 1)]
            summary = h[0]  # level 0's output at row t - 1
            for level in range(1, levels):
                if closes[level - 1] and seen:
                    h[level], c[level] = _lstm_step(model.cells[level], summary, h[level], c[level])
                summary = h[level]
            if model.mode == "parallel" and closes[0]:
                h[0], c[0] = np.zeros_like(h[0]), np.zeros_like(c[0])
            h[0], c[0] = _lstm_step(model.cells[0], row[:2], h[0], c[0])
            outputs[lane, t] = np.concatenate(h)
            seen = True
    return outputs


def _chunked(model, inputs, cuts, call=None):
    call = call or (lambda x, state: model(x, state=state))
    state, pieces = model.initial_state(inputs.shape[0]), []
    for start, stop in zip(cuts[:-1], cuts[1:]):
        y, state = call(inputs[:, start:stop], state)
        pieces.append(np.asarray(y))
    return np.concatenate(pieces, axis=1), state


@pytest.mark.parametrize("mode", MODES)
def test_each_row_follows_the_documented_rule(mode):
    model = _model(mode)
    inputs = _inputs()
    outputs, _ = model(inputs)
    assert outputs.shape == (3, 40, WIDTH)
    np.testing.assert_allclose(np.asarray(outputs), _oracle(model, inputs), atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_chunked_with_carried_state_equals_one_pass_for_ragged_groups(mode):
    model = _model(mode)
    inputs = _inputs(steps=64, seed=1)
    inputs[:, 20:50, 2:] = 0.0  # one group of 30 rows at both levels, longer than the 8-row chunks below
    inputs[:, 50, 2] = 1.0
    full, full_state = model(inputs)
    rng = np.random.default_rng(2)
    for _ in range(3):  # random chunk lengths: groups straddle chunk boundaries
        cuts = np.unique(np.concatenate([[0, 64], rng.integers(1, 64, size=8)]))
        got, state = _chunked(model, inputs, list(cuts))
        np.testing.assert_allclose(got, np.asarray(full), atol=1e-5, err_msg=str(cuts))
        for a, b in zip(keras.tree.flatten(state), keras.tree.flatten(full_state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    compiled = tf.function(lambda x, state: model(x, state=state), reduce_retracing=True)  # dynamic shapes in a graph
    for cuts in (list(range(0, 65, 8)), [0, 1, 2, 21, 22, 49, 50, 51, 64]):  # chunks inside the long group; one-row chunks
        got, _ = _chunked(model, inputs, cuts, call=compiled)
        np.testing.assert_allclose(got, np.asarray(full), atol=1e-5, err_msg=str(cuts))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("t", [0, 6, 19, 30])
def test_future_values_and_future_flags_change_no_earlier_output(mode, t):
    model = _model(mode)
    inputs = _inputs(seed=3)
    base = np.asarray(model(inputs)[0])
    future = inputs.copy()
    rng = np.random.default_rng(t)
    future[:, t + 1 :, :2] += 5.0 * rng.normal(size=future[:, t + 1 :, :2].shape)  # new values
    future[:, t + 1 :, 2:] = rng.random(future[:, t + 1 :, 2:].shape) < 0.5  # new timestamps: new flags
    moved = np.asarray(model(future)[0])
    np.testing.assert_allclose(moved[:, : t + 1], base[:, : t + 1], atol=1e-6)
    assert np.abs(moved[:, t + 1 :] - base[:, t + 1 :]).max() > 1e-3  # the perturbation did reach the model


@pytest.mark.parametrize("mode", MODES)
def test_a_group_summary_is_used_at_the_row_that_closes_it(mode):
    """The last row of a group reaches level 1 at the next row (the flag), not before, not later."""
    model = _model(mode)
    inputs = _inputs(seed=4)
    inputs[:, :, 2:] = 0.0
    inputs[:, [8, 16, 24], 2] = 1.0  # level-0 groups of 8 rows
    base = np.asarray(model(inputs)[0])
    bumped = inputs.copy()
    bumped[:, 15, :2] += 3.0  # the last row of the group that row 16 closes
    moved = np.asarray(model(bumped)[0])
    level_1 = slice(4, 9)
    np.testing.assert_array_equal(moved[:, :16, level_1], base[:, :16, level_1])
    assert np.abs(moved[:, 16, level_1] - base[:, 16, level_1]).max() > 1e-4


def test_sequential_depths_are_the_packed_row_length_and_the_most_closes_of_a_lane():
    inputs = np.zeros((2, 32, 4), "float32")
    inputs[:, ::8, 2] = 1.0  # level-0 groups of 8 rows; row 0's flag closes nothing in a fresh lane
    inputs[0, 16, 3] = 1.0  # one level-1 close in lane 0
    inputs[1, 3, 2] = 1.0  # lane 1: one more level-0 close, groups of 3 and 5 rows
    assert _model("parallel").sequential_depths(inputs) == (8, 4, 1)
    assert _model("sequential").sequential_depths(inputs) == (32, 4, 1)
    state = _model("parallel").initial_state(2)
    carried = state[:-1] + (np.ones((2, 1), "float32"),)  # after earlier rows: row 0's flags close groups
    assert _model("parallel").sequential_depths(inputs, carried) == (8, 5, 1)


def _second_flags(seconds):
    """What the data layer builds for `every = "1s"`: a new floor(second) starts a group."""
    whole = np.floor(seconds)
    return np.concatenate([[1.0], (whole[1:] != whole[:-1]).astype(float)])


@pytest.mark.parametrize("mode", MODES)
def test_empty_seconds_have_no_row_and_the_level_above_takes_no_step_for_them(mode):
    levels = [{"units": 4, "every": "1s"}, {"units": 5}]
    model = _model(mode, levels)
    ticks = np.array([0.1, 0.4, 1.2, 1.3, 1.9, 2.5, 3.05, 3.5, 3.6, 4.2, 5.7, 5.8])
    gapped = ticks + np.where(np.arange(12) >= 6, 9.0, 0.0)  # nine empty seconds before the 7th tick
    values = np.random.default_rng(5).normal(size=(1, 12, 2))
    flags = _second_flags(ticks)
    np.testing.assert_array_equal(_second_flags(gapped), flags)
    as_inputs = lambda f: np.concatenate([values, f[None, :, None]], axis=-1).astype("float32")
    outputs = np.asarray(model(as_inputs(flags))[0])
    np.testing.assert_array_equal(np.asarray(model(as_inputs(_second_flags(gapped)))[0]), outputs)
    # Level 1 steps once per flag after the first row, never for the empty seconds.
    upper = outputs[0, :, 4:]
    stepped = np.flatnonzero(np.abs(np.diff(upper, axis=0)).max(axis=1) > 0) + 1
    np.testing.assert_array_equal(stepped, np.flatnonzero(flags[1:]) + 1)
    np.testing.assert_array_equal(upper[: stepped[0]], 0.0)  # zeros before its first step


@pytest.mark.parametrize("mode", MODES)
def test_step_row_by_row_equals_call_and_mixes_with_chunks(mode):
    model = Forecaster(_model(mode), outputs=2, residual_inputs=[0, 1])
    inputs = _inputs(steps=20, seed=6)
    expected = np.asarray(model(inputs)[0])
    assert model.streamable() is None and model.step_state_is_call_state()
    state, got = model.initial_step_state(3), []
    for t in range(20):
        y_t, state = model.step(inputs[:, t], state)
        got.append(np.asarray(y_t))
        if t == 9:
            rest, _ = model(inputs[:, 10:], state=state)
    np.testing.assert_allclose(np.stack(got, axis=1), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(rest), expected[:, 10:], atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_through_the_packed_groups_equal_those_of_the_row_by_row_steps(mode):
    model = Forecaster(_model(mode), outputs=1)
    inputs = _inputs(steps=12, seed=8)
    model(inputs)

    def gradients(forward):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(forward()))
        return tape.gradient(loss, model.trainable_variables)

    def by_steps():
        state, outputs = model.initial_step_state(3), []
        for t in range(12):
            y_t, state = model.step(inputs[:, t], state)
            outputs.append(y_t)
        return tf.stack(outputs, axis=1)

    for got, expected in zip(gradients(lambda: model(inputs)[0]), gradients(by_steps)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-4)


def test_streams_tick_by_tick_through_the_predictor_as_the_batch_model():
    model = Forecaster(_model("parallel"), outputs=1)
    inputs = _inputs(steps=12, batch=2, seed=9)
    expected = np.asarray(model(inputs)[0])
    predictor = StreamingPredictor(model, n_instruments=2, engine="tf")
    got = np.stack([predictor.update(inputs[:, t]) for t in range(12)], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    warmed = StreamingPredictor(model, n_instruments=2, engine="tf")  # warm-up runs chunks of rows
    warmed.warm_up(np.transpose(inputs[:, :8], (1, 0, 2)))
    np.testing.assert_allclose(np.stack([warmed.update(inputs[:, t]) for t in range(8, 12)], axis=1), expected[:, 8:], atol=1e-5)


def test_under_mixed_precision_call_and_step_run_in_float16_and_agree():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = Forecaster(CalendarLSTM(LEVELS), outputs=1)
        inputs = _inputs(steps=8, seed=11)
        expected, state = model(inputs)
        assert expected.dtype == "float16" and all(t.dtype == "float16" for t in keras.tree.flatten(state))
        step_state, got = model.initial_step_state(3), []
        for t in range(8):
            y_t, step_state = model.step(inputs[:, t], step_state)
            got.append(np.asarray(y_t, "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    np.testing.assert_allclose(np.stack(got, axis=1), np.asarray(expected, "float32"), atol=1e-2)


def test_exports_to_tflite_with_the_batch_predictions(tmp_path):
    """TFLite goes through a SavedModel of the step; the flags arrive with each tick."""
    model = Forecaster(_model("parallel"), outputs=1)
    inputs = _inputs(steps=10, seed=10)[:1]
    expected = np.asarray(model(inputs)[0])[0]
    path = export_model(model, tmp_path / "step.tflite", "tflite")
    np.testing.assert_allclose(np.asarray(exported_steps(path, "tflite", inputs)), expected, atol=1e-5)
    assert json.loads(Path(str(path) + ".json").read_text())["tflite_ops"] == "TFLITE_BUILTINS"


@pytest.mark.parametrize("mode", MODES)
def test_keras_round_trip_inside_a_forecaster(tmp_path, mode):
    model = Forecaster(_model(mode), outputs=1)
    inputs = _inputs(steps=16, seed=7)
    expected, expected_state = model(inputs)
    model.save(tmp_path / "calendar.keras")
    loaded = keras.saving.load_model(tmp_path / "calendar.keras")
    got, got_state = loaded(inputs)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6)
    for a, b in zip(keras.tree.flatten(got_state), keras.tree.flatten(expected_state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert loaded.core.get_config()["levels"] == LEVELS and loaded.core.mode == mode


def test_boundaries_list_the_specs_for_the_data_layer_and_are_read_only():
    levels = [{"units": 4, "every": "1D", "tz": "America/New_York"}, {"units": 5, "column": "session"}, {"units": 3}]
    model = CalendarLSTM(levels)
    assert model.boundaries == ({"every": "1D", "tz": "America/New_York"}, {"column": "session"})
    assert model.n_boundaries == 2
    model.boundaries[0]["every"] = "1s"
    assert model.boundaries[0]["every"] == "1D"
    with pytest.raises(AttributeError):
        model.boundaries = ()


def _registry_config(**options):
    return config_from_dict({"data": {"path": "x.csv"}, "model": {"name": "calendar_lstm", "units": 8, "options": options}}).model


def test_the_registry_builds_it_and_it_trains_a_few_tbptt_updates():
    keras.utils.set_random_seed(0)
    options = {"levels": [{"units": 8, "every_events": 4}, {"units": 8}], "mode": "parallel"}
    model = build_model(_registry_config(**options), 2, 1)
    assert isinstance(model.core, CalendarLSTM) and model.core.boundaries == ({"every_events": 4},)
    t = np.arange(4 * 8 * 32, dtype=np.float32)
    values = np.stack([np.sin(2 * np.pi * t / 37.0), (t % 4 == 0).astype(np.float32)], axis=1)
    losses = []

    class Record:
        def on_step_end(self, trainer, step, logs):
            losses.append(logs["loss"])

    config = TrainConfig(lanes=4, k1=32, k2=32, epochs=2, learning_rate=2e-2)
    Trainer(model, config, callbacks=[Record()], progress=False).fit(LaneWindows(values, lanes=4, k1=32, k2=32, target_columns=[0]))
    assert len(losses) == 16 and np.isfinite(losses).all()
    assert np.mean(losses[-4:]) < 0.3 * np.mean(losses[:2]), losses


def test_registry_errors_name_the_option():
    with pytest.raises(ConfigError, match=r"'model.options.levels' is required for model 'calendar_lstm'"):
        build_model(_registry_config(), 3, 1)
    with pytest.raises(ConfigError, match=r"unknown keys \['stride'\]"):
        build_model(_registry_config(levels=LEVELS, stride=2), 4, 1)
    with pytest.raises(DataValidationError, match=r"expected at least 3 input columns; got 2"):
        build_model(_registry_config(levels=LEVELS), 2, 1)


def test_too_few_input_columns_is_one_line():
    with pytest.raises(DataValidationError, match=r"CalendarLSTM with 3 levels reads its features then 2 boundary flag column\(s\): expected at least 3 input columns; got 2"):
        _model("parallel")(np.zeros((1, 4, 2), "float32"))


@pytest.mark.parametrize(
    "levels, mode, message",
    [
        ([{"units": 4}], "parallel", r"`levels` must be a list of at least two tables"),
        ("1s", "parallel", r"`levels` must be a list of at least two tables .*; got '1s'"),
        ([4, {"units": 4}], "parallel", r"`levels\[0\]` must be a table .*; got 4"),
        ([{"units": 4, "every": "1s", "stride": 2}, {"units": 4}], "parallel", r"`levels\[0\]` has unknown key\(s\) stride"),
        ([{"units": 4, "every": "1s"}, {"units": 4, "every": "1min"}], "parallel", r"`levels\[1\]` has unknown key\(s\) every; the top level has only units"),
        ([{"units": 4}, {"units": 4}], "parallel", r"`levels\[0\]` needs exactly one of every, every_events, column; got none"),
        ([{"units": 4, "every": "1s", "every_events": 3}, {"units": 4}], "parallel", r"got every, every_events"),
        ([{"units": 4, "every": "1W"}, {"units": 4}], "parallel", r"`levels\[0\].every` must be a fixed positive span .*; got '1W'"),
        ([{"units": 4, "every": "soon"}, {"units": 4}], "parallel", r"got 'soon'"),
        ([{"units": 4, "every_events": 0}, {"units": 4}], "parallel", r"`levels\[0\].every_events` must be a positive integer; got 0"),
        ([{"units": 4, "column": ""}, {"units": 4}], "parallel", r"`levels\[0\].column` must be a column name; got ''"),
        ([{"units": 4, "every_events": 2, "tz": "UTC"}, {"units": 4}], "parallel", r"`levels\[0\].tz` applies to every"),
        ([{"units": 4, "every": "1D", "tz": "Mars/Olympus"}, {"units": 4}], "parallel", r"IANA time zone .*; got 'Mars/Olympus'"),
        ([{"units": 0, "every": "1s"}, {"units": 4}], "parallel", r"`levels\[0\].units` must be an integer >= 1; got 0"),
        ([{"every": "1s"}, {"units": 4}], "parallel", r"`levels\[0\].units` must be an integer >= 1; got None"),
        (LEVELS, "fast", r"`mode` must be one of \['parallel', 'sequential'\]; got 'fast'"),
    ],
)
def test_bad_levels_and_modes_raise_config_errors(levels, mode, message):
    with pytest.raises(ConfigError, match=message):
        CalendarLSTM(levels, mode=mode)
