"""`--set KEY=VALUE` config overrides: value parsing, nested keys, errors, and the CLIs that take them."""

import json
import tomllib

import numpy as np
import pandas as pd
import pytest

from longstm.cli import main
from longstm.data import bundled_path
from longstm.errors import ConfigError
from longstm.evaluate.trained import hft_factory
from longstm.train.config import apply_overrides, load_config, parse_override, read_config, with_overrides

CONFIG = """
seed = 1
[data]
path = "series.csv"
targets = ["temp"]
[model]
units = 6
options = { }
[train]
lanes = 2
k1 = 16
k2 = 16
epochs = 3
[eval]
lanes = 2
warmup = 16
"""


def _write(folder, text=CONFIG, name="c.toml"):
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "spec, key, value",
    [
        ("train.epochs=10", "train.epochs", 10),
        ("train.learning_rate=3e-3", "train.learning_rate", 3e-3),
        ("train.clipnorm=1", "train.clipnorm", 1),
        ("data.scale=false", "data.scale", False),
        ("model.name=gru", "model.name", "gru"),
        ("data.path=data/other.csv", "data.path", "data/other.csv"),
        ('model.name="10"', "model.name", "10"),  # quoted: a string even when it looks like a number
        ("model.options.levels=[[32,24],[64,1]]", "model.options.levels", [[32, 24], [64, 1]]),
        ('data.targets=["OT", "HUFL"]', "data.targets", ["OT", "HUFL"]),
        ('model.options={ mode = "sequential", chunk = 8 }', "model.options", {"mode": "sequential", "chunk": 8}),
        (" train.epochs = 7 ", "train.epochs", 7),
        ("data.path=a=b.csv", "data.path", "a=b.csv"),  # only the first '=' separates
        ("model.name=1\nseed = 5", "model.name", "1\nseed = 5"),  # never more than one value
        ("seed=3", "seed", 3),
    ],
)
def test_values_are_read_as_toml_else_as_bare_strings(spec, key, value):
    parsed_key, parsed = parse_override(spec)
    assert parsed_key == key
    assert parsed == value and type(parsed) is type(value)


def test_missing_tables_are_created_and_the_input_is_left_alone():
    raw = {"model": {"units": 8}, "train": {"epochs": 10}}
    result = apply_overrides(raw, ["model.options.mode=sequential", "model.options.levels=[[4, 2]]", "eval.lanes=3",
                                   "train.epochs=2", "train.epochs=5"])
    assert result == {"model": {"units": 8, "options": {"mode": "sequential", "levels": [[4, 2]]}},
                      "train": {"epochs": 5}, "eval": {"lanes": 3}}  # the last of two sets wins
    assert raw == {"model": {"units": 8}, "train": {"epochs": 10}}


@pytest.mark.parametrize("spec", ["train.epochs", "=5", " =5", "train..epochs=5", ".epochs=5", "train.=5", ""])
def test_malformed_specs_name_the_text_and_the_expected_form(spec):
    with pytest.raises(ConfigError, match=r"--set .*expected KEY=VALUE with a dotted key, like train\.epochs=10") as error:
        apply_overrides({}, [spec])
    assert repr(spec) in str(error.value)


def test_a_key_below_a_value_that_is_not_a_table_is_refused():
    with pytest.raises(ConfigError, match=r"--set 'train\.epochs\.x=1': 'train\.epochs' is 10, not a table"):
        apply_overrides({"train": {"epochs": 10}}, ["train.epochs.x=1"])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("trian.epochs=3", r"c\.toml: unknown key 'trian'; expected one of \['seed', 'deterministic', 'data'"),
        ("train.epoch=3", r"c\.toml: unknown key 'train\.epoch'; expected one of \[.*'epochs'"),
        ("train.epochs=0", r"c\.toml: 'train\.epochs' must be an integer >= 1; got 0"),
        ("train.epochs=2.5", r"'train\.epochs' must be an integer; got 2\.5"),
        ("data.targets=OT", r"'data\.targets' must be a list; got str 'OT'"),
        ("model.name=transformer", r"'model\.name' must be one of \[.*'lstm'.*\]; got 'transformer'"),
        ("train=5", r"\[train\] must be a table; got int 5"),
    ],
)
def test_bad_keys_and_values_meet_the_existing_validation(tmp_path, spec, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(_write(tmp_path), ["train.lanes=4", spec])
    assert str(error.value).endswith(f"(with --set train.lanes=4 --set {spec})")


def test_overrides_change_only_what_they_name_and_survive_the_toml_round_trip(tmp_path):
    plain = load_config(_write(tmp_path))
    config = load_config(_write(tmp_path), ["train.epochs=10", "train.learning_rate=3e-3", "model.name=gru",
                                            "model.options.levels=[[32,24],[64,1]]"])
    assert (config.train.epochs, config.train.learning_rate, config.model.name) == (10, 3e-3, "gru")
    assert config.model.options == {"levels": [[32, 24], [64, 1]]}
    assert config.source == plain.source  # data.path still resolves beside the config file
    changed = {f"{table}.{key}" for table, values in config.to_dict().items() if isinstance(values, dict)
               for key, value in values.items() if plain.to_dict()[table][key] != value}
    assert changed == {"train.epochs", "train.learning_rate", "model.name", "model.options"}
    assert load_config(_write(tmp_path, config.to_toml(), "saved.toml")).to_dict() == config.to_dict()
    assert with_overrides(plain, ["train.epochs=10"]).train.epochs == 10
    assert with_overrides(plain, []) is plain
    with pytest.raises(ConfigError, match=r"'train\.k1' must be <= 'train\.k2'.*\(with --set train\.k1=64\)"):
        with_overrides(plain, ["train.k1=64"])


def test_read_config_applies_overrides_once_and_factories_take_the_config(tmp_path):
    path = _write(tmp_path)
    assert read_config(path, ["model.units=3"]).model.units == 3
    assert read_config(path).model.units == 6
    loaded = read_config(path, ["model.units=5", "model.residual=false"])
    assert loaded.model.units == 5
    assert read_config(loaded) is loaded  # a Config is already resolved: taken as it is
    assert read_config(loaded, ["model.units=2"]).model.units == 2
    name, factory = hft_factory(loaded)
    assert name == "c" and factory().config.model.units == 5  # how `eval hft --set` reaches the predictor
    with pytest.raises(ConfigError, match=r"no such config file"):
        read_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"takes a Config .*got PosixPath"):
        hft_factory(path)


