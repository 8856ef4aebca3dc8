"""`[model]` in a config: residual forecasts and per-model options."""

import numpy as np
import pandas as pd
import pytest

from longstm.errors import ConfigError
from longstm.train.config import config_from_dict, load_config
from longstm.train.run import build_trainer, load_data


def _config(tmp_path, model, features=()):
    rows = 200
    t = np.arange(rows)
    pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
            "load": np.sin(t / 5.0),
            "temp": np.cos(t / 7.0),
        }
    ).to_csv(tmp_path / "s.csv", index=False)
    raw = {
        "data": {"path": str(tmp_path / "s.csv"), "targets": ["temp"], "features": list(features), "horizon": 3},
        "model": {"units": 4, **model},
        "train": {"lanes": 2, "k1": 16, "k2": 16, "epochs": 1},
    }
    return config_from_dict(raw, source="test.toml")


def test_residual_model_adds_the_scaled_current_target_to_each_horizon(tmp_path):
    config = _config(tmp_path, {"residual": True})
    data = load_data(config)
    model = build_trainer(config, data, progress=False).model
    assert model.residual_inputs == [data.feature_columns.index(data.target_columns[0])]
    x = np.random.default_rng(0).normal(size=(1, 5, 2)).astype(np.float32)
    plain = model.head(model.core(x)[0]).numpy()
    np.testing.assert_allclose(model(x)[0], plain + x[..., [1]], atol=1e-6)


def test_residual_needs_the_targets_among_the_inputs(tmp_path):
    config = _config(tmp_path, {"residual": True}, features=["load"])
    with pytest.raises(ConfigError, match=r"targets must be among 'data.features'; \['temp'\] are not"):
        build_trainer(config, load_data(config), progress=False)


def test_unknown_model_options_are_named(tmp_path):
    config = _config(tmp_path, {"name": "stacked_lstm", "options": {"residual": True, "depth": 3}})
    with pytest.raises(ConfigError, match=r"unknown keys \['depth'\].*expected some of \['layer_norm', 'residual'\]"):
        build_trainer(config, load_data(config), progress=False)


def test_model_options_survive_the_saved_config(tmp_path):
    config = _config(tmp_path, {"name": "hierarchical_lstm", "options": {"levels": [[4, 8], [6, 1]], "mode": "sequential"}})
    (tmp_path / "saved.toml").write_text(config.to_toml())
    again = load_config(tmp_path / "saved.toml")
    assert again.model.options == {"levels": [[4, 8], [6, 1]], "mode": "sequential"}
    model = build_trainer(again, load_data(again), progress=False).model
    assert model.core.mode == "sequential" and list(model.core.strides) == [8, 1]
