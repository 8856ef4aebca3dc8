"""The LOBSTER direction task: FI-2010 labels, class metrics, baselines, no look-ahead, end to end.

The `longstm eval lobster` command is tested in tests/cli/test_eval_lobster.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.hft_metrics import accuracy, class_f1_scores, macro_f1
from longstm.evaluate.lobster_task import LOBConfig, LOBInputs, direction_labels, evaluate_lobster
from longstm.models.hft_baselines import MajorityClass, Persistence
from tests.conftest import shared_file

BASELINES = {"majority": MajorityClass, "persistence": Persistence}
COLUMNS = ("mid_price", "spread")


def brute_force_labels(mid, k, alpha):
    labels = []
    for t in range(len(mid) - k):
        change = (np.mean(mid[t + 1 : t + k + 1]) - mid[t]) / mid[t]
        labels.append(1 if change > alpha else -1 if change < -alpha else 0)
    return np.array(labels)


def trending_book(n: int = 3000, seed: int = 0) -> np.ndarray:
    """Mid prices on a 1-cent grid whose moves come in runs (so persistence has an edge)."""
    rng = np.random.default_rng(seed)
    moves = np.zeros(n)
    direction = 1.0
    for t in range(1, n):
        if rng.random() < 0.02:
            direction = -direction
        moves[t] = direction * 0.01 if rng.random() < 0.4 else 0.0
    mid = 100.0 + np.cumsum(moves)
    return np.column_stack([mid, np.full(n, 0.01)])


def test_labels_compare_the_mean_of_the_next_k_mids_with_the_current_one():
    labels, valid = direction_labels([10.0, 10.0, 11.0, 10.0, 9.0], horizon=2, alpha=0.01)
    assert labels.tolist() == [1, 1, -1, 0, 0] and valid.tolist() == [True, True, True, False, False]
    mid = trending_book(500)[:, 0]
    for k, alpha in ((1, 0.0), (10, 2e-5), (7, 1e-4)):
        labels, valid = direction_labels(mid, k, alpha)
        np.testing.assert_array_equal(labels[valid], brute_force_labels(mid, k, alpha))
        assert valid.sum() == 500 - k


def test_a_change_of_exactly_alpha_is_flat():
    labels, _ = direction_labels([100.0, 101.0, 99.0], horizon=1, alpha=0.01)
    assert labels[0] == 0  # +1% is not more than alpha = 1%
    assert labels[1] == -1


def test_class_metrics_by_hand():
    predicted, true = [1, 0, -1, 1], [1, 1, -1, 0]
    assert accuracy(predicted, true) == 0.5
    # up: TP 1, predicted 2, true 2 -> 0.5; flat: TP 0 -> 0; down: 1.
    assert class_f1_scores(predicted, true, (-1, 0, 1)) == {-1: 1.0, 0: 0.0, 1: 0.5}
    assert macro_f1(predicted, true, labels=(-1, 0, 1)) == pytest.approx(0.5)
    # A class that never occurs on either side is left out of the mean.
    assert macro_f1([1, 1], [1, 1], labels=(-1, 0, 1)) == 1.0


def test_persistence_predicts_the_label_of_the_window_that_ended_now():
    features = trending_book(400)
    labels, _ = direction_labels(features[:, 0], 10, 2e-5)
    steps = np.arange(5, 380)
    predictions = Persistence().predict(LOBInputs(features[:380], COLUMNS, steps, 10, 2e-5))
    np.testing.assert_array_equal(predictions[steps >= 10], labels[steps[steps >= 10] - 10])
    assert (predictions[steps < 10] == 0).all()


def test_inputs_windows_end_at_each_decision_step():
    features = trending_book(100)
    inputs = LOBInputs(features, COLUMNS, np.array([9, 50]), 5, 0.0)
    np.testing.assert_array_equal(inputs.windows(10)[1], features[41:51])
    with pytest.raises(DataValidationError, match="decision step 9 has fewer than lookback = 11 events"):
        inputs.windows(11)


def test_majority_class_is_the_most_frequent_training_label():
    model = MajorityClass()
    model.fit(None, np.array([1, -1, -1, 0, -1, 1]))
    inputs = LOBInputs(np.ones((4, 2)), COLUMNS, np.arange(4), 1, 0.0)
    assert model.predict(inputs).tolist() == [-1, -1, -1, -1]


def test_task_on_a_synthetic_book():
    evaluation = evaluate_lobster(trending_book(3000), COLUMNS, BASELINES, LOBConfig(horizons=(5, 10), alpha=2e-5))
    rows = {(row["model"], row["horizon"]): row for row in evaluation.rows()}
    for k in (5, 10):
        test = evaluation.label_shares[str(k)]["test"]
        assert sum(test.values()) == pytest.approx(1.0)
        majority = next(r for r in evaluation.results if r.model == "majority" and r.horizon == k)
        # The majority baseline scores exactly the test share of the class it always predicts.
        label_name = {-1: "down", 0: "flat", 1: "up"}[int(majority.predictions[0])]
        assert rows["majority", k]["accuracy"] == pytest.approx(test[label_name])
        assert rows["majority", k]["n_test"] == 600 - k
        # Moves come in runs, so the last move predicts the next.
        assert rows["persistence", k]["macro_f1"] > rows["majority", k]["macro_f1"] + 0.2
        assert rows["persistence", k]["accuracy"] > rows["majority", k]["accuracy"]


def test_no_prediction_depends_on_events_after_it():
    features = trending_book(3000)
    base = evaluate_lobster(features, COLUMNS, BASELINES, LOBConfig(horizons=(10,)))
    changed_features = features.copy()
    changed_features[2700:, 0] += np.random.default_rng(1).normal(0, 0.5, 300)
    changed = evaluate_lobster(changed_features, COLUMNS, BASELINES, LOBConfig(horizons=(10,)))
    for before, after in zip(base.results, changed.results):
        known = before.decision_steps < 2700
        np.testing.assert_array_equal(after.predictions[known], before.predictions[known])
    persistence_after = changed.results[1].predictions[~known]
    assert not np.array_equal(persistence_after, base.results[1].predictions[~known])


def test_past_labels_refuses_a_window_that_has_not_ended():
    inputs = LOBInputs(trending_book(50), COLUMNS, np.arange(40, 50), 5, 0.0)
    with pytest.raises(DataValidationError, match="the window starting at 45 ends after the last visible event 49"):
        inputs.past_labels([45])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"horizons": (0,)}, "k must be positive whole numbers of events"),
        ({"alpha": -0.1}, "alpha must be a finite number >= 0, got -0.1"),
        ({"fractions": (0.5, 0.5, 0.5)}, "summing to 1"),
    ],
)
def test_bad_task_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LOBConfig(**kwargs)


def test_bad_books_are_clear_errors():
    with pytest.raises(DataValidationError, match="needs a 'mid_price' column, got price, spread"):
        evaluate_lobster(np.ones((500, 2)), ("price", "spread"), BASELINES)
    with pytest.raises(DataValidationError, match="50 events are too few for k = 10"):
        evaluate_lobster(np.ones((50, 2)), COLUMNS, BASELINES)
    book = trending_book(500)
    book[123, 0] = 0.0
    with pytest.raises(DataValidationError, match="mid_price must be finite and > 0, got 0.0 at row 123"):
        evaluate_lobster(book, COLUMNS, BASELINES)


AMZN = "lobster/AMZN_2012-06-21_34200000_57600000_{}_1.csv"


def amzn_messages():
    """The AMZN sample's message file; skips (naming the missing file) unless the order-book
    file the loader reads beside it is there too."""
    shared_file(AMZN.format("orderbook"))
    return shared_file(AMZN.format("message"))


def amzn_mids(rows: int) -> np.ndarray:
    """Mid prices of the AMZN sample's first events, read straight from the raw order-book CSV
    (ask and bid in 1e-4 dollars, columns 0 and 2), independently of the loader."""
    book = pd.read_csv(shared_file(AMZN.format("orderbook")), header=None, nrows=rows, usecols=[0, 2])
    return book.to_numpy(np.float64).mean(axis=1) / 1e4


def macro_f1_by_hand(predicted, true):
    """The mean over the classes present on either side of 2 TP / (predicted + true)."""
    scores = [
        2 * np.sum((predicted == c) & (true == c)) / (np.sum(predicted == c) + np.sum(true == c))
        for c in (-1, 0, 1)
        if np.any(predicted == c) or np.any(true == c)
    ]
    return float(np.mean(scores))


def baselines_by_hand(mid, k, alpha=2e-5):
    """(test labels, majority predictions, persistence predictions) on a 70/10/20 event split."""
    labels = brute_force_labels(mid, k, alpha)
    train_end, test_start = int(0.7 * mid.size), mid.size - int(0.2 * mid.size)
    classes, counts = np.unique(labels[: train_end - k], return_counts=True)
    test = np.arange(test_start, mid.size - k)
    return labels[test], np.full(test.size, classes[np.argmax(counts)]), labels[test - k]


@pytest.mark.shared
def test_task_on_the_first_rows_of_the_real_amzn_sample():
    from longstm.data.loaders import load_series

    series = load_series(amzn_messages(), kind="lobster")
    first = series.slice(0, 5000)
    evaluation = evaluate_lobster(first.values, first.columns, BASELINES, LOBConfig(horizons=(10,)))
    rows = {row["model"]: row for row in evaluation.rows()}
    assert rows["majority"]["n_test"] == 990
    shares = evaluation.label_shares["10"]["test"]
    assert all(0.05 < share < 0.9 for share in shares.values())
    label_name = {-1: "down", 0: "flat", 1: "up"}[int(evaluation.results[0].predictions[0])]
    assert rows["majority"]["accuracy"] == pytest.approx(shares[label_name])
    # Both baselines recomputed from the raw order book: labels, split, majority, persistence, metrics.
    truth, majority, persistence = baselines_by_hand(amzn_mids(5000), 10)
    for name, predicted in (("majority", majority), ("persistence", persistence)):
        result = next(r for r in evaluation.results if r.model == name)
        np.testing.assert_array_equal(result.labels, truth)
        np.testing.assert_array_equal(result.predictions, predicted)
        assert rows[name]["accuracy"] == pytest.approx(np.mean(predicted == truth), abs=1e-12)
        assert rows[name]["macro_f1"] == pytest.approx(macro_f1_by_hand(predicted, truth), abs=1e-12)


def write_lobster_pair(folder, mid_cents: np.ndarray):
    """A tiny LOBSTER sample: messages (all new limit orders) and a level-1 book 1 cent wide."""
    n = mid_cents.size
    times = 34200.0 + np.arange(n) * 0.25
    messages = np.column_stack([times, np.ones(n), np.arange(n), np.full(n, 100), mid_cents * 100, np.ones(n)])
    book = np.column_stack([(mid_cents + 0.5) * 100, np.full(n, 100), (mid_cents - 0.5) * 100, np.full(n, 100)])
    message_path = folder / "TEST_2012-06-21_34200000_57600000_message_1.csv"
    np.savetxt(message_path, messages, delimiter=",", fmt="%.9f")
    np.savetxt(folder / "TEST_2012-06-21_34200000_57600000_orderbook_1.csv", book, delimiter=",", fmt="%d")
    return message_path
