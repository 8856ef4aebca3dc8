"""The one carried-state pass over a series (`longstm.train.carried`)."""

import numpy as np
import pytest

from longstm.errors import DataValidationError
from longstm.models.protocol import Forecaster
from longstm.models.stacked import StackedLSTM
from longstm.train.carried import CompiledModel, carried_outputs


def test_several_series_as_lanes_of_one_pass_equal_each_series_alone():
    # How a channel-independent model is scored in stream mode: the channels as lanes of one pass.
    model = Forecaster(StackedLSTM(6, layers=2), outputs=3)
    compiled = CompiledModel(model)
    series = np.random.default_rng(0).normal(size=(3, 50, 1)).astype("float32")
    rows = np.array([45, 3, 20, 21, 33])  # any order; a segment starts at 17
    together = carried_outputs(compiled, series, [0, 17], rows, 8)
    assert together.shape == (3, 5, 3)
    for lane in range(3):
        alone = carried_outputs(compiled, series[lane], [0, 17], rows, 8)
        np.testing.assert_allclose(together[lane], alone, rtol=1e-5, atol=1e-6)
    # The segment start resets the state: row 20 does not depend on rows before 17.
    changed = series.copy()
    changed[:, :17] += 1.0
    np.testing.assert_allclose(carried_outputs(compiled, changed, [0, 17], rows, 8)[:, 2], together[:, 2], atol=1e-6)


def test_no_rows_or_rows_past_the_series_are_refused():
    with pytest.raises(DataValidationError, match="no rows to forecast"):
        carried_outputs(None, np.zeros((10, 1)), [0], np.zeros(0, np.int64), 4)
    with pytest.raises(DataValidationError, match=r"must lie in \[0, 10\)"):
        carried_outputs(None, np.zeros((10, 1)), [0], np.array([3, 10]), 4)
