"""Config-driven runs: data → lanes → model → `Trainer`, and the run directory they leave.

    config = load_config("configs/tbptt_lstm_etth1.toml")
    result = train_from_config(config, "runs/etth1")      # {"val": {...}, "test": {...}, ...}
    evaluate_run("runs/etth1")                            # the same scores from the saved run
    predict_run("runs/etth1", "new.csv", out="pred.csv")  # per-row forecasts, data units

A run directory holds:

    config.toml         the resolved config (what `evaluate`/`predict` rebuild from)
    data.json           columns, targets, split rows and the train-only scaler
    checkpoints/        latest/ (weights, optimizer, lane states, position), best.npz
    steps.csv           loss and learning rate of every update
    metrics.csv/.json   per-epoch train/validation scores (+ final val/test in the JSON)
    loss.png            loss curves
    tensorboard/        tf.summary logs (`tensorboard --logdir RUN_DIR/tensorboard`)

A store (`longstm data convert`) as `data.path` trains one model over all its series:
`load_panel` gives a `PanelDataset` (calendar split, sessions as state resets, `[[pipeline]]`
features, `data.time_targets`, train-only scaling per series or pooled), `part_lanes` its lanes
packed with (series, session) segments, and `longstm.train.panel.predict_panel` its forecasts.
Raw folders, globs and lists of sources are converted once into `RUN/store` by training
(`longstm.train.raw_sources`) and refused elsewhere with the one `longstm data convert` command.

Splits are chronological (`data.split`, Informer's rounding). Validation and test lanes
start with `eval.warmup` rows of the past (the end of the preceding split for the first
lane) with their loss masked, so their state is warmed up on the past, never on the future.

The pieces, also used by the evaluation protocols (`longstm.evaluate`) to set training up alike:

- `set_seed_and_precision(config)`: the one seeding (seed, determinism, precision policy);
- `build_trainer(config, data)`: a seeded model for the data's columns and its `Trainer`;
- `training_lanes`, `evaluation_lanes` (and `PreparedData.lanes`): the `LaneWindows` for
  training, and for validation/evaluation with warm-up;
- `fit_and_keep_best(trainer, train_lanes, val_lanes)`: fit, then reload the best epoch;
- `longstm.train.carried.carried_outputs`: one pass over a series with carried state.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from longstm.data import FeaturePipeline, StandardScaler, load_series
from longstm.data.bars import check_bar_sessions
from longstm.data.lanes import LaneWindows
from longstm.data.panel import CalendarSplit, PanelDataset
from longstm.data.sources import convert_advice
from longstm.data.splits import split_rows
from longstm.data.store import is_store
from longstm.errors import ConfigError, DataValidationError
from longstm.models.registry import build_model
from longstm.train.calendar_data import (
    boundary_names, check_timestamps, model_columns, model_pipeline, unscaled_flags,
)
from longstm.train.config import Config, load_config
from longstm.train.distribute import get_strategy, is_chief
from longstm.train.panel_workers import grouped_training_lanes, panel_share
from longstm.train.raw_sources import is_raw_sources, store_in_run
from longstm.train.rundir import RunDir
from longstm.train.trainer import Trainer


@dataclass
class ModelColumns:
    """Which columns a model reads and forecasts, and the names of all columns.

    What `build_trainer` needs of the data; `PreparedData` offers the same three attributes.
    """

    feature_columns: list[int]
    target_columns: list[int]
    column_names: list[str]


@dataclass
class PreparedData:
    """A loaded series and everything needed to cut it into lanes: columns, split rows, scaler."""

    series: Any
    feature_columns: list[int]
    target_columns: list[int]
    splits: dict[str, tuple[int, int]]
    mean: np.ndarray | None
    std: np.ndarray | None
    pipeline: FeaturePipeline | None = None  # the config's [[pipeline]], already applied to `series`

    @property
    def column_names(self) -> list[str]:
        return list(self.series.columns)

    def lanes(self, config: Config, part: str, rows: tuple[int, int] | None = None) -> LaneWindows:
        """The `LaneWindows` of split `part` ("train", "val", "test") or of `rows`: training
        lanes for "train", evaluation lanes (warm-up on the past) otherwise."""
        columns = dict(
            feature_columns=self.feature_columns,
            target_columns=self.target_columns,
            segments=self.series.segments,
            rows=self.splits[part] if rows is None else rows,
            mean=self.mean,
            std=self.std,
        )
        if part == "train":
            return training_lanes(config, self.series.values, **columns)
        return evaluation_lanes(config, self.series.values, **columns)


def training_lanes(config: Config, values, *, burn_in: int | None = None, offset: int | None = None,
                   horizon: int | None = None, **columns) -> LaneWindows:
    """`train.lanes` lanes of TBPTT(`train.k1`, `train.k2`) windows over `values`.

    Args:
        config: the run's config.
        values: the `(rows, columns)` array (or memmap) to read.
        burn_in: rows after each segment start without a loss (default `train.burn_in`).
        offset, horizon: of the targets (default `data.offset`, `data.horizon`).
        **columns: the other `LaneWindows` arguments (feature_columns, target_columns,
            segments, rows, mean, std).

    Returns:
        The `LaneWindows`.
    """
    train = config.train
    return LaneWindows(
        values, lanes=train.lanes, k1=train.k1, k2=train.k2,
        burn_in=train.burn_in if burn_in is None else burn_in,
        offset=config.data.offset if offset is None else offset,
        horizon=config.data.horizon if horizon is None else horizon,
        **columns,
    )


def evaluation_lanes(config: Config, values, *, burn_in: int | None = None, offset: int | None = None,
                     horizon: int | None = None, **columns) -> LaneWindows:
    """`eval.lanes` lanes of `train.k2`-row windows, each lane warmed up on the rows before it.

    Args as for `training_lanes`, except that `burn_in` defaults to `eval.warmup`: the rows
    of the past each lane runs before its first loss.
    """
    return LaneWindows(
        values, lanes=config.eval.lanes, k1=config.train.k2, k2=config.train.k2,
        burn_in=config.eval.warmup if burn_in is None else burn_in,
        offset=config.data.offset if offset is None else offset,
        horizon=config.data.horizon if horizon is None else horizon,
        **columns,
    )


def resolve_data_path(config: Config, raw_ok: bool = False) -> Path | list[str]:
    """`data.path` as given, else relative to the config file's folder.

    Raw sources (a folder, glob or list; `longstm.train.raw_sources`) are returned as they are
    with `raw_ok` (training converts them into its run); otherwise they are a ConfigError
    with the one command that converts them.
    """
    if not config.data.path:
        raise ConfigError(f"{config.source}: 'data.path' is required (the series file to train on)")
    if isinstance(config.data.path, list):
        paths = [str(_beside_config(config, item)) for item in config.data.path]
        if raw_ok:
            return paths
        raise ConfigError(f"{config.source}: 'data.path' is a list of raw sources; {convert_advice(' '.join(paths))}")
    path = _beside_config(config, config.data.path)
    if is_raw_sources(path) and not raw_ok:
        raise ConfigError(f"{config.source}: 'data.path' {str(path)!r} is a folder or glob of raw sources; {convert_advice(path)}")
    return path


def _beside_config(config: Config, name: str) -> Path:
    path = Path(name)
    if not (path.exists() or path.is_absolute()):
        beside = Path(config.source).parent / path
        path = beside if beside.exists() else path
    return path


def load_panel(config: Config, scaler: dict | None = None, share=None) -> PanelDataset:
    """The panel of the store at `data.path`: its series, calendar split, `[[pipeline]]`,
    time targets and train-only scaler (`scaler`, a saved one, instead of fitting); with a
    `share` (`longstm.train.panel_workers.PanelShare`), only this worker's series are read."""
    data = config.data
    if not isinstance(data.split, dict):
        raise ConfigError(f"{config.source}: a store needs a calendar split: data.split = {{ train_until = \"...\", val_until = \"...\" }}")
    if data.targets or data.horizon != 1 or data.offset != 1:
        raise ConfigError(f"{config.source}: on a store the targets are data.time_targets and data.event_targets; "
                          f"leave data.targets, offset and horizon unset")
    check_bar_sessions(resolve_data_path(config), config.source, data.session_gap)  # a bar store's sessions must be its ticks'
    flags = boundary_names(config)  # a calendar model's boundary flags: its last inputs, unscaled
    features = [name for name in data.features if name not in flags] + flags if data.features else []
    panel = PanelDataset(
        resolve_data_path(config), CalendarSplit.from_dict(data.split), data.time_targets, model_pipeline(config),
        events=data.event_targets, features=features, series=share.series if share else data.series, session_gap=data.session_gap, mid_columns=data.mid,
        series_weights=data.series_weights, scaling=data.scaling if data.scale else None, scaler=scaler,
        **({} if share is None else {"all_series": share.all_series, "all_reduce": share.all_reduce}),
    )
    for mean, scale in (panel.scaler or {}).values():
        unscaled_flags(mean, scale, panel.column_names, flags)
    return panel


