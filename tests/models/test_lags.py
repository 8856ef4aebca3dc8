"""LinearLagSkip: a linear map over the last `lags` inputs beside a recurrent core, as state."""

import keras
import numpy as np
import pandas as pd
import pytest

from longstm.errors import ConfigError
from longstm.models.lags import LinearLagSkip
from longstm.models.protocol import Forecaster, KerasRNNStack, reset_lanes

LAGS = 10


def _series(seed=0, batch=3, steps=40, features=2):
    return np.random.default_rng(seed).normal(size=(batch, steps, features)).astype("float32")


def _model(lags=LAGS, width=5, units=4, features=None, relative=False):
    keras.utils.set_random_seed(1)
    return LinearLagSkip(
        KerasRNNStack([keras.layers.LSTM(units)]), lags=lags, width=width, features=features, relative=relative
    )


def _chunked(model, x, sizes):
    state = model.initial_state(x.shape[0])
    pieces, start = [], 0
    for size in sizes:
        y, state = model(x[:, start : start + size], state=state)
        pieces.append(np.asarray(y))
        start += size
    assert start == x.shape[1]
    return np.concatenate(pieces, axis=1), state


@pytest.mark.parametrize(
    "lags, sizes, relative",
    [
        (LAGS, [3] * 13 + [1], False),  # every chunk shorter than lags - 1: the buffer is partly the old buffer
        (LAGS, [9, 9, 9, 9, 4], False),  # exactly lags - 1
        (LAGS, [16, 2, 22], False),  # longer, shorter, longer
        (1, [7, 7, 7, 7, 12], False),  # lags = 1: the buffer is empty, the projection a Dense over x_t
        (LAGS, [3] * 13 + [1], True),  # relative: x_{t-1} of a chunk's first step comes from the buffer
        (2, [1, 16, 2, 21], True),  # the smallest relative buffer: one row
    ],
)
def test_chunked_with_carried_state_equals_full_forward(lags, sizes, relative):
    x = _series()
    model = _model(lags=lags, relative=relative)
    full, (full_core, full_buffer) = model(x)
    pieces, (core, buffer) = _chunked(model, x, sizes)
    assert full.shape == (3, 40, 4 + 5)
    np.testing.assert_allclose(pieces, np.asarray(full), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(buffer), np.asarray(full_buffer))
    np.testing.assert_array_equal(np.asarray(buffer), x[:, 40 - (lags - 1) :])
    for a, b in zip(keras.tree.flatten(core), keras.tree.flatten(full_core)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


@pytest.mark.parametrize("t", [0, 13, 39])
def test_causal_perturbing_step_t_leaves_earlier_outputs_unchanged(t):
    x = _series()
    model = _model()
    base = np.asarray(model(x)[0])
    bumped = x.copy()
    bumped[:, t] += 3.0
    moved = np.asarray(model(bumped)[0])
    np.testing.assert_array_equal(moved[:, :t], base[:, :t])
    projection_change = np.abs(moved[:, t:, 4:] - base[:, t:, 4:]).max(axis=(0, 2))
    assert projection_change[: min(LAGS, 40 - t)].min() > 1e-4  # the steps whose window holds t
    np.testing.assert_allclose(moved[:, t + LAGS :, 4:], base[:, t + LAGS :, 4:], atol=1e-5)  # and no later one


def test_projection_is_a_dense_map_of_the_zero_padded_window():
    x = _series()
    model = _model()
    outputs = np.asarray(model(x)[0])
    kernel = np.asarray(model.projection.kernel)  # (lags, features, width)
    bias = np.asarray(model.projection.bias)
    padded = np.concatenate([np.zeros((3, LAGS - 1, 2), np.float32), x], axis=1)
    for t in (0, 4, LAGS - 1, 25, 39):
        window = padded[:, t : t + LAGS]  # x[t - lags + 1 .. t], zeros before the series
        expected = window.reshape(3, -1) @ kernel.reshape(-1, 5) + bias
        np.testing.assert_allclose(outputs[:, t, 4:], expected, atol=1e-5)
    core_only = np.asarray(model.core(x)[0])
    np.testing.assert_array_equal(outputs[:, :, :4], core_only)


def test_relative_core_reads_step_changes_and_the_window_relative_to_the_current_value():
    x = _series()
    model = _model(relative=True)
    outputs = np.asarray(model(x)[0])
    padded = np.concatenate([np.zeros((3, LAGS - 1, 2), np.float32), x], axis=1)
    changes = x - padded[:, LAGS - 2 : LAGS - 2 + 40]  # x_t - x_{t-1}, x_{-1} = 0 (zero buffer)
    np.testing.assert_allclose(outputs[:, :, :4], np.asarray(model.core(changes)[0]), atol=1e-6)
    kernel, bias = np.asarray(model.projection.kernel), np.asarray(model.projection.bias)
    for t in (0, LAGS - 1, 25, 39):
        window = padded[:, t : t + LAGS] - x[:, t : t + 1]
        expected = window.reshape(3, -1) @ kernel.reshape(-1, 5) + bias
        np.testing.assert_allclose(outputs[:, t, 4:], expected, atol=1e-5)


def test_relative_forecaster_moves_by_exactly_a_constant_shift_of_the_series():
    x = _series()
    model = Forecaster(_model(relative=True), outputs=4, residual_inputs=[0, 1])
    history, rest = x[:, : LAGS - 1], x[:, LAGS - 1 :]
    core_state = model.core.core.initial_state(3)
    base = np.asarray(model(rest, state=(core_state, history))[0])
    shifted = np.asarray(model(rest + 7.5, state=(core_state, history + 7.5))[0])
    np.testing.assert_allclose(shifted, base + 7.5, atol=1e-4)
    plain = Forecaster(_model(relative=False), outputs=4, residual_inputs=[0, 1])
    moved = np.asarray(plain(rest + 7.5, state=(core_state, history + 7.5))[0])
    assert np.abs(moved - np.asarray(plain(rest, state=(core_state, history))[0]) - 7.5).max() > 1e-2


def test_reset_lanes_zeroes_only_the_chosen_lanes_buffer():
    x = _series()
    model = _model()
    _, state = model(x[:, :20])
    reset = reset_lanes(state, np.array([False, True, False]))
    buffer, kept = np.asarray(state[1]), np.asarray(reset[1])
    np.testing.assert_array_equal(kept[1], 0.0)
    np.testing.assert_array_equal(kept[[0, 2]], buffer[[0, 2]])
    assert np.abs(buffer[1]).max() > 0
    # The reset lane continues exactly as a series that starts there.
    continued = np.asarray(model(x[:, 20:], state=reset)[0])
    fresh = np.asarray(model(x[1:2, 20:])[0])
    np.testing.assert_allclose(continued[1:2], fresh, atol=1e-6)


@pytest.mark.parametrize("relative", [False, True])
def test_keras_round_trip_gives_identical_outputs(tmp_path, relative):
    x = _series()
    model = Forecaster(_model(relative=relative), outputs=3, residual_inputs=[1])
    expected, state = model(x[:, :25])
    expected_next, _ = model(x[:, 25:], state=state)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.core, LinearLagSkip) and loaded.core.lags == LAGS and loaded.core.width == 5
    assert loaded.core.relative is relative
    got, got_state = loaded(x[:, :25], state=loaded.initial_state(3))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    np.testing.assert_array_equal(np.asarray(loaded(x[:, 25:], state=got_state)[0]), np.asarray(expected_next))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lags=0), r"`lags` must be an integer >= 1; got 0"),
        (dict(lags=2.5), r"`lags` must be an integer >= 1; got 2.5"),
        (dict(lags=True), r"`lags` must be an integer >= 1; got True"),
        (dict(lags=4, width=0), r"`width` must be an integer >= 1; got 0"),
        (dict(lags=4, features=-1), r"`features` must be an integer >= 1; got -1"),
        (dict(lags=4, core=keras.layers.Dense(3)), r"`core` must be a longstm RecurrentModel; got Dense"),
        (dict(lags=1, relative=True), r"relative=True\) needs lags >= 2 .*got lags=1"),
        (dict(lags=4, relative="yes"), r"`relative` must be True or False; got 'yes'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    kwargs = {"core": KerasRNNStack([keras.layers.LSTM(2)])} | kwargs
    with pytest.raises(ConfigError, match=message):
        LinearLagSkip(**kwargs)


def test_state_shape_needs_the_feature_count_and_must_fit_the_inputs():
    with pytest.raises(ConfigError, match="needs the number of input features"):
        _model().initial_state(2)
    assert _model(features=2).initial_state(2)[1].shape == (2, LAGS - 1, 2)
    model = _model()
    x = _series()
    _, (core_state, buffer) = model(x)
    with pytest.raises(ValueError, match=r"buffer must have shape .*\(batch, 9, 2\).*got \(3, 9, 3\)"):
        model(x, state=(core_state, np.zeros((3, LAGS - 1, 3), np.float32)))
    with pytest.raises(ValueError, match=r"state must be \(core_state, buffer\); got 1 entries"):
        model(x, state=(core_state,))


# ---- config, trainer and streaming --------------------------------------------------------------


def _config_dict(tmp_path, **model):
    rows = 240
    t = np.arange(rows)
    pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
            "load": np.sin(2 * np.pi * t / 24.0) + 0.1 * np.cos(t / 7.0),
            "temp": np.cos(2 * np.pi * t / 24.0),
        }
    ).to_csv(tmp_path / "s.csv", index=False)
    return {
        "data": {"path": str(tmp_path / "s.csv"), "targets": ["temp"], "horizon": 3},
        "model": {"units": 4, "residual": True, **model},
        "train": {"lanes": 2, "k1": 16, "k2": 24, "epochs": 1},
        "eval": {"lanes": 1, "warmup": 0},
    }


