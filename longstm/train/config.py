"""The training configuration: dataclasses loaded from TOML and validated.

A config file has up to five tables; every key is optional except `data.path`:

```toml
seed = 0
deterministic = false          # tf.config.experimental.enable_op_determinism()

[data]
path = "longstm/data/bundled/ETTh1.csv.gz"
kind = "auto"                  # as longstm.data.load_series
features = []                  # input columns (empty: all)
targets = ["OT"]               # forecast columns (empty: all)
offset = 1                     # forecast distance in rows
horizon = 1                    # direct multi-horizon: values t+offset .. t+offset+horizon-1
split = [0.7, 0.1, 0.2]        # chronological train / validation / test fractions, or on a
                               # store { train_until = "2014-05-10", val_until = "2014-05-13" }
scale = true                   # standardise with train-split mean and std
gap_policy = "split"           # gaps become segments (state resets)
# A store (`longstm data convert`) trains one model on all its series (longstm.train.run.load_panel).
# A folder, glob or list of raw sources is converted once into RUN/store (longstm.train.raw_sources):
series = []                    # the series to use (empty: all)
session_gap = "1h"             # a gap longer than this starts a session (a state reset); or a
                               # calendar rule FREQ@ZONE, e.g. "1D@America/New_York": one per day there
scaling = "per_series"         # or "pooled": train-only statistics over all series
time_targets = []              # e.g. ["10s", "60s"]: the mid's log return over the next Δ
event_targets = []             # e.g. [1, 10]: the mid's log return over the next k ticks
mid = ["bid", "ask"]           # the columns whose mean is the mid
series_weights = {}            # e.g. { fxcm_eurusd = 2.0 }: loss weight per series (default 1)
tz = {}                        # raw sources: PATTERN = ZONE of naive times, e.g. { "fxcm_*" = "-05:00" }
series_column = ""             # raw sources: a long table's series-id column (empty: detected)

[model]
name = "lstm"                  # a name in longstm.models.registry.MODELS
units = 64
layers = 1
dropout = 0.0
residual = false               # forecast the change from the targets' current values
lags = 0                       # > 0: a linear map over the last `lags` inputs beside the core
lag_width = 64                 # values that map gives the head per step (see LinearLagSkip)
lag_relative = false           # core reads x_t - x_{t-1}, the window x - x_t: no levels seen
options = {}                   # the model's own arguments, e.g. { mode = "sequential" }

[train]
lanes = 16
k1 = 128                       # loss length and stride of a window
k2 = 128                       # window length (k2 >= k1)
burn_in = 0
epochs = 10
optimizer = "adam"             # or "adamw"
learning_rate = 1e-3
weight_decay = 0.0             # adamw only
clipnorm = 1.0                 # global-norm clipping (0: off)
schedule = "constant"          # or "cosine"; or "epoch_decay" (SegRNN's lradj "type3"):
decay_after_epochs = 3         #   learning_rate for this many epochs,
decay_rate = 0.8               #   then times decay_rate after each further epoch
warmup_steps = 0
min_learning_rate = 0.0        # cosine floor
mixed_precision = "off"        # or "mixed_float16", "mixed_bfloat16"
early_stopping_patience = 0    # epochs without validation improvement (0: off)
monitor = "val_mse"            # or "val_mae": the validation score that keeps the best weights and
                               # stops early (SegRNN keeps the epoch of its training loss, MAE)
max_seconds = 0.0              # wall-time budget: stop at the end of the epoch it runs out in (0: none)
checkpoint_every = 0           # updates between mid-epoch checkpoints (0: at epoch ends)
strategy = "default"           # "mirrored" (local GPUs), "multiworker" (TF_CONFIG / Slurm);
                               # lanes must be a multiple of the replica count
mode = "tbptt"                 # or "windows": batches of `lanes` look-back windows, each from a
                               # zero state, loss on the last step's forecast (longstm.train.windows;
                               # the ETT protocol sets k2 = L, k1 = 1)
loss = "mse"                   # or "mae" (train.mode = "windows" only; validation stays MSE)

[eval]
lanes = 4
warmup = 512                   # rows of the past each evaluation lane runs before its loss

[[pipeline]]                   # causal features computed from the loaded columns (default none);
kind = "log_return"            # data.features/targets may then name their outputs
columns = ["close"]            # (kinds and keys: longstm.data.features.FeaturePipeline)

[horizons.720.train]           # values for one horizon only (`Config.at_horizon`): the model
learning_rate = 1e-4           # `longstm eval ett|hft|lobster` trains for H = 720, or `longstm train`
                               # with data.horizon = 720; [model] sizes, [train], [eval] and seed
```

Any value can be overridden without editing the file, so one config serves several datasets:
`load_config(path, overrides=["train.epochs=10", "model.options.mode=sequential"])`, or
`--set KEY=VALUE` on `longstm train` and on `longstm eval ett|hft|lobster` with config models
(see `apply_overrides`).

Errors are `ConfigError`s naming the file, the key, what was expected and what was got.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longstm.data.features import check_pipeline_specs
from longstm.errors import ConfigError
from longstm.train.config_checks import (  # noqa: F401 (re-exported: commands read these names here)
    LOSSES, OPTIMIZERS, PRECISIONS, SCALINGS, SCHEDULES, STRATEGIES, TRAIN_MODES, horizon_tables, validate,
)


@dataclass
class DataConfig:
    path: str = ""
    kind: str = "auto"
    features: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    offset: int = 1
    horizon: int = 1
    split: list = field(default_factory=lambda: [0.7, 0.1, 0.2])
    scale: bool = True
    gap_policy: str = "split"
    series: list = field(default_factory=list)
    session_gap: str = "1h"
    scaling: str = "per_series"
    time_targets: list = field(default_factory=list)
    event_targets: list = field(default_factory=list)
    mid: list = field(default_factory=lambda: ["bid", "ask"])
    series_weights: dict = field(default_factory=dict)
    # Raw sources as data.path (longstm.train.raw_sources): zones of naive timestamps, the series column.
    tz: dict = field(default_factory=dict)
    series_column: str = ""


@dataclass
class ModelConfig:
    name: str = "lstm"
    units: int = 64
    layers: int = 1
    dropout: float = 0.0
    residual: bool = False
    lags: int = 0  # 0: off; L: LinearLagSkip over the last L inputs (longstm.models.lags)
    # The window -> H outputs map through the head has rank <= lag_width. 64, the default LSTM
    # width, gives the head as many linear as recurrent features and costs lags x 64 weights
    # (21k at L=336); lag_width >= H allows any linear map (NLinear's full capacity).
    lag_width: int = 64
    # With lags: the core reads step changes and the window is relative to the current value,
    # so the model sees no levels (LinearLagSkip(relative=True)).
    lag_relative: bool = False
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    lanes: int = 16
    k1: int = 128
    k2: int = 128
    burn_in: int = 0
    epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    clipnorm: float = 1.0
    schedule: str = "constant"
    warmup_steps: int = 0
    min_learning_rate: float = 0.0
    decay_after_epochs: int = 3  # schedule = "epoch_decay": epochs at learning_rate, then
    decay_rate: float = 0.8      # the rate times decay_rate after each further epoch
    mixed_precision: str = "off"
    early_stopping_patience: int = 0
    monitor: str = "val_mse"
    max_seconds: float = 0.0
    checkpoint_every: int = 0
    strategy: str = "default"
    mode: str = "tbptt"
    loss: str = "mse"


@dataclass
class EvalConfig:
    lanes: int = 4
    warmup: int = 512


@dataclass
class Config:
    """The whole configuration of a training run (see the module docstring for the keys)."""

    seed: int = 0
    deterministic: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # The `[[pipeline]]` tables: a FeaturePipeline's specs, applied when the data is loaded.
    pipeline: list = field(default_factory=list)
    # `[horizons.H]`: {"H": {table: {key: value}}}, the values of the model trained for horizon H.
    horizons: dict = field(default_factory=dict)
    source: str = "<config>"

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw.pop("source")
        return raw

    def at_horizon(self, horizon: int | None = None) -> Config:
        """The config of the model trained for `horizon` (default `data.horizon`): the values
        of its `[horizons.H]` table set over the others, and no `horizons` table left.

        Example:

        >>> config = config_from_dict({"horizons": {"720": {"train": {"learning_rate": 1e-4}}}})
        >>> config.at_horizon(720).train.learning_rate, config.at_horizon(96).train.learning_rate
        (0.0001, 0.001)
        """
        horizon = self.data.horizon if horizon is None else int(horizon)
        raw = self.to_dict()
        tables = raw.pop("horizons").get(str(horizon), {})
        for table, values in tables.items():
            raw[table] = values if table == "seed" else {**raw[table], **values}
        try:
            return config_from_dict(raw, source=self.source)
        except ConfigError as error:  # say where the value came from
            raise ConfigError(f"{error} (from [horizons.{horizon}])") from None

    def horizon_values(self, horizon: int) -> dict[str, Any]:
        """The values `[horizons.H]` sets for `horizon`, by dotted key: {"train.learning_rate": 1e-4}."""
        values = {}
        for table, entries in self.horizons.get(str(int(horizon)), {}).items():
            if table == "seed":
                values["seed"] = entries
            else:
                values.update({f"{table}.{key}": value for key, value in entries.items()})
        return values

    def to_toml(self) -> str:
        """The config as TOML text that `load_config` reads back to an equal config."""
        raw = self.to_dict()
        lines = [f"{key} = {_toml_value(raw[key])}" for key in ("seed", "deterministic")]
        if raw["horizons"]:
            lines.append(f"horizons = {_toml_value(raw['horizons'])}")
        for table in ("data", "model", "train", "eval"):
            lines.append(f"\n[{table}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in raw[table].items()]
        for spec in raw["pipeline"]:
            lines.append("\n[[pipeline]]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in spec.items()]
        return "\n".join(lines) + "\n"


_TABLES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read and validate a TOML config file, with `overrides` ("KEY=VALUE", see
    `apply_overrides`) applied before validation."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return _validated(raw, str(path), overrides)


def with_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """`config` with `overrides` ("KEY=VALUE") applied and validated again."""
    return config if not overrides else _validated(config.to_dict(), config.source, overrides)


def read_config(config: Config | str | Path, overrides: Sequence[str] = ()) -> Config:
    """A validated `Config` from a config file or a `Config`, with `overrides` applied.

    This is how a command reads each training config it is given once (e.g. every `.toml`
    in `longstm eval hft --model a.toml,b.toml --set train.epochs=3`) and passes the
    `Config` down.

    Args:
        config: a path to a TOML config file, or a `Config` (taken as it is without overrides).
        overrides: "KEY=VALUE" strings, see `apply_overrides`.

    Returns:
        The validated `Config`.

    Example:

    >>> config = read_config("configs/ett_lstm.toml", ["train.epochs=3"])
    >>> read_config(config) is config
    True
    """
    if isinstance(config, Config):
        return with_overrides(config, overrides)
    if not Path(config).is_file():
        raise ConfigError(f"{config}: no such config file (--model takes a baseline name or a training config .toml)")
    return load_config(config, overrides)


def _validated(raw: dict[str, Any], source: str, overrides: Sequence[str]) -> Config:
    if not overrides:
        return config_from_dict(raw, source=source)
    raw = apply_overrides(raw, overrides)
    try:
        return config_from_dict(raw, source=source)
    except ConfigError as error:  # the bad value may come from the command line, not the file
        raise ConfigError(f"{error} (with --set {' --set '.join(overrides)})") from None


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the raw config dict with each "KEY=VALUE" of `overrides` set, in order.

    KEY is a dotted path ("train.epochs", "model.options.mode"); missing tables on the way are
    created. VALUE is read as a TOML value ("10" an int, "3e-3" a float, "true" a bool,
    "[[32, 24], [64, 1]]" a list, "{ mode = 'sequential' }" a table) and, when it is not one,
    taken as a bare string ("gru", "data/other.csv"). Only the form is checked here; unknown
    keys and bad values are left to `config_from_dict`, which names them.

    Example:

    >>> apply_overrides({"train": {"epochs": 10}}, ["train.epochs=2", "model.name=gru"])
    {'train': {'epochs': 2}, 'model': {'name': 'gru'}}
    """
    result = copy.deepcopy(raw)
    for spec in overrides:
        key, value = parse_override(spec)
        *tables, last = key.split(".")
        node = result
        for depth, name in enumerate(tables):
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                where = ".".join(tables[: depth + 1])
                raise ConfigError(
                    f"--set {spec!r}: '{where}' is {node!r}, not a table, so it has no key {last!r}"
                )
        node[last] = value
    return result


