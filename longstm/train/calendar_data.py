"""The data side of a calendar model: its boundary flags come from the data layer, not the user.

A calendar model (`[model] name = "calendar_lstm"`) groups ticks by time. Its config names the
groups in `model.options.levels`:

    [model]
    name = "calendar_lstm"
    options = { levels = [{units = 32, every = "1s"}, {units = 64, every = "1min"}, {units = 64}] }

and the data is loaded with a `calendar_boundaries` pipeline entry built from those levels
(`model_pipeline`) appended after the `[[pipeline]]` tables (after the columns as they are when
there are none). Its columns `boundary_0, ...` (`boundary_names`) are the model's last inputs,
never scaled (`unscaled_flags` sets their statistics to mean 0, scale 1) and never targets. The
entry is saved in data.json with the rest of the pipeline, so `predict`, evaluation and the
streaming predictor compute the flags the same way, tick by tick.

Example:

>>> config = load_config("configs/ticks_calendar.toml")
>>> model_pipeline(config)[-1]
{'kind': 'calendar_boundaries', 'levels': [{'every': '1s'}, {'every': '1min'}]}
>>> boundary_names(config)
['boundary_0', 'boundary_1']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from longstm.data.calendar_kinds import CalendarBoundaries, boundary_columns, boundary_levels
from longstm.errors import ConfigError

# Models that read boundary flags as their last input columns (longstm.data.calendar_kinds).
CALENDAR_MODELS = ("calendar_lstm",)


def boundary_spec(config) -> dict[str, Any] | None:
    """The `calendar_boundaries` pipeline entry of a calendar model's `model.options.levels`
    (their `every` / `every_events` / `column` / `tz` keys; the top level closes no groups), or
    None for other models.

    Raises:
        ConfigError: `levels` is not a list of at least two tables, or a level's keys are bad,
            naming `model.options.levels[i]` and the key.
    """
    if config.model.name not in CALENDAR_MODELS:
        return None
    levels = boundary_levels(config.model.options.get("levels"), f"{config.source}: model.options.levels")
    spec = {"kind": CalendarBoundaries.kind, "levels": levels}
    CalendarBoundaries(spec, f"{config.source}: model.options", None, config.source)  # checks the keys
    return spec


def boundary_names(config) -> list[str]:
    """The boundary flag columns a calendar model reads last (`boundary_0`, ...); [] for other models."""
    spec = boundary_spec(config)
    return [] if spec is None else boundary_columns(len(spec["levels"]))


def model_pipeline(config) -> list[dict[str, Any]]:
    """The pipeline specs the data is loaded with: the config's `[[pipeline]]` tables and, for a
    calendar model, its boundary flags last."""
    spec = boundary_spec(config)
    if spec is None:
        return list(config.pipeline)
    return [*(config.pipeline or [{"kind": "raw"}]), spec]


def check_timestamps(config, has_timestamps: bool, source: str) -> None:
    """A level cut by time (`every`) on data without timestamps: one line naming the level.

    Raises:
        ConfigError: naming `model.options.levels[i].every` and the data.
    """
    spec = boundary_spec(config)
    timed = [] if spec is None or has_timestamps else [i for i, level in enumerate(spec["levels"]) if "every" in level]
    if timed:
        every = spec["levels"][timed[0]]["every"]
        raise ConfigError(
            f"{config.source}: model.options.levels[{timed[0]}].every = {every!r} cuts groups by time, and {source} has "
            f"no timestamp column; use every_events = N or column = \"<boundary column>\" for data without timestamps"
        )


def model_columns(names: list[str], features: list[int], targets: list[int], flags: list[str]) -> tuple[list[int], list[int]]:
    """`(features, targets)` with the boundary flags `flags` as the last features and no flag
    among the targets.

    Raises:
        ConfigError: only flags were named as targets.
    """
    if not flags:
        return features, targets
    flag_columns = [names.index(name) for name in flags]
    features = [i for i in features if i not in flag_columns] + flag_columns
    kept = [i for i in targets if i not in flag_columns]
    if not kept:
        raise ConfigError(f"data.targets names only boundary flags {flags}; a calendar model forecasts the data's columns")
    return features, kept


def unscaled_flags(mean: np.ndarray, scale: np.ndarray, names: list[str], flags: list[str]) -> None:
    """Set the statistics of the flag columns to mean 0, scale 1 (in place): flags stay 0 or 1."""
    for name in flags:
        mean[names.index(name)], scale[names.index(name)] = 0.0, 1.0