def load_any(config: Config, scaler: dict | None = None) -> PreparedData | PanelDataset:
    """`load_panel` for a store, else `load_data`."""
    return load_panel(config, scaler) if is_store(resolve_data_path(config)) else load_data(config, scaler=scaler)


def part_lanes(config: Config, data: PreparedData | PanelDataset, part: str) -> LaneWindows:
    """The lanes of `part`: training lanes for "train", evaluation lanes (warm-up) otherwise."""
    if not isinstance(data, PanelDataset):
        return data.lanes(config, part)
    rows = data.rows(part, warmup=0 if part == "train" else config.eval.warmup)
    make = training_lanes if part == "train" else evaluation_lanes
    return make(config, rows, segments=rows.segments, **data.lane_columns())


def has_part(data: PreparedData | PanelDataset, part: str) -> bool:
    if isinstance(data, PanelDataset):
        return data.has(part)
    start, stop = data.splits[part]
    return stop > start


def load_data(config: Config, path: str | Path | None = None, scaler: dict | None = None) -> PreparedData:
    """Load the series of `config` (or `path`), pick columns, split, fit the train-only scaler.

    With `scaler` (a saved `StandardScaler.to_dict()`) the statistics are reused instead of fit.
    """
    path = resolve_data_path(config) if path is None else Path(path)
    if isinstance(config.data.split, dict):
        raise ConfigError(f"{config.source}: a calendar split (data.split = {{...}}) needs a store; {convert_advice(path)}")
    series = load_series(path, kind=config.data.kind, gap_policy=config.data.gap_policy)
    pipeline = None
    check_timestamps(config, series.timestamps is not None, str(path))
    specs = model_pipeline(config)  # the [[pipeline]] tables, and a calendar model's boundary flags last
    if specs:  # before picking columns: data.features/targets may name its outputs
        pipeline = FeaturePipeline(specs, series.columns, source=str(path))
        series = pipeline.transform(series)
    names = list(series.columns)

    def indices(key: str, wanted: list[str]) -> list[int]:
        if not wanted:
            return list(range(len(names)))
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ConfigError(f"{config.source}: 'data.{key}' names columns {missing} that {path} lacks; it has {names}")
        return [names.index(name) for name in wanted]

    features = indices("features", config.data.features)
    targets = indices("targets", config.data.targets)
    flags = boundary_names(config)
    features, targets = model_columns(names, features, targets, flags)
    splits = split_rows(len(series), config.data.split)
    mean = std = None
    if scaler is not None:
        fitted = StandardScaler.from_dict(scaler)
        if fitted.mean.shape[0] != len(names):
            raise DataValidationError(
                f"{path}: has {len(names)} columns {names} but the run was trained on {fitted.columns}"
            )
        mean, std = fitted.mean.astype(np.float32), fitted.scale.astype(np.float32)
    elif config.data.scale:
        start, stop = splits["train"]
        fitted = StandardScaler(names).fit(series.values[start:stop])
        mean, std = fitted.mean.astype(np.float32), fitted.scale.astype(np.float32)
    if mean is not None:
        unscaled_flags(mean, std, names, flags)
    return PreparedData(series, features, targets, splits, mean, std, pipeline)


