"""Window-style training (`train.mode = "windows"`): the batches cover every window once per epoch,
the loss is the hand-computed MSE of the last-step forecast, the last-only forward equals the
full call's last step, NLinear's start equals NLinear, an interrupted run resumes exactly, the MAE
loss (`train.loss = "mae"`) is the hand-computed one, and under the ETT protocol the channel id
(`model.options.channels`) reaches the model in training, window scoring and streaming."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from longstm.cli import main
from longstm.data import bundled_path
from longstm.data.windows import WindowIndex
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.ett import evaluate_ett
from longstm.evaluate.ett_trained import TrainedEtt
from longstm.models.lags import LinearLagSkip
from longstm.models.linear_baseline import LinearForecaster
from longstm.models.protocol import Forecaster, KerasRNNStack
from longstm.models.registry import build_model
from longstm.models.segment import SegmentGRU
from longstm.train.config import TrainConfig, config_from_dict
from longstm.train.logs import read_step_log
from longstm.train.trainer import Trainer
from longstm.train.carried import last_step_forecast
from longstm.train.windows import LookbackWindows, WindowEngine, init_linear_forecast, use_window_training

L, H, W = 8, 3, 4


def _series(rows=60, columns=1, seed=0):
    t = np.arange(rows, dtype=np.float32)[:, None]
    noise = np.random.default_rng(seed).normal(scale=0.1, size=(rows, columns))
    return (np.sin(t / 3.0 + np.arange(columns)) + noise).astype(np.float32)


def _windows(values, batch=4, seed=0, shuffle=True):
    return LookbackWindows(values, WindowIndex(len(values), L, H).starts(), L, H, batch, shuffle=shuffle, seed=seed)


def _segment_model(seed=0, lags=0, linear=False, units=4, norm="segment"):
    keras.utils.set_random_seed(seed)
    core = SegmentGRU(units, segment=W, features=1, linear_width=H if linear else 0, norm=norm)
    head = core.make_head(H)
    if lags:
        core = LinearLagSkip(core, lags=lags, width=H, features=1)
    return Forecaster(core, head=head, residual_inputs=[0])


def test_every_window_once_per_epoch_in_a_new_order_with_padding_masked():
    values = _series(40)
    windows = _windows(values, batch=4)
    count = len(windows.starts)  # 40 - 8 - 3 + 1 = 30 windows: 7 full batches and one of 2
    assert (count, len(windows), windows.k1, windows.k2, windows.lanes) == (30, 8, 1, L, 4)
    seen = {}
    for epoch in (0, 1):
        batches = list(windows.for_epoch(epoch).dataset())
        starts = np.concatenate([b["start"].numpy()[b["mask"].numpy() > 0] for b in batches])
        assert sorted(starts.tolist()) == list(range(30))
        assert batches[-1]["mask"].numpy().tolist() == [1, 1, 0, 0]
        seen[epoch] = starts
        first = batches[0]
        s = int(first["start"].numpy()[0])
        np.testing.assert_array_equal(first["x"].numpy()[0], values[s : s + L])
        np.testing.assert_array_equal(first["y"].numpy()[0], values[s + L : s + L + H, 0])
    assert not np.array_equal(seen[0], seen[1])
    # a resumed epoch continues with the windows an uninterrupted one uses from that update on
    later = list(windows.for_epoch(1).dataset(first_step=5))
    np.testing.assert_array_equal(np.concatenate([b["start"].numpy() for b in later])[:6], seen[1][20:26])


def test_the_last_only_forward_equals_the_last_step_of_the_full_call():
    x = _series(3 * 16, 1).reshape(3, 16, 1)
    keras.utils.set_random_seed(1)
    lstm = Forecaster(KerasRNNStack([keras.layers.LSTM(5)]), outputs=H, residual_inputs=[0])
    for model in (_segment_model(), _segment_model(lags=L), _segment_model(lags=16, linear=True), lstm):
        full, _ = model(x, state=model.initial_state(3))
        np.testing.assert_allclose(np.asarray(last_step_forecast(model, x)), np.asarray(full)[:, -1], atol=1e-5)


def test_the_window_loss_is_the_mse_of_the_last_step_forecasts_and_training_lowers_it():
    values = _series(40)
    windows = _windows(values, batch=4)
    model = _segment_model()
    model(values[None, :L], state=model.initial_state(1))  # built before its optimizer
    engine = WindowEngine(model, keras.optimizers.SGD(0.05))
    batch = next(iter(windows.for_epoch(0).dataset()))
    starts = batch["start"].numpy()[:3]
    by_hand = []
    for s in starts:  # each window from a zero state through the full model: its last output
        full, _ = model(values[None, s : s + L], state=model.initial_state(1))
        by_hand.append(np.mean((np.asarray(full)[0, -1] - values[s + L : s + L + H, 0]) ** 2))
    mask = np.array([1, 1, 1, 0], np.float32)  # the fourth window is left out
    loss_sum, count = engine.compiled_train_step(batch["x"], batch["y"], mask)
    assert float(count) == 3
    np.testing.assert_allclose(float(loss_sum), np.sum(by_hand), rtol=1e-5)
    after, _, _, _ = engine.compiled_eval_step(batch["x"], batch["y"], mask)
    assert float(after) < float(loss_sum)  # one SGD step on that loss lowered it


def test_nlinear_start_forecasts_what_nlinear_forecasts():
    values = _series(120)
    windows = _windows(values, batch=8)
    model = _segment_model(lags=L, linear=True)
    model(values[None, :L], state=model.initial_state(1))  # its variables
    linear = init_linear_forecast(model, windows)
    reference = LinearForecaster(H, subtract_last=True).fit(values, L)
    np.testing.assert_allclose(linear.weights, reference.weights, atol=1e-6)
    x = np.stack([values[s : s + L] for s in (0, 17, 50)])
    np.testing.assert_allclose(np.asarray(last_step_forecast(model, x)), reference.predict_windows(x)[:, :, 0], atol=1e-4)
    with pytest.raises(ConfigError, match=r"lag_width >= H = 3 .* got lag_width=2"):
        keras.utils.set_random_seed(0)
        core = SegmentGRU(4, segment=W, features=1, linear_width=2)
        narrow = Forecaster(LinearLagSkip(core, lags=L, width=2, features=1), head=core.make_head(H), residual_inputs=[0])
        narrow(values[None, :L], state=narrow.initial_state(1))
        init_linear_forecast(narrow, windows)


def test_nlinear_start_refuses_windows_with_room_for_others_between_them():
    values = _series(60)
    starts = np.r_[0:5, 30:35]  # 15 rows between the runs (and after them) could hold windows NLinear must not see
    windows = LookbackWindows(values, starts, L, H, 4)
    model = _segment_model(lags=L, linear=True)
    model(values[None, :L], state=model.initial_state(1))
    with pytest.raises(DataValidationError, match=r"less than lags \+ H = 11 rows between runs; got gaps of \[0, 15\] rows"):
        init_linear_forecast(model, windows)


def _fit(tmp_path, name, stop_at=None, resume=False, norm="segment"):
    values = _series(80)
    windows, validation = _windows(values[:60], batch=8, seed=3), _windows(values[40:], batch=8, shuffle=False)
    config = TrainConfig(lanes=8, k1=1, k2=L, epochs=3, learning_rate=1e-2, checkpoint_every=2, mode="windows")

    class Interrupt:
        def on_step_end(self, trainer, step, logs):
            if step == stop_at:
                raise KeyboardInterrupt

    trainer = Trainer(_segment_model(seed=5, norm=norm), config, run_dir=tmp_path / name, progress=False, callbacks=[Interrupt()])
    use_window_training(trainer, windows)
    try:
        trainer.fit(windows, validation, resume=resume)
    except KeyboardInterrupt:
        return None
    return trainer


@pytest.mark.parametrize("norm", ["segment", "window"])  # "window": a window-only model, never called per step
def test_an_interrupted_run_resumes_to_the_losses_and_weights_of_an_uninterrupted_one(tmp_path, norm):
    whole = _fit(tmp_path, "whole", norm=norm)  # 50 windows: 7 updates per epoch, 3 epochs
    assert _fit(tmp_path, "cut", stop_at=9, norm=norm) is None  # checkpoint at update 8, mid-epoch 2
    resumed = _fit(tmp_path, "cut", resume=True, norm=norm)
    assert resumed.global_step == whole.global_step == 21
    losses = [row["loss"] for row in read_step_log(tmp_path / "whole")]
    resumed_losses = [row["loss"] for row in read_step_log(tmp_path / "cut")]
    np.testing.assert_allclose(resumed_losses, losses, rtol=1e-5)
    assert [round(r["val_mse"], 6) for r in resumed.history] == [round(r["val_mse"], 6) for r in whole.history]
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bad_settings_are_named():
    values = _series(40)
    trainer = Trainer(_segment_model(), TrainConfig(lanes=4, k1=4, k2=L, mode="windows"), progress=False)
    with pytest.raises(ConfigError, match=r"k1 = 1 step; the trainer's config says k1=4, k2=8"):
        use_window_training(trainer, _windows(values))
    with pytest.raises(ConfigError, match=r"'train.mode' must be one of \('tbptt', 'windows'\); got 'window'"):
        config_from_dict({"train": {"mode": "window"}})
    with pytest.raises(ConfigError, match=r"'train.strategy' must be \"default\" with train.mode"):
        config_from_dict({"train": {"mode": "windows", "strategy": "mirrored"}})
    with pytest.raises(DataValidationError, match=r"must leave 8 \+ 3 rows inside the 40 rows; got starts from 0 to 35"):
        LookbackWindows(values, np.arange(36), L, H, 4)
    model_config = config_from_dict({"model": {"name": "segment_gru", "options": {"segment": 4, "linear": True}}}).model
    with pytest.raises(ConfigError, match=r"needs 'model.lags' >= 1 .* got linear=True, lags=0"):
        build_model(model_config, 1, H, [0])


def test_under_the_ett_protocol_the_kept_validation_mse_is_that_of_the_validation_windows(tmp_path):
    """Channel-independent window training on 1,200 ETTh1 rows: the validation MSE the trainer kept
    is the MSE of the model's last-step forecasts over every validation window of every channel,
    and the model then scores the test windows (window mode) and streams with carried state."""
    pd.read_csv(bundled_path("ETTh1")).iloc[:1200].to_csv(tmp_path / "ett.csv", index=False)
    config = config_from_dict({
        "seed": 1, "model": {"name": "segment_gru", "units": 6, "residual": True, "options": {"segment": 8}},
        "train": {"mode": "windows", "lanes": 64, "epochs": 2, "learning_rate": 3e-3}, "eval": {"warmup": 32},
    })
    protocol = TrainedEtt(config, tmp_path / "ett.csv", 32, run_dir=tmp_path / "runs", channel_independent=True)
    trained = protocol.train(8)
    assert trained.summary["train_mode"] == "windows" and trained.trainer.config.k2 == 32
    val_start, val_stop = protocol.split.val
    starts = WindowIndex(len(protocol.scaled), 32, 8, start=val_start, stop=val_stop).starts()
    x = np.stack([protocol.scaled[s : s + 32] for s in starts])  # (windows, 32, 7)
    y = np.stack([protocol.scaled[s + 32 : s + 40] for s in starts])
    forecast = protocol.forecaster(8, "window").predict_windows(x)  # (windows, 8, 7)
    np.testing.assert_allclose(trained.summary["val_mse"], np.mean((forecast - y) ** 2), rtol=1e-4)
    results = protocol.evaluate([8], modes=("window", "stream"))
    assert np.isfinite(results["window"][0].mse) and np.isfinite(results["stream"][0].mse)


def test_eval_ett_with_a_dropped_last_batch_also_scores_all_windows_of_the_same_model(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    pd.read_csv(bundled_path("ETTh1")).iloc[:1200].to_csv(tmp_path / "ett.csv", index=False)
    (tmp_path / "seg.toml").write_text(
        '[model]\nname = "segment_gru"\nunits = 4\nresidual = true\noptions = { segment = 8 }\n'
        '[train]\nmode = "windows"\nlanes = 64\nepochs = 1\n'
    )
    out = tmp_path / "out"
    assert main(["eval", "ett", "--data", str(tmp_path / "ett.csv"), "--model", str(tmp_path / "seg.toml"), "--lookback", "32",
                 "--horizons", "8", "--mode", "window", "--drop-last-batch", "32", "--channel-independent", "--out", str(out)]) == 0
    table = pd.read_csv(out / "ett_results.csv").sort_values("windows")
    dropped, every = (evaluate_ett(tmp_path / "ett.csv", "repeat", 32, [8], drop_last_batch=n)[0] for n in (32, None))
    assert table["windows"].tolist() == [dropped.windows, every.windows] and every.windows % 32 != 0
    np.testing.assert_allclose(table["repeat_mse"], [dropped.mse, every.mse])
    assert table["train_seconds"].nunique() == 1  # one trained model, scored twice
    assert table["mse"].iloc[0] != table["mse"].iloc[1]


def test_with_train_loss_mae_the_window_loss_is_the_mae_of_the_last_step_forecasts():
    values = _series(40)
    model = _segment_model()
    model(values[None, :L], state=model.initial_state(1))
    engine = WindowEngine(model, keras.optimizers.SGD(0.05), loss="mae")
    batch = next(iter(_windows(values, batch=4).for_epoch(0).dataset()))
    forecast = np.asarray(last_step_forecast(model, batch["x"]))
    error = forecast - batch["y"].numpy()
    mask = np.array([1, 1, 0, 1], np.float32)
    loss_sum, count = engine.compiled_train_step(batch["x"], batch["y"], mask)
    assert float(count) == 3
    np.testing.assert_allclose(float(loss_sum), np.sum(np.abs(error).mean(axis=1) * mask), rtol=1e-5)
    assert not np.isclose(float(loss_sum), np.sum((error**2).mean(axis=1) * mask), rtol=1e-3)
    after_sum, after_abs, _, _ = engine.compiled_eval_step(batch["x"], batch["y"], mask)
    assert float(after_abs) < float(loss_sum)  # one SGD step on the MAE lowered it
    error = np.asarray(last_step_forecast(model, batch["x"])) - batch["y"].numpy()
    np.testing.assert_allclose(float(after_sum), np.sum((error**2).mean(axis=1) * mask), rtol=1e-5)  # evaluation stays MSE
    with pytest.raises(ConfigError, match=r"'train.loss' must be one of \('mse', 'mae'\) \(\"mae\" with train.mode = \"windows\" only\); got 'mae'"):
        config_from_dict({"train": {"loss": "mae"}})
    with pytest.raises(ConfigError, match=r"'train.loss' must be one of .*; got 'huber'"):
        config_from_dict({"train": {"mode": "windows", "loss": "huber"}})
    assert config_from_dict({"train": {"mode": "windows", "loss": "mae"}}).train.loss == "mae"


def test_under_the_ett_protocol_the_channel_id_reaches_the_model_in_window_and_stream_scoring(tmp_path):
    """`model.options.channels`: each channel-independent window carries its channel's id as a
    last input column, in training, window scoring and the carried-state stream pass alike."""
    pd.read_csv(bundled_path("ETTh1")).iloc[:1000].to_csv(tmp_path / "ett.csv", index=False)
    raw = {"seed": 1, "model": {"name": "segment_gru", "units": 4, "residual": True, "options": {"segment": 8, "channels": 7}},
           "train": {"mode": "windows", "lanes": 64, "epochs": 1, "loss": "mae"}}
    protocol = TrainedEtt(config_from_dict(raw), tmp_path / "ett.csv", 16, run_dir=tmp_path / "runs", channel_independent=True)
    train_windows, _ = protocol._window_sets(protocol.protocol_config(8), 8)
    first = train_windows.batch(train_windows.starts[[0, -1]])["x"][:2]
    np.testing.assert_array_equal(first[:, :, 1], [[0] * 16, [6] * 16])  # channels 0 and 6, ids unscaled
    model = protocol.train(8).trainer.model
    test_start = protocol.split.test[0]
    x = protocol.scaled[None, test_start : test_start + 16]  # one test window, (1, 16, 7)
    by_channel = np.concatenate([last_step_forecast(model, _ids_beside(x[0, :, c], c)) for c in range(7)])  # (7, 8)
    np.testing.assert_allclose(protocol.forecaster(8, "window").predict_windows(x)[0], by_channel.T, atol=1e-5)
    stream = protocol.forecaster(8, "stream")
    row = stream.rows[0]
    steps = -(-(row + 1) // 8) * 8  # rows 0..row, zero-padded to whole segments (the model is causal)
    lanes = np.stack([_ids_beside(np.pad(protocol.scaled[: row + 1, c], (0, steps - row - 1)), c)[0] for c in range(7)])
    carried, _ = model(lanes, state=model.initial_state(7))  # one pass from the first row, a lane per channel
    np.testing.assert_allclose(stream.predict_at_rows(np.array([row]))[0], np.asarray(carried)[:, row].T, atol=1e-4)
    for options, independent in (({"segment": 8, "channels": 7}, False), ({"segment": 8, "channels": 3}, True)):
        raw["model"]["options"] = options
        with pytest.raises(ConfigError, match=r"'model.options.channels' needs --channel-independent and at least the series' 7"):
            TrainedEtt(config_from_dict(raw), tmp_path / "ett.csv", 16, channel_independent=independent)


def _ids_beside(values, channel):
    """One series `values (steps,)` as a `(1, steps, 2)` window with its channel id beside it."""
    return np.stack([values, np.full(len(values), channel)], axis=-1)[None].astype(np.float32)


def test_a_window_only_model_trains_and_scores_in_window_mode_only(tmp_path, monkeypatch):
    """`model.options.norm = "window"` (SegRNN's normalisation): window training builds it without a
    per-step call, `eval ett`'s default scores it in window mode alone, and an explicit stream
    mode is a one-line error (exit 2 from the CLI)."""
    monkeypatch.setenv("COLUMNS", "200")
    pd.read_csv(bundled_path("ETTh1")).iloc[:1000].to_csv(tmp_path / "ett.csv", index=False)
    (tmp_path / "seg.toml").write_text(
        '[model]\nname = "segment_gru"\nunits = 4\nresidual = true\noptions = { segment = 8, channels = 7, norm = "window" }\n'
        '[train]\nmode = "windows"\nlanes = 64\nepochs = 1\nloss = "mae"\n'
    )
    args = ["eval", "ett", "--data", str(tmp_path / "ett.csv"), "--model", str(tmp_path / "seg.toml"), "--lookback", "16",
            "--horizons", "8", "--channel-independent"]
    assert main(args + ["--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "ett_results.csv")
    assert table["mode"].tolist() == ["window"] and np.isfinite(table["mse"]).all()
    assert main(args + ["--mode", "stream"]) == 2
    config = config_from_dict({"model": {"name": "segment_gru", "units": 4, "residual": True,
                                         "options": {"segment": 8, "norm": "window"}}, "train": {"mode": "windows", "epochs": 1}})
    protocol = TrainedEtt(config, tmp_path / "ett.csv", 16, channel_independent=True)
    assert protocol.modes == ("window",)
    with pytest.raises(ConfigError, match=r"no carried-state stream mode; score it with --mode window"):
        protocol.evaluate([8], modes=("window", "stream"))
