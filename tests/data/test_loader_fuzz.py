"""Loader fuzzing: random, often malformed CSV and Parquet inputs give a valid series or a
DataValidationError — never another exception, never silently wrong values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longstm.data import load_series
from longstm.errors import DataValidationError

cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "x", "1e999", '"1,5"', "2024-01-01", "2024-01-01 00:00:00", " 3 ", "--"]),
    st.text(alphabet="0123456789.,-e abc\"", max_size=6),
)
headers = st.one_of(
    st.just(None),
    st.lists(st.sampled_from(["date", "a", "b", "c", "1", "2.5", "", "a"]), min_size=1, max_size=4),
)


@st.composite
def csv_texts(draw):
    width = draw(st.integers(1, 4))
    header = draw(headers)
    lines = [] if header is None else [",".join(header)]
    for _ in range(draw(st.integers(0, 8))):
        lines.append(",".join(draw(st.lists(cells, min_size=1, max_size=width + 1))))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


def _check(path, **kwargs):
    try:
        series = load_series(path, **kwargs)
    except DataValidationError as error:
        assert str(error).startswith(str(path)) or str(path) in str(error)
        return None
    values = np.asarray(series.values)
    assert values.dtype == np.float32 and values.ndim == 2 and len(series.columns) == values.shape[1]
    assert np.isfinite(values).all()
    if series.timestamps is not None:
        assert len(series.timestamps) == len(values)
    return series


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_texts())
def test_random_csv_is_a_valid_series_or_a_data_validation_error(tmp_path, text):
    path = tmp_path / "fuzz.csv"
    path.write_text(text)
    _check(path, kind="csv")
    _check(path, kind="csv", header=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()), min_size=0, max_size=6),
    with_dates=st.booleans(),
    shuffled=st.booleans(),
)
def test_random_parquet_is_a_valid_series_or_a_data_validation_error(tmp_path, values, with_dates, shuffled):
    frame = pd.DataFrame({"x": pd.Series(values, dtype="float64")})
    if with_dates:
        stamps = pd.date_range("2024-01-01", periods=len(values), freq="min")
        frame.insert(0, "date", stamps[::-1] if shuffled else stamps)
    path = tmp_path / "fuzz.parquet"
    frame.to_parquet(path)
    series = _check(path)
    if series is not None:  # what loads is the data, not something else
        np.testing.assert_allclose(series.values[:, 0], np.asarray(values, dtype=np.float32))


def test_a_headerless_csv_is_refused_or_read_as_data_when_asked(tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_text("3074,1.38756,1.38758\n3080,1.38757,1.38759\n")
    with pytest.raises(DataValidationError, match=r"line 1 \('3074,1.38756,1.38758'\) holds numbers, not column names"):
        load_series(path)
    series = load_series(path, header=False)
    assert series.columns == ["column_0", "column_1", "column_2"] and len(series) == 2
    np.testing.assert_allclose(series.values[0], [3074, 1.38756, 1.38758])
