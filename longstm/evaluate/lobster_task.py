"""The LOBSTER mid-price direction task: up / flat / down over the next k events.

Labelling follows FI-2010 (Ntakaris et al., 2018): at event t compare the mean of the next k
mid prices with the current mid,

    l_t = (mean(mid[t+1 .. t+k]) − mid[t]) / mid[t],

and label +1 (up) when `l_t > alpha`, −1 (down) when `l_t < −alpha`, 0 (flat) otherwise.
FI-2010 used alpha = 0.002 on its Nordic stocks; on the AMZN 2012-06-21 sample (mids
around $220, a cent is ~0.5e-4 of the price) that would label every event flat, so the
default here is alpha = 2e-5, which gives roughly 37% up, 23% flat, 40% down at k = 10.

Protocol: events are split chronologically 70/10/20 by row count (as the HFT protocol);
training decision steps are those whose k future mids lie in the training rows, test
decision steps the test rows with k mids after them. Metrics on the test steps: accuracy and
macro-F1 (the mean of the three per-class F1 scores). Baselines (`hft_baselines`): the
training split's majority class, and persistence (the label of the last completed window,
which ended at t).

A predictor implements `predict(inputs: LOBInputs)` returning one label per decision step
and optionally `fit(inputs, labels)`.

A trained recurrent classifier (`longstm eval lobster --model CONFIG.toml`) is
`longstm.evaluate.trained.TrainedLOBPredictor`: TBPTT with carried state on the training
events, three outputs fitted with MSE to the one-hot label, argmax at prediction.

The command around the task (`--model` parsing, Rich tables, saved metrics) is
`longstm.cli.eval_lobster`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from longstm.data.splits import chronological_split
from longstm.errors import ConfigError, DataValidationError
from longstm.evaluate.hft_metrics import accuracy, class_f1_scores, json_safe, macro_f1
from longstm.models.checks import is_positive_int

CLASSES = (-1, 0, 1)
CLASS_NAMES = {-1: "down", 0: "flat", 1: "up"}
DEFAULT_ALPHA = 2e-5


def direction_labels(mid, horizon: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """FI-2010 labels of every event.

    Args:
        mid: mid prices, shape `(n,)`.
        horizon: k, how many following mids are averaged.
        alpha: the flat band, as a fraction of the mid (≥ 0).

    Returns:
        `(labels, valid)`: int64 labels in {−1, 0, 1} and a bool mask, false for the last k
        events (no k mids after them; their label is 0 and must not be used).

    Example:

    >>> labels, valid = direction_labels([10.0, 10.0, 11.0, 10.0, 9.0], horizon=2, alpha=0.01)
    >>> labels.tolist(), valid.tolist()
    ([1, 1, -1, 0, 0], [True, True, True, False, False])
    """
    mid = np.asarray(mid, dtype=np.float64).reshape(-1)
    if not is_positive_int(horizon):
        raise ConfigError(f"k (events ahead) must be a positive whole number, got {horizon!r}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"alpha must be a finite number >= 0, got {alpha}")
    labels = np.zeros(mid.size, dtype=np.int64)
    valid = np.zeros(mid.size, dtype=bool)
    if mid.size > horizon:
        future = sliding_window_view(mid[1:], horizon)  # row t: mid[t+1 .. t+k], a view
        # Average the differences (not the prices) so an unchanged mid gives exactly 0, and go
        # in blocks so memory stays bounded for long event files.
        block = max(1, (1 << 22) // horizon)
        for start in range(0, mid.size - horizon, block):
            stop = min(start + block, mid.size - horizon)
            change = (future[start:stop] - mid[start:stop, None]).mean(axis=1) / mid[start:stop]
            labels[start:stop] = np.where(change > alpha, 1, np.where(change < -alpha, -1, 0))
        valid[: mid.size - horizon] = True
    return labels, valid


@dataclass(frozen=True)
class LOBInputs:
    """What a LOBSTER predictor may look at: event features up to the last decision step.

    Attributes:
        features: shape `(rows, F)`, rows `0 .. decision_steps.max()` of the event features
            (from `longstm.data` LOBSTER loading: mid_price, spread, imbalance, ...).
        columns: the feature names; `mid_price` is required.
        decision_steps: the events to predict at.
        horizon: k.
        alpha: the flat band of the labels.
    """

    features: np.ndarray
    columns: tuple[str, ...]
    decision_steps: np.ndarray
    horizon: int
    alpha: float

    def column(self, name: str) -> int:
        try:
            return self.columns.index(name)
        except ValueError:
            raise DataValidationError(f"no feature column {name!r}; there are {', '.join(self.columns)}") from None

    def windows(self, lookback: int) -> np.ndarray:
        """Shape `(n, lookback, F)`: events `t−lookback+1 .. t` for each decision step t
        (a strided view; steps with fewer than `lookback` events before them are an error)."""
        steps = np.asarray(self.decision_steps)
        if steps.size and steps.min() < lookback - 1:
            raise DataValidationError(
                f"windows: decision step {int(steps.min())} has fewer than lookback = {lookback} events up to it"
            )
        all_windows = sliding_window_view(self.features, lookback, axis=0)  # (rows-L+1, F, L)
        return np.moveaxis(all_windows, -1, 1)[steps - lookback + 1]

    @property
    def mid(self) -> np.ndarray:
        return np.asarray(self.features[:, self.column("mid_price")], dtype=np.float64)

    def past_labels(self, steps) -> np.ndarray:
        """Labels of the windows starting at `steps`, each of which must have ended by the
        last visible row (`step + k` ≤ last row)."""
        steps = np.asarray(steps, dtype=np.int64)
        if steps.size and steps.max() + self.horizon >= len(self.features):
            raise DataValidationError(
                f"past_labels: the window starting at {int(steps.max())} ends after the last visible event "
                f"{len(self.features) - 1}"
            )
        labels, _ = direction_labels(self.mid, self.horizon, self.alpha)
        return labels[steps]


@dataclass
class LOBConfig:
    """Settings of the LOBSTER task.

    Args:
        horizons: k values (events ahead).
        alpha: the flat band (fraction of the mid).
        fractions: train/validation/test shares of the events.
    """

    horizons: Sequence[int] = (10,)
    alpha: float = DEFAULT_ALPHA
    fractions: Sequence[float] = (0.7, 0.1, 0.2)

    def __post_init__(self) -> None:
        self.horizons = tuple(self.horizons)
        self.fractions = tuple(float(f) for f in self.fractions)
        if not self.horizons or any(not is_positive_int(k) for k in self.horizons):
            raise ConfigError(f"k must be positive whole numbers of events, got {list(self.horizons)}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ConfigError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if len(self.fractions) != 3 or any(f <= 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-9:
            raise ConfigError(
                f"fractions must be three positive shares (train, validation, test) summing to 1, "
                f"got {list(self.fractions)}"
            )


@dataclass
class LOBResult:
    """One predictor at one k on the test split."""

    model: str
    horizon: int
    decision_steps: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray

    def metrics(self) -> dict:
        row = {
            "model": self.model,
            "horizon": self.horizon,
            "n_test": int(self.labels.size),
            "accuracy": accuracy(self.predictions, self.labels),
            "macro_f1": macro_f1(self.predictions, self.labels, labels=CLASSES),
        }
        for label, score in class_f1_scores(self.predictions, self.labels, CLASSES).items():
            row[f"f1_{CLASS_NAMES[label]}"] = score
        return row


@dataclass
class LOBEvaluation:
    config: LOBConfig
    data_summary: dict
    results: list[LOBResult]
    label_shares: dict = field(default_factory=dict)

    def rows(self) -> list[dict]:
        return [result.metrics() for result in self.results]

    def to_json_dict(self) -> dict:
        config = asdict(self.config)
        config["horizons"] = list(config["horizons"])
        config["fractions"] = list(config["fractions"])
        return {"protocol": "lobster", "config": config, "data": self.data_summary,
                "label_shares": self.label_shares, "metrics": [json_safe(row) for row in self.rows()]}


def evaluate_lobster(
    features: np.ndarray,
    columns: Sequence[str],
    predictors: Mapping[str, Callable[[], object]],
    config: LOBConfig | None = None,
    *,
    source: str = "<arrays>",
) -> LOBEvaluation:
    """Run the direction task for each predictor and k.

    Args:
        features: event features, shape `(events, F)`, with a `mid_price` column. Pass them in
            float64 (`LobsterSeries.values64`): labels are computed from these mids, and float32
            mids are off by up to 6e-8 of the price, as much as a half-cent move at $100,000.
            Predictors get them as given and cast only what their models read.
        columns: their names.
        predictors: name → factory returning a fresh predictor (see `hft_baselines`).
        config: task settings.
        source: for messages.

    Returns:
        A `LOBEvaluation`.
    """
    config = config or LOBConfig()
    columns = tuple(columns)
    features = np.asarray(features)
    if "mid_price" not in columns:
        raise DataValidationError(f"{source}: the LOBSTER task needs a 'mid_price' column, got {', '.join(columns)}")
    mid = np.asarray(features[:, columns.index("mid_price")], dtype=np.float64)
    if not np.all(np.isfinite(mid)) or np.any(mid <= 0):
        row = int(np.flatnonzero(~np.isfinite(mid) | (mid <= 0))[0])
        raise DataValidationError(f"{source}: mid_price must be finite and > 0, got {mid[row]} at row {row}")
    n_rows = mid.size
    largest = max(config.horizons)
    if n_rows < 10 * (largest + 1):
        raise DataValidationError(
            f"{source}: {n_rows} events are too few for k = {largest} (need at least {10 * (largest + 1)})"
        )
    split = chronological_split(n_rows, 1, config.fractions)
    train_end, validation_end = split.train[1], split.val[1]
    results: list[LOBResult] = []
    shares: dict = {}
    for horizon in config.horizons:
        labels, valid = direction_labels(mid, horizon, config.alpha)
        train_steps = np.arange(0, train_end - horizon)
        test_steps = np.arange(validation_end, n_rows - horizon)
        if train_steps.size == 0 or test_steps.size == 0:
            raise DataValidationError(f"{source}: no training or test events for k = {horizon}")
        shares[str(horizon)] = {
            split_name: {CLASS_NAMES[c]: float(np.mean(labels[steps] == c)) for c in CLASSES}
            for split_name, steps in (("train", train_steps), ("test", test_steps))
        }
        for name, factory in predictors.items():
            predictor = factory()
            if hasattr(predictor, "fit"):
                predictor.fit(_inputs(features, columns, train_steps, horizon, config.alpha), labels[train_steps])
            predictions = np.asarray(
                predictor.predict(_inputs(features, columns, test_steps, horizon, config.alpha))
            ).reshape(-1)
            if predictions.size != test_steps.size:
                raise DataValidationError(
                    f"predictor {name} returned {predictions.size} labels for {test_steps.size} test events"
                )
            results.append(LOBResult(name, horizon, test_steps, predictions.astype(np.int64), labels[test_steps]))
    summary = {
        "source": source,
        "events": n_rows,
        "train_rows": [0, train_end],
        "validation_rows": [train_end, validation_end],
        "test_rows": [validation_end, n_rows],
        "alpha": config.alpha,
    }
    return LOBEvaluation(config, summary, results, shares)


def _inputs(features, columns, steps, horizon, alpha) -> LOBInputs:
    return LOBInputs(features[: int(steps.max()) + 1], columns, steps, horizon, alpha)
