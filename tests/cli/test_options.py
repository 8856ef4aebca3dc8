"""`--model`, `--set` and integer-list options of `longstm eval`: each config is read once, with
the overrides, and handed down as a `Config`."""

from __future__ import annotations

import doctest

import pytest

from longstm.cli import options
from longstm.cli.options import parse_int_list, predictor_factories, read_configs, require_config_models
from longstm.errors import ConfigError
from longstm.train.config import Config

BASELINES = {"zero": object, "ar": dict}


class RecordingFactory:
    """Stands in for `hft_factory`/`lobster_factory` and records what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, config, run_root=None, progress=False):
        self.calls.append((config, run_root, progress))
        return config.source.rsplit("/", 1)[-1].removesuffix(".toml"), lambda: config


def write_config(folder, name: str, k2: int = 32):
    path = folder / f"{name}.toml"
    path.write_text(f"[data]\npath = 'x.csv'\n[model]\nunits = 4\n[train]\nk1 = 16\nk2 = {k2}\nepochs = 2\n")
    return path


def test_parse_int_list_names_the_option_and_an_example():
    assert parse_int_list("96, 192,", "--horizons") == (96, 192)
    for bad in ("1,x", "", "0,5", "-1"):
        with pytest.raises(ConfigError, match=f"--k must be comma-separated positive integers like 96,192, got {bad!r}"):
            parse_int_list(bad, "--k", "96,192")


def test_each_config_is_read_once_with_the_overrides_and_handed_down_as_a_config(tmp_path):
    first, second = write_config(tmp_path, "a", k2=64), write_config(tmp_path, "b")
    factory = RecordingFactory()
    factories = predictor_factories(f"zero,{first},ar,{second}", BASELINES, factory, protocol="the test",
                                    overrides=["train.epochs=7"], run_root=tmp_path / "runs", progress=True)
    assert list(factories) == ["zero", "a", "ar", "b"]
    assert factories["zero"] is object and factories["ar"] is dict
    assert len(factory.calls) == 2
    for (config, run_root, progress), k2 in zip(factory.calls, (64, 32)):
        assert isinstance(config, Config)
        assert (config.train.epochs, config.train.k2, run_root, progress) == (7, k2, tmp_path / "runs", True)
    assert factories["b"]() is factory.calls[1][0]


def test_a_named_override_sets_its_value_in_that_config_only(tmp_path):
    first, second = write_config(tmp_path, "a"), write_config(tmp_path, "b")
    a, b = read_configs([first, second], ["train.epochs=7", "b:train.learning_rate=1e-4", " a : model.units=9"])
    assert (a.train.epochs, a.train.learning_rate, a.model.units) == (7, 1e-3, 9)
    assert (b.train.epochs, b.train.learning_rate, b.model.units) == (7, 1e-4, 4)
    factory = RecordingFactory()  # the eval hft / lobster path reads configs the same way
    predictor_factories(f"{first},{second}", BASELINES, factory, protocol="the test", overrides=["a:train.epochs=3"])
    assert [config.train.epochs for config, _, _ in factory.calls] == [3, 2]
    with pytest.raises(ConfigError, match=r"--set 'c:train.epochs=3': 'c' names no config of --model; expected one of \['a', 'b'\]"):
        read_configs([first, second], ["c:train.epochs=3"])


def test_baselines_are_put_beside_configs_given_alone(tmp_path):
    config = write_config(tmp_path, "a")
    factory = RecordingFactory()
    assert list(predictor_factories(str(config), BASELINES, factory, protocol="t", beside_configs=("ar",))) == ["ar", "a"]
    assert list(predictor_factories(f"zero,{config}", BASELINES, factory, protocol="t", beside_configs=("ar",))) == ["zero", "a"]


def test_bad_model_entries_are_one_line_errors_before_any_config_is_read(tmp_path):
    factory = RecordingFactory()
    with pytest.raises(ConfigError, match="unknown model 'lstm' for the test; choose from zero, ar or a training config .toml"):
        predictor_factories(f"lstm,{tmp_path / 'nope.toml'}", BASELINES, factory, protocol="the test")
    with pytest.raises(ConfigError, match="--model needs at least one of zero, ar or a training config .toml, got ' , '"):
        predictor_factories(" , ", BASELINES, factory, protocol="the test")
    with pytest.raises(ConfigError, match="nope.toml: no such config file"):
        predictor_factories(f"zero,{tmp_path / 'nope.toml'}", BASELINES, factory, protocol="the test")
    with pytest.raises(ConfigError, match="a.toml: unknown key 'train.epoch'"):
        predictor_factories(str(write_config(tmp_path, "a")), BASELINES, factory, protocol="t", overrides=["train.epoch=1"])
    assert factory.calls == []


def test_set_needs_a_config_model():
    require_config_models(["train.epochs=1"], "zero,a.toml")
    require_config_models([], "zero")
    with pytest.raises(ConfigError, match="--set overrides values of training configs; --model 'zero,ar' names no config .toml"):
        require_config_models(["train.epochs=1"], "zero,ar")


def test_docstring_examples_hold():
    result = doctest.testmod(options)
    assert result.attempted > 0 and result.failed == 0