def _series_csv(path, rows=300):
    rng = np.random.default_rng(0)
    t = np.arange(rows)
    pd.DataFrame({
        "date": pd.date_range("2020-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
        "load": np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=rows),
        "temp": np.cos(2 * np.pi * t / 24) + 0.1 * rng.normal(size=rows),
    }).to_csv(path, index=False)


def test_cli_train_applies_overrides_and_saves_them_in_the_run_directory(tmp_path, capsys):
    _series_csv(tmp_path / "series.csv")
    config = _write(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--run-dir", str(run), "--set", "train.epochs=1",
                 "--set", "model.units=3", "--set", "model.name=gru", "--set", "train.learning_rate=3e-3"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1]  # the file says 3
    saved = tomllib.loads((run / "config.toml").read_text())
    assert (saved["train"]["epochs"], saved["model"]["units"], saved["model"]["name"]) == (1, 3, "gru")
    assert saved["train"]["learning_rate"] == 3e-3
    # `evaluate` rebuilds the model from the saved config: a 3-unit GRU, or the weights would not load.
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["test"]["mse"] == pytest.approx(metrics["test"]["mse"], rel=1e-6)
    # Bad overrides are one clear line, exit 2, before any training.
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "bad"), "--set", "train.epochs"]) == 2
    assert "--set 'train.epochs': expected KEY=VALUE" in " ".join(capsys.readouterr().err.split())
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "bad"), "--set", "train.epoch=1"]) == 2
    assert "unknown key 'train.epoch'" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "config.toml").exists()


ETT_CONFIG = """
seed = 0
[model]
units = 4
residual = true
[train]
lanes = 4
k1 = 32
k2 = 32
epochs = 5
[eval]
lanes = 2
warmup = 32
"""


def test_cli_eval_ett_passes_overrides_to_the_trained_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    data = tmp_path / "ett.csv"
    pd.read_csv(bundled_path("ETTh1")).iloc[:1200].to_csv(data, index=False)
    config = _write(tmp_path, ETT_CONFIG, "tiny.toml")
    out = tmp_path / "ett"
    assert main(["eval", "ett", "--data", str(data), "--model", str(config), "--lookback", "48", "--horizons", "6",
                 "--mode", "window", "--out", str(out),
                 "--set", "train.epochs=1", "--set", "model.units=3"]) == 0
    saved = tomllib.loads((out / "runs" / "h6" / "config.toml").read_text())
    assert (saved["train"]["epochs"], saved["model"]["units"]) == (1, 3)
    assert json.loads((out / "runs" / "h6" / "protocol.json").read_text())["epochs_run"] == 1  # the file says 5
    assert list(pd.read_csv(out / "ett_results.csv")["mode"]) == ["window"]
    capsys.readouterr()
    # A bad override fails before training; --set without a config model is refused, not ignored.
    assert main(["eval", "ett", "--data", str(data), "--model", str(config), "--lookback", "48", "--horizons", "6",
                 "--set", "train.epochs=0"]) == 2
    assert "'train.epochs' must be an integer >= 1; got 0 (with --set train.epochs=0)" in " ".join(capsys.readouterr().err.split())
    assert main(["eval", "ett", "--data", str(data), "--model", "repeat", "--set", "train.epochs=1"]) == 2
    assert "--set overrides values of training configs; --model 'repeat' names no config .toml" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["hft", "lobster"])
def test_cli_eval_hft_and_lobster_apply_overrides_to_every_config(tmp_path, capsys, command):
    first = _write(tmp_path, ETT_CONFIG.replace("k2 = 32", "k2 = 64"), "a.toml")
    second = _write(tmp_path, ETT_CONFIG, "b.toml")
    missing = str(tmp_path / "no_data.csv")  # the configs are read before the data: errors come first
    # k1 = 48 suits a.toml (k2 = 64) but not b.toml (k2 = 32): the second config gets the override too.
    assert main(["eval", command, "--data", missing, "--model", f"{first},{second}", "--set", "train.k1=48"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "b.toml: 'train.k1' must be <= 'train.k2'" in error and "got k1=48, k2=32 (with --set train.k1=48)" in error
    assert main(["eval", command, "--data", missing, "--model", f"{first},{second}", "--set", "model.unit=3"]) == 2
    assert "a.toml: unknown key 'model.unit'" in capsys.readouterr().err
    baselines = "zero,ar" if command == "hft" else "majority"
    assert main(["eval", command, "--data", missing, "--model", baselines, "--set", "train.epochs=1"]) == 2
    assert "names no config .toml" in capsys.readouterr().err
