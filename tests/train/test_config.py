"""TOML config: defaults, round trip, and every bad input as a ConfigError naming the key."""

import pytest

from longstm.errors import ConfigError
from longstm.train.config import Config, config_from_dict, load_config


def _write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_a_minimal_config_gets_the_defaults_and_round_trips_through_toml(tmp_path):
    config = load_config(_write(tmp_path, '[data]\npath = "x.csv"\n[train]\nk1 = 8\nk2 = 16\nlearning_rate = 1\n'))
    assert (config.train.k1, config.train.k2, config.train.learning_rate) == (8, 16, 1.0)
    assert config.model.name == "lstm" and config.train.lanes == 16
    again = load_config(_write(tmp_path, config.to_toml()))
    assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"k1": 64, "k2": 32}}, r"'train.k1' must be <= 'train.k2'.*got k1=64, k2=32"),
        ({"train": {"lanes": 0}}, r"'train.lanes' must be an integer >= 1; got 0"),
        ({"train": {"lanes": 2.5}}, r"'train.lanes' must be an integer; got 2.5"),
        ({"train": {"optimizer": "sgd"}}, r"'train.optimizer' must be one of \('adam', 'adamw'\); got 'sgd'"),
        ({"train": {"mixed_precision": "fp8"}}, r"'train.mixed_precision' must be one of"),
        ({"train": {"learning_rate": -1}}, r"'train.learning_rate' must be a number > 0; got -1.0"),
        ({"train": {"lr": 0.1}}, r"unknown key 'train.lr'; expected one of \[.*'learning_rate'"),
        ({"trian": {}}, r"unknown key 'trian'"),
        ({"train": 3}, r"\[train\] must be a table; got int 3"),
        ({"model": {"name": "transformer"}}, r"'model.name' must be one of \[.*'lstm'.*\]; got 'transformer'"),
        ({"model": {"dropout": 1.5}}, r"'model.dropout' must be a number in \[0, 1\); got 1.5"),
        ({"data": {"split": [0.5, 0.5]}}, r"'data.split' must be three numbers"),
        ({"data": {"split": [0.5, 0.4, 0.2]}}, r"'data.split' must be three fractions >= 0 summing to 1"),
        ({"data": {"targets": "OT"}}, r"'data.targets' must be a list; got str 'OT'"),
        ({"data": {"scale": "yes"}}, r"'data.scale' must be true or false; got 'yes'"),
        ({"seed": "zero"}, r"'seed' must be an integer; got 'zero'"),
        ({"train": {"decay_rate": 1.5}}, r"'train.decay_rate' must be a number in \(0, 1\].*; got 1.5"),
        ({"train": {"decay_after_epochs": 0}}, r"'train.decay_after_epochs' must be an integer >= 1; got 0"),
        ({"train": {"monitor": "val_loss"}}, r"'train.monitor' must be one of \('val_mse', 'val_mae'\); got 'val_loss'"),
        ({"train": {"schedule": "epoch_decay", "warmup_steps": 10}}, r"'train.warmup_steps' must be 0 with schedule"),
        ({"horizons": 3}, r"'horizons' must be a table like \[horizons.720.train\]; got int 3"),
        ({"horizons": {"h96": {}}}, r"'horizons.h96' must be named by a horizon, an integer >= 1; got 'h96'"),
        ({"horizons": {"0": {}}}, r"'horizons.0' must be named by a horizon"),
        ({"horizons": {"96": {}, "096": {}}}, r"'horizons.96' is given twice \(as '096' too\)"),
        ({"horizons": {"96": {"data": {"path": "x"}}}}, r"'horizons.96' may set \('seed', 'model', 'train', 'eval'\)"),
        ({"horizons": {"96": {"train": 3}}}, r"'horizons.96.train' must be a table; got int 3"),
        ({"horizons": {"96": {"model": {"name": "gru"}}}}, r"'horizons.96.model.name' cannot differ by horizon"),
        ({"horizons": {"96": {"model": {"options": {}}}}}, r"'horizons.96.model.options' cannot differ by horizon"),
        ({"horizons": {"96": {"train": {"learning_rate": 0}}}}, r"'train.learning_rate' must be a number > 0; got 0.*\(from \[horizons.96\]\)"),
        ({"horizons": {"96": {"train": {"lr": 1}}}}, r"unknown key 'train.lr'.*\(from \[horizons.96\]\)"),
    ],
)
def test_bad_values_name_the_key_and_say_expected_and_got(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw, source="cfg.toml")


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match=r"c.toml: not valid TOML"):
        load_config(_write(tmp_path, "[train\nk1 = "))


def test_config_is_a_plain_dataclass_with_tables():
    config = Config()
    assert set(config.to_dict()) == {"seed", "deterministic", "data", "model", "train", "eval", "pipeline", "horizons"}


def test_a_session_rule_is_a_gap_or_a_calendar_rule():
    from longstm.errors import ConfigError
    from longstm.train.config import config_from_dict

    for rule in ("1h", "90min", "1D@America/New_York", "1h@Asia/Tokyo"):
        assert config_from_dict({"data": {"path": "x", "session_gap": rule}}).data.session_gap == rule
    for rule in ("0s", "soon", "1D@Nowhere/Land"):
        with pytest.raises(ConfigError, match=r"'data.session_gap' must be a positive duration like '1h', or FREQ@ZONE"):
            config_from_dict({"data": {"path": "x", "session_gap": rule}})


def test_horizon_tables_apply_at_their_horizon_and_round_trip_through_toml(tmp_path):
    raw = {"train": {"epochs": 4}, "horizons": {"720": {"train": {"learning_rate": 1e-4}}, "0192": {"seed": 3, "model": {"units": 8}}}}
    config = config_from_dict(raw, source="c.toml")
    assert sorted(config.horizons) == ["192", "720"]  # keys as plain integers
    at_720, at_192, at_96 = config.at_horizon(720), config.at_horizon(192), config.at_horizon(96)
    assert (at_720.train.learning_rate, at_720.train.epochs, at_720.model.units) == (1e-4, 4, 64)  # the rest kept
    assert (at_192.seed, at_192.model.units, at_192.train.learning_rate) == (3, 8, 1e-3)
    assert at_96.to_dict() == {**config.to_dict(), "horizons": {}}
    assert at_720.horizons == {} and at_720.source == "c.toml"
    assert config_from_dict({"data": {"horizon": 720}, **raw}).at_horizon().train.learning_rate == 1e-4  # default: data.horizon
    (tmp_path / "c.toml").write_text(config.to_toml())
    assert load_config(tmp_path / "c.toml").to_dict() == config.to_dict()
    with_set = load_config(tmp_path / "c.toml", ["horizons.96.train.epochs=1"])
    assert with_set.at_horizon(96).train.epochs == 1 and with_set.at_horizon(720).train.epochs == 4
