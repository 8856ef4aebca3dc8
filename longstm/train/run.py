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

Splits are chronological (`data.split`, Informer's rounding). Validation and test lanes
start with `eval.warmup` rows of the past (the end of the preceding split for the first
lane) with their loss masked, so their state is warmed up on the past, never on the future.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longstm.errors import ConfigError, DataValidationError
from longstm.train.config import Config, load_config


@dataclass
class PreparedData:
    """A loaded series and everything needed to stream it: columns, split rows, scaler."""

    series: Any
    feature_columns: list[int]
    target_columns: list[int]
    splits: dict[str, tuple[int, int]]
    mean: np.ndarray | None
    std: np.ndarray | None

    def stream(self, config: Config, part: str, rows: tuple[int, int] | None = None):
        """The `LaneWindows` of split `part` ("train", "val", "test") or of `rows`."""
        from longstm.data.lanes import LaneWindows

        rows = self.splits[part] if rows is None else rows
        common = dict(
            feature_columns=self.feature_columns,
            target_columns=self.target_columns,
            offset=config.data.offset,
            horizon=config.data.horizon,
            segments=self.series.segments,
            rows=rows,
            mean=self.mean,
            std=self.std,
        )
        if part == "train":
            train = config.train
            return LaneWindows(
                self.series.values, lanes=train.lanes, k1=train.k1, k2=train.k2, burn_in=train.burn_in, **common
            )
        return LaneWindows(
            self.series.values,
            lanes=config.eval.lanes,
            k1=config.train.k2,
            k2=config.train.k2,
            burn_in=config.eval.warmup,
            **common,
        )


def resolve_data_path(config: Config) -> Path:
    """`data.path` as given, else relative to the config file's folder."""
    path = Path(config.data.path)
    if not config.data.path:
        raise ConfigError(f"{config.source}: 'data.path' is required (the series file to train on)")
    if path.exists() or path.is_absolute():
        return path
    beside = Path(config.source).parent / path
    return beside if beside.exists() else path


def load_data(config: Config, path: str | Path | None = None, scaler: dict | None = None) -> PreparedData:
    """Load the series of `config` (or `path`), pick columns, split, fit the train-only scaler.

    With `scaler` (a saved `StandardScaler.to_dict()`) the statistics are reused instead of fit.
    """
    from longstm.data import StandardScaler, load_series

    path = resolve_data_path(config) if path is None else Path(path)
    series = load_series(path, kind=config.data.kind, gap_policy=config.data.gap_policy)
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
    return PreparedData(series, features, targets, splits, mean, std)


def split_rows(n_rows: int, fractions) -> dict[str, tuple[int, int]]:
    """Chronological row ranges with Informer's rounding (as `chronological_split`):
    `int(n * train)` and `int(n * test)` rows, validation the rest; empty parts allowed."""
    train = int(n_rows * fractions[0])
    test = int(n_rows * fractions[2])
    if train < 1:
        raise DataValidationError(f"data.split {list(fractions)} leaves no training rows out of {n_rows}")
    return {"train": (0, train), "val": (train, n_rows - test), "test": (n_rows - test, n_rows)}


def _seed_everything(config: Config) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def _set_precision(config: Config) -> None:
    import keras

    policy = "float32" if config.train.mixed_precision == "off" else config.train.mixed_precision
    keras.mixed_precision.set_global_policy(policy)


def model_for(config: Config, feature_columns: list[int], target_columns: list[int], names: list[str]):
    """The untrained forecaster a run's config describes, for these feature/target columns."""
    from longstm.models.registry import build_model

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
    config: Config, data: PreparedData, run_dir=None, progress: bool = True, callbacks=(), strategy="default"
):
    """Seeded model (by `model.name`) and a `Trainer` for it.

    `strategy`: "default" (one device, whatever the config says), "mirrored", "multiworker"
    or a `tf.distribute.Strategy`; the model is created under its scope.
    """
    import contextlib

    from longstm.train.distribute import get_strategy
    from longstm.train.trainer import Trainer

    strategy = get_strategy(strategy)
    _seed_everything(config)
    _set_precision(config)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = model_for(config, data.feature_columns, data.target_columns, list(data.series.columns))
    return Trainer(
        model, config, run_dir=run_dir, progress=progress, callbacks=callbacks, strategy=strategy or "default"
    )


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
    from longstm.train.distribute import get_strategy, is_chief

    if not isinstance(config, Config):
        config = load_config(config)
    # First: a multi-worker strategy must exist before any other TensorFlow operation runs.
    strategy = get_strategy(config.train.strategy if strategy is None else strategy)
    chief = is_chief(strategy)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # The saved config.toml must find the data from anywhere: store an absolute path.
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(resolve_data_path(config).resolve())))
    if resume and (run_dir / "config.toml").exists():
        saved = load_config(run_dir / "config.toml")
        if _without_strategy(saved) != _without_strategy(config):
            raise ConfigError(f"{run_dir}: cannot resume with a different config than the one saved in config.toml")
    data = load_data(config)
    if chief:
        (run_dir / "config.toml").write_text(config.to_toml())
        (run_dir / "data.json").write_text(json.dumps(_data_record(config, data), indent=1))
    trainer = build_trainer(
        config, data, run_dir=run_dir, progress=progress, callbacks=callbacks, strategy=strategy or "default"
    )
    validation = data.stream(config, "val") if data.splits["val"][1] > data.splits["val"][0] else None
    trainer.fit(data.stream(config, "train"), validation, resume=resume)
    best = run_dir / "checkpoints" / "best.npz"
    if best.exists():
        trainer.load_weights(best, data.stream(config, "train"))
    return _final_scores(trainer, config, data, run_dir)