def set_seed_and_precision(config: Config) -> None:
    """Seed Python, NumPy and TensorFlow with `seed`, make ops deterministic when
    `deterministic = true`, and set the `train.mixed_precision` policy (before a model is built)."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = "float32" if config.train.mixed_precision == "off" else config.train.mixed_precision
    keras.mixed_precision.set_global_policy(policy)


def model_for(config: Config, feature_columns: list[int], target_columns: list[int], names: list[str]):
    """The untrained forecaster a run's config describes, for these feature/target columns."""
    residual_inputs = []
    if config.model.residual:
        missing = [names[i] for i in target_columns if i not in feature_columns]
        if missing:
            raise ConfigError(
                f"{config.source}: 'model.residual = true' adds each target's current value to its forecast, "
                f"so the targets must be among 'data.features'; {missing} are not"
            )
        residual_inputs = [feature_columns.index(i) for i in target_columns]
    n_outputs = len(target_columns) * config.data.horizon
    return build_model(config.model, len(feature_columns), n_outputs, residual_inputs)


def build_trainer(
    config: Config, data: PreparedData | ModelColumns, run_dir=None, progress: bool = True, callbacks=(),
    strategy="default",
) -> Trainer:
    """Seeded model (by `model.name`) for the data's columns and a `Trainer` for it.

    Args:
        config: the run's config.
        data: a `PreparedData` or `ModelColumns` (feature and target columns, column names).
        run_dir: where the trainer writes (None: nothing is kept).
        progress: show progress bars.
        callbacks: as `Trainer`.
        strategy: "default" (one device, whatever the config says), "mirrored",
            "multiworker" or a `tf.distribute.Strategy` (resolved already by a caller that
            must create it first); the model is created under its scope.

    Returns:
        The `Trainer`; its model is `trainer.model`.

    Example:

    >>> trainer = build_trainer(config, load_data(config), run_dir="runs/x")
    """
    strategy = get_strategy(strategy)
    set_seed_and_precision(config)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = model_for(config, data.feature_columns, data.target_columns, list(data.column_names))
    return Trainer(
        model, config, run_dir=run_dir, progress=progress, callbacks=callbacks, strategy=strategy or "default"
    )


