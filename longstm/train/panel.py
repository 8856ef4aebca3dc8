"""Forecasts of a run trained on a store's panel, one row per (series, target row).

`longstm train` on a config whose `data.path` is a store trains one model over all its series
(`longstm.train.run.load_panel`); `predict_panel` reads such a run back and forecasts a split
part of every series with one carried-state pass per session, after a warm-up of `eval.warmup`
rows on the series' past (the end of the preceding part), the way the model would have run live.

Example:

>>> frame = predict_panel("runs/ticks", part="test")
>>> frame.columns.tolist()
['series', 'row', 'timestamp', 'bid', 'ask', 'pred_mid_log_return_10s', 'true_mid_log_return_10s', ...]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from longstm.data.panel import PARTS, PanelDataset
from longstm.errors import ConfigError
from longstm.train.carried import CompiledModel, carried_outputs
from longstm.train.run import load_run


def predict_panel(run_dir: str | Path, part: str = "test") -> pd.DataFrame:
    """Forecasts and true values of the time targets over `part` of every series of a panel run.

    Each series' part is run session by session with carried state (reset at each session
    start, as in training); the first piece starts `eval.warmup` rows before the part, on the
    series' past, and those rows get no forecast. Every row of the part gets a forecast of every
    target; a target that is not valid there (t + Δ past the last tick of the session or of the
    part) has a NaN true value, so it is not scored at that row.

    Args:
        run_dir: a run directory written by `train_from_config` on a store.
        part: "train", "val" or "test".

    Returns:
        A `pandas.DataFrame`, one row per (series, target row): `series`, `row` (the row in that
        series), `timestamp` (UTC), the mid columns (e.g. `bid`, `ask`) at that row, then per
        target `pred_<target>` and `true_<target>` in the target's units (a log return; NaN
        where that target is not valid).

    Raises:
        ConfigError: `run_dir` was not trained on a store, or `part` is not a split part.
    """
    if part not in PARTS:
        raise ConfigError(f"part must be one of {PARTS}; got {part!r}")
    config, data, trainer = load_run(run_dir)
    if not isinstance(data, PanelDataset):
        raise ConfigError(f"{run_dir}: was trained on {config.data.path}, not on a store; use predict_run for one series")
    compiled = CompiledModel(trainer.model)
    rows = data.rows(part, warmup=0 if part == "train" else config.eval.warmup)
    targets = [rows.columns[i] for i in data.target_columns]
    frames = []
    for index, piece in enumerate(rows.pieces):
        first, stop = int(rows.offsets[index]), int(rows.offsets[index + 1])
        starts = rows.segments[(rows.segments >= first) & (rows.segments < stop)]
        for seg_start, seg_stop in zip(starts, [*starts[1:], stop]):
            values, valid = rows.read_with_validity(int(seg_start), int(seg_stop))
            series_rows = piece.start + int(seg_start) - first + np.arange(len(values))
            wanted = np.flatnonzero(series_rows >= piece.loss_from)  # the part's rows, not the warm-up on the past
            if wanted.size == 0:
                continue
            inputs = values[:, data.feature_columns]
            outputs = carried_outputs(compiled, inputs, [0], wanted, chunk=config.train.k2)
            truth = np.where(valid[wanted], values[wanted][:, data.target_columns], np.nan)
            frames.append(_frame(data, piece.series, series_rows[wanted], outputs, truth, targets))
    if not frames:
        raise ConfigError(f"{run_dir}: the {part} part has no rows")
    return pd.concat(frames, ignore_index=True)


def _frame(data: PanelDataset, series: str, rows: np.ndarray, forecasts: np.ndarray, truth: np.ndarray,
           targets: list[str]) -> pd.DataFrame:
    """One series' stretch of forecasts, unscaled to the targets' units."""
    store_series = data.panel.store.series(series)
    first, stop = int(rows[0]), int(rows[-1]) + 1
    stamps = store_series.timestamps(first, stop)[rows - first]
    frame = pd.DataFrame({"series": series, "row": rows, "timestamp": pd.to_datetime(stamps, utc=True)})
    prices = store_series.read(first, stop, data.mid_columns)[rows - first]
    for j, name in enumerate(data.mid_columns):
        frame[name] = prices[:, j]
    mean, scale = (np.zeros(len(data.column_names) - 1), np.ones(len(data.column_names) - 1)) if data.scaler is None else data.scaler[series]
    for j, (column, name) in enumerate(zip(data.target_columns, targets)):
        frame[f"pred_{name}"] = forecasts[:, j].astype(np.float64) * scale[column] + mean[column]
        frame[f"true_{name}"] = truth[:, j].astype(np.float64) * scale[column] + mean[column]
    return frame