def test_config_lags_wraps_the_core_and_survives_the_saved_config(tmp_path):
    from longstm.train.config import config_from_dict, load_config
    from longstm.train.run import build_trainer, load_data

    config = config_from_dict(_config_dict(tmp_path, lags=30, lag_width=7), source="test.toml")
    (tmp_path / "saved.toml").write_text(config.to_toml())
    again = load_config(tmp_path / "saved.toml")
    assert (again.model.lags, again.model.lag_width) == (30, 7)
    model = build_trainer(again, load_data(again), progress=False).model
    assert isinstance(model.core, LinearLagSkip) and (model.core.lags, model.core.width) == (30, 7)
    assert model.core.initial_state(2)[1].shape == (2, 29, 2)  # built from the config: features known
    plain = config_from_dict(_config_dict(tmp_path), source="test.toml")
    assert plain.model.lags == 0 and not isinstance(build_trainer(plain, load_data(plain), progress=False).model.core, LinearLagSkip)


@pytest.mark.parametrize(
    "model, message",
    [
        (dict(lags=-1), r"test.toml: 'model.lags' must be an integer >= 0; got -1"),
        (dict(lags=2.5), r"test.toml: 'model.lags' must be an integer; got 2.5"),
        (dict(lags="336"), r"test.toml: 'model.lags' must be an integer; got '336'"),
        (dict(lags=24, lag_width=0), r"test.toml: 'model.lag_width' must be an integer >= 1; got 0"),
        (dict(lag_relative=True), r"test.toml: 'model.lag_relative = true' needs 'model.lags' >= 2 .*got lags=0"),
        (dict(lags=24, lag_relative="yes"), r"test.toml: 'model.lag_relative' must be"),
    ],
)
def test_bad_config_values_are_config_errors(tmp_path, model, message):
    from longstm.train.config import config_from_dict

    with pytest.raises(ConfigError, match=message):
        config_from_dict(_config_dict(tmp_path, **model), source="test.toml")


