"""The checks of a training config's values and their relations (`validate`), and the names
each choice key accepts; `longstm.train.config` reads configs and calls `validate` on each.

Errors are `ConfigError`s naming the file, the key, what was expected and what was got.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from longstm.data.panel import CalendarSplit
from longstm.data.store import as_duration, parse_session_rule
from longstm.errors import ConfigError, DataValidationError
from longstm.train.calendar_data import boundary_spec

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "epoch_decay")
PRECISIONS = ("off", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multiworker")  # as longstm.train.distribute.STRATEGIES
LOSSES = ("mse", "mae")  # the training loss of window training (longstm.train.windows)
MONITORS = ("val_mse", "val_mae")  # the validation score that keeps the best weights and stops early
TRAIN_MODES = ("tbptt", "windows")  # longstm.train.windows: look-back windows from a zero state
SCALINGS = ("per_series", "pooled")


def _fail(config, key: str, expected: str, got: Any):
    raise ConfigError(f"{config.source}: '{key}' must be {expected}; got {got!r}")


def validate(config) -> None:
    """Check values and their relations; raises `ConfigError` naming the key."""
    data, model, train, eval_ = config.data, config.model, config.train, config.eval
    for key, value, minimum in (
        ("data.offset", data.offset, 1),
        ("data.horizon", data.horizon, 1),
        ("model.units", model.units, 1),
        ("model.layers", model.layers, 1),
        ("model.lags", model.lags, 0),
        ("model.lag_width", model.lag_width, 1),
        ("train.lanes", train.lanes, 1),
        ("train.k1", train.k1, 1),
        ("train.k2", train.k2, 1),
        ("train.burn_in", train.burn_in, 0),
        ("train.epochs", train.epochs, 1),
        ("train.warmup_steps", train.warmup_steps, 0),
        ("train.decay_after_epochs", train.decay_after_epochs, 1),
        ("train.early_stopping_patience", train.early_stopping_patience, 0),
        ("train.checkpoint_every", train.checkpoint_every, 0),
        ("eval.lanes", eval_.lanes, 1),
        ("eval.warmup", eval_.warmup, 0),
    ):
        if value < minimum:
            _fail(config, key, f"an integer >= {minimum}", value)
    if model.lag_relative and model.lags < 2:
        raise ConfigError(
            f"{config.source}: 'model.lag_relative = true' needs 'model.lags' >= 2 (the previous input comes from "
            f"the lag buffer); got lags={model.lags}"
        )
    if train.k1 > train.k2:
        raise ConfigError(
            f"{config.source}: 'train.k1' must be <= 'train.k2' (the loss covers the last k1 of the k2 "
            f"steps of a window); got k1={train.k1}, k2={train.k2}"
        )
    if train.optimizer not in OPTIMIZERS:
        _fail(config, "train.optimizer", f"one of {OPTIMIZERS}", train.optimizer)
    if train.monitor not in MONITORS:
        _fail(config, "train.monitor", f"one of {MONITORS}", train.monitor)
    if train.schedule not in SCHEDULES:
        _fail(config, "train.schedule", f"one of {SCHEDULES}", train.schedule)
    if not 0 < train.decay_rate <= 1:
        _fail(config, "train.decay_rate", "a number in (0, 1] (the rate is multiplied by it once per epoch)", train.decay_rate)
    if train.schedule == "epoch_decay" and train.warmup_steps:
        _fail(config, "train.warmup_steps", "0 with schedule = \"epoch_decay\" (it holds the rate, then decays it)", train.warmup_steps)
    if train.mode not in TRAIN_MODES:
        _fail(config, "train.mode", f"one of {TRAIN_MODES}", train.mode)
    if train.loss not in LOSSES or (train.loss != "mse" and train.mode != "windows"):
        _fail(config, "train.loss", f"one of {LOSSES} (\"mae\" with train.mode = \"windows\" only)", train.loss)
    if train.mode == "windows" and train.strategy != "default":
        _fail(config, "train.strategy", "\"default\" with train.mode = \"windows\" (window training runs on one device)", train.strategy)
    if train.strategy not in STRATEGIES:
        _fail(config, "train.strategy", f"one of {STRATEGIES}", train.strategy)
    if train.mixed_precision not in PRECISIONS:
        _fail(config, "train.mixed_precision", f"one of {PRECISIONS}", train.mixed_precision)
    if not train.learning_rate > 0:
        _fail(config, "train.learning_rate", "a number > 0", train.learning_rate)
    if not 0 <= train.min_learning_rate <= train.learning_rate:
        _fail(config, "train.min_learning_rate", f"a number in [0, learning_rate={train.learning_rate}]", train.min_learning_rate)
    if train.max_seconds < 0:
        _fail(config, "train.max_seconds", "a number of seconds >= 0 (0: no budget)", train.max_seconds)
    if train.weight_decay < 0:
        _fail(config, "train.weight_decay", "a number >= 0", train.weight_decay)
    if train.clipnorm < 0:
        _fail(config, "train.clipnorm", "a number >= 0 (0 turns clipping off)", train.clipnorm)
    if not 0 <= model.dropout < 1:
        _fail(config, "model.dropout", "a number in [0, 1)", model.dropout)
    _validate_panel_keys(config)
    if isinstance(data.split, dict):
        CalendarSplit.from_dict(data.split).bounds  # names the bad key or date
    elif len(data.split) != 3 or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in data.split):
        _fail(config, "data.split", "three numbers [train, validation, test]", data.split)
    if isinstance(data.split, list) and (any(f < 0 for f in data.split) or data.split[0] <= 0 or abs(sum(data.split) - 1) > 1e-6):
        _fail(config, "data.split", "three fractions >= 0 summing to 1 with train > 0", data.split)
    for key in ("features", "targets"):
        names = getattr(data, key)
        if not all(isinstance(name, str) for name in names):
            _fail(config, f"data.{key}", "a list of column names", names)
    # Imported here, not at the top: the registry imports the model classes (Keras), and
    # reading a config for `--help` or a dry check should not start TensorFlow.
    from longstm.models.registry import MODELS

    if model.name not in MODELS:
        _fail(config, "model.name", f"one of {sorted(MODELS)}", model.name)
    if "levels" in model.options:  # a calendar model's levels, checked before any data is read (none: the builder says)
        boundary_spec(config)


def _validate_panel_keys(config) -> None:
    data = config.data
    if data.scaling not in SCALINGS:
        _fail(config, "data.scaling", f"one of {SCALINGS}", data.scaling)
    for key, values in (("series", data.series), ("time_targets", data.time_targets), ("mid", data.mid)):
        if not all(isinstance(value, str) for value in values):
            _fail(config, f"data.{key}", "a list of strings", values)
    try:
        parse_session_rule(data.session_gap)
    except DataValidationError:
        _fail(config, "data.session_gap", "a positive duration like '1h', or FREQ@ZONE like '1D@America/New_York'", data.session_gap)
    for key, value in [("data.time_targets", v) for v in data.time_targets]:
        try:
            if as_duration(value) <= np.timedelta64(0, "ns"):
                raise DataValidationError("not positive")
        except DataValidationError:
            _fail(config, key, "a positive duration like '10s', '1min' or '1h'", value)
    if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in data.event_targets):
        _fail(config, "data.event_targets", "a list of tick counts >= 1", data.event_targets)
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.tz.items()):
        _fail(config, "data.tz", "a table of path patterns to time zones, like { \"fxcm_*\" = \"-05:00\" }", data.tz)
    bad = {k: v for k, v in data.series_weights.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
    if bad:
        _fail(config, "data.series_weights", "a table of series names to numbers >= 0", bad)


# What a `[horizons.H]` table may set: the model's family and options, and the data, are the
# same at every horizon (a protocol reads them once for all horizons).
HORIZON_TABLES = ("seed", "model", "train", "eval")
HORIZON_FIXED = ("model.name", "model.options")


def horizon_tables(raw: Any, source: str) -> dict[str, dict]:
    """The `horizons` table checked and with its keys written as plain integers ("0720" -> "720")."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: 'horizons' must be a table like [horizons.720.train]; got {type(raw).__name__} {raw!r}")
    tables = {}
    for key, values in raw.items():
        text = str(key).strip()
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"{source}: 'horizons.{key}' must be named by a horizon, an integer >= 1; got {key!r}")
        where = f"horizons.{int(text)}"
        if not isinstance(values, dict) or any(table not in HORIZON_TABLES for table in values):
            raise ConfigError(f"{source}: '{where}' may set {HORIZON_TABLES}; got {values!r}")
        for table, value in values.items():
            if table != "seed" and not isinstance(value, dict):
                raise ConfigError(f"{source}: '{where}.{table}' must be a table; got {type(value).__name__} {value!r}")
        for name in HORIZON_FIXED:
            table, field_name = name.split(".")
            if field_name in (values.get(table) or {}):
                raise ConfigError(f"{source}: '{where}.{name}' cannot differ by horizon (the model family and its options are "
                                  f"read once for all horizons); use another config")
        if str(int(text)) in tables:
            raise ConfigError(f"{source}: '{where}' is given twice (as {key!r} too)")
        tables[str(int(text))] = values
    return tables