def parse_override(spec: str) -> tuple[str, Any]:
    """`"train.epochs=10"` -> `("train.epochs", 10)`; see `apply_overrides` for the forms."""
    key, equals, text = str(spec).partition("=")
    key = key.strip()
    if not equals or not key or any(not part.strip() for part in key.split(".")):
        raise ConfigError(
            f"--set {spec!r}: expected KEY=VALUE with a dotted key, like train.epochs=10 or model.options.mode=sequential"
        )
    key = ".".join(part.strip() for part in key.split("."))
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        parsed = {}
    if list(parsed) != ["v"]:  # not one TOML value: a bare string such as gru or data/other.csv
        return key, text.strip()
    return key, parsed["v"]


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> Config:
    """A validated `Config` from nested dicts (as TOML gives them)."""
    config = Config(source=source)
    for key, value in raw.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{key}] must be a table; got {type(value).__name__} {value!r}")
            setattr(config, key, _table(_TABLES[key], value, key, source))
        elif key in ("seed", "deterministic"):
            setattr(config, key, _typed(key, value, type(getattr(config, key)), source))
        elif key == "pipeline":
            if value != []:  # to_dict() of a config without a pipeline gives []
                check_pipeline_specs(value, name=f"{source}: pipeline")  # its columns are checked on loading
            config.pipeline = copy.deepcopy(list(value))
        elif key == "horizons":
            config.horizons = horizon_tables(copy.deepcopy(value), source)
        else:
            raise ConfigError(
                f"{source}: unknown key {key!r}; expected one of {['seed', 'deterministic', *_TABLES, 'pipeline', 'horizons']}"
            )
    validate(config)
    for horizon in config.horizons:  # each horizon's values checked now, not when its turn comes
        config.at_horizon(int(horizon))
    return config


def _table(cls, values: dict, table: str, source: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    instance = cls()
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{table}.{key}'; expected one of {sorted(fields)}")
        default = getattr(instance, key)
        if (table, key) == ("data", "split") and isinstance(value, dict):  # a calendar split on a store
            setattr(instance, key, {name: str(text) for name, text in value.items()})  # TOML dates -> text
            continue
        if (table, key) == ("data", "path") and isinstance(value, list):  # raw sources, converted into the run
            if not value or not all(isinstance(item, str) and item for item in value):
                raise ConfigError(f"{source}: 'data.path' as a list must hold file names, folders or globs; got {value!r}")
            setattr(instance, key, list(value))
            continue
        setattr(instance, key, _typed(f"{table}.{key}", value, type(default), source))
    return instance


def _typed(name: str, value: Any, expected: type, source: str):
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: '{name}' must be true or false; got {value!r}")
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: '{name}' must be an integer; got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{source}: '{name}' must be a {expected.__name__}; got {type(value).__name__} {value!r}")
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_value(str(key))} = {_toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
