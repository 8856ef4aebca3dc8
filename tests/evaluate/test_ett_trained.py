"""Trained models in the ETT protocol: same rows as the baselines, no look-ahead, window mode
from a zero state, stream mode with carried state, config errors, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.cli import main
from longstm.data import bundled_path
from longstm.data.windows import WindowIndex, gather_windows
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.ett import evaluate_ett, prepare_ett
from longstm.evaluate.ett_trained import StreamForecaster, TrainedEtt
from tests.evaluate.test_trained import write_config

LOOKBACK, HORIZON = 48, 12


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ett_trained")
    pd.read_csv(bundled_path("ETTh1")).iloc[:1200].to_csv(folder / "ett.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def trained(folder):
    """A tiny LSTM trained once under the protocol (70/10/20 split of 1,200 hourly rows)."""
    model = TrainedEtt(write_config(folder), folder / "ett.csv", LOOKBACK, run_dir=folder / "runs")
    model.train(HORIZON)
    return model


def perturbed(series, after: int, seed: int = 7):
    """The same series with every row after `after` replaced by noise (another future)."""
    values = series.values.copy()
    values[after + 1 :] = np.random.default_rng(seed).normal(size=values[after + 1 :].shape) * 3
    return type(series)(values, list(series.columns), series.timestamps, series.segments, series.source)


def window_rows(model, horizon=HORIZON):
    test_start, test_stop = model.split.test
    index = WindowIndex(len(model.series), LOOKBACK, horizon, start=test_start, stop=test_stop, segments=model.series.segments)
    return index.starts()


def window_predictions(model, series=None, horizon=HORIZON):
    """Per-window forecasts of both modes, in the protocol's window order."""
    starts = window_rows(model, horizon)
    _, _, _, scaler = prepare_ett(series if series is not None else model.series, LOOKBACK)
    x, _ = gather_windows((series if series is not None else model.series).values, starts, LOOKBACK, horizon, scaler=scaler)
    window = model.forecaster(horizon, "window").predict_windows(x)
    stream = model.forecaster(horizon, "stream").predict_at_rows(starts + LOOKBACK - 1)
    return starts, window, stream


# ---------------------------------------------------------------- ETT


def test_trained_scores_exactly_the_baselines_windows_in_both_modes(trained):
    baseline = evaluate_ett(trained.series, "repeat", LOOKBACK, [HORIZON])[0]
    results = trained.evaluate([HORIZON])
    starts, window, stream = window_predictions(trained)
    _, _, _, scaler = prepare_ett(trained.series, LOOKBACK)
    _, y = gather_windows(trained.series.values, starts, LOOKBACK, HORIZON, scaler=scaler)
    assert len(starts) == baseline.windows
    for mode, forecast in (("window", window), ("stream", stream)):
        (result,) = results[mode]
        assert (result.windows, result.protocol, result.lookback) == (baseline.windows, baseline.protocol, LOOKBACK)
        assert result.mse == pytest.approx(float(np.mean((forecast - y) ** 2)), rel=1e-5)
        assert result.mae == pytest.approx(float(np.mean(np.abs(forecast - y))), rel=1e-5)
    # drop_last_batch cuts both the same way
    dropped = trained.evaluate([HORIZON], modes=("stream",), drop_last_batch=32)["stream"][0]
    assert dropped.windows == evaluate_ett(trained.series, "repeat", LOOKBACK, [HORIZON], drop_last_batch=32)[0].windows
    summary = trained.models[HORIZON].summary
    # Training targets stay in the training part; validation forecasts are the validation windows'.
    assert summary["train_rows"][1] + HORIZON == trained.split.train[1]
    assert summary["validation_rows"] == [trained.split.val[0] + LOOKBACK - 1, trained.split.val[1] - HORIZON]
    assert summary["epochs_run"] == 1 and (trained.run_dir / f"h{HORIZON}" / "protocol.json").exists()


def test_window_mode_is_the_model_run_from_zero_state_and_stream_mode_carries_the_past(trained):
    starts, window, stream = window_predictions(trained)
    model = trained.models[HORIZON].trainer.model
    _, _, _, scaler = prepare_ett(trained.series, LOOKBACK)
    x, _ = gather_windows(trained.series.values, starts[:5], LOOKBACK, HORIZON, scaler=scaler)
    full, _ = model(x, state=model.initial_state(5), training=False)  # head at every step, residual included
    np.testing.assert_allclose(window[:5], np.asarray(full)[:, -1].reshape(5, HORIZON, 7), atol=1e-5)
    # Stream: the output at a window's last row of one forward pass over all rows before it.
    row = int(starts[3]) + LOOKBACK - 1
    everything, _ = model(trained.scaled[None, : row + 1], state=model.initial_state(1), training=False)
    np.testing.assert_allclose(stream[3], np.asarray(everything)[0, -1].reshape(HORIZON, 7), atol=1e-4)
    assert not np.allclose(stream, window, atol=1e-7)  # more history than L does change the state