def test_trains_with_tbptt_and_streams_from_the_run_as_predicted(tmp_path):
    """The trainer runs TBPTT updates (windows of k2 = 24 run as 16 + 8 steps: one chunk longer and
    one shorter than lags - 1 = 11) with the buffer carried; the run then streams tick by tick and
    equals the trainer's own predictions."""
    from longstm.serve import StreamingPredictor
    from longstm.train.config import config_from_dict
    from longstm.train.run import predict_run, train_from_config

    raw = _config_dict(tmp_path, lags=12, lag_width=4)
    raw["data"]["split"] = [0.8, 0.0, 0.2]  # no validation pass: the test budget
    config = config_from_dict(raw, source="test.toml")
    updates = []

    class Record:
        def on_step_end(self, trainer, step, logs):
            updates.append(logs["loss"])

    run = tmp_path / "run"
    scores = train_from_config(config, run, progress=False, callbacks=[Record()])
    assert len(updates) >= 3 and np.isfinite(updates).all()
    assert np.isfinite(scores["test"]["mse"])
    expected = predict_run(run, tmp_path / "s.csv")
    predictor = StreamingPredictor.from_run(run)
    assert predictor.engine == "tf"
    raw = pd.read_csv(tmp_path / "s.csv")
    got = predictor.update_many(raw[predictor.column_names].to_numpy()[:150])  # 256-step chunks: all ticked
    got = np.concatenate([got, predictor.update_many(raw[predictor.column_names].to_numpy()[150:])])
    rows = expected["row"].to_numpy()
    names = list(expected.columns[2:])
    np.testing.assert_allclose(got[rows], expected[names].to_numpy(), rtol=1e-5, atol=1e-4)