def _final_scores(trainer, config, data, run_dir: Path) -> dict[str, Any]:
    scores = {}
    for part in ("val", "test"):
        start, stop = data.splits[part]
        if stop > start:
            scores[part] = trainer.evaluate(data.stream(config, part))
    if not getattr(trainer, "chief", True):
        return scores
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {"epochs": trainer.history}
    metrics.update(scores)
    metrics_path.write_text(json.dumps(metrics, indent=1))
    return scores


def _without_strategy(config: Config) -> dict[str, Any]:
    raw = config.to_dict()
    raw["train"].pop("strategy", None)
    return raw


def load_run(run_dir: str | Path, progress: bool = False):
    """`(config, data, trainer)` of a finished run, with its best (else latest) weights loaded."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").exists():
        raise ConfigError(f"{run_dir}: not a run directory (no config.toml); train one with `longstm train`")
    config = load_config(run_dir / "config.toml")
    record = json.loads((run_dir / "data.json").read_text())
    data = load_data(config, scaler=record["scaler"])
    trainer = build_trainer(config, data, progress=progress)
    weights = run_dir / "checkpoints" / "best.npz"
    if not weights.exists():
        weights = run_dir / "checkpoints" / "latest" / "variables.npz"
    if not weights.exists():
        raise ConfigError(f"{run_dir}: has no checkpoint yet (checkpoints/best.npz or checkpoints/latest)")
    trainer.load_weights(weights, data.stream(config, "train"))
    return config, data, trainer


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    """Validation and test scores of a saved run, recomputed from its checkpoint."""
    config, data, trainer = load_run(run_dir)
    return _final_scores(trainer, config, data, Path(run_dir))


def predict_run(run_dir: str | Path, data_path: str | Path, out: str | Path | None = None):
    """Forecasts for the rows of `data_path`, each from a state that saw only the past.

    The file is streamed from its first row with the run's eval lanes and scaled with the
    run's train-only scaler. The first `eval.warmup` rows of each segment only warm the
    state up and get no forecast (nor do the last rows, whose targets lie past the file's
    end); later lanes warm up on the `eval.warmup` rows before them. Returns a `pandas.DataFrame` with `row`, the timestamp when the file has them,
    and one column per target and horizon (`OT+1`, ...) in the data's units; written as CSV
    to `out` when given.
    """
    import pandas as pd

    config, _, trainer = load_run(run_dir)
    record = json.loads((Path(run_dir) / "data.json").read_text())
    data = load_data(config, path=data_path, scaler=record["scaler"])
    if list(data.series.columns) != record["columns"]:
        raise DataValidationError(f"{data_path}: has columns {list(data.series.columns)}; the run was trained on {record['columns']}")
    rows, predictions = trainer.predict(data.stream(config, "test", rows=(0, len(data.series))))
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