def test_no_test_target_reaches_any_prediction_and_window_mode_ignores_the_past(trained):
    starts, window, stream = window_predictions(trained)
    last_rows = starts + LOOKBACK - 1
    cut = int(last_rows[len(last_rows) // 2])
    other = TrainedEtt(trained.config, perturbed(trained.series, cut), LOOKBACK)
    other.models = trained.models  # the same weights: the prediction path alone
    _, window_other, stream_other = window_predictions(other, other.series)
    known = last_rows <= cut
    np.testing.assert_array_equal(stream_other[known], stream[known])
    np.testing.assert_array_equal(window_other[known], window[known])
    assert not np.allclose(stream_other[~known], stream[~known])
    # A different past before a window (train rows untouched, so the scaler is the same):
    # window mode does not notice, stream mode does.
    changed = trained.series.values.copy()
    first = int(starts[len(starts) // 2])
    changed[trained.split.train[1] : first] += 1.0
    past = TrainedEtt(trained.config, type(trained.series)(changed, list(trained.series.columns),
                      trained.series.timestamps, trained.series.segments, "past"), LOOKBACK)
    past.models = trained.models
    _, window_past, stream_past = window_predictions(past, past.series)
    later = starts >= first
    np.testing.assert_array_equal(window_past[later], window[later])
    assert not np.array_equal(stream_past[later], stream[later])


def test_training_never_reads_the_test_part(folder, trained):
    """Train again on a series whose test part is noise: the same weights come out."""
    series = perturbed(trained.series, trained.split.val[1] - 1)
    again = TrainedEtt(trained.config, series, LOOKBACK)
    again.train(HORIZON)
    for a, b in zip(trained.models[HORIZON].trainer.model.variables, again.models[HORIZON].trainer.model.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_univariate_setting_trains_on_the_target_alone(folder):
    model = TrainedEtt(write_config(folder, residual="false"), folder / "ett.csv", LOOKBACK, features="S")
    results = model.evaluate([6], modes=("window",))
    baseline = evaluate_ett(folder / "ett.csv", "repeat", LOOKBACK, [6], features="S")[0]
    assert results["window"][0].windows == baseline.windows and results["window"][0].features == "S"
    assert model.models[6].trainer.model.variables[0].shape[0] == 1  # one input column
    assert np.isfinite(results["window"][0].mse)


def test_channel_independent_forecasts_every_channel_with_one_univariate_model(folder):
    model = TrainedEtt(write_config(folder), folder / "ett.csv", LOOKBACK, channel_independent=True)
    results = model.evaluate([6])
    baseline = evaluate_ett(folder / "ett.csv", "repeat", LOOKBACK, [6])[0]
    assert {r[0].windows for r in results.values()} == {baseline.windows}
    network = model.models[6].trainer.model
    assert network.variables[0].shape[0] == 1  # one input column
    starts, window, stream = window_predictions(model, horizon=6)
    _, _, _, scaler = prepare_ett(model.series, LOOKBACK)
    x, _ = gather_windows(model.series.values, starts[:4], LOOKBACK, 6, scaler=scaler)
    for channel in (0, 6):
        alone, _ = network(x[..., channel : channel + 1], state=network.initial_state(4), training=False)
        np.testing.assert_allclose(window[:4, :, channel], np.asarray(alone)[:, -1], atol=1e-5)
    order = [3, 1, 2, 0, 6, 5, 4]
    swapped = model.forecaster(6, "window").predict_windows(x[..., order])
    np.testing.assert_allclose(swapped, window[:4][..., order], atol=1e-6)
    # Stream: channel c's output at a window's last row from one pass over channel c alone.
    row = int(starts[2]) + LOOKBACK - 1
    everything, _ = network(model.scaled[None, : row + 1, 5:6], state=network.initial_state(1), training=False)
    np.testing.assert_allclose(stream[2, :, 5], np.asarray(everything)[0, -1], atol=1e-4)
    assert np.isfinite([results["window"][0].mse, results["stream"][0].mse]).all()


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda f: TrainedEtt(f / "missing.toml", f / "ett.csv", LOOKBACK), ConfigError, "no such config file"),
        (lambda f: TrainedEtt(write_config(f, name="nosuch"), f / "ett.csv", LOOKBACK), ConfigError, "'model.name' must be one of"),
        (lambda f: TrainedEtt(write_config(f), f / "ett.csv", 0), ConfigError, "lookback must be a positive integer"),
        (lambda f: TrainedEtt(write_config(f), f / "ett.csv", LOOKBACK, features="X"), ConfigError, "features must be one of"),
        (lambda f: TrainedEtt(write_config(f, options="{ levels = 3 }"), f / "ett.csv", LOOKBACK).train(4),
         ConfigError, "'model.options' for model 'lstm' has unknown keys"),
        (lambda f: TrainedEtt(write_config(f), f / "ett.csv", LOOKBACK).train(900), DataValidationError, "too short for horizon 900"),
        (lambda f: TrainedEtt(write_config(f), f / "ett.csv", LOOKBACK).forecaster(4, "both"), ConfigError, "mode must be one of"),
        (lambda f: TrainedEtt(write_config(f), f / "ett.csv", LOOKBACK, features="S", channel_independent=True),
         ConfigError, "channel independence applies to features M"),
    ],
)
def test_config_errors(folder, make, error, message):
    with pytest.raises(error, match=message):
        make(folder)


def test_bad_calls_without_training(folder, capsys):
    forecaster = StreamForecaster(None, np.zeros((10, 1)), [0], 1, np.array([5, 6]), 4)
    forecaster._outputs = np.zeros((2, 1), np.float32)
    with pytest.raises(DataValidationError, match="rows outside the test windows"):
        forecaster.predict_at_rows(np.array([7]))
    assert main(["eval", "ett", "--data", str(folder / "ett.csv"), "--model", "repeat", "--lookback", "48",
                 "--horizons", "6", "--channel-independent"]) == 2
    assert "--channel-independent applies to a trained model" in " ".join(capsys.readouterr().err.split())


def test_cli_eval_ett_with_a_config_writes_both_modes(folder, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = folder / "cli"
    code = main(["eval", "ett", "--data", str(folder / "ett.csv"), "--model", str(write_config(folder)),
                 "--lookback", str(LOOKBACK), "--horizons", "6", "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out / "ett_results.csv")
    assert sorted(table["mode"]) == ["stream", "window"]
    baseline = evaluate_ett(folder / "ett.csv", "repeat", LOOKBACK, [6])[0]
    assert set(table["windows"]) == {baseline.windows}
    assert table["repeat_mse"].iloc[0] == pytest.approx(baseline.mse)
    assert "| tiny_lstm | stream | 6 |" in (out / "ett_results.md").read_text()
    assert (out / "runs" / "h6" / "checkpoints" / "best.npz").exists()
    assert main(["eval", "ett", "--data", str(folder / "ett.csv"), "--model", str(write_config(folder)),
                 "--lookback", str(LOOKBACK), "--horizons", "6", "--mode", "sideways"]) == 2
    assert "--mode must be window, stream or both" in capsys.readouterr().err


def test_a_horizon_table_sets_the_values_of_that_horizons_model_only(folder, tmp_path):
    """`[horizons.H]`: one config, one command, a different training value per horizon."""
    config = write_config(tmp_path)  # one epoch
    config.write_text(config.read_text() + "\n[horizons.6.train]\nepochs = 2\nlearning_rate = 0.02\n")
    model = TrainedEtt(config, folder / "ett.csv", LOOKBACK, run_dir=tmp_path / "runs")
    four, six = model.train(4), model.train(6)
    assert (four.summary["epochs_run"], six.summary["epochs_run"]) == (1, 2)
    assert (four.trainer.config.learning_rate, six.trainer.config.learning_rate) == (1e-3, 0.02)
    assert (four.summary["horizon_values"], six.summary["horizon_values"]) == ({}, {"train.epochs": 2, "train.learning_rate": 0.02})
    # Each horizon's run directory keeps the config that trained it, horizon values applied.
    written = (tmp_path / "runs" / "h6" / "config.toml").read_text()
    assert "epochs = 2" in written and "horizons" not in written
    # --resume finds the same config for each horizon and trains nothing.
    again = TrainedEtt(config, folder / "ett.csv", LOOKBACK, run_dir=tmp_path / "runs", reuse=True)
    assert again.train(6).summary["reused"] and again.train(4).summary["reused"]
    assert again.train(6).summary["horizon_values"] == {"train.epochs": 2, "train.learning_rate": 0.02}
