"""The segment forecaster (after SegRNN): shapes, chunked = full with carried state, the
standing summary, causality, tick-by-tick = chunked, level-free inputs, saving, training, and the
channel embedding (the id column reaches only the decoder; chunked, step, last-only and saving)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from longstm.errors import ConfigError
from longstm.models.protocol import Forecaster
from longstm.models.registry import build_model
from longstm.models.segment import SegmentGRU
from longstm.models.segment_decoder import SegmentDecoder
from longstm.serve import StreamingPredictor
from longstm.train.config import config_from_dict
from longstm.train.carried import last_step_forecast
from tests.models.trainer_check import assert_trains_through_the_tbptt_trainer

W, UNITS, H, F = 4, 8, 6, 2


def _model(seed=0, residual=True):
    keras.utils.set_random_seed(seed)
    core = SegmentGRU(UNITS, segment=W, features=F)
    return Forecaster(core, head=core.make_head(H), residual_inputs=[0] if residual else [])


def _x(steps=24, batch=3, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, steps, F)).astype("float32")


def test_shapes_and_the_decoder_covers_the_horizon():
    model = _model()
    y, (h, last, seen) = model(_x(), state=model.initial_state(3))
    assert y.shape == (3, 24, H) and h.shape == (3, UNITS) and last.shape == (3, F) and np.all(np.asarray(seen) == 1)
    decoder = model.head
    assert isinstance(decoder, SegmentDecoder) and decoder.positions == 2  # ceil(6 / 4) output segments


def test_chunked_with_carried_state_equals_one_pass():
    model = _model()
    x = _x(48)
    full, _ = model(x, state=model.initial_state(3))
    state, parts = model.initial_state(3), []
    for start in (0, 8, 20, 32):  # chunks of 8, 12, 12 and 16 steps: multiples of w
        stop = {0: 8, 8: 20, 20: 32, 32: 48}[start]
        y, state = model(x[:, start:stop], state=state)
        parts.append(np.asarray(y))
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, atol=1e-5)


def test_the_summary_changes_only_when_a_segment_closes_and_never_reads_ahead():
    core = _model().core
    x = _x(24)
    features, _ = core(x, state=core.initial_state(3))
    features = np.asarray(features)
    assert features.shape == (3, 24, UNITS + W * F + W)  # summary, open segment, its length
    summary = features[..., :UNITS]
    for t in range(1, 24):
        if t % W != W - 1:
            np.testing.assert_array_equal(summary[:, t], summary[:, t - 1])
        else:
            assert not np.allclose(summary[:, t], summary[:, t - 1])
    # the open segment: after the q-th value of a segment, q values relative to the current one
    q = 2
    np.testing.assert_allclose(features[0, q, UNITS : UNITS + (q + 1) * F], (x[0, : q + 1] - x[0, q]).reshape(-1), atol=1e-6)
    at_close = np.concatenate([np.zeros(W * F), np.eye(W)[0]])  # nothing open, length 0
    np.testing.assert_allclose(features[:, W - 1, UNITS:], np.broadcast_to(at_close, (3, W * F + W)), atol=1e-7)
    # causality: rewriting every step after t leaves steps <= t as they were
    for t in (2, 3, 10, 15):
        changed = x.copy()
        changed[:, t + 1 :] = 50.0
        np.testing.assert_array_equal(np.asarray(core(changed, state=core.initial_state(3))[0])[:, : t + 1], features[:, : t + 1])


def test_tick_by_tick_equals_the_chunked_forward():
    model = _model()
    x = _x(20)
    expected, _ = model(x, state=model.initial_state(3))
    np.testing.assert_allclose(_tick_by_tick(model, x), expected, atol=1e-5)


def _tick_by_tick(model, x):
    """`model.step` over every step of `x` from the zero step state, stacked `(batch, steps, outputs)`."""
    state, outputs = model.initial_step_state(len(x)), []
    for x_t in np.moveaxis(x, 1, 0):
        y_t, state = model.step(x_t, state)
        outputs.append(np.asarray(y_t))
    return np.stack(outputs, axis=1)


def test_with_the_residual_a_shift_of_the_inputs_shifts_the_forecast_and_nothing_else():
    model = _model()
    x = _x(16)
    y, _ = model(x, state=model.initial_state(3))
    shifted = x.copy()
    shifted[..., 0] += 7.5
    y_shifted, _ = model(shifted, state=model.initial_state(3))
    np.testing.assert_allclose(np.asarray(y_shifted) - np.asarray(y), 7.5, atol=1e-4)


def test_bad_chunks_and_arguments_are_named():
    model = _model()
    with pytest.raises(ValueError, match=r"multiple of segment=4 steps; got 6"):
        model(_x(6), state=model.initial_state(3))
    with pytest.raises(Exception, match=r"SegmentGRU argument `segment` must be an integer >= 1; got 0"):
        SegmentGRU(8, segment=0)
    with pytest.raises(ValueError, match="made for 2 input columns"):
        model.core(np.zeros((1, 4, 3), "float32"))


def test_keras_round_trip(tmp_path):
    model = _model()
    x = _x(8)
    expected, _ = model(x, state=model.initial_state(3))
    model.save(tmp_path / "segment.keras")
    loaded = keras.saving.load_model(tmp_path / "segment.keras")
    got, _ = loaded(x, state=loaded.initial_state(3))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_registry_builds_it_with_its_decoder_and_a_lag_skip_beside_it():
    raw = {"data": {"path": "x.csv"}, "model": {"name": "segment_gru", "units": 8, "options": {"segment": 4}}}
    model = build_model(config_from_dict(raw).model, 1, 96, residual_inputs=[0])
    assert isinstance(model.core, SegmentGRU) and isinstance(model.head, SegmentDecoder) and model.head.positions == 24
    raw["model"] |= {"lags": 8, "lag_width": 4, "lag_relative": True}
    skip = build_model(config_from_dict(raw).model, 1, 96, residual_inputs=[0])
    y, _ = skip(np.zeros((2, 8, 1), "float32"), state=skip.initial_state(2))
    assert y.shape == (2, 8, 96)


def test_trains_through_the_tbptt_trainer():
    assert_trains_through_the_tbptt_trainer(SegmentGRU(16, segment=4, features=2), chunk=32)


def test_streams_through_the_predictor_tick_by_tick_as_the_batch_model():
    model = _model()
    x = _x(16, batch=2)
    expected, _ = model(x, state=model.initial_state(2))
    predictor = StreamingPredictor(model, n_instruments=2, engine="tf")
    got = np.stack([predictor.update(x[:, t]) for t in range(16)], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_linear_forecast_beside_the_decoder_is_added_to_it_and_survives_a_round_trip(tmp_path):
    """`model.options.linear`: the lag projection's features go through the decoder's linear map
    straight into the forecast."""
    raw = {"model": {"name": "segment_gru", "units": 8, "lags": 8, "lag_width": 6, "dropout": 0.5,
                     "options": {"segment": 4, "linear": True}}}
    keras.utils.set_random_seed(0)
    model = build_model(config_from_dict(raw).model, 1, H, residual_inputs=[0])
    x = np.random.default_rng(2).normal(size=(3, 8, 1)).astype("float32")
    y, _ = model(x, state=model.initial_state(3))
    head = model.head
    assert head.linear == 6 and head.dropout == 0.5 and head.linear_map.kernel.shape == (6, H)
    # The linear part alone: zero the decoder's projection and the forecast is last value + linear map.
    head.project.kernel.assign(np.zeros(head.project.kernel.shape, "float32"))
    head.project.bias.assign(np.zeros(head.project.bias.shape, "float32"))
    features, _ = model.core(x, state=model.core.initial_state(3))
    linear = np.asarray(features)[:, :, -6:] @ np.asarray(head.linear_map.kernel) + np.asarray(head.linear_map.bias)
    got, _ = model(x, state=model.initial_state(3))
    np.testing.assert_allclose(got, linear + x[:, :, :1], atol=1e-5)
    assert not np.allclose(got, y)
    model.save(tmp_path / "linear.keras")
    loaded = keras.saving.load_model(tmp_path / "linear.keras")
    np.testing.assert_allclose(loaded(x, state=loaded.initial_state(3))[0], got, atol=1e-6)
    assert loaded.head.linear == 6 and loaded.head.dropout == 0.5


def test_decoder_dropout_changes_training_outputs_only():
    keras.utils.set_random_seed(0)
    core = SegmentGRU(UNITS, segment=W, features=F, decoder_dropout=0.5)
    model = Forecaster(core, head=core.make_head(H), residual_inputs=[0])
    x = _x(8)
    features, _ = core(x, state=core.initial_state(3))
    inference = np.asarray(model.head(features, training=False))
    np.testing.assert_array_equal(np.asarray(model.head(features, training=False)), inference)
    assert not np.allclose(np.asarray(model.head(features, training=True)), inference)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\); got 1.0"):
        SegmentDecoder(H, W, UNITS, dropout=1.0)


# ---- the channel embedding (`channels`, SegRNN's channel-position embedding) -------------------

C = 3


def _channel_model(seed=0):
    keras.utils.set_random_seed(seed)
    core = SegmentGRU(UNITS, segment=W, features=2, channels=C)
    return Forecaster(core, head=core.make_head(H), residual_inputs=[0])


def _with_ids(values, ids):
    """`values (batch, steps)` and one channel id per row -> `(batch, steps, 2)`."""
    return np.stack([values, np.broadcast_to(np.asarray(ids, "float32")[:, None], values.shape)], axis=-1).astype("float32")


def _channel_x(steps=16, ids=(0, 1, 2)):
    return _with_ids(np.random.default_rng(3).normal(size=(len(ids), steps)), ids)


def test_with_channels_the_id_column_is_embedded_by_the_decoder_only():
    model = _channel_model()
    x = _channel_x()
    y, (h, last, _) = model(x, state=model.initial_state(3))
    assert y.shape == (3, 16, H) and h.shape == (3, UNITS) and last.shape == (3, 1)  # the id keeps no level
    head = model.head
    assert head.position_embedding.shape == (2, UNITS - UNITS // 2) and head.channel_embedding.shape == (C, UNITS // 2)
    # both start standard normal, as SegRNN's (Keras' default normal has std 0.05)
    assert np.std(np.concatenate([np.ravel(head.position_embedding), np.ravel(head.channel_embedding)])) > 0.4
    features, _ = model.core(x, state=model.core.initial_state(3))
    assert features.shape == (3, 16, UNITS + W + W + C)
    np.testing.assert_array_equal(np.asarray(features)[:, :, -C:], np.broadcast_to(np.eye(C)[:, None], (3, 16, C)))
    # The same values under another id: the encoder's features agree but for the one-hot, the forecast differs.
    same = _with_ids(x[..., 0], [2, 0, 1])
    other_features, _ = model.core(same, state=model.core.initial_state(3))
    np.testing.assert_array_equal(np.asarray(other_features)[..., :-C], np.asarray(features)[..., :-C])
    other, _ = model(same, state=model.initial_state(3))
    assert np.all(np.abs(np.asarray(other) - np.asarray(y)).max(axis=(1, 2)) > 1e-4)
    # ... and only through the channel embedding: with all channels embedded alike, the id is moot.
    head.channel_embedding.assign(np.tile(np.asarray(head.channel_embedding)[:1], (C, 1)))
    np.testing.assert_allclose(model(same, state=model.initial_state(3))[0], model(x, state=model.initial_state(3))[0], atol=1e-6)


def test_with_channels_chunked_tick_by_tick_and_last_only_equal_one_pass(tmp_path):
    model = _channel_model()
    x = _channel_x(24)
    full, _ = model(x, state=model.initial_state(3))
    first, state = model(x[:, :8], state=model.initial_state(3))
    second, _ = model(x[:, 8:], state=state)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, atol=1e-5)
    np.testing.assert_allclose(_tick_by_tick(model, x), full, atol=1e-5)
    np.testing.assert_allclose(last_step_forecast(model, x), np.asarray(full)[:, -1], atol=1e-5)
    model.save(tmp_path / "channels.keras")
    loaded = keras.saving.load_model(tmp_path / "channels.keras")
    assert loaded.core.channels == C and loaded.head.channels == C
    np.testing.assert_allclose(loaded(x, state=loaded.initial_state(3))[0], full, atol=1e-6)


def test_the_registry_builds_the_channel_option_and_names_bad_ones():
    raw = {"model": {"name": "segment_gru", "units": 8, "options": {"segment": 4, "channels": 7}}}
    model = build_model(config_from_dict(raw).model, 2, H, residual_inputs=[0])
    assert model.core.channels == 7 and model.head.channels == 7
    raw["model"]["options"]["channels"] = -1
    with pytest.raises(ConfigError, match=r"'model.options.channels' must be an integer >= 0 .*; got -1"):
        build_model(config_from_dict(raw).model, 2, H, residual_inputs=[0])
    with pytest.raises(ValueError, match=r"channels=3\) needs a value column and the channel id column; got features=1"):
        SegmentGRU(UNITS, segment=W, features=1, channels=C)


def _dense_and_gru_weights(model):
    """{path: array} of every Dense and GRU weight of the core and the decoder (not the embeddings)."""
    return {v.path: v.numpy() for v in model.weights if not v.path.endswith("_embedding")}


def test_init_pytorch_starts_every_weight_and_bias_uniform_within_one_over_root_fan_in(tmp_path):
    """SegRNN's code starts PyTorch's way; `init="pytorch"` does, core and decoder alike."""
    raw = {"model": {"name": "segment_gru", "units": 16, "dropout": 0.5,
                     "options": {"segment": 4, "channels": 3, "norm": "window", "init": "pytorch"}}}
    keras.utils.set_random_seed(0)
    model = build_model(config_from_dict(raw).model, 2, H, residual_inputs=[0])
    last_step_forecast(model, np.zeros((2, 8, 2), "float32"))  # builds it
    fan_in = {"segment_embedding": 4, "segment_gru": 16, "decoder_gru": 16, "decoder_projection": 16}
    weights = _dense_and_gru_weights(model)
    assert {path.split("/")[-2] for path in weights} == set(fan_in)  # each layer seen, kernel and bias
    for path, value in weights.items():
        bound = fan_in[path.split("/")[-2]] ** -0.5
        assert np.abs(value).max() <= bound and value.any(), path
        assert value.size < 16 or np.abs(value).max() > 0.8 * bound, path  # spread over the range
    assert model.head.init == "pytorch"
    keras.utils.set_random_seed(0)
    again = build_model(config_from_dict(raw).model, 2, H, residual_inputs=[0])
    last_step_forecast(again, np.zeros((2, 8, 2), "float32"))
    for (path, value), other in zip(weights.items(), _dense_and_gru_weights(again).values()):
        np.testing.assert_array_equal(value, other, err_msg=path)  # the seed decides the start
    raw["model"]["options"]["init"] = "keras"
    keras.utils.set_random_seed(0)
    plain = build_model(config_from_dict(raw).model, 2, H, residual_inputs=[0])
    last_step_forecast(plain, np.zeros((2, 8, 2), "float32"))
    biases = [value for path, value in _dense_and_gru_weights(plain).items() if path.endswith("bias")]
    assert biases and all(not value.any() for value in biases)  # Keras starts biases at zero
    restored = SegmentGRU.from_config(model.core.get_config())
    assert restored.init == "pytorch" and restored.make_head(H).init == "pytorch"
    raw["model"]["options"]["init"] = "torch"
    with pytest.raises(ConfigError, match=r"'model.options.init' must be one of \['keras', 'pytorch'\]; got 'torch'"):
        build_model(config_from_dict(raw).model, 2, H, residual_inputs=[0])
    with pytest.raises(ValueError, match=r"SegmentDecoder init must be one of \('keras', 'pytorch'\); got 'xavier'"):
        SegmentDecoder(H, W, UNITS, init="xavier")