def fit_and_keep_best(trainer: Trainer, train_lanes: LaneWindows, val_lanes: LaneWindows | None,
                      resume: bool = False) -> list[dict[str, Any]]:
    """Fit, then reload the weights of the best validation epoch.

    The trainer saves them (`best.npz` in its run directory) whenever the validation score
    named by `train.monitor` improves; without validation lanes or a run directory the last epoch's weights stay.

    Args:
        trainer: a `Trainer` (from `build_trainer`).
        train_lanes: training `LaneWindows`.
        val_lanes: validation `LaneWindows`, or None.
        resume: continue from the run directory's latest checkpoint.

    Returns:
        The per-epoch history.
    """
    history = trainer.fit(train_lanes, val_lanes, resume=resume)
    if val_lanes is not None and trainer.run is not None and trainer.run.best_weights.is_file():
        trainer.load_weights(trainer.run.best_weights, train_lanes)
    return history


def _data_record(config: Config, data: PreparedData) -> dict[str, Any]:
    names = list(data.series.columns)
    return {
        "source": str(data.series.source),
        "rows": len(data.series),
        "columns": names,
        "features": [names[i] for i in data.feature_columns],
        "targets": [names[i] for i in data.target_columns],
        "splits": {key: list(value) for key, value in data.splits.items()},
        "scaler": None
        if data.mean is None
        else {"kind": "standard", "columns": names, "mean": data.mean.tolist(), "scale": data.std.tolist()},
        # What serving rebuilds the features from (FeaturePipeline.from_dict); None: the columns as loaded.
        "feature_pipeline": None if data.pipeline is None else data.pipeline.to_dict(),
    }


def train_from_config(
    config: Config | str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks=(),
    strategy=None,
) -> dict[str, Any]:
    """Train as `config` says, leave everything in `run_dir`, return final val/test scores.

    `resume=True` continues an interrupted run in `run_dir` from its latest checkpoint.
    `strategy` (None: `train.strategy` of the config) distributes training; a run may resume
    under another strategy than the one that wrote its checkpoint. Under "multiworker" only
    the chief (worker 0) writes the run directory.
    """
    config = (config if isinstance(config, Config) else load_config(config)).at_horizon()  # its [horizons.H]
    if config.train.mode == "windows":  # look-back windows need the protocol's L; training here carries state
        raise ConfigError(
            f"{config.source}: train.mode = \"windows\" trains on the look-back windows of `longstm eval ett` "
            f"(--lookback L); `longstm train` trains with carried state: set train.mode = \"tbptt\" or run "
            f"`longstm eval ett --model <this config> --lookback L`"
        )
    # First: a multi-worker strategy must exist before any other TensorFlow operation runs.
    strategy = get_strategy(config.train.strategy if strategy is None else strategy)
    run = RunDir(run_dir)
    if is_chief(strategy):  # one writer per run directory: held before anything is written
        with run.lock():
            return _train_into(config, run, strategy, resume, progress, callbacks, chief=True)
    return _train_into(config, run, strategy, resume, progress, callbacks, chief=False)


