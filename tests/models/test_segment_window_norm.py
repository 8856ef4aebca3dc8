"""The segment forecaster with SegRNN's own normalisation (`norm="window"`): every value of a
look-back window minus the window's last value, the GRU from zeros, the decoder from its last
state. Checked against a NumPy copy of SegRNN's encoder; the model is window-only (no per-step
call, step or stream) and the registry, window training and the ETT protocol treat it so."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from longstm.errors import ConfigError
from longstm.models.protocol import Forecaster
from longstm.models.registry import build_model
from longstm.models.segment import SegmentGRU
from longstm.serve import StreamingPredictor
from longstm.train.carried import last_step_forecast
from longstm.train.config import config_from_dict

W, UNITS, H = 4, 8, 6


def _model(seed=0, channels=0, features=1, norm="window"):
    keras.utils.set_random_seed(seed)
    core = SegmentGRU(UNITS, segment=W, features=features, channels=channels, norm=norm)
    model = Forecaster(core, head=core.make_head(H), residual_inputs=[0])
    last_step_forecast(model, np.zeros((1, 3 * W, features), np.float32))  # builds it
    return model


def _windows(batch=5, steps=3 * W, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, steps, 1)).astype("float32")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _segrnn_encoder(core, x, revin=False):
    """SegRNN's encoder in NumPy: x - x[:, -1] (or, RevIN, (x - mean) / sqrt(var + 1e-5)),
    segments of w, Dense + ReLU, a GRU (Keras' reset_after form) from zeros; returns the last
    state `(batch, units)`."""
    kernel, bias = (np.asarray(v) for v in core.embed.weights)
    w_x, w_h, b = (np.asarray(v) for v in core.cell.weights)
    b_x, b_h = b
    values = x[..., 0].astype(np.float64)
    if revin:
        relative = (values - values.mean(axis=1, keepdims=True)) / np.sqrt(values.var(axis=1, keepdims=True) + 1e-5)
    else:
        relative = values - values[:, -1:]
    segments = relative.reshape(x.shape[0], -1, W)
    h = np.zeros((x.shape[0], UNITS))
    for j in range(segments.shape[1]):
        e = np.maximum(segments[:, j] @ kernel + bias, 0.0)
        gx, gh = e @ w_x + b_x, h @ w_h + b_h
        z = _sigmoid(gx[:, :UNITS] + gh[:, :UNITS])
        r = _sigmoid(gx[:, UNITS:2 * UNITS] + gh[:, UNITS:2 * UNITS])
        candidate = np.tanh(gx[:, 2 * UNITS:] + r * gh[:, 2 * UNITS:])
        h = z * h + (1.0 - z) * candidate
    return h


def test_the_encoder_is_segrnns_reading_of_the_window_relative_to_its_last_value():
    model, x = _model(), _windows()
    features, _ = model.core.last_step(x, state=model.initial_state(len(x)))
    np.testing.assert_allclose(np.asarray(features), _segrnn_encoder(model.core, x), atol=1e-5)
    # No open segment, no phase: the decoder starts from the GRU state itself, as SegRNN's.
    assert features.shape == (5, UNITS) and model.head.adapt is None


def test_every_segment_is_read_relative_to_the_windows_last_value_not_its_own():
    model, x = _model(), _windows()
    moved = x.copy()
    moved[:, :W] += 1.0  # the first segment's level, its shape unchanged
    before = np.asarray(last_step_forecast(model, x))
    after = np.asarray(last_step_forecast(model, moved))
    assert np.abs(after - before).max() > 1e-3  # a per-segment (level-free) reading would not see it
    shifted = x + 2.5  # the whole window: the forecast moves by the same amount, nothing else
    np.testing.assert_allclose(np.asarray(last_step_forecast(model, shifted)), before + 2.5, atol=1e-4)


def test_with_channels_the_id_column_reaches_the_decoder_only():
    model = _model(channels=3, features=2)
    values = _windows(batch=3)
    x = np.concatenate([values, np.broadcast_to(np.arange(3, dtype="float32")[:, None, None], values.shape)], axis=-1)
    features, _ = model.core.last_step(x, state=model.initial_state(3))
    np.testing.assert_allclose(np.asarray(features)[:, :UNITS], _segrnn_encoder(model.core, values), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(features)[:, UNITS:], np.eye(3))


def test_it_is_window_only_and_says_so_for_calls_steps_and_streams():
    model, x = _model(), _windows()
    assert model.window_only and not _plain_segment_model().window_only
    with pytest.raises(ValueError, match=r"norm='window'.*whole look-back windows only.*\(5, 12, 1\)"):
        model.core(x, state=model.initial_state(5))
    with pytest.raises(ValueError, match=r"whole look-back windows only"):
        model.step(x[:, 0], model.initial_step_state(5))
    assert "norm='segment'" in model.streamable()
    with pytest.raises(ConfigError, match=r"forecasts from whole windows only; use norm=.segment."):
        StreamingPredictor(model)


def _plain_segment_model():
    core = SegmentGRU(UNITS, segment=W, features=1)
    return Forecaster(core, head=core.make_head(H))


def test_the_config_round_trip_keeps_the_normalisation():
    model = _model()
    again = SegmentGRU.from_config(model.core.get_config())
    assert again.norm == "window" and again.window_only


def test_the_registry_builds_it_and_names_a_bad_norm():
    def config(norm):
        return config_from_dict({"model": {"name": "segment_gru", "units": UNITS, "options": {"segment": W, "norm": norm}},
                                 "train": {"k1": 3 * W, "k2": 3 * W}}).model

    assert build_model(config("window"), 1, H, residual_inputs=[0]).window_only
    assert not build_model(config("segment"), 1, H, residual_inputs=[0]).window_only
    with pytest.raises(ConfigError, match=r"'model.options.norm' must be one of \['segment', 'window', 'revin'\]; got 'last'"):
        build_model(config("last"), 1, H)
    with pytest.raises(ValueError, match="norm must be one of"):
        SegmentGRU(UNITS, norm="last")


def test_revin_standardises_the_window_and_hands_the_decoder_its_scale_and_offset():
    model, x = _model(norm="revin"), _windows()
    features, _ = model.core.last_step(x, state=model.initial_state(len(x)))
    features = np.asarray(features)
    np.testing.assert_allclose(features[:, :UNITS], _segrnn_encoder(model.core, x, revin=True), atol=1e-5)
    values = x[..., 0].astype(np.float64)
    np.testing.assert_allclose(features[:, UNITS], np.sqrt(values.var(axis=1) + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(features[:, UNITS + 1], values.mean(axis=1) - values[:, -1], atol=1e-5)


def test_revin_forecasts_move_with_the_windows_scale_and_level_and_the_last_value_form_does_not_scale():
    x = _windows()
    revin, window = _model(norm="revin"), _model(norm="window")
    for model, scales in ((revin, True), (window, False)):
        before = np.asarray(last_step_forecast(model, x))
        after = np.asarray(last_step_forecast(model, 3.0 * x - 2.0))
        close = np.allclose(after, 3.0 * before - 2.0, atol=1e-3)
        assert close == scales  # RevIN: decoded * std + mean; the last-value form sees the spread


def test_revin_is_univariate_and_needs_the_residual():
    with pytest.raises(ValueError, match=r"norm='revin'\) is univariate .*got 2 value columns"):
        _model(norm="revin", features=2)
    config = config_from_dict({"model": {"name": "segment_gru", "units": UNITS, "residual": False,
                                         "options": {"segment": W, "norm": "revin"}}, "train": {"k1": 3 * W, "k2": 3 * W}}).model
    with pytest.raises(ConfigError, match=r"needs 'model.residual = true'; got model.residual = false"):
        build_model(config, 1, H)