def test_streaming_refuses_a_lag_skip_around_a_hierarchical_core():
    from longstm.models.hierarchical import HierarchicalLSTM
    from longstm.serve import StreamingPredictor

    model = Forecaster(LinearLagSkip(HierarchicalLSTM([(4, 2), (3, 1)], mode="sequential"), lags=3), outputs=1)
    model(np.zeros((1, 4, 2), np.float32))
    with pytest.raises(ConfigError, match="LinearLagSkip around a HierarchicalLSTM .* cannot stream"):
        StreamingPredictor(model)
    plain = Forecaster(_model(), outputs=1)
    plain(np.zeros((1, 4, 2), np.float32))
    with pytest.raises(ConfigError, match="NumPy streaming engine cannot run this model: its core LinearLagSkip"):
        StreamingPredictor(plain, engine="numpy")


def test_streams_tick_by_tick_and_exports_as_the_chunked_model(tmp_path):
    from longstm.serve.export import export_predictor
    from longstm.serve import StreamingPredictor

    x = _series(batch=1, steps=20)
    model = Forecaster(_model(lags=6, width=3), outputs=2, residual_inputs=[0, 1])
    full = np.asarray(model(x)[0])[0]
    predictor = StreamingPredictor(model)
    ticks = np.stack([predictor.update(row) for row in x[0]])  # chunks of one step: shorter than lags - 1
    np.testing.assert_allclose(ticks, full, atol=1e-5)
    loaded = StreamingPredictor.from_saved(export_predictor(predictor, tmp_path / "step.keras", "keras"))
    np.testing.assert_allclose(loaded.update_many(x[0]), full, atol=1e-5)


# ---- does it help: a pure period-24 pattern -----------------------------------------------------


def _fit_next_step(core, x, y, updates=100):
    import tensorflow as tf

    model = Forecaster(core, outputs=1)
    optimizer = keras.optimizers.Adam(1e-2)
    model(x[:, :1])
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x)[0][:, 24:, 0] - y[:, 24:]) ** 2)  # after one full period
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    for _ in range(updates):
        loss = step()
    return float(loss)


def test_lags_learn_a_periodic_pattern_an_lstm4_does_not_in_the_same_budget():
    pattern = np.random.default_rng(3).normal(size=24).astype("float32")  # not a sinusoid: no easy recurrence
    starts = np.arange(8) * 3
    series = np.stack([np.tile(pattern, 5)[s : s + 97] for s in starts])[..., None]  # 8 phases
    x, y = series[:, :-1], series[:, 1:, 0]
    keras.utils.set_random_seed(0)
    plain = _fit_next_step(KerasRNNStack([keras.layers.LSTM(4)]), x, y)
    keras.utils.set_random_seed(0)
    lagged = _fit_next_step(LinearLagSkip(KerasRNNStack([keras.layers.LSTM(4)]), lags=24, width=4), x, y)
    # x[t + 1] = x[t - 23] is inside the window of 24: a linear read-out, learnt within the budget.
    assert lagged < 0.05 * pattern.var(), (lagged, plain)
    assert lagged < 0.1 * plain, (lagged, plain)
