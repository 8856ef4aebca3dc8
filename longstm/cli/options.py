"""Command-line options the `longstm eval` protocols share: integer lists, `--model`, `--set`.

`--model` is a comma-separated list whose entries are either baseline names or training
config `.toml` files. The command reads each config file once, with the `--set` overrides,
into a `longstm.train.Config` and hands that object down (to `hft_factory`,
`lobster_factory`, `TrainedEtt`), so nothing below the command reads a file or an
override again.

Example:

>>> parse_int_list("1,5,15", "--horizons")
(1, 5, 15)
>>> model_entries(" zero, configs/hft_lstm.toml ,")
['zero', 'configs/hft_lstm.toml']
>>> is_config_path("configs/hft_lstm.toml"), is_config_path("ar")
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from longstm.errors import ConfigError
from longstm.train.config import read_config

SET_HELP = (
    "Override a value of every training config .toml in --model (repeatable): --set train.epochs=10 "
    "--set model.options.mode=sequential. VALUE is read as TOML (10, 3e-3, true, [1, 2]), else as a string. "
    "NAME:KEY=VALUE sets it in NAME.toml only (--set ett_segment_segrnn:train.learning_rate=1e-4); "
    "horizons.H.KEY=VALUE for the horizon-H model only (--set horizons.720.train.learning_rate=1e-4)."
)

# A trained-model factory: (config, run_root=..., progress=...) -> (name, zero-argument predictor factory).
TrainedFactory = Callable[..., tuple[str, Callable[[], Any]]]


def parse_int_list(text: str, option: str, example: str = "1,5,15", minimum: int = 1) -> tuple[int, ...]:
    """Comma-separated integers, each at least `minimum` (positive by default).

    Args:
        text: the option's value, e.g. `"96,192"`.
        option: the option's name, for the error (`"--horizons"`).
        example: a valid value shown in the error.
        minimum: the smallest value allowed (0 for seeds).

    Returns:
        The integers in the order given.

    Raises:
        ConfigError: for an empty list, a non-integer or a value below `minimum`.
    """
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(value < minimum for value in values):
        kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        raise ConfigError(f"{option} must be comma-separated {kind} like {example}, got {text!r}")
    return values


def model_entries(text: str) -> list[str]:
    """The non-empty, stripped entries of a comma-separated `--model` value."""
    return [entry.strip() for entry in text.split(",") if entry.strip()]


def is_config_path(entry: str | Path) -> bool:
    """True when a `--model` entry names a training config (a `.toml` file) rather than a baseline."""
    return str(entry).lower().endswith(".toml")


def read_configs(paths: Sequence[str | Path], overrides: Sequence[str] = ()) -> list[Any]:
    """Each training config of `--model`, read once with the `--set` values that apply to it.

    A plain `--set KEY=VALUE` applies to every config; `--set NAME:KEY=VALUE` only to the config
    whose file is `NAME.toml` (its stem), so the configs of one command (an ensemble of
    `longstm eval ett`, the models of `eval hft` or `eval ticks`) can differ in one value.

    Args:
        paths: the config entries of `--model`, in order.
        overrides: the `--set` values, in order.

    Returns:
        A `Config` per path, in the order of `paths`.

    Raises:
        ConfigError: a `NAME:` prefix names none of the configs.

    Example:

    >>> segrnn, channels = read_configs(["configs/ett_segment_segrnn.toml", "configs/ett_segment_channels.toml"],
    ...                                 ["train.epochs=3", "ett_segment_segrnn:train.learning_rate=1e-4"])
    >>> segrnn.train.learning_rate, channels.train.learning_rate, channels.train.epochs
    (0.0001, 0.0003, 3)
    """
    stems = [Path(path).stem for path in paths]
    chosen: list[list[str]] = [[] for _ in paths]
    for spec in overrides:
        key, _, value = str(spec).partition("=")
        name, colon, rest = key.partition(":")
        if colon and name.strip() not in stems:
            raise ConfigError(f"--set {spec!r}: {name.strip()!r} names no config of --model; expected one of {stems} "
                              f"(NAME:KEY=VALUE sets KEY in NAME.toml only)")
        for own, stem in zip(chosen, stems):
            if not colon:
                own.append(spec)
            elif stem == name.strip():
                own.append(f"{rest}={value}")
    return [read_config(path, own) for path, own in zip(paths, chosen)]


def require_config_models(overrides: Sequence[str] | None, model: str) -> None:
    """`--set` changes training configs: refuse it, rather than ignore it, when `--model` names none.

    Raises:
        ConfigError: overrides are given and no `--model` entry is a `.toml` file.
    """
    if overrides and not any(is_config_path(entry) for entry in model_entries(model)):
        raise ConfigError(f"--set overrides values of training configs; --model {model!r} names no config .toml")


def predictor_factories(
    model: str,
    baselines: Mapping[str, Callable[[], Any]],
    trained_factory: TrainedFactory,
    *,
    protocol: str,
    overrides: Sequence[str] = (),
    run_root: str | Path | None = None,
    progress: bool = False,
    beside_configs: Sequence[str] = (),
) -> dict[str, Callable[[], Any]]:
    """Predictor factories for a `--model` value, in the order given.

    Baseline names must be keys of `baselines`; each config entry is read once (with
    `overrides`) and given to `trained_factory(config, run_root=..., progress=...)`, whose
    name (the config file's stem) becomes the predictor's name. Unknown baselines are
    reported before any config file is read.

    Args:
        model: the comma-separated `--model` value.
        baselines: baseline name → factory.
        trained_factory: `longstm.evaluate.trained.hft_factory` or `lobster_factory`.
        protocol: how errors name the protocol ("the HFT protocol").
        overrides: the `--set` values ("KEY=VALUE").
        run_root: where the trained models' runs go (None: temporary folders).
        progress: show the trainer's progress bars.
        beside_configs: baselines put in front when `model` names config files only.

    Returns:
        name → zero-argument factory returning a fresh predictor.

    Example:

    >>> from longstm.evaluate.trained import hft_factory
    >>> from longstm.models.hft_baselines import ZeroReturn
    >>> list(predictor_factories("zero", {"zero": ZeroReturn}, hft_factory, protocol="the HFT protocol"))
    ['zero']
    """
    entries = model_entries(model)
    choices = f"{', '.join(baselines)} or a training config .toml"
    if not entries:
        raise ConfigError(f"--model needs at least one of {choices}, got {model!r}")
    if beside_configs and all(is_config_path(entry) for entry in entries):
        entries = [*beside_configs, *entries]  # a trained model is always shown beside these baselines
    unknown = [entry for entry in entries if not is_config_path(entry) and entry not in baselines]
    if unknown:
        raise ConfigError(f"unknown model {unknown[0]!r} for {protocol}; choose from {choices}")
    factories: dict[str, Callable[[], Any]] = {}
    paths = [entry for entry in entries if is_config_path(entry)]
    configs = dict(zip(paths, read_configs(paths, overrides)))
    for entry in entries:
        if is_config_path(entry):
            name, factory = trained_factory(configs[entry], run_root=run_root, progress=progress)
            factories[name] = factory
        else:
            factories[entry] = baselines[entry]
    return factories
