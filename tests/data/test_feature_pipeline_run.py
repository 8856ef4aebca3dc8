"""A config's `[[pipeline]]`: checked on loading, applied by `load_data`, saved in the run
directory (config.toml and data.json's "feature_pipeline"), and used again by `predict_run`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longstm.data import FeaturePipeline, load_series
from longstm.errors import ConfigError, DataValidationError
from longstm.train import load_config, predict_run, train_from_config
from longstm.train.config import config_from_dict
from longstm.train.run import load_data
from longstm.train.rundir import RunDir

PIPELINE = [
    {"kind": "log_return", "columns": ["close"]},
    {"kind": "rolling_volatility", "columns": "close", "window": 8},
    {"kind": "raw", "columns": ["volume"]},
    {"kind": "time_of_day"},
]
RUN = {
    "seed": 1,
    "data": {
        "features": ["close_log_return", "close_vol_8", "volume", "tod_sin", "tod_cos"],
        "targets": ["close_log_return"],
        "split": [0.6, 0.2, 0.2],
    },
    "model": {"units": 4},
    "train": {"lanes": 2, "k1": 16, "k2": 16, "epochs": 1},
    "eval": {"lanes": 1, "warmup": 8},
}


def _pipeline_toml(specs) -> str:
    tables = []
    for spec in specs:
        keys = "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in spec.items())
        tables.append(f"[[pipeline]]\n{keys}")
    return "\n\n".join(tables)


def _write_bars(path, rows=240, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-03-01 09:00", periods=rows, freq="5min"),
            "close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows))),
            "volume": rng.uniform(1, 10, rows),
        }
    )
    frame.to_csv(path, index=False)
    return path


def _config(tmp_path, specs=PIPELINE, **data):
    """A config file: the tables from a dict, the `[[pipeline]]` tables written by hand."""
    raw = {**RUN, "data": {**RUN["data"], "path": str(_write_bars(tmp_path / "bars.csv")), **data}}
    text = config_from_dict(raw).to_toml() + "\n" + _pipeline_toml(specs)
    (tmp_path / "c.toml").write_text(text)
    return load_config(tmp_path / "c.toml")


def test_a_run_with_a_pipeline_saves_it_and_predicts(tmp_path):
    config = _config(tmp_path)
    assert config.pipeline == PIPELINE
    train_from_config(config, tmp_path / "run", progress=False)

    run = RunDir(tmp_path / "run")
    assert run.read_config().pipeline == PIPELINE  # config.toml keeps the [[pipeline]] tables
    record = run.read_data_record()
    assert record["feature_pipeline"] == {"input_columns": ["close", "volume"], "pipeline": PIPELINE}
    assert record["columns"] == ["close_log_return", "close_vol_8", "volume", "tod_sin", "tod_cos"]
    assert record["targets"] == ["close_log_return"]
    # The scaler was fit on the pipeline's outputs over the training rows.
    series = load_series(tmp_path / "bars.csv")
    features = FeaturePipeline.from_dict(record["feature_pipeline"]).transform(series)
    np.testing.assert_allclose(record["scaler"]["mean"], features.values[:144].astype(np.float64).mean(axis=0), rtol=1e-4, atol=1e-6)

    _write_bars(tmp_path / "new.csv", rows=80, seed=5)
    frame = predict_run(tmp_path / "run", tmp_path / "new.csv")
    assert list(frame.columns) == ["row", "timestamp", "close_log_return+1"]
    assert len(frame) > 0 and np.isfinite(frame["close_log_return+1"]).all()


def test_without_a_pipeline_the_data_is_loaded_as_before(tmp_path):
    config = _config(tmp_path, specs=[], features=[], targets=["close"])
    assert config.pipeline == [] and "[[pipeline]]" not in config.to_toml()
    data = load_data(config)
    assert data.pipeline is None and list(data.series.columns) == ["close", "volume"]


def test_pipeline_tables_round_trip_through_toml(tmp_path):
    config = config_from_dict({"data": {"path": "x.csv"}, "pipeline": PIPELINE + [{"kind": "per_column", "transforms": ["value", "diff"]}]})
    (tmp_path / "saved.toml").write_text(config.to_toml())
    assert load_config(tmp_path / "saved.toml").to_dict() == config.to_dict()


def test_pipeline_errors_name_the_file_entry_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"c.toml: pipeline\[1\] \(rolling_volatility\): window must be a positive integer, got 0"):
        _config(tmp_path, specs=[{"kind": "raw"}, {"kind": "rolling_volatility", "window": 0}])
    with pytest.raises(ConfigError, match=r"c.toml: pipeline must be a list of dicts"):
        config_from_dict({"pipeline": {"kind": "raw"}}, source="c.toml")
    config = _config(tmp_path, specs=[{"kind": "diff", "columns": ["open"]}])
    with pytest.raises(DataValidationError, match=r"bars.csv: pipeline\[0\] \(diff\): no column 'open'; available columns: close, volume"):
        load_data(config)
    config = _config(tmp_path, specs=[{"kind": "diff"}])
    with pytest.raises(ConfigError, match=r"'data.features' names columns \['close_log_return', .*it has \['close_diff', 'volume_diff'\]"):
        load_data(config)
