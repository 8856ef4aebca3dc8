"""Trained recurrent models inside the evaluation protocols (ETT, HFT, LOBSTER), from a TOML config.

A training config (`longstm.train.config`) names the model (`[model]`), the TBPTT schedule
(`[train]`) and the evaluation lanes (`[eval]`). Under a protocol, the protocol decides the
data: `[data]` is replaced by the protocol's file, columns, splits and scaler (its `path`,
`features`, `targets`, `offset`, `horizon` and `split` are ignored, except as noted for HFT).

The ETT protocol's trained models live in `longstm.evaluate.ett_trained`; this module holds
the HFT and LOBSTER predictors and what the protocols share. Every training is set up as
`longstm train` sets it up: `longstm.train.run`'s `build_trainer` (the one seeding),
`training_lanes`/`evaluation_lanes` and `fit_and_keep_best`, and every forecast comes from
the one carried-state pass, `longstm.train.carried.carried_outputs`.

HFT (`TrainedHFTPredictor`, `longstm eval hft --model CONFIG.toml`)
--------------------------------------------------------------------
A predictor for `longstm.evaluate.hft.evaluate_hft` (a fresh one per horizon k and per
walk-forward refit):

- `fit(inputs, targets)`: inputs are the protocol's causal bar features up to the last
  training decision step, targets its next-k log returns (bp) at the training decision
  steps. Features are standardised with their own (training-row) statistics, the target is
  divided by its training standard deviation. The target of decision step t is placed at
  row t + k of a target column and read with offset k, so the trainer's lanes carry a loss
  exactly at the decision steps (burn-in = the protocol's lookback after every segment start,
  no target across a segment end; checked). The last `split[1] / (split[0] + split[1])`
  of the training decision steps (an eighth with the default split) is held out for epoch
  selection, after a gap of k rows so no training target reaches into it.
- `predict(inputs)`: one pass over the features from row 0 with carried state (reset at
  segment starts), the output at each decision step, times the target scale. The features
  stop at the last decision step, and the model is causal, so nothing after a decision step
  can reach its prediction (the protocol's no-look-ahead test applies unchanged).

LOBSTER (`TrainedLOBPredictor`, `longstm eval lobster --model CONFIG.toml`)
----------------------------------------------------------------------------
The same scheme for the up / flat / down task of `longstm.evaluate.lobster_task`: three
outputs fitted with MSE to the one-hot label, the class is their argmax (see the class).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from longstm.data.features import FeaturePipeline
from longstm.errors import ConfigError, DataValidationError
from longstm.train.carried import CompiledModel, carried_outputs
from longstm.train.config import Config, read_config
from longstm.train.run import ModelColumns, build_trainer, evaluation_lanes, fit_and_keep_best, training_lanes
from longstm.train.rundir import RunDir, write_atomic


def fit_and_summarise(trainer, train_lanes, val_lanes) -> dict[str, Any]:
    """`fit_and_keep_best`, and what the protocols report of it.

    Returns:
        `{"epochs_run", "best_epoch", "val_mse", "train_seconds"}`: the epoch whose weights were
        kept, the one with the lowest `train.monitor` (validation MSE or MAE; the last one without
        validation), and its validation MSE.
    """
    started = time.perf_counter()
    history = fit_and_keep_best(trainer, train_lanes, val_lanes)
    seconds = time.perf_counter() - started
    monitor = trainer.config.monitor
    scored = [record for record in history if monitor in record]
    best_record = min(scored, key=lambda record: record[monitor]) if scored else (history[-1] if history else {})
    return {
        "epochs_run": len(history),
        "best_epoch": best_record.get("epoch"),
        "val_mse": best_record.get("val_mse"),
        "train_seconds": seconds,
    }


# ------------------------------------------------------------------ HFT


def _segment_starts(segment_ids: np.ndarray | None, n: int) -> list[int]:
    if segment_ids is None or n == 0:
        return [0]
    ids = np.asarray(segment_ids[:n])
    return [0, *(int(row) for row in np.flatnonzero(np.diff(ids)) + 1)]


def loss_rows(segments: Sequence[int], n_rows: int, first: int, stop: int, burn_in: int, reach: int) -> np.ndarray:
    """The rows `LaneWindows` carry a loss at: in `[first, stop)`, at least `burn_in`
    rows after their segment's start, with `reach` rows ahead inside the segment."""
    bounds = list(segments) + [n_rows]
    parts = [np.arange(max(a + burn_in, first), min(b - reach, stop)) for a, b in zip(bounds[:-1], bounds[1:])]
    return np.concatenate([p for p in parts if p.size] or [np.zeros(0, np.int64)]).astype(np.int64)