def _train_into(config: Config, run: RunDir, strategy, resume: bool, progress: bool, callbacks, *, chief: bool) -> dict[str, Any]:
    run.path.mkdir(parents=True, exist_ok=True)
    path = resolve_data_path(config, raw_ok=True)
    if is_raw_sources(path):  # converted once into RUN/store, reused on resume (longstm.train.raw_sources)
        path = store_in_run(config, path, run.path, progress=progress, chief=chief)
    # The saved config.toml must find the data from anywhere: store an absolute path.
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(Path(path).resolve())))
    if resume and run.config_path.exists():
        if _without_strategy(run.read_config()) != _without_strategy(config):
            raise ConfigError(f"{run.path}: cannot resume with a different config than the one saved in config.toml")
    # A store over several workers: each reads only its own series (longstm.train.panel_workers).
    share = panel_share(config, config.data.path, strategy) if is_store(config.data.path) else None
    data = load_panel(config, share=share) if share else load_any(config)
    if chief:
        run.write_config(config)
        run.write_data_record(data.record() if isinstance(data, PanelDataset) else _data_record(config, data))
    trainer = build_trainer(
        config, data, run_dir=run.path, progress=progress, callbacks=callbacks, strategy=strategy or "default"
    )
    if share:  # no validation or scores: they would read every series (`longstm evaluate RUN` afterwards)
        train = grouped_training_lanes(config, data, share.groups, held=share.index, all_reduce=share.all_reduce)
        fit_and_keep_best(trainer, train, None, resume=resume)
        return {}
    validation = part_lanes(config, data, "val") if has_part(data, "val") else None
    fit_and_keep_best(trainer, part_lanes(config, data, "train"), validation, resume=resume)
    return _final_scores(trainer, config, data, run)


def _final_scores(trainer, config, data, run: RunDir) -> dict[str, Any]:
    scores = {}
    for part in ("val", "test"):
        if has_part(data, part):
            scores[part] = trainer.evaluate(part_lanes(config, data, part))
    if not getattr(trainer, "chief", True):
        return scores
    metrics = run.read_metrics() or {"epochs": trainer.history}
    metrics.update(scores)
    run.write_metrics(metrics)
    return scores


def _without_strategy(config: Config) -> dict[str, Any]:
    raw = config.to_dict()
    raw["train"].pop("strategy", None)
    return raw


def load_run(run_dir: str | Path, progress: bool = False):
    """`(config, data, trainer)` of a finished run, with its best (else latest) weights loaded."""
    run = RunDir(run_dir)
    config = run.read_config()
    record = run.read_data_record()
    data = load_any(config, scaler=record["scaler"])
    trainer = build_trainer(config, data, progress=progress)
    trainer.load_weights(run.weights("best"), part_lanes(config, data, "train"))
    return config, data, trainer


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    """Validation and test scores of a saved run, recomputed from its checkpoint."""
    config, data, trainer = load_run(run_dir)
    return _final_scores(trainer, config, data, RunDir(run_dir))


def predict_run(run_dir: str | Path, data_path: str | Path, out: str | Path | None = None):
    """Forecasts for the rows of `data_path`, each from a state that saw only the past.

    The file is run from its first row through the run's eval lanes and scaled with the
    run's train-only scaler. The first `eval.warmup` rows of each segment only warm the
    state up and get no forecast (nor do the last rows, whose targets lie past the file's
    end); later lanes warm up on the `eval.warmup` rows before them. Returns a `pandas.DataFrame` with `row`, the timestamp when the file has them,
    and one column per target and horizon (`OT+1`, ...) in the data's units; written as CSV
    to `out` when given.
    """
    config, loaded, trainer = load_run(run_dir)
    if isinstance(loaded, PanelDataset):
        raise ConfigError(f"{run_dir}: was trained on the store {config.data.path}; forecast it with longstm.train.panel.predict_panel")
    record = RunDir(run_dir).read_data_record()
    data = load_data(config, path=data_path, scaler=record["scaler"])
    if list(data.series.columns) != record["columns"]:
        raise DataValidationError(f"{data_path}: has columns {list(data.series.columns)}; the run was trained on {record['columns']}")
    rows, predictions = trainer.predict(data.lanes(config, "test", rows=(0, len(data.series))))
    targets = [record["columns"][i] for i in data.target_columns]
    if data.mean is not None:
        mean = np.tile(data.mean[data.target_columns], config.data.horizon)
        std = np.tile(data.std[data.target_columns], config.data.horizon)
        predictions = predictions * std + mean
    names = [f"{name}+{config.data.offset + h}" for h in range(config.data.horizon) for name in targets]
    frame = pd.DataFrame(predictions, columns=names)
    frame.insert(0, "row", rows)
    if data.series.timestamps is not None:
        frame.insert(1, "timestamp", data.series.timestamps[rows])
    if out is not None:
        frame.to_csv(out, index=False)
    return frame
