"""Run directories written before a refactor still load and predict the same.

Checkpoints store variables by position, so a change in the order in which a model creates its
variables would load every weight into the wrong place without an error. The fixtures under
`tests/fixtures/runs/` were written by `tests/fixtures/make_runs.py` at commit 109cc10 (before the
one-house refactor) together with the forecasts that code gave; these tests load them with today's
code and require the same numbers from both readers: `predict_run` (the lanes path) and
`StreamingPredictor` (serving, one tick at a time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from longstm.data import bundled_path, load_series

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
FIXTURES = ("lstm_lags", "hierarchical")


@pytest.mark.parametrize("name", FIXTURES)
def test_saved_run_predicts_as_when_it_was_written(name):
    from longstm.train import predict_run

    run = RUNS / name
    expected = pd.read_csv(run / "expected_predict.csv")
    frame = predict_run(run, bundled_path("ETTh1")).iloc[: len(expected)]
    assert list(frame.columns) == list(expected.columns)
    np.testing.assert_array_equal(frame["row"].to_numpy(), expected["row"].to_numpy())
    values = [c for c in expected.columns if c not in ("row", "timestamp")]
    np.testing.assert_allclose(frame[values].to_numpy(), expected[values].to_numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FIXTURES)
def test_saved_run_streams_as_when_it_was_written(name):
    from longstm import StreamingPredictor

    run = RUNS / name
    expected = np.load(run / "expected_stream.npy")
    series = load_series(bundled_path("ETTh1"))
    predictor = StreamingPredictor.from_run(run, engine="tf")
    outputs = np.asarray(predictor.update_many(series.values[: len(expected)]), dtype=np.float32)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