class _ConfigPredictor:
    """A config's model trained on a target that is not an input column (HFT and LOBSTER)."""

    target_description = "target"

    def __init__(self, config, run_dir: str | Path | None = None, progress: bool = False):
        self.config = read_config(config)
        if self.config.model.residual:
            raise ConfigError(
                f"{self.config.source}: 'model.residual = true' adds a target's current value to its forecast; the "
                f"{self.target_description} is not an input column, so set model.residual = false"
            )
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.progress = progress
        self.summary: dict[str, Any] = {}
        self._trained = None

    def _protocol_config(self) -> Config:
        """The config as the protocol trains it: the target column is read with its own offset
        (set per fit) and is already standardised, so `[data]` offset/horizon 1, no scaling."""
        data = dataclasses.replace(self.config.data, offset=1, horizon=1, scale=False)
        return dataclasses.replace(self.config, data=data)


class TrainedHFTPredictor(_ConfigPredictor):
    """A config's model as an HFT-protocol predictor: TBPTT on the training steps, carried state.

    Args:
        config: a training config (path or `Config`); `[model]`, `[train]`, `[eval]`, `seed`
            are used, and `data.split` sets the held-out share for epoch selection.
        run_dir: where the run goes (checkpoints, metrics); None: a temporary folder.
        progress: show the trainer's progress bars.

    See the module docstring for what `fit` and `predict` do.
    """

    target_description = "HFT target (a future log return)"

    def fit(self, inputs, targets) -> None:
        config = self._protocol_config()
        features = np.asarray(inputs.features, dtype=np.float64)
        steps = np.asarray(inputs.decision_steps, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if targets.size != steps.size or not np.all(np.isfinite(targets)):
            raise DataValidationError(f"fit needs one finite target per decision step; got {targets.size} for {steps.size}")
        k, n_rows, n_features = int(inputs.horizon), len(features), features.shape[1]
        self.mean = features.mean(axis=0)
        self.std = features.std(axis=0)
        self.std[self.std == 0] = 1.0
        self.target_scale = float(targets.std()) or 1.0
        values = np.zeros((n_rows + k, n_features + 1), np.float32)
        values[:n_rows, :n_features] = (features - self.mean) / self.std
        values[steps + k, n_features] = targets / self.target_scale
        segments = _segment_starts(inputs.segment_ids, n_rows)
        burn_in = max(int(inputs.lookback), config.train.burn_in)
        expected = loss_rows(segments, n_rows + k, int(steps.min()), int(steps.max()) + 1, int(inputs.lookback), k)
        if not np.array_equal(expected, np.sort(steps)):
            raise DataValidationError(
                "the training decision steps are not every row at least `lookback` after a segment start with its "
                "target inside the segment; the trained-model predictor needs inputs.segment_ids from the protocol"
            )
        train_steps, validation_steps = _held_out_split(config, steps, k)
        if train_steps.size == 0:
            raise DataValidationError(f"too few training decision steps ({steps.size}) for a held-out validation part")
        columns = ModelColumns(list(range(n_features)), [n_features], [*inputs.columns, "target"])
        model, self.summary = _fit_decision_model(
            config, values, columns, segments, k, burn_in, train_steps, validation_steps, self.run_dir, "longstm-hft-",
            self.progress,
        )
        self._trained = CompiledModel(model)

    def predict(self, inputs) -> np.ndarray:
        if self._trained is None:
            raise ConfigError("TrainedHFTPredictor.predict called before fit")
        features = (np.asarray(inputs.features, dtype=np.float64) - self.mean) / self.std
        segments = _segment_starts(inputs.segment_ids, len(features))
        outputs = carried_outputs(self._trained, features, segments, inputs.decision_steps, self.config.train.k2)
        return outputs[:, 0].astype(np.float64) * self.target_scale


def _held_out_split(config, steps: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train_steps, validation_steps)`: the last `split[1] / (split[0] + split[1])` of the
    decision steps chose the epoch, the steps before them train.

    The target of step t reads rows up to t + k; stopping those rows before the first held-out
    step keeps every training target off the held-out rows (the first one's own return starts
    at its row), a gap of k rows.
    """
    train_share, val_share = float(config.data.split[0]), float(config.data.split[1])
    held_out = int(steps.size * val_share / (train_share + val_share))
    if not held_out:
        return steps, steps[:0]
    validation_steps = steps[steps.size - held_out:]
    return steps[steps + k < validation_steps[0]], validation_steps


def _fit_decision_model(config, values, columns: ModelColumns, segments, k: int, burn_in: int, train_steps,
                        validation_steps, run_dir, prefix, progress, **summary):
    """Train on the rows of `train_steps`, select the epoch on `validation_steps`; `(model, summary)`.

    Shared by the HFT and LOBSTER predictors: the target of decision step t sits at row t + k
    and is read with offset k. Without `run_dir` the checkpoints go to a temporary folder
    that is removed afterwards; with it, `protocol.json` records the summary. The model of
    horizon k trains with the config's `[horizons.k]` values, if it has them.
    """
    config = config.at_horizon(k)
    lanes = dict(feature_columns=columns.feature_columns, target_columns=columns.target_columns, offset=k, horizon=1,
                 segments=segments)
    train_lanes = training_lanes(config, values, burn_in=burn_in, rows=(int(train_steps[0]), int(train_steps[-1]) + 1),
                                 **lanes)
    val_lanes = None
    if validation_steps.size:
        val_lanes = evaluation_lanes(config, values, burn_in=max(burn_in, config.eval.warmup),
                                     rows=(int(validation_steps[0]), int(validation_steps[-1]) + 1), **lanes)
    temporary = None
    work_dir = run_dir
    if work_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix=prefix)
        work_dir = Path(temporary.name)
    try:
        run = RunDir(work_dir)
        run.path.mkdir(parents=True, exist_ok=True)
        trainer = build_trainer(config, columns, run_dir=run.path, progress=progress)
        result = fit_and_summarise(trainer, train_lanes, val_lanes)
        result.update(horizon=k, train_steps=int(train_steps.size), validation_steps=int(validation_steps.size),
                      model=config.model.name, units=config.model.units, **summary)
        if run_dir is not None:
            write_atomic(run.protocol_summary, json.dumps(result, indent=1))
    finally:
        if temporary is not None:
            temporary.cleanup()
    return trainer.model, result


def _config_factory(predictor_class, config: Config, run_root, progress: bool):
    """`(name, factory)`: a fresh `predictor_class(config)` per call; the name is the stem of
    the config's file.

    With `run_root`, fit number i goes to `run_root/<name>_fit<i>/`.
    """
    if not isinstance(config, Config):
        raise ConfigError(
            f"a trained-model factory takes a Config (read it with longstm.train.config.read_config); "
            f"got {type(config).__name__} {config!r}"
        )
    name = Path(config.source).stem
    count = [0]

    def factory():
        count[0] += 1
        run_dir = None if run_root is None else Path(run_root) / f"{name}_fit{count[0]}"
        return predictor_class(config, run_dir=run_dir, progress=progress)

    return name, factory


def hft_factory(config: Config, run_root: str | Path | None = None, progress: bool = False):
    """`(name, factory)` for `evaluate_hft`: a fresh `TrainedHFTPredictor` per horizon and refit.

    Args:
        config: a validated training `Config` (`read_config(path, overrides)`).
        run_root: where each fit's run goes (`<name>_fit<i>/`); None: temporary folders.
        progress: show the trainer's progress bars.

    Returns:
        `(name, factory)`: the config file's stem and a function returning a new predictor.
    """
    return _config_factory(TrainedHFTPredictor, config, run_root, progress)


# ------------------------------------------------------------------ LOBSTER direction task


LOB_CLASSES = (-1, 0, 1)


def lob_model_inputs(features: np.ndarray, columns: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The event features a trained LOBSTER classifier reads, all causal: the feature
    pipeline's `lob_inputs` kind (`longstm.data.features`).

    The mid-price level is replaced by its change since the previous event, in basis points
    (0 at the first event): the level drifts through the day, so its training-row statistics
    do not describe the test rows, while the label depends on the mid only through changes.
    The other columns (spread, imbalance, signed volume, dt, ...) are kept as they are.

    Returns:
        `(values, names)`: `(events, columns)` float64 and the column names.
    """
    pipeline = FeaturePipeline([{"kind": "lob_inputs"}], list(columns), source="the LOBSTER task")
    return pipeline.compute(features), pipeline.output_columns


class TrainedLOBPredictor(_ConfigPredictor):
    """A config's recurrent model as a LOBSTER direction predictor (up / flat / down).

    The head is the trainer's regression head with three outputs: the target at decision
    step t is the one-hot vector of its label (down, flat, up), the loss the trainer's MSE, and
    the predicted class the argmax of the three outputs. (MSE on one-hot targets estimates the
    class probabilities, so the argmax is the most likely class; the trainer needs no new loss.)

    - `fit(inputs, labels)`: inputs are the task's event features up to the last training
      decision step (`lob_model_inputs` of them, standardised with training-row statistics),
      labels its {−1, 0, 1} labels at the training decision steps (`0 .. train_end − k − 1`).
      As for HFT, the one-hot target of step t is placed at row t + k of three target columns
      and read with offset k; lanes carry their state (TBPTT, `train.k1`/`k2`), the first
      `train.burn_in` events carry no loss, and the last `split[1] / (split[0] + split[1])`
      of the training steps, after a gap of k events, choose the epoch.
    - `predict(inputs)`: one pass from event 0 with carried state (chunks of `train.k2`),
      the argmax at each decision step. The features stop at the last decision step and the
      model is causal, so no event after t reaches the prediction at t.

    Args:
        config: a training config (path or `Config`).
        run_dir: where the run goes; None: a temporary folder.
        progress: show the trainer's progress bars.
    """

    target_description = "LOBSTER target (a one-hot direction label)"

    def fit(self, inputs, labels) -> None:
        config = self._protocol_config()
        features, names = lob_model_inputs(inputs.features, inputs.columns)
        steps = np.asarray(inputs.decision_steps, dtype=np.int64)
        labels = np.asarray(labels).reshape(-1)
        if labels.size != steps.size or not np.isin(labels, LOB_CLASSES).all():
            raise DataValidationError(
                f"fit needs one label in {{-1, 0, 1}} per decision step; got {labels.size} labels for {steps.size} steps"
                + ("" if labels.size != steps.size else f", values {sorted(set(labels.tolist()) - set(LOB_CLASSES))[:3]}")
            )
        k, n_rows, n_features = int(inputs.horizon), len(features), features.shape[1]
        self.mean = features.mean(axis=0)
        self.std = features.std(axis=0)
        self.std[self.std == 0] = 1.0
        values = np.zeros((n_rows + k, n_features + 3), np.float32)
        values[:n_rows, :n_features] = (features - self.mean) / self.std
        values[steps + k, n_features + labels + 1] = 1.0  # column n_features + {0: down, 1: flat, 2: up}
        train_steps, validation_steps = _held_out_split(config, steps, k)
        burn_in = config.train.burn_in
        if train_steps.size <= burn_in:
            raise DataValidationError(
                f"too few training events ({train_steps.size}) for train.burn_in = {burn_in} and a held-out validation part"
            )
        columns = ModelColumns(list(range(n_features)), [n_features, n_features + 1, n_features + 2],
                               [*names, "down", "flat", "up"])
        model, self.summary = _fit_decision_model(
            config, values, columns, [0], k, burn_in, train_steps, validation_steps, self.run_dir, "longstm-lob-",
            self.progress, inputs=names,
        )
        self._trained = CompiledModel(model)

    def scores(self, inputs) -> np.ndarray:
        """`(decision steps, 3)`: the model's outputs for down, flat, up at each decision step."""
        if self._trained is None:
            raise ConfigError("TrainedLOBPredictor.predict called before fit")
        features, _ = lob_model_inputs(inputs.features, inputs.columns)
        scaled = (features - self.mean) / self.std
        return carried_outputs(self._trained, scaled, [0], inputs.decision_steps, self.config.train.k2)

    def predict(self, inputs) -> np.ndarray:
        return np.asarray(LOB_CLASSES)[np.argmax(self.scores(inputs), axis=1)]


def lobster_factory(config: Config, run_root: str | Path | None = None, progress: bool = False):
    """`(name, factory)` for `evaluate_lobster`: a fresh `TrainedLOBPredictor` per k; the
    arguments and result are those of `hft_factory`."""
    return _config_factory(TrainedLOBPredictor, config, run_root, progress)
