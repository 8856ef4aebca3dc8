"""A run directory as `longstm train` leaves it (random weights), for the serving tests."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd


def make_run(
    folder: Path, rows: int = 160, model_name: str = "lstm", horizon: int = 2, pipeline=None, features=("HUFL", "MUFL", "OT")
) -> Path:
    """A run directory with config.toml, data.json and checkpoints/best.npz (random weights).

    `pipeline`: `[[pipeline]]` tables (FeaturePipeline specs); `features` may name their outputs.
    """
    from longstm.data import StandardScaler, bundled_path
    from longstm.models.registry import build_model
    from longstm.train.config import config_from_dict
    from longstm.train.run import load_data

    frame = pd.read_csv(bundled_path("ETTh1"), nrows=rows)
    data_path = folder / "etth1.csv"
    frame.to_csv(data_path, index=False)
    config = config_from_dict(
        {
            "data": {"path": str(data_path), "kind": "ett", "features": list(features), "targets": ["OT", "HUFL"], "horizon": horizon},
            "pipeline": list(pipeline or []),
            "model": {"name": model_name, "units": 6, "layers": 2},
            "train": {"lanes": 2, "k1": 8, "k2": 8, "epochs": 1},
            "eval": {"lanes": 1, "warmup": 0},
        },
        source=str(folder / "config.toml"),
    )
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text(config.to_toml())
    data = load_data(config)
    names = list(data.series.columns)
    record = {
        "columns": names,
        "features": [names[i] for i in data.feature_columns],
        "targets": [names[i] for i in data.target_columns],
        "scaler": StandardScaler.from_dict({"columns": names, "mean": data.mean.tolist(), "scale": data.std.tolist()}).to_dict(),
        "feature_pipeline": None if data.pipeline is None else data.pipeline.to_dict(),
    }
    (run / "data.json").write_text(json.dumps(record))
    keras.utils.set_random_seed(5)
    model = build_model(config.model, len(data.feature_columns), len(data.target_columns) * horizon)
    steps = getattr(model.core, "period", 1)  # a hierarchical model needs whole periods
    model(np.zeros((1, steps, len(data.feature_columns)), np.float32))
    np.savez(run / "checkpoints" / "best.npz", **{f"model_{i}": np.asarray(v) for i, v in enumerate(model.variables)})
    return run
