"""A TBPTT-trained recurrent classifier on the LOBSTER direction task: learns, no look-ahead,
beside the baselines on the same test events, errors, CLI, and the real AMZN sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longstm.cli.eval_lobster import model_factories
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.lobster_task import LOBConfig, LOBInputs, direction_labels, evaluate_lobster
from longstm.evaluate.trained import TrainedLOBPredictor, lob_model_inputs, lobster_factory
from longstm.models.hft_baselines import MajorityClass, Persistence
from longstm.train.config import read_config
from tests.evaluate.test_lobster_task import (
    amzn_messages,
    amzn_mids,
    baselines_by_hand,
    macro_f1_by_hand,
    trending_book,
    write_lobster_pair,
)

COLUMNS = ("mid_price", "spread")
K = 10

TINY = """
seed = 0
[data]
split = [0.7, 0.1, 0.2]
[model]
name = "lstm"
units = 8
residual = {residual}
[train]
lanes = 4
k1 = 32
k2 = 32
burn_in = 16
epochs = {epochs}
learning_rate = 1e-2
[eval]
lanes = 2
warmup = 32
"""


def write_config(folder, residual="false", epochs=6, name="tiny_lob"):
    path = folder / f"{name}.toml"
    path.write_text(TINY.format(residual=residual, epochs=epochs))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("lobster_trained")


@pytest.fixture(scope="module")
def evaluation(folder):
    """The task on a 3,000-event synthetic book with the tiny model beside both baselines."""
    name, factory = lobster_factory(read_config(write_config(folder)), run_root=folder / "runs")
    predictors = {"majority": MajorityClass, "persistence": Persistence, name: factory}
    return evaluate_lobster(trending_book(3000), COLUMNS, predictors, LOBConfig(horizons=(K,)))


def test_model_inputs_replace_the_mid_level_by_its_change_in_bp():
    features = np.array([[100.0, 0.01], [100.01, 0.02], [100.01, 0.01], [99.99, 0.03]])
    values, names = lob_model_inputs(features, COLUMNS)
    assert names == ["mid_change_bp", "spread"]
    np.testing.assert_allclose(values[:, 0], [0.0, 1.0, 0.0, -0.02 / 100.01 * 1e4])
    np.testing.assert_array_equal(values[:, 1], features[:, 1])
    with pytest.raises(DataValidationError, match="needs a 'mid_price' column, got price, spread"):
        lob_model_inputs(features, ("price", "spread"))


def test_trained_model_is_scored_on_the_baselines_test_events_and_learns_the_runs(evaluation, folder):
    by_model = {result.model: result for result in evaluation.results}
    assert list(by_model) == ["majority", "persistence", "tiny_lob"]
    trained, majority = by_model["tiny_lob"], by_model["majority"]
    np.testing.assert_array_equal(trained.decision_steps, np.arange(2400, 3000 - K))
    np.testing.assert_array_equal(trained.labels, majority.labels)
    assert set(np.unique(trained.predictions)) <= {-1, 0, 1}
    rows = {row["model"]: row for row in evaluation.rows()}
    assert rows["tiny_lob"]["accuracy"] == pytest.approx(np.mean(trained.predictions == trained.labels))
    # Moves come in runs of one direction; the model sees the recent mid changes, so it must beat
    # always predicting the training majority by a clear margin.
    assert rows["tiny_lob"]["accuracy"] > rows["majority"]["accuracy"] + 0.3
    assert rows["tiny_lob"]["macro_f1"] > rows["majority"]["macro_f1"] + 0.2
    summary = json.loads((folder / "runs" / "tiny_lob_fit1" / "protocol.json").read_text())
    # Training events 0 .. 2100 - K - 1; the last eighth picks the epoch, and the K events
    # before it are left out so no training label reads a mid at or after the first validation event.
    assert summary["train_steps"] + K + summary["validation_steps"] == 2100 - K
    assert summary["validation_steps"] == int((2100 - K) / 8)
    assert summary["inputs"] == ["mid_change_bp", "spread"]


def fitted_predictor(folder, features):
    labels, _ = direction_labels(features[:, 0], K, 2e-5)
    steps = np.arange(0, 2100 - K)
    predictor = TrainedLOBPredictor(write_config(folder, epochs=2, name="tiny_fit"))
    predictor.fit(LOBInputs(features[: steps.max() + 1], COLUMNS, steps, K, 2e-5), labels[steps])
    return predictor


def test_no_prediction_depends_on_events_after_it(folder):
    features = trending_book(3000)
    predictor = fitted_predictor(folder, features)
    steps = np.arange(2700, 2990)
    base = predictor.scores(LOBInputs(features[:2990], COLUMNS, steps, K, 2e-5))
    cut = 2800
    changed = features.copy()
    changed[cut + 1 :, 0] += np.random.default_rng(3).normal(0, 0.5, 3000 - cut - 1)
    changed[cut + 1 :, 1] *= 7
    after = predictor.scores(LOBInputs(changed[:2990], COLUMNS, steps, K, 2e-5))
    known = steps <= cut
    np.testing.assert_array_equal(after[known], base[known])
    assert not np.allclose(after[~known], base[~known])  # the change does reach later events
    # Predicting a subset (features cut at its last step) gives the same scores at those steps.
    subset = predictor.scores(LOBInputs(features[: cut + 1], COLUMNS, steps[known], K, 2e-5))
    np.testing.assert_allclose(subset, base[known], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(predictor.predict(LOBInputs(features[:2990], COLUMNS, steps, K, 2e-5)),
                                  np.array([-1, 0, 1])[np.argmax(base, axis=1)])


def test_bad_configs_and_inputs_are_clear_errors(folder):
    with pytest.raises(ConfigError, match="LOBSTER target .* is not an input column, so set model.residual = false"):
        TrainedLOBPredictor(write_config(folder, residual="true", name="residual"))
    predictor = TrainedLOBPredictor(write_config(folder))
    inputs = LOBInputs(trending_book(200), COLUMNS, np.arange(0, 190), K, 2e-5)
    with pytest.raises(ConfigError, match="predict called before fit"):
        predictor.predict(inputs)
    with pytest.raises(DataValidationError, match="one label in \\{-1, 0, 1\\} per decision step; got 3 labels for 190"):
        predictor.fit(inputs, np.array([1, 0, -1]))
    with pytest.raises(DataValidationError, match="values \\[2\\]"):
        predictor.fit(inputs, np.full(190, 2))
    short = LOBInputs(trending_book(30), COLUMNS, np.arange(0, 20), K, 2e-5)
    with pytest.raises(DataValidationError, match="too few training events \\(\\d+\\) for train.burn_in = 16"):
        predictor.fit(short, np.zeros(20, dtype=np.int64))
    with pytest.raises(ConfigError, match="nope.toml: no such config file"):
        model_factories("majority,nope.toml")
    with pytest.raises(ConfigError, match="unknown model 'lstm' for the LOBSTER task"):
        model_factories("lstm,nope.toml")


def test_a_config_alone_gets_both_baselines_in_front(folder):
    factories = model_factories(str(write_config(folder)))
    assert list(factories) == ["majority", "persistence", "tiny_lob"]
    assert list(model_factories(f"persistence,{write_config(folder)}")) == ["persistence", "tiny_lob"]


def test_cli_eval_lobster_with_a_trained_model_end_to_end(folder, tmp_path, capsys, monkeypatch):
    from longstm.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    message_path = write_lobster_pair(tmp_path, np.round(trending_book(1500)[:, 0] * 100))
    config = write_config(tmp_path, epochs=2)
    out = tmp_path / "run"
    assert main(["eval", "lobster", "--data", str(message_path), "--k", "10", "--alpha", "1.5e-5",
                 "--model", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tiny_lob" in printed and "persistence" in printed and "majority" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert [row["model"] for row in saved["metrics"]] == ["majority", "persistence", "tiny_lob"]
    assert len({row["n_test"] for row in saved["metrics"]}) == 1
    assert (out / "runs" / "tiny_lob_fit1" / "protocol.json").exists()


@pytest.mark.shared
def test_trained_model_beats_persistence_and_every_constant_class_on_the_real_amzn_sample(folder):
    from longstm.data.loaders import load_series

    series = load_series(amzn_messages(), kind="lobster")
    first = series.slice(0, 20_000)
    name, factory = lobster_factory(read_config(write_config(folder, epochs=3, name="real")))
    evaluation = evaluate_lobster(first.values, first.columns,
                                  {"majority": MajorityClass, "persistence": Persistence, name: factory},
                                  LOBConfig(horizons=(K,)))
    majority, persistence, trained = evaluation.results
    np.testing.assert_array_equal(trained.decision_steps, majority.decision_steps)
    assert trained.labels.size == 4000 - K
    # The labels and both baselines' scores recomputed by hand. The loader keeps float32 mids
    # (within 1e-5 of the raw book's); 9 of 20,000 changes lie within 4e-8 of the flat band's
    # edge, where that rounding flips a label, so the labels are recomputed from the loaded mids.
    mids = first.values[:, first.columns.index("mid_price")].astype(np.float64)
    np.testing.assert_allclose(mids, amzn_mids(20_000), rtol=0, atol=1e-5)
    truth, majority_by_hand, persistence_by_hand = baselines_by_hand(mids, K)
    np.testing.assert_array_equal(trained.labels, truth)
    rows = {row["model"]: row for row in evaluation.rows()}
    assert rows["majority"]["accuracy"] == pytest.approx(np.mean(majority_by_hand == truth), abs=1e-12)
    assert rows["persistence"]["accuracy"] == pytest.approx(np.mean(persistence_by_hand == truth), abs=1e-12)
    assert rows["real"]["accuracy"] == pytest.approx(np.mean(trained.predictions == truth), abs=1e-12)
    assert rows["real"]["macro_f1"] == pytest.approx(macro_f1_by_hand(trained.predictions, truth), abs=1e-12)
    # Measured (3 epochs, 20,000 events): accuracy 0.505 with seed 0 (0.494, 0.508, 0.505 with
    # seeds 1-3) against persistence 0.427, the training majority 0.340 and the best constant
    # class chosen on the test labels themselves 0.450; the same model trained on shuffled
    # labels scores 0.398 and 0.422 (seeds 0, 1). The margins below hold for all four seeds and
    # fail for the shuffled-label model. (On 4,000 events with 2 epochs nothing was learned: the
    # shuffled-label model scored above the trained one.) Persistence keeps the better macro F1
    # (0.392 against 0.368-0.378), so that is not asserted.
    best_constant = max(np.mean(truth == label) for label in (-1, 0, 1))
    assert rows["real"]["accuracy"] > rows["persistence"]["accuracy"] + 0.05
    assert rows["real"]["accuracy"] > best_constant + 0.03
    assert rows["real"]["macro_f1"] > rows["majority"]["macro_f1"] + 0.1


# ------------------------------------------------- the trained HFT predictor under walk-forward


def test_hft_walk_forward_refits_the_trained_model_per_block_without_look_ahead(folder):
    """`evaluate_hft(walk_forward=True)` with `TrainedHFTPredictor`: a fresh model per block,
    trained only on steps whose targets ended before the block, and no look-ahead."""
    from longstm.evaluate.hft import HFTConfig, evaluate_hft
    from longstm.evaluate.trained import TrainedHFTPredictor, hft_factory
    from longstm.models.hft_baselines import LinearAR
    from tests.evaluate.test_trained import perturbed_bars, synthetic_bars
    from tests.evaluate.test_trained import write_config as write_hft_config

    _, make = hft_factory(read_config(write_hft_config(folder, residual="false")))
    fits: list[tuple[int, int, int]] = []  # (first, last training step, steps) of each fit
    predicted: list[np.ndarray] = []

    class Recorded(TrainedHFTPredictor):
        def fit(self, inputs, targets):
            fits.append((int(inputs.decision_steps.min()), int(inputs.decision_steps.max()), inputs.decision_steps.size))
            super().fit(inputs, targets)

        def predict(self, inputs):
            predicted.append(np.asarray(inputs.decision_steps))
            assert len(inputs.features) == inputs.decision_steps.max() + 1  # nothing after the block is visible
            return super().predict(inputs)

    def factory():
        return Recorded(make().config)

    bars = synthetic_bars()
    config = HFTConfig(horizons=(5,), lookback=20, walk_forward=True, retrain_every=150, train_window=400)
    base = evaluate_hft(bars, {"lstm": factory, "ar": LinearAR}, config)
    lstm, ar = base.results
    np.testing.assert_array_equal(lstm.decision_steps, ar.decision_steps)
    blocks = [lstm.decision_steps[i : i + 150] for i in range(0, lstm.decision_steps.size, 150)]
    assert lstm.refits == ar.refits == len(blocks) == 2
    assert np.isfinite(lstm.predictions).all()
    for (first, last, count), block, seen in zip(fits, blocks, predicted):
        np.testing.assert_array_equal(seen, block)
        assert last + 5 <= block[0]  # every training target had ended when the block began
        assert block[0] - 5 - 400 < first and count <= 400  # a rolling window, not the whole past
    assert fits[1][0] > fits[0][0]  # the window moves
    row = int(blocks[1][40])  # inside the second block
    changed = evaluate_hft(perturbed_bars(bars, row), {"lstm": factory, "ar": LinearAR}, config)
    for before, after in zip(base.results, changed.results):
        known = before.decision_steps <= row
        np.testing.assert_allclose(after.predictions[known], before.predictions[known], rtol=1e-5, atol=1e-6)
        assert not np.allclose(after.predictions[~known], before.predictions[~known])


# ------------------------------------------------- training-time leakage of the LOBSTER protocol


def test_poisoning_every_event_after_the_training_part_leaves_the_fit_unchanged(folder, monkeypatch):
    """The protocol's fit reads nothing at or after the first validation event: with every later
    mid and spread changed, the scaler, every training batch and the fitted weights are identical
    (the test predictions, which read those events, are not)."""
    import longstm.evaluate.trained as trained_module

    fits = []  # per evaluation: the predictor and the lanes its fit built (training, epoch selection)

    def recording(part, build):
        def build_and_record(*args, **kwargs):
            fits[-1][part] = build(*args, **kwargs)
            return fits[-1][part]

        return build_and_record

    for part in ("training_lanes", "evaluation_lanes"):
        monkeypatch.setattr(trained_module, part, recording(part, getattr(trained_module, part)))
    _, make = lobster_factory(read_config(write_config(folder, epochs=2, name="poison")))

    def factory():
        fits.append({"predictor": make()})
        return fits[-1]["predictor"]

    clean = trending_book(1200)
    train_end = 840  # 0.7 of the events; the last training label reads the mids up to train_end - 1
    poisoned = clean.copy()
    noise = np.random.default_rng(5).normal(0, 0.05, (len(clean) - train_end, 1))
    poisoned[train_end:] *= np.exp(noise) * [1.0, 7.0]  # mids moved by ~5%, spreads x7
    results = [evaluate_lobster(book, COLUMNS, {"tiny": factory}, LOBConfig(horizons=(K,))) for book in (clean, poisoned)]
    assert [r.data_summary["train_rows"] for r in results] == [[0, train_end]] * 2
    first, second = (fit["predictor"] for fit in fits)
    np.testing.assert_array_equal(first.mean, second.mean)
    np.testing.assert_array_equal(first.std, second.std)
    for part in ("training_lanes", "evaluation_lanes"):
        lanes_a, lanes_b = fits[0][part], fits[1][part]
        assert len(lanes_a) == len(lanes_b) >= 1
        for step in range(len(lanes_a)):
            batch_a, batch_b = lanes_a.batch(step), lanes_b.batch(step)
            assert batch_a.keys() == batch_b.keys()
            for key in batch_a:
                np.testing.assert_array_equal(batch_a[key], batch_b[key], err_msg=f"{part} batch {step}, {key}")
    assert len(fits[0]["training_lanes"]) >= 5
    assert first.summary["val_mse"] == second.summary["val_mse"]
    weights_a, weights_b = first._trained.model.get_weights(), second._trained.model.get_weights()
    assert len(weights_a) == len(weights_b) > 0
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
    # The poison reaches the test events: their scores (and labels) change.
    test_steps = results[0].results[0].decision_steps
    inputs = [LOBInputs(book[: test_steps.max() + 1], COLUMNS, test_steps, K, 2e-5) for book in (clean, poisoned)]
    assert not np.allclose(first.scores(inputs[0]), first.scores(inputs[1]))
    assert not np.array_equal(results[0].results[0].labels, results[1].results[0].labels)
