"""Trained models in the HFT protocol: no look-ahead, losses exactly at the decision steps,
epoch selection after a gap, config errors, CLI. (The ETT protocol's: test_ett_trained.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.hft import Bars, HFTConfig, HFTInputs, evaluate_hft
from longstm.evaluate.trained import TrainedHFTPredictor, hft_factory, loss_rows
from longstm.models.hft_baselines import LinearAR
from longstm.train.config import read_config

TINY = """
seed = 0
[model]
name = "{name}"
units = 4
residual = {residual}
options = {options}
[train]
lanes = 4
k1 = 32
k2 = 32
epochs = 1
[eval]
lanes = 2
warmup = 32
"""


def write_config(folder, name="lstm", residual="true", options="{}"):
    path = folder / f"tiny_{name}.toml"
    path.write_text(TINY.format(name=name, residual=residual, options=options))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("trained")


def test_hft_predictor_refuses_a_residual_config_and_predict_before_fit(folder):
    with pytest.raises(ConfigError, match="model.residual = false"):
        TrainedHFTPredictor(write_config(folder))
    with pytest.raises(ConfigError, match="predict called before fit"):
        TrainedHFTPredictor(write_config(folder, residual="false")).predict(None)


# ---------------------------------------------------------------- HFT


def synthetic_bars(n: int = 1500, seed: int = 0, segment_ids=None) -> Bars:
    rng = np.random.default_rng(seed)
    returns = np.zeros(n)
    shocks = rng.normal(0.0, 1e-3, n)
    for t in range(1, n):
        returns[t] = 0.3 * returns[t - 1] + shocks[t]
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 5e-4, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 5e-4, n))
    return Bars(open_, high, low, close, rng.uniform(1, 10, n), segment_ids=segment_ids, source="synthetic")


def perturbed_bars(bars: Bars, row: int) -> Bars:
    rng = np.random.default_rng(99)
    factor = np.ones(len(bars))
    factor[row + 1 :] = np.exp(rng.normal(0, 0.01, len(bars) - row - 1).cumsum())
    return Bars(bars.open * factor, bars.high * factor, bars.low * factor, bars.close * factor, bars.volume,
                segment_ids=bars.segment_ids, source="perturbed")


def test_hft_trained_predictor_has_no_look_ahead(folder):
    """The HFT protocol's no-look-ahead check, applied to a trained model."""
    _, factory = hft_factory(read_config(write_config(folder, residual="false")))
    bars = synthetic_bars()
    config = HFTConfig(horizons=(5,), lookback=20)
    base = evaluate_hft(bars, {"lstm": factory, "ar": LinearAR}, config)
    row = 1350  # the test split starts at 1200
    changed = evaluate_hft(perturbed_bars(bars, row), {"lstm": factory, "ar": LinearAR}, config)
    for before, after in zip(base.results, changed.results):
        known = before.decision_steps <= row
        assert known.sum() > 50
        np.testing.assert_allclose(after.predictions[known], before.predictions[known], rtol=1e-5, atol=1e-6)
        assert not np.allclose(after.predictions[~known], before.predictions[~known])
        held = row - before.backtest_first_row + 1
        np.testing.assert_array_equal(after.backtest.positions[:held], before.backtest.positions[:held])
    lstm = base.results[0]
    assert lstm.model == "lstm" and lstm.refits == 1 and np.isfinite(lstm.predictions).all()
    assert np.array_equal(lstm.decision_steps, base.results[1].decision_steps)  # the baseline's test steps


def test_hft_training_losses_fall_exactly_on_the_decision_steps_across_a_gap(folder):
    segment_ids = (np.arange(1500) >= 600).astype(np.int64)
    bars = synthetic_bars(segment_ids=segment_ids)
    _, factory = hft_factory(read_config(write_config(folder, residual="false")))
    evaluation = evaluate_hft(bars, {"lstm": factory}, HFTConfig(horizons=(3,), lookback=20))
    assert np.isfinite(evaluation.results[0].predictions).all()
    # The rule the predictor's lanes use reproduces the protocol's training steps.
    from longstm.evaluate.hft import decision_steps

    steps = decision_steps(bars, 0, 1050, 20, 3)
    np.testing.assert_array_equal(loss_rows([0, 600], len(bars), int(steps[0]), int(steps[-1]) + 1, 20, 3), steps)
    # Without segment ids the gap in the steps cannot be placed: a clear error, not wrong rows.
    predictor = TrainedHFTPredictor(write_config(folder, residual="false"))
    features = np.random.default_rng(0).normal(size=(steps[-1] + 1, 4))
    inputs = HFTInputs(features, ("a", "b", "c", "d"), steps, 20, 3, segment_ids=None)
    with pytest.raises(DataValidationError, match="needs inputs.segment_ids"):
        predictor.fit(inputs, np.ones(steps.size))


def test_hft_epoch_selection_steps_start_k_rows_after_the_last_training_target(folder):
    from longstm.evaluate.hft import decision_steps

    bars = synthetic_bars()
    steps = decision_steps(bars, 0, 1050, 20, 3)
    features = np.random.default_rng(0).normal(size=(steps[-1] + 1, 4))
    inputs = HFTInputs(features, ("a", "b", "c", "d"), steps, 20, 3, segment_ids=np.zeros(len(features), np.int64))
    predictor = TrainedHFTPredictor(write_config(folder, residual="false"))
    predictor.fit(inputs, np.random.default_rng(1).normal(size=steps.size))
    # The target of step t reads rows up to t + 3: the last 3 steps before the held-out part
    # are dropped, so no training target reads a held-out row.
    summary = predictor.summary
    assert summary["train_steps"] + 3 + summary["validation_steps"] == steps.size
    assert summary["validation_steps"] == int(steps.size / 8)


def test_hft_predictor_trains_horizon_k_with_its_horizon_table(folder, tmp_path):
    from longstm.evaluate.hft import decision_steps

    steps = decision_steps(synthetic_bars(), 0, 1050, 20, 3)
    features = np.random.default_rng(0).normal(size=(steps[-1] + 1, 4))
    config = write_config(tmp_path, residual="false")  # one epoch
    config.write_text(config.read_text() + "\n[horizons.3.train]\nepochs = 2\n")
    epochs = {}
    for k in (3, 4):
        inputs = HFTInputs(features, ("a", "b", "c", "d"), steps, 20, k, segment_ids=np.zeros(len(features), np.int64))
        predictor = TrainedHFTPredictor(config)
        predictor.fit(inputs, np.random.default_rng(1).normal(size=steps.size))
        epochs[k] = predictor.summary["epochs_run"]
    assert epochs == {3: 2, 4: 1}


def test_cli_eval_hft_mixes_baselines_and_a_config(folder, capsys, monkeypatch):
    from longstm.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    bars = synthetic_bars()
    data = folder / "bars.csv"
    pd.DataFrame({"timestamp": pd.date_range("2025-01-01", periods=len(bars), freq="min"), "open": bars.open,
                  "high": bars.high, "low": bars.low, "close": bars.close, "volume": bars.volume}).to_csv(data, index=False)
    config = write_config(folder, name="gru", residual="false")
    out = folder / "hft"
    assert main(["eval", "hft", "--data", str(data), "--model", f"zero,{config}", "--horizons", "1",
                 "--lookback", "20", "--out", str(out)]) == 0
    table = pd.read_csv(out / "metrics.csv")
    assert list(table["model"]) == ["zero", "tiny_gru", "buy_and_hold"]
    assert (out / "runs" / "tiny_gru_fit1" / "protocol.json").exists()
