"""One definition of "a positive whole number" (longstm/models/checks.py `is_positive_int`):
the HFT and LOBSTER protocols and the model argument checks accept and refuse the same values.
And one of "a metrics row for strict JSON" (longstm/evaluate/hft_metrics.py `json_safe`)."""

import json

import numpy as np
import pytest

from longstm.errors import ConfigError
from longstm.evaluate.hft import HFTConfig
from longstm.evaluate.hft_metrics import json_safe
from longstm.evaluate.lobster_task import LOBConfig, LOBEvaluation, LOBResult, direction_labels
from longstm.models.checks import check_positive_int

GOOD = [1, 7, np.int64(3), np.int32(5)]
BAD = [0, -2, True, 2.0, "3", np.float64(3.0)]  # None means "off" for retrain_every


def _accepts(build) -> bool:
    try:
        build()
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("value", GOOD + BAD, ids=repr)
def test_every_check_agrees_on_a_positive_whole_number(value):
    verdicts = {
        "hft horizons": _accepts(lambda: HFTConfig(horizons=(value,))),
        "hft lookback": _accepts(lambda: HFTConfig(lookback=value)),
        "hft retrain_every": _accepts(lambda: HFTConfig(retrain_every=value)),
        "lobster k": _accepts(lambda: LOBConfig(horizons=(value,))),
        "direction_labels k": _accepts(lambda: direction_labels([1.0, 2.0, 3.0], value, 0.0)),
        "model argument": _accepts(lambda: check_positive_int("StackedLSTM", "units", value)),
    }
    assert set(verdicts.values()) == {any(value is good for good in GOOD)}, verdicts


def test_a_numpy_integer_model_argument_becomes_a_python_int():
    units = check_positive_int("StackedLSTM", "units", np.int64(8))
    assert units == 8 and type(units) is int  # a Keras config stays JSON-serialisable
    with pytest.raises(ConfigError, match=r"StackedLSTM argument `units` must be an integer >= 1; got True"):
        check_positive_int("StackedLSTM", "units", True)


def test_metric_rows_become_strict_json_in_one_place():
    row = {"model": "zero", "n": 3, "ic": float("nan"), "up": float("inf"), "down": np.float64(-np.inf), "mse": 0.5}
    assert json_safe(row) == {"model": "zero", "n": 3, "ic": None, "up": None, "down": None, "mse": 0.5}
    only_up = LOBResult("m", 1, np.arange(4), np.ones(4, np.int64), np.ones(4, np.int64))  # F1 of absent classes: NaN
    saved = json.loads(json.dumps(LOBEvaluation(LOBConfig(horizons=(1,)), {}, [only_up]).to_json_dict(), allow_nan=False))
    assert saved["metrics"][0]["f1_down"] is None and saved["metrics"][0]["f1_up"] == 1.0
